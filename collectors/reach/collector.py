"""Reachability: is the host there (ICMP echo, TCP), and are its service ports open?

One poll of one device sends `count` ICMP echo requests and, at the same time, opens a TCP
connection to each service port (80 ONVIF/HTTP, 554 RTSP, 443, ...), closing it at once. It
tells three states apart:

- up: an echo reply came, or any port answered, open *or* refused (a RST is the host
  answering). A port refused or timed out reads `reach_tcp_up{port} 0`: its service is down,
  the host is not.
- down, reason `host_down`: nothing answered (echoes lost, every port timed out or the
  neighbour did not answer ARP/ND).
- down, reason `unreachable`: every attempt failed with "no route" (ENETUNREACH), or the
  name does not resolve.
- down, reason `unsupported`: nothing could be tried (ICMP unavailable or off, and no TCP
  ports); `reach_icmp_available 0` says why.

ICMP is sent unprivileged where the kernel allows it, else over a raw socket with
CAP_NET_RAW, else not at all (icmp.py says how). Whether the stream itself plays is the RTSP
collector's business; this one only says whether its port answers.

Nothing a device does raises out of `poll`.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import time
from dataclasses import dataclass

from collectors.reach.icmp import (
    FAMILY_NAME,
    UNREACHABLE_ERRNOS,
    EchoResult,
    IcmpSocket,
    open_icmp,
    unavailable_hint,
)
from collectors.reading import PollResult, Reading

log = logging.getLogger("vigil.reach")

ECHO_INTERVAL = 0.2
"""Seconds between the echo requests of one poll (ping(8) uses 1 s; devices do not mind 0.2)."""

MAX_CONNECTS = 256
"""TCP connects in flight at once, across all devices (each holds a file descriptor)."""

NAME_CACHE_SECONDS = 60.0
"""How long a resolved host name is reused (inventories mostly hold IP addresses)."""


@dataclass(frozen=True)
class ReachJob:
    """What the scheduler asks for: one device's address, its service ports, how hard to try."""

    device: str
    address: str  # IPv4 or IPv6 literal, or a host name
    tcp_ports: tuple[int, ...]  # service ports to connect to, e.g. (80, 554)
    icmp: bool  # send ICMP echo requests
    count: int  # echo requests per poll
    timeout: float  # seconds to wait for each echo reply and each TCP connect
    deadline: float  # seconds for the whole poll


@dataclass(frozen=True)
class PortState:
    """Outcome of one TCP connect: state is open, refused, timeout, unreachable, host_down
    or error."""

    port: int
    state: str
    seconds: float

    @property
    def host_answered(self) -> bool:
        return self.state in ("open", "refused")


class ReachCollector:
    """Polls reachability; one ICMP socket per address family shared by every device."""

    def __init__(self, *, echo_interval: float = ECHO_INTERVAL,
                 max_connects: int = MAX_CONNECTS):
        self.echo_interval = echo_interval
        self._icmp: dict[int, IcmpSocket | None] = {}
        self._icmp_why: dict[int, str] = {}
        self._connects = max_connects
        self._slots: asyncio.Semaphore | None = None
        self._slots_loop: asyncio.AbstractEventLoop | None = None
        self._names: dict[str, tuple[float, int, str]] = {}

    # --- what the agent may ask about the host

    def icmp_mode(self, family: int = socket.AF_INET) -> str | None:
        """'dgram' (unprivileged), 'raw' (CAP_NET_RAW) or None (no ICMP) for that family."""
        sock = self._socket(family)
        return sock.mode if sock is not None else None

    def _socket(self, family: int) -> IcmpSocket | None:
        if family not in self._icmp:
            sock, why = open_icmp(family)
            self._icmp[family] = sock
            self._icmp_why[family] = why
            if sock is None:
                log.warning(unavailable_hint(family, why))
            else:
                log.info("ICMP echo (%s) over a %s socket", FAMILY_NAME[family],
                         "unprivileged datagram" if sock.mode == "dgram" else "raw")
        return self._icmp[family]

    # --- polling

    async def poll(self, job: ReachJob) -> PollResult:
        started = time.time()
        clock = time.perf_counter()
        try:
            async with asyncio.timeout(job.deadline + 0.5):  # the steps keep within deadline
                return await self._poll(job, started, clock)
        except TimeoutError:
            return PollResult(job.device, started, time.perf_counter() - clock, False,
                              "timeout", f"the poll overran its deadline of {job.deadline:g}s",
                              collector="reach")
        except Exception as exc:  # a bug of ours: the device is not to blame, nothing escapes
            log.exception("reachability poll of %s failed", job.device)
            return PollResult(job.device, started, time.perf_counter() - clock, False,
                              "error", f"{type(exc).__name__}: {exc}", collector="reach")

    async def _poll(self, job: ReachJob, started: float, clock: float) -> PollResult:
        def done(up: bool, reason: str | None, detail: str,
                 readings: list[Reading], requests: int = 0) -> PollResult:
            return PollResult(job.device, started, time.perf_counter() - clock, up,
                              reason, detail, readings=readings, requests=requests,  # type: ignore[arg-type]
                              collector="reach")

        resolved = await self._resolve(job.address)
        if isinstance(resolved, str):
            return done(False, "unreachable", resolved, [])
        family, address = resolved
        readings: list[Reading] = []

        def reading(metric: str, value: float, text: str | None = None, **labels: str) -> None:
            readings.append(Reading(job.device, metric, labels, value, started, text))

        timeout = max(0.001, min(job.timeout, job.deadline))
        icmp = self._socket(family) if job.icmp else None
        tasks: list[asyncio.Future] = []
        if icmp is not None:
            count = max(1, job.count)
            interval = self.echo_interval if count == 1 else \
                max(0.0, min(self.echo_interval, (job.deadline - timeout) / (count - 1)))
            tasks.append(asyncio.ensure_future(icmp.ping(address, count, interval, timeout)))
        for port in job.tcp_ports:
            tasks.append(asyncio.ensure_future(self._connect(family, address, port, timeout)))
        try:
            outcomes = await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
        echo: EchoResult | None = outcomes.pop(0) if icmp is not None else None
        ports: list[PortState] = outcomes

        if job.icmp:
            reading("reach_icmp_available", 1.0 if icmp is not None else 0.0)
        if echo is not None:
            reading("reach_icmp_up", 1.0 if echo.received else 0.0)
            reading("reach_icmp_loss_ratio", echo.loss_ratio)
            if echo.rtts:
                reading("reach_icmp_rtt_seconds", sum(echo.rtts) / len(echo.rtts))
        for state in ports:
            reading("reach_tcp_up", 1.0 if state.state == "open" else 0.0, state.state,
                    port=str(state.port))
            if state.state == "open":
                reading("reach_tcp_connect_seconds", state.seconds, port=str(state.port))

        parts = []
        if echo is not None:
            parts.append(f"icmp {echo.received}/{echo.sent} replies"
                         + (f" ({echo.error})" if echo.error else ""))
        elif job.icmp:
            parts.append(f"icmp unavailable ({FAMILY_NAME[family]})")
        parts += [f"tcp {s.port} {s.state}" for s in ports]
        detail = "; ".join(parts)
        requests = (echo.sent if echo is not None else 0) + len(ports)

        if (echo is not None and echo.received) or any(s.host_answered for s in ports):
            return done(True, None, detail, readings, requests)
        if echo is None and not ports:
            why = "ICMP is unavailable on this host" if job.icmp else "ICMP is off"
            return done(False, "unsupported", f"{why} and the device has no TCP ports to try",
                        readings)
        failures = [s.state for s in ports]
        if echo is not None:
            failures.append(echo.error or "lost")
        reason = "unreachable" if all(f == "unreachable" for f in failures) else "host_down"
        return done(False, reason, detail, readings, requests)

    async def _connect(self, family: int, address: str, port: int, timeout: float
                       ) -> PortState:
        loop = asyncio.get_running_loop()
        if self._slots is None or self._slots_loop is not loop:
            self._slots = asyncio.Semaphore(self._connects)
            self._slots_loop = loop
        async with self._slots:
            start = time.perf_counter()
            try:
                sock = socket.socket(family, socket.SOCK_STREAM)
            except OSError as exc:
                return PortState(port, f"error: {exc.strerror or exc}", 0.0)
            try:
                sock.setblocking(False)
                async with asyncio.timeout(timeout):
                    await loop.sock_connect(sock, (address, port))
                return PortState(port, "open", time.perf_counter() - start)
            except TimeoutError:
                return PortState(port, "timeout", time.perf_counter() - start)
            except ConnectionRefusedError:
                return PortState(port, "refused", time.perf_counter() - start)
            except OSError as exc:
                state = "unreachable" if exc.errno in UNREACHABLE_ERRNOS else \
                    "host_down" if exc.errno == errno.EHOSTUNREACH else \
                    f"error: {exc.strerror or exc}"
                return PortState(port, state, time.perf_counter() - start)
            finally:
                sock.close()

    async def _resolve(self, address: str) -> tuple[int, str] | str:
        """(family, literal address), or why it cannot be reached."""
        text = address.strip().strip("[]")
        try:
            ip = ipaddress.ip_address(text.split("%")[0])
        except ValueError:
            pass
        else:
            if ip.version == 4:
                return socket.AF_INET, text
            mapped = ip.ipv4_mapped  # ::ffff:a.b.c.d is an IPv4 host
            return (socket.AF_INET, str(mapped)) if mapped else (socket.AF_INET6, text)
        cached = self._names.get(text)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1], cached[2]
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                text, None, type=socket.SOCK_STREAM)
        except OSError as exc:
            return f"the name '{text}' does not resolve: {exc.strerror or exc}"
        if not infos:
            return f"the name '{text}' does not resolve"
        family, _, _, _, sockaddr = infos[0]
        self._names[text] = (now + NAME_CACHE_SECONDS, family, sockaddr[0])
        return family, sockaddr[0]

    def forget(self, device: str) -> None:
        """Nothing is kept per device (the agent may call this on reload)."""

    async def close(self) -> None:
        for sock in self._icmp.values():
            if sock is not None:
                sock.close()
        self._icmp.clear()
        self._icmp_why.clear()
