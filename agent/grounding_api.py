"""The grounding records' JSON API (read by `vigil grounding`).

GET  /api/v1/grounding[?site=S]                 every earthing point: limit, latest value,
                                                due date, over_limit, overdue
GET  /api/v1/grounding/{point}                  one point with its trend (every measurement,
                                                oldest first, with the change against the
                                                previous one)
POST /api/v1/grounding/{point}/measurements     {ohm, measured_at?, instrument, technician?,
                                                 weather, soil?, notes?}
POST /api/v1/grounding/import[?dry_run=true]    body: the filled sheet (CSV or XLSX)

Reading needs any valid token; recording and importing the engineer or technician role.
`measured_at` is ISO 8601; without a UTC offset it is the agent's local time; default now.
`technician` defaults to the token's user. Errors are JSON `{"error": ..., "problems":
[{where, field, message}]}`: 400 invalid input (every problem listed, nothing stored), 401,
403, 404 unknown point, 413 body too big, 503 records unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator, user_of
from agent.grounding import Measurement, Problem, Refused, status, trend
from agent.grounding_sheet import SheetError, problems_of
from agent.grounding_stage import point_summaries

if TYPE_CHECKING:
    from agent.grounding_stage import GroundingStage

MAX_BODY = 64 * 1024
MAX_SHEET = 4 * 1024 * 1024
FIELD_ROLES = frozenset({"engineer", "technician"})
FIELDS = {"ohm", "measured_at", "instrument", "technician", "weather", "soil", "notes"}


class _Bad(Exception):
    def __init__(self, status: int, message: str, problems: list[Problem] | None = None):
        super().__init__(message)
        self.status, self.problems = status, problems or []


def add_grounding_routes(app: web.Application, get_stage: Callable[[], GroundingStage | None],
                         auth: Authenticator) -> None:
    def stage() -> GroundingStage:
        s = get_stage()
        if s is None or not s.ready:
            raise _Bad(503, "the grounding records are not available")
        return s

    def guarded(handler: Callable[[web.Request], Awaitable[tuple[int, Any]]],
                roles: frozenset[str]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @auth.require(roles)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                code, data = await handler(request)
                return _json(data, code)
            except _Bad as exc:
                return _json({"error": str(exc),
                              "problems": [p.to_dict() for p in exc.problems]}, exc.status)
            except Refused as exc:
                return _json({"error": f"refused, nothing stored: {len(exc.problems)} "
                                       f"problem(s)",
                              "problems": [p.to_dict() for p in exc.problems]}, 400)
            except (OperationalError, DBAPIError) as exc:
                return _json({"error": f"the grounding records failed: "
                                       f"{type(exc.orig).__name__}"}, 503)

        return run

    async def list_points(request: web.Request) -> tuple[int, Any]:
        unknown = set(request.query) - {"site"}
        if unknown:
            raise _Bad(400, f"unknown parameter(s) {sorted(unknown)}; known: site")
        return 200, point_summaries(stage(), request.query.get("site"))

    def point_of(request: web.Request, s: GroundingStage) -> Any:
        name = request.match_info["point"]
        point = s.points.get(name)
        if point is None:
            raise _Bad(404, f"no earthing point '{name}' in the inventory")
        return point

    async def one(request: web.Request) -> tuple[int, Any]:
        s = stage()
        point = point_of(request, s)
        rows = await s.store.history(point=point.id)
        return 200, {**status(point, s.latest.get(point.id), s.clock()),
                     "trend": [t.to_dict() for t in trend(rows, point.limit)]}

    async def record(request: web.Request) -> tuple[int, Any]:
        s = stage()
        point = point_of(request, s)
        body = await _body(request, MAX_BODY)
        try:
            body = json.loads(body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise _Bad(400, f"the body must be JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _Bad(400, "the body must be a JSON object")
        unknown = set(body) - FIELDS
        if unknown:
            raise _Bad(400, f"unknown field(s) {sorted(unknown)}; this takes "
                            f"{', '.join(sorted(FIELDS))}")
        at = _time(body.get("measured_at"), s)
        m = Measurement(point=point.id, ohm=body.get("ohm"), measured_at=at,
                        instrument=_text(body, "instrument"),
                        technician=_text(body, "technician") or user_of(request).name,
                        weather=_text(body, "weather"), soil=_text(body, "soil"),
                        notes=_text(body, "notes"))
        rows = await s.store.record([m], s.points, user_of(request).name, "api")
        await s.recorded(rows)
        return 201, {**rows[0].to_dict(),
                     "status": status(point, s.latest.get(point.id), s.clock())}

    async def import_sheet(request: web.Request) -> tuple[int, Any]:
        s = stage()
        unknown = set(request.query) - {"dry_run", "filename"}
        if unknown:
            raise _Bad(400, f"unknown parameter(s) {sorted(unknown)}; known: dry_run, "
                            f"filename")
        dry = request.query.get("dry_run", "false")
        if dry not in ("true", "false"):
            raise _Bad(400, "dry_run: true or false")
        data = await _body(request, MAX_SHEET)
        if not data.strip():
            raise _Bad(400, "the body must be the sheet (CSV or XLSX)")
        try:
            batch, problems = problems_of(data, s.tz, s.points, s.clock(),
                                          request.query.get("filename", ""))
        except SheetError as exc:
            raise _Bad(400, str(exc)) from None
        if problems:
            raise Refused(problems)
        if not batch:
            raise _Bad(400, "the sheet has a header row but no measurement")
        if dry == "true":
            return 200, {"checked": len(batch), "stored": 0}
        rows = await s.store.record(batch, s.points, user_of(request).name, "import")
        await s.recorded(rows)
        return 201, {"checked": len(batch), "stored": len(rows),
                     "points": sorted({r.point for r in rows})}

    app.router.add_get("/api/v1/grounding", guarded(list_points, ANY_ROLE))
    app.router.add_post("/api/v1/grounding/import", guarded(import_sheet, FIELD_ROLES))
    app.router.add_get("/api/v1/grounding/{point}", guarded(one, ANY_ROLE))
    app.router.add_post("/api/v1/grounding/{point}/measurements", guarded(record, FIELD_ROLES))


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _Bad(400, f"{name}: a string", [Problem(name, "a string")])
    return value


def _time(value: Any, s: GroundingStage) -> datetime:
    if value is None:
        return datetime.fromtimestamp(s.clock(), s.tz)
    if not isinstance(value, str):
        raise _Bad(400, "measured_at: an ISO 8601 time", [Problem("measured_at", "a string")])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _Bad(400, f"measured_at: '{value}' is not an ISO 8601 time (e.g. "
                        f"2026-10-12T09:30:00+08:00)",
                   [Problem("measured_at", "not an ISO 8601 time")]) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=s.tz)


async def _body(request: web.Request, limit: int) -> bytes:
    if (request.content_length or 0) > limit:
        raise _Bad(413, f"request body over {limit} bytes")
    raw = await request.content.read(limit + 1)
    if len(raw) > limit:
        raise _Bad(413, f"request body over {limit} bytes")
    return raw


def _json(data: Any, code: int = 200) -> web.Response:
    return web.json_response(data, status=code,
                             dumps=lambda d: json.dumps(d, ensure_ascii=False))
