"""The diagnosis and maintenance report of one ticket: render time and peak memory per
format (HTML, PDF, XLSX). Run: `bench/run --suite ticket-report` (about 30 s). Figures:
docs/reports.md.

One ticket lived through a long life in a SQLite store (injected clock): a scene record of
--readings readings, --escalations escalations each with its notification, --comments
comments, diagnosis, repair, the device's recovery, the owner's confirmation. Each format is
rendered in a fresh process (what the agent pays for its first report after a start,
including the lazy import of WeasyPrint or matplotlib), then --repeat more times in the same
process (a warm agent). Memory: the process's resident set before the first render (the
store and the report module loaded) and its peak (ru_maxrss) after all renders.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

T0 = 1_780_000_000.0
TZ = ZoneInfo("Asia/Shanghai")


@dataclass
class _Fault:
    readings: int
    key: str = "UpsOnBattery:ups-1"
    rule: str = "UpsOnBattery"
    site: str = "dh"
    device: str = "ups-1"
    subject: str = "ups-1"
    level: int = 4
    texts: dict[str, dict[str, str]] = field(default_factory=lambda: {
        "summary": {"zh": "UPS 电池供电", "en": "UPS on battery"}})
    fired_at: float = T0 - 30

    @property
    def evidence(self) -> dict[str, Any]:
        return {"at": T0 - 5, "inputs": {"on_battery": True, "input_voltage": 0.0},
                "collectors": {"snmp": {"up": 1, "reason": "", "detail": "", "at": T0 - 5}},
                "readings": [[f"vigil_ups_metric_{i % 40}", {"index": str(i)}, i * 0.5]
                             for i in range(self.readings)]}


async def build(db: Path, args: argparse.Namespace) -> int:
    from agent.tickets.store import TicketStore

    now = [T0]
    async with TicketStore(f"sqlite+aiosqlite:///{db}", "branch-dh", lambda: now[0]) as s:
        ticket, _ = await s.open_for_fault(_Fault(args.readings))
        for seq in range(1, args.escalations + 1):
            now[0] += 3600
            await s.escalate(ticket.id, s.actor, max(1, 4 - seq), {
                "seq": seq, "breach": "response", "tier": f"tier-{seq}", "limit": "1h",
                "at": "2026-05-29T06:26:40+08:00"})
            await s.record(ticket.id, "notified", {"kind": "escalated", "seq": seq,
                                                   "channels": ["wecom", "mail"]})
        await s.acknowledge(ticket.id, "zhang.wei", "已到场")
        for i in range(args.comments):
            await s.comment(ticket.id, "zhang.wei", f"现场检查记录 {i}：电池组电压正常，继续观察。")
        await s.diagnose(ticket.id, "zhang.wei", "市电输入断路器跳闸",
                         "复位断路器，更换浪涌保护模块")
        await s.start_repair(ticket.id, "zhang.wei")
        now[0] += 1800
        await s.fault_resolved(_Fault(0).key, now[0] - 60)
        await s.resolve(ticket.id, "zhang.wei", "power_ups", "复位断路器，更换浪涌保护模块",
                        ["浪涌保护模块 SPD-40"])
        now[0] += 86400
        await s.confirm(ticket.id, "li.owner", "验收合格")
        return ticket.id


def child(fmt: str, db: str, ticket_id: int, lang: str, repeat: int) -> None:
    from types import SimpleNamespace

    from agent.escalation import builtin_policy
    from agent.reports.render import ReportRenderer
    from agent.reports.ticket import load_ticket_report
    from agent.tickets.store import TicketStore

    async def load() -> Any:
        async with TicketStore(f"sqlite+aiosqlite:///{db}", "bench", lambda: T0 + 2e5,
                               migrate=False) as store:
            inventory = SimpleNamespace(sites={"dh": SimpleNamespace(name="东湖社区")},
                                        devices={"ups-1": SimpleNamespace(name="机房UPS",
                                                                          kind="ups")})
            return await load_ticket_report(store, ticket_id, policy=builtin_policy(),
                                            inventory=inventory, tz=TZ)

    started = time.perf_counter()
    report = asyncio.run(load())
    loaded = time.perf_counter() - started
    before = _rss_kib()
    renderer = ReportRenderer()
    started, cpu = time.perf_counter(), time.process_time()
    body = renderer.render(report, fmt, lang).body
    size, pages = len(body), _pages(body) if fmt == "pdf" else None
    cold, cold_cpu = time.perf_counter() - started, time.process_time() - cpu
    warm, warm_cpu = [], []
    for _ in range(repeat):
        started, cpu = time.perf_counter(), time.process_time()
        renderer.render(report, fmt, lang)
        warm.append(time.perf_counter() - started)
        warm_cpu.append(time.process_time() - cpu)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"format": fmt, "load_s": loaded, "cold_s": cold, "cold_cpu_s": cold_cpu,
                      "warm_s": statistics.median(warm) if warm else None,
                      "warm_cpu_s": statistics.median(warm_cpu) if warm else None,
                      "bytes": size, "pages": pages,
                      "rss_before_mib": before / 1024, "peak_mib": peak / 1024}))


def _pages(pdf: bytes) -> int | None:
    """Pages of a PDF (poppler's pdfinfo), None without it."""
    if shutil.which("pdfinfo") is None:
        return None
    with tempfile.NamedTemporaryFile(suffix=".pdf") as f:
        f.write(pdf)
        f.flush()
        info = subprocess.run(["pdfinfo", f.name], capture_output=True, text=True).stdout
    return next((int(line.split()[1]) for line in info.splitlines()
                 if line.startswith("Pages:")), None)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readings", type=int, default=400)
    parser.add_argument("--escalations", type=int, default=3)
    parser.add_argument("--comments", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--lang", choices=["zh", "en"], default="zh")
    parser.add_argument("--child", nargs=3, metavar=("FORMAT", "DB", "TICKET"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]), args.lang, args.repeat)
        return
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "tickets.db"
        ticket_id = asyncio.run(build(db, args))
        print(f"one ticket: {args.readings} readings in its scene record, {args.escalations} "
              f"escalations, {args.comments} comments; {args.repeat} warm renders\n")
        print(f"{'format':7} {'cold s':>7} {'cpu s':>6} {'warm s':>7} {'cpu s':>6} {'pages':>5} "
              f"{'bytes':>9} {'RSS before':>11} {'peak RSS':>9}")
        for fmt in ("html", "pdf", "xlsx"):
            out = subprocess.run(
                [sys.executable, "-m", "bench.ticket_report", "--child", fmt, str(db),
                 str(ticket_id), "--lang", args.lang, "--repeat", str(args.repeat)],
                capture_output=True, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            print(f"{fmt:7} {r['cold_s']:7.2f} {r['cold_cpu_s']:6.2f} {r['warm_s']:7.3f} "
                  f"{r['warm_cpu_s']:6.3f} {r['pages'] or '':>5} {r['bytes']:9,} "
                  f"{r['rss_before_mib']:8.0f} MiB {r['peak_mib']:5.0f} MiB")


if __name__ == "__main__":
    main()
