"""`vigil report ...`: reports fetched from the running agent's API and written to a file.

Exit status: 0 written, 1 the API refused (its reason is printed) or the file could not be
written, 2 the agent is unreachable.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlencode

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, _api, api_request

FORMAT_OPTION = click.option("--format", "fmt", type=click.Choice(["html", "pdf", "xlsx"]),
                             default="pdf", show_default=True)
LANG_OPTION = click.option("--lang", type=click.Choice(["zh", "en"]), default="zh",
                           show_default=True)
OUTPUT_OPTION = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: the report's own name, in the current directory).")


def download(url: str, token: str | None) -> tuple[bytes, str]:
    """GET a binary answer from the agent: (body, suggested file name). Errors end the
    command like `api_call` (exit 1 with the API's reason, 2 when unreachable)."""
    content, headers = api_request("GET", url, token=token, timeout=120)
    return content, _filename(headers.get("Content-Disposition", ""))


def _filename(disposition: str) -> str:
    """The UTF-8 `filename*` of a Content-Disposition, else its plain `filename`; never a
    path (the server's name must not choose the directory)."""
    found = re.search(r"filename\*=UTF-8''([^;\s]+)", disposition, re.IGNORECASE)
    name = unquote(found.group(1)) if found else \
        (re.findall(r'filename="([^"]*)"', disposition) or [""])[0]
    return Path(name.replace("\\", "/")).name


@click.group("report")
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.pass_context
def report(ctx: click.Context, config_path: Path, url: str | None, token: str | None) -> None:
    """Reports as HTML, PDF or XLSX (Chinese by default, --lang en for English)."""
    ctx.obj = {"config_path": config_path, "url": url, "token": token}


@report.command("ticket")
@click.argument("ticket_id", type=click.IntRange(1))
@FORMAT_OPTION
@LANG_OPTION
@OUTPUT_OPTION
@click.pass_obj
def ticket(obj: dict[str, Any], ticket_id: int, fmt: str, lang: str,
           output: Path | None) -> None:
    """The diagnosis and maintenance report of one ticket (故障诊断与维修报告): scene
    record, handling log, time limits, diagnosis, repair, test after repair, the owner's
    confirmation."""
    base = _api(obj["config_path"], obj["url"])
    query = urlencode({"format": fmt, "lang": lang})
    body, name = download(f"{base}/api/v1/reports/tickets/{ticket_id}?{query}", obj["token"])
    _write(output or Path(name or f"ticket-{ticket_id}.{fmt}"), body)


@report.command("monthly")
@click.option("--month", required=True, metavar="YYYY-MM",
              help="Calendar month in the report's time zone (history.timezone), e.g. 2026-10.")
@click.option("--site", metavar="SITE", help="Site id (default: all sites).")
@FORMAT_OPTION
@LANG_OPTION
@OUTPUT_OPTION
@click.pass_obj
def monthly(obj: dict[str, Any], month: str, site: str | None, fmt: str, lang: str,
            output: Path | None) -> None:
    """The owner's monthly report (运维月报): fault statistics, online and good-order
    rates, inspections, UPS discharge tests, grounding and SPDs, open items at the month's
    end."""
    base = _api(obj["config_path"], obj["url"])
    params = {"month": month, "format": fmt, "lang": lang, **({"site": site} if site else {})}
    body, name = download(f"{base}/api/v1/reports/monthly?{urlencode(params)}", obj["token"])
    _write(output or Path(name or f"monthly-report-{site or 'all-sites'}-{month}.{fmt}"), body)


def _write(path: Path, body: bytes) -> None:
    try:
        path.write_bytes(body)
    except OSError as exc:
        click.echo(f"error: cannot write {path}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"{path} ({len(body):,} bytes)")


REPORT_COMMANDS = [report]
