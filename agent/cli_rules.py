"""`vigil test rules`: the rules engine's commands, kept beside the main command tree."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from agent.cli import main
from agent.yamlfile import ConfigError, ConfigErrors
from collectors.snmp.profile import load_profiles


@main.group()
def test() -> None:
    """Unit tests of configuration (like `promtool test rules`)."""


@test.command("rules")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
def test_rules(files: tuple[Path, ...]) -> None:
    """Run rule unit tests: input series over time, expected faults at given times.

    Exits 1 if any test fails or any file has errors. See docs/rules.md for the format."""
    from rules.testing import run_file

    profiles = load_profiles()
    failed = passed = 0
    for path in files:
        try:
            outcomes = run_file(path, profiles.catalogue, profiles)
        except (ConfigError, ConfigErrors) as exc:
            for error in getattr(exc, "errors", [exc]):
                click.echo(str(error), err=True)
            failed += 1
            continue
        for outcome in outcomes:
            if outcome.failures:
                failed += 1
                click.echo(f"FAILED {path}: {outcome.name}")
                for line in outcome.failures:
                    click.echo(f"    {line}")
            else:
                passed += 1
                click.echo(f"  ok   {path}: {outcome.name}")
    click.echo(f"{passed} passed, {failed} failed")
    if failed or not passed:
        sys.exit(1)
