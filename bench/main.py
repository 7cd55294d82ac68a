"""bench/run: SNMP polling cost of Vigil's engines against net-snmp and snmp_exporter.

What it does, in one command (see docs/snmp-engines.md for the figures and advice):
1. Responders: several net-snmp `snmpd` processes, each listening on up to 850 loopback
   endpoints 127.77.X.Y:16161, so N devices are N distinct address:port pairs. By default
   everything runs in a network namespace created for the run, with veth interfaces added so
   that IF-MIB has `--interfaces` rows (a switch-sized table); `--interfaces 0` uses the
   host's own network and interfaces instead. The namespace is deleted at the end.
2. Work per device poll: a Vigil profile (default `zyxel-switch`, the demo's PoE access
   switch): system scalars, the switch's private scalars, IF-MIB ifTable/ifXTable columns and
   POWER-ETHERNET-MIB tables (absent on snmpd).
3. Throughput, for each N in --sizes, every contender polls the same N devices once per round,
   at most --concurrency polls in flight, rounds interleaved between contenders:
     vigil-pysnmp, vigil-ezsnmp  SnmpCollector.poll, CPU of the whole process (all threads)
     snmpbulkget                 one process per device, CPU of the children (with start-up)
     snmp_exporter               /snmp?target=..&module=.. scrapes, CPU of the exporter process
4. Scheduled: the real daemon (agent.daemon.Agent) with --scheduled-devices devices every
   --interval seconds, per engine: warm-up, then --intervals whole intervals measured.
Every process started here is stopped by its PID at the end and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench import fleet as fleet_mod
from bench.fleet import (
    Fleet,
    interrupt,
    proc_cpu,
    proc_cpu_precise,
    proc_status_kb,
    say,
    stop_process,
)
from bench.workload import bulkget_args, describe, exporter_yaml

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("vigil-pysnmp", "vigil-ezsnmp", "vigil-builtin", "snmpbulkget", "snmp_exporter")
EXPORTER = "prometheus-snmp-exporter"


# ---------------------------------------------------------------------------------------
# network namespace


def _ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def setup_netns(name: str, rows: int) -> None:
    """A namespace with lo and rows-1 more interfaces (veth pairs; some up, some down)."""
    _ip("netns", "add", name)
    _ip("link", "set", "lo", "up", ns=name)
    extra = rows - 1
    names = [f"ge{i + 1}" for i in range(extra)]
    for i in range(0, extra - 1, 2):
        _ip("link", "add", names[i], "type", "veth", "peer", "name", names[i + 1], ns=name)
        if (i // 2) % 3 != 2:  # two pairs in three up: a mix of up and down ports
            _ip("link", "set", names[i], "up", ns=name)
            _ip("link", "set", names[i + 1], "up", ns=name)
    if extra % 2:
        _ip("link", "add", names[-1], "type", "ifb", ns=name)
        _ip("link", "set", names[-1], "up", ns=name)


def run_in_netns(args: argparse.Namespace, argv: list[str]) -> int:
    name = f"vigil-bench-{os.getpid()}"
    say(f"Creating network namespace {name} with {args.interfaces} interfaces "
        f"(lo + {args.interfaces - 1} veth/ifb); the whole benchmark runs inside it")
    child = None
    try:
        setup_netns(name, args.interfaces)
        cmd = ["ip", "netns", "exec", name, sys.executable, "-m", "bench.main", *argv,
               "--in-netns", name]
        # Ctrl-C reaches the child too (same process group); it stops what it started, and we
        # wait for it, then delete the namespace. (Not SIG_IGN: the child would inherit it.)
        signal.signal(signal.SIGINT, lambda *_: None)
        child = subprocess.Popen(cmd, cwd=ROOT)
        return child.wait()
    finally:
        if child is not None and child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            child.wait()
        _ip("netns", "del", name, check=False)
        say(f"Deleted network namespace {name}")


# ---------------------------------------------------------------------------------------
# processes


class Worker:
    """A contender's client process (bench/worker.py), driven line by line."""

    def __init__(self, name: str, argv: list[str], log: Path):
        self.name = name
        self.log = log
        with open(log, "a") as stderr:  # the child keeps its own copy of the descriptor
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.worker", *argv], cwd=ROOT, stdin=subprocess.PIPE,
                stdout=subprocess.PIPE, stderr=stderr, text=True, start_new_session=True)
        self.ready = self._read(120)

    def _read(self, timeout: float) -> dict:
        selector = selectors.DefaultSelector()
        selector.register(self.proc.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise RuntimeError(f"{self.name}: no answer in {timeout:g}s (log: {self.log})")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-1500:]}")
        return json.loads(line)

    def send(self, command: dict, timeout: float) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def quit(self) -> dict:
        try:
            bye = self.send({"op": "quit"}, 60)
            self.proc.wait(10)
            return bye
        finally:
            self.kill()

    def kill(self) -> None:
        stop_process(self.proc)


class Exporter:
    """prometheus-snmp-exporter on 127.0.0.1, with the benchmark's module."""

    def __init__(self, binary: str, config: Path, port: int, log: Path):
        self.url = f"http://127.0.0.1:{port}/snmp"
        with open(log, "a") as output:
            self.proc = subprocess.Popen(
                [binary, f"--config.file={config}", f"--web.listen-address=127.0.0.1:{port}",
                 "--log.level=error"], stdin=subprocess.DEVNULL, stdout=output,
                stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 20
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1).read()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"snmp_exporter did not start: {log.read_text()[-800:]}"
                                       ) from None
                time.sleep(0.2)

    def cpu(self) -> tuple[float, float]:
        return proc_cpu_precise(self.proc.pid), proc_cpu(self.proc.pid)

    def peak_rss_kb(self) -> int:
        return proc_status_kb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        stop_process(self.proc)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# measurement


def rounds_for(n: int, setting: str) -> int:
    if setting != "auto":
        return max(1, int(setting))
    return max(1, min(5, math.ceil(3000 / n)))


def count_rows(address: str, port: int, confdir: Path) -> int:
    done = subprocess.run(["snmpbulkwalk", "-v2c", "-c", fleet_mod.COMMUNITY, "-m", "", "-On",
                           "-Cr50", f"{address}:{port}", "1.3.6.1.2.1.2.2.1.1"],
                          capture_output=True, text=True, check=True,
                          env={**os.environ, "SNMPCONFPATH": str(confdir)})
    return sum(1 for line in done.stdout.splitlines() if line.strip())


def count_values(address: str, port: int, plan, limits_bulk: bool = True) -> dict:
    """One poll's data, fetched the Vigil way: values inside the walked subtrees (what every
    contender has to read), and the varbinds and requests Vigil needs for them."""
    import asyncio

    from collectors.snmp.engine import SnmpAuth, Target, make_engine
    from collectors.snmp.fetch import Fetcher, FetchLimits

    async def run() -> dict:
        engine = make_engine("pysnmp")
        session = await engine.open(Target(address, port, SnmpAuth(
            "2c", community=fleet_mod.COMMUNITY), 2.0, 1))
        fetcher = Fetcher(session, FetchLimits(25, 32, 60, limits_bulk))
        await fetcher.scalars(plan.scalars)
        await fetcher.columns(plan.columns)
        await session.close()
        await engine.close()
        out = fetcher.out
        return {"values": len(out.scalars) + sum(len(c) for c in out.columns.values()),
                "scalars": len(out.scalars),
                "columns_present": sum(1 for c in out.columns.values() if c),
                "varbinds": out.varbinds, "requests": out.requests}

    return asyncio.run(run())


def throughput(n: int, args: argparse.Namespace, work: Path, fleet: Fleet, plan, rows: int,
               values: int, exporter_config: Path, live: list) -> dict[str, dict]:
    """Every contender polls the first n devices once per round; rounds interleaved."""
    rounds = rounds_for(n, args.rounds)
    targets = work / "targets.json"
    common = ["--targets", str(targets), "--concurrency", str(args.concurrency),
              "--profile", args.profile, "--community", fleet_mod.COMMUNITY]
    pre, oids = bulkget_args(plan, fleet_mod.COMMUNITY, rows)
    workers: dict[str, Worker] = {}
    exporter: Exporter | None = None
    samples: dict[str, list[dict]] = {c: [] for c in args.contenders}
    extra: dict[str, dict] = {c: {} for c in args.contenders}
    say(f"\n== {n} devices: {rounds} round(s) per contender, {args.concurrency} polls in flight")
    try:
        for name in args.contenders:
            log = work / f"{name}-{n}.log"
            if name.startswith("vigil-"):
                workers[name] = Worker(name, ["--mode", "vigil", "--engine", name[6:],
                                              "--threads", str(args.threads), *common], log)
            elif name == "snmpbulkget":
                workers[name] = Worker(name, ["--mode", "bulkget", "--bulkget-pre",
                                              json.dumps(pre), "--bulkget-oids",
                                              json.dumps(oids), "--confdir", str(work),
                                              *common], log)
            else:
                exporter = Exporter(args.exporter, exporter_config, _free_port(), log)
                live.append(exporter)
                workers[name] = Worker(name, ["--mode", "scrape", "--exporter-url",
                                              exporter.url, *common], log)
            live.append(workers[name])
        warm = min(n, 200)
        for worker in workers.values():  # warm-up: not measured
            worker.send({"op": "batch", "n": warm}, 600)
        for r in range(rounds):
            for name, worker in workers.items():
                responders0 = fleet.cpu_seconds()
                if name == "snmp_exporter":
                    e0 = exporter.cpu()
                result = worker.send({"op": "batch", "n": n}, max(600, n * 0.5))
                result["responder_cpu"] = fleet.cpu_seconds() - responders0
                if name == "snmp_exporter":
                    e1 = exporter.cpu()
                    result["cpu"] = e1[0] - e0[0]
                    result["cpu_ticks"] = e1[1] - e0[1]
                samples[name].append(result)
                failed = sum(result["failed"].values())
                say(f"  round {r + 1}/{rounds} {name:20s} {n / result['wall']:7.0f} devices/s "
                    f"{result['cpu'] / n * 1000:7.2f} ms CPU/poll "
                    f"{result['wall']:6.1f} s wall"
                    + (f"  FAILED {failed}: {result['failed']} {result['detail'][:120]}"
                       if failed else ""))
        for name, worker in workers.items():
            bye = worker.quit()
            if name == "snmpbulkget":
                extra[name]["peak_rss_kb"] = max(s["maxrss_kb"] for s in samples[name])
            elif name == "snmp_exporter":
                extra[name]["peak_rss_kb"] = exporter.peak_rss_kb()
                extra[name]["client_rss_kb"] = bye["maxrss_kb"]
            else:
                extra[name]["peak_rss_kb"] = bye["maxrss_kb"]
                extra[name]["threads"] = max(s.get("threads", 0) for s in samples[name])
    finally:
        for worker in workers.values():
            worker.kill()
        if exporter is not None:
            exporter.stop()
    out = {}
    for name in args.contenders:
        rs = samples[name]
        cpu_ms = [s["cpu"] / s["polls"] * 1000 for s in rs]
        out[name] = {
            "devices": n, "rounds": len(rs),
            "devices_per_second": statistics.median(s["polls"] / s["wall"] for s in rs),
            "cpu_ms_per_poll": statistics.median(cpu_ms),
            "cpu_ms_per_poll_rounds": cpu_ms,
            "varbinds_per_poll": (None if name == "snmp_exporter" else  # it reports in-tree only
                                  statistics.median(s["varbinds"] / s["polls"] for s in rs)),
            "values_per_poll": values,
            "requests_per_poll": (statistics.median(s["requests"] / s["polls"] for s in rs)
                                  if "requests" in rs[0] else None),
            "responder_ms_per_poll": statistics.median(s["responder_cpu"] / s["polls"] * 1000
                                                       for s in rs),
            "failed": sum(sum(s["failed"].values()) for s in rs),
            "polls": sum(s["polls"] for s in rs),
            **extra[name],
        }
        if name == "snmp_exporter":
            out[name]["cpu_ms_per_poll_ticks"] = statistics.median(
                s["cpu_ticks"] / s["polls"] * 1000 for s in rs)
        out[name]["cpu_us_per_value"] = out[name]["cpu_ms_per_poll"] * 1000 / max(1, values)
    return out


def v3_cost(args: argparse.Namespace, work: Path, live: list) -> dict[str, dict]:
    """CPU per SNMPv3 authPriv poll (SHA/AES, same profile and devices), per engine: the
    ezsnmp engine hands v3 to pysnmp, so both go through pysnmp's v3 architecture."""
    n = args.v3_devices
    say(f"\n== SNMPv3 authPriv (SHA, AES-128): {n} devices, 1 round per engine")
    out = {}
    for engine in ("pysnmp", "ezsnmp"):
        name = f"vigil-{engine} v3"
        worker = Worker(name, ["--mode", "vigil", "--engine", engine, "--threads",
                               str(args.threads), "--targets", str(work / "targets.json"),
                               "--concurrency", str(args.concurrency), "--profile", args.profile,
                               "--v3", json.dumps(fleet_mod.V3_USER)],
                        work / f"v3-{engine}.log")
        live.append(worker)
        try:
            worker.send({"op": "batch", "n": min(n, 50)}, 600)  # warm-up (engine-id discovery)
            result = worker.send({"op": "batch", "n": n}, max(600, n * 0.5))
            bye = worker.quit()
        finally:
            worker.kill()
        failed = sum(result["failed"].values())
        out[engine] = {"devices": n, "devices_per_second": n / result["wall"],
                       "cpu_ms_per_poll": result["cpu"] / n * 1000,
                       "varbinds_per_poll": result["varbinds"] / n,
                       "requests_per_poll": result["requests"] / n,
                       "failed": failed, "detail": result["detail"],
                       "peak_rss_kb": bye["maxrss_kb"]}
        say(f"  {name:18s} {out[engine]['devices_per_second']:7.0f} devices/s "
            f"{out[engine]['cpu_ms_per_poll']:7.2f} ms CPU/poll"
            + (f"  FAILED {failed}: {result['detail'][:150]}" if failed else ""))
    return out


def scheduled(engine: str, args: argparse.Namespace, work: Path, live: list) -> dict:
    say(f"\n== scheduled: the daemon (agent.daemon.Agent), {args.scheduled_devices} devices every "
        f"{args.interval:g}s, engine {engine}: {args.warmup:g}s warm-up + {args.intervals:g} "
        f"interval(s) measured")
    log = work / f"scheduled-{engine}.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.scheduled", "--engine", engine,
         "--targets", str(work / "targets.json"), "--work", str(work / f"agent-{engine}"),
         "--devices", str(args.scheduled_devices), "--interval", str(args.interval),
         "--intervals", str(args.intervals), "--warmup", str(args.warmup),
         "--concurrency", str(args.concurrency), "--threads", str(args.threads),
         "--profile", args.profile, "--community", fleet_mod.COMMUNITY],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    live.append(proc)
    lines = []
    with open(log, "w") as log_file:
        for line in proc.stderr:
            log_file.write(line)
            if line.startswith("@@ "):
                say(line[3:].rstrip())
    out = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"scheduled run ({engine}) failed: {log.read_text()[-2000:]}")
    lines = out.strip().splitlines()
    result = json.loads(lines[-1])
    say(f"  {engine}: {result['cpu_per_second']:.3f} CPU s per s, "
        f"{result['polls_per_second']:.1f} polls/s, lag p50 {result['lag_p50'] * 1000:.0f} ms "
        f"p99 {result['lag_p99'] * 1000:.0f} ms, failed {result['failed']:.0f}, "
        f"peak RSS {result['maxrss_kb'] / 1024:.0f} MB")
    return result


# ---------------------------------------------------------------------------------------
# report


def table(results: dict[int, dict[str, dict]], contenders: list[str]) -> list[str]:
    head = ("| contender | devices | devices/s | CPU ms/poll | CPU µs/value | varbinds recv/poll "
            "| requests/poll | peak RSS MB | CPU/poll ÷ snmp_exporter "
            "| devices/s ÷ snmp_exporter | failed |")
    lines = [head, "|" + "---|" * 11]
    for n in sorted(results):
        row = results[n]
        ref = row.get("snmp_exporter")
        for name in contenders:
            r = row[name]
            ratio = f"{r['cpu_ms_per_poll'] / ref['cpu_ms_per_poll']:.1f}×" if ref else "-"
            speed = (f"{r['devices_per_second'] / ref['devices_per_second']:.2f}×"
                     if ref else "-")
            requests = (f"{r['requests_per_poll']:.1f}" if r["requests_per_poll"] is not None
                        else "-")
            received = (f"{r['varbinds_per_poll']:.0f}" if r["varbinds_per_poll"] is not None
                        else "-")
            lines.append(
                f"| {name} | {n} | {r['devices_per_second']:.0f} | {r['cpu_ms_per_poll']:.2f} "
                f"| {r['cpu_us_per_value']:.1f} | {received} | {requests} "
                f"| {r['peak_rss_kb'] / 1024:.0f} | {ratio} "
                f"| {speed} | {r['failed']} |")
    return lines


def scheduled_table(results: list[dict]) -> list[str]:
    lines = ["| engine | devices | interval | window s | CPU s per s | CPU ms/poll | polls/s "
             "| lag p50 ms | lag p99 ms | lag max ms | failed | skipped | peak RSS MB | threads "
             "| /metrics render: CPU s, MB, series |", "|" + "---|" * 15]
    for r in results:
        lines.append(
            f"| {r['engine']} | {r['devices']} | {r['interval']:g}s | {r['window']:.0f} "
            f"| {r['cpu_per_second']:.3f} | {r['cpu_ms_per_poll']:.2f} "
            f"| {r['polls_per_second']:.1f} | {r['lag_p50'] * 1000:.1f} "
            f"| {r['lag_p99'] * 1000:.1f} | {r['lag_max'] * 1000:.0f} | {r['failed']:.0f} "
            f"| {r['skipped']:.0f} | {r['maxrss_kb'] / 1024:.0f} | {r['threads']} "
            f"| {r['render_cpu']:.2f} s, {r['render_bytes'] / 1e6:.1f} MB, "
            f"{r['render_series']} |")
    return lines


def verdicts(results: dict[int, dict[str, dict]], sched: list[dict]) -> list[str]:
    lines = []
    for n in sorted(results):
        ref = results[n].get("snmp_exporter")
        if not ref:
            continue
        for name in ("vigil-pysnmp", "vigil-ezsnmp", "vigil-builtin"):
            if name in results[n]:
                ratio = results[n][name]["cpu_ms_per_poll"] / ref["cpu_ms_per_poll"]
                lines.append(f"{n:>5} devices  {name}: CPU per poll = {ratio:.1f}× "
                             f"snmp_exporter -> 5× target {'MET' if ratio <= 5 else 'NOT met'}, "
                             f"3× goal {'MET' if ratio <= 3 else 'not met'}")
    for r in sched:
        ok = r["cpu_per_second"] < 1 and r["failed"] == 0 and r["polls"] >= 0.98 * r["devices"] * (
            r["window"] / r["interval"])
        lines.append(f"scheduled {r['devices']} devices/{r['interval']:g}s  "
                     f"vigil-{r['engine']}: {r['cpu_per_second']:.2f} core, "
                     f"{r['failed']:.0f} failed, "
                     f"{r['polls']:.0f} polls in {r['window']:.0f}s -> under one core "
                     f"{'MET' if ok else 'NOT met'}")
    return lines


# ---------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,5000",
                        help="device counts for the throughput runs (comma-separated)")
    parser.add_argument("--rounds", default="auto",
                        help="measured rounds per contender and size; auto: 3000/N, 1..5")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="which contenders to run (comma-separated)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="polls in flight (the daemon's max_concurrent_polls default)")
    parser.add_argument("--threads", type=int, default=16,
                        help="ezsnmp worker threads (the daemon's snmp.engine_threads default)")
    parser.add_argument("--profile", default="zyxel-switch", help="Vigil profile polled")
    parser.add_argument("--interfaces", type=int, default=16,
                        help="IF-MIB rows per device (a namespace with lo + veth interfaces is "
                             "created; needs root); 0: the host's own network and interfaces")
    parser.add_argument("--v3-devices", type=int, default=200,
                        help="devices polled with SNMPv3 authPriv per engine; 0 skips it")
    parser.add_argument("--scheduled-devices", type=int, default=5000,
                        help="devices in the scheduled (daemon) case; 0 skips it")
    parser.add_argument("--scheduled-engines", default="pysnmp,ezsnmp,builtin",
                        help="engines run in the scheduled case")
    parser.add_argument("--interval", type=float, default=60.0, help="scheduled poll interval, s")
    parser.add_argument("--intervals", type=float, default=1.0,
                        help="whole intervals measured in the scheduled case")
    parser.add_argument("--warmup", type=float, default=20.0,
                        help="seconds of the scheduled case before measuring")
    parser.add_argument("--port", type=int, default=16161, help="UDP port of every endpoint")
    parser.add_argument("--exporter", default=shutil.which(EXPORTER) or EXPORTER,
                        help="snmp_exporter binary")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    parser.add_argument("--in-netns", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.contenders = [c for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    args.scheduled_engines = [e for e in args.scheduled_engines.split(",") if e.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    if args.interfaces and not args.in_netns:
        if os.geteuid() != 0 or not shutil.which("ip"):
            say("--interfaces needs root and iproute2 (a network namespace); "
                "run with --interfaces 0 to use the host's interfaces")
            return 2
        return run_in_netns(args, argv)
    if args.in_netns:
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, signal.default_int_handler)
    for tool in ("snmpd", "snmpbulkget", "snmpget", "snmpbulkwalk"):
        path = fleet_mod.SNMPD if tool == "snmpd" else shutil.which(tool)
        if not path or not os.path.exists(path):
            say(f"missing {tool}: apt-get install snmpd snmp")
            return 2
    if "snmp_exporter" in args.contenders and not shutil.which(args.exporter):
        say(f"missing {args.exporter}: apt-get install prometheus-snmp-exporter")
        return 2

    from collectors.snmp.profile import load_profiles

    plan = load_profiles().plan(args.profile)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-"))
    devices = max([*args.sizes, args.scheduled_devices])
    fleet = Fleet(work, devices, args.port)
    live: list = []
    results: dict[int, dict[str, dict]] = {}
    sched: list[dict] = []
    v3: dict[str, dict] = {}
    try:
        say(f"Vigil SNMP benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"work dir {work}" + (f", network namespace {args.in_netns}" if args.in_netns else ""))
        fleet.start(log=say)
        (work / "targets.json").write_text(json.dumps(fleet.endpoints()))
        address, port = fleet.endpoints()[0]
        rows = count_rows(address, port, work)
        say(f"  each device: snmpd's MIB with {rows} interfaces (ifTable rows)")
        say(f"  work per poll: profile '{args.profile}': {describe(plan)}")
        probe = count_values(address, port, plan)
        values = probe["values"]
        say(f"  one poll reads {values} values ({probe['scalars']} scalars, "
            f"{probe['columns_present']} columns present); Vigil needs {probe['requests']} "
            f"requests and receives {probe['varbinds']} varbinds for them (GETBULK overshoot "
            f"past the end of each column, GET .0 then bare OID for absent scalars)")
        exporter_config = work / "snmp.yml"
        exporter_config.write_text(exporter_yaml(plan, fleet_mod.COMMUNITY))
        pre, oids = bulkget_args(plan, fleet_mod.COMMUNITY, rows)
        say(f"  snmpbulkget {' '.join(pre)} ADDRESS:PORT <the {len(oids)} OIDs>")
        say(f"  snmp_exporter module: {exporter_config} (GET {len(plan.scalars)} scalars, walk "
            f"{len(plan.columns)} columns, ifName lookups)")
        for n in args.sizes:
            results[n] = throughput(n, args, work, fleet, plan, rows, values, exporter_config,
                                    live)
            say("")
            for line in table({n: results[n]}, args.contenders):
                say(line)
        if args.v3_devices:
            v3 = v3_cost(args, work, live)
        if args.scheduled_devices:
            for engine in args.scheduled_engines:
                sched.append(scheduled(engine, args, work, live))
    except KeyboardInterrupt:
        say("\ninterrupted: stopping everything started")
        return 130
    finally:
        for thing in live:
            if isinstance(thing, subprocess.Popen):
                stop_process(thing, 10)
            elif isinstance(thing, Worker):
                thing.kill()
            elif isinstance(thing, Exporter):
                thing.stop()
        fleet.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say("\n================ results ================")
    say(f"command: bench/run {' '.join(argv)}".rstrip())
    say(f"profile {args.profile}: {describe(plan)}; {rows} interfaces per device; "
        f"{values} values per poll; "
        f"{args.concurrency} polls in flight; CPU = the poller's own CPU seconds (Vigil: whole "
        f"process incl. threads; snmpbulkget: children incl. process start-up; snmp_exporter: "
        f"the exporter process, not the HTTP client); medians over rounds")
    say("")
    for line in table(results, args.contenders):
        say(line)
    if v3:
        say("")
        say("SNMPv3 authPriv polls (same profile and devices): " + "; ".join(
            f"vigil-{engine} {r['cpu_ms_per_poll']:.1f} ms CPU/poll, "
            f"{r['devices_per_second']:.0f} devices/s, {r['failed']} failed"
            for engine, r in v3.items()))
    if sched:
        say("")
        for line in scheduled_table(sched):
            say(line)
    say("")
    for line in verdicts(results, sched):
        say(line)
    say(f"\ntotal time {time.time() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"argv": argv, "profile": args.profile, "rows": rows,
                                         "values_per_poll": values, "probe": probe,
                                         "throughput": results, "v3": v3,
                                         "scheduled": sched}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
