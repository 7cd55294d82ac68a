"""bench/run --suite monthly-report: the owner's monthly report of all sites, on SQLite and
PostgreSQL. Figures: docs/reports.md.

The store is filled by bulk INSERTs (like bench/statistics.py, whose filler it reuses):
`--tickets` tickets on `--devices` devices of 40 sites spread over the 12 months up to the
measured month (October 2026), one in a hundred of the month's still open; a month of daily
availability summaries for every device (a row per device and day, every day rolled up); two
earthing points per site measured twice a year; a UPS discharge test per UPS per quarter; the
monthly and quarterly inspections of every site, signed or open.

Each measurement runs in a fresh process, which reports per step the wall and CPU seconds and
the process's peak resident set (VmHWM) at the end:

* baseline: `agent.statistics.compute` of the same month (the part of the report that was
  there before it), measured in the same process first;
* load: `load_monthly_report` (every figure of the report from the store);
* html, pdf, xlsx: rendering the loaded report (the PDF: WeasyPrint on the HTML).

The target (issue 7): the monthly PDF of all sites in under 30 s and 1 GiB.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from bench.statistics import MONTH, fill, inventory
from bench.ticket_report import _pages

ROOT = Path(__file__).resolve().parent.parent
TZ = ZoneInfo("Asia/Shanghai")
MONTH_START = datetime(2026, 10, 1, tzinfo=TZ)
NOW = datetime(2026, 11, 2, 9, 0, tzinfo=TZ)


def _kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def full_inventory(devices: int) -> Any:
    from agent.earthing import EarthingPoint
    from agent.inventory import Inventory

    base = inventory(devices)
    points = {}
    for site in base.sites:
        for kind in ("machine_room", "pole"):
            p = EarthingPoint(id=f"ep-{site}-{kind}", site=site, kind=kind)
            points[p.id] = p
    return Inventory(sites=base.sites, devices=base.devices, placed={}, earthing_points=points)


async def fill_rest(url: str, devices: int) -> None:
    """What the report reads besides the tickets (see the module's docstring)."""
    from sqlalchemy import insert, update

    from agent.grounding import GroundingMeasurement
    from agent.history_models import AvailabilityDay, RolledDay
    from agent.inspection_models import Inspection
    from agent.tickets.models import Ticket
    from agent.tickets.store import TicketStore
    from agent.ups_test_models import UpsTest

    rnd = random.Random(11)
    inv = full_inventory(devices)
    store = TicketStore(url, "bench", time.time, migrate=False)
    stamp = NOW.astimezone(UTC)
    signed = datetime(2026, 10, 22, 10, tzinfo=TZ).astimezone(UTC)
    days = [(MONTH_START + timedelta(days=d)).date() for d in range(31)]
    try:
        async with store.engine.begin() as conn:
            rows = []
            for device in inv.devices.values():
                for day in days:
                    down = 3600.0 * rnd.choice((0, 0, 0, 0, 0, 0, 1, 2, 24))
                    rows.append({"device": device.id, "collector": "device", "day": day,
                                 "site": device.site, "kind": device.kind,
                                 "up_seconds": 86400.0 - down, "down_seconds": down,
                                 "unknown_seconds": 0.0})
                if len(rows) >= 20000:
                    await conn.execute(insert(AvailabilityDay), rows)
                    rows = []
            if rows:
                await conn.execute(insert(AvailabilityDay), rows)
            await conn.execute(insert(RolledDay), [{"agent": "bench", "day": d,
                                                    "rolled_at": stamp} for d in days])
            measured = []
            for point in inv.earthing_points.values():
                for month in (4, 10):
                    measured.append({
                        "point": point.id, "site": point.site,
                        "ohm": round(rnd.uniform(0.5, 1.3) * point.limit, 2),
                        "measured_at": datetime(2026, month, 5 + rnd.randrange(20), 10,
                                                tzinfo=TZ).astimezone(UTC),
                        "instrument": "UT521", "technician": "bench", "weather": "晴",
                        "soil": "", "notes": "", "source": "api", "recorded_by": "bench",
                        "recorded_at": stamp})
            await conn.execute(insert(GroundingMeasurement), measured)
            tests = []
            for device in (d for d in inv.devices.values() if d.kind == "ups"):
                for month in (1, 4, 7, 10):
                    start = datetime(2026, month, 10 + rnd.randrange(15), 9,
                                     tzinfo=TZ).astimezone(UTC)
                    seconds = 1800.0 - 60 * month + rnd.uniform(-60, 60)
                    tests.append({"agent_id": "bench", "site": device.site,
                                  "device": device.id, "method": "manual", "kind": "deep",
                                  "state": "done", "result": rnd.choice(
                                      ("pass",) * 9 + ("error",)),
                                  "detail": "", "started_at": start,
                                  "ended_at": start + timedelta(seconds=seconds),
                                  "discharge_seconds": seconds, "actor": "bench",
                                  "notes": "", "samples": []})
            await conn.execute(insert(UpsTest), tests)
            inspections = []
            for site in inv.sites:
                for kind, period, start, end, due, state in (
                        ("monthly", "2026-10", MONTH_START, datetime(2026, 11, 1, tzinfo=TZ),
                         datetime(2026, 10, 26, tzinfo=TZ), rnd.choice(("signed", "open"))),
                        ("quarterly", "2026-Q4", MONTH_START, datetime(2027, 1, 1, tzinfo=TZ),
                         datetime(2027, 1, 1, tzinfo=TZ), "open")):
                    inspections.append({
                        "site": site, "kind": kind, "period": period,
                        "period_start": start.astimezone(UTC),
                        "period_end": end.astimezone(UTC), "due_at": due.astimezone(UTC),
                        "state": state, "agent_id": "bench", "sheet": {},
                        "prefilled_at": stamp, "created_at": stamp, "updated_at": stamp,
                        "signed_at": signed if state == "signed" else None,
                        "submitted_at": signed if state == "signed" else None})
            await conn.execute(insert(Inspection), inspections)
            # one in a hundred of the month's tickets still open at its end
            await conn.execute(update(Ticket).where(
                Ticket.opened_at >= MONTH_START.astimezone(UTC), Ticket.id % 100 == 0)
                .values(state="repairing", resolved_at=None, confirmed_at=None,
                        closed_at=None, cause_category=None))
    finally:
        await store.dispose()


def measure_main(argv: list[str]) -> int:
    """Child: baseline, load, render; print JSON with seconds, CPU seconds and memory."""
    url, devices, formats = argv[0], int(argv[1]), argv[2].split(",")
    from agent.escalation import builtin_policy
    from agent.reports.monthly import load_monthly_report
    from agent.reports.render import ReportRenderer
    from agent.statistics import compute
    from agent.tickets.store import TicketStore

    inv, policy = full_inventory(devices), builtin_policy()
    out: dict[str, Any] = {"rss_start_mib": _kib("VmRSS") / 1024}

    def step(name: str, started: float, cpu: float) -> None:
        out[name] = {"s": time.perf_counter() - started, "cpu_s": time.process_time() - cpu}

    async def load() -> Any:
        store = TicketStore(url, "bench", lambda: NOW.timestamp(), migrate=False)
        try:
            t0, c0 = time.perf_counter(), time.process_time()
            await compute(store, policy, inv, month=MONTH, timezone="Asia/Shanghai")
            step("baseline", t0, c0)
            t0, c0 = time.perf_counter(), time.process_time()
            report = await load_monthly_report(store, policy, inv, MONTH)
            step("load", t0, c0)
            return report
        finally:
            await store.dispose()

    report = asyncio.run(load())
    out["opened"], out["open_at_end"] = report.stats.opened, report.open_tickets.total
    out["sites"], out["ups_tests"] = len(report.rates), len(report.ups_tests)
    renderer = ReportRenderer()
    for fmt in formats:
        t0, c0 = time.perf_counter(), time.process_time()
        body = renderer.render(report, fmt).body
        step(fmt, t0, c0)
        out[fmt]["bytes"] = len(body)
        if fmt == "pdf":
            out[fmt]["pages"] = _pages(body)
    out["peak_rss_mib"] = _kib("VmHWM") / 1024
    print(json.dumps(out))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --suite monthly-report",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=50_000)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--backends", default="sqlite,postgresql")
    parser.add_argument("--formats", default="html,pdf,xlsx")
    parser.add_argument("--json", type=Path, help="Also write the results here.")
    args = parser.parse_args(argv)
    results = []
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-monthly-"))
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
            url = (f"sqlite+aiosqlite:///{work / 'monthly.db'}" if backend == "sqlite"
                   else pg.create("monthly"))
            t0 = time.perf_counter()
            asyncio.run(fill(url, args.tickets, args.devices, "spread"))
            asyncio.run(fill_rest(url, args.devices))
            filled = time.perf_counter() - t0
            run = subprocess.run(
                [sys.executable, "-m", "bench.monthly_report", "--measure", url,
                 str(args.devices), args.formats],
                cwd=ROOT, capture_output=True, text=True, timeout=900)
            if run.returncode:
                print(run.stderr, file=sys.stderr)
                return 1
            r = {"backend": backend, "tickets": args.tickets, "devices": args.devices,
                 "fill_s": filled, **json.loads(run.stdout.strip().splitlines()[-1])}
            results.append(r)
            base = r["baseline"]
            print(f"{backend}: {args.tickets} tickets, {args.devices} devices, {r['sites']} "
                  f"sites; month {MONTH}: {r['opened']} opened, {r['open_at_end']} open at "
                  f"its end, {r['ups_tests']} UPS tests (filled in {filled:.0f} s)")
            print(f"  {'step':9} {'wall s':>7} {'CPU s':>7} {'÷ baseline':>10} {'size':>11}")
            for name in ("baseline", "load", *args.formats.split(",")):
                x = r[name]
                size = f"{x['bytes']:,} B" if "bytes" in x else ""
                pages = f" {x['pages']} p." if x.get("pages") else ""
                print(f"  {name:9} {x['s']:7.2f} {x['cpu_s']:7.2f} "
                      f"{x['s'] / base['s']:10.1f} {size:>11}{pages}")
            if "pdf" in r:
                total = r["load"]["s"] + r["pdf"]["s"]
                print(f"  monthly PDF of all sites (load + pdf): {total:.2f} s, "
                      f"{r['load']['cpu_s'] + r['pdf']['cpu_s']:.2f} CPU s; peak RSS "
                      f"{r['peak_rss_mib']:.0f} MiB (target < 30 s, < 1024 MiB)", flush=True)
    finally:
        if pg is not None:
            pg.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--measure":
        sys.exit(measure_main(sys.argv[2:]))
    sys.exit(main())
