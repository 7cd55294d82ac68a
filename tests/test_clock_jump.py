"""Wall-clock jumps (issue 9): an agent whose clock is stepped back an hour and forward again
keeps polling, grading and ticketing. The running agent's clock is moved with libfaketime
(Debian package `faketime`), the monotonic clock left alone, as an NTP step would.

Without agent/clock.py, APScheduler sleeps through a step back: polls stop for the step's
length, and do not start again when the clock is put right (it sleeps on the monotonic clock
towards a wall-clock time an hour away)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agent.clock import JUMP, ClockWatch
from tests import peers

LIBFAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")


class FakeClocks:
    def __init__(self) -> None:
        self.wall, self.mono = 1_800_000_000.0, 1000.0

    def step(self, seconds: float, jump: float = 0.0) -> None:
        self.mono += seconds
        self.wall += seconds + jump


def test_the_watch_tells_a_jump_once_and_ignores_small_drift() -> None:
    from prometheus_client import CollectorRegistry, Counter

    clocks = FakeClocks()
    told: list[float] = []
    counter = Counter("jumps", "", registry=CollectorRegistry())
    watch = ClockWatch([told.append], counter, lambda: clocks.wall, lambda: clocks.mono)
    clocks.step(2.0, jump=0.5)                    # a slewed half second: not a jump
    assert watch.check() is None
    clocks.step(2.0, jump=-3600.0)                # NTP steps back an hour
    assert watch.check() == pytest.approx(-3600.0)
    clocks.step(2.0)
    assert watch.check() is None                  # told once
    clocks.step(2.0, jump=JUMP + 1)
    assert watch.check() == pytest.approx(JUMP + 1)
    assert told == [pytest.approx(-3600.0), pytest.approx(JUMP + 1)]
    assert counter._value.get() == 2


@pytest.mark.faults
def test_an_agent_keeps_polling_and_grading_when_its_clock_is_stepped(tmp_path: Path) -> None:
    """A UPS; the agent's wall clock stepped back an hour: it goes on polling (within a few
    intervals), the UPS going on battery (at its real time) fires and opens a ticket after
    its `for:`; the clock stepped forward again: polls go on, no other fault, no traceback."""
    from tests.test_daemon import Daemon
    from tests.test_fault_injection import _agent, _tickets
    from tests.test_rules_daemon import _ups_on_battery_at

    if not LIBFAKETIME.exists():
        peers.missing(f"{LIBFAKETIME} is missing (Debian package faketime)")
    offset = tmp_path / "faketime"
    offset.write_text("+0\n")
    env = {"LD_PRELOAD": str(LIBFAKETIME), "FAKETIME_TIMESTAMP_FILE": str(offset),
           "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"}
    data = tmp_path / "sim"
    data.mkdir()
    on_battery = time.time() + 10                       # the UPS's own (real) time
    (data / "ups-1.snmprec").write_text(
        _ups_on_battery_at(peers.recordings() / "deltaups.snmprec", on_battery),
        encoding="latin-1")
    with peers.snmpsim(data, tmp_path) as sim_port:
        config = _agent(tmp_path, sim_port, "sqlite+aiosqlite:///tickets.db")
        daemon = Daemon(config, env=env)
        try:
            peers.wait_http(daemon.url + "/-/ready", timeout=60)
            daemon.wait_for(lambda: (daemon.sample("vigil_polls_total") or 0) >= 2, 20,
                            "the first polls")
            offset.write_text("-3600\n")                # stepped back an hour
            daemon.wait_for(lambda: daemon.sample("vigil_clock_jumps_total") == 1, 10,
                            "the step back seen")
            polls = daemon.sample("vigil_polls_total")
            daemon.wait_for(lambda: daemon.sample("vigil_polls_total") >= polls + 2, 10,
                            "polls after the step back (2 s interval)")
            tickets = daemon.wait_for(lambda: _tickets(daemon, config), 45,
                                      "the UPS on battery ticketed, an hour back")
            assert [t["fault_key"] for t in tickets] == ["UpsOnBattery:ups-1"]
            assert time.time() >= on_battery
            offset.write_text("+0\n")                   # and put right
            daemon.wait_for(lambda: daemon.sample("vigil_clock_jumps_total") == 2, 10,
                            "the step forward seen")
            polls = daemon.sample("vigil_polls_total")
            daemon.wait_for(lambda: daemon.sample("vigil_polls_total") >= polls + 2, 10,
                            "polls after the step forward")
            time.sleep(3)
            assert [t["fault_key"] for t in _tickets(daemon, config)] == ["UpsOnBattery:ups-1"]
            log = daemon.log.read_text()
            assert "Traceback" not in log, log[-3000:]
            assert log.count("the wall clock jumped") == 2
        finally:
            daemon.stop()
