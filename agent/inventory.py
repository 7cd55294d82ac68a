"""The inventory: sites and devices of one branch machine room, with their topology.

A Device is what the agent watches: where it is (site), how to reach it (address, port,
credentials reference, profile) and what it depends on (`uplink`: the switch port it hangs
off; `powered_by`: the UPS or PoE port that feeds it). Topology is checked here, once, so the
rules engine can rely on it: a dangling reference is a config error, not a runtime surprise.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from agent.earthing import EarthingPoint, subject
from agent.settings import Duration, Kind, SnmpOptions, Strict, merge_snmp
from agent.validation import validate
from agent.yamlfile import ConfigError, ConfigErrors, Document

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
RESERVED_LABELS = {"device", "site", "kind", "agent", "reason", "job", "instance"}


def check_address(value: str) -> str:
    """An IPv4/IPv6 literal or a DNS name; dotted numbers must be a valid IPv4 address."""
    text = str(value).strip()
    if re.fullmatch(r"[0-9.]+", text) or ":" in text:
        try:
            return str(ipaddress.ip_address(text))
        except ValueError:
            raise ValueError(f"'{value}' is not a valid IP address") from None
    if not _HOSTNAME.match(text):
        raise ValueError(f"'{value}' is neither an IP address nor a valid host name")
    return text


class Site(Strict):
    """A community, police-station sub-control or machine room: the unit of "which site is
    down" on the monitoring centre's wall."""

    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                    description="Site identifier, used as the `site` label (e.g. `dh-01`).")
    name: str = Field("", description="Human name, e.g. `东湖社区`.")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Extra labels for every device of the site "
                                               "(a device's own labels win).")

    @field_validator("labels", mode="before")
    @classmethod
    def _label_names(cls, value: Any) -> Any:
        return _labels(value) if isinstance(value, dict) else value


class Uplink(Strict):
    switch: str = Field(..., description="Id of the switch (a device of kind `switch`).")
    port: int | str = Field(..., description="The switch port: ifIndex (number) or ifName.")


class PoweredBy(Strict):
    ups: str | None = Field(None, description="Id of the UPS feeding this device.")
    switch: str | None = Field(None, description="Id of the PoE switch feeding this device.")
    port: int | str | None = Field(None, description="PoE port on that switch (ifIndex or name).")

    @model_validator(mode="after")
    def _one_source(self) -> PoweredBy:
        if bool(self.ups) == bool(self.switch):
            raise ValueError("give either 'ups' or 'switch' (with 'port'), not both or neither")
        if self.switch and self.port is None:
            raise ValueError("a PoE feed needs the switch 'port'")
        if self.ups and self.port is not None:
            raise ValueError("'port' belongs to a PoE feed ('switch'), not to a UPS")
        return self


def _labels(value: dict[str, Any]) -> dict[str, str]:
    for key in value:
        if not _LABEL.match(str(key)):
            raise ValueError(f"label name '{key}' must match [a-zA-Z_][a-zA-Z0-9_]*")
        if key in RESERVED_LABELS:
            raise ValueError(f"label name '{key}' is reserved (set by the agent)")
    return {str(k): str(v) for k, v in value.items()}


class OnvifTarget(Strict):
    """The device's ONVIF web service (cameras, NVRs)."""

    credentials: str | None = Field(
        None, description="A login entry (username/password) in the credentials file.")
    port: int = Field(80, ge=1, le=65535, description="HTTP port of the ONVIF service.")
    ptz: bool | None = Field(None, description="Poll PTZ status and presets (default: for "
                                               "ptz_camera devices).")
    events: bool | None = Field(None, description="Subscribe to its events (default: "
                                                  "agent.yaml `onvif.events`).")


class RtspTarget(Strict):
    """The device's video stream, probed and checked for picture faults."""

    url: str | None = Field(
        None, pattern=r"^rtsps?://[^@/\s]+(/\S*)?$",
        description="rtsp://host[:port]/path, without user or password. Default: the stream "
                    "URI the camera gives over ONVIF (its first media profile).")
    credentials: str | None = Field(None, description="Login entry (default: the ONVIF one).")
    profile: str | None = Field(None, description="ONVIF media profile token to probe "
                                                  "(default: the first).")
    decode: bool = Field(True, description="Decode a few seconds of video for the picture "
                                           "checks (else OPTIONS/DESCRIBE only).")


class ReachTarget(Strict):
    """ICMP and TCP reachability of the device."""

    enabled: bool = Field(True, description="Check this device's reachability.")
    icmp: bool | None = Field(None, description="Ping it (default: agent.yaml).")
    tcp_ports: list[int] | None = Field(
        None, description="TCP ports to connect to (default: its ONVIF and RTSP ports).")


class KindDefaults(Strict):
    """Defaults for the devices of one kind (under `defaults.kinds.<kind>`)."""

    credentials: str | None = Field(None, description="SNMP credentials entry name.")
    port: int | None = Field(None, ge=1, le=65535, description="SNMP UDP port.")
    snmp: SnmpOptions | Literal[False] | None = Field(
        None, description="SNMP tuning, or `false`: these devices are not polled over SNMP.")
    onvif: OnvifTarget | None = Field(None, description="ONVIF service of these devices.")
    rtsp: RtspTarget | None = Field(None, description="Stream probe of these devices.")
    reachability: ReachTarget | None = Field(None, description="Reachability checks.")


class DeviceDefaults(Strict):
    """Values every device gets unless it sets its own."""

    credentials: str | None = Field(None, description="Default credentials entry name.")
    port: int = Field(161, ge=1, le=65535, description="Default SNMP UDP port.")
    snmp: SnmpOptions | None = Field(None, description="Default SNMP tuning for these devices.")
    kinds: dict[Kind, KindDefaults] = Field(
        default_factory=dict,
        description="Defaults per device kind, e.g. `{ptz_camera: {snmp: false, onvif: "
                    "{credentials: cams}, rtsp: {}}}`; a device's own keys win.")


class Device(Strict):
    id: str = Field(..., pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                    description="Unique device id (letters, digits, `_ . -`), e.g. `ups-room-1`.")
    kind: Kind = Field(..., description="One of: ptz_camera, fixed_camera, nvr, ups, switch, "
                                        "spd_monitor, env_monitor.")
    site: str = Field(..., description="Id of the site (from `sites`) the device belongs to.")
    name: str = Field("", description="Human name, e.g. `东湖路与建设路口球机`.")
    address: str = Field(..., description="IP address or DNS name.")
    port: int | None = Field(None, ge=1, le=65535,
                             description="SNMP UDP port (default from `defaults.port`, 161).")
    profile: str | None = Field(
        None, description="Profile name. Leave out to pick one automatically from the "
                          "device's sysObjectID / sysDescr at its first poll.")
    credentials: str | None = Field(
        None, description="Name of an entry in the credentials file (default from "
                          "`defaults.credentials`).")
    labels: dict[str, str] = Field(default_factory=dict,
                                   description="Extra labels exported with the device's series.")
    uplink: Uplink | None = Field(None, description="The switch port this device hangs off.")
    powered_by: PoweredBy | None = Field(None, description="What feeds this device power.")
    interval: Duration | None = Field(None, description="SNMP poll interval for this device.")
    snmp: SnmpOptions | Literal[False] | None = Field(
        None, description="SNMP tuning for this device only, or `false`: not polled over SNMP "
                          "(e.g. a camera watched over ONVIF and RTSP only).")
    onvif: OnvifTarget | None = Field(None, description="Its ONVIF service, if it has one.")
    rtsp: RtspTarget | None = Field(None, description="Its video stream, if it is to be probed.")
    reachability: ReachTarget | None = Field(None, description="Its reachability checks "
                                                               "(default: ICMP + its ports).")
    enabled: bool = Field(True, description="`false` keeps the device listed but unpolled.")

    @property
    def polls_snmp(self) -> bool:
        return self.snmp is not False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return check_address(value)

    @field_validator("labels", mode="before")
    @classmethod
    def _label_names(cls, value: Any) -> Any:
        return _labels(value) if isinstance(value, dict) else value


class InventoryFile(Strict):
    """Top level of an inventory file."""

    sites: list[Site] = Field(default_factory=list, description="Sites of this branch.")
    defaults: DeviceDefaults = Field(default_factory=DeviceDefaults,
                                     description="Defaults for the devices of this file.")
    devices: list[dict[str, Any]] = Field(
        default_factory=list, description="The devices (keys: see the next table).")
    earthing_points: list[dict[str, Any]] = Field(
        default_factory=list, description="Earthing points whose grounding resistance is "
                                          "measured by hand (keys: see docs/grounding.md).")


def _with_kind_defaults(raw: dict[str, Any], defaults: DeviceDefaults) -> dict[str, Any]:
    """The device's raw keys over its kind's defaults; blocks (onvif, rtsp, ...) merge key by
    key, so `onvif: {port: 8080}` on a device keeps the kind's ONVIF credentials."""
    name = raw.get("kind")
    kind = defaults.kinds.get(name) if isinstance(name, str) else None  # a list: not a kind
    if kind is None:
        return raw
    merged: dict[str, Any] = kind.model_dump(exclude_none=True, exclude_unset=True)
    for key, value in raw.items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    return merged


@dataclass
class Placed:
    """A device and where it was written, for error messages after validation."""

    device: Device
    doc: Document
    index: int

    def error(self, key: str, message: str) -> ConfigError:
        path: tuple[str | int, ...] = ("devices", self.index)
        if key:
            path += tuple(key.split("."))
        return self.doc.error(path, message)


@dataclass
class Inventory:
    sites: dict[str, Site]
    devices: dict[str, Device]
    placed: dict[str, Placed]
    earthing_points: dict[str, EarthingPoint] = field(default_factory=dict)
    subjects: dict[str, Device] = field(init=False)
    """What rules judge: the devices and, as pseudo-devices, the earthing points."""

    def __post_init__(self) -> None:
        self.subjects = {**self.devices, **{
            p.id: subject(p, self.sites[p.site].labels if p.site in self.sites else {})
            for p in self.earthing_points.values()}}

    def get(self, device_id: str) -> Device:
        return self.devices[device_id]


def load_inventory(docs: list[Document], known_credentials: dict[str, str] | None,
                   known_profiles: set[str] | None) -> Inventory:
    """Validate every file, then the references between devices, sites, credentials, profiles.

    A None set means that file had errors of its own: references to it are not checked, so
    one mistake is reported once, not once per device."""
    errors: list[ConfigError] = []
    sites: dict[str, Site] = {}
    site_where: dict[str, tuple[Document, int]] = {}
    placed: dict[str, Placed] = {}
    points: dict[str, tuple[EarthingPoint, Document, int]] = {}
    broken: set[str] = set()  # ids of devices with errors of their own
    for doc in docs:
        try:
            model = validate(InventoryFile, doc)
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        for i, site in enumerate(model.sites):
            if site.id in sites:
                first = site_where[site.id]
                errors.append(doc.error(("sites", i, "id"),
                                        f"duplicate site id '{site.id}' (first in "
                                        f"{first[0].file}:{first[0].line(('sites', first[1]))})"))
                continue
            sites[site.id] = site
            site_where[site.id] = (doc, i)
        for i, raw in enumerate(model.devices):
            try:
                dev = validate(Device, doc, _with_kind_defaults(raw, model.defaults),
                               prefix=("devices", i))
            except ConfigErrors as exc:
                errors.extend(exc.errors)
                broken.add(str(raw.get("id")))
                continue
            filled = dev.model_copy(update={
                "port": dev.port or model.defaults.port,
                "credentials": dev.credentials or model.defaults.credentials,
                "snmp": (False if dev.snmp is False
                         else merge_snmp(SnmpOptions(), model.defaults.snmp, dev.snmp)),
            })
            here = Placed(filled, doc, i)
            if dev.id in placed:
                first = placed[dev.id]
                where = f"{first.doc.file}:{first.doc.line(('devices', first.index))}"
                errors.append(here.error("id", f"duplicate device id '{dev.id}' (first at "
                                               f"{where})"))
                continue
            placed[dev.id] = here
        _earthing_points(doc, model.earthing_points, points, errors)
    for p in placed.values():
        site = sites.get(p.device.site)
        if site is not None and site.labels:
            p.device = p.device.model_copy(update={"labels": {**site.labels,
                                                              **p.device.labels}})
    devices = {k: p.device for k, p in placed.items()}
    for p in placed.values():
        errors.extend(_check_references(p, sites, devices, broken, known_credentials,
                                        known_profiles))
    errors.extend(_check_cycles(placed, "uplink"))
    errors.extend(_check_cycles(placed, "powered_by"))
    errors.extend(_check_points(points, sites, placed, broken))
    if errors:
        raise ConfigErrors(errors)
    return Inventory(sites=sites, devices=devices, placed=placed,
                     earthing_points={k: v[0] for k, v in points.items()})


def _earthing_points(doc: Document, raw: list[dict[str, Any]],
                     points: dict[str, tuple[EarthingPoint, Document, int]],
                     errors: list[ConfigError]) -> None:
    for i, item in enumerate(raw):
        try:
            point = validate(EarthingPoint, doc, item, prefix=("earthing_points", i))
        except ConfigErrors as exc:
            errors.extend(exc.errors)
            continue
        if point.id in points:
            first = points[point.id]
            where = f"{first[1].file}:{first[1].line(('earthing_points', first[2]))}"
            errors.append(doc.error(("earthing_points", i, "id"),
                                    f"duplicate earthing point id '{point.id}' (first at "
                                    f"{where})"))
            continue
        points[point.id] = (point, doc, i)


def _check_points(points: dict[str, tuple[EarthingPoint, Document, int]],
                  sites: dict[str, Site], placed: dict[str, Placed],
                  broken: set[str]) -> list[ConfigError]:
    """Earthing points name a known site and device, and share no id with a device (both
    are subjects of the rules: a fault key names one of them)."""
    out: list[ConfigError] = []
    for point, doc, i in points.values():
        at = ("earthing_points", i)
        if point.site not in sites:
            known = ", ".join(sorted(sites)) or "none declared under 'sites'"
            out.append(doc.error((*at, "site"), f"site '{point.site}' is not in the "
                                                f"inventory (known: {known})"))
        if point.id in placed:
            first = placed[point.id]
            out.append(doc.error((*at, "id"), f"'{point.id}' is already a device's id (at "
                                              f"{first.doc.file}:"
                                              f"{first.doc.line(('devices', first.index))})"))
        if point.device is not None and point.device not in broken \
                and point.device not in placed:
            out.append(doc.error((*at, "device"), f"device '{point.device}' is not in the "
                                                  f"inventory"))
    return out


def _check_references(p: Placed, sites: dict[str, Site], devices: dict[str, Device],
                      broken: set[str], credentials: dict[str, str] | None,
                      profiles: set[str] | None) -> list[ConfigError]:
    dev = p.device
    out: list[ConfigError] = []
    if dev.site not in sites:
        known = ", ".join(sorted(sites)) or "none declared under 'sites'"
        out.append(p.error("site", f"site '{dev.site}' is not in the inventory (known: {known})"))
    if dev.polls_snmp:
        if dev.credentials is None:
            out.append(p.error("credentials", "no SNMP credentials: set them here, in "
                                              "defaults.credentials, or `snmp: false`"))
        else:
            out.extend(_check_credential(p, "credentials", dev.credentials, "snmp", credentials))
    if dev.onvif is not None:
        if dev.onvif.credentials is None:
            out.append(p.error("onvif.credentials", "the ONVIF service needs a login entry"))
        else:
            out.extend(_check_credential(p, "onvif.credentials", dev.onvif.credentials, "login",
                                         credentials))
    if dev.rtsp is not None:
        if dev.rtsp.credentials is not None:
            out.extend(_check_credential(p, "rtsp.credentials", dev.rtsp.credentials, "login",
                                         credentials))
        if dev.rtsp.url is None and dev.onvif is None:
            out.append(p.error("rtsp", "give the stream `url`, or an `onvif` block so the "
                                       "camera can tell its stream URI"))
    if dev.profile is not None and profiles is not None and dev.profile not in profiles:
        out.append(p.error("profile", f"unknown profile '{dev.profile}' (known: "
                                      f"{', '.join(sorted(profiles))})"))
    if dev.uplink is not None:
        out.extend(_check_peer(p, "uplink.switch", dev.uplink.switch, "switch", devices, broken))
    if dev.powered_by is not None:
        if dev.powered_by.ups:
            out.extend(_check_peer(p, "powered_by.ups", dev.powered_by.ups, "ups", devices,
                                   broken))
        if dev.powered_by.switch:
            out.extend(_check_peer(p, "powered_by.switch", dev.powered_by.switch, "switch",
                                   devices, broken))
    return out


def _check_credential(p: Placed, key: str, name: str, kind: str,
                      credentials: dict[str, str] | None) -> list[ConfigError]:
    if credentials is None:  # the credentials file has errors of its own
        return []
    if name not in credentials:
        known = ", ".join(sorted(n for n, k in credentials.items() if k == kind)) or "none"
        return [p.error(key, f"credentials '{name}' are not in the credentials file "
                             f"(known {kind} entries: {known})")]
    if credentials[name] != kind:
        wanted = "an SNMP entry (with `version`)" if kind == "snmp" else \
            "a login entry (username and password, no `version`)"
        return [p.error(key, f"credentials '{name}' are not {wanted}")]
    return []


def _check_peer(p: Placed, key: str, ref: str, kind: str, devices: dict[str, Device],
                broken: set[str]) -> list[ConfigError]:
    if ref in broken:  # that device's own error is reported already
        return []
    if ref == p.device.id:
        return [p.error(key, f"a device cannot depend on itself ('{ref}')")]
    peer = devices.get(ref)
    if peer is None:
        return [p.error(key, f"{kind} '{ref}' is not in the inventory")]
    if peer.kind != kind:
        return [p.error(key, f"'{ref}' is a {peer.kind}, not a {kind}")]
    return []


def _dependencies(dev: Device, placed: dict[str, Placed], via: str) -> list[tuple[str, str]]:
    """(key, peer id) of each `via` edge whose peer exists with the right kind; the other
    edges are reported by _check_peer already, so they take no part in cycles."""
    wanted = [("uplink.switch", dev.uplink.switch if dev.uplink else None, "switch")]
    if dev.powered_by is not None:
        wanted += [("powered_by.ups", dev.powered_by.ups, "ups"),
                   ("powered_by.switch", dev.powered_by.switch, "switch")]
    return [(key, ref) for key, ref, kind in wanted
            if key.startswith(via) and ref and ref != dev.id and ref in placed
            and placed[ref].device.kind == kind]


def _check_cycles(placed: dict[str, Placed], via: str) -> list[ConfigError]:
    """Every cycle of `via` edges (uplink, or powered_by) DFS closes with a back edge, once:
    an iterative DFS (no recursion limit), linear in devices and edges apart from naming the
    cycles it reports. Network and power are separate graphs: a UPS that feeds the switch its
    own network card hangs off is a real machine room, not a mistake.

    A cycle is named from the device whose edge closes it, so the error's line, its key and
    the first hop of the message are the same edge: the one to change."""
    edges = {dev_id: _dependencies(p.device, placed, via) for dev_id, p in placed.items()}
    done: set[str] = set()
    out: list[ConfigError] = []
    for root in placed:
        if root in done:
            continue
        path = [root]
        keys: list[str] = []  # keys[i]: the edge path[i] -> path[i + 1]
        on_path = {root: 0}  # device id -> its index in path
        todo = [iter(edges[root])]
        while todo:
            step = next(todo[-1], None)
            if step is None:
                done.add(path[-1])
                del on_path[path.pop()]
                todo.pop()
                if keys:
                    keys.pop()
                continue
            key, peer = step
            if peer in on_path:
                start = on_path[peer]
                ids = [path[-1], *path[start:-1]]
                hops = [key, *keys[start:]]
                names = " -> ".join([*ids, ids[0]])
                kinds = ", ".join(k.split(".")[0] for k in hops)
                out.append(placed[ids[0]].error(
                    key, f"topology cycle: {names} ({kinds}): a device cannot depend on "
                         f"itself through others"))
            elif peer not in done:
                on_path[peer] = len(path)
                path.append(peer)
                keys.append(key)
                todo.append(iter(edges[peer]))
    return out
