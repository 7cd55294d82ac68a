"""ICMP echo for thousands of devices from one socket per address family, without root.

How a socket is opened, in order of preference (per family, decided once):

1. `dgram`: an unprivileged ICMP socket (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, and
   `IPPROTO_ICMPV6` for IPv6). Linux allows it when the process's group is inside the sysctl
   `net.ipv4.ping_group_range` (it governs IPv6 too). The kernel sets the echo identifier to
   the socket's own "port" and hands this socket only the replies to its own requests.
2. `raw`: a raw ICMP socket, when the process has CAP_NET_RAW (root, or the systemd unit's
   `AmbientCapabilities=CAP_NET_RAW`). It sees every ICMP echo reply of the host: a kernel
   filter (ICMP_FILTER / ICMP6_FILTER) lets only echo replies in, and replies are matched on
   our identifier.
3. neither: ICMP is unavailable for that family. It is logged once, with the fix, and the
   collector reports `reach_icmp_available 0` and relies on TCP.

Requests are matched to replies by sequence number (one 16-bit counter per socket, skipping
numbers still in flight), the target address and an 8-byte token in the payload, so a late
reply to an old request is never taken for a new one. Round trips are measured from the
kernel's receive timestamp (SO_TIMESTAMPNS) when there is one, so a busy event loop does not
inflate them. No subprocess, no socket per ping: one poll costs a few timer handles and one
future.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import logging
import os
import socket
import struct
import time
from dataclasses import dataclass, field

log = logging.getLogger("vigil.reach")

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)
"""Linux: receive timestamps as struct timespec (SCM_TIMESTAMPNS has the same value)."""
SOL_RAW = getattr(socket, "SOL_RAW", 255)
ICMP_FILTER = 1  # SOL_RAW option: bit mask of ICMP types to drop (raw IPv4 sockets)
ICMP6_FILTER = 1  # IPPROTO_ICMPV6 option: struct icmp6_filter, set bits block a type
_TIMESPEC = struct.Struct("@ll")
_ECHO = struct.Struct("!BBHHH")  # type, code, checksum, identifier, sequence

ECHO_REQUEST = {socket.AF_INET: 8, socket.AF_INET6: 128}
ECHO_REPLY = {socket.AF_INET: 0, socket.AF_INET6: 129}
FAMILY_NAME = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}

UNREACHABLE_ERRNOS = frozenset({errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT,
                                errno.EINVAL})
"""sendto/connect errors meaning "no route / no such network from here" (reason unreachable).
EHOSTUNREACH is not among them: the kernel gives it when a neighbour on the local link does
not answer ARP/ND, i.e. the host is off (reason host_down)."""


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071) of `data`."""
    if len(data) % 2:
        data += b"\0"
    total = sum(memoryview(data).cast("H"))  # native order; folded and swapped below
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    value = ~total & 0xFFFF
    return socket.htons(value) if _LITTLE_ENDIAN else value


_LITTLE_ENDIAN = struct.pack("=H", 1) == b"\x01\x00"


@dataclass
class EchoResult:
    """Outcome of `count` echo requests to one address."""

    sent: int = 0
    rtts: list[float] = field(default_factory=list)
    error: str | None = None  # "unreachable", "host_down" (sendto said so) or "error: ..."

    @property
    def received(self) -> int:
        return len(self.rtts)

    @property
    def loss_ratio(self) -> float:
        return 1.0 - len(self.rtts) / self.sent if self.sent else 1.0


class _Probe:
    """The echoes of one ping() call: counts replies, completes when all are answered or
    expired."""

    __slots__ = ("future", "outstanding", "result", "sending")

    def __init__(self, future: asyncio.Future[None]):
        self.future = future
        self.result = EchoResult()
        self.outstanding = 0
        self.sending = True

    def settle(self) -> None:
        if not self.sending and self.outstanding <= 0 and not self.future.done():
            self.future.set_result(None)


class _Echo:
    __slots__ = ("address", "handle", "probe", "sent_mono", "sent_wall", "token")

    def __init__(self, probe: _Probe, address: str, token: bytes):
        self.probe = probe
        self.address = address
        self.token = token
        self.sent_wall = 0.0
        self.sent_mono = 0.0
        self.handle: asyncio.TimerHandle | None = None


class IcmpSocket:
    """One ICMP socket of one family, shared by every echo of that family."""

    def __init__(self, family: int, sock: socket.socket, mode: str):
        self.family = family
        self.sock = sock
        self.mode = mode  # "dgram" or "raw"
        self.identifier = int.from_bytes(os.urandom(2), "big") if mode == "raw" else 0
        self.pending: dict[int, _Echo] = {}
        self._sequence = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._tokens = itertools.count(int.from_bytes(os.urandom(6), "big") << 16)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.stray = 0  # replies that matched nothing (late, foreign, or garbled)

    # --- sending

    def _next_sequence(self) -> int:
        for _ in range(0x10000):
            seq = next(self._sequence) & 0xFFFF
            if seq not in self.pending:
                return seq
        raise OSError(errno.ENOBUFS, "65536 echo requests in flight")

    def _packet(self, seq: int, token: bytes) -> bytes:
        payload = token + b"vigil-reach\0\0\0\0\0"  # 24 bytes, like a short ping(8) payload
        header = _ECHO.pack(ECHO_REQUEST[self.family], 0, 0, self.identifier, seq)
        if self.family == socket.AF_INET6:  # the kernel computes the ICMPv6 checksum
            return header + payload
        packet = header + payload
        return packet[:2] + struct.pack("!H", checksum(packet)) + packet[4:]

    async def ping(self, address: str, count: int, interval: float, timeout: float
                   ) -> EchoResult:
        loop = asyncio.get_running_loop()
        self._attach(loop)
        probe = _Probe(loop.create_future())
        sequences: list[int] = []
        try:
            for i in range(count):
                if i:
                    await asyncio.sleep(interval)
                seq = self._next_sequence()
                token = next(self._tokens).to_bytes(8, "big")
                echo = _Echo(probe, address, token)
                packet = self._packet(seq, token)
                self.pending[seq] = echo
                sequences.append(seq)
                echo.sent_wall, echo.sent_mono = time.time(), time.monotonic()
                try:
                    try:
                        self.sock.sendto(packet, (address, 0))
                    except BlockingIOError:  # send buffer full: wait until it drains
                        await loop.sock_sendto(self.sock, packet, (address, 0))
                        echo.sent_wall, echo.sent_mono = time.time(), time.monotonic()
                except OSError as exc:
                    del self.pending[seq]
                    probe.result.error = _send_error(exc)
                    break
                probe.result.sent += 1
                probe.outstanding += 1
                echo.handle = loop.call_later(timeout, self._expire, seq, echo)
            probe.sending = False
            probe.settle()
            await probe.future
            return probe.result
        finally:
            for seq in sequences:  # cancelled (deadline) or done: leave nothing behind
                echo = self.pending.get(seq)
                if echo is not None and echo.probe is probe:
                    del self.pending[seq]
                    if echo.handle is not None:
                        echo.handle.cancel()

    def _expire(self, seq: int, echo: _Echo) -> None:
        if self.pending.get(seq) is echo:
            del self.pending[seq]
            echo.probe.outstanding -= 1
            echo.probe.settle()

    # --- receiving

    def _attach(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.loop is loop:
            return
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
        self.pending.clear()
        self.loop = loop
        loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        for _ in range(256):  # drain, but let other callbacks run on a flood
            try:
                data, ancillary, _flags, source = self.sock.recvmsg(2048, 64)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. a queued ICMP error: not ours to report here
                log.debug("ICMP %s socket: %s", FAMILY_NAME[self.family], exc)
                return
            now_wall = time.time()
            now_mono = time.monotonic()
            received = None
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS \
                        and len(value) >= _TIMESPEC.size:
                    sec, nsec = _TIMESPEC.unpack_from(value)
                    received = sec + nsec / 1e9
            self._reply(data, source[0], received, now_wall, now_mono)

    def _reply(self, data: bytes, source: str, received: float | None, now_wall: float,
               now_mono: float) -> None:
        if self.family == socket.AF_INET and self.mode == "raw":
            if len(data) < 20:
                self.stray += 1
                return
            data = data[(data[0] & 0x0F) * 4:]  # raw IPv4 sockets include the IP header
        if len(data) < _ECHO.size + 8:
            self.stray += 1
            return
        kind, _code, _sum, identifier, seq = _ECHO.unpack_from(data)
        if kind != ECHO_REPLY[self.family]:
            return
        if self.mode == "raw" and identifier != self.identifier:
            return  # another process's ping
        echo = self.pending.get(seq)
        if echo is None or data[8:16] != echo.token or not _same_address(source, echo.address):
            self.stray += 1
            return
        del self.pending[seq]
        if echo.handle is not None:
            echo.handle.cancel()
        rtt = received - echo.sent_wall if received is not None else -1.0
        if not 0.0 <= rtt <= now_mono - echo.sent_mono + 0.001:  # clock stepped: event-loop time
            rtt = now_mono - echo.sent_mono
        probe = echo.probe
        probe.result.rtts.append(max(rtt, 0.0))
        probe.outstanding -= 1
        probe.settle()

    def close(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            with contextlib.suppress(Exception):
                self.loop.remove_reader(self.sock.fileno())
        for echo in self.pending.values():
            if echo.handle is not None:
                echo.handle.cancel()
            if not echo.probe.future.done():
                echo.probe.future.cancel()
        self.pending.clear()
        self.sock.close()


def _same_address(source: str, target: str) -> bool:
    if source == target:
        return True
    try:  # spellings differ (::1 vs 0:0::1, a zone suffix)
        return socket.inet_pton(socket.AF_INET6, source.split("%")[0]) == \
            socket.inet_pton(socket.AF_INET6, target.split("%")[0])
    except OSError:
        return False


def _send_error(exc: OSError) -> str:
    if exc.errno in UNREACHABLE_ERRNOS:
        return "unreachable"
    if exc.errno == errno.EHOSTUNREACH:
        return "host_down"
    return f"error: {exc.strerror or exc}"


def open_icmp(family: int) -> tuple[IcmpSocket | None, str]:
    """Open the best ICMP socket this process may: ('dgram' or 'raw', or None and why)."""
    proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
    why = []
    for mode, kind in (("dgram", socket.SOCK_DGRAM), ("raw", socket.SOCK_RAW)):
        try:
            sock = socket.socket(family, kind, proto)
        except OSError as exc:
            why.append(f"{mode}: {exc.strerror or exc}")
            continue
        try:
            sock.setblocking(False)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            if mode == "raw":
                _filter_echo_replies(sock, family)
        except OSError as exc:
            sock.close()
            why.append(f"{mode}: {exc.strerror or exc}")
            continue
        return IcmpSocket(family, sock, mode), ""
    return None, "; ".join(why)


def _filter_echo_replies(sock: socket.socket, family: int) -> None:
    """Let only echo replies into a raw socket (it would see all of the host's ICMP)."""
    if family == socket.AF_INET:
        sock.setsockopt(SOL_RAW, ICMP_FILTER, struct.pack("=I", ~(1 << 0) & 0xFFFFFFFF))
    else:
        words = [0xFFFFFFFF] * 8
        words[129 >> 5] &= ~(1 << (129 & 31)) & 0xFFFFFFFF
        sock.setsockopt(socket.IPPROTO_ICMPV6, ICMP6_FILTER, struct.pack("=8I", *words))


def ping_group_range() -> str:
    try:
        with open("/proc/sys/net/ipv4/ping_group_range") as handle:
            return " ".join(handle.read().split())
    except OSError:
        return "unknown"


def unavailable_hint(family: int, why: str) -> str:
    """The one log line that says ICMP cannot be used, and how to allow it."""
    return (f"ICMP echo ({FAMILY_NAME[family]}) is unavailable to this process ({why}); "
            f"reachability uses TCP connects only. To allow unprivileged ping, include the "
            f"agent's group (gid {os.getgid()}) in sysctl net.ipv4.ping_group_range "
            f"(now '{ping_group_range()}'), e.g. net.ipv4.ping_group_range = {os.getgid()} "
            f"{os.getgid()}; or give the daemon CAP_NET_RAW (systemd: "
            f"AmbientCapabilities=CAP_NET_RAW)")
