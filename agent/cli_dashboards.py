"""`vigil export grafana-dashboards`: the centre's Grafana dashboards as JSON files."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("grafana-dashboards")
@click.option("--output", "-o", "output", required=True,
              type=click.Path(file_okay=False, path_type=Path),
              help="Directory to write the dashboards into (created if missing).")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True,
              help="Language of titles and descriptions.")
def grafana_dashboards(output: Path, lang: str) -> None:
    """Grafana dashboards for the monitoring centre (district overview, site, device, UPS,
    lightning protection and grounding, tickets and SLA), one JSON file each, ready for
    Grafana's file provisioning (docs/dashboards.md). They query the agents' own series
    through the data source the dashboard's `datasource` variable picks."""
    from agent.dashboards import write

    try:
        written = write(output, lang)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from None
    for path in written:
        click.echo(path)
