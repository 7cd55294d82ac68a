"""Readings: what every collector produces, whatever the protocol.

A Reading is one value of one metric of one device at one time. A poll yields a PollResult:
its readings, and whether the device answered at all. A failed poll is a result too
(`up` False with a reason), so "the device is down" is data, never an exception.

Several collectors watch one device (snmp, onvif, rtsp, reachability); each poll's result
names its collector. Events pushed by devices (SNMP traps, ONVIF events) are Readings too,
delivered to an EventSink as they arrive instead of at the next poll.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

Reason = Literal["timeout", "refused", "unreachable", "auth", "protocol", "no_data", "fault",
                 "unsupported", "no_frames", "host_down", "error"]

REASONS: dict[str, str] = {
    "timeout": "no answer within the timeout and retries (device or service down, wrong "
               "community, ACL)",
    "refused": "the host refused the connection (TCP RST, or ICMP port-unreachable for UDP): "
               "the host is up but nothing listens on the service's port",
    "unreachable": "no route to the host, or its name does not resolve",
    "auth": "authentication failed (SNMPv3 user/keys, ONVIF or RTSP user/password)",
    "protocol": "the device answered, but not in its protocol (malformed BER, SOAP, RTSP)",
    "no_data": "the device answered, but none of the profile's OIDs exist on it",
    "fault": "the device answered with an error of its protocol (SOAP fault, RTSP 4xx/5xx, "
             "HTTP 5xx)",
    "unsupported": "the device does not offer the service or operation (e.g. no PTZ service)",
    "no_frames": "the stream was set up but no decodable frame came within the timeout",
    "host_down": "no reply to ICMP echo and no TCP port answered: the host is off or cut off",
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


@dataclass(frozen=True)
class Evidence:
    """A small artefact that shows a finding, e.g. the JPEG frame a frozen picture was seen in.
    The agent stores it (state_dir/evidence/) and names the file in a reading's label."""

    name: str  # e.g. "frozen": unique within one poll
    content_type: str  # e.g. "image/jpeg"
    data: bytes


EventSink = Callable[[Reading], None]
"""Where event collectors (trap receiver, ONVIF PullPoint) deliver readings as they come."""


@dataclass
class PollResult:
    """Outcome of one poll of one device by one collector."""

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
    collector: str = "snmp"
    evidence: list[Evidence] = field(default_factory=list)


def event(device: str, name: str, source: str, value: float = 1.0, timestamp: float = 0.0,
          text: str | None = None, **labels: str) -> Reading:
    """An event reading: `name` (e.g. `ups_on_battery`, `tampering`, `video_loss`, `link_down`)
    from `source` (`trap` or `onvif`), value 1 while the condition holds / when it happened,
    0 when it cleared. The agent keeps the latest per (device, event, labels), counts them and
    exports vigil_event, vigil_events_total and vigil_event_last_timestamp_seconds."""
    return Reading(device, "event", {"event": name, "source": source, **labels}, value,
                   timestamp, text)
