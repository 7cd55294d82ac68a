"""The SNMP trap receiver: devices' traps (v1, v2c, v3) become event readings at once.

Built on pysnmp 7's SNMPv3 architecture: an SnmpEngine with a UDP transport, community
entries (v1/v2c) and USM users (v3), and an RFC 3413 NotificationReceiver (ntfrcv), which
also answers informs. Each accepted notification goes:

    source address --resolve()--> device id --mappings--> event readings --> sink

- The source is the datagram's UDP source address. When it resolves to no device, the v1
  agent-addr / snmpTrapAddress.0 varbind is tried (a trap relayed or NATed); if that does not
  resolve either, the trap is counted as `unknown_source`, logged (rate-limited) and dropped.
- v1/v2c: the community must be one of `communities`, else `rejected`.
- v3: the user must be one of `v3_users` with the right keys (authNoPriv or authPriv; a
  noAuthNoPriv trap of a configured user that has keys is refused, as USM requires), else
  `rejected`. A trap is sent by its authoritative engine (the device), so the user's keys are
  localised with the *device's* snmpEngineID: list it in the user's `engine_ids`, or let the
  receiver learn it (`learn_engine_ids`, default): the first trap naming a configured user
  with an unknown engine ID registers that engine ID for the user, and the registration is
  undone at once if that very trap then fails authentication. Learning is rate-limited and
  capped (a flood of made-up engine IDs costs a bounded amount of CPU and memory).
  Informs (acknowledged) use the receiver's own engine ID and need nothing learnt.
  Timeliness (RFC 3414 3.2.7b) is checked here, as net-snmp's snmptrapd does, because pysnmp
  7 takes any authenticated sender's boots/time as they come: a trap whose engine boots/time
  go back more than 150 s behind what was last authenticated from that engine is `rejected`
  (a replay, or a firmware that resets snmpEngineBoots; `check_time_window=False` accepts
  those).
- A source sending more than its rate (`limiter`, a token bucket per address) has the excess
  dropped unread and counted as `rate_limited`.
- Garbage (not BER, not SNMP, not a notification PDU) is counted as `undecodable`.
- A trap whose OID no mapping knows is delivered as event `snmp_trap{oid=...}` (value 1, the
  varbinds as text) and counted as `unmapped`, unless `deliver_unmapped` is False.

Nothing a datagram contains raises out of the receiver.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import socket
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from collectors.reading import EventSink, Reading, event
from collectors.traps.mapping import TrapMappings, Varbinds, load_mappings
from collectors.traps.ratelimit import SourceLimiter

log = logging.getLogger("vigil.traps")

SNMP_TRAP_OID = "1.3.6.1.6.3.1.1.4.1.0"
SNMP_TRAP_ADDRESS = "1.3.6.1.6.3.18.1.3.0"
SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
UNMAPPED_EVENT = "snmp_trap"
LOG_EVERY = 60.0
"""Seconds between two log lines about the same source and problem (the rest are counted)."""

AUTH_PROTOCOLS = ("MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("DES", "3DES", "AES", "AES192", "AES256", "AES192C", "AES256C")


@dataclass(frozen=True)
class TrapUser:
    """An SNMPv3 user whose traps are accepted. Keys are pass phrases (as in credentials)."""

    username: str
    auth_protocol: str | None = None  # one of AUTH_PROTOCOLS
    auth_key: str = field(default="", repr=False)
    priv_protocol: str | None = None  # one of PRIV_PROTOCOLS
    priv_key: str = field(default="", repr=False)
    engine_ids: tuple[str, ...] = ()  # senders' snmpEngineIDs, hex ("80001f8880...")
    learn_engine_ids: bool = True  # accept (and remember) other senders' engine IDs

    @classmethod
    def from_auth(cls, auth: Any, engine_ids: Sequence[str] = (),
                  learn_engine_ids: bool = True) -> TrapUser:
        """From a collectors.snmp.engine.SnmpAuth of version 3."""
        return cls(auth.username, auth.auth_protocol, auth.auth_password, auth.priv_protocol,
                   auth.priv_password, tuple(engine_ids), learn_engine_ids)


@dataclass
class TrapCounters:
    """What the receiver saw since it started (the agent exports these as counters)."""

    datagrams: int = 0  # every UDP datagram that arrived
    received: int = 0  # notifications accepted (community/user and keys good)
    delivered: int = 0  # event readings handed to the sink
    unknown_source: int = 0  # accepted, but the source is no device of the inventory
    undecodable: int = 0  # not SNMP, malformed, or not a notification
    rejected: int = 0  # wrong community, unknown v3 user, wrong keys, outside time window
    unmapped: int = 0  # accepted from a device, but no mapping knows the trap's OID
    engine_ids_learnt: int = 0  # v3 senders' engine IDs registered on their first trap
    rate_limited: int = 0  # dropped unread: the source sent more than its rate (ratelimit.py)

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class _RateLimitedLog:
    def __init__(self, every: float = LOG_EVERY):
        self.every = every
        self.last: dict[str, tuple[float, int]] = {}

    def warning(self, key: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last, suppressed = self.last.get(key, (-1e9, 0))
        if now - last < self.every:
            self.last[key] = (last, suppressed + 1)
            return
        if len(self.last) > 10000:  # a flood of distinct sources: forget the old ones
            self.last.clear()
        self.last[key] = (now, 0)
        suffix = f" ({suppressed} more like it in the last {self.every:g}s)" if suppressed else ""
        log.warning(message + suffix, *args)


def parse_listen(listen: str) -> tuple[int, str, int]:
    """'127.0.0.1:1162', '[::]:162', '0.0.0.0:162' -> (family, host, port)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:  # 0: any free port
        raise ValueError(f"'{listen}' is not host:port (e.g. 0.0.0.0:162 or [::]:162)")
    host = host.strip("[]") or "0.0.0.0"
    try:
        family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    except ValueError:
        family = socket.AF_INET  # a host name: resolved by bind()
    return family, host, int(port)


class TrapReceiver:
    """Receives SNMP notifications on `listen` and delivers event readings to `sink`."""

    def __init__(self, listen: str, sink: EventSink, resolve: Callable[[str], str | None],
                 communities: Sequence[Any] = (), v3_users: Sequence[Any] = (),
                 mappings: TrapMappings | None = None, *, deliver_unmapped: bool = True,
                 max_learnt_engine_ids: int = 10000, learn_per_second: float = 20.0,
                 check_time_window: bool = True, limiter: SourceLimiter | None = None):
        """`listen`: host:port (port 0: any free port; see `address`). `sink`: gets every event
        reading. `resolve`: source address -> device id or None. `communities`: accepted
        v1/v2c community strings, or SnmpAuth entries (v1/v2c ones give their community, v3
        ones become users, so the agent may pass its credentials list as it is). `v3_users`:
        TrapUser or SnmpAuth (v3). `mappings`: from load_mappings(); None loads the standard
        ones. `limiter`: bounds the traps per source (None: unbounded). The rest: see the
        module's doc."""
        if isinstance(v3_users, TrapMappings):
            raise TypeError("TrapReceiver: pass the mappings as mappings=..., not as v3_users")
        self.listen = listen
        self.family, self.host, self.port = parse_listen(listen)
        self.sink = sink
        self.resolve = resolve
        self.communities: list[str] = []
        self.users: list[TrapUser] = []
        for item in [*communities, *v3_users]:
            self._add_credential(item)
        self.mappings = mappings if mappings is not None else load_mappings()
        self.deliver_unmapped = deliver_unmapped
        self.max_learnt = max_learnt_engine_ids
        self.learn_per_second = learn_per_second
        self.counters = TrapCounters()
        self._log = _RateLimitedLog()
        self._engine: Any = None
        self._transport: Any = None
        self._receiver: Any = None
        self._source: str = ""
        self._accepted = False
        self._known_engines: dict[tuple[str, bytes], bool] = {}  # (user, engine id) -> learnt
        self._timeline: dict[bytes, tuple[int, int, int, float]] = {}
        self.check_time_window = check_time_window
        self.limiter = limiter
        self._learnt = 0
        self._masters: dict[str, tuple[Any, Any]] = {}
        self._learn_budget = learn_per_second
        self._learn_clock = time.monotonic()
        self._stats: list[Any] = []

    def _add_credential(self, item: Any) -> None:
        if isinstance(item, str):
            self.communities.append(item)
        elif isinstance(item, TrapUser):
            self.users.append(item)
        elif getattr(item, "version", None) in ("1", "2c"):
            self.communities.append(item.community)
        elif getattr(item, "version", None) == "3":
            self.users.append(TrapUser.from_auth(item))
        else:
            raise TypeError(f"not a community, TrapUser or SnmpAuth: {item!r}")
        for user in self.users[-1:]:
            if user.auth_protocol not in (None, *AUTH_PROTOCOLS):
                raise ValueError(f"user {user.username}: unknown auth protocol "
                                 f"{user.auth_protocol}")
            if user.priv_protocol not in (None, *PRIV_PROTOCOLS):
                raise ValueError(f"user {user.username}: unknown privacy protocol "
                                 f"{user.priv_protocol}")
            if user.priv_protocol and not user.auth_protocol:
                raise ValueError(f"user {user.username}: privacy needs authentication")

    # --- lifecycle

    async def start(self) -> None:
        """Bind the UDP socket (raises OSError, e.g. EACCES for port 162 without
        CAP_NET_BIND_SERVICE, or EADDRINUSE) and start receiving."""
        from pysnmp.carrier.asyncio.dgram import udp, udp6
        from pysnmp.entity import config, engine
        from pysnmp.entity.rfc3413 import ntfrcv

        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            if self.family == socket.AF_INET6:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
            sock.bind((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        snmp = engine.SnmpEngine()
        module = udp6 if self.family == socket.AF_INET6 else udp
        transport_class = module.Udp6AsyncioTransport if self.family == socket.AF_INET6 \
            else module.UdpAsyncioTransport
        transport = transport_class(loop=asyncio.get_running_loop()).open_server_mode(sock=sock)
        config.add_transport(snmp, module.DOMAIN_NAME, transport)
        self._engine, self._transport = snmp, transport
        dispatcher = snmp.transport_dispatcher
        dispatcher.set_timer_resolution(0.5)  # the engine's housekeeping tick; traps need no more
        for i, community in enumerate(dict.fromkeys(self.communities)):
            config.add_v1_system(snmp, f"vigil-trap-{i}", community)
        for user in self.users:
            self._register_user(user)
        self._receiver = ntfrcv.NotificationReceiver(snmp, self._on_notification)
        dispatcher.unregister_recv_callback(None)  # see every datagram first (_on_datagram)
        dispatcher.register_recv_callback(self._on_datagram)
        self._stats = self._stat_objects()
        for _ in range(100):  # the endpoint is created by a task: wait until it is there
            if transport.transport is not None:
                break
            await asyncio.sleep(0.01)
        log.info("SNMP trap receiver on %s: %d communities, %d v3 users, %d trap mappings",
                 self.address, len(self.communities), len(self.users), len(self.mappings))

    @property
    def address(self) -> str:
        """The bound host:port (the real port when `listen` asked for port 0)."""
        if self._transport is not None and self._transport.transport is not None:
            name = self._transport.transport.get_extra_info("sockname")
            if name:
                host = f"[{name[0]}]" if ":" in name[0] else name[0]
                return f"{host}:{name[1]}"
        return self.listen

    async def close(self) -> None:
        snmp, self._engine = self._engine, None
        if snmp is None:
            return
        with contextlib.suppress(Exception):
            if self._receiver is not None:
                self._receiver.close(snmp)
        with contextlib.suppress(Exception):
            snmp.transport_dispatcher.close_dispatcher()
        self._receiver = self._transport = None

    # --- v3 users and engine IDs

    def _protocols(self, user: TrapUser) -> tuple[Any, Any]:
        from pysnmp.entity import config

        auth = {None: config.USM_AUTH_NONE, "MD5": config.USM_AUTH_HMAC96_MD5,
                "SHA": config.USM_AUTH_HMAC96_SHA, "SHA224": config.USM_AUTH_HMAC128_SHA224,
                "SHA256": config.USM_AUTH_HMAC192_SHA256,
                "SHA384": config.USM_AUTH_HMAC256_SHA384,
                "SHA512": config.USM_AUTH_HMAC384_SHA512}[user.auth_protocol]
        priv = {None: config.USM_PRIV_NONE, "DES": config.USM_PRIV_CBC56_DES,
                "3DES": config.USM_PRIV_CBC168_3DES, "AES": config.USM_PRIV_CFB128_AES,
                "AES192": config.USM_PRIV_CFB192_AES, "AES256": config.USM_PRIV_CFB256_AES,
                "AES192C": config.USM_PRIV_CFB192_AES_BLUMENTHAL,
                "AES256C": config.USM_PRIV_CFB256_AES_BLUMENTHAL}[user.priv_protocol]
        return auth, priv

    def _register_user(self, user: TrapUser) -> None:
        """The user for informs (our engine ID) and for each listed sender engine ID. The
        pass phrases are hashed once (RFC 3414 A.2, the costly part); each engine ID then
        only localises the master keys."""
        from pysnmp.entity import config
        from pysnmp.proto import rfc1902

        auth, priv = self._protocols(user)
        master_auth = config.AUTH_SERVICES[auth].hash_passphrase(
            rfc1902.OctetString(user.auth_key)) if user.auth_protocol else None
        master_priv = config.PRIV_SERVICES[priv].hash_passphrase(
            auth, rfc1902.OctetString(user.priv_key)) if user.priv_protocol else None
        self._masters[user.username] = (master_auth, master_priv)
        self._add_user(user, None)
        for engine_id in user.engine_ids:
            self._add_user(user, bytes.fromhex(engine_id.removeprefix("0x")))

    def _add_user(self, user: TrapUser, engine_id: bytes | None, learnt: bool = False) -> None:
        from pysnmp.entity import config
        from pysnmp.proto import rfc1902

        auth, priv = self._protocols(user)
        master_auth, master_priv = self._masters[user.username]
        config.add_v3_user(
            self._engine, user.username, auth, master_auth, priv, master_priv,
            securityEngineId=rfc1902.OctetString(engine_id) if engine_id is not None else None,
            authKeyType=config.USM_KEY_TYPE_MASTER, privKeyType=config.USM_KEY_TYPE_MASTER)
        if engine_id is not None:
            self._known_engines[(user.username, engine_id)] = learnt
            self._learnt += learnt

    def _learn(self, engine_id: bytes, username: str) -> bool:
        """Register a sender's engine ID for a configured user; True if it was new."""
        if not 5 <= len(engine_id) <= 32 or (username, engine_id) in self._known_engines:
            return False
        user = next((u for u in self.users if u.username == username), None)
        if user is None or not user.learn_engine_ids or not user.auth_protocol:
            return False
        if self._learnt >= self.max_learnt:
            self._log.warning("learn-cap", "SNMPv3 trap from user %s with a new engine ID %s "
                              "not learnt: %d engine IDs learnt already", username,
                              engine_id.hex(), self._learnt)
            return False
        now = time.monotonic()
        self._learn_budget = min(self.learn_per_second, self._learn_budget
                                 + (now - self._learn_clock) * self.learn_per_second)
        self._learn_clock = now
        if self._learn_budget < 1:
            self._log.warning("learn-rate", "SNMPv3 engine IDs arrive faster than %g/s: "
                              "some traps are dropped", self.learn_per_second)
            return False
        self._learn_budget -= 1
        self._add_user(user, engine_id, learnt=True)
        return True

    def _forget(self, engine_id: bytes, username: str) -> None:
        from pysnmp.entity import config
        from pysnmp.proto import rfc1902

        self._learnt -= self._known_engines.pop((username, engine_id), False)
        with contextlib.suppress(Exception):
            config.delete_v3_user(self._engine, username, rfc1902.OctetString(engine_id))

    # --- SNMPv3 timeliness (RFC 3414 3.2.7b), which pysnmp 7 does not enforce on traps

    def _timely(self, header: _V3Header) -> bool:
        """False if an authenticated message's boots/time go back beyond the 150 s window of
        what was last authenticated from that engine."""
        if not self.check_time_window:
            return True
        known = self._timeline.get(header.engine_id)
        if known is None:
            return True
        boots, engine_time, _latest, updated = known
        local_notion = engine_time + int(time.monotonic() - updated)
        return not (boots == 2147483647 or header.boots < boots
                    or (header.boots == boots and header.time < local_notion - 150))

    def _synchronise(self, header: _V3Header) -> None:
        known = self._timeline.get(header.engine_id)
        if known is None or header.boots > known[0] or \
                (header.boots == known[0] and header.time > known[2]):
            if known is None and len(self._timeline) >= 2 * self.max_learnt:
                self._timeline.clear()  # bounded; a device re-synchronises on its next trap
            self._timeline[header.engine_id] = (header.boots, header.time, header.time,
                                                time.monotonic())

    # --- receiving

    def _stat_objects(self) -> list[Any]:
        """pysnmp's own MIB counters of dropped messages, read before and after each datagram
        to tell why it was dropped."""
        builder = self._engine.get_mib_builder()
        names = {"__SNMPv2-MIB": ["snmpInASNParseErrs", "snmpInBadVersions",
                                  "snmpInBadCommunityNames"],
                 "__SNMP-MPD-MIB": ["snmpUnknownSecurityModels", "snmpInvalidMsgs",
                                    "snmpUnknownPDUHandlers"],
                 "__SNMP-USER-BASED-SM-MIB": ["usmStatsUnsupportedSecLevels",
                                              "usmStatsNotInTimeWindows",
                                              "usmStatsUnknownUserNames",
                                              "usmStatsUnknownEngineIDs",
                                              "usmStatsWrongDigests",
                                              "usmStatsDecryptionErrors"]}
        out = []
        for module, symbols in names.items():
            for symbol in symbols:
                try:
                    out.append((symbol, builder.import_symbols(module, symbol)[0]))
                except Exception:  # noqa: BLE001 - a pysnmp without this counter: classify without it
                    log.debug("pysnmp has no %s::%s", module, symbol)
        return out

    def _snapshot(self) -> list[int]:
        return [int(obj.syntax) for _, obj in self._stats]

    def _on_datagram(self, dispatcher: Any, domain: Any, address: Any, message: bytes) -> None:
        """Every datagram, before pysnmp: learn v3 engine IDs, then classify the outcome."""
        if self._engine is None:  # closed while datagrams were queued
            return
        self.counters.datagrams += 1
        source = str(address[0])
        if source.startswith("::ffff:") and "." in source:  # IPv4 on a dual-stack socket
            source = source[7:]
        if self.limiter is not None and not self.limiter.allow(source):
            self.counters.rate_limited += 1
            self._log.warning(f"rate:{source}", "traps from %s arrive faster than %g/s: "
                              "dropped", source, self.limiter.rate)
            return
        learnt: tuple[bytes, str] | None = None
        header: _V3Header | None = None
        try:
            version = _message_version(message)
            if version == 3:
                header = _v3_header(message)
        except Exception:  # noqa: BLE001 - not BER / not SNMP: any decoder error means garbage
            self.counters.undecodable += 1
            self._log.warning(f"undecodable:{source}", "undecodable datagram on the trap port "
                              "from %s (%d bytes)", source, len(message))
            return
        if header is not None and header.authenticated:
            if not self._timely(header):
                self.counters.rejected += 1
                self._log.warning(f"time:{source}", "SNMPv3 trap from %s rejected: outside the "
                                  "time window (engine %s boots %d time %d went back: a replay, "
                                  "or a device that does not keep snmpEngineBoots across "
                                  "reboots)", source, header.engine_id.hex(), header.boots,
                                  header.time)
                return
            if self._learn(header.engine_id, header.username):
                learnt = (header.engine_id, header.username)
        before = self._snapshot()
        self._source = source
        self._accepted = False
        try:
            self._engine.message_dispatcher.receive_message(self._engine, domain, address,
                                                            message)
        except Exception as exc:  # noqa: BLE001 - pysnmp choked: the datagram is dropped, go on
            log.debug("pysnmp failed on a datagram from %s: %r", source, exc)
        if self._accepted:
            if header is not None and header.authenticated:
                self._synchronise(header)
            if learnt is not None:
                self.counters.engine_ids_learnt += 1
                log.info("SNMPv3 trap sender %s: engine ID %s learnt for user %s", source,
                         learnt[0].hex(), learnt[1])
            return
        if learnt is not None:
            self._forget(*learnt)
        grown = {name for (name, _), old, new in zip(self._stats, before, self._snapshot(),
                                                     strict=True) if new > old}
        if grown & _MALFORMED or not (grown or version == 3):
            self.counters.undecodable += 1
            self._log.warning(f"undecodable:{source}", "datagram from %s on the trap port is "
                              "not a notification we can read (%s)", source,
                              ", ".join(sorted(grown)) or f"SNMP version {version}")
        else:  # pysnmp counts most v3 failures; a time-window miss it does not count
            self.counters.rejected += 1
            self._log.warning(f"rejected:{source}", "trap from %s rejected (%s): wrong "
                              "community, unknown SNMPv3 user, wrong keys or outside the "
                              "time window", source, ", ".join(sorted(grown)) or "SNMPv3")

    def _on_notification(self, snmp: Any, state: Any, context_engine: Any, context: Any,
                         varbinds: Any, _ctx: Any) -> None:
        """ntfrcv's callback: an authenticated notification (v1 already translated)."""
        self._accepted = True
        self.counters.received += 1
        try:
            self._deliver(self._source, [(str(oid), value) for oid, value in varbinds])
        except Exception:  # a bug of ours must not stop the receiver
            log.exception("trap from %s could not be turned into events", self._source)

    def _deliver(self, source: str, raw: list[tuple[str, Any]]) -> None:
        now = time.time()
        rendered: Varbinds = [(oid, *_render(value)) for oid, value in raw]
        trap_oid = next((text for oid, text, _ in rendered if oid == SNMP_TRAP_OID), "")
        device = self.resolve(source)
        if device is None:
            relayed = next((text for oid, text, _ in rendered if oid == SNMP_TRAP_ADDRESS), "")
            if relayed and relayed != source:
                device = self.resolve(relayed)
        if device is None:
            self.counters.unknown_source += 1
            self._log.warning(f"unknown:{source}", "trap %s from %s: no device in the "
                              "inventory has this address; dropped", trap_oid or "?", source)
            return
        readings = self.mappings.events(device, trap_oid, rendered, now) if trap_oid else None
        if readings is None:
            self.counters.unmapped += 1
            if not self.deliver_unmapped:
                return
            summary = "; ".join(f"{oid}={text}" for oid, text, _ in rendered
                                if oid not in (SNMP_TRAP_OID, SYS_UPTIME))
            readings = [event(device, UNMAPPED_EVENT, "trap", 1.0, now, summary[:500] or None,
                              oid=trap_oid or "unknown")]
        for reading in readings:
            self._sink(reading)

    def _sink(self, reading: Reading) -> None:
        try:
            self.sink(reading)
            self.counters.delivered += 1
        except Exception:  # the agent's sink failed: log, keep receiving
            log.exception("event sink failed on %s", reading)


# --- helpers -------------------------------------------------------------------------------

_MALFORMED = frozenset({"snmpInASNParseErrs", "snmpInBadVersions", "snmpUnknownSecurityModels",
                        "snmpInvalidMsgs", "snmpUnknownPDUHandlers"})
"""pysnmp counters that mean "not a readable notification" rather than "not authorised"."""

_PRINTABLE = set(string.printable.encode()) | set(range(0x80, 0x100))


def _render(value: Any) -> tuple[str, bytes | None]:
    """A varbind value as text (and its octets when it is an OCTET STRING)."""
    from pysnmp.proto import rfc1902

    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in value.asOctets()), None
    if isinstance(value, rfc1902.OctetString) and not isinstance(value, rfc1902.Opaque):
        octets = value.asOctets()
        try:
            text = octets.decode()
            if all(b in _PRINTABLE for b in octets):
                return text.rstrip("\0"), octets
        except UnicodeDecodeError:
            pass
        return octets.hex(), octets
    if isinstance(value, rfc1902.ObjectIdentifier):
        return ".".join(str(n) for n in value), None
    try:
        return str(int(value)), None
    except (TypeError, ValueError):
        return value.prettyPrint(), None


def _message_version(message: bytes) -> int:
    from pysnmp.proto.api.verdec import decode_message_version

    wire = int(decode_message_version(message))
    return {0: 1, 1: 2}.get(wire, wire)  # v1 is 0 on the wire, v2c 1, v3 3


@dataclass(frozen=True)
class _V3Header:
    engine_id: bytes  # msgAuthoritativeEngineID: the sender's, for a trap
    username: str
    boots: int
    time: int
    authenticated: bool  # msgFlags auth bit


def _v3_header(message: bytes) -> _V3Header:
    """The USM header fields of an SNMPv3 message, read without authenticating it."""
    from pyasn1.codec.ber import decoder
    from pysnmp.proto.mpmod.rfc3412 import SNMPv3Message
    from pysnmp.proto.secmod.rfc3414.service import UsmSecurityParameters

    whole, _ = decoder.decode(message, asn1Spec=SNMPv3Message())
    flags = whole.getComponentByPosition(1).getComponentByPosition(2).asOctets()
    params, _ = decoder.decode(whole.getComponentByPosition(2).asOctets(),
                               asn1Spec=UsmSecurityParameters())
    return _V3Header(params.getComponentByPosition(0).asOctets(),
                     params.getComponentByPosition(3).asOctets().decode(errors="replace"),
                     int(params.getComponentByPosition(1)), int(params.getComponentByPosition(2)),
                     bool(flags and flags[0] & 1))
