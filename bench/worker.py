"""One contender's client side, in its own process (so its peak RSS is its own).

Started by bench/main.py; reads one JSON command per line on stdin, answers one JSON line on
stdout:  {"op": "batch", "n": N}  polls the first N devices once each, with at most
`--concurrency` polls in flight, and reports wall time, CPU, outcomes;  {"op": "quit"}.

Modes:
  vigil     SnmpCollector.poll (the daemon's poll path) with --engine pysnmp|builtin|ezsnmp.
            CPU = getrusage(RUSAGE_SELF) over the batch: every thread of this process.
  bulkget   one net-snmp `snmpbulkget` process per device.
            CPU = getrusage(RUSAGE_CHILDREN) over the batch (includes process start-up).
  scrape    GET /snmp?target=..&module=.. on a running snmp_exporter for every device.
            The exporter's CPU is read from /proc by main.py; this process is only the client.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def _usage(who: int) -> tuple[float, float, int]:
    r = resource.getrusage(who)
    return r.ru_utime, r.ru_stime, r.ru_maxrss


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class VigilClient:
    def __init__(self, args: argparse.Namespace, targets: list[tuple[str, int]]):
        from collectors.snmp.collector import SnmpCollector, SnmpJob
        from collectors.snmp.engine import SnmpAuth, Target, make_engine
        from collectors.snmp.fetch import FetchLimits
        from collectors.snmp.profile import load_profiles

        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)
        self.engine = make_engine(args.engine, args.threads)
        self.collector = SnmpCollector(self.engine, load_profiles())
        auth = SnmpAuth("2c", community=args.community)
        if args.v3:
            user, auth_protocol, auth_password, priv, priv_password = json.loads(args.v3)
            auth = SnmpAuth("3", username=user, auth_protocol=auth_protocol,
                            auth_password=auth_password, priv_protocol=priv,
                            priv_password=priv_password)
        # the daemon's defaults (agent/plans.py snmp_job): 25 / 32 / 60, deadline 0.9 x 60 s
        limits = FetchLimits(25, 32, 60, True)
        self.jobs = [SnmpJob(f"dev{i}", Target(a, p, auth, args.timeout, args.retries),
                             args.profile, limits, 54.0) for i, (a, p) in enumerate(targets)]
        self.concurrency = args.concurrency

    def batch(self, n: int) -> dict:
        async def run() -> list:
            semaphore = asyncio.Semaphore(self.concurrency)

            async def one(job):
                async with semaphore:
                    return await self.collector.poll(job)

            return await asyncio.gather(*(one(job) for job in self.jobs[:n]))

        u0, s0, _ = _usage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        results = self.loop.run_until_complete(run())
        wall = time.perf_counter() - t0
        u1, s1, rss = _usage(resource.RUSAGE_SELF)
        reasons = collections.Counter(r.reason for r in results if not r.up)
        ok = [r for r in results if r.up]
        return {"wall": wall, "cpu": (u1 - u0) + (s1 - s0), "user": u1 - u0, "sys": s1 - s0,
                "polls": n, "ok": len(ok), "failed": dict(reasons),
                "varbinds": sum(r.varbinds for r in results),
                "requests": sum(r.requests for r in results),
                "readings": sum(len(r.readings) for r in ok),
                "threads": threading.active_count(), "maxrss_kb": rss,
                "detail": next((r.detail for r in results if not r.up), "")}

    def close(self) -> None:
        self.loop.run_until_complete(self.engine.close())


class BulkgetClient:
    def __init__(self, args: argparse.Namespace, targets: list[tuple[str, int]]):
        self.targets = targets
        self.pre = json.loads(args.bulkget_pre)
        self.oids = json.loads(args.bulkget_oids)
        self.env = {**os.environ, "SNMPCONFPATH": args.confdir,
                    "SNMP_PERSISTENT_DIR": args.confdir, "MIBDIRS": "/dev/null"}
        self.pool = ThreadPoolExecutor(args.concurrency)
        self.live: set[subprocess.Popen] = set()
        self.lock = threading.Lock()

    def _one(self, target: tuple[str, int]) -> tuple[bool, int, str]:
        address, port = target
        proc = subprocess.Popen(["snmpbulkget", *self.pre, f"{address}:{port}", *self.oids],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, env=self.env)
        with self.lock:
            self.live.add(proc)
        try:
            out, err = proc.communicate()
        finally:
            with self.lock:
                self.live.discard(proc)
        lines = out.count(b"\n")
        ok = proc.returncode == 0 and lines > 0
        return ok, lines, "" if ok else (err or out).decode(errors="replace").strip()[:200]

    def batch(self, n: int) -> dict:
        u0, s0, _ = _usage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        results = list(self.pool.map(self._one, self.targets[:n]))
        wall = time.perf_counter() - t0
        u1, s1, rss = _usage(resource.RUSAGE_CHILDREN)
        failed = [r for r in results if not r[0]]
        reasons = collections.Counter("timeout" if "Timeout" in r[2] else "error" for r in failed)
        return {"wall": wall, "cpu": (u1 - u0) + (s1 - s0), "user": u1 - u0, "sys": s1 - s0,
                "polls": n, "ok": n - len(failed), "failed": dict(reasons),
                "varbinds": sum(r[1] for r in results), "requests": n,
                "maxrss_kb": rss, "detail": failed[0][2] if failed else ""}

    def kill_children(self) -> None:
        with self.lock:
            for proc in list(self.live):
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGKILL)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


class ScrapeClient:
    def __init__(self, args: argparse.Namespace, targets: list[tuple[str, int]]):
        import aiohttp

        self.aiohttp = aiohttp
        self.targets = targets
        self.url = args.exporter_url
        self.module = args.module
        self.concurrency = args.concurrency
        self.loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self.loop)

    def batch(self, n: int) -> dict:
        aiohttp = self.aiohttp

        async def run() -> list:
            connector = aiohttp.TCPConnector(limit=self.concurrency)
            timeout = aiohttp.ClientTimeout(total=60)
            headers = {"X-Prometheus-Scrape-Timeout-Seconds": "30"}
            async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                             headers=headers) as session:
                async def one(target):
                    params = {"target": f"{target[0]}:{target[1]}", "module": self.module}
                    try:
                        async with session.get(self.url, params=params) as response:
                            text = await response.text()
                            status = response.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        return False, 0, 0, f"{type(exc).__name__}: {exc}"
                    pdus = 0
                    for line in text.splitlines():
                        if line.startswith("snmp_scrape_pdus_returned "):
                            pdus = int(float(line.split()[1]))
                    series = sum(1 for line in text.splitlines()
                                 if line and not line.startswith("#"))
                    ok = status == 200 and pdus > 0
                    return ok, pdus, series, "" if ok else f"HTTP {status}: {text[:200]}"

                return await asyncio.gather(*(one(t) for t in self.targets[:n]))

        t0 = time.perf_counter()
        results = self.loop.run_until_complete(run())
        wall = time.perf_counter() - t0
        failed = [r for r in results if not r[0]]
        reasons = collections.Counter("timeout" if "imeout" in r[3] else "error" for r in failed)
        return {"wall": wall, "polls": n, "ok": n - len(failed), "failed": dict(reasons),
                "varbinds": sum(r[1] for r in results), "series": sum(r[2] for r in results),
                "detail": failed[0][3] if failed else ""}

    def close(self) -> None:
        self.loop.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mode", choices=["vigil", "bulkget", "scrape"], required=True)
    parser.add_argument("--targets", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--engine", default="pysnmp")
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--profile", default="zyxel-switch")
    parser.add_argument("--community", default="public")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--v3", default="", help="JSON [user, auth, authpass, priv, privpass]")
    parser.add_argument("--bulkget-pre", default="[]")
    parser.add_argument("--bulkget-oids", default="[]")
    parser.add_argument("--confdir", default="/nonexistent")
    parser.add_argument("--exporter-url", default="")
    parser.add_argument("--module", default="vigil_bench")
    args = parser.parse_args()
    targets = [tuple(t) for t in json.loads(args.targets.read_text())]
    client = {"vigil": VigilClient, "bulkget": BulkgetClient, "scrape": ScrapeClient}[args.mode](
        args, targets)

    def on_term(signum, frame):
        if isinstance(client, BulkgetClient):
            client.kill_children()
        os._exit(1)

    signal.signal(signal.SIGTERM, on_term)
    _reply({"ready": True, "pid": os.getpid(), "maxrss_kb": _usage(resource.RUSAGE_SELF)[2]})
    for line in sys.stdin:
        command = json.loads(line)
        if command["op"] == "quit":
            break
        _reply(client.batch(int(command["n"])))
    client.close()
    _reply({"bye": True, "maxrss_kb": _usage(resource.RUSAGE_SELF)[2]})


if __name__ == "__main__":
    main()
