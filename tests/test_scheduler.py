"""Scheduling as the daemon does it, in-process: spread, concurrency limit, dead devices."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from agent.config import load_config
from agent.daemon import Agent
from collectors.reading import PollResult
from tests import peers
from tests.test_daemon import write_config


def silent_ports(count: int) -> list[socket.socket]:
    """UDP sockets that receive and never answer: devices that are dead but not refusing."""
    out = []
    for _ in range(count):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        out.append(sock)
    return out


def dead_devices(sockets: list[socket.socket]) -> str:
    return "".join(
        f"  - {{id: dead-{i}, kind: ptz_camera, site: lab, address: 127.0.0.1, "
        f"port: {s.getsockname()[1]}, credentials: deltaups, profile: generic, "
        f"snmp: {{timeout: 5s, retries: 3}}}}\n" for i, s in enumerate(sockets))


def test_first_polls_are_spread_over_the_interval(recordings_sim, tmp_path):
    recordings = sorted(p.stem for p in peers.recordings().glob("*.snmprec"))
    config = load_config(write_config(tmp_path, recordings_sim, recordings, interval="60s"))

    async def run():
        agent = Agent(config)
        await agent.start()
        try:
            return time.time(), agent.scheduler.next_runs()
        finally:
            await agent.stop()

    now, runs = asyncio.run(run())
    runs = {key: at for key, at in runs.items() if key.endswith("/snmp")}
    assert len(runs) == len(recordings)
    offsets = sorted(t - now for t in runs.values())
    assert all(-1 < o <= 60 for o in offsets)
    assert offsets[-1] - offsets[0] > 30  # spread, not a burst
    assert len({round(o, 3) for o in offsets}) == len(offsets)


@pytest.mark.faults
def test_dead_devices_hold_slots_only_until_their_deadline(recordings_sim, tmp_path):
    """Two dead devices and two live ones, two polls at a time, 3 s interval: the dead ones
    are cut at their 2.7 s deadline, never more than two polls run at once, and the live ones
    keep being polled in the slots the dead ones leave."""
    sockets = silent_ports(2)
    path = write_config(tmp_path, recordings_sim, ["deltaups", "jetstream"], interval="3s",
                        extra_devices=dead_devices(sockets))
    text = path.read_text().replace("schedule: {default_interval: 3s}",
                                    "schedule: {default_interval: 3s, max_concurrent_polls: 2}"
                                    "\nreachability: {enabled: false}")
    path.write_text(text)
    config = load_config(path)

    async def run():
        agent = Agent(config)
        await agent.start()
        peak = 0
        try:
            deadline = time.time() + 10
            while time.time() < deadline:
                peak = max(peak, agent.registry.get_sample_value("vigil_polls_in_flight"))
                await asyncio.sleep(0.02)
            return agent, peak
        finally:
            await agent.stop()

    agent, peak = asyncio.run(run())
    for sock in sockets:
        sock.close()
    assert peak == 2
    state = agent.state.devices
    assert state["deltaups"].up and state["jetstream"].up
    for i in range(2):
        last = state[f"dead-{i}"].results.get("snmp")
        assert last is not None and last.reason == "timeout"
        assert "deadline of 2.7s" in last.detail and last.duration < 3.0
    # the live devices were polled again and again beside the dead ones
    assert agent.registry.get_sample_value("vigil_polls_total",
                                           {"kind": "ups", "collector": "snmp"}) >= 2


@pytest.mark.faults
def test_a_device_that_timed_out_is_asked_once_until_it_answers(recordings_sim, tmp_path):
    """Dead devices must not hold poll slots for every retry: after a timeout with its
    retries, the device is asked once per poll; once it answers, with retries again."""
    sockets = silent_ports(1)
    path = write_config(tmp_path, recordings_sim, ["deltaups"], interval="4s",
                        extra_devices=dead_devices(sockets).replace("timeout: 5s, retries: 3",
                                                                    "timeout: 1s, retries: 2"))
    path.write_text(path.read_text() + "reachability: {enabled: false}\n")
    config = load_config(path)

    async def run():
        agent = Agent(config)
        await agent.start()
        seen: list[tuple[str, float]] = []
        try:
            deadline = time.time() + 14
            while time.time() < deadline and len(seen) < 3:
                last = agent.state.devices["dead-0"].results.get("snmp")
                if last is not None and (not seen or last.timestamp != seen[-1][1]):
                    seen.append((last.detail, last.timestamp))
                    durations.append(last.duration)
                await asyncio.sleep(0.05)
            plan = agent.scheduler.plans["dead-0/snmp"]
            asking_once = plan.make_job().target.retries
            agent.state.update(PollResult("dead-0", time.time(), 0.01, True, collector="snmp"))
            return seen, asking_once, plan.make_job().target.retries
        finally:
            await agent.stop()

    durations: list[float] = []
    seen, asking_once, answered = asyncio.run(run())
    for sock in sockets:
        sock.close()
    assert len(seen) == 3, seen
    assert seen[0][0].startswith("no response after 3 tries of 1s"), seen
    assert all(detail.startswith("no response after 1 try of 1s") for detail, _ in seen[1:])
    assert durations[0] >= 2.9 and all(0.9 <= d < 1.5 for d in durations[1:]), durations
    assert (asking_once, answered) == (0, 2)


def test_each_collector_has_its_own_slots_and_a_plan_without_a_job_is_looked_at_again(
        monkeypatch):
    """A stream probe waiting (for a decoder) holds an rtsp slot, never the snmp one; and a
    plan with nothing to poll yet (no stream URI known) is looked at again within seconds,
    not a whole interval later."""
    from prometheus_client import CollectorRegistry

    from agent import scheduler as scheduler_module
    from agent.exporter import AgentMetrics
    from agent.plans import Plan
    from agent.scheduler import PollScheduler
    from agent.state import State
    from collectors.reading import PollResult

    monkeypatch.setattr(scheduler_module, "JOB_RETRY", 0.05)
    polled: list[str] = []

    class Waiting:
        def __init__(self) -> None:
            self.release = asyncio.Event()

        async def poll(self, job: str) -> PollResult:
            await self.release.wait()
            polled.append(job)
            return PollResult(job, time.time(), 0.0, True, collector="rtsp")

    class Quick:
        async def poll(self, job: str) -> PollResult:
            polled.append(job)
            return PollResult(job, time.time(), 0.0, True, collector="snmp")

    async def run() -> float:
        scheduler = PollScheduler(State(), AgentMetrics(CollectorRegistry()))
        scheduler.limit = 1
        waiting = Waiting()
        scheduler.collectors = {"rtsp": waiting, "snmp": Quick()}
        answers = iter([None, None, None])
        scheduler.plans = {
            "cam/rtsp": Plan("cam", "rtsp", 60.0, 1, lambda: "cam"),
            "sw/snmp": Plan("sw", "snmp", 60.0, 2, lambda: next(answers, "sw"))}
        scheduler.starts = {key: time.time() for key in scheduler.plans}
        probe = asyncio.create_task(scheduler._run("cam/rtsp"))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await asyncio.wait_for(scheduler._run("sw/snmp"), 5)
        took = time.monotonic() - started
        assert polled == ["sw"]             # polled while the probe holds its own slot
        waiting.release.set()
        await probe
        assert polled == ["sw", "cam"]
        return took

    took = asyncio.run(run())
    assert 0.1 <= took < 2.0                # three looks at 0.05 s, not a 60 s interval


@pytest.mark.faults
def test_an_overloaded_scheduler_counts_skipped_polls_and_logs_one_line_a_minute(caplog):
    """A device slower than its interval: APScheduler skips its runs (the previous poll still
    runs). Each skip is counted in vigil_polls_skipped_total; the log gets one summary line,
    not APScheduler's warning per skip (a soak with 5,000 devices on one core wrote 8,700
    such lines in 3 minutes)."""
    import logging

    from prometheus_client import CollectorRegistry

    from agent.exporter import AgentMetrics
    from agent.plans import Plan
    from agent.scheduler import PollScheduler
    from agent.state import State
    from collectors.reading import PollResult

    class Slow:
        async def poll(self, job: str) -> PollResult:
            await asyncio.sleep(1.5)
            return PollResult(job, time.time(), 1.5, True, collector="snmp")

    registry = CollectorRegistry()

    async def run() -> None:
        scheduler = PollScheduler(State(), AgentMetrics(registry))
        scheduler.collectors = {"snmp": Slow()}
        scheduler.schedule(Plan("slow", "snmp", 0.25, 1, lambda: "slow"), time.time())
        scheduler.start()
        try:
            await asyncio.sleep(3.2)
        finally:
            scheduler.shutdown()

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    skipped = registry.get_sample_value("vigil_polls_skipped_total")
    assert skipped >= 5
    assert registry.get_sample_value("vigil_polls_total",
                                     {"kind": "unknown", "collector": "snmp"}) >= 1
    lines = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not any("maximum number of running instances" in line for line in lines), lines
    summaries = [line for line in lines if "poll(s) skipped" in line]
    assert len(summaries) == 1, lines
    assert summaries[0].startswith("1 poll(s) skipped")
