"""Grafana dashboards of the monitoring centre, generated from code (`vigil export
grafana-dashboards`): one module per dashboard, shared pieces in `panels`. They query the
agents' own series (docs/metrics.md), not the centre's recording rules, so they work against
any Prometheus that scrapes Vigil agents. See docs/dashboards.md."""

from __future__ import annotations

from pathlib import Path

from agent.dashboards import device, lightning, overview, power, site, tickets
from agent.dashboards.panels import Text, to_json

# file name -> module; the order is the order of the dashboards in docs/dashboards.md
DASHBOARDS = {
    "vigil-overview.json": overview,
    "vigil-site.json": site,
    "vigil-device.json": device,
    "vigil-power.json": power,
    "vigil-lightning.json": lightning,
    "vigil-tickets.json": tickets,
}


def render(lang: str = "zh") -> dict[str, str]:
    """Every dashboard's JSON text, by file name."""
    tr = Text(lang)
    return {name: to_json(module.build(tr).build()) for name, module in DASHBOARDS.items()}


def write(directory: Path, lang: str = "zh") -> list[Path]:
    """Write every dashboard into `directory` (created if missing); returns the files."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render(lang).items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
