"""`vigil inspections ...`: periodic inspections on the running agent's API.

Exit status: 0 done, 1 the API refused (its reason and every problem are printed), 2 the
agent is unreachable.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, ApiClient, _table, ssl_context
from agent.cli_tickets import JSON_OPTION, _when

STATE_ZH = {"open": "待巡检", "submitted": "已提交", "signed": "已签字"}
STATUS_ZH = {"ok": "正常", "issue": "异常", "na": "不适用"}
LANG_OPTION = click.option("--lang", type=click.Choice(["zh", "en"]), default="zh",
                           show_default=True)


class _Ctx(ApiClient):
    """The inspections API, with the sheet's file requests besides JSON ones."""

    def raw(self, method: str, path: str, data: bytes | None = None) -> bytes:
        """A request whose body or answer is a file (the sheet)."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        request = urllib.request.Request(self.base() + path, data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30,
                                        context=ssl_context()) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            _refused(exc)
        except (urllib.error.URLError, OSError) as exc:
            click.echo(f"error: cannot reach the agent: {getattr(exc, 'reason', exc)}",
                       err=True)
            sys.exit(2)
        raise AssertionError("unreachable")


def _refused(exc: urllib.error.HTTPError) -> None:
    try:
        answer = json.loads(exc.read())
    except ValueError:
        answer = {"error": exc.reason}
    click.echo(f"error ({exc.code}): {answer.get('error', exc.reason)}", err=True)
    for p in answer.get("problems", []):
        click.echo(f"  row {p['row']}, column {p['column']}: {p['message']}", err=True)
    sys.exit(1)


def _state(state: str, lang: str) -> str:
    return STATE_ZH.get(state, state) if lang == "zh" else state


@click.group()
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.pass_context
def inspections(ctx: click.Context, config_path: Path, url: str | None,
                token: str | None) -> None:
    """Periodic inspections (巡检): list, show, create, record on-site results, export and
    import the sheet, submit; the owner signs (open → submitted → signed)."""
    ctx.obj = _Ctx(config_path, url, token, "/inspections")


@inspections.command("list")
@click.option("--site")
@click.option("--kind", help="monthly, quarterly, half_yearly, ...")
@click.option("--state", type=click.Choice(["open", "submitted", "signed"]))
@LANG_OPTION
@JSON_OPTION
@click.pass_obj
def list_cmd(c: _Ctx, site: str | None, kind: str | None, state: str | None, lang: str,
             as_json: bool) -> None:
    """Inspections, newest period first."""
    query = {k: v for k, v in {"site": site, "kind": kind, "state": state}.items() if v}
    items = c.call("GET", f"?{urlencode(query)}" if query else "")
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo("no inspections")
        return
    rows = [("ID", "SITE", "KIND", "PERIOD", "DUE", "STATE")]
    rows += [(str(i["id"]), i["site"], i["kind"], i["period"], _when(i["due_at"]),
              _state(i["state"], lang)) for i in items]
    click.echo(_table(rows))


@inspections.command("show")
@click.argument("inspection_id", type=int)
@LANG_OPTION
@JSON_OPTION
@click.pass_obj
def show(c: _Ctx, inspection_id: int, lang: str, as_json: bool) -> None:
    """One inspection: pre-filled devices, checklist with results, timeline."""
    i = c.call("GET", f"/{inspection_id}")
    if as_json:
        click.echo(json.dumps(i, ensure_ascii=False, indent=2))
        return
    sheet = i["sheet"]
    click.echo(f"#{i['id']}  {sheet['title'][lang]}  {i['site']} {sheet.get('site_name', '')}"
               f"  {i['period']}  {_state(i['state'], lang)}  due {_when(i['due_at'])}")
    rows = [("DEVICE", "KIND", "FIRMWARE", "UP", "TICKETS", "OPEN", "UPS", "SPD")]
    for d in sheet["devices"]:
        ups, spd = d.get("ups"), d.get("spd")
        rows.append((d["id"], d["kind"], d.get("firmware") or "-",
                     {True: "up", False: "down", None: "?"}[d.get("up")],
                     str(d["tickets"]["count"]), str(len(d["tickets"]["open"])),
                     "-" if not ups else f"battery={ups['on_battery']} "
                                         f"charge={ups['charge_ratio']}",
                     "-" if not spd else f"status={spd['status']} strikes={spd['strikes']}"))
    click.echo(_table(rows))
    for section in sheet["sections"].values():
        if not section.get("available"):
            click.echo(f"{section['title'][lang]}: {section['note'][lang]}")
    done = {(r["item"], r["device"]): r for r in i["results"]}
    rows = [("ITEM", "DEVICE", "CHECK", "STATUS", "NOTE")]
    for r in sheet["checklist"]:
        result = done.get((r["item"], r["device"]), {})
        status = result.get("status", "-")
        rows.append((r["item"], r["device"] or "-", r[lang],
                     STATUS_ZH.get(status, status) if lang == "zh" else status,
                     result.get("note", "")))
    click.echo(_table(rows))
    rows = [("WHEN", "WHO", "WHAT", "DETAILS")]
    for e in i["timeline"]:
        rows.append((_when(e["at"]), e["actor"], e["kind"], "; ".join(
            f"{k}={v}" for k, v in e["data"].items() if v not in ("", None, []))))
    click.echo(_table(rows))


@inspections.command("create")
@click.option("--site", required=True)
@click.option("--kind", required=True, help="monthly, quarterly, half_yearly, ...")
@click.option("--period", required=True, help="2026-10 (month), 2026-Q4, 2026-H2.")
@click.pass_obj
def create(c: _Ctx, site: str, kind: str, period: str) -> None:
    """Create (or find) the inspection of a site, kind and period, pre-filled now."""
    i = c.call("POST", "", {"site": site, "kind": kind, "period": period})
    click.echo(f"inspection {i['id']}: {'created' if i['created'] else 'exists'} "
               f"({i['state']})")


@inspections.command("refresh")
@click.argument("inspection_id", type=int)
@click.pass_obj
def refresh(c: _Ctx, inspection_id: int) -> None:
    """Pre-fill the sheet again from today's readings and tickets (until submitted)."""
    _post_json(c, inspection_id, "refresh", {})


@inspections.command("record")
@click.argument("inspection_id", type=int)
@click.option("--item", required=True, help="Checklist item id.")
@click.option("--device", default="", help="The device, for per-device items.")
@click.option("--status", required=True, help="ok, issue, na (正常, 异常, 不适用).")
@click.option("--note", default="", help="Required for an issue.")
@click.pass_obj
def record(c: _Ctx, inspection_id: int, item: str, device: str, status: str,
           note: str) -> None:
    """Record one on-site result (engineer, technician)."""
    body = {"results": [{"item": item, "device": device, "status": status, "note": note}]}
    answer = c.raw("POST", f"/{inspection_id}/results",
                   json.dumps(body, ensure_ascii=False).encode())
    click.echo(f"inspection {inspection_id}: {json.loads(answer)['recorded']} result(s) "
               "recorded")


@inspections.command("submit")
@click.argument("inspection_id", type=int)
@click.option("--note", default="")
@click.pass_obj
def submit(c: _Ctx, inspection_id: int, note: str) -> None:
    """Submit the completed sheet (every item needs a result)."""
    _post_json(c, inspection_id, "submit", {"note": note})


@inspections.command("sign")
@click.argument("inspection_id", type=int)
@click.option("--note", default="")
@click.pass_obj
def sign(c: _Ctx, inspection_id: int, note: str) -> None:
    """The owner's sign-off (owner role only)."""
    _post_json(c, inspection_id, "sign", {"note": note})


@inspections.command("reject")
@click.argument("inspection_id", type=int)
@click.option("--reason", required=True)
@click.pass_obj
def reject(c: _Ctx, inspection_id: int, reason: str) -> None:
    """Send a submitted inspection back to the technician (owner role only)."""
    _post_json(c, inspection_id, "reject", {"reason": reason})


def _post_json(c: _Ctx, inspection_id: int, action: str, body: dict[str, Any]) -> None:
    answer = json.loads(c.raw("POST", f"/{inspection_id}/{action}",
                              json.dumps(body, ensure_ascii=False).encode()))
    click.echo(f"inspection {inspection_id}: {answer['state']}")


@inspections.command("export")
@click.argument("inspection_id", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              required=True, help="File to write (.xlsx, or .csv).")
@LANG_OPTION
@click.pass_obj
def export(c: _Ctx, inspection_id: int, output: Path, lang: str) -> None:
    """Write the sheet to fill on site (XLSX, or CSV by the file's suffix)."""
    fmt = "csv" if output.suffix.lower() == ".csv" else "xlsx"
    output.write_bytes(c.raw("GET", f"/{inspection_id}/sheet.{fmt}?lang={lang}"))
    click.echo(f"inspection {inspection_id}: sheet written to {output}")


@inspections.command("import")
@click.argument("inspection_id", type=int)
@click.argument("sheet", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.pass_obj
def import_cmd(c: _Ctx, inspection_id: int, sheet: Path) -> None:
    """Import a filled sheet (XLSX or CSV): all rows or none."""
    answer = json.loads(c.raw("POST", f"/{inspection_id}/sheet", sheet.read_bytes()))
    click.echo(f"inspection {inspection_id}: {answer['recorded']} result(s) imported from "
               f"{sheet}")


INSPECTION_COMMANDS = [inspections]
