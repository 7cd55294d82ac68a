"""bench/run --suite statistics: the monthly fault statistics over 50,000 tickets.

A store (SQLite file, and a throwaway PostgreSQL 15 cluster when initdb is installed) is
filled by bulk INSERTs, not through the lifecycle (350,000 transactions would take longer than
the thing measured): `--tickets` tickets on `--devices` devices of 40 sites, closed with a
cause, each with its timeline (opened, acknowledged, diagnosed, repair started, resolved,
confirmed, closed; one in ten escalated once). Two layouts are measured:

* `spread`: the tickets spread evenly over the 12 months before the measured month
  included (the realistic store: a month holds about 1/12 of them);
* `one-month`: all of them opened and closed in the measured month (the worst case).

`agent.statistics.compute` then runs in a fresh process per measurement, which reports the
wall time of the call (`--repeat` calls, the first cold) and its peak memory (VmHWM, the
process's peak resident set, minus the resident set before the call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
MONTH = "2026-10"
CAUSES_WEIGHTED = (["connector_cable"] * 4 + ["front_end_hardware"] * 3 + ["network"] * 3
                   + ["power_ups"] * 2 + ["operator_error", "lightning_surge",
                                          "software_config", "environment", "unknown"])


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def inventory(devices: int):  # -> agent.inventory.Inventory
    from agent.inventory import Device, Inventory, Site

    sites = {f"s{i:02d}": Site(id=f"s{i:02d}") for i in range(40)}
    kinds = ["ptz_camera"] * 6 + ["fixed_camera"] * 2 + ["nvr", "switch", "ups", "spd_monitor"]
    devs = {}
    for i in range(devices):
        d = Device.model_construct(id=f"d{i:05d}", kind=kinds[i % len(kinds)],
                                   site=f"s{i % 40:02d}", address="127.0.0.1",
                                   labels={"vendor": f"v{i % 3}", "batch": f"b{i % 17}"})
        devs[d.id] = d
    return Inventory(sites=sites, devices=devs, placed={})


async def fill(url: str, tickets: int, devices: int, layout: str) -> None:
    from sqlalchemy import insert

    from agent.tickets.models import Ticket, TicketEvent
    from agent.tickets.store import TicketStore

    rnd = random.Random(7)
    month_start = datetime(2026, 10, 1, tzinfo=TZ).astimezone(UTC)
    span = (datetime(2026, 10, 28, tzinfo=TZ).astimezone(UTC) - month_start) \
        if layout == "one-month" else timedelta(days=365)
    first = month_start if layout == "one-month" else month_start - timedelta(days=334)
    store = TicketStore(url, "bench", lambda: time.time())
    await store.start()
    rows, events = [], []
    for i in range(tickets):
        opened = first + timedelta(seconds=rnd.random() * span.total_seconds())
        level = rnd.choice((1, 2, 3, 3, 3, 4))
        ack = opened + timedelta(minutes=rnd.expovariate(1 / 40))
        resolved = ack + timedelta(hours=rnd.expovariate(1 / 6))
        confirmed, closed = resolved + timedelta(hours=1), resolved + timedelta(hours=2)
        dev = f"d{rnd.randrange(devices):05d}"
        cause = rnd.choice(CAUSES_WEIGHTED)
        tid = i + 1
        rows.append({"id": tid, "fault_key": f"R{i % 7}:{dev}:{i}", "agent_id": "bench",
                     "site": f"s{int(dev[1:]) % 40:02d}", "device": dev, "rule": f"R{i % 7}",
                     "level": level, "original_level": level, "state": "closed",
                     "title_zh": "摄像机离线", "title_en": "camera offline", "opened_at": opened,
                     "acknowledged_at": ack, "diagnosed_at": ack, "repair_started_at": ack,
                     "resolved_at": resolved, "confirmed_at": confirmed, "closed_at": closed,
                     "cause_category": cause, "reopen_count": 0, "updated_at": closed})
        for kind, at, data in (("opened", opened, {"level": level}),
                               ("acknowledged", ack, {}), ("diagnosed", ack, {}),
                               ("repair_started", ack, {}),
                               ("resolved", resolved, {"cause_category": cause}),
                               ("confirmed", confirmed, {}), ("closed", closed, {})):
            events.append({"ticket_id": tid, "at": at, "actor": "bench", "kind": kind,
                           "data": data})
        if i % 10 == 0:
            events.append({"ticket_id": tid, "at": ack, "actor": "agent:bench",
                           "kind": "escalated",
                           "data": {"seq": 1, "breach": rnd.choice(("response", "repair")),
                                    "from_level": level, "to_level": max(1, level - 1)}})
    async with store.engine.begin() as conn:
        for start in range(0, len(rows), 5000):
            await conn.execute(insert(Ticket), rows[start:start + 5000])
        for start in range(0, len(events), 20000):
            await conn.execute(insert(TicketEvent), events[start:start + 20000])
    await store.dispose()


def measure_main(argv: list[str]) -> int:
    """Child: compute the statistics `repeat` times; print JSON with times and memory."""
    url, devices, repeat = argv[0], int(argv[1]), int(argv[2])
    from agent.escalation import builtin_policy
    from agent.statistics import compute
    from agent.tickets.store import TicketStore

    inv = inventory(devices)
    policy = builtin_policy()

    async def run() -> dict:
        store = TicketStore(url, "bench", time.time, migrate=False)
        times = []
        base = _rss_kb("VmRSS")
        try:
            for _ in range(repeat):
                t0 = time.perf_counter()
                s = await compute(store, policy, inv, month=MONTH)
                times.append(time.perf_counter() - t0)
        finally:
            await store.dispose()
        return {"seconds": times, "opened": s.opened, "closed": s.closed,
                "escalations": s.breaches.escalations, "rss_before_mib": base / 1024,
                "peak_rss_mib": _rss_kb("VmHWM") / 1024,
                "peak_over_before_mib": (_rss_kb("VmHWM") - base) / 1024}

    print(json.dumps(asyncio.run(run())))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --suite statistics",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--layouts", default="spread,one-month")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    results = []
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-stats-"))
    pg = None
    try:
        for backend in args.backends.split(","):
            if backend == "postgresql":
                from bench.tickets import Postgres, Unavailable
                try:
                    pg = Postgres(fsync=False)
                except Unavailable as exc:
                    print(f"postgresql skipped: {exc}")
                    continue
            for layout in args.layouts.split(","):
                name = f"stats_{layout.replace('-', '_')}"
                url = (f"sqlite+aiosqlite:///{work / name}.db" if backend == "sqlite"
                       else pg.create(name))
                t0 = time.perf_counter()
                asyncio.run(fill(url, args.tickets, args.devices, layout))
                filled = time.perf_counter() - t0
                out = subprocess.run(
                    [sys.executable, "-m", "bench.statistics", "--measure", url,
                     str(args.devices), str(args.repeat)],
                    cwd=ROOT, check=True, capture_output=True, text=True, timeout=600)
                r = {"backend": backend, "layout": layout, "tickets": args.tickets,
                     "fill_seconds": filled, **json.loads(out.stdout.strip().splitlines()[-1])}
                results.append(r)
                print(f"{backend:10} {layout:9} {args.tickets} tickets: month {MONTH} has "
                      f"{r['opened']} opened, {r['closed']} closed; compute "
                      + ", ".join(f"{t:.2f}s" for t in r["seconds"])
                      + f"; peak RSS {r['peak_rss_mib']:.0f} MiB "
                      f"(+{r['peak_over_before_mib']:.0f} MiB during compute)", flush=True)
    finally:
        if pg is not None:
            pg.stop()
        import shutil
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        sys.exit(measure_main(sys.argv[2:]))
    sys.exit(main())
