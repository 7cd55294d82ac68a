"""GET /api/v1/statistics: the fault statistics (agent/statistics.py) as JSON.

Query: `month=YYYY-MM`, or `start=YYYY-MM-DD&end=YYYY-MM-DD` (local dates, both included);
`site` (optional); `months` (length of the monthly trend, default 6). Any valid token may
read. Errors are JSON `{"error": ...}` like the tickets API: 400 for a malformed or future
period, an unknown site or parameter; 503 while the ticket store is not open.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator
from agent.escalation import Policy, builtin_policy
from agent.statistics import MAX_TREND_MONTHS, TREND_MONTHS, StatisticsInputError, compute
from agent.tickets_api import _error, _json

if TYPE_CHECKING:
    from agent.inventory import Inventory
    from agent.tickets.store import TicketStore

PARAMS = {"month", "start", "end", "site", "months"}


class _Config(Protocol):
    @property
    def inventory(self) -> Inventory: ...


class Source(Protocol):
    """What the statistics read: the daemon's TicketRunner has all of it."""

    store: TicketStore
    policy: Policy
    config: _Config


def add_statistics_routes(app: web.Application, get_source: Callable[[], Source | None],
                          auth: Authenticator) -> None:
    """Register GET /api/v1/statistics; `get_source` is called per request (None: 503)."""

    @auth.require(ANY_ROLE)
    async def statistics(request: web.Request) -> web.StreamResponse:
        q = request.query
        unknown = set(q) - PARAMS
        if unknown:
            return _error(400, f"unknown parameter(s) {sorted(unknown)}; known: "
                               f"{', '.join(sorted(PARAMS))}")
        if any(len(q.getall(name)) > 1 for name in q):
            return _error(400, "give each parameter once")
        raw = q.get("months", str(TREND_MONTHS))
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_TREND_MONTHS:
            return _error(400, f"months: an integer 1-{MAX_TREND_MONTHS}")
        source = get_source()
        if source is None:
            return _error(503, "the ticket store is not available")
        try:
            result = await compute(
                source.store, source.policy or builtin_policy(), source.config.inventory,
                month=q.get("month"), start=q.get("start"), end=q.get("end"),
                site=q.get("site"), months=int(raw))
        except StatisticsInputError as exc:
            return _error(400, str(exc))
        except (OperationalError, DBAPIError) as exc:
            return _error(503, f"the ticket store failed: {type(exc.orig).__name__}")
        return _json(result.to_dict())

    app.router.add_get("/api/v1/statistics", statistics)

