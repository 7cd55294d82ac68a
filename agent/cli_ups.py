"""`vigil ups test start|record|list|show`: UPS battery tests through the agent's API
(agent/ups_test_api.py). Exit status: 0 done, 1 refused (the reason is printed), 2 the agent
is unreachable."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, ApiClient, _table

RESULT_ZH = {"pass": "通过", "warning": "告警", "error": "失败", "aborted": "中止",
             "timeout": "超时", "lost": "中断", None: "进行中"}



@click.group()
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.pass_context
def ups(ctx: click.Context, config_path: Path, url: str | None, token: str | None) -> None:
    """UPS maintenance: battery (discharge) tests."""
    ctx.obj = ApiClient(config_path, url, token, "/ups")


@ups.group()
def test() -> None:
    """Battery tests: start one over SNMP, record a manual one, list the trend, show one."""


@test.command("start")
@click.argument("device")
@click.option("--kind", type=click.Choice(["quick", "deep"]), default="quick", show_default=True)
@click.option("--wait", is_flag=True, help="Wait for the result and show it.")
@click.pass_obj
def start(ctx: ApiClient, device: str, kind: str, wait: bool) -> None:
    """Start a battery test of DEVICE (engineer or technician token)."""
    started = ctx.call("POST", f"/{device}/tests", {"kind": kind})
    click.echo(f"test {started['id']} started on {device} ({kind})")
    while wait:
        time.sleep(5)
        found = ctx.call("GET", f"/tests/{started['id']}")
        if found["state"] == "done":
            _show(found)
            return


@test.command("record")
@click.argument("device")
@click.option("--kind", type=click.Choice(["quick", "deep"]), default="deep", show_default=True)
@click.option("--start", "started_at", required=True, help="ISO time with zone, "
                                                           "e.g. 2026-11-20T09:30:00+08:00.")
@click.option("--end", "ended_at", required=True, help="ISO time with zone.")
@click.option("--discharge", type=float, help="Discharge time in seconds (default: end - start).")
@click.option("--result", type=click.Choice(["pass", "warning", "error"]), required=True)
@click.option("--notes", default="")
@click.pass_obj
def record(ctx: ApiClient, device: str, kind: str, started_at: str, ended_at: str,
           discharge: float | None, result: str, notes: str) -> None:
    """Record a test done by hand on DEVICE."""
    body: dict[str, Any] = {"kind": kind, "started_at": started_at, "ended_at": ended_at,
                            "result": result, "notes": notes}
    if discharge is not None:
        body["discharge_seconds"] = discharge
    found = ctx.call("POST", f"/{device}/tests/manual", body)
    click.echo(f"test {found['id']} recorded on {device}: {found['discharge_seconds']:g} s, "
               f"{RESULT_ZH.get(found['result'], found['result'])}")


@test.command("list")
@click.argument("device")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def listing(ctx: ApiClient, device: str, as_json: bool) -> None:
    """DEVICE's tests and the discharge-time trend."""
    found = ctx.call("GET", f"/{device}/tests")
    if as_json:
        click.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    drops = {t["id"]: t["drop_ratio"] for t in found["trend"]}
    rows = [("id", "开始 start", "方式 method", "类型 kind", "放电 s", "降幅 drop", "结果 result")]
    for t in found["tests"]:
        drop = drops.get(t["id"])
        rows.append((str(t["id"]), t["started_at"][:16], t["method"], t["kind"],
                     f"{t['discharge_seconds']:g}" if t["discharge_seconds"] else "-",
                     f"{drop:.0%}" if drop is not None else "-",
                     RESULT_ZH.get(t["result"], t["result"])))
    click.echo(_table(rows))


@test.command("show")
@click.argument("test_id", type=int)
@click.pass_obj
def show(ctx: ApiClient, test_id: int) -> None:
    """One test: result, curve and timeline."""
    _show(ctx.call("GET", f"/tests/{test_id}"))


def _show(found: dict[str, Any]) -> None:
    click.echo(f"test {found['id']} {found['device']} {found['kind']} ({found['method']}): "
               f"{RESULT_ZH.get(found['result'], found['result'])} {found['detail']}".rstrip())
    click.echo(f"start {found['started_at']}  end {found['ended_at'] or '-'}  "
               f"discharge {found['discharge_seconds'] or '-'} s")
    if found["samples"]:
        rows = [("t s", "电量 charge", "电压 V", "续航 s", "电池 on battery", "code")]
        rows += [(f"{s['t']:g}", *(str(s.get(k, "-")) for k in
                                   ("charge", "volts", "runtime", "on_battery", "code")))
                 for s in found["samples"]]
        click.echo(_table(rows))
    for e in found["timeline"]:
        click.echo(f"{e['at']}  {e['actor']}  {e['kind']}  "
                   f"{json.dumps(e['data'], ensure_ascii=False)}")


UPS_COMMANDS = [ups]
