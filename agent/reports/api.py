"""Reports over HTTP (read by `vigil report`).

GET /api/v1/reports/tickets/{id}?format=html|pdf|xlsx&lang=zh|en
    the diagnosis and maintenance report of one ticket (default html, zh)
GET /api/v1/reports/monthly?month=YYYY-MM[&site=S]&format=...&lang=...
    the owner's monthly report of one site, or of all sites without `site`

Any valid token may read a report (agent/auth.py). The answer carries the format's
Content-Type and a Content-Disposition with the report's (Chinese) file name. Errors are
JSON `{"error": ...}` like the tickets API: 400 unknown parameter, format or language (and
for the monthly report a malformed, missing or future month or an unknown site), 401/403/429
from the authenticator, 404 unknown ticket, 503 ticket store unavailable.

Rendering (a PDF takes about a second of CPU) runs on a worker thread, at most
`MAX_RENDERS` at once, so reports never stall the polls; the heavy libraries (WeasyPrint,
matplotlib) are imported on the first report, not when the agent starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import tzinfo
from functools import cache
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator
from agent.tickets.store import TicketNotFound
from agent.tickets_api import BadRequest, _error, _id

if TYPE_CHECKING:
    from agent.daemon import Agent
    from agent.escalation import Policy
    from agent.reports.render import ReportRenderer
    from agent.tickets.store import TicketStore

FORMATS = ("html", "pdf", "xlsx")
LANGS = ("zh", "en")
PARAMS = {"format", "lang"}
MONTHLY_PARAMS = PARAMS | {"month", "site"}
MAX_RENDERS = 2


@dataclass(frozen=True)
class MonthlySources:
    """What the monthly report reads: the ticket store's database (tickets, history, tests,
    measurements, inspections), the policy's limits, the inventory, the report's time zone,
    and optionally the agent's state (SPDs now) and the inspection kinds' titles."""

    store: TicketStore
    policy: Policy
    inventory: Any
    timezone: str = "Asia/Shanghai"
    state: Any = None
    inspection_titles: dict[str, tuple[str, str]] | None = None


def monthly_sources(agent: Agent) -> MonthlySources | None:
    """The running agent's sources (None while its ticket store is not open)."""
    tickets = agent.tickets
    if tickets is None or not tickets.ready:
        return None
    settings = agent.config.settings
    titles = {k: (s.title_zh, s.title_en) for k, s in settings.inspections.schedules.items()}
    return MonthlySources(tickets.store, tickets.policy, agent.config.inventory,
                          settings.history.timezone, agent.state, titles)


def add_report_routes(app: web.Application, get_store: Callable[[], TicketStore | None],
                      auth: Authenticator, *,
                      policy: Callable[[], Policy | None] = lambda: None,
                      inventory: Callable[[], Any] = lambda: None,
                      tz: tzinfo | None = None,
                      monthly: Callable[[], MonthlySources | None] = lambda: None) -> None:
    """Register the report routes. `policy`, `inventory` and `monthly` are called per
    request (a reload may replace them); times are shown in `tz` (None: the machine's
    zone; the monthly report uses its own)."""
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
        return _response(out)

    @auth.require(ANY_ROLE)
    async def monthly_report(request: web.Request) -> web.StreamResponse:
        from agent.statistics import StatisticsInputError

        try:
            fmt = _choice(request, "format", FORMATS, MONTHLY_PARAMS)
            lang = _choice(request, "lang", LANGS, MONTHLY_PARAMS)
            month, site = _one(request, "month"), _one(request, "site")
            if month is None:
                raise BadRequest(400, "month: required, YYYY-MM (e.g. 2026-10)")
            sources = monthly()
            if sources is None:
                raise BadRequest(503, "the ticket store is not available")
            from agent.reports.monthly import load_monthly_report

            report = await load_monthly_report(
                sources.store, sources.policy, sources.inventory, month, site=site,
                timezone=sources.timezone, state=sources.state,
                inspection_titles=sources.inspection_titles)
            async with renders:
                out = await asyncio.to_thread(_renderer().render, report, fmt, lang)
        except BadRequest as exc:
            return _error(exc.status, str(exc), **exc.extra)
        except StatisticsInputError as exc:
            return _error(400, str(exc))
        except (OperationalError, DBAPIError) as exc:
            return _error(503, f"the ticket store failed: {type(exc.orig).__name__}")
        return _response(out)

    app.router.add_get("/api/v1/reports/tickets/{id}", ticket_report)
    app.router.add_get("/api/v1/reports/monthly", monthly_report)


def _response(out: Any) -> web.Response:
    """A rendered report with its type and (Chinese) file name; never cached by a proxy."""
    return web.Response(body=out.body, headers={
        "Content-Type": out.content_type,
        "Content-Disposition": out.content_disposition(),
        "Cache-Control": "no-store"})


@cache
def _renderer() -> ReportRenderer:
    from agent.reports.render import ReportRenderer

    return ReportRenderer()


def _choice(request: web.Request, name: str, allowed: tuple[str, ...],
            known: set[str] = PARAMS) -> str:
    unknown = set(request.query) - known
    if unknown:
        raise BadRequest(400, f"unknown parameter(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(known))}")
    values = request.query.getall(name, [allowed[0]])
    if len(values) > 1 or values[0] not in allowed:
        raise BadRequest(400, f"{name}: one of {', '.join(allowed)} (got "
                              f"{', '.join(values)!r})")
    return values[0]


def _one(request: web.Request, name: str) -> str | None:
    values = request.query.getall(name, [])
    if len(values) > 1:
        raise BadRequest(400, f"{name}: give it once (got {', '.join(values)!r})")
    return values[0] if values else None
