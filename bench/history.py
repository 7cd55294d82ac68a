"""Readings history: the cost of one bucket for N devices x M metrics, on SQLite and PostgreSQL.
Run: `python -m bench.history [--devices 1000,10000] [--metrics 20] [--buckets 3]`.
Figures: docs/history.md.

For each device count: the Recorder is fed one 5-minute bucket of polls (every device polled
every minute, M gauge readings each, two collectors answering: snmp and reach) and the
bucket is taken (CPU of observe and take); then `--buckets` consecutive buckets are written
to a fresh database, each one transaction of bulk upserts (HistoryStore.write, the daemon's
code), and the last one is written again (the conflict path of a retry); then the day is
rolled up. Reported: rows per bucket, write seconds and rows/s, the rewrite, the roll-up,
and the bytes per row the database grew by. PostgreSQL: a throwaway cluster (fsync on) like
bench/tickets.py's.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from agent.history import Recorder, metric_filter
from agent.history_store import HistoryStore
from bench.tickets import Postgres, Unavailable
from collectors.reading import PollResult, Reading
from collectors.vocabulary import MetricSpec, load_vocabulary

ZONE = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 10, 1, 0, 0, tzinfo=ZONE).timestamp()


def gauges(n: int) -> list[str]:
    names = [name for name, e in load_vocabulary().items() if e.type == "gauge"]
    return names[:n]


def fill(recorder: Recorder, devices: int, metrics: list[str], bucket: int) -> float:
    """Feed one bucket of polls; CPU seconds of observe."""
    start = T0 + bucket * 300
    cpu = time.process_time()
    for minute in range(5):
        t = start + minute * 60
        for d in range(devices):
            device = f"dev-{d:05d}"
            readings = [Reading(device, m, {"index": "1"}, float(d % 97 + minute), t)
                        for m in metrics]
            recorder.observe(PollResult(device, t, 0.01, True, readings=readings,
                                        collector="snmp"), "site", "ups", True, 180)
            recorder.observe(PollResult(device, t, 0.01, d % 10 != 0, collector="reach"),
                             "site", "ups", False, 180)
    return time.process_time() - cpu


async def case(url: str, devices: int, metrics: list[str], buckets: int,
               size: callable) -> dict:
    catalogue = {n: MetricSpec(n, e.type, e.help) for n, e in load_vocabulary().items()}
    recorder = Recorder(300, metric_filter(["*"], catalogue), T0)
    store = HistoryStore(url, "bench")
    await store.start()
    out: dict = {"devices": devices, "metrics": len(metrics), "writes": []}
    before = size()
    batch = None
    for b in range(buckets):
        out["observe_cpu_s"] = fill(recorder, devices, metrics, b)
        cpu = time.process_time()
        batch = recorder.take(T0 + (b + 1) * 300)
        out["take_cpu_s"] = time.process_time() - cpu
        started = time.perf_counter()
        await store.write(batch)
        out["writes"].append(time.perf_counter() - started)
    rows = len(batch)
    out["rows_per_bucket"] = rows
    out["write_s"] = sorted(out["writes"])[len(out["writes"]) // 2]
    out["rows_per_s"] = rows / out["write_s"]
    started = time.perf_counter()
    await store.write(batch)
    out["rewrite_s"] = time.perf_counter() - started
    started = time.perf_counter()
    await store.rollup(datetime.fromtimestamp(T0, ZONE).date(), ZONE,
                       [f"dev-{d:05d}" for d in range(devices)], datetime.now(UTC))
    out["rollup_s_for_buckets"] = time.perf_counter() - started
    await store.dispose()
    out["bytes_per_row"] = (size() - before) / (rows * buckets) if size() else None
    return out


def sqlite_size(path: Path) -> callable:
    def size() -> int:
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return size


def pg_size(pg: Postgres, name: str) -> callable:
    def size() -> int:
        import psycopg

        with psycopg.connect(pg.dsn(name), autocommit=True) as conn:
            conn.execute("CHECKPOINT")
            return conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
    return size


def say(backend: str, r: dict) -> None:
    print(f"{backend:10} {r['devices']:>6} devices x {r['metrics']} metrics: "
          f"{r['rows_per_bucket']:>7} rows/bucket, write {r['write_s']:.2f} s "
          f"({r['rows_per_s']:,.0f} rows/s), rewrite {r['rewrite_s']:.2f} s, roll-up of "
          f"the buckets {r['rollup_s_for_buckets']:.2f} s, observe CPU "
          f"{r['observe_cpu_s']:.2f} s, take {r['take_cpu_s']:.2f} s, "
          f"{r['bytes_per_row'] or 0:.0f} B/row", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="1000,10000")
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--buckets", type=int, default=3)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    metrics = gauges(args.metrics)
    results = []
    pg = None
    try:
        for backend in args.backends.split(","):
            for devices in (int(n) for n in args.devices.split(",")):
                if backend == "sqlite":
                    work = Path(tempfile.mkdtemp(prefix="vigil-bench-history-"))
                    path = work / "history.db"
                    url, size = f"sqlite+aiosqlite:///{path}", sqlite_size(path)
                else:
                    try:
                        pg = pg or Postgres(fsync=True)
                    except Unavailable as exc:
                        print(f"postgresql: skipped ({exc})")
                        break
                    name = f"history_{devices}"
                    url, size = pg.create(name), pg_size(pg, name)
                r = asyncio.run(case(url, devices, metrics, args.buckets, size))
                r["backend"] = backend
                say(backend, r)
                results.append(r)
    finally:
        if pg is not None:
            pg.stop()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"(cpu count {os.cpu_count()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
