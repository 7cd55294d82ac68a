"""The UPS battery tests' JSON API (read by `vigil ups test`).

POST /api/v1/ups/{device}/tests          {kind: quick|deep}           engineer, technician
POST /api/v1/ups/{device}/tests/manual   {kind, started_at, ended_at, discharge_seconds?,
                                          result: pass|warning|error, notes?}
                                                                      engineer, technician
GET  /api/v1/ups/{device}/tests          the UPS's tests, the discharge-time trend, the audit
GET  /api/v1/ups/tests/{id}              one test with its curve (samples) and timeline

Starting a test writes to a device (SNMP SET), so only the field roles may; reading needs any
valid token. Errors are JSON `{"error": ...}`: 400 bad input, 404 unknown device or test,
409 refused (`reason`: not_ups, no_test_support, no_snmp, no_readings, on_battery, busy,
set_refused, unreachable; `error_zh` in Chinese), 503 store unavailable.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator, user_of
from agent.ups_test import NotFound, Refused, trend

if TYPE_CHECKING:
    from agent.ups_test import UpsTests

FIELD_ROLES = frozenset({"engineer", "technician"})
MAX_BODY = 64 * 1024
MANUAL_FIELDS = {"kind", "started_at", "ended_at", "discharge_seconds", "result", "notes"}


class BadRequest(Exception):
    pass


def add_ups_test_routes(app: web.Application, get_service: Callable[[], UpsTests | None],
                        auth: Authenticator) -> None:
    def service() -> UpsTests:
        found = get_service()
        if found is None:
            raise web.HTTPServiceUnavailable(
                text=json.dumps({"error": "UPS tests need the ticket store (tickets.enabled)"}),
                content_type="application/json")
        return found

    def guarded(handler: Callable[[web.Request], Awaitable[Any]], roles: frozenset[str]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @auth.require(roles)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                status, body = await handler(request)
                return web.json_response(body, status=status)
            except BadRequest as exc:
                return _error(400, str(exc))
            except ValueError as exc:
                return _error(400, str(exc))
            except NotFound as exc:
                return _error(404, str(exc))
            except Refused as exc:
                return _error(409, str(exc), reason=exc.reason, error_zh=exc.message_zh)
            except (OperationalError, DBAPIError) as exc:
                return _error(503, f"the ticket store failed: {type(exc.orig).__name__}")

        return run

    async def start(request: web.Request) -> tuple[int, Any]:
        body = await _body(request)
        unknown = set(body) - {"kind"}
        if unknown:
            raise BadRequest(f"unknown field(s) {sorted(unknown)}; known: kind")
        kind = body.get("kind", "quick")
        test = await service().start(request.match_info["device"], kind,
                                     user_of(request).name)
        return 202, test.to_dict()

    async def manual(request: web.Request) -> tuple[int, Any]:
        body = await _body(request)
        unknown = set(body) - MANUAL_FIELDS
        if unknown:
            raise BadRequest(f"unknown field(s) {sorted(unknown)}; known: "
                             f"{', '.join(sorted(MANUAL_FIELDS))}")
        for name in ("kind", "started_at", "ended_at", "result"):
            if not isinstance(body.get(name), str):
                raise BadRequest(f"{name} is required (a string)")
        discharge = body.get("discharge_seconds")
        if discharge is not None and (isinstance(discharge, bool)
                                      or not isinstance(discharge, int | float)):
            raise BadRequest("discharge_seconds: a number of seconds")
        notes = body.get("notes", "")
        if not isinstance(notes, str):
            raise BadRequest("notes: a string")
        test = await service().record_manual(
            request.match_info["device"], user_of(request).name, body["kind"],
            _time(body, "started_at"), _time(body, "ended_at"), discharge, body["result"], notes)
        return 201, test.to_dict()

    async def listing(request: web.Request) -> tuple[int, Any]:
        device = request.match_info["device"]
        s = service()
        if device not in s.config().inventory.devices:
            raise NotFound(f"no device '{device}' in the inventory")
        tests = await s.store.tests(device)
        events = await s.store.events(device=device)
        return 200, {"device": device, "tests": [t.to_dict() for t in tests],
                     "trend": trend(tests), "audit": [e.to_dict() for e in events]}

    async def one(request: web.Request) -> tuple[int, Any]:
        raw = request.match_info["id"]
        if not raw.isascii() or not raw.isdigit() or not 0 < int(raw) < 2**63:
            raise BadRequest(f"test id {raw!r}: a positive integer")
        s = service()
        test = await s.store.get(int(raw))
        events = await s.store.events(test_id=test.id)
        return 200, {**test.to_dict(curve=True), "timeline": [e.to_dict() for e in events]}

    app.router.add_post("/api/v1/ups/{device}/tests", guarded(start, FIELD_ROLES))
    app.router.add_post("/api/v1/ups/{device}/tests/manual", guarded(manual, FIELD_ROLES))
    app.router.add_get("/api/v1/ups/{device}/tests", guarded(listing, ANY_ROLE))
    app.router.add_get("/api/v1/ups/tests/{id}", guarded(one, ANY_ROLE))


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequest("body over 64 KiB")
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _time(body: dict[str, Any], name: str) -> datetime:
    try:
        return datetime.fromisoformat(body[name])
    except ValueError:
        raise BadRequest(f"{name}: an ISO 8601 time like 2026-11-20T09:30:00+08:00") from None
