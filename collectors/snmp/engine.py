"""The SNMP engine interface: three PDU operations, one error type, plain Python values.

The collector's walking and profile logic is written once against this interface; an engine
only moves PDUs and decodes values. Two engines implement it: pysnmp (pure Python, default)
and ezsnmp (net-snmp's C library, for large sites). Each engine maps its library's failures
onto SnmpError reasons in exactly one place, so `up=0` reasons mean the same whichever engine
ran the poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Protocol

from collectors.reading import Reason

# Value type codes carried in every VarBind, the same for all engines.
INTEGER = "integer"
GAUGE = "gauge"  # Gauge32 / Unsigned32
COUNTER32 = "counter32"
COUNTER64 = "counter64"
TIMETICKS = "timeticks"
OCTETS = "octets"  # value is bytes
OID = "oid"  # value is a dotted string
IPADDRESS = "ipaddress"  # value is a dotted string
OPAQUE = "opaque"  # value is bytes
NULL = "null"  # value is None
NO_SUCH_OBJECT = "noSuchObject"
NO_SUCH_INSTANCE = "noSuchInstance"
END_OF_MIB = "endOfMibView"

EXCEPTIONS = frozenset({NO_SUCH_OBJECT, NO_SUCH_INSTANCE, END_OF_MIB})
NUMERIC = frozenset({INTEGER, GAUGE, COUNTER32, COUNTER64, TIMETICKS})

VarBind = tuple[str, str, Any]
"""(dotted OID without a leading dot, type code, value)."""

# SNMP error-status values the walker reacts to.
NO_SUCH_NAME = 2
TOO_BIG = 1


class SnmpError(Exception):
    """A request failed. `reason` is one of the documented `up=0` reasons."""

    def __init__(self, reason: Reason, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


class PduError(Exception):
    """The agent answered with a non-zero error-status (e.g. noSuchName from a v1 agent)."""

    def __init__(self, status: int, index: int, name: str):
        self.status = status
        self.index = index  # 1-based varbind index, 0 if none
        self.name = name
        super().__init__(f"agent error-status {name} ({status}) at varbind {index}")


@dataclass(frozen=True)
class SnmpAuth:
    """Resolved credentials. repr never shows a secret."""

    version: Literal["1", "2c", "3"]
    community: str = ""
    username: str = ""
    auth_protocol: str | None = None
    auth_password: str = ""
    priv_protocol: str | None = None
    priv_password: str = ""
    context: str = ""

    def __repr__(self) -> str:
        who = self.username if self.version == "3" else "<community>"
        return f"SnmpAuth(v{self.version}, {who})"

    __str__ = __repr__


@dataclass(frozen=True)
class Target:
    """One device as the engine sees it."""

    address: str
    port: int
    auth: SnmpAuth
    timeout: float
    retries: int


def no_response(target: Target) -> str:
    """How a timeout is told: every try, and each try's timeout."""
    tries = target.retries + 1
    return f"no response after {tries} {'try' if tries == 1 else 'tries'} of {target.timeout:g}s"


class Session(Protocol):
    """Requests to one device. Opened per poll; closing it releases the socket."""

    async def get(self, oids: list[str]) -> list[VarBind]: ...

    async def get_next(self, oids: list[str]) -> list[VarBind]: ...

    async def get_bulk(self, oids: list[str], max_repetitions: int) -> list[VarBind]: ...

    async def close(self) -> None: ...


class Engine(Protocol):
    name: str

    async def open(self, target: Target) -> Session: ...

    async def close(self) -> None: ...


ERROR_STATUS_NAMES = {
    0: "noError", 1: "tooBig", 2: "noSuchName", 3: "badValue", 4: "readOnly", 5: "genErr",
    6: "noAccess", 7: "wrongType", 8: "wrongLength", 9: "wrongEncoding", 10: "wrongValue",
    11: "noCreation", 12: "inconsistentValue", 13: "resourceUnavailable", 14: "commitFailed",
    15: "undoFailed", 16: "authorizationError", 17: "notWritable", 18: "inconsistentName",
}


ENGINES = ("pysnmp", "builtin", "ezsnmp")


def make_engine(name: str, threads: int = 16) -> Engine:
    """Build the engine chosen in agent.yaml (`snmp.engine`)."""
    if name == "ezsnmp":
        from collectors.snmp.ezsnmp_engine import EzsnmpEngine

        return EzsnmpEngine(threads)
    from collectors.snmp.pysnmp_engine import BuiltinEngine, PysnmpEngine

    return BuiltinEngine() if name == "builtin" else PysnmpEngine()
