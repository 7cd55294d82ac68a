"""Login sessions of the web UI: a random id in a cookie, mapped in memory to the user.

Why in memory: an agent serves a handful of people; losing the sessions when the agent
restarts only asks them to paste their token again, and nothing about a session ever touches
the disk. The id (256 random bits) travels in an HttpOnly, SameSite=Strict cookie, so page
scripts cannot read it and other sites cannot make the browser send it. Each session has its
own CSRF token, which every state-changing form carries and the server compares.

A session ends at logout, after `idle` seconds without a request, or as soon as its user's
token is removed or re-issued in the tokens file (`Users.current`).
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from agent.auth import User, Users

COOKIE = "vigil_session"
IDLE = 8 * 3600.0  # a working day: the technician logs in once per shift
MAX_SESSIONS = 10000


@dataclass
class Session:
    id: str
    user: User
    csrf: str
    seen: float

    def csrf_ok(self, token: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), token.encode())


class Sessions:
    def __init__(self, users: Users, clock: Callable[[], float] = time.monotonic,
                 idle: float = IDLE, max_sessions: int = MAX_SESSIONS) -> None:
        self.users, self.clock, self.idle = users, clock, idle
        self.max_sessions = max_sessions
        self._by_id: dict[str, Session] = {}

    def create(self, user: User) -> Session:
        if len(self._by_id) >= self.max_sessions:
            self._expire()
            if len(self._by_id) >= self.max_sessions:  # still full: the oldest goes
                del self._by_id[min(self._by_id.values(), key=lambda s: s.seen).id]
        session = Session(secrets.token_urlsafe(32), user, secrets.token_urlsafe(32),
                          self.clock())
        self._by_id[session.id] = session
        return session

    def get(self, session_id: str | None) -> Session | None:
        session = self._by_id.get(session_id or "")
        if session is None:
            return None
        now = self.clock()
        if now - session.seen > self.idle or not self.users.current(session.user):
            self._by_id.pop(session.id, None)
            return None
        session.seen = now
        return session

    def end(self, session_id: str | None) -> None:
        self._by_id.pop(session_id or "", None)

    def of(self, request: web.Request) -> Session | None:
        return self.get(request.cookies.get(COOKIE))

    def user(self, request: web.Request) -> User | None:
        """The Authenticator's `session` hook: report links of the UI open with the login."""
        session = self.of(request)
        return session.user if session else None

    def _expire(self) -> None:
        now = self.clock()
        self._by_id = {k: s for k, s in self._by_id.items() if now - s.seen <= self.idle}

    def __len__(self) -> int:
        return len(self._by_id)


def set_cookie(response: web.StreamResponse, request: web.Request, session: Session) -> None:
    # Path=/: the report links under /api/v1/reports/ carry it too (GET only, see auth.py)
    response.set_cookie(COOKIE, session.id, path="/", httponly=True, samesite="Strict",
                        secure=request.secure)


def clear_cookie(response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
