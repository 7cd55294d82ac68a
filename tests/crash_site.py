"""A fault storm for the ticket stage's crash tests (tests/test_ticket_crash.py).

- `Site`: a site of N devices that never answer (their SNMP port is a loopback UDP port
  where nothing listens), a test-only rule `SnmpDown` (`snmp_up == 0`, no `for:`, level 2, 3
  or 4 by device kind, no topology), an escalation policy of seconds (every level: respond
  within `respond`) over four tiers, each tier with its own webhook channel. Devices have no
  uplinks, so every device's fault opens its own ticket and escalates three times.
- `Receiver`: the webhook receiver on 127.0.0.1 (aiohttp in a thread), recording every
  POSTed JSON body with its path (one path per tier); it may refuse a share of the posts
  with 503 (seeded) so that retries happen too.
- `Agent`: the real agent process (`python -m agent.cli run -c agent.yaml`), killed with
  SIGKILL by its PID or stopped with SIGTERM.
- `read_store` / `violations`: the ticket store read back (SQLite or PostgreSQL, plain SQL)
  and every invariant of "kill -9 during a storm, restart" checked against it and the
  receiver.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from tests import peers

ROOT = Path(__file__).resolve().parent.parent
VIGIL = [sys.executable, "-m", "agent.cli"]
RULE = "SnmpDown"
TIERS = ("technician", "team_lead", "contractor_manager", "owner")
PATHS = {"technician": "/tech", "team_lead": "/lead", "contractor_manager": "/mgr",
         "owner": "/owner"}
LEVEL_OF_KIND = {"ups": 2, "switch": 3, "env_monitor": 4}
ESCALATIONS = len(TIERS) - 1  # from any level 2-4: three breaches, tiers 2, 3 and 4


def expected_chain(level: int) -> list[tuple[int, int, str]]:
    """(from_level, to_level, tier) of each escalation of a ticket opened at `level`."""
    out = []
    for tier in TIERS[1:]:
        out.append((level, max(1, level - 1), tier))
        level = max(1, level - 1)
    return out


# ------------------------------------------------------------------------------- receiver

class Receiver:
    """Webhook receiver on 127.0.0.1 in its own thread; `bodies` holds (path, body) in the
    order received, also appended to `log` as JSON lines."""

    def __init__(self, log: Path, fail_ratio: float = 0.0, seed: int = 0) -> None:
        self.log = log
        self.fail_ratio = fail_ratio
        self.random = random.Random(seed)
        self.bodies: list[tuple[str, dict]] = []
        self.refused = 0
        self.down = False  # refuse every post (503) while set
        self.port = 0
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopped: asyncio.Event | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            if self.down or self.random.random() < self.fail_ratio:
                self.refused += 1
                return web.Response(status=503, text="busy, try again")
            self.bodies.append((request.path, body))
            with open(self.log, "a", encoding="utf-8") as out:
                out.write(json.dumps({"path": request.path, "at": time.time(), "body": body},
                                     ensure_ascii=False) + "\n")
        return web.Response(text="ok")

    def __enter__(self) -> Receiver:
        ready = threading.Event()
        failed: list[BaseException] = []

        async def serve() -> None:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            app.router.add_post("/{name}", self._handle)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stopped = asyncio.Event()
            ready.set()
            try:
                await self._stopped.wait()
            finally:
                await runner.cleanup()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            try:
                self._loop.run_until_complete(serve())
            except BaseException as exc:  # noqa: BLE001  # reported to the starter
                failed.append(exc)
                ready.set()
            finally:
                self._loop.close()

        self._thread = threading.Thread(target=run, name="webhook-receiver", daemon=True)
        self._thread.start()
        if not ready.wait(10) or failed:
            raise RuntimeError(f"webhook receiver did not start: {failed}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(10)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def messages(self) -> list[tuple[str, dict]]:
        """Every message received, storms unpacked: (path, message facts)."""
        with self._lock:
            return [(path, m) for path, body in self.bodies for m in body["messages"]]


# ----------------------------------------------------------------------------------- site

@dataclass
class Site:
    work: Path
    store_url: str
    receiver: Receiver
    respond: str = "2s"
    channel: str = ("storm_window: 1s, storm_threshold: 5, rate_per_minute: 60000, "
                    "burst: 1000, attempts: 8, backoff: 50ms, max_backoff: 200ms, timeout: 5s")
    http_port: int = field(default_factory=lambda: peers.free_port(socket.SOCK_STREAM))
    dead_port: int = field(default_factory=peers.free_port)
    devices: list[tuple[str, str]] = field(default_factory=list)

    def add_devices(self, n: int) -> None:
        kinds = list(LEVEL_OF_KIND)
        start = len(self.devices)
        self.devices += [(f"d{i:04d}", kinds[i % len(kinds)]) for i in range(start, start + n)]

    def expected_keys(self) -> dict[str, int]:
        """Fault key -> level, for every device."""
        return {f"{RULE}:{d}": LEVEL_OF_KIND[kind] for d, kind in self.devices}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def write(self) -> Path:
        w = self.work
        (w / "credentials.yaml").write_text(
            "credentials:\n  nobody:\n    version: 2c\n    community: nobody\n")
        (w / "credentials.yaml").chmod(0o600)
        devices = "".join(
            f"  - {{id: {d}, kind: {kind}, site: lab, address: 127.0.0.1, "
            f"port: {self.dead_port}, credentials: nobody}}\n" for d, kind in self.devices)
        (w / "inventory.yaml").write_text("sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
                                          + devices)
        (w / "crash-rules.yaml").write_text(
            "groups:\n  - name: crash\n    rules:\n"
            f"      - name: {RULE}\n"
            "        expr: snmp_up == 0\n"
            "        level: 3\n"
            "        levels:\n"
            "          - {when: 'device.kind == \"ups\"', level: 2}\n"
            "          - {when: 'device.kind == \"env_monitor\"', level: 4}\n"
            "        summary:\n"
            "          zh: '设备 {{ device.id }} 无应答'\n"
            "          en: 'Device {{ device.id }} does not answer'\n")
        tiers = "".join(f"  - {{name: {t}, channels: [hook-{PATHS[t][1:]}]}}\n" for t in TIERS)
        levels = "".join(f"  {lv}: {{respond: {self.respond}, repair: 1h}}\n"
                         for lv in (1, 2, 3, 4))
        (w / "escalation.yaml").write_text(f"tiers:\n{tiers}levels:\n{levels}")
        hooks = "".join(
            f"    - {{name: hook-{PATHS[t][1:]}, type: webhook, url: '"
            f"{self.receiver.url(PATHS[t])}', {self.channel}}}\n" for t in TIERS)
        (w / "agent.yaml").write_text(
            "agent: {id: crash}\n"
            f"listen: 127.0.0.1:{self.http_port}\n"
            "state_dir: state\n"
            "inventory: [inventory.yaml]\n"
            "credentials: credentials.yaml\n"
            "snmp: {engine: builtin, timeout: 200ms, retries: 0}\n"
            "schedule: {default_interval: 1s}\n"
            "reachability: {enabled: false}\n"
            "rules: {files: [crash-rules.yaml], interval: 1s}\n"
            f"tickets: {{url: '{self.store_url}', escalation: escalation.yaml, "
            "escalation_interval: 1s}\n"
            f"notifications:\n  channels:\n{hooks}")
        return w / "agent.yaml"


# ---------------------------------------------------------------------------------- agent

class Agent:
    """The real agent, its output in `log`; ended by its PID only."""

    def __init__(self, config: Path, log: Path) -> None:
        self.log = log
        self.out = open(log, "w")  # noqa: SIM115 - open for the agent's whole life
        self.started = time.monotonic()
        self.proc = subprocess.Popen([*VIGIL, "run", "-c", str(config)], stdout=self.out,
                                     stderr=subprocess.STDOUT, cwd=ROOT,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def age(self) -> float:
        return time.monotonic() - self.started

    def kill(self) -> None:
        """SIGKILL, by PID."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.out.close()

    def stop(self) -> int:
        """SIGTERM (SIGKILL after the grace period); the exit code."""
        peers.stop(self.proc, grace=30)
        self.out.close()
        return self.proc.returncode

    def alive(self) -> None:
        if self.proc.poll() is not None:
            raise AssertionError(f"vigil exited {self.proc.returncode}: "
                                 + self.log.read_text()[-3000:])

    def get(self, url: str) -> Any:
        with urllib.request.urlopen(url, timeout=5) as response:
            return json.load(response)


# ---------------------------------------------------------------------------------- store

@dataclass
class StoreView:
    tickets: dict[int, dict[str, Any]]
    events: dict[int, list[dict[str, Any]]]  # ticket id -> events in id order

    def summary(self) -> dict[str, int]:
        kinds = Counter(e["kind"] for evs in self.events.values() for e in evs)
        pending = sum(len(_unnotified(evs)) for evs in self.events.values())
        return {"tickets": len(self.tickets), "escalated": kinds["escalated"],
                "notified": kinds["notified"], "unnotified": pending}


def sync_url(url: str) -> str:
    """The store's URL for a synchronous reader (the agent's URL names an async driver);
    SQLite read-only, so that reading never creates or changes the file."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        return f"sqlite:///file:{u.database}?mode=ro&uri=true"
    return u.render_as_string(hide_password=False)  # psycopg 3 is sync and async


def read_store(url: str) -> StoreView:
    """Tickets and their timelines; empty when the store does not exist yet (the agent was
    killed before it created it)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite" and not Path(u.database or "").exists():
        return StoreView({}, {})
    engine = create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            if not inspect(conn).has_table("ticket_events"):
                return StoreView({}, {})
        with engine.connect() as conn:
            tickets = {r.id: dict(r._mapping) for r in conn.execute(text(
                "SELECT id, fault_key, state, level, original_level, device FROM tickets"))}
            events: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for r in conn.execute(text("SELECT id, ticket_id, kind, data, at FROM "
                                       "ticket_events ORDER BY id")):
                data = r.data if isinstance(r.data, dict) else json.loads(r.data or "{}")
                events[r.ticket_id].append({"id": r.id, "kind": r.kind, "data": data,
                                            "at": r.at})
    finally:
        engine.dispose()
    return StoreView(tickets, dict(events))


def _unnotified(events: list[dict[str, Any]]) -> list[tuple[str, int]]:
    notified = {(e["data"].get("kind"), e["data"].get("seq", 0)) for e in events
                if e["kind"] == "notified"}
    wanted = [("opened", 0)] if any(e["kind"] == "opened" for e in events) else []
    wanted += [("escalated", e["data"].get("seq")) for e in events if e["kind"] == "escalated"]
    return [w for w in wanted if w not in notified]


def outstanding(view: StoreView, expected: dict[str, int]) -> dict[str, int]:
    """Work the agent had not finished: faults without a ticket, escalations not yet
    recorded (of the three each ticket gets), events not yet notified."""
    keys = {t["fault_key"] for t in view.tickets.values()}
    escalated = sum(1 for evs in view.events.values() for e in evs if e["kind"] == "escalated")
    return {"without_ticket": len(set(expected) - keys),
            "escalations_to_come": ESCALATIONS * len(view.tickets) - escalated,
            "unnotified": view.summary()["unnotified"]}


# ----------------------------------------------------------------------------- invariants

def violations(view: StoreView, expected: dict[str, int], received: list[tuple[str, dict]],
               complete: bool) -> list[str]:
    """Every broken invariant, one line each. `complete`: after the settling run (every
    fault ticketed, every escalation due recorded, every event notified); else only what
    must hold at any moment, e.g. right after a SIGKILL."""
    out: list[str] = []
    by_key: dict[str, list[int]] = defaultdict(list)
    for tid, t in view.tickets.items():
        by_key[t["fault_key"]].append(tid)
    for key, ids in sorted(by_key.items()):
        if len(ids) > 1:
            out.append(f"fault {key} has {len(ids)} tickets: {sorted(ids)}")
        if key not in expected:
            out.append(f"ticket(s) {ids} for {key}, a fault that should not exist")
    if complete:
        for key in sorted(set(expected) - set(by_key)):
            out.append(f"fault {key} has no ticket")

    for tid, t in sorted(view.tickets.items()):
        events = view.events.get(tid, [])
        where = f"ticket {tid} ({t['fault_key']})"
        opened = [e for e in events if e["kind"] == "opened"]
        if len(opened) != 1:
            out.append(f"{where}: {len(opened)} 'opened' events")
        level = expected.get(t["fault_key"])
        if level is not None and t["original_level"] != level:
            out.append(f"{where}: opened at level {t['original_level']}, the fault is {level}")
        if t["state"] != "open":
            out.append(f"{where}: state {t['state']} (nothing acknowledged it)")
        escalated = [e["data"] for e in events if e["kind"] == "escalated"]
        seqs = [d.get("seq") for d in escalated]
        if seqs != list(range(1, len(seqs) + 1)):
            out.append(f"{where}: escalation seqs {seqs} (want 1, 2, ... each once)")
        chain = expected_chain(t["original_level"])
        got = [(d.get("from_level"), d.get("to_level"), d.get("tier")) for d in escalated]
        if got != chain[:len(got)]:
            out.append(f"{where}: escalations {got}, want a prefix of {chain}")
        if complete and len(escalated) != len(chain):
            out.append(f"{where}: {len(escalated)} escalations recorded, want {len(chain)}")
        if escalated and t["level"] != escalated[-1].get("to_level"):
            out.append(f"{where}: level {t['level']} but the last escalation went to "
                       f"{escalated[-1].get('to_level')}")
        if complete:
            for kind, seq in _unnotified(events):
                out.append(f"{where}: {kind} #{seq} never marked notified")

    # What the receiver got: (path, key, kind, level) identifies a notification: 'opened'
    # goes to the first tier at the original level; escalation n to tier n+1 at its to_level,
    # and each escalation of a ticket changes the level or the tier.
    wanted: dict[tuple[str, str, str, int], tuple[int, str, int]] = {}
    for tid, t in view.tickets.items():
        events = view.events.get(tid, [])
        if any(e["kind"] == "opened" for e in events):
            wanted[(PATHS[TIERS[0]], t["fault_key"], "opened", t["original_level"])] = \
                (tid, "opened", 0)
        for e in events:
            if e["kind"] == "escalated":
                d = e["data"]
                wanted[(PATHS.get(d.get("tier"), "?"), t["fault_key"], "escalated",
                        d.get("to_level"))] = (tid, "escalated", d.get("seq"))
    got = Counter((path, m["key"], m["kind"], m["level"]) for path, m in received)
    tickets_of = defaultdict(set)
    for path, m in received:
        tickets_of[(path, m["key"], m["kind"], m["level"])].add(m["ticket"])
    for ident, n in sorted(got.items()):
        if ident not in wanted:
            out.append(f"received {n}x {ident}, which no recorded event explains "
                       "(an escalation that fired twice, or to the wrong tier?)")
        elif tickets_of[ident] != {str(wanted[ident][0])}:
            out.append(f"received {ident} for ticket(s) {sorted(tickets_of[ident])}, "
                       f"recorded on ticket {wanted[ident][0]}")
    for ident, (tid, kind, seq) in sorted(wanted.items()):
        if ident in got:
            continue
        notified = (kind, seq) not in _unnotified(view.events.get(tid, []))
        if complete or notified:
            out.append(f"ticket {tid}: {kind} #{seq} {ident} never received"
                       + (" although marked notified (LOST)" if notified else ""))
    return out


def received_stats(received: list[tuple[str, dict]]) -> dict[str, int]:
    got = Counter((path, m["key"], m["kind"], m["level"]) for path, m in received)
    return {"messages": len(received), "distinct": len(got),
            "repeated": sum(n - 1 for n in got.values())}


def tracebacks(log: Path) -> list[str]:
    """Each traceback in an agent log, with the log line that introduced it (a stop, too,
    must log none: agent/scheduler.py keeps APScheduler from logging polls it cancels)."""
    lines = log.read_text(errors="replace").splitlines()
    out = []
    for i, line in enumerate(lines):
        if line.startswith("Traceback"):
            end = i + 1
            while end < len(lines) and (lines[end].startswith((" ", "\t"))
                                        or not lines[end][:4].isdigit()):
                end += 1
            out.append("\n".join(lines[max(0, i - 1):end]))
    return out
