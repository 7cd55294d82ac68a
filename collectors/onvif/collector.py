"""One ONVIF poll of one camera: identity, clock, services, profiles and stream URIs, PTZ.

The collector keeps one Session per device (session.py): the client is built and the
device's services learnt on the first poll, then reused. A poll makes these requests:

- GetSystemDateAndTime, sent without credentials: onvif_clock_offset_seconds,
  onvif_clock_ntp, onvif_round_trip_seconds. Fails: down.
- GetDeviceInformation: device_info{vendor, model, firmware, serial, hardware}. Fails: down.
- (learnt once per session: GetServices, or GetCapabilities) onvif_service_available{service}.
  Fails: down.
- media GetProfiles: onvif_profiles. Fails: down.
- media GetStreamUri, per profile: onvif_stream_info{profile, encoding, width, height, uri}.
  Fails: onvif_operation_ok{operation="stream_uri"} 0.
- PTZ cameras, PTZ GetStatus: onvif_ptz_moving{axis}, onvif_ptz_error. Fails:
  onvif_operation_ok{operation="ptz_status"} 0.
- PTZ cameras, PTZ GetPresets: onvif_ptz_presets. Fails:
  onvif_operation_ok{operation="ptz_presets"} 0.

A camera is "down" (PollResult.up False, one reason) when one of the first four fails, or
when it offers no media service (`unsupported`): those say whether the camera is
there and usable. The rest are optional: their failure is a reading and a problem, never a
down camera. A PTZ camera (job.ptz) without a PTZ service reads `onvif_ptz_available 0`.

A session is dropped, and the next poll builds a new one, when: the job's address, port or
credentials change; a poll fails with `auth` (a changed password, or a camera clock that
jumped so our signed timestamps are refused); the camera's clock moved more than
SKEW_TOLERANCE from the one the session signs with (rebuilt at once, in the same poll); the
device's identity (serial, firmware) changed; `forget(device)` is called.

Nothing a device does raises out of `poll`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from collectors.onvif.errors import OnvifFailure
from collectors.onvif.session import NAMESPACES, Session
from collectors.reading import PollResult, Reading

log = logging.getLogger("vigil.onvif")

SKEW_TOLERANCE = 30.0
"""Seconds the camera's clock may move from the one a session signs with before the session
is rebuilt (cameras accept WS-Security timestamps within a few minutes of their clock)."""

SERVICES_REPORTED = ("device", "media", "media2", "ptz", "events", "imaging", "analytics")
"""onvif_service_available is exported for these services, 1 or 0."""

NO_ERROR = frozenset({"", "no error", "none", "ok", "0", "null"})
"""PTZ Error strings that mean no error (some firmwares fill the element in)."""

VENDORS = {"hikvision": "Hikvision", "axis": "Axis", "dahua": "Dahua", "vivotek": "VIVOTEK",
           "uniview": "Uniview", "hanwha": "Hanwha", "bosch": "Bosch"}
"""Manufacturer names as the SNMP profiles spell them, so device_info merges cleanly."""

CREDENTIAL_KEYS = frozenset({"user", "username", "password", "pass", "passwd", "pwd"})
_PATH_CREDENTIALS = re.compile(r"(?i)(?<=[/&;])(user|username|password|pass|passwd|pwd)="
                               r"[^&;/?]*[&;]?")


@dataclass(frozen=True)
class OnvifJob:
    """What the scheduler asks for: which camera, how to reach it, with which credentials."""

    device: str
    address: str
    port: int
    username: str
    password: str = field(repr=False)
    timeout: float  # seconds for one request
    ptz: bool  # the camera is a PTZ camera: read its PTZ status and presets
    deadline: float  # seconds for the whole poll


class OnvifCollector:
    """Polls cameras over ONVIF; one reusable session per device. Create it, and call it,
    inside the running event loop (the HTTP client sessions belong to that loop)."""

    def __init__(self) -> None:
        self.sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task] = set()

    def forget(self, device: str) -> None:
        """Drop a device's session (its inventory entry changed, or it was removed)."""
        session = self.sessions.pop(device, None)
        if session is not None:
            self._close_later(session)

    async def close(self) -> None:
        sessions, self.sessions = list(self.sessions.values()), {}
        for session in sessions:
            await session.close()
        if self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)

    def _close_later(self, session: Session) -> None:
        try:
            task = asyncio.get_running_loop().create_task(session.close())
        except RuntimeError:  # no running loop: nothing was opened in one either
            return
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def poll(self, job: OnvifJob) -> PollResult:
        started = time.time()
        clock = time.perf_counter()
        result = PollResult(device=job.device, timestamp=started, duration=0.0, up=False,
                            collector="onvif")
        poll = _Poll(self, job, result, clock)
        try:
            async with asyncio.timeout(job.deadline):
                await poll.run()
        except OnvifFailure as exc:
            result.reason, result.detail = exc.reason, exc.detail
        except TimeoutError:
            result.reason = "timeout"
            result.detail = (f"poll exceeded its deadline of {job.deadline:g}s "
                             f"after {poll.requests} requests")
        except Exception as exc:  # a bug in Vigil, not in the device: keep polling the rest
            log.exception("ONVIF poll of %s failed", job.device)
            result.reason, result.detail = "error", f"{type(exc).__name__}: {exc}"
        result.requests = poll.requests
        if not result.up:
            result.readings = []
        if poll.drop_session or result.reason in ("auth", "error"):
            self.forget(job.device)
        result.readings.append(Reading(job.device, "up", {}, 1.0 if result.up else 0.0,
                                       started, result.reason))
        result.duration = time.perf_counter() - clock
        return result

    async def _session(self, job: OnvifJob) -> Session:
        session = self.sessions.get(job.device)
        if session is not None and session.loop is not asyncio.get_running_loop():
            # made in another event loop (e.g. a one-shot `asyncio.run`): unusable here, and
            # it cannot be closed from here either
            del self.sessions[job.device]
            session = None
        if session is not None and session.key != (job.address, job.port, job.username,
                                                   job.password):
            self.forget(job.device)
            session = None
        if session is None:
            session = Session(job.address, job.port, job.username, job.password)
            self.sessions[job.device] = session
        return session


class _Poll:
    """The requests of one poll, in order, with their readings."""

    def __init__(self, collector: OnvifCollector, job: OnvifJob, result: PollResult,
                 clock: float):
        self.collector = collector
        self.job = job
        self.result = result
        self.clock = clock
        self.requests = 0
        self.readings: list[Reading] = []
        self.drop_session = False  # the session is used up: drop it after this poll

    def remaining(self) -> float:
        return self.job.deadline - (time.perf_counter() - self.clock)

    def timeout(self, factor: float = 1.0) -> float:
        return max(0.0, min(self.job.timeout * factor, self.remaining() - 0.05))

    def add(self, metric: str, value: float, text: str | None = None, **labels: str) -> None:
        self.readings.append(Reading(self.job.device, metric, labels, value,
                                     self.result.timestamp, text))

    async def call(self, session: Session, operation: str, function: Any,
                   params: Any = None, factor: float = 1.0) -> Any:
        self.requests += 1
        return await session.call(operation, function, params, self.timeout(factor))

    async def run(self) -> None:
        job = self.job
        session = await self.collector._session(job)
        async with session.lock:
            if not session.learnt:
                self.requests += 2  # GetSystemDateAndTime, then GetServices (or more)
                await session.learn(self.timeout(3.0))
            offset = await self.read_clock(session)
            if offset is not None and abs(offset - session.skew) > SKEW_TOLERANCE:
                log.info("%s: camera clock moved by %.0f s: new ONVIF session", job.device,
                         offset - session.skew)
                self.collector.forget(job.device)
                session = await self.collector._session(job)
                self.requests += 2
                await session.learn(self.timeout(3.0))
            await self.read_identity(session)
            for name in SERVICES_REPORTED:
                self.add("onvif_service_available", 1.0 if session.has(name) else 0.0,
                         service=name)
            if not session.has("media"):
                raise OnvifFailure("unsupported", "the device offers no media service "
                                                  "(GetServices / GetCapabilities)")
            profiles = await self.read_profiles(session)
            if job.ptz:
                await self.read_ptz(session, profiles)
        self.result.readings = self.readings
        self.result.up = True

    async def read_clock(self, session: Session) -> float | None:
        devicemgmt = await session.service("devicemgmt")
        before = time.time()
        if session.time_needs_auth:
            answer = await self.call(session, "GetSystemDateAndTime",
                                     devicemgmt.GetSystemDateAndTime)
        else:
            try:
                answer = await self.call(session, "GetSystemDateAndTime",
                                         devicemgmt.authless_GetSystemDateAndTime)
            except OnvifFailure as exc:
                if exc.reason != "auth":
                    raise
                session.time_needs_auth = True
                before = time.time()
                answer = await self.call(session, "GetSystemDateAndTime",
                                         devicemgmt.GetSystemDateAndTime)
        after = time.time()
        if answer is None:
            raise OnvifFailure("protocol", "GetSystemDateAndTime: empty answer")
        kind = str(_get(answer, "DateTimeType") or "")
        if kind in ("NTP", "Manual"):
            self.add("onvif_clock_ntp", 1.0 if kind == "NTP" else 0.0, kind)
        else:
            self.result.problems.append(f"GetSystemDateAndTime: DateTimeType {kind!r}")
        self.add("onvif_round_trip_seconds", after - before)
        camera = _utc(_get(answer, "UTCDateTime"))
        if camera is None:
            self.result.problems.append("GetSystemDateAndTime: no UTCDateTime in the answer")
            return None
        # The camera reports whole seconds: take the middle of its second, and our clock at
        # the middle of the round trip.
        offset = camera + 0.5 - (before + after) / 2
        self.add("onvif_clock_offset_seconds", round(offset, 3))
        return offset

    async def read_identity(self, session: Session) -> None:
        devicemgmt = await session.service("devicemgmt")
        info = await self.call(session, "GetDeviceInformation", devicemgmt.GetDeviceInformation)
        manufacturer = _str(_get(info, "Manufacturer"))
        model = _str(_get(info, "Model"))
        if not manufacturer and not model:
            raise OnvifFailure("protocol", "GetDeviceInformation: no Manufacturer nor Model")
        vendor = VENDORS.get(manufacturer.split(" ")[0].lower(), manufacturer)
        labels = {"vendor": vendor, "model": model,
                  "firmware": _str(_get(info, "FirmwareVersion")),
                  "serial": _str(_get(info, "SerialNumber")),
                  "hardware": _str(_get(info, "HardwareId"))}
        identity = (labels["serial"], labels["model"], labels["firmware"])
        if session.identity is not None and session.identity != identity:
            self.result.problems.append(
                f"identity changed from {'/'.join(session.identity)} to {'/'.join(identity)}: "
                f"services will be learnt again at the next poll")
            self.drop_session = True
        session.identity = identity
        self.add("device_info", 1.0, **labels)

    async def read_profiles(self, session: Session) -> list[Any]:
        media = await session.service("media")
        profiles = await self.call(session, "GetProfiles", media.GetProfiles) or []
        self.add("onvif_profiles", float(len(profiles)))
        failed: list[str] = []
        for profile in profiles:
            token = _get(profile, "token")
            encoder = _get(profile, "VideoEncoderConfiguration")
            if not token or encoder is None:
                continue
            request = {"StreamSetup": {"Stream": "RTP-Unicast",
                                       "Transport": {"Protocol": "RTSP"}},
                       "ProfileToken": token}
            try:
                answer = await self.call(session, "GetStreamUri", media.GetStreamUri, request)
            except OnvifFailure as exc:
                failed.append(f"{token}: {exc.reason}")
                self.result.problems.append(f"profile {token}: {exc.detail}")
                continue
            uri = _str(_get(answer, "Uri"))
            if not uri:
                failed.append(f"{token}: no Uri")
                continue
            resolution = _get(encoder, "Resolution")
            self.add("onvif_stream_info", 1.0, profile=str(token),
                     encoding=_str(_get(encoder, "Encoding")),
                     width=_str(_get(resolution, "Width")),
                     height=_str(_get(resolution, "Height")),
                     uri=strip_credentials(uri))
        self.add("onvif_operation_ok", 0.0 if failed else 1.0, "; ".join(failed) or None,
                 operation="stream_uri")
        return profiles

    async def read_ptz(self, session: Session, profiles: list[Any]) -> None:
        if not session.has("ptz"):
            self.add("onvif_ptz_available", 0.0, "unsupported")
            self.result.problems.append("PTZ camera without a PTZ service (unsupported)")
            return
        self.add("onvif_ptz_available", 1.0)
        token = next((_get(p, "token") for p in profiles
                      if _get(p, "PTZConfiguration") is not None), None)
        token = token or next((_get(p, "token") for p in profiles), None)
        if token is None:
            self.result.problems.append("PTZ: no media profile to ask about")
            return
        ptz = await session.service("ptz")
        request = {"ProfileToken": token}
        ok, status = await self.optional(session, "PTZ GetStatus", "ptz_status", ptz.GetStatus,
                                         request)
        if ok:
            moves = _get(status, "MoveStatus")
            for axis, key in (("pan_tilt", "PanTilt"), ("zoom", "Zoom")):
                state = _str(_get(moves, key)).upper()
                if state in ("IDLE", "MOVING"):
                    self.add("onvif_ptz_moving", 1.0 if state == "MOVING" else 0.0, state,
                             axis=axis)
            error = _str(_get(status, "Error"))
            failing = error.strip().lower() not in NO_ERROR
            self.add("onvif_ptz_error", 1.0 if failing else 0.0, error if failing else None)
        ok, presets = await self.optional(session, "PTZ GetPresets", "ptz_presets",
                                          ptz.GetPresets, request)
        if ok:
            self.add("onvif_ptz_presets", float(len(presets or [])))

    async def optional(self, session: Session, what: str, operation: str, function: Any,
                       params: Any) -> tuple[bool, Any]:
        """A request whose failure is a problem of the poll (onvif_operation_ok 0), not a
        camera down: (True, answer), or (False, None) when it failed."""
        try:
            answer = await self.call(session, what, function, params)
        except OnvifFailure as exc:
            self.add("onvif_operation_ok", 0.0, exc.reason, operation=operation)
            self.result.problems.append(exc.detail)
            return False, None
        self.add("onvif_operation_ok", 1.0, operation=operation)
        return True, answer


def _get(obj: Any, name: str) -> Any:
    """A field of a zeep object (or dict), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(name)
    try:
        return obj[name]
    except (KeyError, TypeError, IndexError, AttributeError):
        return getattr(obj, name, None)


def _str(value: Any) -> str:
    return "" if value is None else str(value).strip()


def _utc(value: Any) -> float | None:
    """A tt:DateTime (Date Year/Month/Day, Time Hour/Minute/Second) as a UTC timestamp."""
    date, clock = _get(value, "Date"), _get(value, "Time")
    try:
        return dt.datetime(int(_get(date, "Year")), int(_get(date, "Month")),
                           int(_get(date, "Day")), int(_get(clock, "Hour")),
                           int(_get(clock, "Minute")), int(_get(clock, "Second")),
                           tzinfo=dt.UTC).timestamp()
    except (TypeError, ValueError):
        return None


def strip_credentials(uri: str) -> str:
    """The URI without user:password@ and without user=/password= parameters."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True)
                 if k.lower() not in CREDENTIAL_KEYS]
        if len(pairs) != len(parse_qsl(query, keep_blank_values=True)):
            query = urlencode(pairs, safe="/:")
    path = _PATH_CREDENTIALS.sub("", parts.path)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


__all__ = ["NAMESPACES", "OnvifCollector", "OnvifJob", "strip_credentials"]
