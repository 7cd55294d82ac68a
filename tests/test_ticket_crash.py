"""Crash safety of the ticket stage: kill -9 the agent during a fault storm, restart, repeat.

The real agent (`python -m agent.cli run`) watches a site of a few hundred devices that never
answer (tests/crash_site.py): within seconds of its start every device has a firing fault,
each opening its own ticket, announced to the first tier; escalation limits of seconds make
every ticket escalate three times (tiers 2, 3, 4), each tier with its own webhook on
loopback. The receiver refuses a share of the posts (503), so retries happen too.

Each round adds a batch of devices (a new storm of openings), starts the agent and SIGKILLs
it at a random moment (seeded: VIGIL_CRASH_SEED; the seed and every kill time are printed)
while tickets are being opened, escalated and notified. After VIGIL_CRASH_ROUNDS rounds the
agent runs once more until nothing is left to do, and is stopped with SIGTERM. Then, from
the store and the receiver:

- every firing fault has exactly one ticket (none missing, none doubled, none extra);
- every `opened` and `escalated` event of every ticket reached its tier's receiver at least
  once (receivers deduplicate on fault key, kind and level) and is marked `notified`;
- escalations of a ticket have seqs 1, 2, 3, each once, its levels stepping down one at a
  time (staying at 1), each to the next tier: none fired twice, none skipped; the receiver
  got nothing no recorded event explains;
- what must hold at every moment holds right after each kill too;
- no traceback in any agent log.

PostgreSQL: the same against a throwaway server (tests/peers.postgres), fewer rounds
(VIGIL_CRASH_PG_ROUNDS). In the suite 3 and 1 rounds; `bench/run --suite faults` runs many
more (--crash-rounds).
"""

from __future__ import annotations

import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from agent.config import load_config
from agent.notify import MemoryDeadLetters, Notifier
from agent.ticketing import TicketRunner
from agent.tickets.store import TicketStore
from rules.faults import Fault
from tests import peers
from tests.crash_site import (
    ESCALATIONS,
    Agent,
    Receiver,
    Site,
    StoreView,
    expected_chain,
    outstanding,
    read_store,
    received_stats,
    tracebacks,
    violations,
)

pytestmark = pytest.mark.faults

ROUNDS = int(os.environ.get("VIGIL_CRASH_ROUNDS", "3"))
PG_ROUNDS = int(os.environ.get("VIGIL_CRASH_PG_ROUNDS", "1"))
DEVICES = 300  # at the first start
BATCH = 20  # more devices at each further round: a new storm of openings in every round
KILL_AFTER = (1.5, 8.0)  # seconds after the start: store opening, faults firing, tickets
#                          opening (from ~2.5 s), escalations and notifications (from ~5 s)
FAIL_RATIO = 0.2  # posts the receiver refuses with 503
SETTLE = 90.0  # the last run's time to finish everything (it takes ~10-20 s)


def _seed() -> int:
    return int(os.environ.get("VIGIL_CRASH_SEED") or random.SystemRandom().randrange(10**6))


def crash_storm(work: Path, store_url: str, rounds: int, seed: int) -> dict:
    """Run the rounds and the settling run; return what happened (the store and receiver are
    checked by the caller)."""
    rng = random.Random(seed)
    print(f"\ncrash storm: seed {seed} (VIGIL_CRASH_SEED={seed} repeats it), {rounds} rounds")
    report: dict = {"seed": seed, "rounds": [], "logs": []}
    with Receiver(work / "received.jsonl", FAIL_RATIO, seed) as receiver:
        site = Site(work, store_url, receiver)
        site.add_devices(DEVICES)
        busy_kills = 0
        for r in range(rounds):
            if r:
                site.add_devices(BATCH)
            config = site.write()
            delay = rng.uniform(*KILL_AFTER)
            log = work / f"vigil-round-{r}.log"
            report["logs"].append(log)
            agent = Agent(config, log)
            try:
                while agent.age() < delay:
                    agent.alive()
                    time.sleep(0.05)
            finally:
                agent.kill()
            expected = site.expected_keys()
            view = read_store(store_url)
            left = outstanding(view, expected)
            busy_kills += any(left.values())
            line = {"round": r, "devices": len(expected), "killed_at": round(delay, 2),
                    **view.summary(), **left}
            report["rounds"].append(line)
            print("  " + json.dumps(line))
            broken = violations(view, expected, receiver.messages(), complete=False)
            assert not broken, f"after the SIGKILL of round {r} (seed {seed}):\n" + \
                "\n".join(broken[:40])

        # Settle: one more run until every fault is ticketed, escalated and notified.
        log = work / "vigil-settle.log"
        report["logs"].append(log)
        agent = Agent(site.write(), log)
        expected = site.expected_keys()
        try:
            peers.wait_http(site.url + "/-/ready", timeout=60)
            deadline = time.monotonic() + SETTLE
            while True:
                agent.alive()
                faults = {f["key"] for f in agent.get(site.url + "/api/v1/faults")
                          if f["state"] == "firing"}
                left = outstanding(read_store(store_url), expected)
                if faults == set(expected) and not any(left.values()):
                    break
                assert time.monotonic() < deadline, \
                    f"not settled within {SETTLE}s (seed {seed}): {left}; firing " \
                    f"{len(faults)} of {len(expected)}"
                time.sleep(0.5)
            report["settled_after"] = round(agent.age(), 1)
            report["firing"] = faults
        finally:
            report["exit"] = agent.stop()
        time.sleep(0.2)  # the receiver thread has answered the last post
        report["received"] = receiver.messages()
        report["refused"] = receiver.refused
        report["expected"] = expected
        report["busy_kills"] = busy_kills
    return report


def check(report: dict, store_url: str, work: Path, rounds: int) -> None:
    seed = report["seed"]
    view = read_store(store_url)
    expected = report["expected"]
    stats = {**view.summary(), **received_stats(report["received"]),
             "refused_503": report["refused"], "settled_after_s": report.get("settled_after")}
    print("  final: " + json.dumps(stats))
    assert report["exit"] == 0, f"the agent exited {report['exit']} on SIGTERM"
    assert report["firing"] == set(expected)
    broken = violations(view, expected, report["received"], complete=True)
    assert not broken, f"seed {seed}: {len(broken)} violation(s):\n" + "\n".join(broken[:60])
    assert len(view.tickets) == len(expected)
    assert stats["escalated"] == ESCALATIONS * len(expected)
    dead = work / "state" / "dead-letters" / "dead-letters.jsonl"
    assert not dead.exists() or not dead.read_text().strip(), \
        f"dead letters (seed {seed}): {dead.read_text()[:2000]}"
    found = [tb for log in report["logs"] for tb in tracebacks(log)]
    assert not found, f"tracebacks in the agent's logs (seed {seed}):\n" + \
        "\n\n".join(found[:5])
    # The kills fell inside the storm: the agent had work left when it died.
    assert report["busy_kills"] >= (rounds + 1) // 2, report["rounds"]


@pytest.mark.timeout(120 + 15 * ROUNDS)
def test_kill_9_during_a_fault_storm_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'tickets.db'}"
    report = crash_storm(tmp_path, url, ROUNDS, _seed())
    check(report, url, tmp_path, ROUNDS)


@pytest.mark.timeout(180 + 15 * PG_ROUNDS)
def test_kill_9_during_a_fault_storm_postgresql(tmp_path: Path) -> None:
    with peers.postgres(tmp_path) as url:
        report = crash_storm(tmp_path, url, PG_ROUNDS, _seed())
        check(report, url, tmp_path, PG_ROUNDS)


@pytest.mark.timeout(120)
def test_sigterm_while_a_delivery_is_retried_loses_nothing(tmp_path: Path) -> None:
    """A graceful stop (SIGTERM: systemctl stop/restart) while the receiver is refusing
    posts: what was not delivered must be sent after the restart."""
    with Receiver(tmp_path / "received.jsonl") as receiver:
        site = Site(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'state' / 'tickets.db'}",
                    receiver, respond="1h",  # no escalations: only the 'opened' messages
                    channel="storm_window: 1s, rate_per_minute: 60000, burst: 1000, "
                            "attempts: 20, backoff: 5s, max_backoff: 5s, timeout: 5s")
        site.add_devices(12)
        expected = site.expected_keys()
        receiver.down = True
        agent = Agent(site.write(), tmp_path / "vigil-1.log")
        try:
            deadline = time.monotonic() + 60
            while not receiver.refused:  # the first attempt was refused: 5 s until the next
                agent.alive()
                assert time.monotonic() < deadline, "no delivery attempted"
                time.sleep(0.05)
        finally:
            receiver.down = False  # what is still pending is delivered during the stop
            assert agent.stop() == 0
        before = read_store(site.store_url)
        assert len(before.tickets) == len(expected)

        agent = Agent(site.write(), tmp_path / "vigil-2.log")
        try:
            peers.wait_http(site.url + "/-/ready", timeout=60)
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:  # every 'opened' received, or give up
                got = {m["key"] for path, m in receiver.messages() if m["kind"] == "opened"}
                if got == set(expected):
                    break
                time.sleep(0.5)
        finally:
            assert agent.stop() == 0
        view = read_store(site.store_url)
        broken = violations(view, expected, receiver.messages(), complete=False)
        lost = [line for line in broken if "LOST" in line]
        assert not broken, f"{len(lost)} lost of {len(expected)}:\n" + "\n".join(broken[:20])


SHARED_POLICY = """\
tiers:
  - {name: technician, channels: [hook-tech]}
  - {name: team_lead, channels: [hook-group]}
  - {name: contractor_manager, channels: [hook-group]}
levels:
  1: {respond: 15m, repair: 4h}
  2: {respond: 30m, repair: 8h}
  3: {respond: 2h, repair: 24h}
  4: {respond: 4h, repair: 48h}
"""


async def test_two_escalations_due_at_once_to_a_shared_channel_are_both_sent(tmp_path: Path):
    """Catching up after a restart: two breaches of one ticket at once, team lead and
    contractor manager on one group chat. Each escalation must reach it."""
    with Receiver(tmp_path / "received.jsonl") as receiver:
        hooks = "".join(f"    - {{name: hook-{n}, type: webhook, url: '{receiver.url('/' + n)}'"
                        ", storm_window: 10s, attempts: 1}\n" for n in ("tech", "group"))
        (tmp_path / "agent.yaml").write_text(
            "agent: {id: test}\nstate_dir: state\nrules: {files: []}\n"
            f"notifications:\n  channels:\n{hooks}")
        (tmp_path / "inventory.yaml").write_text(
            "sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
            "  - {id: sw-1, kind: switch, site: lab, address: 127.0.0.1, credentials: lab}\n")
        (tmp_path / "credentials.yaml").write_text(
            "credentials:\n  lab: {version: 2c, community: public}\n")
        (tmp_path / "credentials.yaml").chmod(0o600)
        (tmp_path / "escalation.yaml").write_text(SHARED_POLICY)
        config = load_config(tmp_path / "agent.yaml")
        t0 = datetime(2026, 3, 2, 2, 0, tzinfo=UTC).timestamp()
        now = [t0]
        settings = config.settings
        runner = TicketRunner(
            config, TicketStore(settings.tickets.url, settings.agent.id, lambda: now[0]),
            Notifier(list(settings.notifications.channels), clock=lambda: now[0],
                     dead_letters=MemoryDeadLetters()), lambda: now[0])
        assert await runner.open_store()
        try:
            fault = Fault(key="SnmpDown:sw-1", rule="SnmpDown", group="crash", subject="sw-1",
                          device="sw-1", site="lab", kind="switch", series={}, labels={},
                          level=3, state="firing", pending_since=t0, last_seen=t0,
                          fired_at=t0, texts={"summary": {"zh": "无应答", "en": "no answer"}})
            await runner.on_cycle([fault], [fault])
            now[0] = t0 + 3 * 3600  # past 2 h (level 3) and then 30 min (level 2)
            assert await runner.check() == 2
            now[0] += 11
            await runner.flush()
            notified = sorted(e.data["seq"] for e in await runner.store.timeline(1)
                              if e.kind == "notified" and e.data["kind"] == "escalated")
        finally:
            await runner.close()
        time.sleep(0.2)
        escalated = [(p, m["level"]) for p, m in receiver.messages() if m["kind"] == "escalated"]
        assert notified == [1, 2]  # both marked as told ...
        # ... so /group must have heard of both: 3 -> 2 (team lead), 2 -> 1 (manager)
        assert sorted(escalated) == [("/group", 1), ("/group", 2)], escalated


def _history(tid: int, key: str, level: int, escalations: int, notified: bool = True
             ) -> tuple[dict, list[dict], list[tuple[str, dict]]]:
    """A ticket as the agent records it, and what its receivers got."""
    ticket = {"fault_key": key, "state": "open", "original_level": level, "device": key,
              "level": expected_chain(level)[escalations - 1][1] if escalations else level}
    msg = {"key": key, "ticket": str(tid)}
    events = [{"kind": "opened", "data": {"level": level}}]
    received = [("/tech", {**msg, "kind": "opened", "level": level})]
    for seq, (old, new, tier) in enumerate(expected_chain(level)[:escalations], 1):
        events.append({"kind": "escalated", "data": {"seq": seq, "from_level": old,
                                                     "to_level": new, "tier": tier}})
        received.append(({"team_lead": "/lead", "contractor_manager": "/mgr",
                          "owner": "/owner"}[tier], {**msg, "kind": "escalated", "level": new}))
    if notified:
        events += [{"kind": "notified", "data": {"kind": "opened", "seq": 0}}]
        events += [{"kind": "notified", "data": {"kind": "escalated", "seq": n}}
                   for n in range(1, escalations + 1)]
    return ticket, events, received


def test_the_checker_sees_every_kind_of_violation():
    """The invariants are not vacuous: each broken one is reported."""
    expected = {"SnmpDown:a": 3, "SnmpDown:b": 2, "SnmpDown:c": 4}

    def view(*histories):
        tickets, events, received = {}, {}, []
        for tid, (ticket, evs, rec) in enumerate(histories, 1):
            tickets[tid], events[tid] = ticket, evs
            received += rec
        return StoreView(tickets, events), received

    good, received = view(_history(1, "SnmpDown:a", 3, 3), _history(2, "SnmpDown:b", 2, 3),
                          _history(3, "SnmpDown:c", 4, 3))
    assert violations(good, expected, received, complete=True) == []
    assert violations(good, expected, received + received[:4], complete=True) == []

    def broken(store, got, complete=True):
        return "\n".join(violations(store, expected, got, complete))

    # a fault opened twice, a fault without a ticket
    store, got = view(_history(1, "SnmpDown:a", 3, 3), _history(2, "SnmpDown:a", 3, 3),
                      _history(3, "SnmpDown:c", 4, 3))
    assert "fault SnmpDown:a has 2 tickets" in broken(store, got)
    assert "fault SnmpDown:b has no ticket" in broken(store, got)
    # an escalation recorded twice (seq 2 again), and its message to the wrong tier
    store, got = view(_history(1, "SnmpDown:a", 3, 3), _history(2, "SnmpDown:b", 2, 3),
                      _history(3, "SnmpDown:c", 4, 3))
    store.events[1].insert(3, {"kind": "escalated", "data": {
        "seq": 2, "from_level": 2, "to_level": 1, "tier": "contractor_manager"}})
    assert "escalation seqs [1, 2, 2, 3]" in broken(store, got, complete=False)
    got.append(("/owner", {"key": "SnmpDown:b", "ticket": "2", "kind": "escalated",
                           "level": 2}))
    assert "which no recorded event explains" in broken(store, got, complete=False)
    # marked notified, never received: lost, also when checked right after a kill
    store, got = view(_history(1, "SnmpDown:a", 3, 3), _history(2, "SnmpDown:b", 2, 3),
                      _history(3, "SnmpDown:c", 4, 3))
    assert "(LOST)" in broken(store, [m for m in got if m[1]["level"] != 4], complete=False)
    # not yet notified after a kill is fine; after the settling run it is not
    store, got = view(_history(1, "SnmpDown:a", 3, 1, notified=False),
                      _history(2, "SnmpDown:b", 2, 3), _history(3, "SnmpDown:c", 4, 3))
    got = [m for m in got if m[1]["key"] != "SnmpDown:a"]
    assert violations(store, expected, got, complete=False) == []
    assert "escalated #1 never marked notified" in broken(store, got)
    assert "1 escalations recorded, want 3" in broken(store, got)
