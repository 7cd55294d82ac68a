"""Per-user API tokens and roles for the agent's HTTP API.

The tokens file (YAML) lists the users:

    users:
      - name: zhang.wei
        role: technician          # engineer | technician | owner | viewer
        token_sha256: 3f1c...     # SHA-256 (hex) of the token; the token itself is never stored

`vigil tokens add NAME --role R --file F` makes a token, prints it once and appends its hash.

Why SHA-256 and not a slow KDF (bcrypt, scrypt, Argon2): a slow KDF exists to make guessing
*low-entropy* secrets (human passwords) from a stolen hash expensive. These tokens are 256
random bits from `secrets`; nobody can enumerate 2^256 candidates however fast the hash is,
so stretching adds no security. A fast hash also keeps every request's check cheap, so a
flood of bad tokens costs the agent almost nothing (a slow KDF would hand an attacker a CPU
lever). The hashes are compared with `hmac.compare_digest` against every user, whether one
matched or not, so timing tells nothing about which hash was close.

Requests carry `Authorization: Bearer TOKEN`. Any valid token may read (GET), the viewer
included; every write needs a token whose role the endpoint allows: the owner's confirmation
only the owner role. No token: 401; a valid token of the wrong role: 403. Failed attempts
are rate-limited per remote address (a token bucket): past the limit, 429 with Retry-After,
and the token is not even looked at. The web UI's login (agent/webui) checks tokens through
the same `token_user`, so it shares that limit; its login session cookie also opens the API's
GET endpoints (the UI's report links), never a change.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

ROLES = ("engineer", "technician", "owner", "viewer")
ANY_ROLE = frozenset(ROLES)
TOKEN_PREFIX = "vgl_"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[\w.@-]{1,64}$")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
class TokensFileError(ValueError):
    pass


@dataclass(frozen=True)
class User:
    name: str
    role: str
    token_sha256: str


USER_KEY = web.RequestKey("vigil.user", User)
"""request[USER_KEY] is the authenticated User inside a handler wrapped by `require`."""


def new_token() -> str:
    """256 random bits, URL-safe, with a prefix that makes a leaked token easy to spot."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Users:
    """The users of a tokens file; re-read when the file changes (a token added with
    `vigil tokens add` works without restarting the agent)."""

    def __init__(self, users: Iterable[User] = (), path: Path | None = None) -> None:
        self.users = list(users)
        self.path = path
        self._stamp: tuple[float, int] | None = None

    @classmethod
    def from_file(cls, path: str | Path) -> Users:
        path = Path(path)
        users = cls(read_users(path), path)
        users._stamp = _stamp(path)
        return users

    def _refresh(self) -> None:
        if self.path is None:
            return
        stamp = _stamp(self.path)
        if stamp != self._stamp:
            try:
                self.users = read_users(self.path)
            except (OSError, TokensFileError):
                return  # keep the users we had: a half-written file locks nobody out
            self._stamp = stamp

    def current(self, user: User) -> bool:
        """Whether `user` is still in the file with the same token (a session of the web
        UI ends when its user's token is removed or re-issued)."""
        self._refresh()
        return user in self.users

    def authenticate(self, token: str) -> User | None:
        self._refresh()
        digest = hash_token(token)
        found = None
        for user in self.users:  # every hash is compared: the time does not depend on which
            if hmac.compare_digest(digest, user.token_sha256):
                found = user
        return found


def _stamp(path: Path) -> tuple[float, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_mtime, st.st_size


def read_users(path: Path) -> list[User]:
    if not path.exists():
        return []
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if not isinstance(data, dict) or not isinstance(data.get("users", []), list):
        raise TokensFileError(f"{path}: expected a mapping with a list `users`")
    out: list[User] = []
    for i, item in enumerate(data.get("users") or []):
        where = f"{path}: users[{i}]"
        if not isinstance(item, dict):
            raise TokensFileError(f"{where}: expected a mapping name/role/token_sha256")
        if set(item) - {"name", "role", "token_sha256"}:
            extra = sorted(set(item) - {"name", "role", "token_sha256"})
            raise TokensFileError(f"{where}: unknown key(s) {extra} (clear tokens are never "
                                  "stored: only token_sha256)")
        name, role, digest = item.get("name"), item.get("role"), item.get("token_sha256")
        if not isinstance(name, str) or not _NAME.match(name):
            raise TokensFileError(f"{where}: name: letters, digits, . _ @ - (1-64)")
        if role not in ROLES:
            raise TokensFileError(f"{where}: role {role!r}: one of {', '.join(ROLES)}")
        if not isinstance(digest, str) or not _HEX64.match(digest):
            raise TokensFileError(f"{where}: token_sha256: 64 lower-case hex digits")
        if any(u.name == name for u in out):
            raise TokensFileError(f"{where}: user {name!r} is listed twice")
        out.append(User(name, role, digest))
    return out


def add_user(path: Path, name: str, role: str) -> str:
    """Append a user with a new token to the tokens file (created 0600 if missing); returns
    the clear token, which is not kept anywhere."""
    if role not in ROLES:
        raise TokensFileError(f"role {role!r}: one of {', '.join(ROLES)}")
    if not _NAME.match(name):
        raise TokensFileError(f"name {name!r}: letters, digits, . _ @ - (1-64)")
    users = read_users(path)
    if any(u.name == name for u in users):
        raise TokensFileError(f"{path}: user {name!r} exists (remove it first to re-issue)")
    token = new_token()
    users.append(User(name, role, hash_token(token)))
    write_users(path, users)
    return token


def remove_user(path: Path, name: str) -> bool:
    users = read_users(path)
    kept = [u for u in users if u.name != name]
    if len(kept) == len(users):
        return False
    write_users(path, kept)
    return True


def write_users(path: Path, users: list[User]) -> None:
    """Atomically (temp file + rename), readable by the owner only."""
    text = "# Vigil API users: SHA-256 of each token, never the token (vigil tokens add)\n" + \
        yaml.safe_dump({"users": [{"name": u.name, "role": u.role,
                                   "token_sha256": u.token_sha256} for u in users]},
                       allow_unicode=True, sort_keys=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class FailureLimiter:
    """Token bucket per remote address, spent by failed authentications only: `burst`
    failures at once, then one per `interval` seconds."""

    def __init__(self, burst: int = 10, interval: float = 6.0,
                 clock: Callable[[], float] = time.monotonic, max_addresses: int = 10000
                 ) -> None:
        self.burst, self.interval, self.clock = float(burst), interval, clock
        self.max_addresses = max_addresses
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def _tokens(self, address: str) -> float:
        tokens, at = self._buckets.get(address, (self.burst, self.clock()))
        return min(self.burst, tokens + (self.clock() - at) / self.interval)

    def blocked(self, address: str) -> float:
        """Seconds until `address` may try again (0: it may now)."""
        tokens = self._tokens(address)
        return 0.0 if tokens >= 1 else (1 - tokens) * self.interval

    def failed(self, address: str) -> None:
        if len(self._buckets) >= self.max_addresses:
            now = self.clock()  # forget addresses whose bucket has refilled
            self._buckets = {a: (t, at) for a, (t, at) in self._buckets.items()
                             if t + (now - at) / self.interval < self.burst}
        self._buckets[address] = (max(0.0, self._tokens(address) - 1), self.clock())


class Authenticator:
    def __init__(self, users: Users, limiter: FailureLimiter | None = None) -> None:
        self.users = users
        self.limiter = limiter or FailureLimiter()
        self.session: Callable[[web.Request], User | None] | None = None
        """Set by the web UI (agent/webui): the user of the request's login session cookie.
        It is honoured for GET and HEAD only (reading; the UI's report links), never for a
        change: those need the bearer token, or the UI's own CSRF-checked forms."""

    def check(self, request: web.Request, roles: frozenset[str]) -> User:
        """The request's user, or raises the JSON 401/403/429 response."""
        header = request.headers.get("Authorization", "")
        user = None
        if not header and self.session is not None and request.method in ("GET", "HEAD"):
            user = self.session(request)
        if user is None:
            scheme, _, token = header.partition(" ")
            token = token.strip()
            user = self.token_user(request.remote or "?",
                                   token if scheme.lower() == "bearer" else "")
        if user.role not in roles:
            raise _fail(web.HTTPForbidden, f"role {user.role} may not do this (needs "
                        f"{' or '.join(r for r in ROLES if r in roles)})")
        return user

    def token_user(self, address: str, token: str) -> User:
        """The user of `token` presented from `address`, or raises the JSON 401 or 429;
        failures spend the address's bucket (the API and the web UI's login share it)."""
        wait = self.limiter.blocked(address)
        if wait:
            raise _fail(web.HTTPTooManyRequests, "too many failed authentications from "
                        f"{address}; try again in {wait:.0f} s",
                        {"Retry-After": str(max(1, round(wait)))})
        if not token:
            self.limiter.failed(address)
            raise _fail(web.HTTPUnauthorized, "a token is required (Authorization: Bearer "
                        "TOKEN; `vigil tokens add` makes one)",
                        {"WWW-Authenticate": 'Bearer realm="vigil"'})
        user = self.users.authenticate(token)
        if user is None:
            self.limiter.failed(address)
            raise _fail(web.HTTPUnauthorized, "unknown token",
                        {"WWW-Authenticate": 'Bearer realm="vigil", error="invalid_token"'})
        return user

    def require(self, roles: Iterable[str] = ANY_ROLE) -> Callable[[Handler], Handler]:
        """Decorator of an aiohttp handler: only a valid token with one of `roles` gets in;
        the user is in request[USER_KEY]."""
        allowed = frozenset(roles)
        unknown = allowed - ANY_ROLE
        if unknown:
            raise ValueError(f"unknown role(s) {sorted(unknown)}")

        def wrap(handler: Handler) -> Handler:
            async def guarded(request: web.Request) -> web.StreamResponse:
                request[USER_KEY] = self.check(request, allowed)
                return await handler(request)

            guarded.__name__ = getattr(handler, "__name__", "handler")
            guarded.__doc__ = handler.__doc__
            guarded.roles = allowed  # type: ignore[attr-defined]
            return guarded

        return wrap


def _fail(kind: type[web.HTTPException], message: str,
          headers: dict[str, str] | None = None) -> web.HTTPException:
    return kind(text=json.dumps({"error": message}, ensure_ascii=False),
                content_type="application/json", headers=headers)


def user_of(request: web.Request) -> User:
    return request[USER_KEY]
