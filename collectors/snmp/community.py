"""SNMP v1/v2c to one device, on a UDP socket connected to it, with a pluggable BER codec.

One socket per poll, connected: the kernel then reports ICMP port-unreachable (`refused`)
instead of a silent timeout, an undecodable answer is seen as `protocol` at once, and no
single socket's receive buffer is shared by hundreds of devices (more than ~100 requests in
flight on one socket overflowed it in measurements here). The request loop — retries, the
timeout, late answers to earlier tries, error-status — is written once here; a Codec only
turns requests into bytes and responses into VarBinds. Two codecs exist: pysnmp's
(pyasn1, `pysnmp` engine) and Vigil's own (collectors/snmp/ber.py, `builtin` engine).
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import Any, Literal, Protocol

from collectors.snmp.engine import (
    ERROR_STATUS_NAMES,
    PduError,
    SnmpError,
    Target,
    VarBind,
    no_response,
)

Kind = Literal["get", "get_next", "get_bulk"]


class Codec(Protocol):
    def request(self, version: str, community: str, kind: Kind, request_id: int,
                oids: list[str], max_repetitions: int) -> bytes:
        """The encoded message (max_repetitions is only used by get_bulk)."""

    def response(self, version: str, data: bytes) -> tuple[int, int, int, list[VarBind]]:
        """(request-id, error-status, error-index, varbinds); SnmpError('protocol') if bad."""


def socket_reason(exc: OSError) -> SnmpError:
    if exc.errno == errno.ECONNREFUSED:
        return SnmpError("refused", "ICMP port unreachable: nothing listens on the SNMP port")
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EADDRNOTAVAIL):
        return SnmpError("unreachable", f"no route to host ({exc.strerror})")
    return SnmpError("unreachable", f"socket error: {exc.strerror or exc}")


class _Receiver(asyncio.DatagramProtocol):
    """Hands each datagram (or socket error) to the request waiting for it."""

    def __init__(self) -> None:
        self.waiter: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if self.waiter is not None and not self.waiter.done() and isinstance(exc, OSError):
            self.waiter.set_exception(socket_reason(exc))


class CommunitySession:
    """SNMP v1/v2c to one device for one poll."""

    def __init__(self, target: Target, codec: Codec, transport: asyncio.DatagramTransport,
                 rx: _Receiver):
        self.target = target
        self.codec = codec
        self.transport = transport
        self.rx = rx

    @classmethod
    async def open(cls, target: Target, codec: Codec) -> CommunitySession:
        loop = asyncio.get_running_loop()
        rx = _Receiver()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: rx, remote_addr=(target.address, target.port))
        except socket.gaierror as exc:
            raise SnmpError("unreachable", f"cannot resolve '{target.address}': "
                                           f"{exc.strerror}") from None
        except OSError as exc:
            raise socket_reason(exc) from None
        return cls(target, codec, transport, rx)

    async def close(self) -> None:
        self.transport.close()

    async def get(self, oids: list[str]) -> list[VarBind]:
        return await self._request("get", oids)

    async def get_next(self, oids: list[str]) -> list[VarBind]:
        return await self._request("get_next", oids)

    async def get_bulk(self, oids: list[str], max_repetitions: int) -> list[VarBind]:
        return await self._request("get_bulk", oids, max_repetitions)

    async def _request(self, kind: Kind, oids: list[str],
                       max_repetitions: int = 0) -> list[VarBind]:
        version = self.target.auth.version
        request_id = random.randint(1, 0x7FFFFFFF)
        payload = self.codec.request(version, self.target.auth.community, kind, request_id,
                                     oids, max_repetitions)
        loop = asyncio.get_running_loop()
        tries = self.target.retries + 1
        for _ in range(tries):
            deadline = loop.time() + self.target.timeout
            try:
                self.transport.sendto(payload)
            except OSError as exc:
                raise socket_reason(exc) from None
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self.rx.waiter = loop.create_future()
                try:
                    data = await asyncio.wait_for(self.rx.waiter, remaining)
                except TimeoutError:
                    break
                answered, status, index, varbinds = self.codec.response(version, data)
                if answered != request_id:
                    continue  # a late answer to an earlier try
                if status:
                    raise PduError(status, index, ERROR_STATUS_NAMES.get(status, "unknown"))
                return varbinds
        raise SnmpError("timeout", f"{no_response(self.target)} (device down, wrong "
                                   f"community, or ACL)")
