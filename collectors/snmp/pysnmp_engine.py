"""The default SNMP engine, on pysnmp 7 (pure Python, asyncio).

v1/v2c requests are built with pysnmp's protocol API and sent on a UDP socket connected to
the device, one per poll: the kernel then reports ICMP port-unreachable (`refused`) instead of
a silent timeout, an undecodable answer is seen as `protocol` at once, and no single socket's
receive buffer is shared by hundreds of devices. v3 (USM: authentication, privacy, engine-id
discovery, time windows) goes through pysnmp's v3 architecture, which implements all of it.
"""

from __future__ import annotations

import asyncio
import errno
import random
import socket
from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.hlapi.v3arch import asyncio as v3
from pysnmp.proto import api, errind, rfc1902, rfc1905

from collectors.snmp.engine import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB,
    ERROR_STATUS_NAMES,
    GAUGE,
    INTEGER,
    IPADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_OBJECT,
    NULL,
    NUMERIC,
    OCTETS,
    OID,
    OPAQUE,
    TIMETICKS,
    PduError,
    SnmpError,
    Target,
    VarBind,
)

_TAGS = {
    univ.Integer.tagSet: INTEGER,
    rfc1902.Integer32.tagSet: INTEGER,
    rfc1902.Counter32.tagSet: COUNTER32,
    rfc1902.Gauge32.tagSet: GAUGE,
    rfc1902.TimeTicks.tagSet: TIMETICKS,
    rfc1902.Counter64.tagSet: COUNTER64,
    rfc1902.OctetString.tagSet: OCTETS,
    rfc1902.ObjectIdentifier.tagSet: OID,
    rfc1902.IpAddress.tagSet: IPADDRESS,
    rfc1902.Opaque.tagSet: OPAQUE,
    univ.Null.tagSet: NULL,
    rfc1905.NoSuchObject.tagSet: NO_SUCH_OBJECT,
    rfc1905.NoSuchInstance.tagSet: NO_SUCH_INSTANCE,
    rfc1905.EndOfMibView.tagSet: END_OF_MIB,
}


def convert(oid: Any, value: Any) -> VarBind:
    """pyasn1 objects -> (dotted oid, type code, plain value)."""
    code = _TAGS.get(value.tagSet, OPAQUE)
    if code in NUMERIC:
        out: Any = int(value)
    elif code in (OCTETS, OPAQUE):
        out = value.asOctets() if value.hasValue() else b""
    elif code == OID:
        out = ".".join(str(x) for x in value)
    elif code == IPADDRESS:
        out = ".".join(str(b) for b in value.asOctets())
    else:
        out = None
    return ".".join(str(x) for x in oid), code, out


def _socket_reason(exc: OSError) -> SnmpError:
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
            self.waiter.set_exception(_socket_reason(exc))


class CommunitySession:
    """SNMP v1/v2c to one device over a connected UDP socket."""

    def __init__(self, target: Target, transport: asyncio.DatagramTransport, rx: _Receiver):
        self.target = target
        self.transport = transport
        self.rx = rx
        self.proto = api.PROTOCOL_MODULES[
            api.SNMP_VERSION_1 if target.auth.version == "1" else api.SNMP_VERSION_2C]
        self.community = target.auth.community
        self.response_tag = getattr(self.proto, "ResponsePDU", None) or self.proto.GetResponsePDU

    @classmethod
    async def open(cls, target: Target) -> CommunitySession:
        loop = asyncio.get_running_loop()
        rx = _Receiver()
        try:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: rx, remote_addr=(target.address, target.port))
        except socket.gaierror as exc:
            raise SnmpError("unreachable", f"cannot resolve '{target.address}': "
                                           f"{exc.strerror}") from None
        except OSError as exc:
            raise _socket_reason(exc) from None
        return cls(target, transport, rx)

    async def close(self) -> None:
        self.transport.close()

    async def get(self, oids: list[str]) -> list[VarBind]:
        return await self._request(self.proto.GetRequestPDU(), oids)

    async def get_next(self, oids: list[str]) -> list[VarBind]:
        return await self._request(self.proto.GetNextRequestPDU(), oids)

    async def get_bulk(self, oids: list[str], max_repetitions: int) -> list[VarBind]:
        pdu = self.proto.GetBulkRequestPDU()
        self.proto.apiBulkPDU.set_defaults(pdu)
        self.proto.apiBulkPDU.set_non_repeaters(pdu, 0)
        self.proto.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
        return await self._request(pdu, oids, defaults_set=True)

    async def _request(self, pdu: Any, oids: list[str],
                       defaults_set: bool = False) -> list[VarBind]:
        p = self.proto
        if not defaults_set:
            p.apiPDU.set_defaults(pdu)
        request_id = random.randint(1, 0x7FFFFFFF)
        p.apiPDU.set_request_id(pdu, request_id)
        p.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(o), p.null) for o in oids])
        message = p.Message()
        p.apiMessage.set_defaults(message)
        p.apiMessage.set_community(message, self.community)
        p.apiMessage.set_pdu(message, pdu)
        payload = encoder.encode(message)
        loop = asyncio.get_running_loop()
        tries = self.target.retries + 1
        for _ in range(tries):
            deadline = loop.time() + self.target.timeout
            try:
                self.transport.sendto(payload)
            except OSError as exc:
                raise _socket_reason(exc) from None
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self.rx.waiter = loop.create_future()
                try:
                    data = await asyncio.wait_for(self.rx.waiter, remaining)
                except TimeoutError:
                    break
                response = self._decode(data)
                rsp_pdu = p.apiMessage.get_pdu(response)
                if p.apiPDU.get_request_id(rsp_pdu) != request_id:
                    continue  # a late answer to an earlier request
                status = int(p.apiPDU.get_error_status(rsp_pdu))
                if status:
                    index = int(p.apiPDU.get_error_index(rsp_pdu, muteErrors=True))
                    raise PduError(status, index, ERROR_STATUS_NAMES.get(status, "unknown"))
                return [convert(oid, val) for oid, val in p.apiPDU.get_varbinds(rsp_pdu)]
        raise SnmpError("timeout", f"no response after {tries} tries of {self.target.timeout:g}s "
                                   f"(device down, wrong community, or ACL)")

    def _decode(self, data: bytes) -> Any:
        try:
            message, rest = decoder.decode(data, asn1Spec=self.proto.Message())
        except (PyAsn1Error, ValueError, TypeError, IndexError) as exc:
            raise SnmpError("protocol", f"malformed response ({len(data)} bytes, "
                                        f"{type(exc).__name__}: {str(exc)[:80]})") from None
        if rest:
            raise SnmpError("protocol", f"malformed response: {len(rest)} trailing bytes")
        pdu = self.proto.apiMessage.get_pdu(message)
        if pdu.tagSet != self.response_tag.tagSet:
            raise SnmpError("protocol", "answer is not a Response-PDU")
        return message


class UsmSession:
    """SNMPv3 to one device through pysnmp's v3 architecture (USM, discovery, timeliness)."""

    def __init__(self, engine: Any, target: Target, transport: Any):
        self.engine = engine
        self.target = target
        self.transport = transport
        auth = target.auth
        self.user = v3.UsmUserData(
            auth.username,
            authKey=auth.auth_password or None,
            privKey=auth.priv_password or None,
            authProtocol=_AUTH[auth.auth_protocol],
            privProtocol=_PRIV[auth.priv_protocol],
        )
        self.context = v3.ContextData(contextName=auth.context)

    async def close(self) -> None:
        return None

    def _vbs(self, oids: list[str]) -> list[Any]:
        return [v3.ObjectType(v3.ObjectIdentity(o)) for o in oids]

    async def get(self, oids: list[str]) -> list[VarBind]:
        return self._result(await v3.get_cmd(
            self.engine, self.user, self.transport, self.context, *self._vbs(oids),
            lookupMib=False))

    async def get_next(self, oids: list[str]) -> list[VarBind]:
        return self._result(await v3.next_cmd(
            self.engine, self.user, self.transport, self.context, *self._vbs(oids),
            lookupMib=False))

    async def get_bulk(self, oids: list[str], max_repetitions: int) -> list[VarBind]:
        return self._result(await v3.bulk_cmd(
            self.engine, self.user, self.transport, self.context, 0, max_repetitions,
            *self._vbs(oids), lookupMib=False))

    def _result(self, result: tuple[Any, Any, Any, Any]) -> list[VarBind]:
        indication, status, index, varbinds = result
        if indication:
            raise _v3_reason(indication, self.target)
        if int(status):
            status = int(status)
            raise PduError(status, int(index), ERROR_STATUS_NAMES.get(status, "unknown"))
        return [convert(vb[0].get_oid() if hasattr(vb[0], "get_oid") else vb[0], vb[1])
                for vb in varbinds]


def _v3_reason(indication: Any, target: Target) -> SnmpError:
    """Map pysnmp's v3 error indications onto the documented reasons, in one place."""
    text = str(indication)
    if isinstance(indication, errind.RequestTimedOut):
        return SnmpError("timeout", f"no response after {target.retries + 1} tries of "
                                    f"{target.timeout:g}s (device down, or wrong v3 user/engine)")
    auth_failures = (errind.WrongDigest, errind.AuthenticationFailure, errind.AuthenticationError,
                     errind.DecryptionError, errind.UnknownUserName, errind.UnknownSecurityName,
                     errind.UnsupportedSecurityLevel, errind.NotInTimeWindow)
    if isinstance(indication, auth_failures):
        return SnmpError("auth", f"SNMPv3 authentication failed for user "
                                 f"'{target.auth.username}': {text}")
    return SnmpError("protocol", text)


_AUTH: dict[str | None, Any] = {
    None: v3.usmNoAuthProtocol, "MD5": v3.usmHMACMD5AuthProtocol,
    "SHA": v3.usmHMACSHAAuthProtocol, "SHA224": v3.usmHMAC128SHA224AuthProtocol,
    "SHA256": v3.usmHMAC192SHA256AuthProtocol, "SHA384": v3.usmHMAC256SHA384AuthProtocol,
    "SHA512": v3.usmHMAC384SHA512AuthProtocol,
}
_PRIV: dict[str | None, Any] = {
    None: v3.usmNoPrivProtocol, "DES": v3.usmDESPrivProtocol,
    "3DES": v3.usm3DESEDEPrivProtocol, "AES": v3.usmAesCfb128Protocol,
    "AES192": v3.usmAesCfb192Protocol, "AES256": v3.usmAesCfb256Protocol,
    "AES192C": v3.usmAesBlumenthalCfb192Protocol, "AES256C": v3.usmAesBlumenthalCfb256Protocol,
}


class PysnmpEngine:
    name = "pysnmp"

    def __init__(self) -> None:
        self._v3_engine: Any = None

    async def open(self, target: Target) -> CommunitySession | UsmSession:
        if target.auth.version != "3":
            return await CommunitySession.open(target)
        if self._v3_engine is None:
            self._v3_engine = v3.SnmpEngine()
        transport_class = v3.Udp6TransportTarget if ":" in target.address else v3.UdpTransportTarget
        try:
            transport = await transport_class.create(
                (target.address, target.port), timeout=target.timeout, retries=target.retries)
        except Exception as exc:  # noqa: BLE001 - pysnmp wraps resolver errors in its own types
            raise SnmpError("unreachable", f"cannot resolve '{target.address}': {exc}") from None
        return UsmSession(self._v3_engine, target, transport)

    async def close(self) -> None:
        if self._v3_engine is not None:
            self._v3_engine.close_dispatcher()
            self._v3_engine = None
