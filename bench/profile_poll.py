"""Profile Vigil's poll path: `python -m bench.profile_poll --targets FILE --engine pysnmp`.

A helper for looking into the benchmark's figures (not run by bench/run): polls the devices
in FILE (a JSON list of [address, port], e.g. a kept bench work dir's targets.json, with its
responders running) through SnmpCollector.poll like the benchmark does, and reports CPU per
poll split into where it goes: cProfile of the event-loop thread (sorted by own time), or,
with --split, the same polls timed stage by stage (fetch vs translate).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import pstats
import time
from pathlib import Path

from bench.scheduled import cpu_seconds
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import SnmpAuth, Target, make_engine
from collectors.snmp.fetch import Fetcher, FetchLimits
from collectors.snmp.profile import load_profiles
from collectors.snmp.translate import Translator


async def polls(collector: SnmpCollector, jobs: list[SnmpJob], concurrency: int) -> list:
    semaphore = asyncio.Semaphore(concurrency)

    async def one(job: SnmpJob):
        async with semaphore:
            return await collector.poll(job)

    return await asyncio.gather(*(one(j) for j in jobs))


async def split(engine, profiles, jobs: list[SnmpJob]) -> None:
    """Fetch only, then translate only the fetched data, one device at a time."""
    plan = profiles.plan(jobs[0].profile)
    fetched = []
    c0 = cpu_seconds()
    for job in jobs:
        session = await engine.open(job.target)
        fetcher = Fetcher(session, job.limits)
        await fetcher.scalars(plan.scalars)
        await fetcher.columns(plan.columns)
        await session.close()
        fetched.append(fetcher.out)
    c1 = cpu_seconds()
    for out in fetched:
        Translator(plan, out, "dev", time.time()).run()
    c2 = cpu_seconds()
    n = len(jobs)
    varbinds = sum(o.varbinds for o in fetched) / n
    print(f"fetch {1000 * (c1 - c0) / n:.2f} ms/poll ({varbinds:.0f} varbinds, "
          f"{1e6 * (c1 - c0) / n / varbinds:.1f} µs/varbind); "
          f"translate {1000 * (c2 - c1) / n:.2f} ms/poll")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--engine", default="pysnmp")
    parser.add_argument("--profile", default="zyxel-switch")
    parser.add_argument("-n", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--split", action="store_true")
    parser.add_argument("--max-repetitions", type=int, default=25)
    parser.add_argument("--max-varbinds", type=int, default=60)
    parser.add_argument("--top", type=int, default=30, help="0: no profiler, CPU only")
    args = parser.parse_args()
    targets = json.loads(args.targets.read_text())[:args.n]
    profiles = load_profiles()
    engine = make_engine(args.engine)
    auth = SnmpAuth("2c", community="public")
    limits = FetchLimits(args.max_repetitions, 32, args.max_varbinds, True)
    jobs = [SnmpJob(f"dev{i}", Target(a, p, auth, 2.0, 1), args.profile, limits, 54.0)
            for i, (a, p) in enumerate(targets)]
    collector = SnmpCollector(engine, profiles)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(polls(collector, jobs[:50], args.concurrency))  # warm-up
    if args.split:
        loop.run_until_complete(split(engine, profiles, jobs))
        return
    c0 = cpu_seconds()
    profiler = cProfile.Profile()
    if args.top:
        profiler.enable()
    results = loop.run_until_complete(polls(collector, jobs, args.concurrency))
    profiler.disable()
    cpu = cpu_seconds() - c0
    ok = sum(r.up for r in results)
    print(f"{len(jobs)} polls ({ok} up), {1000 * cpu / len(jobs):.2f} ms CPU/poll"
          + (" under cProfile" if args.top else ""))
    if args.top:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.top)
    loop.run_until_complete(engine.close())


if __name__ == "__main__":
    main()
