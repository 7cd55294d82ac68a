"""The fast SNMP engine, on ezsnmp (net-snmp's C library; `pip install vigil[fast]`).

net-snmp encodes and decodes in C, yet a poll still costs about half of pysnmp's CPU (ezsnmp
turns every value into text and back; the `builtin` engine is cheaper still). Its calls
block, so they run on a small thread pool (the GIL is released while net-snmp waits on the
socket). Values come back as net-snmp's printed text; this module turns them into the same
plain values as the pysnmp engine, and maps net-snmp's errors onto the same reasons.

SNMPv3 devices are handed to the pysnmp engine even here: net-snmp keeps its USM state
(engine ids, boots and time) process-wide, and ezsnmp's v3 sessions then time out when other
sessions exist in the process (seen on loopback against net-snmp's own snmpd: after one v2c
session was opened, every later v3 session timed out; a first v3 session failed at random).
pysnmp's v3 is correct in every such case, so v3 stays correct and only v1/v2c is fast.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from collectors.snmp.engine import (
    COUNTER32,
    COUNTER64,
    END_OF_MIB,
    GAUGE,
    INTEGER,
    IPADDRESS,
    NO_SUCH_INSTANCE,
    NO_SUCH_NAME,
    NO_SUCH_OBJECT,
    NULL,
    OCTETS,
    OID,
    OPAQUE,
    TIMETICKS,
    PduError,
    Session,
    SnmpError,
    Target,
    VarBind,
    no_response,
)
from collectors.snmp.pysnmp_engine import PysnmpEngine

_AUTH = {"MD5": "MD5", "SHA": "SHA", "SHA224": "SHA-224", "SHA256": "SHA-256",
         "SHA384": "SHA-384", "SHA512": "SHA-512"}
_PRIV = {"DES": "DES", "3DES": "3DES", "AES": "AES", "AES192": "AES-192", "AES256": "AES-256",
         "AES192C": "AES-192C", "AES256C": "AES-256C"}


def _ticks(text: str) -> int:
    return int(text[1:text.index(")")]) if text.startswith("(") else int(text)


def _octets(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _hex(text: str) -> bytes:
    return bytes.fromhex(text.replace(" ", "").replace("\n", ""))


_CONVERT: dict[str, tuple[str, Callable[[str], Any]]] = {
    "INTEGER": (INTEGER, int),
    "Integer32": (INTEGER, int),
    "Gauge32": (GAUGE, int),
    "UInteger32": (GAUGE, int),
    "Unsigned32": (GAUGE, int),
    "Counter32": (COUNTER32, int),
    "Counter64": (COUNTER64, int),
    "Timeticks": (TIMETICKS, _ticks),
    "STRING": (OCTETS, _octets),
    "Hex-STRING": (OCTETS, _hex),
    '""': (OCTETS, lambda _text: b""),
    "OID": (OID, lambda text: text.lstrip(".")),
    "IpAddress": (IPADDRESS, str),
    "Network Address": (IPADDRESS, str),
    "Opaque": (OPAQUE, _octets),
    "BITS": (OCTETS, lambda text: _hex(text.split()[0]) if text else b""),
    "NULL": (NULL, lambda _text: None),
    "NOSUCHOBJECT": (NO_SUCH_OBJECT, lambda _text: None),
    "NOSUCHINSTANCE": (NO_SUCH_INSTANCE, lambda _text: None),
}


def _convert(result: Any) -> VarBind:
    oid = result.oid.lstrip(".")
    index = result.index
    full = f"{oid}.{index}" if index != "" else oid
    kind = result.type
    entry = _CONVERT.get(kind)
    if entry is None:
        if kind.startswith("No more variables"):
            return full, END_OF_MIB, None
        return full, OPAQUE, _octets(result.value)
    code, parse = entry
    try:
        return full, code, parse(result.value)
    except ValueError:
        return full, OPAQUE, _octets(result.value)


def _map_error(exc: Exception, target: Target) -> Exception:
    """net-snmp's errors -> the documented reasons, in one place."""
    from ezsnmp import exceptions as ez

    text = str(exc).strip()
    if isinstance(exc, ez.TimeoutError):
        return SnmpError("timeout", f"{no_response(target)} (device down, wrong community, "
                                    f"or ACL)")
    if isinstance(exc, ez.NoSuchNameError):
        return PduError(NO_SUCH_NAME, 0, "noSuchName")
    lowered = text.lower()
    if any(word in lowered for word in ("authentication", "unknown user", "decrypt", "usm",
                                         "unknown security", "not in time window")):
        return SnmpError("auth", f"SNMPv3 authentication failed for user "
                                 f"'{target.auth.username}': {text}")
    if isinstance(exc, ez.ConnectionError) or "invalid address" in lowered:
        return SnmpError("unreachable", text)
    return SnmpError("protocol", text or type(exc).__name__)


class EzsnmpSession:
    def __init__(self, engine: EzsnmpEngine, target: Target):
        self.engine = engine
        self.target = target
        self._sessions: dict[int, Any] = {}

    def _session(self, max_repetitions: int = 10) -> Any:
        session = self._sessions.get(max_repetitions)
        if session is None:
            from ezsnmp import Session

            auth = self.target.auth
            kwargs: dict[str, Any] = dict(
                hostname=self.target.address, port_number=str(self.target.port),
                version=3 if auth.version == "3" else (1 if auth.version == "1" else 2),
                timeout=str(self.target.timeout), retries=str(self.target.retries),
                print_oids_numerically=True, print_enums_numerically=True,
                set_max_repeaters_to_num=str(max_repetitions))
            if auth.version == "3":
                level = ("authPriv" if auth.priv_protocol else
                         "authNoPriv" if auth.auth_protocol else "noAuthNoPriv")
                kwargs.update(security_level=level, security_username=auth.username,
                              context=auth.context)
                if auth.auth_protocol:
                    kwargs.update(auth_protocol=_AUTH[auth.auth_protocol],
                                  auth_passphrase=auth.auth_password)
                if auth.priv_protocol:
                    kwargs.update(privacy_protocol=_PRIV[auth.priv_protocol],
                                  privacy_passphrase=auth.priv_password)
            else:
                kwargs["community"] = auth.community
            session = Session(**kwargs)
            self._sessions[max_repetitions] = session
        return session

    async def _run(self, call: Callable[[], Any]) -> list[VarBind]:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self.engine.pool, call)
        except Exception as exc:  # noqa: BLE001 - every ezsnmp failure is mapped to a reason
            raise _map_error(exc, self.target) from None
        return [_convert(r) for r in results]

    async def get(self, oids: list[str]) -> list[VarBind]:
        return await self._run(lambda: self._session().get(oids))

    async def get_next(self, oids: list[str]) -> list[VarBind]:
        return await self._run(lambda: self._session().get_next(oids))

    async def get_bulk(self, oids: list[str], max_repetitions: int) -> list[VarBind]:
        return await self._run(lambda: self._session(max_repetitions).bulk_get(oids))

    async def close(self) -> None:
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()


class EzsnmpEngine:
    name = "ezsnmp"

    def __init__(self, threads: int = 16):
        try:
            import ezsnmp  # noqa: F401
        except ImportError:
            raise RuntimeError("snmp.engine is 'ezsnmp' but ezsnmp is not installed: "
                               "pip install 'vigil[fast]'") from None
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="ezsnmp")
        self.v3 = PysnmpEngine()

    async def open(self, target: Target) -> Session:
        if target.auth.version == "3":
            return await self.v3.open(target)
        return EzsnmpSession(self, target)

    async def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        await self.v3.close()
