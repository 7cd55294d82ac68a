"""Agent settings (`agent.yaml`): where the other files are, how to poll, where to listen.

Every key is documented here with `Field(description=...)`; `vigil docs config` renders these
descriptions into docs/configuration.md, so the reference page cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from typing import Literal

from pydantic import BaseModel, Field, create_model, field_validator

from agent.configbase import Duration, Strict
from agent.inspection_schedule import Inspections
from agent.notify.model import Channel
from agent.tls import Tls
from agent.ups_test_settings import UpsTestSettings
from agent.validation import attribute_docs
from collectors.video.quality import QualityThresholds

KINDS = ("ptz_camera", "fixed_camera", "nvr", "ups", "switch", "spd_monitor", "env_monitor")
Kind = Literal["ptz_camera", "fixed_camera", "nvr", "ups", "switch", "spd_monitor", "env_monitor"]
SubjectKind = Literal["ptz_camera", "fixed_camera", "nvr", "ups", "switch", "spd_monitor",
                      "env_monitor", "earthing_point", "inspection"]
"""What rules select: device kinds, the inventory's earthing points (agent/earthing.py) and
the scheduled inspections (agent/inspection_subjects.py)."""


class SnmpOptions(Strict):
    """SNMP transport tuning. Set agent-wide in `agent.yaml` under `snmp:`; any key may be
    overridden per device in the inventory (`devices[].snmp`) or in `defaults.snmp`."""

    timeout: Duration | None = Field(
        None, description="Seconds to wait for one response before retrying. Default 2s.")
    retries: int | None = Field(
        None, ge=0, le=10, description="Retries after a timeout, per request. Default 1.")
    max_repetitions: int | None = Field(
        None, ge=1, le=200,
        description="GETBULK max-repetitions: rows asked per column per request. Default 25. "
                    "The agent lowers it so that columns x repetitions stays within "
                    "`max_varbinds_per_request`.")
    max_oids_per_request: int | None = Field(
        None, ge=1, le=128,
        description="Most OIDs put in one GET request; longer lists are split. Default 32.")
    max_varbinds_per_request: int | None = Field(
        None, ge=1, le=1000,
        description="Most varbinds a GETBULK may ask for (columns x repetitions). Some agents "
                    "answer at most 64 per response. Default 60.")


SNMP_DEFAULTS = SnmpOptions(timeout=2.0, retries=1, max_repetitions=25, max_oids_per_request=32,
                            max_varbinds_per_request=60)


class AgentIdentity(Strict):
    id: str = Field(
        ..., pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$",
        description="Identifier of this agent, unique across the district (e.g. `branch-dh`). "
                    "Exported as the `agent` label on the agent's own metrics.")
    name: str = Field("", description="Human name of the branch machine room, e.g. `东湖分局机房`.")


class Snmp(SnmpOptions):
    engine: Literal["pysnmp", "builtin", "ezsnmp"] = Field(
        "pysnmp",
        description="SNMP engine. `pysnmp` (the default; pyasn1 codes every message), "
                    "`builtin` (Vigil's own BER codec for v1/v2c, about 10x less CPU per poll "
                    "than pysnmp: the one for sites of more than about 1,000 devices) or "
                    "`ezsnmp` (net-snmp's C library, about 1.8x less than pysnmp; `pip "
                    "install 'vigil[fast]'`). SNMPv3 always goes through pysnmp. See "
                    "docs/snmp-engines.md for the measurements.")
    engine_threads: int = Field(
        16, ge=1, le=256,
        description="ezsnmp only: worker threads doing blocking SNMP requests, which caps the "
                    "v1/v2c polls in flight (whatever `max_concurrent_polls` says). The GIL is "
                    "released while waiting, so threads waiting on slow devices are cheap.")


class Schedule(Strict):
    default_interval: Duration = Field(60.0, description="Poll interval for every device "
                                       "unless its kind or the device sets another.")
    intervals: dict[Kind, Duration] = Field(
        default_factory=dict,
        description="Poll interval per device kind, e.g. `{ups: 30s, ptz_camera: 60s}`.")
    max_concurrent_polls: int = Field(
        64, ge=1, le=10000,
        description="Most device polls in flight at once, per collector (snmp, onvif, rtsp, "
                    "reach). Bounds sockets and memory; a dead device holds a slot only until "
                    "its timeout.")
    poll_deadline_ratio: float = Field(
        0.9, gt=0, le=1,
        description="A poll is abandoned (up=0, reason timeout) after this share of its "
                    "interval, so one slow device never runs into its next poll.")
    spread_start: bool = Field(
        True, description="Spread first polls over one interval (by a hash of the device id) "
                          "so a thousand devices are not polled in the same millisecond.")


class Onvif(Strict):
    """ONVIF polling of cameras and NVRs that have an `onvif:` block in the inventory."""

    interval: Duration = Field(60.0, description="Poll interval (identity, clock, profiles, PTZ).")
    timeout: Duration = Field(5.0, description="Seconds to wait for one SOAP answer.")
    events: bool = Field(True, description="Subscribe to the cameras' ONVIF events (PullPoint): "
                                           "tampering, video loss, storage failure.")
    max_subscriptions: int = Field(
        500, ge=0, le=100000,
        description="Most event subscriptions held open at once; cameras beyond it are "
                    "watched by polling only (and that is logged).")


class Rtsp(Strict):
    """RTSP stream probes and video quality diagnosis of devices with an `rtsp:` block (or an
    `onvif:` block, whose stream URI is probed)."""

    cameras_per_minute: float = Field(
        30.0, gt=0,
        description="Cameras probed per minute, decoding `decode_seconds` of video each: "
                    "this bounds the decoding cost. Each camera's probe interval is the number "
                    "of such cameras divided by this, but not less than `min_interval`.")
    min_interval: Duration = Field(60.0, description="Shortest probe interval of one camera.")
    decode_seconds: Duration = Field(
        3.0, description="Seconds of video read and decoded per probe (0: OPTIONS/DESCRIBE "
                         "only, no picture checks).")
    timeout: Duration = Field(10.0, description="Seconds to wait for an RTSP answer or the "
                                                "first frame.")
    transport: Literal["tcp", "udp"] = Field("tcp", description="RTP transport asked for.")
    max_decodes: int = Field(
        2, ge=1, le=64,
        description="Streams decoded at the same time, each in its own decoder process "
                    "(CPU-bound; about 130 MiB each; a decoder FFmpeg crashes costs one probe "
                    "and is replaced).")


def _video_model() -> type[BaseModel]:
    """`video:` settings: the fields of QualityThresholds, documented by its own docstrings."""
    docs = attribute_docs(QualityThresholds)
    types = typing.get_type_hints(QualityThresholds)
    fields: dict[str, typing.Any] = {
        f.name: (types[f.name], Field(f.default, description=docs.get(f.name, "")))
        for f in dataclasses.fields(QualityThresholds)}
    return create_model("Video", __base__=Strict,
                        __doc__="Thresholds of the picture checks (video quality diagnosis).",
                        **fields)


Video = _video_model()


class Reachability(Strict):
    """ICMP echo and TCP connect checks of every device: tell "host down" from "service down"."""

    enabled: bool = Field(True, description="Check reachability of every device.")
    interval: Duration = Field(30.0, description="Check interval.")
    icmp: bool = Field(True, description="Send ICMP echo (unprivileged when the kernel allows "
                                         "it: sysctl net.ipv4.ping_group_range).")
    count: int = Field(2, ge=1, le=10, description="Echo requests per check.")
    timeout: Duration = Field(1.0, description="Seconds to wait for each answer.")


class Traps(Strict):
    """The SNMP trap receiver: devices' traps become events at once."""

    enabled: bool = Field(False, description="Receive SNMP traps.")
    listen: str = Field(
        "0.0.0.0:1162",
        description="host:port to receive on. The hardened unit cannot bind port 162: point "
                    "the devices at 1162, or redirect 162 to it (nftables; see "
                    "docs/events-and-reachability.md).")
    credentials: list[str] = Field(
        default_factory=list,
        description="Credentials entries accepted on incoming traps: v1/v2c communities and "
                    "v3 users.")
    per_source_rate: float = Field(
        20.0, gt=0, description="Traps per second accepted from one source address; the "
                                "excess is dropped unread and counted "
                                "(vigil_snmp_traps_total{outcome=\"rate_limited\"}).")
    per_source_burst: int = Field(
        200, ge=1, description="Traps one source may send at once before the rate applies.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value)


class Rules(Strict):
    """The rules engine: which rule files, how often they are evaluated, flapping."""

    files: list[str] = Field(
        ["rules/*.yaml"],
        description="Rule files (glob patterns allowed), relative to agent.yaml. An empty "
                    "list runs no rules.")
    interval: Duration = Field(
        10.0, description="Evaluation interval. A fault fires at the first evaluation after "
                          "its `for:` has passed.")
    stale_after: float = Field(
        3.0, ge=1.0, le=100.0,
        description="A collector's readings count as stale (absent) when older than this many "
                    "of its poll intervals.")
    flap_window: Duration = Field(
        1800.0, description="Window in which a rule's result changes are counted for flapping.")
    flap_threshold: int = Field(
        6, ge=2, le=1000,
        description="Changes (good->bad or bad->good) within `flap_window` that make a flapping "
                    "fault: one fault that stays until the device has calmed down, instead of "
                    "one fault per bounce.")
    history: int = Field(5000, ge=0, le=1_000_000,
                         description="Resolved faults kept (newest first) for the API and "
                                     "CLI, in memory and in state_dir/faults-history.jsonl "
                                     "(0: all).")
    vars: dict[str, typing.Any] = Field(
        default_factory=dict,
        description="This site's values of rule-group constants, replacing the `vars` of "
                    "every group that declares them (e.g. `approved_firmware: {DS-2DE4425IW-DE: "
                    "[V5.7.12 build 230818]}`), so the shipped rule files stay untouched.")


class Alertmanager(Strict):
    """Forwarding of faults to Alertmanager (API v2), for centres that route with it."""

    urls: list[str] = Field(
        default_factory=list,
        description="Alertmanager base URLs, e.g. `http://127.0.0.1:9093`. Every firing fault "
                    "is sent to each; empty: no forwarding.")
    timeout: Duration = Field(10.0, description="Timeout of one request.")
    resend_interval: Duration = Field(
        60.0, description="Firing faults are sent again this often (Alertmanager forgets an "
                          "alert whose `endsAt` passed); resolved ones are sent once at once.")

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for url in value:
            if not re.match(r"^https?://[^/\s]+(/\S*)?$", url):
                raise ValueError(f"'{url}' is not an http(s):// URL")
        return [u.rstrip("/") for u in value]


class Tickets(Strict):
    """Tickets: every firing fault that is not suppressed (caused by a root fault, silenced,
    inhibited) opens one; a ticket not handled within its level's limits escalates."""

    enabled: bool = Field(True, description="Open tickets for faults and escalate them.")
    url: str = Field(
        "sqlite+aiosqlite:///tickets.db",
        description="Ticket store (SQLAlchemy URL): `sqlite+aiosqlite:///PATH` (embedded; a "
                    "relative PATH is relative to `state_dir`) or `postgresql+psycopg://user@"
                    "host/db` for a monitoring centre whose agents share one store. The "
                    "schema is migrated at start; while the store cannot be opened the agent "
                    "keeps polling and grading, logs it and retries.")
    reopen_window: Duration = Field(
        86400.0, description="A fault returning within this time after its ticket was closed "
                             "reopens that ticket instead of opening a new one.")
    escalation: str = Field(
        "escalation.yaml",
        description="The escalation policy (time limits per level, calendars, tiers and their "
                    "channels), relative to agent.yaml. When this default file is absent the "
                    "built-in policy applies: the limits of the shipped "
                    "config/escalation.yaml with tiers that have no channels (tickets open and "
                    "escalate, nobody is notified). A file named here explicitly must exist.")
    escalation_interval: Duration = Field(
        30.0, gt=0, description="How often open tickets are checked for breached limits "
                                "(and once at start). Deadlines come from stored times, so a "
                                "restart neither loses nor repeats an escalation.")
    tokens: str = Field(
        "tokens.yaml",
        description="API users (name, role, SHA-256 of the token; `vigil tokens add NAME "
                    "--role ROLE --file FILE` makes one), relative to agent.yaml, re-read "
                    "when it changes. Absent: nobody may change a ticket or a silence over "
                    "the API.")
    link_base: str = Field(
        "",
        description="Base URL put in messages as the ticket's link (`<link_base>/tickets/"
                    "<id>`), e.g. the centre's web UI. Empty: `http://<listen>/api/v1`.")

    @field_validator("link_base")
    @classmethod
    def _link_base(cls, value: str) -> str:
        if value and not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
            raise ValueError(f"'{value}' is not an http(s):// URL")
        return value.rstrip("/")


class Notifications(Strict):
    """Where ticket messages go: named channels, referred to by the escalation policy's tiers."""

    channels: list[Channel] = Field(
        default_factory=list,
        description="Notification channels, each with a `name` and a `type` (`wecom`, "
                    "`dingtalk`, `email`, `webhook`); the keys of each type are listed in "
                    "the sections below. Empty: tickets notify nobody.",
        json_schema_extra={"reference": "sections"})  # agent/reference.py: one section a type
    dead_letters: str = Field(
        "dead-letters",
        description="Directory (relative to `state_dir`) of `dead-letters.jsonl`: messages "
                    "that never got through after every retry.")

    @field_validator("channels")
    @classmethod
    def _unique(cls, value: list[Channel]) -> list[Channel]:
        names = [c.name for c in value]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"channel names must be unique; defined twice: {', '.join(twice)}")
        return value


class History(Strict):
    """Readings history for reports (agent/history.py, docs/history.md): per device and
    metric a summary (min, max, sum, count) of every bucket and of every local day, and per
    device and collector the seconds it was up, down and unknown. Kept in the ticket store's
    database (`tickets.url`)."""

    enabled: bool = Field(True, description="Record the readings history.")
    interval: Duration = Field(
        300.0, description="Width of a bucket, aligned to the wall clock (5m: :00, :05, ...). "
                           "Must divide 15 minutes (1m, 3m, 5m, 15m ...), so that buckets "
                           "also align with local days in every timezone.")
    timezone: str = Field(
        "Asia/Shanghai", description="IANA timezone of the site: where its days begin and end "
                                     "for the daily summaries and the reports.")
    retention_5m: Duration = Field(
        7 * 86400.0, description="Bucket rows are deleted once their start is older than "
                                 "this (in batches, once a day). About 145 bytes a row: "
                                 "1,000 devices cost about 1 GB a day of buckets.")
    retention_daily: Duration = Field(
        730 * 86400.0, description="Daily rows are deleted once their day began before "
                                   "this long ago.")
    metrics: list[str] = Field(
        ["*"],
        description="Metrics recorded: names or shell patterns (`ups_*`) matched against "
                    "every gauge of the metric vocabulary (counters and info metrics are "
                    "never recorded), and `up` for availability (per device and collector). "
                    "Each device costs one row per bucket per recorded series (a switch's "
                    "per-port gauges are many series): see docs/history.md for the volume.")

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 60 or value != int(value) or 900 % int(value):
            raise ValueError("must be a whole number of seconds, at least 60, that divides "
                             "900 (15 minutes), e.g. 60s, 5m, 15m")
        return value

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown timezone '{value}' (use an IANA name such as "
                             "Asia/Shanghai)") from None
        return value


def _host_port(value: str) -> str:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"'{value}' is not host:port (e.g. 127.0.0.1:9830)")
    return value


class Settings(Strict):
    """Top level of `agent.yaml`. Relative paths are relative to the directory of agent.yaml."""

    agent: AgentIdentity = Field(..., description="Who this agent is.")
    listen: str = Field(
        "127.0.0.1:9830",
        description="host:port of the HTTP server (`/metrics`, `/-/healthy`, `/-/ready`). "
                    "Bind 127.0.0.1 unless Prometheus scrapes from another host.")
    inventory: list[str] = Field(
        ["inventory.yaml"],
        description="Inventory files (glob patterns allowed, e.g. `inventory.d/*.yaml`). "
                    "Device ids must be unique across all of them.")
    credentials: str = Field(
        "credentials.yaml",
        description="The credentials file (SNMP communities and v3 users). It must not be "
                    "readable by group or others (chmod 600), or `vigil check` fails.")
    profiles: list[str] = Field(
        default_factory=list,
        description="Extra directories of device profiles (`*.yaml`). The built-in profiles "
                    "are always loaded; a profile here with the same name replaces a built-in.")
    state_dir: str = Field(
        "/var/lib/vigil",
        description="The agent's own files: evidence frames of video faults (`evidence/`).")
    evidence_per_device: int = Field(
        20, ge=0, le=10000,
        description="Evidence files kept per device; the oldest go first.")
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Log level.")
    memory_trim_interval: Duration = Field(
        300.0, ge=0,
        description="How often the C allocator's free memory is given back to the system "
                    "(glibc `malloc_trim`; 0: never). Without it the RSS keeps the peaks of "
                    "every thread's allocations (docs/reliability.md, Soak); "
                    "`vigil_memory_trimmed_bytes_total` counts what it gave back.")
    snmp: Snmp = Field(default_factory=Snmp, description="SNMP engine and default tuning.")
    schedule: Schedule = Field(default_factory=Schedule, description="Polling schedule.")
    onvif: Onvif = Field(default_factory=Onvif, description="ONVIF polling and events.")
    rtsp: Rtsp = Field(default_factory=Rtsp, description="Stream probes and picture checks.")
    video: Video = Field(default_factory=Video,  # type: ignore[valid-type]
                         description="Thresholds of the picture checks.")
    reachability: Reachability = Field(default_factory=Reachability,
                                       description="ICMP and TCP reachability checks.")
    traps: Traps = Field(default_factory=Traps, description="The SNMP trap receiver.")
    rules: Rules = Field(default_factory=Rules, description="The rules engine.")
    alertmanager: Alertmanager = Field(default_factory=Alertmanager,
                                       description="Forwarding faults to Alertmanager.")
    tickets: Tickets = Field(default_factory=Tickets, description="Tickets and escalation.")
    ups_tests: UpsTestSettings = Field(default_factory=UpsTestSettings,
                                       description="UPS battery tests (docs/ups-test.md).")
    notifications: Notifications = Field(default_factory=Notifications,
                                         description="Notification channels.")
    inspections: Inspections = Field(default_factory=Inspections,
                                     description="Periodic inspections (docs/inspections.md).")
    history: History = Field(default_factory=History,
                             description="Readings history for reports.")
    tls: Tls | None = Field(None, description="HTTPS for the API, web UI and /metrics "
                                              "(docs/security.md); plain HTTP if left out.")

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _host_port(value)

    @field_validator("video")
    @classmethod
    def _video(cls, value: BaseModel) -> BaseModel:
        QualityThresholds(**value.model_dump())  # its own range checks, as a config error
        return value

    def snmp_options(self) -> SnmpOptions:
        """Agent-wide SNMP tuning with built-in defaults filled in."""
        return merge_snmp(SNMP_DEFAULTS, self.snmp)


def merge_snmp(base: SnmpOptions, *overrides: SnmpOptions | None) -> SnmpOptions:
    """Later non-empty keys win: built-in defaults < agent.yaml < inventory defaults < device."""
    values = {k: getattr(base, k) for k in SnmpOptions.model_fields}
    for layer in overrides:
        if layer is None:
            continue
        for key in SnmpOptions.model_fields:
            value = getattr(layer, key)
            if value is not None:
                values[key] = value
    return SnmpOptions(**values)
