"""Traps are bounded per source: a flood from one address is cut to its token bucket and
counted (vigil_snmp_traps_total{outcome="rate_limited"}); another source still gets through.
The flood is a real snmptrap datagram sent 1,000 times on loopback; the clock is frozen, so
exactly `burst` traps of the flood pass."""

from __future__ import annotations

import asyncio
import socket

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from agent.exporter import TrapCounters
from collectors.reading import Reading
from collectors.traps.ratelimit import SourceLimiter
from collectors.traps.receiver import TrapReceiver
from tests import peers
from tests.test_traps import DEVICES, IF_INDEX, LINK_DOWN, net_snmp_env, v2c


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_refills_at_its_rate_and_sources_are_apart():
    clock = Clock()
    limiter = SourceLimiter(rate=2.0, burst=3, clock=clock)
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("b")
    clock.now += 0.5  # one token back
    assert [limiter.allow("a") for _ in range(2)] == [True, False]
    clock.now += 100
    assert [limiter.allow("a") for _ in range(4)] == [True, True, True, False]  # capped


def test_source_table_is_bounded():
    clock = Clock()
    limiter = SourceLimiter(rate=1.0, burst=1, clock=clock, max_sources=100)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}")
    assert len(limiter._buckets) <= 100
    with pytest.raises(ValueError):
        SourceLimiter(rate=0, burst=1)


def _datagram(tmp_path) -> bytes:
    """One real v2c linkDown from snmptrap, caught on a loopback socket."""
    snmptrap = peers.program("snmptrap")

    async def capture() -> bytes:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
            sink.bind(("127.0.0.1", 0))
            sink.setblocking(False)
            args = [a.replace("{target}", f"127.0.0.1:{sink.getsockname()[1]}")
                    for a in v2c("public", LINK_DOWN, f"{IF_INDEX}.7", "i", "7")]
            process = await asyncio.create_subprocess_exec(
                snmptrap, *args, env=net_snmp_env(tmp_path), stderr=asyncio.subprocess.DEVNULL)
            await process.wait()
            loop = asyncio.get_running_loop()
            return (await asyncio.wait_for(loop.sock_recvfrom(sink, 4096), 5))[0]

    return asyncio.run(capture())


def test_flood_from_one_source_is_dropped_and_counted(tmp_path):
    datagram = _datagram(tmp_path)
    flood, burst = 1000, 50

    async def main() -> tuple[TrapReceiver, list[Reading]]:
        events: list[Reading] = []
        receiver = TrapReceiver("127.0.0.1:0", events.append, DEVICES.get, ["public"],
                                limiter=SourceLimiter(rate=1.0, burst=burst, clock=Clock()))
        await receiver.start()
        port = int(receiver.address.rsplit(":", 1)[1])
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(flood):
                    sock.sendto(datagram, ("127.0.0.1", port))
                    if i % 100 == 99:  # within the socket buffer: let the receiver read
                        await asyncio.sleep(0.001)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
                other.bind(("127.0.0.2", 0))
                other.sendto(datagram, ("127.0.0.1", port))
            for _ in range(1000):
                if receiver.counters.datagrams >= flood + 1:
                    break
                await asyncio.sleep(0.005)
        finally:
            await receiver.close()
        return receiver, events

    receiver, _events = asyncio.run(main())
    counters = receiver.counters
    assert counters.datagrams == flood + 1, counters
    assert counters.rate_limited == flood - burst, counters
    assert counters.received == burst + 1, counters  # the other source was not held back
    assert counters.unknown_source == 1  # 127.0.0.2 is no device: it got through the limiter
    registry = CollectorRegistry()
    registry.register(TrapCounters(counters.as_dict))
    page = generate_latest(registry).decode()
    assert f'vigil_snmp_traps_total{{outcome="rate_limited"}} {flood - burst}.0' in page
