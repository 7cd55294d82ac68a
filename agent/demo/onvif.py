"""ONVIF camera simulator: real SOAP 1.2 over HTTP on loopback, for the tests and the demo.

Each simulated camera listens on its own (address, port); one process serves them all from
one aiohttp application (one listening socket per camera, the camera found from the socket a
request came in on). A camera answers the way the ONVIF clients in the field see cameras
answer:

- WS-Security UsernameToken: the PasswordDigest is checked (Base64(SHA-1(nonce + Created +
  password))), a Created too far from the camera's own clock is stale, a nonce already seen is
  a replay. GetSystemDateAndTime is answered without credentials (ONVIF's PRE_AUTH), so a
  client can learn the camera's clock before it signs anything.
- Device: GetSystemDateAndTime (with a configurable clock offset, NTP or Manual),
  GetDeviceInformation, GetCapabilities, GetServices. Media: GetProfiles, GetStreamUri (the
  URI is configurable per camera, e.g. to point at the demo's real RTSP server). PTZ:
  GetStatus (MoveStatus, Error), GetPresets. Events: CreatePullPointSubscription,
  PullMessages (long poll), Renew, Unsubscribe, SetSynchronizationPoint; termination times
  are honoured; a reboot drops every subscription.
- Vendor styles (`hikvision`, `dahua`, `axis`): envelope prefixes and namespace sets, service
  paths, identity strings, stream URI shapes, fault shapes for a wrong password, event topics
  (Axis' tnsaxis: topics), missing optional elements and extra vendor elements.
- Fault modes, per camera and per operation (or `*` for all): `soap_fault` (HTTP 500 with a
  SOAP Receiver fault), `http_500` (an HTML error page), `malformed` (a truncated body),
  `close` (headers and half the body, then the connection is closed), `drop` (the connection
  is closed before any answer), `slow` (answers after `slow_seconds`), `silent` (never
  answers), `unsupported` (ter:ActionNotSupported). A wrong clock, a PTZ error and a camera
  without PTZ are camera settings, not faults.

Use it in-process (`OnvifSimulator`, an async context manager, with `raise_event`, `reboot`,
`set_fault`, `update` and per-camera request counters), or run many cameras in one process:

    python -m agent.demo.onvif --config cameras.json [--control 127.0.0.1:8099]
    python -m agent.demo.onvif --count 200 --first-port 20000

cameras.json is `{"defaults": {...}, "cameras": [{"name": ..., "port": ..., ...}]}` with the
fields of CameraConfig. The optional control API (JSON over HTTP, loopback only) lets a demo
script events: `GET /cameras`, `POST /cameras/{name}/event {"kind": "tampering", "state":
true}`, `POST /cameras/{name}/reboot`, `POST /cameras/{name}/fault {"operation": "*", "mode":
"http_500"}` (mode null clears), `POST /cameras/{name}/set {"clock_offset": 10800, ...}`.
The process prints one JSON line `{"ready": ...}` when every socket listens, and stops on
SIGTERM / SIGINT. Only loopback addresses are accepted.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import itertools
import json
import logging
import re
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field, fields, replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web
from lxml import etree

log = logging.getLogger("vigil.demo.onvif")

# --- namespaces -----------------------------------------------------------------------------
SOAP_ENV = "http://www.w3.org/2003/05/soap-envelope"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TR2 = "http://www.onvif.org/ver20/media/wsdl"
TPTZ = "http://www.onvif.org/ver20/ptz/wsdl"
TEV = "http://www.onvif.org/ver10/events/wsdl"
TIMG = "http://www.onvif.org/ver20/imaging/wsdl"
TMD = "http://www.onvif.org/ver10/deviceIO/wsdl"
TAN = "http://www.onvif.org/ver20/analytics/wsdl"
WSNT = "http://docs.oasis-open.org/wsn/b-2"

COMMON_NS = {
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
    "xs": "http://www.w3.org/2001/XMLSchema",
    "wsa": "http://www.w3.org/2005/08/addressing",
    "wsse": WSSE,
    "wsu": WSU,
    "tt": "http://www.onvif.org/ver10/schema",
    "tds": TDS,
    "trt": TRT,
    "tr2": TR2,
    "tptz": TPTZ,
    "tev": TEV,
    "timg": TIMG,
    "tmd": TMD,
    "tan": TAN,
    "wsnt": WSNT,
    "wstop": "http://docs.oasis-open.org/wsn/t-1",
    "wsrf-bf": "http://docs.oasis-open.org/wsrf/bf-2",
    "wsrf-rw": "http://docs.oasis-open.org/wsrf/rw-2",
    "ter": "http://www.onvif.org/ver10/error",
    "tns1": "http://www.onvif.org/ver10/topics",
}

FAULT_MODES = ("soap_fault", "http_500", "malformed", "close", "drop", "slow", "silent",
               "unsupported")
EVENT_KINDS = ("tampering", "video_loss", "storage_failure", "motion")
PRE_AUTH = frozenset({"GetSystemDateAndTime"})
MAX_PULL_WAIT = 60.0


# --- vendor styles --------------------------------------------------------------------------
@dataclass(frozen=True)
class Topic:
    """How a vendor reports one kind of event: topic, source item, data item, value words."""

    topic: str
    source: tuple[str, str]
    data: str
    true: str = "true"
    false: str = "false"


@dataclass(frozen=True)
class VendorStyle:
    prefix: str  # the envelope's prefix for the SOAP 1.2 namespace
    extra_ns: dict[str, str]
    paths: dict[str, str]  # service -> path
    subscription_path: str  # format with n, stamp
    manufacturer: str
    models: tuple[str, str]  # (fixed, ptz)
    firmware: str
    serial: str  # format with n
    hardware: str
    timezone: str
    profiles: tuple[tuple[str, str, str, int, int], ...]  # token, name, encoding, w, h
    stream_uri: str  # format with host, port, token, index
    auth_status: int
    auth_text: str
    topics: dict[str, Topic]
    ptz_error_element: str  # "omit" | "empty"
    omit_zoom_status: bool = False
    omit_ptz_utc: bool = False
    omit_multicast: bool = False
    server_header: str = ""


_STANDARD_TOPICS = {
    "video_loss": Topic("tns1:VideoSource/SignalLoss", ("VideoSourceToken", "VideoSource_1"),
                        "State"),
    "storage_failure": Topic("tns1:Device/HardwareFailure/StorageFailure",
                             ("Token", "SD_DISK_1"), "Failed"),
    "motion": Topic("tns1:RuleEngine/CellMotionDetector/Motion",
                    ("VideoSourceConfigurationToken", "VideoSourceToken"), "IsMotion"),
}

VENDORS: dict[str, VendorStyle] = {
    "hikvision": VendorStyle(
        prefix="env",
        extra_ns={"soapenc": "http://www.w3.org/2003/05/soap-encoding",
                  "hikwsd": "http://www.onvifext.com/onvif/ext/ver10/wsdl",
                  "hikxsd": "http://www.onvifext.com/onvif/ext/ver10/schema"},
        paths={"device": "/onvif/device_service", "media": "/onvif/Media",
               "ptz": "/onvif/PTZ", "events": "/onvif/Events", "imaging": "/onvif/Imaging",
               "deviceio": "/onvif/DeviceIO", "analytics": "/onvif/Analytics"},
        subscription_path="/onvif/Events/PullSubManager_{stamp}_{n}",
        manufacturer="HIKVISION",
        models=("DS-2CD2143G2-IS", "DS-2DE4425IW-DE"),
        firmware="V5.7.3 build 220112",
        serial="{model}20220315AAWRJ{n:08d}",
        hardware="88",
        timezone="CST-8:00:00",
        profiles=(("Profile_1", "mainStream", "H264", 2560, 1440),
                  ("Profile_2", "subStream", "H264", 640, 360)),
        stream_uri="rtsp://{host}:554/Streaming/Channels/{index}01?transportmode=unicast"
                   "&profile={token}",
        auth_status=401,
        auth_text="The action requested requires authorization and the sender is not "
                  "authorized",
        topics={**_STANDARD_TOPICS,
                "tampering": Topic("tns1:RuleEngine/TamperDetector/Tamper",
                                   ("VideoSourceConfigurationToken", "VideoSourceToken"),
                                   "IsTamper")},
        ptz_error_element="omit",
        server_header="App-webs/",
    ),
    "dahua": VendorStyle(
        prefix="s",
        extra_ns={"sc": "http://www.w3.org/2003/05/soap-encoding"},
        paths={"device": "/onvif/device_service", "media": "/onvif/media_service",
               "ptz": "/onvif/ptz_service", "events": "/onvif/event_service",
               "imaging": "/onvif/imaging_service", "deviceio": "/onvif/deviceIO_service",
               "analytics": "/onvif/analytics_service"},
        subscription_path="/onvif/Subscription?Idx={n}",
        manufacturer="Dahua",
        models=("DH-IPC-HFW2431S-S-S2", "DH-SD49425XB-HNR"),
        firmware="2.800.0000000.25.R, Build Date 2022-08-26",
        serial="7F0E3A2PAZ{n:05d}",
        hardware="1.00",
        timezone="GMT-08:00",
        profiles=(("MediaProfile00000", "MediaProfile_Channel1_MainStream", "H264", 2688,
                   1520),
                  ("MediaProfile00001", "MediaProfile_Channel1_SubStream1", "H264", 704,
                   576)),
        stream_uri="rtsp://{host}:554/cam/realmonitor?channel=1&subtype={index0}"
                   "&unicast=true&proto=Onvif",
        auth_status=400,
        auth_text="Sender not Authorized",
        topics={**_STANDARD_TOPICS,
                "tampering": Topic("tns1:VideoSource/GlobalSceneChange/ImagingService",
                                   ("Source", "VideoSource0"), "State")},
        ptz_error_element="omit",
        omit_zoom_status=True,
        omit_ptz_utc=True,
        omit_multicast=True,
    ),
    "axis": VendorStyle(
        prefix="SOAP-ENV",
        extra_ns={"SOAP-ENC": "http://www.w3.org/2003/05/soap-encoding",
                  "tnsaxis": "http://www.axis.com/2009/event/topics",
                  "aev": "http://www.axis.com/vapix/ws/event1",
                  "acert": "http://www.axis.com/vapix/ws/cert"},
        paths={"device": "/onvif/device_service", "media": "/onvif/services",
               "ptz": "/onvif/services", "events": "/onvif/services",
               "imaging": "/onvif/services", "deviceio": "/onvif/services",
               "analytics": "/onvif/services"},
        subscription_path="/onvif/services/subscription/{n}",
        manufacturer="AXIS",
        models=("P3245-LVE", "Q6135-LE"),
        firmware="10.12.182",
        serial="ACCC8EF{n:05X}",
        hardware="7A1",
        timezone="CST-8",
        profiles=(("profile_1_h264", "profile_1 h264", "H264", 1920, 1080),
                  ("profile_1_jpeg", "profile_1 jpeg", "JPEG", 1920, 1080)),
        stream_uri="rtsp://{host}/onvif-media/media.amp?profile={token}&sessiontimeout=60"
                   "&streamtype=unicast",
        auth_status=401,
        auth_text="",
        topics={"tampering": Topic("tns1:VideoSource/tnsaxis:Tampering", ("channel", "1"),
                                   "tampering", "1", "0"),
                "video_loss": Topic("tns1:VideoSource/SignalLoss",
                                    ("VideoSourceConfigurationToken", "0"), "State", "1",
                                    "0"),
                "storage_failure": Topic("tns1:Device/tnsaxis:HardwareFailure/StorageFailure",
                                         ("disk_id", "SD_DISK"), "disruption", "1", "0"),
                "motion": Topic("tns1:VideoSource/tnsaxis:MotionAlarm",
                                ("VideoSourceConfigurationToken", "0"), "State", "1", "0")},
        ptz_error_element="empty",
        server_header="",
    ),
}


# --- configuration --------------------------------------------------------------------------
@dataclass
class CameraConfig:
    """One simulated camera. Vendor defaults fill what is left None."""

    name: str
    port: int
    address: str = "127.0.0.1"
    vendor: str = "hikvision"
    username: str = "admin"
    password: str = "vigil-demo-1"
    manufacturer: str | None = None
    model: str | None = None
    firmware: str | None = None
    serial: str | None = None
    hardware: str | None = None
    clock_offset: float = 0.0  # seconds the camera's clock is ahead of real time
    ntp: bool = True  # DateTimeType NTP (else Manual)
    ptz: bool = False
    ptz_error: str = ""
    ptz_moving: bool = False
    presets: int = 8
    stream_uri: str | dict[str, str] | None = None  # template: host, port, token, index, name
    profiles: list[dict[str, Any]] | None = None  # token, name, encoding, width, height
    faults: dict[str, str] = field(default_factory=dict)  # operation or "*" -> mode
    slow_seconds: float = 5.0
    get_services: bool = True  # False: an older firmware that faults on GetServices
    preauth_time: bool = True  # False: GetSystemDateAndTime needs credentials too
    created_window: float = 300.0  # accepted |Created - camera clock|, seconds
    index: int = 0  # numbers the serial

    def __post_init__(self) -> None:
        if self.vendor not in VENDORS:
            raise ValueError(f"camera {self.name}: unknown vendor '{self.vendor}' "
                             f"(one of {', '.join(VENDORS)})")
        _check_loopback(self.address)
        for op, mode in self.faults.items():
            if mode not in FAULT_MODES:
                raise ValueError(f"camera {self.name}: unknown fault mode '{mode}' for {op} "
                                 f"(one of {', '.join(FAULT_MODES)})")

    def __repr__(self) -> str:
        return f"CameraConfig({self.name}, {self.vendor}, {self.address}:{self.port})"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown camera settings: {', '.join(sorted(unknown))}")
        return cls(**data)


def _check_loopback(address: str) -> None:
    if not ipaddress.ip_address(address).is_loopback:
        raise ValueError(f"{address} is not a loopback address: the simulator serves only "
                         f"127.0.0.0/8 and ::1")


# --- SOAP helpers ---------------------------------------------------------------------------
class SoapFault(Exception):
    """Answer with a SOAP 1.2 fault."""

    def __init__(self, code: str, subcodes: tuple[str, ...], reason: str, status: int,
                 headers: dict[str, str] | None = None, body: str | None = None):
        super().__init__(reason)
        self.code = code
        self.subcodes = subcodes
        self.reason = reason
        self.status = status
        self.headers = headers or {}
        self.body = body  # a non-SOAP body instead of the fault (e.g. an HTML 401 page)


def _not_supported(what: str) -> SoapFault:
    return SoapFault("Receiver", ("ter:ActionNotSupported",),
                     f"Optional Action Not Implemented: {what}", 500)


def _bad_arg(what: str) -> SoapFault:
    return SoapFault("Sender", ("ter:InvalidArgVal", "ter:NoProfile"), what, 400)


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


_DURATION = re.compile(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$")


def parse_duration(text: str) -> float | None:
    """An xs:duration like PT60S / PT1M / P1DT2H as seconds; None if it is not one."""
    match = _DURATION.match(text.strip())
    if not match or text.strip() in ("P", "PT"):
        return None
    days, hours, minutes, seconds = match.groups()
    return (int(days or 0) * 86400 + int(hours or 0) * 3600 + int(minutes or 0) * 60
            + float(seconds or 0))


def parse_time(text: str) -> float | None:
    """An xs:dateTime as a POSIX timestamp (UTC when no zone is given)."""
    try:
        value = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.timestamp()


def _text(element: etree._Element | None, path: str, ns: dict[str, str]) -> str | None:
    if element is None:
        return None
    found = element.find(path, ns)
    return found.text if found is not None and found.text is not None else None


# --- runtime state --------------------------------------------------------------------------
@dataclass
class Subscription:
    number: int
    path: str
    termination: float  # real time
    queue: deque = field(default_factory=deque)
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)


class Camera:
    """A simulated camera's state: config, clock, nonces, subscriptions, event properties."""

    def __init__(self, config: CameraConfig):
        self.config = config
        self.style = VENDORS[config.vendor]
        self.requests: Counter[str] = Counter()
        self.nonces: dict[str, float] = {}
        self.subscriptions: dict[str, Subscription] = {}
        self.properties: dict[str, bool] = {kind: False for kind in EVENT_KINDS}
        self.reboots = 0
        self._numbers = itertools.count(1)
        self._cache: dict[str, Any] = {}

    # identity
    @property
    def manufacturer(self) -> str:
        return self.config.manufacturer or self.style.manufacturer

    @property
    def model(self) -> str:
        return self.config.model or self.style.models[1 if self.config.ptz else 0]

    @property
    def firmware(self) -> str:
        return self.config.firmware or self.style.firmware

    @property
    def serial(self) -> str:
        return self.config.serial or self.style.serial.format(model=self.model,
                                                              n=self.config.index)

    @property
    def hardware(self) -> str:
        return self.config.hardware or self.style.hardware

    def now(self) -> float:
        """The camera's clock."""
        return time.time() + self.config.clock_offset

    def base(self) -> str:
        host = self.config.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.config.port}"

    def xaddr(self, service: str) -> str:
        return self.base() + self.style.paths[service]

    def profiles(self) -> list[dict[str, Any]]:
        if self.config.profiles:
            return self.config.profiles
        return [{"token": t, "name": n, "encoding": e, "width": w, "height": h}
                for t, n, e, w, h in self.style.profiles]

    def stream_uri(self, token: str) -> str:
        tokens = [p["token"] for p in self.profiles()]
        index = tokens.index(token)
        template = self.config.stream_uri
        if isinstance(template, dict):
            template = template.get(token)
        if not template:
            template = self.style.stream_uri
        host = self.config.address if ":" not in self.config.address \
            else f"[{self.config.address}]"
        return template.format(host=host, port=self.config.port, token=token,
                               index=index + 1, index0=index, name=self.config.name)

    # WS-Security
    def check_token(self, header: etree._Element | None) -> str | None:
        """None when the UsernameToken is valid, else why not."""
        token = header.find(f"{{{WSSE}}}Security/{{{WSSE}}}UsernameToken") \
            if header is not None else None
        if token is None:
            return "no UsernameToken"
        username = token.findtext(f"{{{WSSE}}}Username")
        password = token.find(f"{{{WSSE}}}Password")
        if username != self.config.username or password is None or password.text is None:
            return "unknown user"
        kind = password.get("Type", "")
        if kind.endswith("#PasswordText"):
            return None if password.text == self.config.password else "wrong password"
        nonce_text = token.findtext(f"{{{WSSE}}}Nonce")
        created = token.findtext(f"{{{WSU}}}Created")
        if not nonce_text or not created:
            return "digest without Nonce or Created"
        try:
            nonce = base64.b64decode(nonce_text, validate=True)
        except ValueError:
            return "Nonce is not base64"
        expected = base64.b64encode(hashlib.sha1(
            nonce + created.encode() + self.config.password.encode()).digest()).decode()
        if password.text.strip() != expected:
            return "wrong password"
        when = parse_time(created)
        if when is None:
            return "Created is not a dateTime"
        if abs(when - self.now()) > self.config.created_window:
            return "stale Created"
        now = time.monotonic()
        if nonce_text in self.nonces and self.nonces[nonce_text] > now:
            return "replayed nonce"
        if len(self.nonces) > 4096:
            self.nonces = {n: t for n, t in self.nonces.items() if t > now}
        self.nonces[nonce_text] = now + 2 * self.config.created_window
        return None

    # events
    def set_property(self, kind: str, state: bool) -> None:
        self.properties[kind] = state
        message = self.notification(kind, state, "Changed")
        for sub in self.live_subscriptions():
            sub.queue.append(message)
            sub.wakeup.set()

    def live_subscriptions(self) -> list[Subscription]:
        now = time.time()
        for path in [p for p, s in self.subscriptions.items() if s.termination < now]:
            del self.subscriptions[path]
        return list(self.subscriptions.values())

    def notification(self, kind: str, state: bool, operation: str) -> str:
        topic = self.style.topics[kind]
        name, value = topic.source
        producer = ""
        if self.config.vendor == "axis":
            producer = ("<wsnt:ProducerReference><wsa:Address>uri://"
                        f"{self.serial}/ProducerReference</wsa:Address>"
                        "</wsnt:ProducerReference>")
        return (
            "<wsnt:NotificationMessage>"
            '<wsnt:Topic Dialect="http://www.onvif.org/ver10/tev/topicExpression/ConcreteSet">'
            f"{topic.topic}</wsnt:Topic>{producer}"
            f'<wsnt:Message><tt:Message UtcTime="{_iso(self.now())}" '
            f'PropertyOperation="{operation}">'
            f'<tt:Source><tt:SimpleItem Name="{name}" Value="{value}"/></tt:Source>'
            f'<tt:Data><tt:SimpleItem Name="{topic.data}" '
            f'Value="{topic.true if state else topic.false}"/></tt:Data>'
            "</tt:Message></wsnt:Message></wsnt:NotificationMessage>")

    def reboot(self) -> None:
        for sub in self.subscriptions.values():
            sub.wakeup.set()
        self.subscriptions.clear()
        self.nonces.clear()
        self.reboots += 1

    def subscribe(self, seconds: float) -> Subscription:
        number = next(self._numbers)
        path = self.style.subscription_path.format(
            n=number, stamp=_iso(self.now()).replace(":", ""))
        sub = Subscription(number, path, time.time() + seconds)
        for kind in ("tampering", "video_loss", "storage_failure"):
            if kind in self.style.topics:
                sub.queue.append(self.notification(kind, self.properties[kind],
                                                   "Initialized"))
        self.subscriptions[path] = sub
        return sub


# --- the server -----------------------------------------------------------------------------
class OnvifSimulator:
    """Many simulated cameras in one aiohttp application; one listening socket each."""

    def __init__(self, cameras: list[CameraConfig], control: tuple[str, int] | None = None):
        self.cameras: dict[str, Camera] = {}
        self._by_socket: dict[tuple[str, int], Camera] = {}
        for config in cameras:
            self._add(config)
        self.control = control
        if control:
            _check_loopback(control[0])
        self._runner: web.AppRunner | None = None
        self._control_runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task | None = None
        self._pending: set[asyncio.Task] = set()

    def _add(self, config: CameraConfig) -> Camera:
        if config.name in self.cameras:
            raise ValueError(f"camera name {config.name} used twice")
        key = (str(ipaddress.ip_address(config.address)), config.port)
        if key in self._by_socket:
            raise ValueError(f"{config.address}:{config.port} used twice")
        camera = Camera(config)
        self.cameras[config.name] = camera
        self._by_socket[key] = camera
        return camera

    async def __aenter__(self) -> OnvifSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        app = web.Application(client_max_size=1 << 20)
        app.router.add_route("POST", "/{tail:.*}", self._handle)
        app.router.add_route("GET", "/{tail:.*}", self._handle_get)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        for camera in self.cameras.values():
            site = web.TCPSite(self._runner, camera.config.address, camera.config.port,
                               backlog=128, reuse_address=True)
            await site.start()
        if self.control:
            control = web.Application()
            control.router.add_get("/cameras", self._c_list)
            control.router.add_post("/cameras/{name}/{action}", self._c_action)
            self._control_runner = web.AppRunner(control, access_log=None)
            await self._control_runner.setup()
            await web.TCPSite(self._control_runner, *self.control).start()
        self._sweeper = asyncio.create_task(self._sweep())

    async def stop(self) -> None:
        if self._sweeper:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        for camera in self.cameras.values():
            for sub in camera.subscriptions.values():
                sub.wakeup.set()
        if self._control_runner:
            await self._control_runner.cleanup()
        if self._runner:
            await self._runner.cleanup()
        self._runner = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(5)
            for camera in self.cameras.values():
                camera.live_subscriptions()

    # --- control, in-process ----------------------------------------------------------------
    def camera(self, name: str) -> Camera:
        return self.cameras[name]

    def raise_event(self, name: str, kind: str, state: bool = True) -> None:
        """Set an event property (tampering, video_loss, storage_failure, motion) and notify
        every live subscription of the camera."""
        if kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {kind} (one of {', '.join(EVENT_KINDS)})")
        self.cameras[name].set_property(kind, state)

    def reboot(self, name: str) -> None:
        """Drop the camera's subscriptions and nonce cache, as a reboot does."""
        self.cameras[name].reboot()

    def set_fault(self, name: str, operation: str, mode: str | None) -> None:
        faults = self.cameras[name].config.faults
        if mode is None:
            faults.pop(operation, None)
        elif mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode}")
        else:
            faults[operation] = mode

    def update(self, name: str, **changes: Any) -> None:
        """Change camera settings in place (clock_offset, ntp, ptz_error, ptz_moving, ...)."""
        camera = self.cameras[name]
        forbidden = {"name", "port", "address"} & set(changes)
        if forbidden:
            raise ValueError(f"cannot change {', '.join(forbidden)} of a running camera")
        camera.config = replace(camera.config, **changes)
        camera.style = VENDORS[camera.config.vendor]
        camera._cache.clear()

    def stats(self) -> dict[str, dict[str, Any]]:
        return {name: {"requests": dict(c.requests), "subscriptions": len(c.subscriptions),
                       "reboots": c.reboots, "vendor": c.config.vendor,
                       "address": c.config.address, "port": c.config.port}
                for name, c in self.cameras.items()}

    # --- control over HTTP ------------------------------------------------------------------
    async def _c_list(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _c_action(self, request: web.Request) -> web.Response:
        name, action = request.match_info["name"], request.match_info["action"]
        if name not in self.cameras:
            return web.json_response({"error": f"no camera {name}"}, status=404)
        body = await request.json() if request.can_read_body else {}
        try:
            if action == "event":
                self.raise_event(name, body["kind"], bool(body.get("state", True)))
            elif action == "reboot":
                self.reboot(name)
            elif action == "fault":
                self.set_fault(name, body.get("operation", "*"), body.get("mode"))
            elif action == "set":
                self.update(name, **body)
            else:
                return web.json_response({"error": f"unknown action {action}"}, status=404)
        except (KeyError, ValueError, TypeError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response({"ok": True})

    # --- request handling -------------------------------------------------------------------
    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=405, text="SOAP endpoints take POST\n")

    def _camera_of(self, request: web.Request) -> Camera | None:
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if not sockname:
            return None
        return self._by_socket.get((str(ipaddress.ip_address(sockname[0])), sockname[1]))

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        camera = self._camera_of(request)
        if camera is None:
            return web.Response(status=404)
        raw = await request.read()
        try:
            envelope = etree.fromstring(raw, _PARSER)
        except etree.XMLSyntaxError as exc:
            return self._fault(camera, SoapFault("Sender", ("ter:WellFormed",),
                                                 f"Malformed XML: {exc}", 400))
        body = envelope.find(f"{{{SOAP_ENV}}}Body")
        if envelope.tag != f"{{{SOAP_ENV}}}Envelope" or body is None or len(body) == 0:
            return self._fault(camera, SoapFault("Sender", ("ter:InvalidArgs",),
                                                 "not a SOAP 1.2 envelope", 400))
        operation = body[0]
        qname = etree.QName(operation)
        op = qname.localname
        camera.requests[op] += 1
        camera.requests["total"] += 1
        mode = camera.config.faults.get(op) or camera.config.faults.get("*")
        if mode:
            response = await self._misbehave(request, camera, mode, op)
            if response is not None:
                return response
        header = envelope.find(f"{{{SOAP_ENV}}}Header")
        if op not in PRE_AUTH or not camera.config.preauth_time:
            problem = camera.check_token(header)
            if problem is not None:
                camera.requests["auth_failed"] += 1
                return self._fault(camera, self._auth_fault(camera, problem))
        try:
            content = await self._dispatch(camera, qname.namespace or "", op, operation,
                                           request.path_qs)
        except SoapFault as fault:
            return self._fault(camera, fault)
        return self._ok(camera, content)

    async def _misbehave(self, request: web.Request, camera: Camera, mode: str,
                         op: str) -> web.StreamResponse | None:
        if mode == "slow":
            await asyncio.sleep(camera.config.slow_seconds)
            return None
        if mode == "silent":
            await asyncio.sleep(3600)  # cancelled when the client goes away
            return web.Response(status=504)
        if mode == "soap_fault":
            return self._fault(camera, SoapFault(
                "Receiver", ("ter:Action", "ter:HardwareFailure"),
                f"{op}: internal error (simulated)", 500))
        if mode == "http_500":
            return web.Response(status=500, content_type="text/html",
                                text="<html><head><title>500 Internal Server Error</title>"
                                     "</head><body><h1>Internal Server Error</h1></body></html>")
        if mode == "unsupported":
            return self._fault(camera, _not_supported(op))
        if mode == "malformed":
            good = self._envelope(camera, f"<tds:{op}Response><tt:Broken>")
            return web.Response(body=good[: len(good) * 2 // 3].encode() + b"<<&&",
                                content_type="application/soap+xml", charset="utf-8")
        if mode in ("close", "drop"):
            transport = request.transport
            if mode == "close":
                full = self._envelope(camera, f"<tds:{op}Response/>").encode()
                response = web.StreamResponse(status=200, headers={
                    "Content-Type": "application/soap+xml; charset=utf-8"})
                response.content_length = len(full) + 512
                await response.prepare(request)
                await response.write(full[: len(full) // 2])
            if transport is not None:
                transport.close()
            raise asyncio.CancelledError  # nothing more goes out on this connection
        raise ValueError(mode)

    def _auth_fault(self, camera: Camera, problem: str) -> SoapFault:
        style = camera.style
        log.debug("%s: not authorized (%s)", camera.config.name, problem)
        if camera.config.vendor == "axis":
            return SoapFault("Sender", ("ter:NotAuthorized",), "", 401, headers={
                "WWW-Authenticate": f'Digest realm="AXIS_{camera.serial}", '
                                    f'nonce="{base64.b64encode(hashlib.md5(problem.encode()).digest()).decode()}", '  # noqa: E501
                                    'algorithm=MD5, qop="auth"'},
                body="<HTML><HEAD><TITLE>401 Unauthorized</TITLE></HEAD><BODY><H1>401 "
                     "Unauthorized</H1>Your client does not have permission to get URL "
                     "from this server.</BODY></HTML>")
        text = style.auth_text
        if camera.config.vendor == "dahua":
            text += ". Invalid username or password!"
        return SoapFault("Sender", ("ter:NotAuthorized",), text, style.auth_status)

    def _envelope(self, camera: Camera, content: str, header: str = "") -> str:
        style = camera.style
        p = style.prefix
        cached = camera._cache.get("open")
        if cached is None:
            decl = " ".join(f"xmlns:{k}={quoteattr(v)}"
                            for k, v in {p: SOAP_ENV, **style.extra_ns, **COMMON_NS}.items())
            cached = (f'<?xml version="1.0" encoding="UTF-8"?>\n<{p}:Envelope {decl}>')
            camera._cache["open"] = cached
        head = f"<{p}:Header>{header}</{p}:Header>" if header else ""
        return f"{cached}{head}<{p}:Body>{content}</{p}:Body></{p}:Envelope>\n"

    def _headers(self, camera: Camera) -> dict[str, str]:
        return {"Server": camera.style.server_header} if camera.style.server_header else {}

    def _ok(self, camera: Camera, content: str) -> web.Response:
        return web.Response(body=self._envelope(camera, content).encode(),
                            content_type="application/soap+xml", charset="utf-8",
                            headers=self._headers(camera))

    def _fault(self, camera: Camera, fault: SoapFault) -> web.Response:
        headers = {**self._headers(camera), **fault.headers}
        if fault.body is not None:
            return web.Response(status=fault.status, text=fault.body, content_type="text/html",
                                headers=headers)
        p = camera.style.prefix
        sub = ""
        for code in reversed(fault.subcodes):
            sub = f"<{p}:Subcode><{p}:Value>{code}</{p}:Value>{sub}</{p}:Subcode>"
        content = (f"<{p}:Fault><{p}:Code><{p}:Value>{p}:{fault.code}</{p}:Value>{sub}"
                   f"</{p}:Code><{p}:Reason><{p}:Text xml:lang=\"en\">{escape(fault.reason)}"
                   f"</{p}:Text></{p}:Reason></{p}:Fault>")
        return web.Response(status=fault.status, body=self._envelope(camera, content).encode(),
                            content_type="application/soap+xml", charset="utf-8",
                            headers=headers)

    async def _dispatch(self, camera: Camera, ns: str, op: str, element: etree._Element,
                        path: str) -> str:
        if op in ("PullMessages", "Renew", "Unsubscribe", "SetSynchronizationPoint"):
            return await self._subscription_op(camera, op, element, path)
        handler = _HANDLERS.get((ns, op))
        if handler is None:
            raise _not_supported(op)
        if ns == TPTZ and not camera.config.ptz:
            raise _not_supported(f"PTZ {op}: the device has no PTZ service")
        return handler(camera, element)

    async def _subscription_op(self, camera: Camera, op: str, element: etree._Element,
                               path: str) -> str:
        camera.live_subscriptions()
        sub = camera.subscriptions.get(path)
        if sub is None:
            raise SoapFault("Sender", ("wsrf-rw:ResourceUnknownFault",),
                            "The subscription is unknown or has expired", 400)
        if op == "Unsubscribe":
            del camera.subscriptions[path]
            sub.wakeup.set()
            return "<wsnt:UnsubscribeResponse/>"
        if op == "SetSynchronizationPoint":
            for kind in ("tampering", "video_loss", "storage_failure"):
                sub.queue.append(camera.notification(kind, camera.properties[kind],
                                                     "Initialized"))
            sub.wakeup.set()
            return "<tev:SetSynchronizationPointResponse/>"
        if op == "Renew":
            seconds = _termination(element.findtext(f"{{{WSNT}}}TerminationTime"), camera)
            sub.termination = time.time() + seconds
            return (f"<wsnt:RenewResponse><wsnt:TerminationTime>"
                    f"{_iso(camera.now() + seconds)}</wsnt:TerminationTime>"
                    f"<wsnt:CurrentTime>{_iso(camera.now())}</wsnt:CurrentTime>"
                    f"</wsnt:RenewResponse>")
        # PullMessages: answer at once when messages wait, else hold until one comes or the
        # Timeout passes (long poll).
        wait = parse_duration(element.findtext(f"{{{TEV}}}Timeout") or "PT1S") or 1.0
        limit = int(element.findtext(f"{{{TEV}}}MessageLimit") or "10")
        deadline = time.monotonic() + min(wait, MAX_PULL_WAIT)
        while not sub.queue and camera.subscriptions.get(path) is sub:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sub.wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(sub.wakeup.wait(), remaining)
        if camera.subscriptions.get(path) is not sub:
            raise SoapFault("Sender", ("wsrf-rw:ResourceUnknownFault",),
                            "The subscription was terminated", 400)
        messages = [sub.queue.popleft() for _ in range(min(limit, len(sub.queue)))]
        return (f"<tev:PullMessagesResponse><tev:CurrentTime>{_iso(camera.now())}"
                f"</tev:CurrentTime><tev:TerminationTime>"
                f"{_iso(sub.termination + camera.config.clock_offset)}</tev:TerminationTime>"
                f"{''.join(messages)}</tev:PullMessagesResponse>")


_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False)


def _termination(text: str | None, camera: Camera) -> float:
    """Seconds until a requested termination time (a duration, or an absolute time on the
    camera's clock); 60 s when none is asked for."""
    if not text:
        return 60.0
    seconds = parse_duration(text)
    if seconds is None:
        when = parse_time(text)
        if when is None:
            raise SoapFault("Sender", ("wsnt:InvalidTerminationTimeFault",),
                            f"invalid termination time {text}", 400)
        seconds = when - camera.now()
    if seconds <= 0:
        raise SoapFault("Sender", ("wsnt:UnacceptableTerminationTimeFault",),
                        "termination time in the past", 400)
    return min(seconds, 3600.0)


# --- operations -----------------------------------------------------------------------------
def _datetime_xml(ts: float) -> str:
    t = dt.datetime.fromtimestamp(ts, dt.UTC)
    return (f"<tt:Time><tt:Hour>{t.hour}</tt:Hour><tt:Minute>{t.minute}</tt:Minute>"
            f"<tt:Second>{t.second}</tt:Second></tt:Time><tt:Date><tt:Year>{t.year}</tt:Year>"
            f"<tt:Month>{t.month}</tt:Month><tt:Day>{t.day}</tt:Day></tt:Date>")


def op_system_date_and_time(camera: Camera, _element: etree._Element) -> str:
    now = camera.now()
    local = now + 8 * 3600  # the demo district's cameras run on China Standard Time
    kind = "NTP" if camera.config.ntp else "Manual"
    local_xml = "" if camera.config.vendor == "dahua" and not camera.config.ntp else \
        f"<tt:LocalDateTime>{_datetime_xml(local)}</tt:LocalDateTime>"
    return (f"<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            f"<tt:DateTimeType>{kind}</tt:DateTimeType>"
            f"<tt:DaylightSavings>false</tt:DaylightSavings>"
            f"<tt:TimeZone><tt:TZ>{camera.style.timezone}</tt:TZ></tt:TimeZone>"
            f"<tt:UTCDateTime>{_datetime_xml(now)}</tt:UTCDateTime>{local_xml}"
            f"</tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>")


def op_device_information(camera: Camera, _element: etree._Element) -> str:
    return (f"<tds:GetDeviceInformationResponse>"
            f"<tds:Manufacturer>{escape(camera.manufacturer)}</tds:Manufacturer>"
            f"<tds:Model>{escape(camera.model)}</tds:Model>"
            f"<tds:FirmwareVersion>{escape(camera.firmware)}</tds:FirmwareVersion>"
            f"<tds:SerialNumber>{escape(camera.serial)}</tds:SerialNumber>"
            f"<tds:HardwareId>{escape(camera.hardware)}</tds:HardwareId>"
            f"</tds:GetDeviceInformationResponse>")


def _service_list(camera: Camera) -> list[tuple[str, str, int, int]]:
    services = [(TDS, "device", 2, 60), (TRT, "media", 2, 60), (TEV, "events", 2, 60),
                (TIMG, "imaging", 2, 60), (TMD, "deviceio", 2, 60)]
    if camera.config.vendor != "dahua":
        services.append((TAN, "analytics", 2, 60))
    if camera.config.ptz:
        services.append((TPTZ, "ptz", 2, 60))
    return services


def op_services(camera: Camera, _element: etree._Element) -> str:
    if not camera.config.get_services:
        raise _not_supported("GetServices")
    parts = []
    for namespace, service, major, minor in _service_list(camera):
        parts.append(f"<tds:Service><tds:Namespace>{namespace}</tds:Namespace>"
                     f"<tds:XAddr>{camera.xaddr(service)}</tds:XAddr>"
                     f"<tds:Version><tt:Major>{major}</tt:Major><tt:Minor>{minor}</tt:Minor>"
                     f"</tds:Version></tds:Service>")
    return f"<tds:GetServicesResponse>{''.join(parts)}</tds:GetServicesResponse>"


def op_capabilities(camera: Camera, _element: etree._Element) -> str:
    x = camera.xaddr
    ptz = f"<tt:PTZ><tt:XAddr>{x('ptz')}</tt:XAddr></tt:PTZ>" if camera.config.ptz else ""
    analytics = "" if camera.config.vendor == "dahua" else (
        f"<tt:Analytics><tt:XAddr>{x('analytics')}</tt:XAddr>"
        f"<tt:RuleSupport>true</tt:RuleSupport>"
        f"<tt:AnalyticsModuleSupport>true</tt:AnalyticsModuleSupport></tt:Analytics>")
    vendor_ext = ""
    if camera.config.vendor == "hikvision":
        vendor_ext = (f"<hikxsd:hikCapabilities><hikxsd:XAddr>{camera.base()}/onvif/hik_ext"
                      f"</hikxsd:XAddr><hikxsd:IOInputSupport>true</hikxsd:IOInputSupport>"
                      f"<hikxsd:PrivacyMaskSupport>true</hikxsd:PrivacyMaskSupport>"
                      f"<hikxsd:PTZ3DZoomSupport>{str(camera.config.ptz).lower()}"
                      f"</hikxsd:PTZ3DZoomSupport></hikxsd:hikCapabilities>")
    return (
        f"<tds:GetCapabilitiesResponse><tds:Capabilities>{analytics}"
        f"<tt:Device><tt:XAddr>{x('device')}</tt:XAddr>"
        f"<tt:Network><tt:IPFilter>true</tt:IPFilter><tt:ZeroConfiguration>true"
        f"</tt:ZeroConfiguration><tt:IPVersion6>true</tt:IPVersion6><tt:DynDNS>true"
        f"</tt:DynDNS></tt:Network>"
        f"<tt:System><tt:DiscoveryResolve>false</tt:DiscoveryResolve><tt:DiscoveryBye>true"
        f"</tt:DiscoveryBye><tt:RemoteDiscovery>false</tt:RemoteDiscovery>"
        f"<tt:SystemBackup>false</tt:SystemBackup><tt:SystemLogging>true</tt:SystemLogging>"
        f"<tt:FirmwareUpgrade>true</tt:FirmwareUpgrade>"
        f"<tt:SupportedVersions><tt:Major>2</tt:Major><tt:Minor>60</tt:Minor>"
        f"</tt:SupportedVersions></tt:System>"
        f"<tt:Security><tt:TLS1.1>false</tt:TLS1.1><tt:TLS1.2>false</tt:TLS1.2>"
        f"<tt:OnboardKeyGeneration>false</tt:OnboardKeyGeneration><tt:AccessPolicyConfig>"
        f"false</tt:AccessPolicyConfig><tt:X.509Token>false</tt:X.509Token><tt:SAMLToken>"
        f"false</tt:SAMLToken><tt:KerberosToken>false</tt:KerberosToken><tt:RELToken>false"
        f"</tt:RELToken></tt:Security></tt:Device>"
        f"<tt:Events><tt:XAddr>{x('events')}</tt:XAddr>"
        f"<tt:WSSubscriptionPolicySupport>true</tt:WSSubscriptionPolicySupport>"
        f"<tt:WSPullPointSupport>true</tt:WSPullPointSupport>"
        f"<tt:WSPausableSubscriptionManagerInterfaceSupport>false"
        f"</tt:WSPausableSubscriptionManagerInterfaceSupport></tt:Events>"
        f"<tt:Imaging><tt:XAddr>{x('imaging')}</tt:XAddr></tt:Imaging>"
        f"<tt:Media><tt:XAddr>{x('media')}</tt:XAddr><tt:StreamingCapabilities>"
        f"<tt:RTPMulticast>true</tt:RTPMulticast><tt:RTP_TCP>true</tt:RTP_TCP>"
        f"<tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP></tt:StreamingCapabilities></tt:Media>"
        f"{ptz}<tt:Extension>{vendor_ext}</tt:Extension>"
        f"</tds:Capabilities></tds:GetCapabilitiesResponse>")


def op_profiles(camera: Camera, _element: etree._Element) -> str:
    parts = []
    omit = camera.style.omit_multicast
    for i, p in enumerate(camera.profiles()):
        encoding = p.get("encoding", "H264")
        width, height = p.get("width", 1920), p.get("height", 1080)
        codec = ""
        if encoding == "H264":
            codec = ("<tt:H264><tt:GovLength>50</tt:GovLength><tt:H264Profile>Main"
                     "</tt:H264Profile></tt:H264>")
        multicast = "" if omit else (
            "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0"
            "</tt:IPv4Address></tt:Address><tt:Port>8860</tt:Port><tt:TTL>128</tt:TTL>"
            "<tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
            "<tt:SessionTimeout>PT5S</tt:SessionTimeout>")
        ptz = ""
        if camera.config.ptz:
            ptz = ("<tt:PTZConfiguration token=\"PTZToken\"><tt:Name>PTZ</tt:Name>"
                   "<tt:UseCount>2</tt:UseCount><tt:NodeToken>PTZNODETOKEN</tt:NodeToken>"
                   "<tt:DefaultAbsolutePantTiltPositionSpace>http://www.onvif.org/ver10/tptz/"
                   "PanTiltSpaces/PositionGenericSpace</tt:DefaultAbsolutePantTiltPositionSpace>"
                   "<tt:DefaultPTZTimeout>PT5S</tt:DefaultPTZTimeout></tt:PTZConfiguration>")
        parts.append(
            f"<trt:Profiles token={quoteattr(p['token'])} fixed=\"true\">"
            f"<tt:Name>{escape(p.get('name', p['token']))}</tt:Name>"
            f"<tt:VideoSourceConfiguration token=\"VideoSourceToken\"><tt:Name>VideoSourceConfig"
            f"</tt:Name><tt:UseCount>{len(camera.profiles())}</tt:UseCount>"
            f"<tt:SourceToken>VideoSource_1</tt:SourceToken><tt:Bounds x=\"0\" y=\"0\" "
            f"width=\"{width}\" height=\"{height}\"/></tt:VideoSourceConfiguration>"
            f"<tt:VideoEncoderConfiguration token=\"VideoEncoderToken_{i + 1}\">"
            f"<tt:Name>VideoEncoder_{i + 1}</tt:Name><tt:UseCount>1</tt:UseCount>"
            f"<tt:Encoding>{escape(encoding)}</tt:Encoding><tt:Resolution><tt:Width>{width}"
            f"</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>"
            f"<tt:Quality>4</tt:Quality><tt:RateControl><tt:FrameRateLimit>25"
            f"</tt:FrameRateLimit><tt:EncodingInterval>1</tt:EncodingInterval>"
            f"<tt:BitrateLimit>{4096 if i == 0 else 512}</tt:BitrateLimit></tt:RateControl>"
            f"{codec}{multicast}</tt:VideoEncoderConfiguration>{ptz}</trt:Profiles>")
    return f"<trt:GetProfilesResponse>{''.join(parts)}</trt:GetProfilesResponse>"


def _token(element: etree._Element, ns: str) -> str | None:
    return element.findtext(f"{{{ns}}}ProfileToken")


def op_stream_uri(camera: Camera, element: etree._Element) -> str:
    token = _token(element, TRT)
    if token not in [p["token"] for p in camera.profiles()]:
        raise _bad_arg(f"no profile {token}")
    return (f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>{escape(camera.stream_uri(token))}"
            f"</tt:Uri><tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            f"<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot><tt:Timeout>PT60S"
            f"</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>")


def op_ptz_status(camera: Camera, element: etree._Element) -> str:
    if _token(element, TPTZ) not in [p["token"] for p in camera.profiles()]:
        raise _bad_arg("no such profile")
    style = camera.style
    moving = "MOVING" if camera.config.ptz_moving else "IDLE"
    zoom = "" if style.omit_zoom_status else "<tt:Zoom>IDLE</tt:Zoom>"
    error = camera.config.ptz_error
    if error:
        error_xml = f"<tt:Error>{escape(error)}</tt:Error>"
    else:
        error_xml = "<tt:Error/>" if style.ptz_error_element == "empty" else ""
    utc = "" if style.omit_ptz_utc else f"<tt:UtcTime>{_iso(camera.now())}</tt:UtcTime>"
    return (f"<tptz:GetStatusResponse><tptz:PTZStatus><tt:Position>"
            f"<tt:PanTilt x=\"0.164178\" y=\"-0.618316\" space=\"http://www.onvif.org/ver10/"
            f"tptz/PanTiltSpaces/PositionGenericSpace\"/><tt:Zoom x=\"0.000000\" space=\""
            f"http://www.onvif.org/ver10/tptz/ZoomSpaces/PositionGenericSpace\"/></tt:Position>"
            f"<tt:MoveStatus><tt:PanTilt>{moving}</tt:PanTilt>{zoom}</tt:MoveStatus>"
            f"{error_xml}{utc}</tptz:PTZStatus></tptz:GetStatusResponse>")


def op_ptz_presets(camera: Camera, element: etree._Element) -> str:
    if _token(element, TPTZ) not in [p["token"] for p in camera.profiles()]:
        raise _bad_arg("no such profile")
    parts = [f"<tptz:Preset token=\"{n}\"><tt:Name>preset {n}</tt:Name><tt:PTZPosition>"
             f"<tt:PanTilt x=\"{(n % 10) / 10:.1f}\" y=\"0.0\"/><tt:Zoom x=\"0.0\"/>"
             f"</tt:PTZPosition></tptz:Preset>" for n in range(1, camera.config.presets + 1)]
    return f"<tptz:GetPresetsResponse>{''.join(parts)}</tptz:GetPresetsResponse>"


def op_create_pullpoint(camera: Camera, element: etree._Element) -> str:
    seconds = _termination(element.findtext(f"{{{TEV}}}InitialTerminationTime"), camera)
    sub = camera.subscribe(seconds)
    reference = ""
    if camera.config.vendor == "axis":
        reference = (f"<wsa:ReferenceParameters><dom0:SubscriptionId xmlns:dom0=\""
                     f"http://www.axis.com/2009/event\">{sub.number}</dom0:SubscriptionId>"
                     f"</wsa:ReferenceParameters>")
    return (f"<tev:CreatePullPointSubscriptionResponse><tev:SubscriptionReference>"
            f"<wsa:Address>{escape(camera.base() + sub.path)}</wsa:Address>{reference}"
            f"</tev:SubscriptionReference>"
            f"<wsnt:CurrentTime>{_iso(camera.now())}</wsnt:CurrentTime>"
            f"<wsnt:TerminationTime>{_iso(camera.now() + seconds)}</wsnt:TerminationTime>"
            f"</tev:CreatePullPointSubscriptionResponse>")


def op_event_capabilities(camera: Camera, _element: etree._Element) -> str:
    return ("<tev:GetServiceCapabilitiesResponse><tev:Capabilities "
            "WSSubscriptionPolicySupport=\"true\" WSPullPointSupport=\"true\" "
            "WSPausableSubscriptionManagerInterfaceSupport=\"false\" "
            "MaxNotificationProducers=\"10\" MaxPullPoints=\"10\"/>"
            "</tev:GetServiceCapabilitiesResponse>")


_HANDLERS = {
    (TDS, "GetSystemDateAndTime"): op_system_date_and_time,
    (TDS, "GetDeviceInformation"): op_device_information,
    (TDS, "GetServices"): op_services,
    (TDS, "GetCapabilities"): op_capabilities,
    (TRT, "GetProfiles"): op_profiles,
    (TRT, "GetStreamUri"): op_stream_uri,
    (TPTZ, "GetStatus"): op_ptz_status,
    (TPTZ, "GetPresets"): op_ptz_presets,
    (TEV, "CreatePullPointSubscription"): op_create_pullpoint,
    (TEV, "GetServiceCapabilities"): op_event_capabilities,
}


# --- configuration files and the command line -----------------------------------------------
def load_config(path: str) -> list[CameraConfig]:
    with open(path) as fh:
        doc = json.load(fh)
    if isinstance(doc, list):
        doc = {"cameras": doc}
    defaults = doc.get("defaults", {})
    cameras = []
    for i, entry in enumerate(doc.get("cameras", [])):
        cameras.append(CameraConfig.from_dict({"index": i + 1, **defaults, **entry}))
    return cameras


def generate(count: int, first_port: int, address: str = "127.0.0.1",
             vendors: tuple[str, ...] = ("hikvision", "dahua", "axis"),
             ptz_every: int = 4, **settings: Any) -> list[CameraConfig]:
    """`count` cameras on consecutive ports, vendors in turn, every `ptz_every`-th a PTZ."""
    return [CameraConfig(name=f"cam-{i + 1:04d}", port=first_port + i, address=address,
                         vendor=vendors[i % len(vendors)],
                         ptz=ptz_every > 0 and i % ptz_every == 0, index=i + 1, **settings)
            for i in range(count)]


async def serve(cameras: list[CameraConfig], control: tuple[str, int] | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with OnvifSimulator(cameras, control) as sim:
        print(json.dumps({"ready": True, "cameras": len(sim.cameras),
                          "control": f"{control[0]}:{control[1]}" if control else None}),
              flush=True)
        await stop.wait()


def _hostport(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agent.demo.onvif",
                                     description="Simulated ONVIF cameras on loopback.")
    parser.add_argument("--config", help="cameras.json")
    parser.add_argument("--count", type=int, help="generate this many cameras instead")
    parser.add_argument("--first-port", type=int, default=20000)
    parser.add_argument("--address", default="127.0.0.1")
    parser.add_argument("--password", default="vigil-demo-1",
                        help="password of generated cameras")
    parser.add_argument("--control", help="host:port of the JSON control API (loopback)")
    parser.add_argument("--log-level", default="WARNING")
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.config:
            cameras = load_config(args.config)
        elif args.count:
            cameras = generate(args.count, args.first_port, args.address,
                               password=args.password)
        else:
            parser.error("give --config or --count")
        control = _hostport(args.control) if args.control else None
        asyncio.run(serve(cameras, control))
    except (OSError, ValueError) as exc:
        print(f"onvif simulator: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
