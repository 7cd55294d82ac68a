"""Every way an ONVIF exchange fails, mapped once onto the documented `up=0` reasons.

The client stack (onvif-zeep-async over zeep over aiohttp) reports failures as a mix of
zeep faults, zeep transport errors, aiohttp connection errors, timeouts and the library's own
ONVIFError wrappers, and it hides the HTTP status of a SOAP fault. Two things make the mapping
exact:

- `instrument(service)` wraps a service's transport so every answer is checked before zeep
  sees it: its HTTP status is noted in the current call's `HttpTrace`, and a 200 answer whose
  body is not well-formed XML raises `MalformedResponse` (zeep would otherwise parse it in
  recover mode and hand back half a response as if it were whole).
- `classify(exc, trace)` turns any exception into (reason, detail), or None when it is not a
  device's doing (a bug in Vigil: the caller logs it and reports `error`).

- auth: a SOAP fault ter:NotAuthorized / wsse:FailedAuthentication (or saying "not
  authorized"); HTTP 401 / 403.
- unsupported: a SOAP fault ter:ActionNotSupported / OptionalActionNotImplemented; a service
  the device does not offer.
- fault: any other SOAP fault; HTTP 5xx or another HTTP error status.
- timeout: no answer within the timeout (connect, read, or the poll's deadline).
- refused: connection refused (TCP RST).
- unreachable: no route to the host, host unreachable, the name does not resolve.
- protocol: HTTP 200 with a body that is not well-formed XML, not a SOAP envelope or not the
  expected response; the connection closed before or during the answer.
"""

from __future__ import annotations

import asyncio
import errno
import socket
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import aiohttp
import zeep.exceptions
from lxml import etree

from collectors.reading import Reason

AUTH_SUBCODES = frozenset({"NotAuthorized", "FailedAuthentication", "InvalidSecurity",
                           "InvalidSecurityToken", "FailedCheck", "SecurityTokenUnavailable"})
UNSUPPORTED_SUBCODES = frozenset({"ActionNotSupported", "OptionalActionNotImplemented",
                                  "NoSuchService"})
UNREACHABLE_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN,
                                errno.EADDRNOTAVAIL, errno.ENETDOWN})


class OnvifFailure(Exception):
    """A failure already classified (raised by the collector's own checks)."""

    def __init__(self, reason: Reason, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason: Reason = reason
        self.detail = detail


class MalformedResponse(Exception):
    """An HTTP 200 answer whose body is not well-formed XML."""


@dataclass
class HttpTrace:
    """What the transport saw of the current call's answer."""

    status: int | None = None
    address: str = ""


TRACE: ContextVar[HttpTrace | None] = ContextVar("vigil_onvif_trace", default=None)

_STRICT = etree.XMLParser(resolve_entities=False, no_network=True, recover=False,
                          huge_tree=False)


def instrument(service: Any) -> None:
    """Wrap the service's transport (once) so answers are checked and traced."""
    transport = service.transport
    if getattr(transport, "_vigil_instrumented", False):
        return
    post_xml = transport.post_xml

    async def checked_post_xml(address: str, envelope: Any, headers: dict[str, str]) -> Any:
        response = await post_xml(address, envelope, headers)
        trace = TRACE.get()
        if trace is not None:
            trace.status, trace.address = response.status_code, address
        if response.status_code == 200:
            try:
                etree.fromstring(response.content, _STRICT)
            except etree.XMLSyntaxError as exc:
                raise MalformedResponse(f"HTTP 200 from {address} is not well-formed XML: "
                                        f"{exc}") from None
        return response

    transport.post_xml = checked_post_xml
    transport._vigil_instrumented = True


def classify(exc: BaseException, trace: HttpTrace | None = None) -> tuple[Reason, str] | None:
    """(reason, detail) for a failure of the device or the network; None for a bug of ours."""
    status = trace.status if trace else None
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _one(current, status)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    if status == 200 and _raised_by_library(exc):
        # well-formed XML, but not shaped like the response zeep or the library expected
        return "protocol", f"the answer is not the expected response ({type(exc).__name__}: " \
                           f"{str(exc)[:160]})"
    return None


def _raised_by_library(exc: BaseException) -> bool:
    """Whether the innermost frame of the traceback is in zeep or onvif (not in Vigil)."""
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last = tb.tb_frame.f_globals.get("__name__", "")
        tb = tb.tb_next
    return bool(last) and last.split(".")[0] in ("zeep", "onvif")


def _http_status(status: int, what: str) -> tuple[Reason, str]:
    if status in (401, 403):
        return "auth", f"HTTP {status}: {what}"
    return "fault", f"HTTP {status}: {what}"


def _one(exc: BaseException, status: int | None) -> tuple[Reason, str] | None:
    if isinstance(exc, OnvifFailure):
        return exc.reason, exc.detail
    if isinstance(exc, MalformedResponse):
        return "protocol", str(exc)
    if isinstance(exc, zeep.exceptions.Fault):
        return _fault(exc, status)
    if isinstance(exc, zeep.exceptions.TransportError):
        code = exc.status_code or status or 0
        if code == 200:
            return "protocol", f"HTTP 200 with an answer that is not SOAP: {exc.message[:200]}"
        return _http_status(code, (exc.message or "")[:200])
    if isinstance(exc, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError |
                  zeep.exceptions.UnexpectedElementError):
        return "protocol", f"not a SOAP answer: {str(exc)[:200]}"
    if isinstance(exc, aiohttp.ClientConnectorDNSError | socket.gaierror):
        return "unreachable", f"name does not resolve: {exc}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        os_error = exc.os_error
        if isinstance(os_error, ConnectionRefusedError):
            return "refused", "connection refused: nothing listens on the ONVIF port"
        if isinstance(os_error, TimeoutError):
            return "timeout", f"connect timed out: {exc}"
        if getattr(os_error, "errno", None) in UNREACHABLE_ERRNOS:
            return "unreachable", str(os_error)
        return "unreachable", str(exc)
    if isinstance(exc, ConnectionRefusedError):
        return "refused", "connection refused: nothing listens on the ONVIF port"
    if isinstance(exc, TimeoutError | asyncio.TimeoutError | aiohttp.ServerTimeoutError):
        return "timeout", "no answer within the timeout"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "protocol", f"the connection closed in the middle of the answer ({exc})"
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientConnectionResetError |
                  ConnectionResetError):
        return "protocol", "the camera closed the connection without answering"
    if isinstance(exc, aiohttp.ClientResponseError):
        return _http_status(exc.status, exc.message)
    if isinstance(exc, OSError) and getattr(exc, "errno", None) in UNREACHABLE_ERRNOS:
        return "unreachable", str(exc)
    if isinstance(exc, aiohttp.ClientError):
        return "protocol", f"{type(exc).__name__}: {exc}"
    return None


def _fault(exc: zeep.exceptions.Fault, status: int | None) -> tuple[Reason, str]:
    subcodes = [getattr(s, "localname", str(s)) for s in (exc.subcodes or [])]
    code = (exc.code or "").rpartition(":")[2]
    message = (exc.message or "").strip()
    words = f" ({', '.join(subcodes)})" if subcodes else ""
    if exc.message == "Unknown fault occured" and status not in (None, 200):
        # no SOAP Fault in the body (e.g. an HTML error page): the HTTP status tells
        return _http_status(status, "the answer is not a SOAP fault")
    if status in (401, 403) or AUTH_SUBCODES.intersection(subcodes) or \
            code in AUTH_SUBCODES or "not authorized" in message.lower():
        return "auth", f"SOAP fault{words}: {message or 'not authorized'}"
    if UNSUPPORTED_SUBCODES.intersection(subcodes):
        return "unsupported", f"SOAP fault{words}: {message}"
    if exc.message == "Unknown fault occured":
        return "protocol", "the answer is neither a response nor a SOAP fault"
    return "fault", f"SOAP fault {code or '?'}{words}: {message}"
