"""Traps the demo's simulated devices send: SNMPv2c notifications from the device's own
loopback address (snmpsim does not send traps), so the agent's receiver resolves the sender
by its source address exactly as it does on a real network. Encoded with pysnmp's message
API (pyasn1), sent over a plain UDP socket bound to the device's address."""

from __future__ import annotations

import socket
import time

from pyasn1.codec.ber import encoder
from pysnmp.proto import api, rfc1902

_V2C = api.PROTOCOL_MODULES[api.SNMP_VERSION_2C]
_TYPES = {"oid": rfc1902.ObjectName, "int": rfc1902.Integer32, "str": rfc1902.OctetString}


def encode_trap(community: str, trap_oid: str, varbinds: list[list], uptime: float) -> bytes:
    """An SNMPv2-Trap message: sysUpTime.0, snmpTrapOID.0, then `varbinds` ([oid, type,
    value] with type oid, int or str)."""
    pdu = _V2C.SNMPv2TrapPDU()
    _V2C.apiTrapPDU.set_defaults(pdu)
    binds = [(_V2C.apiTrapPDU.sysUpTime, rfc1902.TimeTicks(int(uptime * 100) % 2**32)),
             (_V2C.apiTrapPDU.snmpTrapOID, rfc1902.ObjectName(trap_oid))]
    for oid, kind, value in varbinds:
        if kind not in _TYPES:
            raise ValueError(f"varbind {oid}: type {kind!r} is not one of {', '.join(_TYPES)}")
        binds.append((rfc1902.ObjectName(oid), _TYPES[kind](value)))
    _V2C.apiTrapPDU.set_varbinds(pdu, binds)
    message = _V2C.Message()
    _V2C.apiMessage.set_defaults(message)
    _V2C.apiMessage.set_community(message, community)
    _V2C.apiMessage.set_pdu(message, pdu)
    return encoder.encode(message)


def send_trap(source: str, target: tuple[str, int], community: str, trap_oid: str,
              varbinds: list[list] | None = None, started: float | None = None) -> None:
    """Send one trap from `source` (a loopback address of a simulated device) to `target`."""
    data = encode_trap(community, trap_oid, varbinds or [],
                       time.time() - (started if started is not None else time.time()))
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((source, 0))
        sock.sendto(data, target)
