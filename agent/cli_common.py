"""What the `vigil` commands share: the --config option, loading it, plain-text tables."""

from __future__ import annotations

import sys
import unicodedata
from pathlib import Path

import click

from agent.config import DEFAULT_CONFIG, Config, load_config
from agent.yamlfile import ConfigError, ConfigErrors

CONFIG_OPTION = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), envvar="VIGIL_CONFIG",
    default=DEFAULT_CONFIG, show_default=True,
    help="agent.yaml; the inventory, credentials and profile paths in it are relative to it. "
         "Also read from $VIGIL_CONFIG.")



def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except (ConfigError, ConfigErrors) as exc:
        errors = getattr(exc, "errors", [exc])
        for error in errors:
            click.echo(str(error), err=True)
        click.echo(f"{len(errors)} problem(s) found; nothing was started.", err=True)
        sys.exit(1)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell + " " * (w - _width(cell))
                               for cell, w in zip(r, widths, strict=True))
                     .rstrip() for r in rows)
