"""Tickets: a fault storm ticketed and notified, the escalation check, and the tickets API
under load, on SQLite and PostgreSQL. Run: `bench/run --suite tickets` (about 4 minutes;
shorter: `--faults 200 --api-seconds 4`). Figures: docs/tickets-benchmark.md.

Issue target: a 1,000-fault storm fully ticketed and notified (one storm message per channel)
within 2 s.

Backends (--backends): SQLite (a file in a temp dir, the store's own WAL settings) and
PostgreSQL 15 (a throwaway cluster on 127.0.0.1 made with initdb, run as the `postgres` user
when we are root, fsync on unless --pg-fsync off; skipped with the reason when initdb is
missing). Every storm gets a fresh database.

1. Storm. --faults faults fire in one rules cycle across --sites sites (rules.faults.Fault
   objects, levels 2-4, Chinese/English summaries, evidence), handed to the public
   TicketRunner(config, store, notifier).on_cycle(changed, active). The escalation policy is
   the shipped config/escalation.yaml whose first tier notifies two webhook channels
   (`tech`: Vigil's JSON, `am`: Alertmanager's payload v4, both with --storm-window and the
   default rate limits) pointing at a receiver on 127.0.0.1 in a SEPARATE process (its CPU
   is not counted) that counts messages and stamps their arrival (CLOCK_MONOTONIC, shared by
   the processes). Time from the on_cycle call until every fault has a ticket in the store,
   the receiver has had every fault on every channel and every ticket has its `notified`
   event (counted with one SELECT on the store's engine after each flush). Two ways to flush:
     ideal   flush() once the window of the last message has passed after on_cycle returned:
             Vigil's processing cost, one storm message per channel by construction.
     daemon  flush() every --tick s (default: agent.ticketing.TICK, the daemon's timer) in a
             task running alongside on_cycle from its call on, as TicketRunner's own loop
             does: a storm whose opening outlasts the window is sent in several parts, and
             the channel's rate limit (burst 5, then 20/min) may hold the later ones.
   Figures: wall s (median of --repeat fresh databases), tickets/s, CPU s of this process
   (all threads: aiosqlite's included), PostgreSQL server CPU s, messages per channel, and
   pass/fail against --target. Then, on the last ideal run's database: check() with the
   --faults tickets open (median of 3), a second storm of --faults new faults while those are
   open (the runner keeps running: the first storm's faults are still active), and check()
   with twice as many open.
2. Baseline, same run, same receiver, same database server: the floor of the same work
   without Vigil: one transaction with an executemany INSERT of N ticket rows and N `opened`
   event rows of the same columns and widths into plain tables (sqlite3 / psycopg, the
   drivers under aiosqlite and SQLAlchemy), one HTTP POST per channel of a JSON body with the
   N messages, one transaction inserting N `notified` rows. Ratios Vigil/baseline.
3. API under load. The real agent (`vigil run -c agent.yaml`, its own process) with an
   inventory of --sites sites and no devices, `tickets.url` the database of the ideal storm
   runs (2 x --faults tickets), a tokens file made with agent/auth.py's add_user (a viewer
   for reads, a technician for comments), the default escalation interval (its check() of
   every open ticket runs at start and every 30 s inside the agent: it shows in the tails).
   Once the API answers and the agent's start-up check is over, this process (the "second
   process") drives --concurrency concurrent requests for --api-seconds per endpoint:
     list     GET /api/v1/tickets?state=open&limit=50
     show     GET /api/v1/tickets/{random id} (with its timeline)
     comment  POST /api/v1/tickets/{random id}/comments (write path, technician token)
     healthy  GET /-/healthy of the same server (a trivial handler), half before and half
              after the others: the baseline the p50/p99 ratios are taken against.
   Per endpoint p50/p99/max latency and requests/s; the agent's CPU s per phase
   (/proc/PID/stat) and peak RSS (VmHWM).
--profile: one more SQLite ideal storm under cProfile, the top --top functions by cumulative
time. Every process started is stopped by its PID and every temp dir removed, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import http.client
import json
import logging
import os
import pstats
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from bench.fleet import interrupt, proc_cpu, proc_status_kb, say, stop_process
from bench.scheduled import cpu_seconds, percentile

ROOT = Path(__file__).resolve().parent.parent
CHANNELS = (("tech", "json"), ("am", "alertmanager"))
# (rule, level, summary zh, summary en, evidence inputs): the faults of a storm, in turn
RULES = (
    ("CameraUnreachable", 3, "摄像机不可达", "camera unreachable",
     {"up": 0.0, "reach_up": 0.0, "reach_icmp_loss_ratio": 1.0}),
    ("StreamDown", 3, "视频流中断", "video stream down", {"rtsp_up": 0.0, "reach_up": 1.0}),
    ("PictureFrozen", 2, "画面冻结", "picture frozen",
     {"video_frozen": 1.0, "rtsp_frames_per_second": 25.0}),
    ("ClockDrift", 4, "时钟偏差超过5秒", "clock off by more than 5 s",
     {"onvif_clock_offset_seconds": 37.2}),
)
PG_BIN_DIRS = ("/usr/local/bin", *sorted(str(p) for p in Path("/usr/lib/postgresql").glob(
    "*/bin")))


class Unavailable(Exception):
    """A backend that cannot run here (the reason is printed, the rest goes on)."""


# --- the webhook receiver (its own process) ----------------------------------------------


def receiver_main(argv: list[str]) -> int:
    """`--receiver`: aiohttp on 127.0.0.1, any POST /{channel} accepted; prints `port N`,
    then one JSON line per message: [channel, monotonic arrival, kind, faults, bytes]."""
    import aiohttp.web as web

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops us by PID
    out = sys.stdout

    async def handle(request: web.Request) -> web.Response:
        raw = await request.read()
        at = time.monotonic()
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        if isinstance(body, dict) and "alerts" in body:  # Alertmanager v4: receiver:kind:...
            faults = len(body["alerts"])
            kind = [*body.get("groupKey", "").split(":"), "?", "?"][1]
        elif isinstance(body, dict):
            faults = int(body.get("count", 1))
            kind = str(body.get("kind", "?"))
        else:
            faults, kind = 0, "?"
        out.write(json.dumps([request.match_info["name"], at, kind, faults, len(raw)]) + "\n")
        out.flush()
        return web.Response(text="ok")

    async def serve() -> None:
        app = web.Application(client_max_size=1 << 30)
        app.router.add_post("/{name}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        site = web.SockSite(runner, sock)
        await site.start()
        out.write(f"port {sock.getsockname()[1]}\n")
        out.flush()
        await asyncio.Event().wait()

    asyncio.run(serve())
    return 0


class Receiver:
    def __init__(self, work: Path) -> None:
        self._log = open(work / "receiver.log", "w")  # noqa: SIM115  # closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.tickets", "--receiver"], cwd=ROOT,
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            start_new_session=True)
        line = self.proc.stdout.readline().decode()  # type: ignore[union-attr]
        if not line.startswith("port "):
            stop_process(self.proc)
            raise RuntimeError(f"the webhook receiver did not start: {line!r} "
                               f"(see {work / 'receiver.log'})")
        self.port = int(line.split()[1])
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        self._partial = b""
        self.arrivals: list[tuple[str, float, str, int, int]] = []

    def url(self, channel: str) -> str:
        return f"http://127.0.0.1:{self.port}/{channel}"

    def drain(self) -> list[tuple[str, float, str, int, int]]:
        """Read what the receiver reported so far (non-blocking)."""
        while True:
            try:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)  # type: ignore[union-attr]
            except BlockingIOError:
                break
            if not chunk:
                break
            self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            if line:
                self.arrivals.append(tuple(json.loads(line)))  # type: ignore[arg-type]
        return self.arrivals

    def reset(self) -> None:
        self.drain()
        self.arrivals = []

    def faults(self, channel: str) -> int:
        return sum(a[3] for a in self.arrivals if a[0] == channel)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc.stdout.close()  # type: ignore[union-attr]
        self._log.close()


# --- PostgreSQL ---------------------------------------------------------------------------


def _program(name: str) -> str | None:
    return shutil.which(name) or next((str(Path(d) / name) for d in PG_BIN_DIRS
                                       if (Path(d) / name).exists()), None)


class Postgres:
    """A throwaway cluster (like tests/peers.py postgres()): 127.0.0.1, a free port, trust
    auth, stopped with `pg_ctl stop -m fast` (this cluster only) and removed."""

    def __init__(self, fsync: bool) -> None:
        initdb, pg_ctl = _program("initdb"), _program("pg_ctl")
        if not initdb or not pg_ctl:
            raise Unavailable("initdb/pg_ctl not found (apt-get install postgresql)")
        self.pg_ctl = pg_ctl
        self.as_postgres: list[str] = []
        self.base = Path(tempfile.mkdtemp(prefix="vigil-bench-pg-"))
        if os.geteuid() == 0:
            runuser = _program("runuser") or "/usr/sbin/runuser"
            if not Path(runuser).exists():
                raise Unavailable("running as root and runuser is missing (util-linux)")
            self.as_postgres = [runuser, "-u", "postgres", "--"]
            try:
                shutil.chown(self.base, "postgres", "postgres")
            except (LookupError, PermissionError) as exc:
                shutil.rmtree(self.base, ignore_errors=True)
                raise Unavailable(f"no `postgres` user to run the cluster as ({exc})") from None
        self.data, self.log = self.base / "data", self.base / "server.log"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        try:
            subprocess.run([*self.as_postgres, initdb, "-D", str(self.data), "-U", "postgres",
                            "--auth=trust", "-E", "UTF8"], check=True, capture_output=True,
                           timeout=120)
            options = (f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                       f"-c unix_socket_directories={self.base} "
                       f"-c fsync={'on' if fsync else 'off'}")
            subprocess.run([*self.as_postgres, pg_ctl, "-D", str(self.data), "-l", str(self.log),
                            "-o", options, "-w", "-t", "60", "start"], check=True,
                           capture_output=True, timeout=90)
        except subprocess.CalledProcessError as exc:
            self.stop()
            raise Unavailable(f"the cluster did not start: {exc.stderr.decode()[-400:]}") \
                from None
        self.pid = int((self.data / "postmaster.pid").read_text().split()[0])
        self.version = self._sql("SHOW server_version", fetch=True)

    def _sql(self, statement: str, fetch: bool = False) -> Any:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="postgres",
                             dbname="postgres", autocommit=True) as conn:
            cur = conn.execute(statement)
            return cur.fetchone()[0] if fetch else None

    def create(self, name: str) -> str:
        """A fresh database; its SQLAlchemy URL."""
        self._sql(f'CREATE DATABASE "{name}"')
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{name}"

    def dsn(self, name: str) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={name}"

    def cpu(self) -> float:
        """CPU of the cluster: the postmaster, its live children and the children it reaped."""
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += sum(int(v) for v in fields[11:15])
        except OSError:
            return float("nan")
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / tick

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            subprocess.run([*self.as_postgres, self.pg_ctl, "-D", str(self.data), "-m", "fast",
                            "-w", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(self.base, ignore_errors=True)


# --- the site: configuration and faults ---------------------------------------------------


def device(i: int, sites: int) -> tuple[str, str]:
    """Device i: (id, site id); the devices are spread over the sites in turn."""
    site = i % sites
    return f"cam-{site:02d}-{i // sites:05d}", f"site-{site:02d}"


def write_site(home: Path, args: argparse.Namespace, url: str, port: int, devices: int,
               listen: str, channels: bool = True) -> Path:
    """agent.yaml + inventory + credentials (+ escalation.yaml with the webhook channels)."""
    home.mkdir(parents=True, exist_ok=True)
    sites = [{"id": f"site-{k:02d}", "name": f"东湖{k + 1}号点位"} for k in range(args.sites)]
    cams = []
    for i in range(devices):
        ident, site = device(i, args.sites)
        cams.append({"id": ident, "kind": "fixed_camera", "site": site,
                     "name": f"{site}路口枪机{i // args.sites + 1}",
                     "address": f"127.90.{i // 250}.{i % 250 + 1}"})
    (home / "inventory.yaml").write_text(yaml.safe_dump(
        {"sites": sites, "defaults": {"credentials": "lab"}, "devices": cams},
        allow_unicode=True, sort_keys=False))
    cred = home / "credentials.yaml"
    cred.write_text(yaml.safe_dump({"credentials": {"lab": {"version": "2c",
                                                            "community": "public"}}}))
    cred.chmod(0o600)
    agent: dict[str, Any] = {
        "agent": {"id": "bench"}, "listen": listen, "state_dir": "state",
        "log_level": "warning", "inventory": ["inventory.yaml"],
        "credentials": "credentials.yaml", "rules": {"files": []},
        "reachability": {"enabled": False}, "onvif": {"events": False},
        "tickets": {"url": url, "tokens": "tokens.yaml",
                    "escalation_interval": f"{args.api_escalation_interval:g}s"}}
    if channels:
        agent["notifications"] = {"channels": [
            {"name": name, "type": "webhook", "format": fmt, "url": f"http://127.0.0.1:{port}/"
             f"{name}", "storm_window": f"{args.storm_window:g}s"} for name, fmt in CHANNELS]}
        policy = yaml.safe_load((ROOT / "config" / "escalation.yaml").read_text())
        names = [name for name, _ in CHANNELS]
        # the first tier (technician) gets both channels, the next ones one each, then none
        plan = [names, names[:1], names[1:]]
        for k, tier in enumerate(policy["tiers"]):
            tier["channels"] = plan[k] if k < len(plan) else []
        (home / "escalation.yaml").write_text(yaml.safe_dump(policy, allow_unicode=True,
                                                             sort_keys=False))
    (home / "agent.yaml").write_text(yaml.safe_dump(agent, allow_unicode=True, sort_keys=False))
    return home / "agent.yaml"


def make_faults(n: int, first: int, sites: int, now: float) -> list:
    """n firing faults on devices first..first+n-1, rules in turn."""
    from rules.faults import Fault

    out = []
    for i in range(first, first + n):
        ident, site = device(i, sites)
        rule, level, zh, en, inputs = RULES[i % len(RULES)]
        out.append(Fault(
            key=f"{rule}:{ident}", rule=rule, group="bench-cameras", subject=ident,
            device=ident, site=site, kind="fixed_camera", series={}, labels={"team": "video"},
            level=level, state="firing", pending_since=now - 60, last_seen=now, fired_at=now,
            value=next(iter(inputs.values())),
            texts={"summary": {"zh": f"{ident} {zh}", "en": f"{ident}: {en}"},
                   "description": {"zh": f"{site} 的 {ident} {zh}，请尽快处理。",
                                   "en": f"{ident} at {site}: {en}; please handle it."}},
            evidence={"at": now, "inputs": dict(inputs), "expr": f"{rule} condition",
                      "series": {}, "labels": {"site": site, "kind": "fixed_camera"}}))
    return out


# --- the storm ------------------------------------------------------------------------------


def make_runner(config: Any) -> Any:
    from agent.notify import MemoryDeadLetters, Notifier
    from agent.ticketing import TicketRunner
    from agent.tickets.store import TicketStore

    settings = config.settings
    store = TicketStore(settings.tickets.url, settings.agent.id,
                        reopen_window=settings.tickets.reopen_window)
    notifier = Notifier(list(settings.notifications.channels), dead_letters=MemoryDeadLetters())
    return TicketRunner(config, store, notifier)


async def notified_tickets(store: Any) -> int:
    """Tickets with a `notified` event (one SELECT on the store's own engine)."""
    from sqlalchemy import distinct, func, select

    from agent.tickets.models import TicketEvent

    async with store.engine.connect() as conn:
        return int(await conn.scalar(select(func.count(distinct(TicketEvent.ticket_id))).where(
            TicketEvent.kind == "notified")) or 0)


async def storm(runner: Any, changed: list, active: list, receiver: Receiver, expect: int,
                args: argparse.Namespace, mode: str, pg: Postgres | None) -> dict:
    """One storm: on_cycle(changed, active), flushes, until `expect` tickets are notified and
    every channel has had every fault of `changed`."""
    from agent.tickets.store import TicketFilter

    n = len(changed)
    receiver.reset()
    names = [name for name, _ in CHANNELS]
    window = args.storm_window
    state: dict[str, float] = {}

    async def complete() -> bool:
        receiver.drain()
        if any(receiver.faults(c) < n for c in names):
            return False
        return await notified_tickets(runner.store) >= expect

    async def daemon_loop() -> float:
        while True:
            await runner.flush()
            if "cycle" in state and await complete():
                return time.monotonic()
            await asyncio.sleep(args.tick)

    async def ideal() -> float:
        due = state["cycle"] + window  # the last message's window has passed then
        while True:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            await runner.flush()
            if await complete():
                return time.monotonic()
            due = time.monotonic() + 0.01

    pg_cpu = pg.cpu() if pg else 0.0
    c0 = cpu_seconds()
    t0 = time.monotonic()
    task = asyncio.get_running_loop().create_task(daemon_loop()) if mode == "daemon" else None
    try:
        await runner.on_cycle(changed, active)
        state["cycle"] = time.monotonic()
        end = await asyncio.wait_for(task if task else ideal(), args.timeout)
        done = True
    except TimeoutError:
        end, done = time.monotonic(), False
    finally:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    cpu = cpu_seconds() - c0
    pg_cpu = pg.cpu() - pg_cpu if pg else None
    receiver.drain()
    tickets = await runner.store.count(TicketFilter(not_closed=True))
    notified = await notified_tickets(runner.store)
    wall = end - t0
    per_channel = {}
    for c in names:
        got = [a for a in receiver.arrivals if a[0] == c]
        per_channel[c] = {"messages": len(got), "storm_messages": sum(a[2] == "storm" for a in got),
                          "faults": sum(a[3] for a in got), "bytes": sum(a[4] for a in got),
                          "first_s": min((a[1] - t0 for a in got), default=None),
                          "last_s": max((a[1] - t0 for a in got), default=None)}
    delivered = max((v["last_s"] for v in per_channel.values() if v["last_s"] is not None),
                    default=None)
    one_each = all(v["messages"] == 1 and v["storm_messages"] == 1 for v in per_channel.values())
    return {"mode": mode, "faults": n, "complete": done, "wall_s": wall,
            "on_cycle_s": state["cycle"] - t0, "after_cycle_s": end - state["cycle"],
            "delivered_s": delivered,
            "tickets_per_s": n / wall if wall else None, "cpu_s": cpu, "db_cpu_s": pg_cpu,
            "tickets_open": tickets, "tickets_notified": notified, "channels": per_channel,
            "one_storm_message_per_channel": one_each,
            "dead_letters": len(runner.notifier.dead_letters),
            "met": done and one_each and wall <= args.target}


async def storm_case(config: Any, args: argparse.Namespace, receiver: Receiver, mode: str,
                     pg: Postgres | None, follow_up: bool) -> dict:
    """A fresh store: one storm; with `follow_up`, check() with N open, a second storm while
    they are open, check() with 2N open."""
    runner = make_runner(config)
    try:
        if not await runner.open_store():
            raise RuntimeError(f"the ticket store {config.settings.tickets.url} did not open")
        now = time.time()
        first = make_faults(args.faults, 0, args.sites, now)
        out = await storm(runner, first, first, receiver, args.faults, args, mode, pg)
        say_storm(out)
        if not follow_up:
            return out
        out["check_open_n"] = await timed_checks(runner, 3, pg)
        say(f"    check() of {args.faults} open tickets: median "
            f"{out['check_open_n']['median_s']:.2f} s")
        second = make_faults(args.faults, args.faults, args.sites, time.time())
        out["second"] = await storm(runner, second, first + second, receiver, 2 * args.faults,
                                    args, mode, pg)
        s = out["second"]
        say(f"    second storm with {args.faults} open: {s['wall_s']:.2f} s "
            f"(on_cycle {s['on_cycle_s']:.2f} s), {s['tickets_open']} open")
        out["check_open_2n"] = await timed_checks(runner, 1, pg)
        say(f"    check() of {2 * args.faults} open tickets: "
            f"{out['check_open_2n']['median_s']:.2f} s")
        return out
    finally:
        await runner.close()


async def warm_up(config: Any, args: argparse.Namespace, receiver: Receiver,
                  pg: Postgres | None) -> None:
    """A small untimed storm: one-time costs (imports, templates, SQL compilation caches)."""
    runner = make_runner(config)
    try:
        await runner.open_store()
        faults = make_faults(min(50, args.faults), 0, args.sites, time.time())
        await storm(runner, faults, faults, receiver, len(faults), args, "ideal", pg)
    finally:
        await runner.close()


def say_storm(r: dict) -> None:
    say(f"    {r['wall_s']:.2f} s (on_cycle {r['on_cycle_s']:.2f} s, then "
        f"{r['after_cycle_s']:.2f} s), {r['tickets_per_s']:.0f} tickets/s, CPU "
        f"{r['cpu_s']:.2f} s"
        + (f" + PostgreSQL {r['db_cpu_s']:.2f} s" if r["db_cpu_s"] is not None else "")
        + "; messages " + ", ".join(f"{c} {v['messages']}" for c, v in r["channels"].items())
        + ("" if r["complete"] else "; NOT COMPLETE within --timeout"))


async def timed_checks(runner: Any, times: int, pg: Postgres | None) -> dict:
    walls, cpus, dbs, escalations = [], [], [], 0
    for _ in range(times):
        pg0 = pg.cpu() if pg else 0.0
        c0, t0 = cpu_seconds(), time.monotonic()
        escalations += await runner.check()
        walls.append(time.monotonic() - t0)
        cpus.append(cpu_seconds() - c0)
        if pg:
            dbs.append(pg.cpu() - pg0)
    return {"runs": times, "median_s": statistics.median(walls),
            "cpu_s": statistics.median(cpus), "db_cpu_s": statistics.median(dbs) if dbs else None,
            "escalations": escalations}


def profile_storm(config: Any, args: argparse.Namespace, receiver: Receiver) -> list[dict]:
    profiler = cProfile.Profile()

    async def run() -> None:
        runner = make_runner(config)
        await runner.open_store()
        faults = make_faults(args.faults, 0, args.sites, time.time())
        profiler.enable()
        try:
            await storm(runner, faults, faults, receiver, args.faults, args, "ideal", None)
        finally:
            profiler.disable()
            await runner.close()

    asyncio.run(run())
    rows = []
    for (file, line, name), (_cc, calls, tottime, cumtime, _c) in \
            pstats.Stats(profiler).stats.items():  # type: ignore[attr-defined]
        rows.append({"function": f"{_short(file)}:{line} {name}", "calls": calls,
                     "cum_s": cumtime, "own_s": tottime})
    rows.sort(key=lambda r: -r["cum_s"])
    return rows[:args.top]


def _short(file: str) -> str:
    parts = Path(file).parts
    if "site-packages" in parts:
        return "/".join(parts[parts.index("site-packages") + 1:])
    try:
        return str(Path(file).resolve().relative_to(ROOT))
    except ValueError:
        return Path(file).name if file != "~" else "~"


# --- the baseline ---------------------------------------------------------------------------


def _rows(n: int, sites: int, now: datetime) -> tuple[list[tuple], list[tuple], list[dict]]:
    """Ticket rows, `opened` event rows and message dicts of the same columns and widths as
    Vigil's (same texts, evidence and message fields)."""
    faults = make_faults(n, 0, sites, now.timestamp())
    tickets, events, messages = [], [], []
    at = now.isoformat()
    for k, f in enumerate(faults, 1):
        tickets.append((k, f.key, "bench", f.site, f.device, f.rule, f.level, f.level, "open",
                        f.texts["summary"]["zh"], f.texts["summary"]["en"], at, at, 0))
        events.append((k, at, "agent:bench", "opened", json.dumps(
            {"fault_key": f.key, "level": f.level, "fired_at": at, "evidence": f.evidence},
            ensure_ascii=False)))
        messages.append({"kind": "opened", "key": f.key, "ticket": str(k), "site": f.site,
                         "site_name": f"{f.site}名称", "device": f.device,
                         "device_name": f"{f.device}名称", "level": f.level,
                         "what_zh": f.texts["summary"]["zh"], "what_en": f.texts["summary"]["en"],
                         "since": at, "deadline": (now + timedelta(hours=2)).isoformat(),
                         "link": f"http://127.0.0.1:9830/api/v1/tickets/{k}",
                         "at": now.timestamp()})
    return tickets, events, messages


def _post_all(port: int, messages: list[dict]) -> None:
    for name, _fmt in CHANNELS:
        body = json.dumps({"version": "baseline", "channel": name, "kind": "storm",
                           "count": len(messages), "messages": messages},
                          ensure_ascii=False).encode()
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("POST", f"/{name}", body, {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        conn.close()
        if response.status != 200:
            raise RuntimeError(f"baseline POST: HTTP {response.status}")


SQLITE_TABLES = (
    "CREATE TABLE tickets (id INTEGER PRIMARY KEY, fault_key TEXT, agent_id TEXT, site TEXT, "
    "device TEXT, rule TEXT, level INTEGER, original_level INTEGER, state TEXT, title_zh TEXT, "
    "title_en TEXT, opened_at TEXT, updated_at TEXT, reopen_count INTEGER)",
    "CREATE TABLE ticket_events (id INTEGER PRIMARY KEY, ticket_id INTEGER, at TEXT, "
    "actor TEXT, kind TEXT, data TEXT)")
PG_TABLES = (
    "CREATE TABLE tickets (id integer PRIMARY KEY, fault_key varchar(512), agent_id varchar(64), "
    "site varchar(128), device varchar(128), rule varchar(128), level integer, "
    "original_level integer, state varchar(16), title_zh text, title_en text, "
    "opened_at timestamptz, updated_at timestamptz, reopen_count integer)",
    "CREATE TABLE ticket_events (id serial PRIMARY KEY, ticket_id integer, at timestamptz, "
    "actor varchar(128), kind varchar(32), data json)")
INSERT_TICKET = ("INSERT INTO tickets (id, fault_key, agent_id, site, device, rule, level, "
                 "original_level, state, title_zh, title_en, opened_at, updated_at, "
                 "reopen_count) VALUES ({})".format(", ".join(["{p}"] * 14)))
INSERT_EVENT = ("INSERT INTO ticket_events (ticket_id, at, actor, kind, data) VALUES "
                "({p}, {p}, {p}, {p}, {p})")


def baseline(args: argparse.Namespace, receiver: Receiver, work: Path,
             pg: Postgres | None, k: int) -> dict:
    """The floor: two executemany INSERT transactions and one POST per channel."""
    n = args.faults
    now = datetime.now(UTC)
    tickets, events, messages = _rows(n, args.sites, now)
    notified = [(t[0], now.isoformat(), "agent:bench", "notified",
                 json.dumps({"kind": "opened", "seq": 0, "channels": ["tech", "am"]}))
                for t in tickets]
    if pg is None:
        import sqlite3

        conn = sqlite3.connect(work / f"baseline-{k}.db", isolation_level=None)
        conn.execute("PRAGMA journal_mode = WAL")
        for ddl in SQLITE_TABLES:
            conn.execute(ddl)
        p = "?"
    else:
        import psycopg

        name = f"baseline_{k}"
        pg.create(name)
        conn = psycopg.connect(pg.dsn(name), autocommit=True)
        for ddl in PG_TABLES:
            conn.execute(ddl)
        p = "%s"
    ins_ticket, ins_event = INSERT_TICKET.format(p=p), INSERT_EVENT.format(p=p)
    receiver.reset()
    pg_cpu = pg.cpu() if pg else 0.0
    c0, t0 = cpu_seconds(), time.monotonic()
    if pg is None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(ins_ticket, tickets)
        conn.executemany(ins_event, events)
        conn.execute("COMMIT")
    else:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(ins_ticket, tickets)
            cur.executemany(ins_event, events)
    _post_all(receiver.port, messages)
    if pg is None:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(ins_event, notified)
        conn.execute("COMMIT")
    else:
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(ins_event, notified)
    wall, cpu = time.monotonic() - t0, cpu_seconds() - c0
    pg_cpu = pg.cpu() - pg_cpu if pg else None
    conn.close()
    receiver.drain()
    got = {c: receiver.faults(c) for c, _ in CHANNELS}
    if any(v != n for v in got.values()):
        raise RuntimeError(f"baseline: the receiver got {got}, expected {n} per channel")
    return {"wall_s": wall, "cpu_s": cpu, "db_cpu_s": pg_cpu}


# --- the API under load ---------------------------------------------------------------------


class Agent:
    """The real agent (`vigil run`) in its own process."""

    def __init__(self, home: Path, config: Path, listen: str) -> None:
        vigil = Path(sys.executable).parent / "vigil"
        cmd = [str(vigil)] if vigil.exists() else [sys.executable, "-m", "agent.cli"]
        self.log = home / "agent.log"
        self._out = open(self.log, "w")  # noqa: SIM115  # closed by stop()
        self.proc = subprocess.Popen([*cmd, "run", "-c", str(config)], cwd=home,
                                     stdin=subprocess.DEVNULL, stdout=self._out,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.base = f"http://{listen}"

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the agent exited with {self.proc.returncode}: "
                               f"{self.log.read_text()[-1500:]}")

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def wait_api(self, token: str, timeout: float = 120.0) -> float:
        """Until GET /api/v1/tickets answers 200 (the store is open); the seconds it took."""
        import urllib.error
        import urllib.request

        t0 = time.monotonic()
        request = urllib.request.Request(f"{self.base}/api/v1/tickets?limit=1",
                                         headers={"Authorization": f"Bearer {token}"})
        while time.monotonic() - t0 < timeout:
            self.alive()
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    if response.status == 200:
                        return time.monotonic() - t0
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the agent's API did not answer within {timeout:g}s "
                           f"({self.log.read_text()[-800:]})")

    def wait_quiet(self, timeout: float = 120.0) -> float:
        """Until the agent is idle (its start-up check() of every open ticket is over): under
        5% of a core over two 0.5-s samples in a row."""
        t0 = time.monotonic()
        quiet, last = 0, self.cpu()
        while time.monotonic() - t0 < timeout and quiet < 2:
            time.sleep(0.5)
            self.alive()
            now = self.cpu()
            quiet = quiet + 1 if now - last < 0.025 else 0
            last = now
        return time.monotonic() - t0

    def stop(self) -> None:
        stop_process(self.proc, 15)
        self._out.close()


async def load(agent: Agent, phases: list[tuple[str, str, Any, str, dict | None, float]],
               concurrency: int, ids: list[int], seed: int) -> dict[str, dict]:
    """Each phase: `concurrency` workers send requests back to back for its seconds."""
    import aiohttp

    rng = random.Random(seed)
    out: dict[str, dict] = {}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    async with aiohttp.ClientSession(connector=connector,
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        for name, method, path, token, body, seconds in phases:
            lat: list[float] = []
            errors: dict[str, int] = {}
            deadline = time.monotonic() + seconds

            async def worker(name: str = name, method: str = method, path: Any = path,
                             token: str = token, body: dict | None = body,
                             deadline: float = deadline, lat: list[float] = lat,
                             errors: dict[str, int] = errors) -> None:
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                while time.monotonic() < deadline:
                    url = agent.base + (path(rng.choice(ids)) if callable(path) else path)
                    t = time.perf_counter()
                    try:
                        async with session.request(method, url, headers=headers,
                                                   json=body) as response:
                            await response.read()
                            status = response.status
                    except (aiohttp.ClientError, TimeoutError) as exc:
                        status = type(exc).__name__
                    if status == 200:
                        lat.append(time.perf_counter() - t)
                    else:
                        errors[str(status)] = errors.get(str(status), 0) + 1

            cpu0, t0 = agent.cpu(), time.monotonic()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.monotonic() - t0
            agent.alive()
            cpu = agent.cpu() - cpu0
            entry = out.setdefault(name, {"lat": [], "errors": {}, "seconds": 0.0,
                                          "agent_cpu_s": 0.0})
            entry["lat"] += lat
            entry["seconds"] += elapsed
            entry["agent_cpu_s"] += cpu
            for k, v in errors.items():
                entry["errors"][k] = entry["errors"].get(k, 0) + v
            say(f"    {name:<8} {len(lat) / elapsed:7.0f} req/s, p50 "
                f"{percentile(lat, 0.5) * 1000:6.1f} ms, p99 {percentile(lat, 0.99) * 1000:7.1f} "
                f"ms, agent CPU {cpu / elapsed:.2f} cores"
                + (f", errors {errors}" if errors else ""))
    return out


def api_case(args: argparse.Namespace, work: Path, url: str, backend: str) -> dict:
    from agent.auth import add_user

    home = work / f"api-{backend}"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{s.getsockname()[1]}"
    config = write_site(home, args, url, 0, 0, listen, channels=False)
    viewer = add_user(home / "tokens.yaml", "bench.viewer", "viewer")
    tech = add_user(home / "tokens.yaml", "bench.tech", "technician")
    agent = Agent(home, config, listen)
    try:
        api_up = agent.wait_api(viewer)
        quiet = agent.wait_quiet()
        say(f"  agent pid {agent.proc.pid} on {listen}: API up after {api_up:.1f} s, idle "
            f"after {quiet:.1f} s more (start-up check() of the open tickets), RSS "
            f"{proc_status_kb(agent.proc.pid, 'VmRSS') / 1024:.0f} MB")
        import urllib.request

        ids: list[int] = []
        while True:
            req = urllib.request.Request(
                f"{agent.base}/api/v1/tickets?limit=1000&offset={len(ids)}",
                headers={"Authorization": f"Bearer {viewer}"})
            with urllib.request.urlopen(req, timeout=30) as response:
                page = json.load(response)
            ids += [t["id"] for t in page]
            if len(page) < 1000:
                break
        half = args.api_seconds / 2
        phases = [
            ("healthy", "GET", "/-/healthy", "", None, half),
            ("list", "GET", "/api/v1/tickets?state=open&limit=50", viewer, None,
             args.api_seconds),
            ("show", "GET", lambda i: f"/api/v1/tickets/{i}", viewer, None, args.api_seconds),
            ("comment", "POST", lambda i: f"/api/v1/tickets/{i}/comments", tech,
             {"text": "已到现场，正在检查线路 (bench)"}, args.api_seconds),
            ("healthy", "GET", "/-/healthy", "", None, half)]
        say(f"  load from this process: {args.concurrency} concurrent requests, "
            f"{args.api_seconds:g} s per endpoint, {len(ids)} tickets")
        rss0 = proc_status_kb(agent.proc.pid, "VmRSS") / 1024
        raw = asyncio.run(load(agent, phases, args.concurrency, ids, args.seed))
        out: dict[str, Any] = {"tickets": len(ids), "api_up_s": api_up, "startup_check_s": quiet,
                               "rss_before_mb": rss0,
                               "peak_rss_mb": proc_status_kb(agent.proc.pid, "VmHWM") / 1024,
                               "endpoints": {}}
        for name, e in raw.items():
            lat = e["lat"]
            out["endpoints"][name] = {
                "requests": len(lat), "req_per_s": len(lat) / e["seconds"],
                "p50_ms": percentile(lat, 0.5) * 1000, "p99_ms": percentile(lat, 0.99) * 1000,
                "max_ms": max(lat, default=float("nan")) * 1000, "errors": e["errors"],
                "agent_cpu_s": e["agent_cpu_s"],
                "agent_cores": e["agent_cpu_s"] / e["seconds"],
                "agent_cpu_ms_per_request": e["agent_cpu_s"] / len(lat) * 1000 if lat else None}
        base = out["endpoints"]["healthy"]
        for e in out["endpoints"].values():
            e["p50_ratio"] = e["p50_ms"] / base["p50_ms"]
            e["p99_ratio"] = e["p99_ms"] / base["p99_ms"]
        out["agent_cpu_s_total"] = agent.cpu()
        return out
    finally:
        agent.stop()


# --- one backend -----------------------------------------------------------------------------


def backend_case(backend: str, args: argparse.Namespace, work: Path, receiver: Receiver,
                 pg: Postgres | None) -> dict:
    from agent.config import load_config

    out: dict[str, Any] = {"ideal": [], "daemon": [], "baseline": []}
    home = work / f"storm-{backend}"
    devices = 2 * args.faults
    run_no = 0

    def config_for(run: int) -> Any:
        if pg is None:
            url = f"sqlite+aiosqlite:///{home}/tickets-{run}.db"
        else:
            url = pg.create(f"vigil_{run}")
        return load_config(write_site(home, args, url, receiver.port, devices,
                                      "127.0.0.1:9830")), url

    config, _ = config_for(0)
    asyncio.run(warm_up(config, args, receiver, pg))
    say("  warm-up storm done (50 faults, not counted)")
    for mode, repeat in (("ideal", args.repeat), ("daemon", args.daemon_repeat)):
        for k in range(repeat):
            run_no += 1
            config, url = config_for(run_no)
            last = mode == "ideal" and k == repeat - 1
            say(f"  storm {mode} {k + 1}/{repeat}: {args.faults} faults ...")
            r = asyncio.run(storm_case(config, args, receiver, mode, pg, follow_up=last))
            out[mode].append(r)
            if last:
                out["api_url"] = url
    for k in range(args.repeat):
        out["baseline"].append(baseline(args, receiver, home, pg, k))
    b = out["baseline"]
    say(f"  baseline x{len(b)}: median {statistics.median(x['wall_s'] for x in b):.3f} s, CPU "
        f"{statistics.median(x['cpu_s'] for x in b):.3f} s")
    if args.api_seconds > 0:
        say(f"  API under load ({backend}) ...")
        out["api"] = api_case(args, work, out["api_url"], backend)
    return out


def summarise(r: dict, args: argparse.Namespace) -> None:
    """Medians of the storms and ratios against the baseline, in place."""
    b = r["baseline"]
    base_wall = statistics.median(x["wall_s"] for x in b)
    base_cpu = statistics.median(x["cpu_s"] for x in b)
    r["baseline_median"] = {"wall_s": base_wall, "cpu_s": base_cpu,
                            "db_cpu_s": statistics.median(x["db_cpu_s"] for x in b)
                            if b[0]["db_cpu_s"] is not None else None}
    for mode in ("ideal", "daemon"):
        runs = r[mode]
        if not runs:
            continue
        wall = statistics.median(x["wall_s"] for x in runs)
        cpu = statistics.median(x["cpu_s"] for x in runs)
        r[f"{mode}_median"] = {
            "wall_s": wall, "on_cycle_s": statistics.median(x["on_cycle_s"] for x in runs),
            "delivered_s": statistics.median(x["delivered_s"] or float("nan") for x in runs),
            "cpu_s": cpu, "tickets_per_s": args.faults / wall,
            "db_cpu_s": statistics.median(x["db_cpu_s"] for x in runs)
            if runs[0]["db_cpu_s"] is not None else None,
            "messages": {c: [x["channels"][c]["messages"] for x in runs] for c, _ in CHANNELS},
            "met": sum(x["met"] for x in runs), "runs": len(runs),
            "wall_ratio": wall / base_wall, "cpu_ratio": cpu / base_cpu}


# --- the report -----------------------------------------------------------------------------


def report(out: dict, args: argparse.Namespace, argv: list[str]) -> None:
    say("\n================ results ================")
    say(f"command: bench/run --suite tickets {' '.join(argv)}".rstrip())
    say(f"{args.faults} faults over {args.sites} sites; 2 webhook channels (storm_window "
        f"{args.storm_window:g}s); target: fully ticketed and notified, one storm message per "
        f"channel, within {args.target:g} s; medians of {args.repeat} ideal / "
        f"{args.daemon_repeat} daemon runs, each on a fresh database")
    backends = {k: v for k, v in out["backends"].items() if "skipped" not in v}
    for name, v in out["backends"].items():
        if "skipped" in v:
            say(f"{name}: SKIPPED ({v['skipped']})")
    if not backends:
        return
    say("")
    say(f"{'storm':<20}{'wall s':>7}{'on_cycle':>9}{'sent':>6}{'tickets/s':>10}{'CPU s':>7}"
        f"{'DB CPU':>7}{'msgs/ch':>8}{'x base':>7}{'CPU x':>6}  target")
    for name, v in backends.items():
        for mode in ("ideal", "daemon"):
            m = v.get(f"{mode}_median")
            if not m:
                continue
            msgs = "/".join(f"{statistics.median(x):g}" for x in m["messages"].values())
            db = f"{m['db_cpu_s']:.2f}" if m["db_cpu_s"] is not None else "-"
            say(f"{name + ' ' + mode:<20}{m['wall_s']:>7.2f}{m['on_cycle_s']:>9.2f}"
                f"{m['delivered_s']:>6.2f}{m['tickets_per_s']:>10.0f}{m['cpu_s']:>7.2f}{db:>7}"
                f"{msgs:>8}{m['wall_ratio']:>6.0f}x{m['cpu_ratio']:>5.0f}x  "
                f"{'MET' if m['met'] == m['runs'] else 'NOT met'} ({m['met']}/{m['runs']})")
        b = v["baseline_median"]
        db = f"{b['db_cpu_s']:.2f}" if b["db_cpu_s"] is not None else "-"
        say(f"{name + ' baseline':<20}{b['wall_s']:>7.3f}{'':>15}"
            f"{args.faults / b['wall_s']:>10.0f}{b['cpu_s']:>7.3f}{db:>7}{'1/1':>8}")
    say("  wall: from the on_cycle call until all are ticketed, delivered and `notified` is "
        "recorded;\n  sent: the last message's arrival at the receiver; CPU: this process; "
        "DB CPU: the PostgreSQL server;\n  ideal: one flush once the last message's window "
        f"passed; daemon: a flush every {args.tick:g} s alongside on_cycle;\n  x base, CPU x: "
        "ratios to the baseline (wall, CPU)")
    say("")
    say(f"{'steady state':<22}{'check() N open':>16}{'CPU s':>7}{'2nd storm s':>12}"
        f"{'on_cycle':>9}{'check() 2N':>11}")
    for name, v in backends.items():
        last = v["ideal"][-1]
        if "check_open_n" not in last:
            continue
        c1, s2, c2 = last["check_open_n"], last["second"], last["check_open_2n"]
        say(f"{name:<22}{c1['median_s']:>16.2f}{c1['cpu_s']:>7.2f}{s2['wall_s']:>12.2f}"
            f"{s2['on_cycle_s']:>9.2f}{c2['median_s']:>11.2f}")
    apis = {k: v["api"] for k, v in backends.items() if "api" in v}
    if apis:
        say("")
        say(f"{'API':<18}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}{'p50 x':>7}"
            f"{'p99 x':>7}{'cores':>7}{'CPU ms/req':>11}  errors")
        for name, a in apis.items():
            for ep in ("list", "show", "comment", "healthy"):
                e = a["endpoints"][ep]
                per = e["agent_cpu_ms_per_request"]
                say(f"{name + ' ' + ep:<18}{e['req_per_s']:>8.0f}{e['p50_ms']:>8.1f}"
                    f"{e['p99_ms']:>8.1f}{e['max_ms']:>8.0f}{e['p50_ratio']:>6.1f}x"
                    f"{e['p99_ratio']:>6.1f}x{e['agent_cores']:>7.2f}"
                    f"{per if per is None else format(per, '.2f'):>11}  "
                    f"{e['errors'] or ''}")
            say(f"  {name} agent: peak RSS {a['peak_rss_mb']:.0f} MB (VmHWM), {a['tickets']} "
                f"tickets, {a['agent_cpu_s_total']:.1f} CPU s in all (start-up included)")
        say(f"  ({args.concurrency} concurrent requests from this process; x = ratio to "
            f"GET /-/healthy of the same agent)")
    if out.get("profile"):
        say("")
        say(f"cProfile of one SQLite ideal storm (top {len(out['profile'])} by cumulative "
            f"time; profiling overhead included):")
        say(f"  {'cum s':>7}{'own s':>7}{'calls':>9}  function")
        for r in out["profile"]:
            say(f"  {r['cum_s']:>7.2f}{r['own_s']:>7.2f}{r['calls']:>9}  {r['function']}")


def parse(argv: list[str]) -> argparse.Namespace:
    from agent.ticketing import TICK

    parser = argparse.ArgumentParser(
        prog="bench/run --suite tickets", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--faults", type=int, default=1000, help="faults in the storm")
    parser.add_argument("--sites", type=int, default=8, help="sites the faults are spread over")
    parser.add_argument("--backends", default="sqlite,postgresql",
                        help="comma list of sqlite, postgresql")
    parser.add_argument("--repeat", type=int, default=3,
                        help="ideal storms (and baselines) per backend, each on a fresh database")
    parser.add_argument("--daemon-repeat", type=int, default=1,
                        help="daemon-mode storms per backend (0: none)")
    parser.add_argument("--storm-window", type=float, default=0.2,
                        help="storm_window of both channels, seconds")
    parser.add_argument("--tick", type=float, default=TICK,
                        help="daemon mode: seconds between flushes (agent.ticketing.TICK)")
    parser.add_argument("--target", type=float, default=2.0, help="storm target, seconds")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="give up on a storm after this many seconds")
    parser.add_argument("--api-seconds", type=float, default=10.0,
                        help="load per endpoint, seconds (0: no API case)")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent API requests")
    parser.add_argument("--api-escalation-interval", type=float, default=30.0,
                        help="tickets.escalation_interval of the agent under load, seconds (its "
                             "check() of every open ticket; 30: the default)")
    parser.add_argument("--pg-fsync", choices=("on", "off"), default="on",
                        help="fsync of the PostgreSQL cluster")
    parser.add_argument("--log-level", choices=("debug", "info", "warning", "error"),
                        default="info", help="log level of the storm's agent code (to a file "
                                             "in the work dir, as the daemon logs to its "
                                             "journal)")
    parser.add_argument("--profile", action="store_true",
                        help="one more SQLite ideal storm under cProfile")
    parser.add_argument("--top", type=int, default=25, help="profile rows")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    args.backends = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = set(args.backends) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"--backends: unknown {sorted(unknown)}")
    if args.faults < 1 or args.sites < 1 or args.repeat < 1:
        parser.error("--faults, --sites and --repeat: at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--receiver"]:
        return receiver_main(argv[1:])
    args = parse(argv)
    signal.signal(signal.SIGTERM, interrupt)
    started = time.time()
    c0 = cpu_seconds()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-tickets-"))
    logging.basicConfig(level=getattr(logging, args.log_level.upper()),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        filename=work / "storm-agent.log", force=True)
    out: dict[str, Any] = {"faults": args.faults, "sites": args.sites, "backends": {}}
    receiver: Receiver | None = None
    pg: Postgres | None = None
    try:
        import psycopg

        out["load_average_start"] = os.getloadavg()
        say(f"Vigil tickets benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"psycopg {psycopg.__version__} ({psycopg.pq.__impl__}), load average "
            f"{out['load_average_start'][0]:.1f}, work dir {work}")
        receiver = Receiver(work)
        say(f"  webhook receiver: pid {receiver.proc.pid} on 127.0.0.1:{receiver.port}")
        for backend in args.backends:
            say(f"\n--- {backend}")
            if backend == "postgresql":
                try:
                    pg = Postgres(args.pg_fsync == "on")
                except Unavailable as exc:
                    say(f"  PostgreSQL SKIPPED: {exc}")
                    out["backends"][backend] = {"skipped": str(exc)}
                    continue
                say(f"  PostgreSQL {pg.version}: postmaster pid {pg.pid} on 127.0.0.1:{pg.port}, "
                    f"fsync {args.pg_fsync}")
            r = backend_case(backend, args, work, receiver, pg)
            summarise(r, args)
            out["backends"][backend] = r
            if pg is not None:
                pg.stop()
                pg = None
        if args.profile:
            from agent.config import load_config

            say("\n--- cProfile of one SQLite ideal storm ...")
            home = work / "profile"
            config = load_config(write_site(home, args, f"sqlite+aiosqlite:///{home}/t.db",
                                            receiver.port, args.faults, "127.0.0.1:9830"))
            out["profile"] = profile_storm(config, args, receiver)
        out["receiver_cpu_s"] = receiver.cpu()
        out["load_average_end"] = os.getloadavg()
        out["peak_rss_mb"] = proc_status_kb(os.getpid(), "VmHWM") / 1024
    except KeyboardInterrupt:
        say("\ninterrupted: stopping everything started")
        return 130
    finally:
        if receiver is not None:
            receiver.stop()
        if pg is not None:
            pg.stop()
        logging.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    report(out, args, argv)
    say(f"\nbench process peak RSS {out['peak_rss_mb']:.0f} MB; receiver CPU "
        f"{out['receiver_cpu_s']:.1f} s; load average {out['load_average_start'][0]:.1f} at "
        f"the start, {out['load_average_end'][0]:.1f} at the end (1 min; "
        f"{os.cpu_count()} CPUs); total time {time.time() - started:.0f}s, "
        f"{cpu_seconds() - c0:.0f} CPU s (this process)")
    if args.json:
        for v in out["backends"].values():
            v.pop("api_url", None)
        args.json.write_text(json.dumps(out, indent=1, default=str, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
