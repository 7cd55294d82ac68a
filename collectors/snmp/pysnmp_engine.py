"""The pysnmp engines (pure Python, asyncio): `pysnmp` (the default) and `builtin`.

v1/v2c go through collectors/snmp/community.py (a connected UDP socket per poll); the
`pysnmp` engine codes the messages with pysnmp's protocol API and pyasn1, the `builtin`
engine with Vigil's own codec (collectors/snmp/ber.py, about ten times cheaper). v3 (USM:
authentication, privacy, engine-id discovery, time windows) goes through pysnmp's v3
architecture in both, which implements all of it.
"""

from __future__ import annotations

from typing import Any

from pyasn1.codec.ber import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pysnmp.hlapi.v3arch import asyncio as v3
from pysnmp.proto import api, errind, rfc1902, rfc1905

from collectors.snmp.ber import BerCodec
from collectors.snmp.community import Codec, CommunitySession, Kind
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
    no_response,
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


class PyasnCodec:
    """v1/v2c messages built with pysnmp's protocol API and coded by pyasn1."""

    def request(self, version: str, community: str, kind: Kind, request_id: int,
                oids: list[str], max_repetitions: int) -> bytes:
        p = _proto(version)
        if kind == "get_bulk":
            pdu = p.GetBulkRequestPDU()
            p.apiBulkPDU.set_defaults(pdu)
            p.apiBulkPDU.set_non_repeaters(pdu, 0)
            p.apiBulkPDU.set_max_repetitions(pdu, max_repetitions)
        else:
            pdu = p.GetRequestPDU() if kind == "get" else p.GetNextRequestPDU()
            p.apiPDU.set_defaults(pdu)
        p.apiPDU.set_request_id(pdu, request_id)
        p.apiPDU.set_varbinds(pdu, [(rfc1902.ObjectName(o), p.null) for o in oids])
        message = p.Message()
        p.apiMessage.set_defaults(message)
        p.apiMessage.set_community(message, community)
        p.apiMessage.set_pdu(message, pdu)
        return encoder.encode(message)

    def response(self, version: str, data: bytes) -> tuple[int, int, int, list[VarBind]]:
        p = _proto(version)
        try:
            message, rest = decoder.decode(data, asn1Spec=p.Message())
        except (PyAsn1Error, ValueError, TypeError, IndexError) as exc:
            raise SnmpError("protocol", f"malformed response ({len(data)} bytes, "
                                        f"{type(exc).__name__}: {str(exc)[:80]})") from None
        if rest:
            raise SnmpError("protocol", f"malformed response: {len(rest)} trailing bytes")
        pdu = p.apiMessage.get_pdu(message)
        response_tag = getattr(p, "ResponsePDU", None) or p.GetResponsePDU
        if pdu.tagSet != response_tag.tagSet:
            raise SnmpError("protocol", "answer is not a Response-PDU")
        status = int(p.apiPDU.get_error_status(pdu))
        index = int(p.apiPDU.get_error_index(pdu, muteErrors=True))
        return (int(p.apiPDU.get_request_id(pdu)), status, index,
                [convert(oid, val) for oid, val in p.apiPDU.get_varbinds(pdu)])


def _proto(version: str) -> Any:
    return api.PROTOCOL_MODULES[api.SNMP_VERSION_1 if version == "1" else api.SNMP_VERSION_2C]


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
        return SnmpError("timeout", f"{no_response(target)} (device down, or wrong v3 "
                                    f"user/engine)")
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
    """pysnmp for everything: pyasn1 codes v1/v2c, pysnmp's v3 architecture does v3."""

    name = "pysnmp"
    codec: Codec = PyasnCodec()

    def __init__(self) -> None:
        self._v3_engine: Any = None

    async def open(self, target: Target) -> CommunitySession | UsmSession:
        if target.auth.version != "3":
            return await CommunitySession.open(target, self.codec)
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


class BuiltinEngine(PysnmpEngine):
    """Vigil's own BER codec for v1/v2c (collectors/snmp/ber.py), pysnmp for v3."""

    name = "builtin"
    codec: Codec = BerCodec()
