"""Returning the allocator's free memory to the system (agent/memory.py): what the soak run's
agent needed so that its RSS follows what it holds, not the peaks of its threads."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap

import pytest

from agent.memory import MALLOC_TRIM, Trimmer

FRAGMENT = textwrap.dedent("""
    import sys, threading
    from agent.memory import resident_bytes, trim

    kept = []
    def work():
        # 300 MB in 1-KB blocks (glibc malloc, this thread's arena), every 50th kept:
        # the arena cannot shrink from its top, its free pages stay resident
        blocks = [bytes(1000) + bytes([i % 251]) for i in range(300_000)]
        kept.extend(blocks[::50])
    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    before = resident_bytes()
    released, seconds = trim()
    print(before, released, resident_bytes(), seconds, len(kept))
""")


@pytest.mark.skipif(MALLOC_TRIM is None, reason="not glibc: no malloc_trim")
def test_trim_gives_back_the_free_pages_a_thread_left_behind():
    out = subprocess.run([sys.executable, "-c", FRAGMENT], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    before, released, after, seconds = int(out[0]), int(out[1]), int(out[2]), float(out[3])
    assert released > 150 * 2**20, out          # of ~300 MB freed, most given back
    assert after < before - 150 * 2**20
    assert seconds < 1.0


@pytest.mark.skipif(MALLOC_TRIM is None, reason="not glibc: no malloc_trim")
async def test_trimmer_runs_on_its_interval_and_follows_a_reload():
    trims: list[int] = []
    trimmer = Trimmer(0.05, lambda released, _s: trims.append(released))
    trimmer.start()
    await asyncio.sleep(0.3)
    assert len(trims) >= 3 and all(r >= 0 for r in trims)
    trimmer.adopt(0)                      # memory_trim_interval: 0 -> no more trims
    count = len(trims)
    await asyncio.sleep(0.2)
    assert len(trims) == count
    trimmer.adopt(0.05)                   # and back
    await asyncio.sleep(0.2)
    assert len(trims) > count
    await trimmer.close()
    count = len(trims)
    await asyncio.sleep(0.15)
    assert len(trims) == count


async def test_an_interval_of_zero_never_trims():
    trims: list[int] = []
    trimmer = Trimmer(0, lambda released, _s: trims.append(released))
    trimmer.start()
    await asyncio.sleep(0.1)
    await trimmer.close()
    assert trims == []
