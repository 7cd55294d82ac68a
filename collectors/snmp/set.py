"""SNMP SET (and the few GETs around it) for the rare writes Vigil makes: starting a UPS
battery test. The polling engines stay read-only; this module is separate so that a change to
a device is always an explicit call here.

pysnmp 7's high-level API does v1/v2c (community) and v3 (USM) alike. Failures become one
`SetError` whose `reason` is a short word an API or CLI can show: `timeout`, `auth`, or the
agent's error-status name (`notWritable`, `noAccess`, `wrongValue`, `inconsistentValue`,
...); `detail` says it in a sentence.
"""

from __future__ import annotations

from typing import Any

from pysnmp.hlapi.v3arch import asyncio as v3
from pysnmp.proto import errind, rfc1902

from collectors.snmp.engine import ERROR_STATUS_NAMES, EXCEPTIONS, Target, VarBind, no_response
from collectors.snmp.pysnmp_engine import _AUTH, _PRIV, convert


class SetError(Exception):
    """A SET or GET was not done. `reason`: timeout, auth, protocol or an error-status name."""

    def __init__(self, reason: str, detail: str):
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


Value = tuple[str, Any]
"""(type, value) of a varbind to write: ("integer", 1) or ("oid", "1.3.6...")."""


def _asn1(value: Value) -> Any:
    kind, raw = value
    if kind == "integer":
        return rfc1902.Integer32(int(raw))
    if kind == "oid":
        return rfc1902.ObjectName(str(raw).lstrip("."))
    if kind == "octets":
        return rfc1902.OctetString(raw)
    raise ValueError(f"unsupported SET value type {kind!r} (integer, oid, octets)")


class SnmpWriter:
    """GET and SET against one target; one pysnmp engine, closed with `close()`."""

    def __init__(self, target: Target):
        self.target = target
        self.engine = v3.SnmpEngine()
        auth = target.auth
        if auth.version == "3":
            self.credentials: Any = v3.UsmUserData(
                auth.username, authKey=auth.auth_password or None,
                privKey=auth.priv_password or None, authProtocol=_AUTH[auth.auth_protocol],
                privProtocol=_PRIV[auth.priv_protocol])
        else:
            self.credentials = v3.CommunityData(auth.community,
                                                mpModel=0 if auth.version == "1" else 1)
        self.context = v3.ContextData(contextName=auth.context)
        self._transport: Any = None

    async def _target(self) -> Any:
        if self._transport is None:
            kind = v3.Udp6TransportTarget if ":" in self.target.address else v3.UdpTransportTarget
            try:
                self._transport = await kind.create(
                    (self.target.address, self.target.port), timeout=self.target.timeout,
                    retries=self.target.retries)
            except Exception as exc:  # noqa: BLE001 - pysnmp wraps resolver errors
                raise SetError("unreachable", f"cannot resolve '{self.target.address}': "
                                              f"{exc}") from None
        return self._transport

    async def get(self, oids: list[str]) -> dict[str, VarBind]:
        """GET `oids` (full instance OIDs); a missing object maps to a noSuch* type code."""
        result = await v3.get_cmd(self.engine, self.credentials, await self._target(),
                                  self.context, *[v3.ObjectType(v3.ObjectIdentity(o))
                                                  for o in oids], lookupMib=False)
        return {vb[0]: vb for vb in self._varbinds("GET", result)}

    async def set(self, values: dict[str, Value]) -> None:
        """SET all `values` in one PDU (the agent applies all or none)."""
        result = await v3.set_cmd(self.engine, self.credentials, await self._target(),
                                  self.context, *[v3.ObjectType(v3.ObjectIdentity(o), _asn1(v))
                                                  for o, v in values.items()], lookupMib=False)
        self._varbinds("SET", result, list(values))

    def _varbinds(self, op: str, result: tuple[Any, Any, Any, Any],
                  oids: list[str] | None = None) -> list[VarBind]:
        indication, status, index, varbinds = result
        where = f"{self.target.address}:{self.target.port}"
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                raise SetError("timeout", f"{op} to {where}: "
                                          f"{no_response(self.target)}")
            if "auth" in str(indication).lower() or "user" in str(indication).lower():
                raise SetError("auth", f"{op} to {where}: {indication}")
            raise SetError("protocol", f"{op} to {where}: {indication}")
        if int(status):
            name = ERROR_STATUS_NAMES.get(int(status), f"error-status {int(status)}")
            at = int(index)
            oid = (oids[at - 1] if oids and 0 < at <= len(oids) else
                   str(varbinds[at - 1][0]) if 0 < at <= len(varbinds) else "")
            raise SetError(name, f"{op} to {where}: the agent answered {name}"
                                 + (f" for {oid}" if oid else ""))
        return [convert(vb[0], vb[1]) for vb in varbinds]

    def close(self) -> None:
        self.engine.close_dispatcher()


def present(varbind: VarBind | None) -> bool:
    return varbind is not None and varbind[1] not in EXCEPTIONS
