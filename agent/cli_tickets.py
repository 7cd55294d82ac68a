"""`vigil tickets ...` (on the running agent's tickets API) and `vigil tokens ...` (the API
users' tokens file).

Exit status: 0 done, 1 the API refused (its reason is printed), 2 the agent is unreachable.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, ApiClient, _table
from agent.tickets.models import CAUSES

JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
STATE_ZH = {"open": "待响应", "acknowledged": "已响应", "diagnosed": "已诊断",
            "repairing": "维修中", "resolved": "已修复", "confirmed": "已确认", "closed": "已关闭",
            "reopened": "重新打开"}


def _when(iso: str | None) -> str:
    if not iso:
        return "-"
    return datetime.fromisoformat(iso).astimezone().strftime("%m-%d %H:%M")



@click.group()
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.pass_context
def tickets(ctx: click.Context, config_path: Path, url: str | None, token: str | None) -> None:
    """Tickets: list, show, and move them through their lifecycle (open → acknowledged →
    diagnosed → repairing → resolved → confirmed by the owner → closed)."""
    ctx.obj = ApiClient(config_path, url, token, "/tickets")


@tickets.command("list")
@click.option("--state", help="Only these states (comma-separated).")
@click.option("--level", help="Only these levels (1-4, comma-separated).")
@click.option("--site", help="Only this site.")
@click.option("--device", help="Only this device.")
@click.option("--rule", help="Only this rule.")
@click.option("--agent", help="Only those this branch agent opened (agent.id); by default "
                              "every branch's, when the agents share one store.")
@click.option("--all", "show_all", is_flag=True, help="Closed tickets too.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--offset", type=click.IntRange(0), default=0)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@JSON_OPTION
@click.pass_obj
def list_cmd(c: ApiClient, state: str | None, level: str | None, site: str | None,
             device: str | None, rule: str | None, agent: str | None, show_all: bool,
             limit: int, offset: int, lang: str, as_json: bool) -> None:
    """Tickets, oldest first (not closed unless --all or --state)."""
    from urllib.parse import urlencode

    query: dict[str, Any] = {k: v for k, v in {
        "state": state, "level": level, "site": site, "device": device, "rule": rule,
        "agent": agent}.items() if v is not None}
    if not show_all and not state:
        query["not_closed"] = "true"
    query.update(limit=limit, offset=offset)
    items = c.call("GET", f"?{urlencode(query)}")
    if as_json:
        click.echo(json.dumps(items, ensure_ascii=False, indent=2))
        return
    if not items:
        click.echo("no tickets")
        return
    rows = [("ID", "LEVEL", "STATE", "OPENED", "AGENT", "SITE", "DEVICE", "RULE", "TITLE")]
    rows += [(str(t["id"]), str(t["level"]), _state(t["state"], lang), _when(t["opened_at"]),
              t["agent_id"], t["site"], t["device"] or "-", t["rule"], t[f"title_{lang}"])
             for t in items]
    click.echo(_table(rows))


def _state(state: str, lang: str) -> str:
    return STATE_ZH.get(state, state) if lang == "zh" else state


@tickets.command("show")
@click.argument("ticket_id", type=int)
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@JSON_OPTION
@click.pass_obj
def show(c: ApiClient, ticket_id: int, lang: str, as_json: bool) -> None:
    """One ticket with its timeline."""
    t = c.call("GET", f"/{ticket_id}")
    if as_json:
        click.echo(json.dumps(t, ensure_ascii=False, indent=2))
        return
    click.echo(f"#{t['id']}  level {t['level']}  {_state(t['state'], lang)}  "
               f"{t[f'title_{lang}']}")
    click.echo(f"  site {t['site']}  device {t['device'] or '-'}  rule {t['rule']}  "
               f"fault {t['fault_key']}")
    click.echo(f"  opened {_when(t['opened_at'])}"
               + (f", reopened {_when(t['reopened_at'])} ({t['reopen_count']}x)"
                  if t.get("reopened_at") else "")
               + (f", cause {t['cause_category']}" if t.get("cause_category") else ""))
    click.echo(f"  next: {', '.join(t['allowed_actions']) or '-'}")
    rows = [("WHEN", "WHO", "WHAT", "DETAILS")]
    for e in t.get("timeline", []):
        data = {k: v for k, v in (e.get("data") or {}).items()
                if k not in ("from", "to", "evidence") and v not in ("", None, [])}
        rows.append((_when(e["at"]), e["actor"], e["kind"],
                     "; ".join(f"{k}={_flat(v)}" for k, v in data.items())))
    click.echo(_table(rows))


def _flat(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return str(value).replace("\n", " ")


def _done(c: ApiClient, ticket_id: int, action: str, body: dict[str, Any]) -> None:
    t = c.call("POST", f"/{ticket_id}/{action}", body)
    click.echo(f"ticket {t['id']}: {t['state']} (next: {', '.join(t['allowed_actions']) or '-'})")


@tickets.command("ack")
@click.argument("ticket_id", type=int)
@click.option("--note", default="", help="A note for the timeline.")
@click.pass_obj
def ack(c: ApiClient, ticket_id: int, note: str) -> None:
    """Acknowledge a ticket (engineer, technician)."""
    _done(c, ticket_id, "acknowledge", {"note": note})


@tickets.command("diagnose")
@click.argument("ticket_id", type=int)
@click.option("--diagnosis", required=True, help="What is wrong (诊断).")
@click.option("--plan", default="", help="The maintenance plan (维修方案).")
@click.pass_obj
def diagnose(c: ApiClient, ticket_id: int, diagnosis: str, plan: str) -> None:
    """Record the diagnosis and plan (engineer, technician)."""
    _done(c, ticket_id, "diagnosis", {"diagnosis": diagnosis, "plan": plan})


@tickets.command("repair")
@click.argument("ticket_id", type=int)
@click.option("--plan", default="", help="The plan, if it changed since the diagnosis.")
@click.pass_obj
def repair(c: ApiClient, ticket_id: int, plan: str) -> None:
    """Start the repair (engineer, technician)."""
    _done(c, ticket_id, "repair/start", {"plan": plan})


@tickets.command("resolve")
@click.argument("ticket_id", type=int)
@click.option("--cause", required=True, type=click.Choice(CAUSES), help="Cause category.")
@click.option("--repair", "repair_text", required=True, help="What was done.")
@click.option("--part", "parts", multiple=True, help="A part replaced (repeatable).")
@click.pass_obj
def resolve(c: ApiClient, ticket_id: int, cause: str, repair_text: str,
            parts: tuple[str, ...]) -> None:
    """Record the repair (engineer, technician)."""
    _done(c, ticket_id, "resolve", {"cause_category": cause, "repair": repair_text,
                                    "parts_replaced": list(parts)})


@tickets.command("confirm")
@click.argument("ticket_id", type=int)
@click.option("--note", default="")
@click.pass_obj
def confirm(c: ApiClient, ticket_id: int, note: str) -> None:
    """The owner's acceptance of the repair (owner only)."""
    _done(c, ticket_id, "confirm", {"note": note})


@tickets.command("close")
@click.argument("ticket_id", type=int)
@click.option("--note", default="")
@click.pass_obj
def close(c: ApiClient, ticket_id: int, note: str) -> None:
    """Close a confirmed ticket (engineer, owner)."""
    _done(c, ticket_id, "close", {"note": note})


@tickets.command("reopen")
@click.argument("ticket_id", type=int)
@click.option("--reason", required=True, help="Why it is not fixed.")
@click.pass_obj
def reopen(c: ApiClient, ticket_id: int, reason: str) -> None:
    """Reopen a resolved, confirmed or closed ticket."""
    _done(c, ticket_id, "reopen", {"reason": reason})


@tickets.command("comment")
@click.argument("ticket_id", type=int)
@click.argument("text")
@click.pass_obj
def comment(c: ApiClient, ticket_id: int, text: str) -> None:
    """Add a comment to the ticket's timeline."""
    t = c.call("POST", f"/{ticket_id}/comments", {"text": text})
    click.echo(f"ticket {t['id']}: comment added")


TOKENS_FILE_OPTION = click.option(
    "--file", "-f", "path", required=True, envvar="VIGIL_TOKENS_FILE",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The tokens file (YAML; only SHA-256 hashes). Also read from $VIGIL_TOKENS_FILE.")


@click.group()
def tokens() -> None:
    """API users and their tokens (stored hashed)."""


@tokens.command("add")
@click.argument("name")
@click.option("--role", required=True,
              type=click.Choice(["engineer", "technician", "owner", "viewer"]))
@TOKENS_FILE_OPTION
def tokens_add(name: str, role: str, path: Path) -> None:
    """Make a token for NAME, print it once, store only its hash."""
    from agent.auth import TokensFileError, add_user

    try:
        token = add_user(path, name, role)
    except (TokensFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(token)
    click.echo(f"user {name} ({role}) added to {path}; the token is shown only this once",
               err=True)


@tokens.command("list")
@TOKENS_FILE_OPTION
def tokens_list(path: Path) -> None:
    """Users and roles (never tokens)."""
    from agent.auth import TokensFileError, read_users

    try:
        users = read_users(path)
    except (TokensFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not users:
        click.echo("no users")
        return
    click.echo(_table([("NAME", "ROLE")] + [(u.name, u.role) for u in users]))


@tokens.command("remove")
@click.argument("name")
@TOKENS_FILE_OPTION
def tokens_remove(name: str, path: Path) -> None:
    """Remove NAME: its token stops working."""
    from agent.auth import TokensFileError, remove_user

    try:
        removed = remove_user(path, name)
    except (TokensFileError, OSError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    if not removed:
        click.echo(f"error: no user {name!r} in {path}", err=True)
        sys.exit(1)
    click.echo(f"user {name} removed")


TICKET_COMMANDS = [tickets, tokens]
