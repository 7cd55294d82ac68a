"""A minimal RTSP/1.0 client for the probe's OPTIONS and DESCRIBE (RFC 2326, RFC 7826 auth).

Only what a health probe needs: one TCP connection, requests in sequence, Basic and Digest
(RFC 2617/7616: MD5, MD5-sess, SHA-256; qop auth or none) answered to a 401 challenge once
per request. Each failure is an RtspError carrying one of the documented reasons: refused,
unreachable, timeout, auth (401 with or without credentials), fault (any other 4xx/5xx),
protocol (an answer that is not RTSP).
"""

from __future__ import annotations

import asyncio
import base64
import errno
import hashlib
import os
import re
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

MAX_HEADER = 64 * 1024
MAX_BODY = 256 * 1024
USER_AGENT = "Vigil RTSP probe"


class RtspError(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Response:
    status: int
    phrase: str
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str, default: str = "") -> str:
        values = self.headers.get(name.lower())
        return values[0] if values else default


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    url: str  # without credentials


def target(url: str) -> Target:
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
        raise RtspError("protocol", f"not an rtsp:// URL: {url!r}")
    if parts.username or parts.password:
        raise RtspError("error", "the URL carries credentials: give them as username/password")
    if parts.scheme.lower() == "rtsps":
        raise RtspError("unsupported", "rtsps:// (RTSP over TLS) is not supported")
    try:
        port = parts.port or 554
    except ValueError as exc:
        raise RtspError("protocol", f"bad port in {url!r}") from exc
    return Target(parts.hostname, port, url)


class RtspClient:
    """One connection to one camera; use as `async with RtspClient(...) as client`."""

    def __init__(self, url: str, username: str = "", password: str = "", timeout: float = 5.0):
        self.target = target(url)
        self.username = username
        self.password = password
        self.timeout = timeout
        self.cseq = 0
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.challenge: dict[str, str] | None = None
        self.nonce_count = 0
        self.server = ""

    async def __aenter__(self) -> RtspClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def connect(self) -> None:
        try:
            async with asyncio.timeout(self.timeout):
                self.reader, self.writer = await asyncio.open_connection(
                    self.target.host, self.target.port, limit=MAX_HEADER)
        except TimeoutError:
            raise RtspError("timeout", f"no TCP connection to {self._where()} within "
                                       f"{self.timeout:g}s") from None
        except ConnectionRefusedError:
            raise RtspError("refused", f"{self._where()} refused the connection: nothing "
                                       f"listens on the RTSP port") from None
        except socket.gaierror as exc:
            raise RtspError("unreachable", f"cannot resolve {self.target.host}: "
                                           f"{exc.strerror}") from None
        except OSError as exc:
            if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
                raise RtspError("unreachable", f"{self._where()}: "
                                               f"{exc.strerror or exc}") from None
            if exc.errno == errno.ETIMEDOUT:
                raise RtspError("timeout", f"{self._where()}: connection timed out") from None
            raise RtspError("refused", f"{self._where()}: {exc.strerror or exc}") from None

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await asyncio.wait_for(self.writer.wait_closed(), 1.0)
            except (OSError, TimeoutError):
                pass
            self.writer = self.reader = None

    def _where(self) -> str:
        return f"{self.target.host}:{self.target.port}"

    async def request(self, method: str, headers: dict[str, str] | None = None) -> Response:
        """Send `method` for the target URL; answer a 401 challenge once with the credentials.
        Returns a 2xx/3xx response; raises RtspError for anything else."""
        response = await self._exchange(method, headers or {})
        if response.status == 401:
            challenges = _challenges(response.headers.get("www-authenticate", []))
            if not self.username:
                raise RtspError("auth", f"{method}: 401 Unauthorized and no credentials "
                                        f"configured")
            if not challenges:
                raise RtspError("protocol", f"{method}: 401 without a usable WWW-Authenticate "
                                            f"challenge")
            self.challenge = _pick(challenges)
            self.nonce_count = 0
            if response.header("connection").lower() == "close" or self.reader.at_eof():
                await self.close()
            try:
                response = await self._exchange(method, headers or {})
            except RtspError as exc:
                if exc.reason != "protocol" or "closed" not in exc.detail:
                    raise
                await self.close()  # some cameras hang up after a 401: try once more
                response = await self._exchange(method, headers or {})
            if response.status == 401:
                raise RtspError("auth", f"{method}: 401 Unauthorized: the camera rejected the "
                                        f"credentials of user '{self.username}'")
        if response.status >= 400:
            raise RtspError("fault", f"{method}: RTSP {response.status} {response.phrase}")
        return response

    async def _exchange(self, method: str, headers: dict[str, str]) -> Response:
        if self.writer is None:
            await self.connect()
        self.cseq += 1
        lines = [f"{method} {self.target.url} RTSP/1.0", f"CSeq: {self.cseq}",
                 f"User-Agent: {USER_AGENT}"]
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if self.challenge is not None:
            lines.append(f"Authorization: {self._authorization(method)}")
        data = ("\r\n".join(lines) + "\r\n\r\n").encode()
        try:
            async with asyncio.timeout(self.timeout):
                self.writer.write(data)
                await self.writer.drain()
                response = await self._read_response()
        except TimeoutError:
            raise RtspError("timeout", f"{method}: no answer from {self._where()} within "
                                       f"{self.timeout:g}s") from None
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise RtspError("protocol", f"{method}: {self._where()} closed the connection "
                                        f"({exc.strerror or exc})") from None
        seq = response.header("cseq")
        if seq and seq.strip() != str(self.cseq):
            raise RtspError("protocol", f"{method}: answer has CSeq {seq}, "
                                        f"expected {self.cseq}")
        self.server = response.header("server") or self.server
        return response

    async def _read_response(self) -> Response:
        assert self.reader is not None
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            if not exc.partial:
                raise RtspError("protocol", f"{self._where()} closed the connection without "
                                            f"answering") from None
            raise RtspError("protocol", f"not an RTSP answer: {_excerpt(exc.partial)}") from None
        except asyncio.LimitOverrunError:
            raise RtspError("protocol", f"answer header longer than {MAX_HEADER} bytes "
                                        f"(not RTSP)") from None
        text = head.decode("utf-8", "replace")
        status_line, *header_lines = text.split("\r\n")
        match = re.match(r"RTSP/\d\.\d\s+(\d{3})\s*(.*)$", status_line)
        if not match:
            raise RtspError("protocol", f"not an RTSP answer: {_excerpt(head)}")
        headers: dict[str, list[str]] = {}
        for line in header_lines:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep:
                raise RtspError("protocol", f"malformed header line {_excerpt(line.encode())}")
            headers.setdefault(name.strip().lower(), []).append(value.strip())
        body = b""
        length = (headers.get("content-length") or ["0"])[0]
        if not length.isdigit() or int(length) > MAX_BODY:
            raise RtspError("protocol", f"bad Content-Length {length!r}")
        if int(length):
            try:
                body = await self.reader.readexactly(int(length))
            except asyncio.IncompleteReadError:
                raise RtspError("protocol", "connection closed in the middle of the "
                                            "body") from None
        return Response(int(match[1]), match[2].strip(), headers, body)

    def _authorization(self, method: str) -> str:
        challenge = self.challenge or {}
        if challenge.get("scheme") == "basic":
            token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return f"Basic {token}"
        algorithm = challenge.get("algorithm", "MD5")
        hash_name = "sha256" if algorithm.upper().startswith("SHA-256") else "md5"

        def h(text: str) -> str:
            return hashlib.new(hash_name, text.encode()).hexdigest()

        realm, nonce = challenge.get("realm", ""), challenge.get("nonce", "")
        uri = self.target.url
        ha1 = h(f"{self.username}:{realm}:{self.password}")
        qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
        cnonce = os.urandom(8).hex()
        if algorithm.upper().endswith("-SESS"):
            ha1 = h(f"{ha1}:{nonce}:{cnonce}")
        ha2 = h(f"{method}:{uri}")
        parts = [f'username="{self.username}"', f'realm="{realm}"', f'nonce="{nonce}"',
                 f'uri="{uri}"']
        if "auth" in qops:
            self.nonce_count += 1
            nc = f"{self.nonce_count:08x}"
            digest = h(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
            parts += [f'response="{digest}"', "qop=auth", f"nc={nc}", f'cnonce="{cnonce}"']
        else:
            parts.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
        if "algorithm" in challenge:
            parts.append(f"algorithm={algorithm}")
        if "opaque" in challenge:
            parts.append(f'opaque="{challenge["opaque"]}"')
        return "Digest " + ", ".join(parts)


_PARAM = re.compile(r'\s*([A-Za-z0-9_-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*)\s*,?')


def _challenges(values: list[str]) -> list[dict[str, str]]:
    """Parse WWW-Authenticate headers (one challenge per header, as cameras send them)."""
    out = []
    for value in values:
        scheme, _, rest = value.strip().partition(" ")
        if scheme.lower() not in ("basic", "digest"):
            continue
        params = {"scheme": scheme.lower()}
        for match in _PARAM.finditer(rest):
            raw = match[2]
            if raw.startswith('"'):
                raw = raw[1:-1].replace('\\"', '"')
            params[match[1].lower()] = raw
        out.append(params)
    return out


def _pick(challenges: list[dict[str, str]]) -> dict[str, str]:
    """Prefer Digest (SHA-256, then MD5) over Basic."""
    def rank(c: dict[str, str]) -> int:
        if c["scheme"] == "basic":
            return 0
        return 2 if c.get("algorithm", "").upper().startswith("SHA-256") else 1
    return max(challenges, key=rank)


def _excerpt(data: bytes, size: int = 40) -> str:
    return repr(data[:size]) + ("..." if len(data) > size else "")
