"""The ticket store against SQLite (a temp file) and a real PostgreSQL (started here)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from agent.tickets.migrations import head, sync_url, upgrade_to_head
from agent.tickets.store import (
    IllegalTransition,
    InvalidInput,
    TicketFilter,
    TicketNotFound,
    TicketStore,
)
from rules.faults import Fault
from tests import peers

T0 = 1_780_000_000.0  # 2026-05-28
HOUR = 3600.0


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def fault(key: str = "CameraOffline:cam-1", level: int = 3, site: str = "dh") -> Fault:
    rule, _, subject = key.partition(":")
    return Fault(key=key, rule=rule, group="device", subject=subject, device=subject,
                 site=site, kind="fixed_camera", series={}, labels={}, level=level,
                 state="firing", pending_since=T0 - 60, last_seen=T0, fired_at=T0 - 30,
                 texts={"summary": {"zh": f"{subject} 离线", "en": f"{subject} offline"}},
                 evidence={"up": 0, "reason": "timeout"})


@pytest.fixture
async def store(db_url: str):
    clock = Clock()
    async with TicketStore(db_url, "branch-dh", clock, reopen_window=24 * HOUR) as s:
        yield s


async def test_open_is_idempotent(store: TicketStore) -> None:
    first, created = await store.open_for_fault(fault())
    again, created_again = await store.open_for_fault(fault())
    assert created and not created_again
    assert again.id == first.id
    assert (first.state, first.level, first.original_level) == ("open", 3, 3)
    assert (first.site, first.device, first.rule) == ("dh", "cam-1", "CameraOffline")
    assert first.title_zh == "cam-1 离线" and first.title_en == "cam-1 offline"
    assert first.opened_at == datetime.fromtimestamp(T0, UTC)
    events = await store.timeline(first.id)
    assert [e.kind for e in events] == ["opened"]
    assert events[0].actor == "agent:branch-dh"
    assert events[0].data["evidence"] == {"up": 0, "reason": "timeout"}
    assert len(await store.list(TicketFilter(fault_key=fault().key))) == 1


async def test_concurrent_openers_make_one_ticket(db_url: str) -> None:
    """Two agents (two stores, two engines) race to open the same faults, many times."""
    clock = Clock()
    async with TicketStore(db_url, "branch-a", clock) as a, \
            TicketStore(db_url, "branch-b", clock, migrate=False) as b:
        rounds = 40
        for i in range(rounds):
            f = fault(f"CameraOffline:cam-{i}")
            results = await asyncio.gather(*(s.open_for_fault(f) for s in (a, b, a, b)))
            assert len({t.id for t, _ in results}) == 1, results
            assert sum(created for _, created in results) == 1, results
        tickets = await a.list(TicketFilter(limit=1000))
        assert len(tickets) == rounds
        assert {t.agent_id for t in tickets} <= {"branch-a", "branch-b"}
        for t in tickets:
            assert [e.kind for e in await b.timeline(t.id)] == ["opened"]


async def test_lifecycle_with_timeline(store: TicketStore) -> None:
    clock = store.clock
    ticket, _ = await store.open_for_fault(fault(level=2))
    steps = [
        (store.acknowledge, ("user:li",), {}),
        (store.diagnose, ("user:li", "cable cut at the pole"), {"plan": "replace the cable"}),
        (store.start_repair, ("user:li",), {}),
        (store.resolve, ("user:li", "connector_cable", "replaced 20 m of cable"),
         {"parts_replaced": ["CAT6 20m", "RJ45 x2"]}),
        (store.confirm, ("user:owner-wang",), {"note": "验收通过"}),
        (store.close, ("user:owner-wang",), {}),
    ]
    # the fault clears by itself before the repair is recorded: that changes no state
    clock.t += 60
    await store.fault_resolved(fault().key, at=clock.t)
    assert (await store.get(ticket.id)).state == "open"
    for method, args, kwargs in steps:
        clock.t += 600
        ticket = await method(ticket.id, *args, **kwargs)
    ticket = await store.get(ticket.id)
    assert ticket.state == "closed" and ticket.cause_category == "connector_cable"
    stamps = [ticket.acknowledged_at, ticket.diagnosed_at, ticket.repair_started_at,
              ticket.resolved_at, ticket.confirmed_at, ticket.closed_at]
    assert stamps == [datetime.fromtimestamp(T0 + 60 + 600 * n, UTC) for n in range(1, 7)]
    assert ticket.updated_at == ticket.closed_at
    events = await store.timeline(ticket.id)
    assert [e.kind for e in events] == ["opened", "fault_resolved", "acknowledged", "diagnosed",
                                        "repair_started", "resolved", "confirmed", "closed"]
    assert [e.actor for e in events[2:]] == ["user:li"] * 4 + ["user:owner-wang"] * 2
    assert events[3].data == {"from": "acknowledged", "to": "diagnosed",
                              "diagnosis": "cable cut at the pole", "plan": "replace the cable"}
    assert events[5].data["parts_replaced"] == ["CAT6 20m", "RJ45 x2"]
    assert events[6].data["note"] == "验收通过"
    assert [e.at for e in events] == sorted(e.at for e in events)


async def test_illegal_transition_is_refused_and_changes_nothing(store: TicketStore) -> None:
    ticket, _ = await store.open_for_fault(fault())
    with pytest.raises(IllegalTransition) as caught:
        await store.confirm(ticket.id, "user:owner-wang")
    message = str(caught.value)
    assert f"ticket {ticket.id} is 'open'" in message
    assert "needs state resolved" in message and "allowed from 'open': acknowledge" in message
    assert caught.value.allowed == ["acknowledge"]
    with pytest.raises(InvalidInput, match="unknown cause category 'gremlins'"):
        await store.resolve(ticket.id, "user:li", "gremlins", "did things")
    with pytest.raises(InvalidInput, match="actor is required"):
        await store.acknowledge(ticket.id, "")
    with pytest.raises(TicketNotFound, match="no ticket 9999"):
        await store.acknowledge(9999, "user:li")
    with pytest.raises(TicketNotFound):
        await store.timeline(9999)
    assert (await store.get(ticket.id)).state == "open"
    assert [e.kind for e in await store.timeline(ticket.id)] == ["opened"]


async def close_it(store: TicketStore, ticket_id: int) -> None:
    await store.acknowledge(ticket_id, "user:li")
    await store.diagnose(ticket_id, "user:li", "PoE port dead")
    await store.start_repair(ticket_id, "user:li")
    await store.resolve(ticket_id, "user:li", "front_end_hardware", "moved to port 7")
    await store.confirm(ticket_id, "user:owner-wang")
    await store.close(ticket_id, "user:owner-wang")


async def test_reopen_within_window_new_ticket_after(store: TicketStore) -> None:
    clock = store.clock
    ticket, _ = await store.open_for_fault(fault())
    await close_it(store, ticket.id)
    clock.t += 23 * HOUR  # within the 24 h window: the same ticket comes back
    again, created = await store.open_for_fault(fault())
    assert not created and again.id == ticket.id
    assert (again.state, again.reopen_count) == ("open", 1)
    assert again.reopened_at == datetime.fromtimestamp(clock.t, UTC)
    assert again.closed_at is None and again.cause_category is None
    kinds = [e.kind for e in await store.timeline(ticket.id)]
    assert kinds[-2:] == ["closed", "reopened"]
    await close_it(store, ticket.id)
    clock.t += 24 * HOUR + 1  # past the window: a new ticket
    fresh, created = await store.open_for_fault(fault())
    assert created and fresh.id != ticket.id and fresh.reopen_count == 0
    assert len(await store.list(TicketFilter(fault_key=fault().key))) == 2
    assert [t.id for t in await store.list(TicketFilter(not_closed=True))] == [fresh.id]


async def test_fault_returning_after_recorded_repair_reopens(store: TicketStore) -> None:
    ticket, _ = await store.open_for_fault(fault())
    await store.acknowledge(ticket.id, "user:li")
    await store.diagnose(ticket.id, "user:li", "loose connector")
    await store.start_repair(ticket.id, "user:li")
    await store.resolve(ticket.id, "user:li", "connector_cable", "re-crimped")
    again, created = await store.open_for_fault(fault())  # the repair did not hold
    assert not created and again.id == ticket.id and again.state == "open"
    assert again.reopen_count == 1
    event = (await store.timeline(ticket.id))[-1]
    assert (event.kind, event.data["reason"], event.data["from"]) == \
        ("reopened", "fault_returned", "resolved")
    # a person may reopen a closed ticket too, with a reason
    with pytest.raises(IllegalTransition, match="is 'open': cannot reopen"):
        await store.reopen(ticket.id, "user:owner-wang", "not fixed")


async def test_escalate_and_comment(store: TicketStore) -> None:
    ticket, _ = await store.open_for_fault(fault(level=3))
    ticket = await store.escalate(ticket.id, "agent:branch-dh", 2, {"breach": "response"})
    assert (ticket.level, ticket.original_level) == (2, 3)
    with pytest.raises(InvalidInput, match="is level 2: cannot escalate to 2"):
        await store.escalate(ticket.id, "agent:branch-dh", 2)
    await store.comment(ticket.id, "user:li", "on my way")
    events = await store.timeline(ticket.id)
    assert [e.kind for e in events] == ["opened", "escalated", "comment"]
    assert events[1].data == {"from_level": 3, "to_level": 2, "breach": "response"}
    assert [t.id for t in await store.list(TicketFilter(level=2, site="dh"))] == [ticket.id]
    assert await store.list(TicketFilter(state=["closed"])) == []
    with pytest.raises(InvalidInput, match="unknown state"):
        await store.list(TicketFilter(state="bogus"))


async def test_database_enforces_uniqueness_and_append_only(store: TicketStore) -> None:
    ticket, _ = await store.open_for_fault(fault())
    engine = create_engine(sync_url(store.url))
    try:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text(
                "INSERT INTO tickets (fault_key, agent_id, site, device, rule, level, "
                "original_level, state, title_zh, title_en, opened_at, reopen_count, "
                "updated_at) VALUES (:k, 'other', '', '', 'r', 3, 3, 'acknowledged', '', '', "
                "'2026-01-01', 0, '2026-01-01')"), {"k": ticket.fault_key})
        for statement in ("UPDATE ticket_events SET actor = 'forger'",
                          "DELETE FROM ticket_events"):
            with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
                conn.execute(text(statement))
    finally:
        engine.dispose()
    assert [e.actor for e in await store.timeline(ticket.id)] == ["agent:branch-dh"]


def test_migration_runs_twice_harmlessly(db_url: str) -> None:
    assert upgrade_to_head(db_url) == head()
    assert upgrade_to_head(db_url) == head()  # harmless the second time


def test_migration_from_concurrent_processes(db_url: str) -> None:
    code = ("import sys; from agent.tickets.migrations import upgrade_to_head; "
            "print(upgrade_to_head(sys.argv[1]))")
    procs = [subprocess.Popen([sys.executable, "-c", code, db_url], cwd=peers.ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            peers.stop(p)
    for p, (out, err) in zip(procs, outputs, strict=True):
        assert p.returncode == 0, err
        assert out.strip() == head()
    engine = create_engine(sync_url(db_url))
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).all() == \
                [(head(),)]
            assert conn.execute(text("SELECT count(*) FROM tickets")).scalar() == 0
    finally:
        engine.dispose()
