"""The web UI's pages and forms (server-rendered HTML, no script).

Everything a form changes goes through the same functions and the same role table as the
JSON API: `tickets_api.apply_action` and `may` for tickets, `inspections_api.apply_transition`
and its TRANSITIONS for inspections. A role the API refuses gets a 403 page here, and the
pages only show the buttons the user's role may press. Reading is open to every logged-in
user, as in the API (any valid token may read).

Report links point at the API itself (/api/v1/reports/...): the login session cookie is
honoured there for GET only (agent/auth.py `Authenticator.session`), so a link opens the
report the API renders, with the session's user.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

from aiohttp import web
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from sqlalchemy.exc import DBAPIError, OperationalError

from agent.api import rule_status
from agent.auth import ANY_ROLE, Authenticator
from agent.inspections import IllegalState, InspectionNotFound
from agent.inspections_api import TRANSITIONS, apply_transition
from agent.reports.labels import LANGS, cell, when
from agent.tickets.models import CAUSES, STATES
from agent.tickets.store import (
    IllegalTransition,
    InvalidInput,
    TicketFilter,
    TicketNotFound,
    allowed_actions,
)
from agent.tickets_api import ACTIONS, BadRequest, _id, apply_action, may
from agent.webui.sessions import Session, Sessions, clear_cookie, set_cookie
from agent.webui.texts import words

if TYPE_CHECKING:
    from agent.daemon import Agent
    from agent.inspections import InspectionService
    from agent.tickets.store import TicketStore

HERE = Path(__file__).parent
LANG_COOKIE = "vigil_lang"
LOGIN_COOKIE = "vigil_login"  # the login form's own CSRF value (double submit)
SESSION_KEY = web.RequestKey("vigil.webui.session", Session)
# menu entry -> roles it is shown to (every logged-in user may still read every page)
MENU: dict[str, frozenset[str]] = {
    "tickets": frozenset({"engineer", "technician", "viewer"}),
    "confirm": frozenset({"owner", "engineer", "viewer"}),
    "inspections": ANY_ROLE,
    "reports": ANY_ROLE,
    "inventory": frozenset({"engineer", "viewer"}),
    "rules": frozenset({"engineer", "viewer"}),
}
HOME = {"engineer": "tickets", "technician": "tickets", "owner": "confirm",
        "viewer": "tickets"}
OPEN_STATES = tuple(s for s in STATES if s != "closed")
LIST_LIMIT = 200
HEADERS = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Page = Callable[[web.Request, Session], Awaitable[web.StreamResponse]]


class Refused(Exception):
    """A request the UI answers with an error page (status and message in the user's
    language)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def add_webui_routes(app: web.Application, agent: Agent, auth: Authenticator,
                     clock: Callable[[], float] = time.monotonic) -> WebUI:
    """Serve the UI under /ui/ (and redirect / there); logins share `auth`'s users and its
    failed-authentication limit."""
    ui = WebUI(agent, auth, clock)
    ui.register(app)
    return ui


class WebUI:
    def __init__(self, agent: Agent, auth: Authenticator,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.agent, self.auth = agent, auth
        self.sessions = Sessions(auth.users, clock)
        auth.session = self.sessions.user
        self.env = Environment(loader=FileSystemLoader(HERE / "templates"),
                               autoescape=select_autoescape(default=True),
                               undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)

    def register(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/", _to_ui)
        r.add_get("/ui", _to_ui)
        r.add_static("/ui/static", HERE / "static")
        r.add_get("/ui/", self.page(self.home))
        r.add_get("/ui/login", self.login_page)
        r.add_post("/ui/login", self.login)
        r.add_post("/ui/logout", self.page(self.logout, change=True))
        r.add_get("/ui/lang/{lang}", self.set_lang)
        r.add_get("/ui/tickets", self.page(self.tickets))
        r.add_get("/ui/tickets/{id}", self.page(self.ticket))
        r.add_post("/ui/tickets/{id}", self.page(self.ticket_action, change=True))
        r.add_get("/ui/confirm", self.page(self.confirm))
        r.add_get("/ui/inspections", self.page(self.inspections))
        r.add_post("/ui/inspections/{id}", self.page(self.inspection_action, change=True))
        r.add_get("/ui/reports", self.page(self.reports))
        r.add_get("/ui/inventory", self.page(self.inventory))
        r.add_get("/ui/rules", self.page(self.rules))

    # -- plumbing ---------------------------------------------------------------------------

    def page(self, handler: Page, change: bool = False
             ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        """A logged-in page; `change`: a POST whose form must carry the session's CSRF
        token."""

        async def run(request: web.Request) -> web.StreamResponse:
            session = self.sessions.of(request)
            if session is None:
                if change:
                    return self.render(request, None, "error.html.j2", status=403,
                                       message=self.w(request)["login_expired"])
                raise web.HTTPSeeOther(f"/ui/login?{urlencode({'next': request.path_qs})}")
            request[SESSION_KEY] = session
            try:
                if change:
                    form = await request.post()
                    if not session.csrf_ok(str(form.get("csrf", ""))):
                        raise Refused(403, self.w(request)["csrf"])
                return await handler(request, session)
            except Refused as exc:
                return self.render(request, session, "error.html.j2", status=exc.status,
                                   message=str(exc))

        run.__name__ = handler.__name__
        return run

    def lang(self, request: web.Request) -> str:
        lang = request.cookies.get(LANG_COOKIE, "zh")
        return lang if lang in LANGS else "zh"

    def w(self, request: web.Request) -> dict[str, Any]:
        return words(self.lang(request))

    def render(self, request: web.Request, session: Session | None, template: str,
               status: int = 200, **context: Any) -> web.Response:
        lang = self.lang(request)
        w = words(lang)
        role = session.user.role if session else None
        menu = [(key, w["nav"][key], f"/ui/{key}") for key, roles in MENU.items()
                if role in roles]
        html = self.env.get_template(template).render(
            lang=lang, w=w, user=session.user if session else None,
            csrf=session.csrf if session else "", menu=menu, path=request.path,
            here=quote(request.path_qs, safe="/"), when=lambda t: when(t, None),
            cell=lambda v: cell(v, None, lang),
            epoch=lambda s: when(datetime.fromtimestamp(s, UTC), None) if s else "-",
            **context)
        response = web.Response(text=html, status=status, content_type="text/html",
                                headers=HEADERS)
        return response

    def store(self) -> TicketStore:
        tickets = self.agent.tickets
        if tickets is None or not tickets.ready:
            raise BadRequest(503, "the ticket store is not available")
        return tickets.store

    def inspection_service(self) -> InspectionService:
        insp, tickets = self.agent.inspections, self.agent.tickets
        if insp is None or tickets is None or not tickets.ready:
            raise BadRequest(503, "inspections are not available")
        return insp.service

    def refusal(self, request: web.Request, exc: Exception) -> Refused:
        """The API's error, as the UI says it (same statuses as the API)."""
        w = self.w(request)
        if isinstance(exc, BadRequest):
            if exc.status == 503:
                return Refused(503, w["unavailable"])
            return Refused(exc.status, w["refused"].format(why=exc))
        if isinstance(exc, TicketNotFound | InspectionNotFound):
            return Refused(404, w["not_found"].format(what=exc))
        if isinstance(exc, IllegalTransition | IllegalState):
            return Refused(409, w["refused"].format(why=exc))
        if isinstance(exc, InvalidInput):
            return Refused(400, w["refused"].format(why=exc))
        return Refused(503, w["unavailable"])

    def names(self) -> tuple[dict[str, str], dict[str, Any]]:
        inventory = self.agent.config.inventory
        return ({s.id: s.name or s.id for s in inventory.sites.values()},
                dict(inventory.devices))

    # -- login, logout, language ------------------------------------------------------------

    async def login_page(self, request: web.Request, status: int = 200, error: str = "",
                         headers: dict[str, str] | None = None) -> web.Response:
        if status == 200 and self.sessions.of(request) is not None:
            raise web.HTTPSeeOther("/ui/")
        value = request.cookies.get(LOGIN_COOKIE) or secrets.token_urlsafe(24)
        response = self.render(request, None, "login.html.j2", status=status, error=error,
                               login_csrf=value, next=_next(request.query.get("next")))
        response.headers.update(headers or {})
        response.set_cookie(LOGIN_COOKIE, value, path="/ui/", httponly=True,
                            samesite="Strict", secure=request.secure)
        return response

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        w = self.w(request)
        expected = request.cookies.get(LOGIN_COOKIE, "")
        given = str(form.get("login_csrf", ""))
        if not expected or not secrets.compare_digest(expected.encode(), given.encode()):
            return await self.login_page(request, 400, w["login_expired"])
        try:
            user = self.auth.token_user(request.remote or "?", str(form.get("token", "")).strip())
        except web.HTTPTooManyRequests as exc:
            wait = exc.headers.get("Retry-After", "1")
            return await self.login_page(request, 429, w["too_many"].format(s=wait),
                                         {"Retry-After": wait})
        except web.HTTPUnauthorized:
            return await self.login_page(request, 401, w["bad_token"])
        session = self.sessions.create(user)
        response = web.HTTPSeeOther(_next(str(form.get("next", ""))) or "/ui/")
        set_cookie(response, request, session)
        response.del_cookie(LOGIN_COOKIE, path="/ui/")
        raise response

    async def logout(self, request: web.Request, session: Session) -> web.Response:
        self.sessions.end(session.id)
        response = web.HTTPSeeOther("/ui/login")
        clear_cookie(response)
        raise response

    async def set_lang(self, request: web.Request) -> web.Response:
        lang = request.match_info["lang"]
        response = web.HTTPSeeOther(_next(request.query.get("next")) or "/ui/")
        if lang in LANGS:
            response.set_cookie(LANG_COOKIE, lang, path="/", max_age=365 * 86400,
                                samesite="Lax", secure=request.secure)
        raise response

    async def home(self, request: web.Request, session: Session) -> web.Response:
        raise web.HTTPSeeOther(f"/ui/{HOME[session.user.role]}")

    # -- tickets ----------------------------------------------------------------------------

    async def tickets(self, request: web.Request, session: Session) -> web.Response:
        sites, devices = self.names()
        site = request.query.get("site") or None
        state = request.query.get("state") or None
        site = site if site in sites else None
        state = state if state in OPEN_STATES else None
        try:
            found = await self.store().list(TicketFilter(not_closed=True, site=site,
                                                         state=state, limit=LIST_LIMIT))
        except (BadRequest, OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        found.sort(key=lambda t: (t.level, t.opened_at))
        return self.render(request, session, "tickets.html.j2", tickets=found, sites=sites,
                           devices=devices, site=site or "", state=state or "",
                           states=OPEN_STATES, agent_id=self.agent.config.settings.agent.id)

    async def ticket(self, request: web.Request, session: Session, status: int = 200,
                     error: str = "") -> web.Response:
        from agent.reports.ticket import load_ticket_report

        try:
            ticket_id = _id(request)
            tickets = self.agent.tickets
            report = await load_ticket_report(
                self.store(), ticket_id, policy=tickets.policy if tickets else None,
                inventory=self.agent.config.inventory)
        except (BadRequest, TicketNotFound, OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        lang, role = self.lang(request), session.user.role
        state = report.ticket.state
        actions = [s for s, (name, _) in ACTIONS.items()
                   if (name in allowed_actions(state) or name == "comment") and may(role, s)]
        done = request.query.get("done", "")
        return self.render(request, session, "ticket.html.j2", status=status, error=error,
                           k=report.ticket, header=report.header(lang), scene=report.scene(),
                           log=report.log(lang), actions=actions, forms=FORMS, causes=CAUSES,
                           done=self.w(request)["act"].get(done, ""))

    async def ticket_action(self, request: web.Request, session: Session) -> web.Response:
        form = await request.post()
        suffix = str(form.get("action", ""))
        w = self.w(request)
        if suffix not in ACTIONS:
            raise Refused(400, w["refused"].format(why=f"unknown action {suffix!r}"))
        if not may(session.user.role, suffix):
            raise Refused(403, w["forbidden"].format(role=w["role"][session.user.role],
                                                     what=w["act"][suffix]))
        try:
            ticket_id = _id(request)
            await apply_action(self.store(), ticket_id, session.user.name, suffix,
                               _body(form, FORMS[suffix]))
        except (BadRequest, TicketNotFound, IllegalTransition, InvalidInput,
                OperationalError, DBAPIError) as exc:
            refused = self.refusal(request, exc)
            if isinstance(exc, TicketNotFound) or refused.status == 503:
                raise refused from None
            return await self.ticket(request, session, refused.status, str(refused))
        back = "/ui/confirm" if form.get("back") == "confirm" else f"/ui/tickets/{ticket_id}"
        raise web.HTTPSeeOther(f"{back}?{urlencode({'done': suffix})}")

    async def confirm(self, request: web.Request, session: Session) -> web.Response:
        from agent.reports.ticket import load_ticket_report

        sites, devices = self.names()
        try:
            store = self.store()
            waiting = await store.list(TicketFilter(state="resolved", limit=LIST_LIMIT))
            reports = [await load_ticket_report(store, t.id) for t in waiting]
        except (BadRequest, OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        role = session.user.role
        return self.render(request, session, "confirm.html.j2",
                           items=[(r.ticket, r.repair()) for r in reports], sites=sites,
                           devices=devices, can_confirm=may(role, "confirm"),
                           can_reopen=may(role, "reopen"), forms=FORMS,
                           done=self.w(request)["act"].get(request.query.get("done", ""), ""))

    # -- inspections ------------------------------------------------------------------------

    async def inspections(self, request: web.Request, session: Session) -> web.Response:
        sites, _ = self.names()
        try:
            found = await self.inspection_service().list()
        except (BadRequest, InvalidInput, OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        order = {"submitted": 0, "open": 1, "signed": 2}
        found.sort(key=lambda i: (order.get(i.state, 3), i.due_at))
        role = session.user.role
        allowed = {name for name, (roles, _) in TRANSITIONS.items() if role in roles}
        schedules = self.agent.config.settings.inspections.schedules
        titles = {kind: (s.title_zh if self.lang(request) == "zh" else s.title_en) or kind
                  for kind, s in schedules.items()}
        return self.render(request, session, "inspections.html.j2", items=found, sites=sites,
                           allowed=allowed, titles=titles, fields=INSPECTION_FORMS,
                           error=request.query.get("error", ""),
                           done=self.w(request)["act"].get(request.query.get("done", ""), ""))

    async def inspection_action(self, request: web.Request, session: Session
                                ) -> web.Response:
        form = await request.post()
        name = str(form.get("action", ""))
        w = self.w(request)
        if name not in TRANSITIONS:
            raise Refused(400, w["refused"].format(why=f"unknown action {name!r}"))
        if session.user.role not in TRANSITIONS[name][0]:
            raise Refused(403, w["forbidden"].format(role=w["role"][session.user.role],
                                                     what=w["act"][name]))
        raw = request.match_info["id"]
        if not raw.isascii() or not raw.isdigit():
            raise Refused(404, w["not_found"].format(what=raw))
        try:
            await apply_transition(self.inspection_service(), int(raw), session.user.name,
                                   name, _body(form, INSPECTION_FORMS[name]))
        except (BadRequest, InspectionNotFound, IllegalState, InvalidInput,
                OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        raise web.HTTPSeeOther(f"/ui/inspections?{urlencode({'done': name})}")

    # -- reports ----------------------------------------------------------------------------

    async def reports(self, request: web.Request, session: Session) -> web.Response:
        sites, devices = self.names()
        try:
            recent = await self.store().list(TicketFilter(limit=LIST_LIMIT))
        except (BadRequest, OperationalError, DBAPIError) as exc:
            raise self.refusal(request, exc) from None
        recent.sort(key=lambda t: t.id, reverse=True)
        last_month = (datetime.now().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        return self.render(request, session, "reports.html.j2", tickets=recent[:50],
                           sites=sites, devices=devices, month=last_month)

    # -- the engineer's pages ---------------------------------------------------------------

    async def inventory(self, request: web.Request, session: Session) -> web.Response:
        sites, _ = self.names()
        by_site: dict[str, list[Any]] = {site: [] for site in sites}
        for entry in self.agent.state.devices.values():
            by_site.setdefault(entry.device.site, []).append(entry)
        groups = []
        for site, entries in by_site.items():
            entries.sort(key=lambda e: (e.device.kind, e.device.id))
            counts = Counter({True: "up", False: "down", None: "unknown"}[e.up]
                             for e in entries)
            groups.append((site, entries, counts))
        return self.render(request, session, "inventory.html.j2", groups=groups, sites=sites)

    async def rules(self, request: web.Request, session: Session) -> web.Response:
        active = sorted(self.agent.rules.engine.active.values(),
                        key=lambda f: (f.level, f.fired_at or f.pending_since))
        by_level = Counter(f.level for f in active if f.state == "firing")
        return self.render(request, session, "rules.html.j2",
                           rules=rule_status(self.agent), faults=active,
                           by_level=[(level, by_level.get(level, 0)) for level in (1, 2, 3, 4)])


# each form's fields, from the API's own definition: (name, required, widget)
def _form(fields: dict[str, tuple[type, bool]]) -> list[tuple[str, bool, str]]:
    return [(name, required, "select" if name == "cause_category" else "lines"
             if kind is list else "text") for name, (kind, required) in fields.items()]


FORMS = {suffix: _form(fields) for suffix, (_, fields) in ACTIONS.items()}
INSPECTION_FORMS = {name: _form(fields) for name, (_, fields) in TRANSITIONS.items()}


def _body(form: Any, fields: list[tuple[str, bool, str]]) -> dict[str, Any]:
    """The API body a form stands for: blank optional fields left out, lines as a list."""
    body: dict[str, Any] = {}
    for name, required, widget in fields:
        value = str(form.get(name, "")).strip()
        if widget == "lines":
            lines = [line.strip() for line in value.splitlines() if line.strip()]
            if lines:
                body[name] = lines
        elif value or required:
            body[name] = value
    return body


def _next(value: str | None) -> str:
    """A redirect target inside the UI only (never another site)."""
    if value and value.startswith("/ui/") and "\\" not in value and "//" not in value:
        return value
    return ""


async def _to_ui(_request: web.Request) -> web.Response:
    raise web.HTTPFound("/ui/")
