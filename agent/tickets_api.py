"""The tickets' JSON API (read by `vigil tickets`); the spec is agent/openapi.yaml, served at
GET /api/v1/openapi.json.

GET  /api/v1/tickets                     filters: state (comma-separated), level, site,
                                         device, rule, agent (the branch agent that opened
                                         it), not_closed, limit, offset; every branch's
                                         tickets when agents share one store
GET  /api/v1/tickets/{id}                one ticket with its timeline and allowed actions
POST /api/v1/tickets/{id}/acknowledge    {note?}
POST /api/v1/tickets/{id}/diagnosis      {diagnosis, plan?}
POST /api/v1/tickets/{id}/repair/start   {plan?}
POST /api/v1/tickets/{id}/resolve        {cause_category, repair, parts_replaced?}
POST /api/v1/tickets/{id}/confirm        {note?}              owner role only
POST /api/v1/tickets/{id}/close          {note?}
POST /api/v1/tickets/{id}/reopen         {reason}
POST /api/v1/tickets/{id}/comments       {text}

Every request needs `Authorization: Bearer TOKEN` (agent/auth.py); the actor recorded on the
timeline is the token's user. Errors are JSON `{"error": ...}`: 400 malformed JSON or
invalid input, 401 no/unknown token, 403 wrong role, 404 unknown ticket, 409 illegal state
change (with `current` and `allowed`), 413 body over 64 KiB, 429 too many failed
authentications, 503 ticket store unavailable. A request that fails changes nothing: input
is checked before the store is called, and the store's transaction rolls back on its errors.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from aiohttp import web
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.auth import ANY_ROLE, Authenticator, Users, user_of
from agent.tickets.models import CAUSES, STATES
from agent.tickets.store import (
    IllegalTransition,
    InvalidInput,
    TicketFilter,
    TicketNotFound,
    allowed_actions,
)

if TYPE_CHECKING:
    from agent.tickets.models import Ticket
    from agent.tickets.store import TicketStore

MAX_BODY = 64 * 1024
MAX_LIMIT = 1000
MAX_ID = 2**63 - 1
SPEC_FILE = Path(__file__).with_name("openapi.yaml")

# Who may do what. Reading: any valid token (viewer included).
FIELD_ROLES = frozenset({"engineer", "technician"})
ROLES: dict[str, frozenset[str]] = {
    "acknowledge": FIELD_ROLES,
    "diagnose": FIELD_ROLES,
    "start_repair": FIELD_ROLES,
    "resolve": FIELD_ROLES,
    "confirm": frozenset({"owner"}),  # the owner's acceptance: never a technician
    "close": frozenset({"engineer", "owner"}),
    "reopen": frozenset({"engineer", "technician", "owner"}),
    "comment": frozenset({"engineer", "technician", "owner"}),
}
LIST_PARAMS = {"state", "level", "site", "device", "rule", "agent", "not_closed", "limit",
               "offset"}


class BadRequest(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.extra = status, extra


# path suffix -> (store action, {field: (type, required)})
ACTIONS: dict[str, tuple[str, dict[str, tuple[type, bool]]]] = {
    "acknowledge": ("acknowledge", {"note": (str, False)}),
    "diagnosis": ("diagnose", {"diagnosis": (str, True), "plan": (str, False)}),
    "repair/start": ("start_repair", {"plan": (str, False)}),
    "resolve": ("resolve", {"cause_category": (str, True), "repair": (str, True),
                            "parts_replaced": (list, False)}),
    "confirm": ("confirm", {"note": (str, False)}),
    "close": ("close", {"note": (str, False)}),
    "reopen": ("reopen", {"reason": (str, True)}),
    "comments": ("comment", {"text": (str, True)}),
}


def add_ticket_routes(app: web.Application,
                      get_store: Callable[[], TicketStore | None],
                      users: Users | Authenticator) -> None:
    """Register the tickets API (and GET /api/v1/openapi.json) on `app`. `get_store` is
    called per request (None: 503, e.g. while the store is starting)."""
    auth = users if isinstance(users, Authenticator) else Authenticator(users)

    def store() -> TicketStore:
        s = get_store()
        if s is None:
            raise BadRequest(503, "the ticket store is not available")
        return s

    def guarded(handler: Callable[[web.Request], Awaitable[Any]], roles: frozenset[str]
                ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        @auth.require(roles)
        async def run(request: web.Request) -> web.StreamResponse:
            try:
                return _json(await handler(request))
            except BadRequest as exc:
                return _error(exc.status, str(exc), **exc.extra)
            except TicketNotFound as exc:
                return _error(404, str(exc))
            except IllegalTransition as exc:
                return _error(409, str(exc), current=exc.current, allowed=exc.allowed)
            except InvalidInput as exc:
                return _error(400, str(exc))
            except (OperationalError, DBAPIError) as exc:
                return _error(503, f"the ticket store failed: {type(exc.orig).__name__}")

        return run

    async def list_tickets(request: web.Request) -> list[dict[str, Any]]:
        tickets = await store().list(_filters(request.query))
        return [_ticket(t) for t in tickets]

    async def one(request: web.Request) -> dict[str, Any]:
        ticket_id = _id(request)
        s = store()
        ticket = await s.get(ticket_id)
        events = await s.timeline(ticket_id)
        return {**_ticket(ticket), "timeline": [e.to_dict() for e in events]}

    def action(suffix: str) -> Callable[[web.Request], Awaitable[Any]]:
        async def run(request: web.Request) -> dict[str, Any]:
            ticket_id = _id(request)
            body = await _body(request)
            return _ticket(await apply_action(store(), ticket_id, user_of(request).name,
                                              suffix, body))

        return run

    async def spec(_request: web.Request) -> web.Response:
        return web.json_response(openapi(), dumps=_dumps)

    app.router.add_get("/api/v1/openapi.json", spec)
    app.router.add_get("/api/v1/tickets", guarded(list_tickets, ANY_ROLE))
    app.router.add_get("/api/v1/tickets/{id}", guarded(one, ANY_ROLE))
    for suffix, (name, _) in ACTIONS.items():
        app.router.add_post(f"/api/v1/tickets/{{id}}/{suffix}",
                            guarded(action(suffix), ROLES[name]))


def may(role: str, suffix: str) -> bool:
    """Whether `role` may take the ticket action at path `suffix` (a key of ACTIONS): the
    API's rule, which the web UI also follows to refuse and to hide its buttons."""
    return role in ROLES[ACTIONS[suffix][0]]


async def apply_action(store: TicketStore, ticket_id: int, actor: str, suffix: str,
                       body: Any) -> Ticket:
    """Check `body` for the ticket action at path `suffix` and take it in the store as
    `actor` (the API and the web UI both come here; roles are the caller's to check with
    `may`). Raises BadRequest or the store's errors; nothing changes on any of them."""
    name, fields = ACTIONS[suffix]
    body = _fields(body, fields)
    if name == "resolve":
        return await store.resolve(ticket_id, actor, body["cause_category"], body["repair"],
                                   body.get("parts_replaced", []))
    return await getattr(store, name)(ticket_id, actor, **body)


@cache
def openapi() -> dict[str, Any]:
    """The OpenAPI 3.1 document (agent/openapi.yaml)."""
    return yaml.safe_load(SPEC_FILE.read_text(encoding="utf-8"))


def _id(request: web.Request) -> int:
    raw = request.match_info["id"]
    if not raw.isascii() or not raw.isdigit():
        raise BadRequest(400, f"ticket id {raw!r}: a positive integer")
    value = int(raw)
    if not 1 <= value <= MAX_ID:
        raise BadRequest(404, f"no ticket {raw}")
    return value


def _filters(q: Any) -> TicketFilter:
    unknown = set(q) - LIST_PARAMS
    if unknown:
        raise BadRequest(400, f"unknown parameter(s) {sorted(unknown)}; known: "
                              f"{', '.join(sorted(LIST_PARAMS))}")
    for name in q:
        if len(q.getall(name)) > 1:
            raise BadRequest(400, f"{name}: give it once (several states: state=a,b)")
    state = None
    if "state" in q:
        state = q["state"].split(",")
        bad = [s for s in state if s not in STATES]
        if bad:
            raise BadRequest(400, f"state: unknown {bad}; known: {', '.join(STATES)}")
    level = None
    if "level" in q:
        try:
            level = [int(v) for v in q["level"].split(",")]
        except ValueError:
            raise BadRequest(400, "level: 1-4, or several like 1,2") from None
        if any(not 1 <= v <= 4 for v in level):
            raise BadRequest(400, "level: 1-4, or several like 1,2")
    not_closed = q.get("not_closed", "false")
    if not_closed not in ("true", "false"):
        raise BadRequest(400, "not_closed: true or false")
    limit = _int(q, "limit", 100, 1, MAX_LIMIT)
    offset = _int(q, "offset", 0, 0, MAX_ID)
    return TicketFilter(state=state, level=level, site=q.get("site"), device=q.get("device"),
                        rule=q.get("rule"), agent_id=q.get("agent"),
                        not_closed=not_closed == "true", limit=limit, offset=offset)


def _int(q: Any, name: str, default: int, low: int, high: int) -> int:
    raw = q.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(400, f"{name}: an integer {low}-{high}")
    return int(raw)


async def _body(request: web.Request) -> Any:
    if (request.content_length or 0) > MAX_BODY:
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    raw = await request.content.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise BadRequest(413, f"request body over {MAX_BODY} bytes")
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(400, f"the body must be JSON: {exc}") from None


def _fields(body: Any, fields: dict[str, tuple[type, bool]]) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest(400, "the body must be a JSON object")
    unknown = set(body) - set(fields)
    if unknown:
        raise BadRequest(400, f"unknown field(s) {sorted(unknown)}; this takes "
                              f"{', '.join(fields) or 'nothing'}")
    for name, (kind, required) in fields.items():
        if name not in body:
            if required:
                raise BadRequest(400, f"{name} is required")
            continue
        value = body[name]
        if kind is str and not isinstance(value, str):
            raise BadRequest(400, f"{name}: a string")
        if kind is list and (not isinstance(value, list)
                             or not all(isinstance(v, str) and v.strip() for v in value)):
            raise BadRequest(400, f"{name}: a list of non-empty strings")
        if required and isinstance(value, str) and not value.strip():
            raise BadRequest(400, f"{name} is required (not blank)")
        if any("\x00" in v for v in ([value] if isinstance(value, str) else value)):
            raise BadRequest(400, f"{name}: NUL characters are not allowed")
    if "cause_category" in body and body["cause_category"] not in CAUSES:
        raise BadRequest(400, f"cause_category {body['cause_category']!r}: one of "
                              f"{', '.join(CAUSES)}")
    return body


def _ticket(ticket: Ticket) -> dict[str, Any]:
    return {**ticket.to_dict(), "allowed_actions": allowed_actions(ticket.state)}


def _json(data: Any) -> web.Response:
    return web.json_response(data, dumps=_dumps)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False)
