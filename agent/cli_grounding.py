"""`vigil grounding ...`: earthing points and their measured resistance, on the running
agent's API (docs/grounding.md).

Exit status: 0 done, 1 refused (every problem is printed; nothing was stored), 2 the agent
is unreachable.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, ApiClient, _table


class _Ctx(ApiClient):
    """The grounding API: a sheet import may take a while, and a refusal lists every
    problem (row, column)."""

    timeout = 60.0

    @staticmethod
    def problem_line(p: dict[str, Any]) -> str:
        where = f"{p['where']}, " if p.get("where") else ""
        return f"{where}{p['field']}: {p['message']}"


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")


def _ohm(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


@click.group()
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.pass_context
def grounding(ctx: click.Context, config_path: Path, url: str | None, token: str | None
              ) -> None:
    """Grounding resistance of the earthing points (接地电阻): record, import, list, trend."""
    ctx.obj = _Ctx(config_path, url, token, "/grounding")


@grounding.command("record")
@click.argument("point")
@click.option("--ohm", type=float, required=True, help="Measured resistance, ohms.")
@click.option("--instrument", required=True, help="Tester model and serial, e.g. "
                                                  "'UT522 #A1234'.")
@click.option("--weather", required=True, help="Weather, e.g. 晴, 阴, 小雨.")
@click.option("--technician", help="Who measured (default: the token's user).")
@click.option("--soil", default="", help="Soil condition, e.g. 干燥, 潮湿.")
@click.option("--notes", default="", help="Anything else worth keeping.")
@click.option("--at", "at", metavar="'YYYY-MM-DD HH:MM'",
              help="When it was measured, local time (default: now).")
@click.pass_obj
def record_cmd(c: _Ctx, point: str, ohm: float, instrument: str, weather: str,
               technician: str | None, soil: str, notes: str, at: str | None) -> None:
    """Record one measurement of POINT."""
    body: dict[str, Any] = {"ohm": ohm, "instrument": instrument, "weather": weather,
                            "soil": soil, "notes": notes}
    if technician:
        body["technician"] = technician
    if at:
        try:
            when = datetime.strptime(at.strip(), "%Y-%m-%d %H:%M")
        except ValueError:
            click.echo(f"error: --at '{at}': write it as 'YYYY-MM-DD HH:MM'", err=True)
            sys.exit(1)
        body["measured_at"] = when.astimezone().isoformat()
    saved = c.call("POST", f"/{quote(point, safe='')}/measurements", body)
    state = saved["status"]
    verdict = "超过限值 (above limit)" if state["over_limit"] else "合格 (within limit)"
    click.echo(f"recorded {point}: {saved['ohm']:g} Ω at {_when(saved['measured_at'])}, "
               f"limit {state['limit_ohm']:g} Ω: {verdict}")


@grounding.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the sheet only; store nothing.")
@click.pass_obj
def import_cmd(c: _Ctx, file: Path, dry_run: bool) -> None:
    """Import a filled measurement sheet (CSV or XLSX; columns point, measured_at, ohm,
    instrument, technician, weather[, soil, notes]). Any problem refuses the whole sheet."""
    query = urlencode({"filename": file.name, "dry_run": "true" if dry_run else "false"})
    answer = c.call("POST", f"/import?{query}", data=file.read_bytes(),
                    content_type="application/octet-stream")
    if dry_run:
        click.echo(f"{answer['checked']} measurement(s) checked, no problem (nothing stored)")
    else:
        click.echo(f"{answer['stored']} measurement(s) stored for "
                   f"{len(answer['points'])} earthing point(s)")


@grounding.command("list")
@click.option("--site", help="Only this site.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def list_cmd(c: _Ctx, site: str | None, as_json: bool) -> None:
    """Every earthing point: its limit, latest value, when it is due, and its verdict."""
    items = c.call("GET", f"?{urlencode({'site': site})}" if site else "")
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo("no earthing point")
        return
    rows = [("POINT", "SITE", "KIND", "LIMIT Ω", "LATEST Ω", "MEASURED", "DUE", "STATE")]
    for p in items:
        latest = p["latest"] or {}
        verdict = "超限" if p["over_limit"] else ""
        verdict += ("，" if verdict and p["overdue"] else "") + ("逾期未测" if p["overdue"] else "")
        rows.append((p["point"], p["site"], p["kind"], f"{p['limit_ohm']:g}",
                     _ohm(latest.get("ohm")), _when(latest.get("measured_at")),
                     _when(p["due"]), verdict or "正常"))
    click.echo(_table(rows))


@grounding.command("show")
@click.argument("point")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def show_cmd(c: _Ctx, point: str, as_json: bool) -> None:
    """One earthing point with its trend: every measurement and its change."""
    p = c.call("GET", f"/{quote(point, safe='')}")
    if as_json:
        click.echo(json.dumps(p, ensure_ascii=False, indent=2))
        return
    click.echo(f"{p['point']}  {p['name']}  site {p['site']}  kind {p['kind']}  limit "
               f"{p['limit_ohm']:g} Ω  every {p['measure_every_days']:g} days  due "
               f"{_when(p['due'])}" + ("  逾期未测 OVERDUE" if p["overdue"] else ""))
    if not p["trend"]:
        click.echo("never measured")
        return
    top = max(max(t["ohm"] for t in p["trend"]), p["limit_ohm"])
    rows = [("MEASURED", "Ω", "CHANGE", "", "INSTRUMENT", "TECHNICIAN", "WEATHER")]
    for t in p["trend"]:
        change = "" if t["change_ohm"] is None else \
            f"{t['change_ohm']:+g} ({t['change_ratio']:+.0%})"
        bar = "#" * max(1, round(20 * t["ohm"] / top)) + (" !" if t["over_limit"] else "")
        rows.append((_when(t["measured_at"]), f"{t['ohm']:g}", change, bar, t["instrument"],
                     t["technician"], t["weather"]))
    click.echo(_table(rows))


GROUNDING_COMMANDS = [grounding]
