"""The inspections' JSON API (read by `vigil inspections`).

GET  /api/v1/inspections                    filters: site, kind, state
GET  /api/v1/inspections/{id}               sheet, results and timeline
POST /api/v1/inspections                    {site, kind, period}     create (idempotent)
POST /api/v1/inspections/{id}/refresh       pre-fill the sheet again (open only)
POST /api/v1/inspections/{id}/results       {results: [{item, device?, status, note?}]}
POST /api/v1/inspections/{id}/submit        {note?}
POST /api/v1/inspections/{id}/sign          {note?}                  owner role only
POST /api/v1/inspections/{id}/reject        {reason}                 owner role only
GET  /api/v1/inspections/{id}/sheet.xlsx    the sheet to fill (?lang=zh|en); sheet.csv too
POST /api/v1/inspections/{id}/sheet         a filled sheet (XLSX or CSV body) imported

Auth and errors as the tickets API (agent/tickets_api.py): 400 with `problems` (row,
column, message) when results or a sheet are refused, 409 with `current` on a wrong state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator, user_of
from agent.inspection_models import INSPECTION_STATES
from agent.inspection_sheet import XLSX_TYPE, read_sheet, to_csv, to_xlsx
from agent.inspections import (
    STATUS_ALIASES,
    IllegalState,
    InspectionNotFound,
    Problem,
    Row,
    SheetRefused,
)
from agent.tickets.store import InvalidInput
from agent.tickets_api import BadRequest, _body, _dumps, _error, _fields, _json

if TYPE_CHECKING:
    from agent.inspection_models import Inspection
    from agent.inspections import InspectionService

FIELD = frozenset({"engineer", "technician"})
OWNER = frozenset({"owner"})  # the owner's sign-off: never a technician
# transition -> (roles, body fields): the API's rule, which the web UI follows too
TRANSITIONS: dict[str, tuple[frozenset[str], dict[str, tuple[type, bool]]]] = {
    "submit": (FIELD, {"note": (str, False)}),
    "sign": (OWNER, {"note": (str, False)}),
    "reject": (OWNER, {"reason": (str, True)}),
}
MAX_SHEET = 4 * 1024 * 1024
MAX_ID = 2**63 - 1


def add_inspection_routes(app: web.Application,
                          get_service: Callable[[], InspectionService | None],
                          auth: Authenticator) -> None:
    """Register the inspections API on `app` (`get_service` None: 503)."""

    def service() -> InspectionService:
        s = get_service()
        if s is None:
            raise BadRequest(503, "inspections are not available (the ticket store is not "
                                  "open, or tickets/inspections are disabled)")
        return s

    def guarded(handler: Callable[[web.Request], Awaitable[Any]], roles: frozenset[str]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @auth.require(roles)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                answer = await handler(request)
                return answer if isinstance(answer, web.StreamResponse) else _json(answer)
            except BadRequest as exc:
                return _error(exc.status, str(exc), **exc.extra)
            except InspectionNotFound as exc:
                return _error(404, str(exc))
            except IllegalState as exc:
                return _error(409, str(exc), current=exc.current)
            except SheetRefused as exc:
                return _error(400, str(exc), problems=[p.to_dict() for p in exc.problems])
            except InvalidInput as exc:
                return _error(400, str(exc))
            except (OperationalError, DBAPIError) as exc:
                return _error(503, f"the store failed: {type(exc.orig).__name__}")

        return run

    async def list_all(request: web.Request) -> list[dict[str, Any]]:
        q = request.query
        unknown = set(q) - {"site", "kind", "state"}
        if unknown:
            raise BadRequest(400, f"unknown parameter(s) {sorted(unknown)}; known: kind, "
                                  "site, state")
        if "state" in q and q["state"] not in INSPECTION_STATES:
            raise BadRequest(400, f"state: one of {', '.join(INSPECTION_STATES)}")
        found = await service().list(q.get("site"), q.get("kind"), q.get("state"))
        return [i.summary() for i in found]

    async def one(request: web.Request) -> dict[str, Any]:
        return await service().get(_id(request))

    async def create(request: web.Request) -> web.Response:
        body = _fields(await _body(request), {"site": (str, True), "kind": (str, True),
                                              "period": (str, True)})
        inspection, created = await service().create(body["site"], body["kind"],
                                                     body["period"], user_of(request).name)
        return web.json_response({**inspection.summary(), "created": created},
                                 status=201 if created else 200, dumps=_dumps)

    async def refresh(request: web.Request) -> dict[str, Any]:
        inspection = await service().refresh(_id(request), user_of(request).name)
        return inspection.summary()

    async def results(request: web.Request) -> dict[str, Any]:
        inspection_id = _id(request)
        body = await _body(request)
        if not isinstance(body, dict) or set(body) != {"results"} \
                or not isinstance(body["results"], list):
            raise BadRequest(400, "the body must be {\"results\": [{item, device?, status, "
                                  "note?}, ...]}")
        rows = []
        for index, entry in enumerate(body["results"]):
            if not isinstance(entry, dict) or set(entry) - {"item", "device", "status", "note"} \
                    or not all(isinstance(entry.get(k, ""), str)
                               for k in ("item", "device", "status", "note")):
                raise SheetRefused([Problem(f"results[{index}]", "-", "an object with item, "
                                                                       "device?, status, note? "
                                                                       "(strings)")])
            if entry.get("status") not in STATUS_ALIASES:  # a sheet's cells may be loose
                raise SheetRefused([Problem(f"results[{index}]", "status", "one of "
                                            f"{', '.join(STATUS_ALIASES)}")])
            rows.append(Row(f"results[{index}]", entry.get("item"), entry.get("device", ""),
                            entry.get("status"), entry.get("note", "")))
        count = await service().record(inspection_id, user_of(request).name, rows)
        return {"recorded": count}

    def transition(name: str) -> Callable[[web.Request], Awaitable[Any]]:
        async def run(request: web.Request) -> dict[str, Any]:
            inspection_id = _id(request)
            body = await _body(request)
            inspection = await apply_transition(service(), inspection_id,
                                                user_of(request).name, name, body)
            return inspection.summary()

        return run

    def export(fmt: str) -> Callable[[web.Request], Awaitable[Any]]:
        async def run(request: web.Request) -> web.Response:
            lang = request.query.get("lang", "zh")
            if lang not in ("zh", "en"):
                raise BadRequest(400, "lang: zh or en")
            inspection = await service().get(_id(request))
            name = f"inspection-{inspection['site']}-{inspection['kind']}-" \
                   f"{inspection['period']}.{fmt}"
            if fmt == "xlsx":
                data = await asyncio.to_thread(to_xlsx, inspection, lang)
                kind = XLSX_TYPE
            else:
                data, kind = to_csv(inspection, lang), "text/csv; charset=utf-8"
            return web.Response(body=data, headers={
                "Content-Type": kind, "Content-Disposition": f'attachment; filename="{name}"'})

        return run

    async def import_sheet(request: web.Request) -> dict[str, Any]:
        inspection_id = _id(request)
        if (request.content_length or 0) > MAX_SHEET:
            raise BadRequest(413, f"sheet over {MAX_SHEET} bytes")
        data = await request.content.read(MAX_SHEET + 1)
        if len(data) > MAX_SHEET:
            raise BadRequest(413, f"sheet over {MAX_SHEET} bytes")
        rows = await asyncio.to_thread(read_sheet, data)
        count = await service().record(inspection_id, user_of(request).name, rows,
                                       source="import")
        return {"recorded": count}

    base = "/api/v1/inspections"
    app.router.add_get(base, guarded(list_all, ANY_ROLE))
    app.router.add_post(base, guarded(create, FIELD))
    app.router.add_get(base + "/{id}", guarded(one, ANY_ROLE))
    app.router.add_post(base + "/{id}/refresh", guarded(refresh, FIELD))
    app.router.add_post(base + "/{id}/results", guarded(results, FIELD))
    for name, (roles, _) in TRANSITIONS.items():
        app.router.add_post(f"{base}/{{id}}/{name}", guarded(transition(name), roles))
    app.router.add_get(base + "/{id}/sheet.xlsx", guarded(export("xlsx"), ANY_ROLE))
    app.router.add_get(base + "/{id}/sheet.csv", guarded(export("csv"), ANY_ROLE))
    app.router.add_post(base + "/{id}/sheet", guarded(import_sheet, FIELD))


async def apply_transition(service: InspectionService, inspection_id: int, actor: str,
                           name: str, body: Any) -> Inspection:
    """Check `body` for transition `name` (submit, sign, reject) and take it as `actor` (the
    API and the web UI both come here; roles are the caller's, from TRANSITIONS)."""
    body = _fields(body, TRANSITIONS[name][1])
    return await getattr(service, name)(inspection_id, actor, **body)


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_ID:
        raise BadRequest(400 if not raw.isdigit() else 404, f"inspection id {raw!r}: "
                                                            "a positive integer")
    return int(raw)

