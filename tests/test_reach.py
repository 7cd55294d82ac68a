"""Reachability against real peers: the kernel's own ICMP echo and TCP stacks.

Loopback answers every echo and every TCP connect, so the cases that need silence are made
in network namespaces this test creates (`ip netns add`), each with its own sysctls:

- `bare`: the kernel's defaults, ping_group_range "1 0": as nobody, no ICMP at all.
- `reach`: net.ipv4.ping_group_range = "65534 65534", so the collector, run there as the
  unprivileged user nobody (uid/gid 65534, no capabilities), sends ICMP over an unprivileged
  datagram socket. Its subnet 10.253.0.0/24 (and fd00:253::/64) is on a veth pair whose other
  end has no address; 10.253.0.77 has a permanent neighbour entry with a MAC nobody owns, so
  echo requests and SYNs to it leave and are never answered: a host that is off. No route
  leads anywhere else (192.0.2.1 gets ENETUNREACH at once), so nothing leaves the namespace.
- `quiet`: net.ipv4.icmp_echo_ignore_all = 1: a host that ignores ping but answers TCP.

The host's own sysctls are never touched. In the host namespace this process (root, with
CAP_NET_RAW) uses a raw socket, or the unprivileged one where the host allows it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from collectors.reach.collector import ReachCollector, ReachJob
from collectors.reading import REASONS, PollResult
from tests import peers

ROOT = Path(__file__).resolve().parent.parent
NOBODY = 65534


def values(result: PollResult, metric: str) -> dict[str, float]:
    """{port or '': value} of one metric."""
    return {r.labels.get("port", ""): r.value for r in result.readings if r.metric == metric}


def texts(result: PollResult, metric: str) -> dict[str, str | None]:
    return {r.labels.get("port", ""): r.text for r in result.readings if r.metric == metric}


def poll(*jobs: ReachJob, collector: ReachCollector | None = None) -> list[PollResult]:
    async def run() -> list[PollResult]:
        own = collector or ReachCollector()
        try:
            return list(await asyncio.gather(*(own.poll(job) for job in jobs)))
        finally:
            if collector is None:
                await own.close()

    return asyncio.run(run())


def job(address: str, ports: tuple[int, ...] = (), icmp: bool = True, count: int = 2,
        timeout: float = 0.5, deadline: float = 5.0, device: str = "cam-1") -> ReachJob:
    return ReachJob(device=device, address=address, tcp_ports=ports, icmp=icmp, count=count,
                    timeout=timeout, deadline=deadline)


@contextmanager
def ports() -> Iterator[tuple[int, int, int]]:
    """(open, refused, timeout) TCP ports on 127.0.0.1.

    open: a listener. refused: a bound socket that does not listen (the port stays ours, and
    the kernel answers SYNs with RST). timeout: a listener with backlog 0 whose one queued
    connection is never accepted: the kernel drops further SYNs, so connects time out."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    accepting = threading.Thread(target=_accept_all, args=(listener,), daemon=True)
    accepting.start()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    filler = socket.create_connection(full.getsockname(), timeout=2)
    try:
        yield (listener.getsockname()[1], closed.getsockname()[1], full.getsockname()[1])
    finally:
        for sock in (filler, full, closed):
            sock.close()
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        listener.close()
        accepting.join(5)


def _accept_all(listener: socket.socket) -> None:
    while True:
        try:
            connection, _ = listener.accept()
        except OSError:
            return
        connection.close()


# --- in this process (host namespace) -------------------------------------------------------


def test_icmp_to_loopback_is_up_with_round_trip():
    v4, v6 = poll(job("127.0.0.1", count=3), job("::1", count=3))
    for result in (v4, v6):
        assert result.up, result.detail
        assert result.collector == "reach" and result.reason is None
        assert values(result, "reach_icmp_available") == {"": 1.0}
        assert values(result, "reach_icmp_up") == {"": 1.0}
        assert values(result, "reach_icmp_loss_ratio") == {"": 0.0}
        rtt = values(result, "reach_icmp_rtt_seconds")[""]
        assert 0 < rtt < 0.05, rtt
        assert result.requests == 3


def test_tcp_open_refused_and_timeout_are_told_apart():
    with ports() as (open_port, refused_port, silent_port):
        [result] = poll(job("127.0.0.1", (open_port, refused_port, silent_port), icmp=False,
                            timeout=0.4))
    up = values(result, "reach_tcp_up")
    assert up == {str(open_port): 1.0, str(refused_port): 0.0, str(silent_port): 0.0}
    assert texts(result, "reach_tcp_up") == {str(open_port): "open", str(refused_port): "refused",
                                             str(silent_port): "timeout"}
    connect = values(result, "reach_tcp_connect_seconds")
    assert list(connect) == [str(open_port)] and 0 < connect[str(open_port)] < 0.1
    assert "reach_icmp_available" not in {r.metric for r in result.readings}  # icmp off
    assert result.up  # the open port (and the RST) is the host answering


def test_host_up_but_service_down():
    """ICMP answers, the ONVIF/RTSP ports refuse or time out: the host is up, its service is not."""
    with ports() as (_, refused_port, silent_port):
        [result] = poll(job("127.0.0.1", (refused_port, silent_port), timeout=0.4))
    assert result.up and result.reason is None
    assert values(result, "reach_icmp_up") == {"": 1.0}
    assert values(result, "reach_tcp_up") == {str(refused_port): 0.0, str(silent_port): 0.0}
    assert f"tcp {refused_port} refused" in result.detail
    assert f"tcp {silent_port} timeout" in result.detail


def test_the_poll_keeps_its_deadline():
    with ports() as (_, _, silent_port):
        start = time.monotonic()
        [result] = poll(job("127.0.0.1", (silent_port,), timeout=5.0, deadline=0.3, count=3))
    assert time.monotonic() - start < 1.5
    assert result.up  # ICMP answered within the deadline
    assert values(result, "reach_tcp_up") == {str(silent_port): 0.0}


def test_thousand_devices_share_one_icmp_socket():
    """1,000 loopback addresses polled at once: one ICMP socket, every echo matched to its
    own device; prints the CPU cost per poll."""
    with ports() as (open_port, _, _):
        addresses = [f"127.0.{i // 250}.{i % 250 + 1}" for i in range(1000)]
        jobs = [job(a, (open_port,) if a == "127.0.0.1" else (), count=2, timeout=2.0,
                    deadline=10.0, device=f"d{i}") for i, a in enumerate(addresses)]

        async def run() -> tuple[list[PollResult], float, float, int]:
            collector = ReachCollector()
            await collector.poll(jobs[0])  # open the sockets before counting descriptors
            fds = len(os.listdir("/proc/self/fd"))
            cpu = time.process_time()
            wall = time.perf_counter()
            results = await asyncio.gather(*(collector.poll(j) for j in jobs))
            cpu = time.process_time() - cpu
            wall = time.perf_counter() - wall
            grown = len(os.listdir("/proc/self/fd")) - fds
            await collector.close()
            return results, cpu, wall, grown

        results, cpu, wall, grown = asyncio.run(run())
    assert grown <= 0, "ICMP sockets must be shared, not opened per ping"
    assert [r.device for r in results] == [j.device for j in jobs]
    down = [(r.device, r.detail) for r in results if not r.up]
    assert not down, down[:5]
    assert all(values(r, "reach_icmp_loss_ratio") == {"": 0.0} for r in results)
    per_poll = cpu / len(jobs)
    print(f"\n1000 reachability polls (2 echoes each): {cpu * 1000:.0f} ms CPU "
          f"({per_poll * 1e6:.0f} us per poll), {wall:.2f} s wall")
    assert per_poll < 0.02


def test_icmp_socket_mode_is_reported():
    collector = ReachCollector()
    try:
        modes = {collector.icmp_mode(socket.AF_INET), collector.icmp_mode(socket.AF_INET6)}
        assert modes <= {"dgram", "raw", None}
    finally:
        asyncio.run(collector.close())


# --- children in namespaces and without privileges -------------------------------------------

CHILD = r"""
import asyncio, json, logging, sys
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(message)s")
from collectors.reach.collector import ReachCollector, ReachJob

async def main():
    collector = ReachCollector()
    out = {"modes": {"4": collector.icmp_mode(2), "6": collector.icmp_mode(10)}, "results": []}
    for spec in json.loads(sys.argv[1]):
        spec["tcp_ports"] = tuple(spec["tcp_ports"])
        result = await collector.poll(ReachJob(**spec))
        out["results"].append({"up": result.up, "reason": result.reason, "detail": result.detail,
                               "duration": result.duration,
                               "readings": [[r.metric, r.labels, r.value, r.text]
                                            for r in result.readings]})
    await collector.close()
    print(json.dumps(out))

asyncio.run(main())
"""


def _require_root_tools() -> str:
    if os.geteuid() != 0:
        peers.missing("network namespaces need root (ip netns add)")
    ip = peers.program("ip", "/usr/sbin", "/sbin")
    for tool in ("setpriv",):
        if not shutil.which(tool):
            peers.missing(f"'{tool}' is not installed (apt-get install util-linux)")
    return ip


def _run(ip: str, args: list[str]) -> None:
    subprocess.run([ip, *args], check=True, capture_output=True, timeout=20)


@contextmanager
def namespace(ip: str, name: str, sysctls: dict[str, str]) -> Iterator[str]:
    try:
        _run(ip, ["netns", "add", name])
    except subprocess.CalledProcessError as exc:
        peers.missing(f"cannot create a network namespace: {exc.stderr.decode().strip()}")
    try:
        _run(ip, ["-n", name, "link", "set", "lo", "up"])
        for key, value in sysctls.items():
            path = "/proc/sys/" + key.replace(".", "/")
            subprocess.run([ip, "netns", "exec", name, "sh", "-c", f"echo '{value}' > {path}"],
                           check=True, capture_output=True, timeout=20)
        yield name
    finally:
        subprocess.run([ip, "netns", "del", name], capture_output=True, timeout=20)


@pytest.fixture(scope="module")
def reach_ns() -> Iterator[str]:
    ip = _require_root_tools()
    name = f"vigil-reach-{os.getpid()}"
    with namespace(ip, name, {"net.ipv4.ping_group_range": f"{NOBODY} {NOBODY}"}):
        for args in (["link", "add", "v0", "type", "veth", "peer", "name", "v1"],
                     ["addr", "add", "10.253.0.1/24", "dev", "v0"],
                     ["addr", "add", "fd00:253::1/64", "dev", "v0", "nodad"],
                     ["link", "set", "v0", "up"], ["link", "set", "v1", "up"],
                     ["neigh", "add", "10.253.0.77", "lladdr", "02:00:00:00:00:77", "dev", "v0",
                      "nud", "permanent"],
                     ["neigh", "add", "fd00:253::77", "lladdr", "02:00:00:00:00:77", "dev", "v0",
                      "nud", "permanent"]):
            try:
                _run(ip, ["-n", name, *args])
            except subprocess.CalledProcessError as exc:
                peers.missing(f"ip {' '.join(args)}: {exc.stderr.decode().strip()}")
        yield name


@pytest.fixture(scope="module")
def quiet_ns() -> Iterator[str]:
    ip = _require_root_tools()
    name = f"vigil-quiet-{os.getpid()}"
    with namespace(ip, name, {"net.ipv4.ping_group_range": f"{NOBODY} {NOBODY}",
                              "net.ipv4.icmp_echo_ignore_all": "1"}):
        yield name


def child(jobs: list[dict], netns: str | None = None) -> tuple[dict, str]:
    """Poll `jobs` in a child process run as nobody (no capabilities), in `netns` if given."""
    ip = _require_root_tools()
    command = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
               sys.executable, "-c", CHILD, json.dumps(jobs)]
    if netns:
        command = [ip, "netns", "exec", netns, *command]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), done.stderr


def spec(address: str, ports: tuple[int, ...] = (), icmp: bool = True, count: int = 2,
         timeout: float = 0.5) -> dict:
    return {"device": "dev", "address": address, "tcp_ports": list(ports), "icmp": icmp,
            "count": count, "timeout": timeout, "deadline": 5.0}


def readings(result: dict, metric: str) -> dict[str, float]:
    return {labels.get("port", ""): value for name, labels, value, _ in result["readings"]
            if name == metric}


def test_unprivileged_icmp_in_a_namespace_that_allows_it(reach_ns: str):
    """As nobody, with the namespace's ping_group_range covering gid 65534: datagram ICMP."""
    out, log = child([spec("127.0.0.1", count=3), spec("::1", count=3)], reach_ns)
    assert out["modes"] == {"4": "dgram", "6": "dgram"}, log
    for result in out["results"]:
        assert result["up"], result
        assert readings(result, "reach_icmp_up") == {"": 1.0}
        assert readings(result, "reach_icmp_loss_ratio") == {"": 0.0}
        assert 0 < readings(result, "reach_icmp_rtt_seconds")[""] < 0.05
    assert "unprivileged datagram" in log


def test_host_down_versus_unreachable_versus_service_down(reach_ns: str):
    out, _ = child([spec("10.253.0.77", (80, 554)),  # silent host on our own subnet
                    spec("fd00:253::77", (80,)),
                    spec("192.0.2.1", (80,)),  # no route from this namespace
                    spec("no-such-camera.invalid", (80,)),  # no name server reachable
                    spec("10.253.0.1", (80, 554))],  # our own address: up, ports closed
                   reach_ns)
    v4_down, v6_down, no_route, no_name, service_down = out["results"]
    for result in (v4_down, v6_down):
        assert not result["up"] and result["reason"] == "host_down", result
        assert readings(result, "reach_icmp_up") == {"": 0.0}
        assert readings(result, "reach_icmp_loss_ratio") == {"": 1.0}
        assert "reach_icmp_rtt_seconds" not in {r[0] for r in result["readings"]}
        assert set(readings(result, "reach_tcp_up").values()) == {0.0}
        assert "timeout" in result["detail"]
    assert v4_down["duration"] < 2.0  # bounded by the 0.5 s timeout, not by ARP or SYN retries
    assert not no_route["up"] and no_route["reason"] == "unreachable", no_route
    assert no_route["duration"] < 0.5
    assert not no_name["up"] and no_name["reason"] == "unreachable", no_name
    assert "does not resolve" in no_name["detail"]
    assert service_down["up"] and service_down["reason"] is None
    assert readings(service_down, "reach_tcp_up") == {"80": 0.0, "554": 0.0}
    assert "tcp 80 refused" in service_down["detail"]
    assert {"host_down", "unreachable"} <= set(REASONS)


def test_host_that_ignores_ping_is_up_by_tcp(quiet_ns: str):
    out, _ = child([spec("127.0.0.1", (80,))], quiet_ns)
    [result] = out["results"]
    assert out["modes"]["4"] == "dgram"
    assert readings(result, "reach_icmp_up") == {"": 0.0}
    assert readings(result, "reach_tcp_up") == {"80": 0.0}  # refused: the host answered
    assert result["up"] and result["reason"] is None


@pytest.fixture(scope="module")
def bare_ns() -> Iterator[str]:
    """A namespace with the kernel's defaults: ping_group_range "1 0" allows nobody."""
    ip = _require_root_tools()
    with namespace(ip, f"vigil-bare-{os.getpid()}", {}) as name:
        yield name


def test_without_icmp_privileges_tcp_only_and_one_log_line(bare_ns: str):
    """As nobody where ping_group_range is "1 0" and without CAP_NET_RAW: ICMP is
    unavailable; TCP still tells up from down; the cause and the fix are logged once."""
    out, log = child([spec("127.0.0.1", (80,)), spec("127.0.0.1", (554,)),
                      spec("127.0.0.1", ()), spec("127.0.0.1", (80,), icmp=False)], bare_ns)
    assert out["modes"] == {"4": None, "6": None}
    refused, again, nothing, off = out["results"]
    assert refused["up"] and again["up"]  # nothing listens: the RST is the host answering
    for result in (refused, again, nothing):
        assert readings(result, "reach_icmp_available") == {"": 0.0}
        assert "reach_icmp_up" not in {r[0] for r in result["readings"]}
    assert not nothing["up"] and nothing["reason"] == "unsupported"
    assert "reach_icmp_available" not in {r[0] for r in off["readings"]}
    lines = [line for line in log.splitlines() if "ICMP echo (IPv4) is unavailable" in line]
    assert len(lines) == 1, log
    assert "ping_group_range" in lines[0] and "'1 0'" in lines[0] and "CAP_NET_RAW" in lines[0]


def test_file_descriptor_budget_is_respected():
    """The connect limit bounds open descriptors whatever the number of devices."""
    with ports() as (open_port, _, _):
        async def run() -> tuple[list[PollResult], int]:
            collector = ReachCollector(max_connects=32)
            base = len(os.listdir("/proc/self/fd"))
            peak = 0
            done = False

            async def sample() -> None:
                nonlocal peak
                while not done:
                    peak = max(peak, len(os.listdir("/proc/self/fd")) - base)
                    await asyncio.sleep(0)

            sampler = asyncio.ensure_future(sample())
            results = await asyncio.gather(*(collector.poll(job("127.0.0.1", (open_port,),
                                                                icmp=False, device=f"d{i}"))
                                             for i in range(600)))
            done = True
            await sampler
            await collector.close()
            return list(results), peak

        results, peak = asyncio.run(run())
    assert all(r.up for r in results)
    print(f"peak fds {peak}")
    assert 0 < peak <= 32 + 16, peak  # the connects, plus the listener thread's accepted sockets
