"""Readings: what every collector produces, whatever the protocol.

A Reading is one value of one metric of one device at one time. A poll yields a PollResult:
its readings, and whether the device answered at all. A failed poll is a result too
(`up` False with a reason), so "the device is down" is data, never an exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["timeout", "refused", "unreachable", "auth", "protocol", "no_data", "error"]

REASONS: dict[str, str] = {
    "timeout": "no answer within the timeout and retries (device down, wrong community, ACL)",
    "refused": "the host answered ICMP port-unreachable: no SNMP agent listens on the port",
    "unreachable": "no route to the host, or its name does not resolve",
    "auth": "SNMPv3 authentication or privacy failed (wrong user, password or protocol)",
    "protocol": "the device answered, but not with valid SNMP (malformed BER, wrong PDU)",
    "no_data": "the device answered, but none of the profile's OIDs exist on it",
    "error": "the agent itself failed on this device (a bug: see the log)",
}
"""The `up=0` reasons, documented once; exported as the `reason` label."""


@dataclass(slots=True)
class Reading:
    """One value: `metric` (no prefix) with its `labels`; `text` is the enum name or string."""

    device: str
    metric: str
    labels: dict[str, str]
    value: float
    timestamp: float
    text: str | None = None


@dataclass
class PollResult:
    """Outcome of one poll of one device."""

    device: str
    timestamp: float
    duration: float
    up: bool
    reason: Reason | None = None
    detail: str = ""
    profile: str | None = None
    readings: list[Reading] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    requests: int = 0
    varbinds: int = 0
