"""Fault injection (issue 9): the network misbehaving in ways a branch sees over the years, on
real peers. Marked `faults`: `pytest -m faults` runs them alone.

- A device replaced under the same address by another model: the poll that sees the new
  sysObjectID says so, the next one detects the new profile and reads it; nothing of the old
  model is exported for it after that.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from collectors.reading import PollResult
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import SnmpAuth, Target, make_engine
from collectors.snmp.fetch import FetchLimits
from tests import peers

pytestmark = pytest.mark.faults


def test_a_device_replaced_by_another_model_is_detected_again(tmp_path: Path, profiles
                                                              ) -> None:
    data = tmp_path / "data"
    data.mkdir()
    recordings = peers.recordings()
    shutil.copy(recordings / "deltaups.snmprec", data / "dev.snmprec")
    port = peers.free_port()

    async def polls(count: int) -> list[PollResult]:
        engine = make_engine("pysnmp")
        collector = SnmpCollector(engine, profiles)
        job = SnmpJob("dev", Target("127.0.0.1", port, SnmpAuth("2c", community="dev"), 1.0,
                                    1), None, FetchLimits(25, 32, 60, True), 20.0)
        out = []
        try:
            for _ in range(count):
                out.append(await collector.poll(job))
                if len(out) == 1:             # the UPS is swapped for a switch, same address
                    await asyncio.to_thread(swap)
        finally:
            await engine.close()
        return out

    sims: list = []

    def serve() -> None:
        sims.append(peers.snmpsim(data, tmp_path, [f"127.0.0.1:{port}"]))
        sims[-1].__enter__()

    def swap() -> None:
        sims[-1].__exit__(None, None, None)
        shutil.copy(recordings / "jetstream.snmprec", data / "dev.snmprec")
        shutil.rmtree(tmp_path / "snmpsim-cache", ignore_errors=True)
        serve()

    serve()
    try:
        ups, changed, switch = asyncio.run(polls(3))
    finally:
        sims[-1].__exit__(None, None, None)
    metrics = [{r.metric for r in result.readings} for result in (ups, changed, switch)]
    assert ups.up and "ups_on_battery" in metrics[0]
    assert any("sysObjectID changed" in p for p in changed.problems), changed.problems
    assert switch.up and switch.profile != ups.profile
    assert "interface_oper_status" in metrics[2] and "ups_on_battery" not in metrics[2]
