"""bench/run --suite soak: the demo district plus 5,000 simulated devices, for an hour or more,
with faults injected; memory, file descriptors and poll lateness watched the whole time.

What runs (all on loopback, every process started and stopped by its PID):

* `vigil demo` with its own configuration copy (the shipped rules, the demo's inventory, its
  scripted events stretched over the run by --timeline-scale: UPS on battery and its traps,
  a camera silent, an SPD tripped, a street cabinet cut off, the faulty cameras' ONVIF/RTSP/
  picture faults), its Prometheus scraping the agent every 15 s, and `--extra-inventory` with
  the fleet below; the agent's SNMP engine is `builtin` (pysnmp cannot poll 5,000 devices a
  minute on one core: docs/snmp-engines.md);
* the fleet: `--devices` net-snmp `snmpd` endpoints (bench/fleet.py, 127.77.X.Y), switches
  polled every `--interval` with the zyxel-switch profile (what bench/main.py measures:
  system group, IF-MIB; snmpd has no PoE table), SNMP only (no ICMP/TCP reachability: 5,000
  more checks every 30 s are not what this measures); device k (k < processes) is the root
  switch of every device that snmpd process k serves (uplink), so a dead process is one root
  fault with the rest carried by it.

Injected on top of the demo's own events, in 10-minute cycles:

* hang (minute 4 of a cycle): one snmpd process SIGSTOPped for --outage seconds (its ~850
  devices time out), then SIGCONT;
* reboot (minute 9): one snmpd process stopped (its devices refuse: ICMP port unreachable) for
  --outage seconds, then started again: sysUpTime and the interface counters start from 0;
* trap flood (minute 7 of every 15): 5,000 traps as fast as the socket takes them from one
  fleet address, plus 500 datagrams of garbage, to the agent's trap receiver.

Every `--sample` seconds: the agent's RSS, open FDs, threads, CPU (with its decoder processes);
the machine's busy cores and the CPU of the fleet and of the demo's simulators (what the
agent competes with on this machine); from Prometheus the p99
poll lag of the last 5 minutes, devices down and faults firing (the lag budget is checked,
like memory, after the warm-up). Each injection is checked: its root fault fired while it
lasted (and only the root: the devices behind it are carried), it cleared after, and the
ticket store has one ticket for it.

At the end: a table and a plot (RSS and FDs over time, <workdir>/soak.png), the poll lag p99
over the whole run against its budget, RSS and FDs of the last quarter of the run against the
first quarter after the warm-up (the baseline, measured in the same run), tracebacks in the
agent's log (must be 0), injections that did not behave, and soak.json with every sample.
Exit status 1 when a check failed.

`--tracemalloc` finds what grows: the agent traces its Python allocations (VIGIL_TRACEMALLOC,
agent/daemon.py: slower, so lateness is not judged then), writes a snapshot at the end of the
warm-up and at the end, and the report lists the source lines whose live memory grew most
between the two.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from bench.fleet import Fleet, interrupt, proc_cpu, proc_status_kb, say

REPO = Path(__file__).resolve().parent.parent
WARMUP = 900.0
"""Seconds before the RSS baseline is taken: every device polled, caches, the ticket store
and Prometheus' first blocks settled."""
LAG_BUDGET = 2.5
"""Poll lateness budget, seconds: 99 % of the polls start within 2.5 s of their time (a sixth
of the demo's 15-s interval, a 24th of the fleet's 60 s). A bucket bound of
vigil_poll_lag_seconds, so the share within it is counted exactly, not interpolated."""
GROWTH_LIMIT = 0.10
"""Flat: the median RSS (of the agent with its decoders, and of the agent alone) and open FDs
of the last quarter of the run after the warm-up exceed those of its first quarter (the
baseline) by at most this share (FDs: plus 10; they follow the polls in flight)."""


@dataclass
class Sample:
    t: float                    # seconds since the agent was ready
    rss_mib: float              # the agent and its decoder processes, as every figure here
    agent_rss_mib: float        # the agent's own process (decoders are replaced every 500 probes)
    fds: int
    threads: int
    cpu_s: float
    machine_cores: float        # busy cores of the whole machine since the previous sample
    fleet_cpu_s: float          # the snmpd processes
    sims_cpu_s: float           # the demo's simulators and its Prometheus
    lag_p99_s: float | None     # last 5 minutes, from Prometheus (interpolated in its bucket)
    within_budget: float | None  # share of the last 5 minutes' polls that started in budget
    down: int | None            # devices with vigil_device_up == 0
    faults: int | None          # vigil_fault_active series
    agent_kinds: dict[str, float] = field(default_factory=dict)   # rss_by_kind, MiB


@dataclass
class Injection:
    kind: str                   # hang | reboot | trapflood
    at: float
    process: int | None = None
    root: str | None = None
    fired: bool | None = None   # the root fault fired while it lasted
    carried_only: bool | None = None   # no fault of its own for a device behind the root
    cleared: bool | None = None
    note: str = ""


@dataclass
class Soak:
    args: argparse.Namespace
    work: Path
    fleet: Fleet | None = None
    demo: subprocess.Popen | None = None
    agent_pid: int = 0
    prometheus: str = ""
    trap_target: tuple[str, int] = ("127.0.0.1", 0)
    samples: list[Sample] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    sims: list[int] = field(default_factory=list)   # the demo's simulators' PIDs
    ready_at: float = 0.0
    snapshot_at: float | None = None   # --tracemalloc: when the first snapshot is due
    next_sample: float = 0.0
    machine: tuple[float, float] = (0.0, 0.0)   # /proc/stat busy and total at the last sample


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def root_of(k: int) -> str:
    return f"fl-{k:05d}"


def write_config(work: Path, fleet: Fleet, interval: float) -> tuple[Path, Path]:
    """config/demo copied (engine builtin, rule files absolute) and the fleet's inventory."""
    config = work / "config"
    config.mkdir(parents=True)
    demo = REPO / "config" / "demo"
    settings = yaml.safe_load((demo / "agent.yaml").read_text(encoding="utf-8"))
    settings["snmp"]["engine"] = "builtin"
    # a dead snmpd process is ~850 devices each holding a slot for its 2 x 2 s timeout
    settings["schedule"]["max_concurrent_polls"] = 256
    settings["rules"]["files"] = [str(REPO / "config" / "rules" / "*.yaml")]
    (config / "agent.yaml").write_text(yaml.safe_dump(settings, allow_unicode=True,
                                                      sort_keys=False), encoding="utf-8")
    shutil.copy(demo / "inventory.yaml", config / "inventory.yaml")
    credentials = yaml.safe_load((demo / "credentials.yaml").read_text(encoding="utf-8"))
    credentials["credentials"]["soak-fleet"] = {"version": "2c",
                                                "community_env": "VIGIL_SOAK_COMMUNITY"}
    (config / "credentials.yaml").write_text(yaml.safe_dump(credentials, sort_keys=False))
    os.chmod(config / "credentials.yaml", 0o600)
    roots = fleet.processes
    sites = [{"id": f"soak-{s:02d}", "name": f"压测站点{s:02d}"} for s in range(roots)]
    devices = []
    for i, (address, port) in enumerate(fleet.endpoints()):
        k = i % roots
        device = {"id": root_of(i), "kind": "switch", "site": sites[k]["id"],
                  "address": address, "port": port, "profile": "zyxel-switch",
                  "interval": f"{interval:g}s", "reachability": {"enabled": False}}
        if i >= roots:
            device["uplink"] = {"switch": root_of(k), "port": 1}
        devices.append(device)
    fleet_file = config / "fleet.yaml"
    fleet_file.write_text(yaml.safe_dump(
        {"sites": sites, "defaults": {"credentials": "soak-fleet"}, "devices": devices},
        allow_unicode=True, sort_keys=False), encoding="utf-8")
    return config, fleet_file


def start_demo(soak: Soak, config: Path, fleet_file: Path) -> None:
    args = soak.args
    listen = f"127.0.0.1:{_free_port()}"
    prom_port, trap_port = _free_port(), _free_port(socket.SOCK_DGRAM)
    scale = max(0.05, min(100.0, args.duration * 0.9 / 480.0))
    demo_dir = soak.work / "demo"
    cmd = [sys.executable, "-m", "agent.cli", "demo", "--workdir", str(demo_dir),
           "--config-dir", str(config), "--extra-inventory", str(fleet_file),
           "--listen", listen, "--prometheus-port", str(prom_port),
           "--trap-port", str(trap_port), "--timeline-scale", f"{scale:.3f}",
           "--duration", str(args.duration + 3600)]   # stopped by us, not by --duration
    say(f"  vigil demo (timeline x{scale:.2f}): {' '.join(cmd[3:])}")
    env = {**os.environ, "VIGIL_SOAK_COMMUNITY": "public"}
    if args.tracemalloc:
        env["VIGIL_TRACEMALLOC"] = "1"
    with open(soak.work / "demo.out", "w") as out:
        soak.demo = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     start_new_session=True)
    state_file = demo_dir / "demo.json"
    deadline = time.monotonic() + 600
    while True:
        if soak.demo.poll() is not None:
            raise RuntimeError(f"vigil demo exited with {soak.demo.returncode}:\n"
                               + (soak.work / "demo.out").read_text()[-2000:])
        try:
            state = json.loads(state_file.read_text())
            if state.get("prometheus"):
                break
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("vigil demo was not ready in 10 minutes")
        time.sleep(1)
    soak.agent_pid = state["pids"]["agent"]
    soak.sims = [pid for name, pid in state["pids"].items() if name != "agent"]
    soak.prometheus = state["prometheus"]
    soak.trap_target = ("127.0.0.1", trap_port)
    say(f"  demo ready: agent pid {soak.agent_pid} on {state['agent']}, Prometheus "
        f"{soak.prometheus}")


def query(soak: Soak, expr: str) -> float | None:
    """One instant value from Prometheus (None: no result or no answer)."""
    url = f"{soak.prometheus}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=20) as r:
            result = json.load(r)["data"]["result"]
    except (OSError, ValueError, KeyError):
        return None
    if not result:
        return None
    value = float(result[0]["value"][1])
    return None if value != value else value    # NaN: no polls in the window


def sample(soak: Soak) -> Sample:
    tree = process_tree(soak.agent_pid)
    busy, total = machine_ticks()
    was_busy, was_total = soak.machine
    soak.machine = (busy, total)
    return Sample(
        t=round(time.time() - soak.ready_at, 1),
        rss_mib=round(sum(_alive(proc_status_kb, pid, "VmRSS") for pid in tree) / 1024, 1),
        agent_rss_mib=round(_alive(proc_status_kb, soak.agent_pid, "VmRSS") / 1024, 1),
        fds=sum(_alive(lambda p: len(os.listdir(f"/proc/{p}/fd")), pid) for pid in tree),
        threads=sum(_alive(proc_status_kb, pid, "Threads") for pid in tree),
        cpu_s=round(sum(_alive(proc_cpu, pid) for pid in tree)
                    + _alive(reaped_cpu, soak.agent_pid), 1),
        machine_cores=round((busy - was_busy) / max(1e-9, total - was_total)
                            * os.cpu_count(), 2) if was_total else 0.0,
        fleet_cpu_s=round(soak.fleet.cpu_seconds(), 1),
        sims_cpu_s=round(sum(_alive(proc_cpu, pid) for pid in soak.sims), 1),
        lag_p99_s=query(soak, "histogram_quantile(0.99, sum by (le) "
                              "(rate(vigil_poll_lag_seconds_bucket[5m])))"),
        within_budget=query(soak, f'sum(rate(vigil_poll_lag_seconds_bucket{{le="{LAG_BUDGET:g}"}}'
                                  f'[5m])) / sum(rate(vigil_poll_lag_seconds_count[5m]))'),
        down=_int(query(soak, "count(vigil_device_up == 0) or vector(0)")),
        faults=_int(query(soak, "count(vigil_fault_active) or vector(0)")),
        agent_kinds=_alive(rss_by_kind, soak.agent_pid) or {})


RSS_KINDS = ("main heap", "thread arenas", "other anonymous", "files")


def rss_by_kind(pid: int) -> dict[str, float]:
    """The process's resident memory (MiB) by kind of mapping, from /proc/PID/smaps (read
    without stopping it): glibc's main heap (`[heap]`), its thread arenas (anonymous mappings
    aligned to their 64 MiB), the other anonymous memory (Python's object arenas, large
    blocks), files and stacks. Which kind grows says where to look (docs/reliability.md,
    run 16: the thread arenas of the /metrics renders)."""
    kinds = dict.fromkeys(RSS_KINDS, 0.0)
    kind = "files"
    with open(f"/proc/{pid}/smaps") as fh:
        for line in fh:
            head = line.split(maxsplit=5)
            if "-" in head[0] and not head[0].endswith(":"):      # a mapping's first line
                start = int(head[0].split("-")[0], 16)
                name = head[5].strip() if len(head) > 5 else ""
                kind = ("main heap" if name == "[heap]" else "files" if name
                        else "thread arenas" if start % (64 << 20) == 0 else "other anonymous")
            elif head[0] == "Rss:":
                kinds[kind] += int(head[1]) / 1024
    return {k: round(v, 1) for k, v in kinds.items()}


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (the agent's decoder processes)."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for tid in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{tid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            continue
    return out


def _alive(read, pid: int, *args) -> float:
    """read(pid, ...), or 0 for a process that ended meanwhile."""
    try:
        return read(pid, *args)
    except (OSError, ValueError):
        return 0


def reaped_cpu(pid: int) -> float:
    """CPU of `pid`'s children that ended and were waited for (replaced decoders)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs since boot."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    idle = values[3] + values[4]   # idle + iowait
    return sum(values) - idle, sum(values)


def _int(value: float | None) -> int | None:
    return None if value is None else int(value)


def trap_flood(soak: Soak, k: int) -> Injection:
    """5,000 valid traps from one fleet address and 500 garbage datagrams, as fast as the
    socket takes them."""
    from agent.demo.traps import encode_trap
    from bench.fleet import endpoint

    source = endpoint(k, 0)[0]
    trap = encode_trap(os.environ.get("VIGIL_DEMO_COMMUNITY", "vigil-demo"),
                       "1.3.6.1.6.3.1.1.5.3", [["1.3.6.1.2.1.2.2.1.1.1", "int", 1]], 100.0)
    rng = random.Random(k)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        for _ in range(5000):
            s.sendto(trap, soak.trap_target)
        for _ in range(500):
            s.sendto(rng.randbytes(rng.randint(1, 1400)), soak.trap_target)
    return Injection("trapflood", time.time() - soak.ready_at, note=f"from {source}")


def outage(soak: Soak, kind: str, k: int) -> Injection:
    """A hang (SIGSTOP) or a reboot (stopped, then started) of snmpd process k for
    --outage seconds; the root fault must fire before it ends and only for the root."""
    proc = soak.fleet.procs[k]
    injection = Injection(kind, time.time() - soak.ready_at, k, root_of(k))
    if kind == "hang":
        os.kill(proc.pid, signal.SIGSTOP)
    else:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(10)
    try:
        _sleep(soak, soak.args.outage - 20)
        injection.fired = bool(query(soak, f'vigil_fault_active{{device="{injection.root}"}}'))
        behind = query(soak, f'count(vigil_fault_active{{device=~"fl-.*",'
                             f'device!="{injection.root}",site="soak-{k:02d}"}}) or vector(0)')
        injection.carried_only = behind == 0
        _sleep(soak, 20)
    finally:
        if kind == "hang":
            os.kill(proc.pid, signal.SIGCONT)
        else:
            soak.fleet.restart(k)
    return injection


def check_cleared(soak: Soak, injection: Injection) -> None:
    """Called a while after the outage: the faults of the site's devices are gone (and none
    came from the reboot's counter reset). The site's own faults (its inspections are never
    done in a soak: InspectionOverdue) are not the outage's."""
    firing = query(soak, f'count(vigil_fault_active{{site="soak-{injection.process:02d}",'
                         f'device=~"fl-.*"}}) or vector(0)')
    injection.cleared = firing == 0
    if not injection.cleared:
        injection.note = f"{firing:g} fault(s) still firing at soak-{injection.process:02d}"


def _sleep(soak: Soak, seconds: float) -> None:
    """Sleep, sampling every --sample seconds on the way."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if soak.snapshot_at is not None and time.time() >= soak.snapshot_at:
            memory_snapshot(soak)
            soak.snapshot_at = None
        if time.time() >= soak.next_sample:
            soak.samples.append(sample(soak))
            soak.next_sample += soak.args.sample
            _progress(soak)
            continue
        time.sleep(max(0.0, min(left, soak.next_sample - time.time(), 5)))
        if soak.demo.poll() is not None:
            raise RuntimeError(f"vigil demo stopped by itself ({soak.demo.returncode}):\n"
                               + (soak.work / "demo.out").read_text()[-2000:])


def memory_snapshot(soak: Soak) -> None:
    """Ask the tracing agent for a snapshot (SIGUSR2) and wait until it is written."""
    state = soak.work / "demo" / "state"
    before = set(state.glob("memory-*.tracemalloc"))
    os.kill(soak.agent_pid, signal.SIGUSR2)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        new = set(state.glob("memory-*.tracemalloc")) - before
        if new:   # the agent renames it into place once written
            say(f"  [{(time.time() - soak.ready_at) / 60:5.1f} min] memory snapshot "
                f"{new.pop().name}")
            return
        time.sleep(1)
    say("  memory snapshot: the agent wrote none in 5 minutes")


def memory_growth(soak: Soak, top: int = 25) -> None:
    """The source lines whose live allocations grew most between the two snapshots."""
    import tracemalloc

    files = sorted(soak.work.glob("demo/state/memory-*.tracemalloc"))
    if len(files) < 2:
        say(f"  tracemalloc: {len(files)} snapshot(s), two needed")
        return
    old, new = (tracemalloc.Snapshot.load(str(f)) for f in (files[0], files[-1]))
    diff = new.compare_to(old, "lineno")
    total = sum(d.size_diff for d in diff)
    say(f"\n  live Python allocations traced: {sum(d.size for d in diff) / 2**20:.1f} MiB "
        f"at the end, {total / 2**20:+.1f} MiB since the warm-up; the lines that grew most:")
    for d in diff[:top]:
        frame = d.traceback[0]
        say(f"  {d.size_diff / 2**20:+8.2f} MiB {d.count_diff:+9d} blocks  "
            f"{frame.filename}:{frame.lineno}")


def _progress(soak: Soak) -> None:
    s = soak.samples[-1]
    if len(soak.samples) % max(1, int(300 / soak.args.sample)) == 1:
        say(f"  [{s.t / 60:5.1f} min] RSS {s.rss_mib:7.1f} MiB (agent alone "
            f"{s.agent_rss_mib:.0f})  FDs {s.fds:4d}  threads "
            f"{s.threads:3d}  CPU {s.cpu_s:7.1f} s  machine {s.machine_cores:.2f} cores  "
            f"in budget {_pct(s.within_budget)}  lag p99 {_fmt(s.lag_p99_s, 's')}  down "
            f"{s.down}  faults {s.faults}")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _fmt(value: float | None, unit: str) -> str:
    return "-" if value is None else f"{value:.3f} {unit}"


def run_schedule(soak: Soak) -> None:
    """10-minute cycles of injections until --duration is over."""
    args, processes = soak.args, soak.fleet.processes
    events: list[tuple[float, str, int]] = []
    cycle = 0
    while 600 * cycle + 240 + args.outage + 200 < args.duration:
        events.append((600 * cycle + 240, "hang", cycle % processes))
        if 600 * cycle + 540 + args.outage + 200 < args.duration:
            events.append((600 * cycle + 540, "reboot", (cycle + processes // 2) % processes))
        cycle += 1
    events += [(900 * n + 420, "trapflood", n) for n in range(int(args.duration // 900))]
    events.sort()
    pending: list[tuple[float, Injection]] = []
    for at, kind, k in events:
        _sleep(soak, at - (time.time() - soak.ready_at))
        injection = trap_flood(soak, k) if kind == "trapflood" else outage(soak, kind, k)
        soak.injections.append(injection)
        say(f"  [{injection.at / 60:5.1f} min] injected {kind}"
            + (f" of snmpd #{k} (root {injection.root}): fired {injection.fired}, "
               f"devices behind carried {injection.carried_only}" if kind != "trapflood"
               else f" ({injection.note})"))
        if kind != "trapflood":
            pending.append((time.time() + 2.5 * args.interval + 60, injection))
        for due, done in [p for p in pending if p[0] <= time.time()]:
            check_cleared(soak, done)
            pending.remove((due, done))
    _sleep(soak, args.duration - (time.time() - soak.ready_at))
    for _, done in pending:
        check_cleared(soak, done)


def tickets(soak: Soak) -> dict[str, int]:
    """Tickets per fleet device in the demo agent's store (read-only)."""
    db = soak.work / "demo" / "state" / "tickets.db"
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        rows = conn.execute("SELECT device, count(*) FROM tickets WHERE device LIKE 'fl-%' "
                            "GROUP BY device").fetchall()
    return dict(rows)


def tracebacks(soak: Soak) -> list[str]:
    """Lines of the agent's log that start an unhandled exception's report."""
    log = soak.work / "demo" / "agent.log"
    lines = log.read_text(errors="replace").splitlines() if log.exists() else []
    return [line for line in lines if "Traceback" in line or "Unhandled" in line]


def report(soak: Soak) -> bool:
    args, samples = soak.args, soak.samples
    say("")
    say(f"| min | RSS MiB | agent alone MiB | FDs | threads | CPU s | machine cores | "
        f"polls within {LAG_BUDGET:g} s (5 min) | lag p99 s (5 min) | devices down | faults |")
    say("|---|---|---|---|---|---|---|---|---|---|---|")
    step = max(1, int(300 / args.sample))
    for s in samples[::step] + ([samples[-1]] if (len(samples) - 1) % step else []):
        say(f"| {s.t / 60:.0f} | {s.rss_mib:.0f} | {s.agent_rss_mib:.0f} | {s.fds} | "
            f"{s.threads} | {s.cpu_s:.0f} | "
            f"{s.machine_cores:.2f} | {_pct(s.within_budget)} | "
            f"{'-' if s.lag_p99_s is None else f'{s.lag_p99_s:.3f}'} | {s.down} | {s.faults} |")
    warm = [s for s in samples if s.t >= min(WARMUP, args.duration / 4)]
    quarter = max(1, len(warm) // 4)
    first, last = warm[:quarter], warm[-quarter:]
    end = samples[-1]
    rss, alone = (_growth(warm, first, last, attr) for attr in ("rss_mib", "agent_rss_mib"))
    fds = (statistics.median(s.fds for s in first), statistics.median(s.fds for s in last))
    hours = (warm[-1].t - warm[0].t) / 3600 or 1.0
    steady = int(end.t - warm[0].t)     # the lag budget, like memory, after the warm-up
    lag_whole = query(soak, f"histogram_quantile(0.99, sum by (le) (increase("
                            f"vigil_poll_lag_seconds_bucket[{steady}s])))")
    within, within_all = (query(soak, f'sum(increase(vigil_poll_lag_seconds_bucket{{le='
                                      f'"{LAG_BUDGET:g}"}}[{w}s])) / sum(increase('
                                      f'vigil_poll_lag_seconds_count[{w}s]))')
                          for w in (steady, int(end.t)))
    lag_max5 = max((s.lag_p99_s for s in samples if s.lag_p99_s is not None), default=None)
    polls = query(soak, f"sum(increase(vigil_polls_total[{int(end.t)}s]))")
    traces = tracebacks(soak)
    held = tickets(soak)
    outages = [i for i in soak.injections if i.kind != "trapflood"]
    bad = [i for i in outages if not (i.fired and i.carried_only and i.cleared)]
    roots = {i.root for i in outages}
    wrong_tickets = {d: n for d, n in held.items() if d not in roots}
    missing = sorted(r for r in roots if r not in held)
    cpu = end.cpu_s - warm[0].cpu_s
    say("")
    say(f"soak: {end.t / 60:.0f} min, {args.devices} fleet devices + the demo district; "
        f"{sum(1 for i in soak.injections if i.kind == 'hang')} hangs, "
        f"{sum(1 for i in soak.injections if i.kind == 'reboot')} reboots, "
        f"{sum(1 for i in soak.injections if i.kind == 'trapflood')} trap floods injected; "
        f"{polls and int(polls)} polls")
    for what, (before, after, slope, top) in (("RSS (with decoders)", rss),
                                              ("RSS of the agent alone", alone)):
        say(f"  {what}: median {before:.0f} MiB in the first quarter after the warm-up "
            f"({warm[0].t / 60:.0f} min), {after:.0f} MiB in the last: ratio "
            f"{after / before:.3f} (limit {1 + GROWTH_LIMIT:.2f}); trend {slope:+.1f} MiB/h "
            f"over {hours:.2f} h; max {top:.0f} MiB")
    def kind(name: str, part: list[Sample]) -> list[float]:
        return [s.agent_kinds.get(name, 0.0) for s in part]
    say("  the agent alone by kind (median first quarter -> last, range after the warm-up): "
        + "; ".join(f"{k} {statistics.median(kind(k, first)):.0f} -> "
                    f"{statistics.median(kind(k, last)):.0f} ({min(kind(k, warm)):.0f}-"
                    f"{max(kind(k, warm)):.0f})" for k in RSS_KINDS) + " MiB")
    say(f"  FDs: median {fds[0]:.0f} first quarter, {fds[1]:.0f} last; range after the warm-up "
        f"{min(s.fds for s in warm)}-{max(s.fds for s in warm)}")
    say(f"  polls started within the {LAG_BUDGET:g}-s budget after the warm-up: "
        f"{'-' if within is None else f'{within:.2%}'} (needed 99 %; whole run "
        f"{'-' if within_all is None else f'{within_all:.2%}'}); p99 after the warm-up "
        f"interpolated by Prometheus {_fmt(lag_whole, 's')}, worst 5-minute p99 "
        f"{_fmt(lag_max5, 's')}")
    span = max(1.0, end.t - warm[0].t)
    say(f"  CPU after the warm-up: agent {cpu:.0f} s in {span:.0f} s ({cpu / span:.2f} core), "
        f"fleet snmpd {(end.fleet_cpu_s - warm[0].fleet_cpu_s) / span:.2f} core, demo "
        f"simulators and Prometheus {(end.sims_cpu_s - warm[0].sims_cpu_s) / span:.2f} core, "
        f"machine {statistics.fmean(s.machine_cores for s in warm):.2f} of "
        f"{os.cpu_count()} cores; this runner: "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_utime:.1f} CPU s, peak RSS "
        f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    trimmed = query(soak, "sum(vigil_memory_trimmed_bytes_total)")
    say(f"  free allocator memory given back (memory_trim_interval): "
        f"{'-' if trimmed is None else f'{trimmed / 2**20:.0f} MiB'} in the run")
    say(f"  tracebacks in the agent's log: {len(traces)}" + (f" (first: {traces[0]})"
                                                              if traces else ""))
    say(f"  injections not behaving: {len(bad)}" + "".join(f"\n    {asdict(i)}" for i in bad))
    say(f"  tickets: {sum(held.values())} for fleet devices ({held}); roots without a ticket: "
        f"{missing or 'none'}; tickets for devices behind a root: {wrong_tickets or 'none'}")
    plot(soak)
    (soak.work / "soak.json").write_text(json.dumps({
        "devices": args.devices, "duration": end.t, "samples": [asdict(s) for s in samples],
        "injections": [asdict(i) for i in soak.injections], "lag_p99": lag_whole,
        "within_lag_budget": within,
        "tickets": held, "tracebacks": traces}, indent=1))
    checks = {
        "rss flat": all(g[1] <= g[0] * (1 + GROWTH_LIMIT) for g in (rss, alone)),
        "fds flat": fds[1] <= fds[0] * (1 + GROWTH_LIMIT) + 10,
        "lag p99 in budget": within is not None and within >= 0.99,
        "no traceback": not traces,
        "injections behaved": not bad,
        "one ticket per root, none behind": not missing and not wrong_tickets,
    }
    if args.tracemalloc:
        del checks["lag p99 in budget"]
        say("  lateness not judged: the agent traced its allocations")
    say("  checks: " + ", ".join(f"{k} {'OK' if v else 'FAILED'}" for k, v in checks.items()))
    say(f"  plot {soak.work / 'soak.png'}, samples {soak.work / 'soak.json'}")
    return all(checks.values())


def _growth(warm: list[Sample], first: list[Sample], last: list[Sample],
            attr: str) -> tuple[float, float, float, float]:
    """Median of `attr` in the first and last quarter, its linear trend per hour, its max."""
    values = [getattr(s, attr) for s in warm]
    slope = (statistics.linear_regression([s.t for s in warm], values).slope * 3600
             if len(warm) > 1 else 0.0)
    return (statistics.median(getattr(s, attr) for s in first),
            statistics.median(getattr(s, attr) for s in last), slope, max(values))


def plot(soak: Soak) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s.t / 60 for s in soak.samples]
    fig, (ax1, ax2, ax3) = plt.subplots(3, 1, figsize=(9, 8), sharex=True)
    ax1.plot(t, [s.rss_mib for s in soak.samples], label="with its decoder processes")
    ax1.plot(t, [s.agent_rss_mib for s in soak.samples], label="agent process alone")
    ax1.set_ylabel("agent RSS, MiB")
    ax1.legend(loc="lower right")
    ax1.set_ylim(bottom=0)
    ax2.plot(t, [s.fds for s in soak.samples], color="tab:orange")
    ax2.set_ylabel("open FDs")
    ax2.set_ylim(bottom=0)
    ax3.plot(t, [100 * s.within_budget if s.within_budget is not None else float("nan")
                 for s in soak.samples], color="tab:green")
    ax3.axhline(99, color="tab:red", linestyle="--", label="needed: 99 %")
    ax3.set_ylabel(f"polls within {LAG_BUDGET:g} s (5 min), %")
    ax3.set_xlabel("minutes")
    ax3.legend()
    for i in soak.injections:
        for ax in (ax1, ax2, ax3):
            ax.axvline(i.at / 60, color="grey", alpha=0.3, linewidth=0.8)
    fig.suptitle(f"Vigil soak: demo district + {soak.args.devices} devices "
                 f"(grey: injected faults)")
    fig.tight_layout()
    fig.savefig(soak.work / "soak.png", dpi=90)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/run --suite soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=5000, help="fleet devices")
    parser.add_argument("--duration", type=float, default=3900.0,
                        help="seconds after the agent is ready (default 65 min)")
    parser.add_argument("--interval", type=float, default=60.0, help="fleet poll interval, s")
    parser.add_argument("--outage", type=float, default=200.0,
                        help="seconds a hang or a reboot lasts")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--workdir", type=Path, default=REPO / "build" / "soak")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the agent's allocations and report what grew (slower: "
                             "lateness is not judged)")
    args = parser.parse_args(argv)
    if args.duration < 600:
        parser.error("--duration: at least 600 s (the injections come in 10-minute cycles)")
    signal.signal(signal.SIGTERM, interrupt)
    work = args.workdir.resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    soak = Soak(args, work)
    say(f"soak: demo district + {args.devices} devices for {args.duration / 60:.0f} min, "
        f"work directory {work}")
    try:
        soak.fleet = Fleet(work / "fleet", args.devices, _free_port(socket.SOCK_DGRAM))
        soak.fleet.start(say)
        config, fleet_file = write_config(work, soak.fleet, args.interval)
        start_demo(soak, config, fleet_file)
        soak.ready_at = soak.next_sample = time.time()
        if args.tracemalloc:
            soak.snapshot_at = soak.ready_at + min(WARMUP, args.duration / 4)
        run_schedule(soak)
        if args.tracemalloc:
            memory_snapshot(soak)
            memory_growth(soak)
        ok = report(soak)
    except KeyboardInterrupt:
        say("interrupted")
        ok = False
    finally:
        if soak.demo is not None and soak.demo.poll() is None:
            os.kill(soak.demo.pid, signal.SIGTERM)     # it stops its children by PID
            try:
                soak.demo.wait(60)
            except subprocess.TimeoutExpired:
                os.kill(soak.demo.pid, signal.SIGKILL)
                soak.demo.wait()
        if soak.fleet is not None:
            for proc in soak.fleet.procs:
                if proc.poll() is None:
                    os.kill(proc.pid, signal.SIGCONT)
            soak.fleet.stop()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
