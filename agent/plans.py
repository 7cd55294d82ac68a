"""Which collectors watch each device, how often, and with what job.

The inventory says what a device has (SNMP credentials, an `onvif:` service, an `rtsp:`
stream, reachability); agent.yaml says how often and how hard to look. This module turns the
two into Plans the scheduler runs. A plan's `signature` is what, when it changes on a reload,
re-plans the job; anything else keeps its rhythm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agent.config import Config
from agent.credentials import Login
from agent.inventory import Device
from agent.state import State
from collectors.snmp.collector import SnmpJob
from collectors.snmp.engine import SnmpAuth, Target
from collectors.snmp.fetch import FetchLimits

CAMERA_KINDS = ("ptz_camera", "fixed_camera")


@dataclass(frozen=True)
class Plan:
    device: str
    collector: str
    interval: float
    signature: Any  # compared on reload
    make_job: Callable[[], Any | None]  # None: nothing to poll yet (e.g. no stream URI known)

    @property
    def key(self) -> str:
        return f"{self.device}/{self.collector}"


def snmp_job(config: Config, device: Device) -> SnmpJob:
    """Everything the SNMP collector needs to poll `device` under `config`."""
    options = config.snmp_options(device)
    assert device.credentials is not None and device.port is not None  # checked at load
    auth = config.credentials[device.credentials]
    assert isinstance(auth, SnmpAuth)
    assert options.timeout is not None and options.retries is not None
    target = Target(device.address, device.port, auth, options.timeout, options.retries)
    limits = FetchLimits(
        max_repetitions=options.max_repetitions or 25,
        max_oids_per_request=options.max_oids_per_request or 32,
        max_varbinds_per_request=options.max_varbinds_per_request or 60,
        bulk=auth.version != "1")
    deadline = config.interval(device) * config.settings.schedule.poll_deadline_ratio
    return SnmpJob(device.id, target, device.profile, limits, deadline)


def _snmp_maker(job: SnmpJob, state: State) -> Callable[[], SnmpJob]:
    """A device whose last SNMP poll timed out is asked without retries until it answers
    again: the ~850 devices behind a dead aggregation switch then hold a poll slot for one
    timeout each, not (retries + 1), and the devices that answer keep their slots (Zabbix
    keeps separate pollers for unreachable hosts for the same reason)."""
    once = replace(job, target=replace(job.target, retries=0))

    def make() -> SnmpJob:
        entry = state.devices.get(job.device)
        last = entry.results.get("snmp") if entry is not None else None
        return once if last is not None and last.reason == "timeout" else job
    return make


def _login(config: Config, name: str | None) -> Login:
    login = config.credentials[name or ""]
    assert isinstance(login, Login)  # checked at load
    return login


def _fixed(job: Any) -> Callable[[], Any]:
    return lambda: job


def plans_for(config: Config, device: Device, state: State) -> list[Plan]:
    """Every collector's plan for one device."""
    settings = config.settings
    ratio = settings.schedule.poll_deadline_ratio
    plans: list[Plan] = []
    if device.polls_snmp:
        job = snmp_job(config, device)
        plans.append(Plan(device.id, "snmp", config.interval(device), job,
                          _snmp_maker(job, state)))
    if device.onvif is not None:
        from collectors.onvif.collector import OnvifJob

        login = _login(config, device.onvif.credentials)
        interval = settings.onvif.interval
        job = OnvifJob(device=device.id, address=device.address, port=device.onvif.port,
                       username=login.username, password=login.password,
                       timeout=settings.onvif.timeout,
                       ptz=device.onvif.ptz if device.onvif.ptz is not None
                       else device.kind == "ptz_camera",
                       deadline=interval * ratio)
        plans.append(Plan(device.id, "onvif", interval, job, _fixed(job)))
    if device.rtsp is not None:
        plans.append(_rtsp_plan(config, device, state))
    reach = device.reachability
    if settings.reachability.enabled and (reach is None or reach.enabled):
        plans.append(_reach_plan(config, device, state))
    return plans


def _reach_plan(config: Config, device: Device, state: State) -> Plan:
    """ICMP and TCP connects. Unless the inventory lists the ports, they are the device's
    ONVIF port and its stream's RTSP port: the stream URL's, or else the one in the URI the
    camera gave over ONVIF (554 until it has)."""
    from collectors.reach.collector import ReachJob

    settings = config.settings.reachability
    reach = device.reachability
    icmp = reach.icmp if reach is not None and reach.icmp is not None else settings.icmp
    interval = settings.interval
    listed = reach.tcp_ports if reach is not None else None

    def make_job() -> ReachJob:
        ports = listed if listed is not None else _service_ports(device, state)
        return ReachJob(device=device.id, address=device.address, tcp_ports=tuple(ports),
                        icmp=icmp, count=settings.count, timeout=settings.timeout,
                        deadline=interval * config.settings.schedule.poll_deadline_ratio)

    signature = (device.address, listed, device.onvif, device.rtsp, icmp, interval,
                 settings.count, settings.timeout)
    return Plan(device.id, "reach", interval, signature, make_job)


def _service_ports(device: Device, state: State) -> list[int]:
    ports = []
    if device.onvif is not None:
        ports.append(device.onvif.port)
    if device.rtsp is not None:
        url = device.rtsp.url or stream_uri(state, device.id, device.rtsp.profile)
        ports.append(_rtsp_port(url))
    return sorted(set(ports))


def _rtsp_port(url: str | None) -> int:
    if url:
        host = url.split("//", 1)[1].split("/", 1)[0]
        if ":" in host.rsplit("]", 1)[-1]:
            return int(host.rsplit(":", 1)[1])
    return 554


def rtsp_interval(config: Config) -> float:
    """Every stream-probed camera once per (cameras / cameras_per_minute) minutes, at least
    `min_interval`: the sampling rate bounds the decoding cost of the whole site."""
    settings = config.settings.rtsp
    streams = sum(1 for d in config.inventory.devices.values() if d.rtsp is not None and d.enabled)
    return max(settings.min_interval, 60.0 * streams / settings.cameras_per_minute)


def rtsp_overload(config: Config) -> str | None:
    """A warning when the sampling rate asks for more probes than the decode slots can do
    (a probe holds its slot for about decode_seconds plus a second of set-up and checks):
    probes would queue and each camera would be seen later than planned."""
    settings = config.settings.rtsp
    streams = sum(1 for d in config.inventory.devices.values() if d.rtsp is not None and d.enabled)
    if not streams or not settings.decode_seconds:
        return None
    wanted = 60.0 * streams / rtsp_interval(config)
    capacity = 60.0 * settings.max_decodes / (settings.decode_seconds + 1.0)
    if wanted <= capacity:
        return None
    return (f"rtsp: {wanted:.0f} stream probes per minute planned ({streams} streams, "
            f"cameras_per_minute {settings.cameras_per_minute:g}) but {settings.max_decodes} "
            f"decode slots of about {settings.decode_seconds + 1.0:g} s each do about "
            f"{capacity:.0f}: probes will queue and run late. Raise rtsp.max_decodes, or lower "
            f"rtsp.cameras_per_minute or rtsp.decode_seconds")


def _rtsp_plan(config: Config, device: Device, state: State) -> Plan:
    from collectors.rtsp.collector import RtspJob

    assert device.rtsp is not None
    settings = config.settings.rtsp
    rtsp = device.rtsp
    name = rtsp.credentials or (device.onvif.credentials if device.onvif else None)
    login = _login(config, name) if name else Login("", "")
    interval = rtsp_interval(config)
    decode = settings.decode_seconds if rtsp.decode else 0.0

    def make_job() -> RtspJob | None:
        url = rtsp.url or stream_uri(state, device.id, rtsp.profile)
        if url is None:
            return None  # ONVIF has not told the stream URI yet
        return RtspJob(device=device.id, url=url, username=login.username,
                       password=login.password, transport=settings.transport,
                       timeout=settings.timeout, decode_seconds=decode,
                       deadline=interval * config.settings.schedule.poll_deadline_ratio)

    signature = (rtsp, login, interval, decode, settings.transport, settings.timeout)
    return Plan(device.id, "rtsp", interval, signature, make_job)


def stream_uri(state: State, device_id: str, profile: str | None) -> str | None:
    """The stream URI the camera gave over ONVIF (its first profile, or the one named)."""
    entry = state.devices.get(device_id)
    onvif = entry.good.get("onvif") if entry is not None else None
    if onvif is None:
        return None
    for reading in onvif.readings:
        if reading.metric == "onvif_stream_info" and reading.labels.get("uri") \
                and (profile is None or reading.labels.get("profile") == profile):
            return reading.labels["uri"]
    return None


def plans(config: Config, state: State) -> list[Plan]:
    return [plan for device in config.inventory.devices.values() if device.enabled
            for plan in plans_for(config, device, state)]


def video_thresholds(settings: Any) -> Any:
    """The picture-check thresholds of agent.yaml, as the video collector takes them."""
    from collectors.video.quality import QualityThresholds

    return QualityThresholds(**settings.video.model_dump())
