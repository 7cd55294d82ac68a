"""Reports over HTTP (read by `vigil report`).

GET /api/v1/reports/tickets/{id}?format=html|pdf|xlsx&lang=zh|en
    the diagnosis and maintenance report of one ticket (default html, zh)

Any valid token may read a report (agent/auth.py). The answer carries the format's
Content-Type and a Content-Disposition with the report's (Chinese) file name. Errors are
JSON `{"error": ...}` like the tickets API: 400 unknown parameter, format or language,
401/403/429 from the authenticator, 404 unknown ticket, 503 ticket store unavailable.

Rendering (a PDF takes about a second of CPU) runs on a worker thread, at most
`MAX_RENDERS` at once, so reports never stall the polls; the heavy libraries (WeasyPrint,
matplotlib) are imported on the first report, not when the agent starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import tzinfo
from functools import cache
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator
from agent.tickets.store import TicketNotFound
from agent.tickets_api import BadRequest, _error, _id

if TYPE_CHECKING:
    from agent.escalation import Policy
    from agent.reports.render import ReportRenderer
    from agent.tickets.store import TicketStore

FORMATS = ("html", "pdf", "xlsx")
LANGS = ("zh", "en")
PARAMS = {"format", "lang"}
MAX_RENDERS = 2


def add_report_routes(app: web.Application, get_store: Callable[[], TicketStore | None],
                      auth: Authenticator, *,
                      policy: Callable[[], Policy | None] = lambda: None,
                      inventory: Callable[[], Any] = lambda: None,
                      tz: tzinfo | None = None) -> None:
    """Register the report routes. `policy` and `inventory` are called per request (a
    reload may replace them); times are shown in `tz` (None: the machine's zone)."""
    renders = asyncio.Semaphore(MAX_RENDERS)

    @auth.require(ANY_ROLE)
    async def ticket_report(request: web.Request) -> web.StreamResponse:
        try:
            fmt, lang = _choice(request, "format", FORMATS), _choice(request, "lang", LANGS)
            ticket_id = _id(request)
            store = get_store()
            if store is None:
                raise BadRequest(503, "the ticket store is not available")
            from agent.reports.ticket import load_ticket_report

            report = await load_ticket_report(store, ticket_id, policy=policy(),
                                              inventory=inventory(), tz=tz)
            async with renders:
                out = await asyncio.to_thread(_renderer().render, report, fmt, lang)
        except BadRequest as exc:
            return _error(exc.status, str(exc), **exc.extra)
        except TicketNotFound as exc:
            return _error(404, str(exc))
        except (OperationalError, DBAPIError) as exc:
            return _error(503, f"the ticket store failed: {type(exc.orig).__name__}")
        return web.Response(body=out.body, headers={
            "Content-Type": out.content_type,
            "Content-Disposition": out.content_disposition(),
            "Cache-Control": "no-store"})

    app.router.add_get("/api/v1/reports/tickets/{id}", ticket_report)


@cache
def _renderer() -> ReportRenderer:
    from agent.reports.render import ReportRenderer

    return ReportRenderer()


def _choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str:
    unknown = set(request.query) - PARAMS
    if unknown:
        raise BadRequest(400, f"unknown parameter(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(PARAMS))}")
    values = request.query.getall(name, [allowed[0]])
    if len(values) > 1 or values[0] not in allowed:
        raise BadRequest(400, f"{name}: one of {', '.join(allowed)} (got "
                              f"{', '.join(values)!r})")
    return values[0]
