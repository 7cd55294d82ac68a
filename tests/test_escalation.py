"""Escalation policy: business-hours deadlines, breaches decided from stored times only,
each breach escalating exactly once, and config errors that name file, line and key."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.escalation import (
    Calendar,
    Escalation,
    Limit,
    Policy,
    TicketTimes,
    deadline,
    due_escalations,
    load_policy,
    parse_limit,
)
from agent.yamlfile import ConfigError, ConfigErrors

SH = ZoneInfo("Asia/Shanghai")
SHIPPED = Path(__file__).resolve().parent.parent / "config" / "escalation.yaml"
OFFICE = Calendar()  # Mon-Fri 08:30-17:30, Asia/Shanghai
H = timedelta(hours=1)
M = timedelta(minutes=1)


def sh(*args: int) -> datetime:
    return datetime(*args, tzinfo=SH)  # type: ignore[misc]


# 2026-11-25 is a Wednesday; 2026-11-28/29 the weekend after it.
WED, FRI, SAT, MON = sh(2026, 11, 25), sh(2026, 11, 27), sh(2026, 11, 28), sh(2026, 11, 30)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(SHIPPED)


# ------------------------------------------------------------------------------ deadlines

def test_around_the_clock_limits_ignore_nights_and_weekends():
    assert deadline(FRI.replace(hour=23, minute=50), parse_limit("15m")) == \
        SAT.replace(hour=0, minute=5)
    assert deadline(FRI.replace(hour=20), parse_limit("24h")) == SAT.replace(hour=20)
    assert deadline(FRI.replace(hour=20), timedelta(hours=4)) == SAT.replace(hour=0)


def test_business_hours_skip_the_night():
    # 30 min left on Wednesday, the remaining 1.5 h from Thursday's opening at 08:30
    assert deadline(WED.replace(hour=17), parse_limit("2h"), OFFICE) == sh(2026, 11, 26, 10)


def test_business_hours_skip_the_weekend():
    assert deadline(FRI.replace(hour=17), parse_limit("2h"), OFFICE) == MON.replace(hour=10)
    # a start during the weekend counts from Monday's opening
    assert deadline(SAT.replace(hour=11), parse_limit("2h"), OFFICE) == \
        MON.replace(hour=10, minute=30)


def test_business_hours_skip_holidays_and_count_make_up_days():
    holiday_monday = Calendar(holidays=["2026-11-30"])  # type: ignore[list-item]
    assert deadline(FRI.replace(hour=17), parse_limit("2h"), holiday_monday) == \
        sh(2026, 12, 1, 10)
    week_off = Calendar(holidays=["2026-11-30..2026-12-02"])  # type: ignore[list-item]
    assert deadline(FRI.replace(hour=17), parse_limit("2h"), week_off) == sh(2026, 12, 3, 10)
    make_up_saturday = Calendar(extra_working_days=[SAT.date()])
    assert deadline(FRI.replace(hour=17), parse_limit("2h"), make_up_saturday) == \
        SAT.replace(hour=10)


def test_one_working_day_is_one_day_of_working_hours():
    one, five = parse_limit("1 working day"), parse_limit("5 working days")
    assert deadline(WED.replace(hour=10), one, OFFICE) == sh(2026, 11, 26, 10)
    assert deadline(FRI.replace(hour=10), one, OFFICE) == MON.replace(hour=10)
    # opened out of hours: by the end of the next working day
    assert deadline(FRI.replace(hour=20), one, OFFICE) == MON.replace(hour=17, minute=30)
    assert deadline(SAT.replace(hour=12), one, OFFICE) == MON.replace(hour=17, minute=30)
    assert deadline(WED.replace(hour=10), five, OFFICE) == sh(2026, 12, 2, 10)
    with pytest.raises(ValueError, match="calendar"):
        deadline(WED, one, None)


def test_lunch_break_and_time_zones():
    lunch = Calendar(hours=["08:30-12:00", "13:30-17:30"])  # type: ignore[list-item]
    assert deadline(WED.replace(hour=11), parse_limit("2h"), lunch) == \
        WED.replace(hour=14, minute=30)
    assert lunch.day_seconds == 7.5 * 3600
    # a UTC start gives the same instant, in UTC: 09:00 UTC is 17:00 in Shanghai
    start = datetime(2026, 11, 25, 9, tzinfo=UTC)
    result = deadline(start, parse_limit("2h"), OFFICE)
    assert result == sh(2026, 11, 26, 10) and result.tzinfo is UTC
    with pytest.raises(ValueError, match="aware"):
        deadline(datetime(2026, 11, 25, 9), parse_limit("2h"), OFFICE)


starts = st.datetimes(min_value=datetime(2025, 1, 1), max_value=datetime(2028, 12, 31),
                      timezones=st.sampled_from([SH, UTC]))
seconds = st.floats(min_value=0, max_value=30 * 86400, allow_nan=False)
calendars = st.sampled_from([
    None, OFFICE,
    Calendar(hours=["08:30-12:00", "13:30-17:30"],  # type: ignore[list-item]
             holidays=["2026-10-01..2026-10-07", "2026-01-01"],  # type: ignore[list-item]
             extra_working_days=[datetime(2026, 10, 10).date()]),
    Calendar(timezone="Europe/Berlin", hours=["00:00-24:00"]),  # type: ignore[list-item]
])


@settings(max_examples=300, deadline=None)
@given(start=starts, a=seconds, b=seconds, calendar=calendars)
def test_deadline_is_never_before_start_and_grows_with_the_limit(start, a, b, calendar):
    low, high = sorted((a, b))
    first = deadline(start, Limit(seconds=low), calendar)
    second = deadline(start, Limit(seconds=high), calendar)
    assert start <= first <= second
    if calendar is None:
        assert second - start == timedelta(seconds=high)


# ---------------------------------------------------------------------------- escalations

def test_unacknowledged_ticket_breaches_its_response_limit_once(policy):
    times = TicketTimes(opened_at=WED.replace(hour=10))
    assert due_escalations(times, 2, policy, WED.replace(hour=10, minute=30)) == []
    [esc] = due_escalations(times, 2, policy, WED.replace(hour=10, minute=31))
    assert (esc.seq, esc.breach, esc.at) == (1, "response", WED.replace(hour=10, minute=30))
    assert (esc.from_level, esc.to_level, esc.tier, esc.limit) == (2, 1, "team_lead", "30m")
    # recorded: evaluating again, however often, gives nothing new until the next breach
    for minute in (32, 40, 44):
        assert due_escalations(times, 2, policy, WED.replace(hour=10, minute=minute),
                               [esc]) == []


def test_acknowledged_in_time_has_no_response_breach(policy):
    opened = WED.replace(hour=10)
    on_time = TicketTimes(opened_at=opened, acknowledged_at=opened + 2 * H)  # exactly at it
    later = opened + 30 * H
    [esc] = due_escalations(on_time, 3, policy, later)
    assert (esc.breach, esc.at, esc.from_level, esc.to_level) == ("repair", opened + 24 * H,
                                                                  3, 2)
    resolved = TicketTimes(opened_at=opened, acknowledged_at=opened + H,
                           resolved_at=opened + 20 * H)
    assert due_escalations(resolved, 3, policy, later) == []
    # resolved before anyone acknowledged, within the response limit: nothing to escalate
    healed = TicketTimes(opened_at=opened, resolved_at=opened + H)
    assert due_escalations(healed, 3, policy, later) == []


def test_late_acknowledgement_still_breached(policy):
    opened = WED.replace(hour=10)
    late = TicketTimes(opened_at=opened, acknowledged_at=opened + 2 * H + M)
    [esc] = due_escalations(late, 3, policy, opened + 3 * H)
    assert (esc.breach, esc.at) == ("response", opened + 2 * H)


def test_chain_level_3_to_2_to_1_then_owner_then_stops(policy):
    opened = WED.replace(hour=10)
    times = TicketTimes(opened_at=opened)
    chain = due_escalations(times, 3, policy, opened + 10 * H)
    assert [(e.seq, e.breach, e.at - opened, e.from_level, e.to_level, e.tier)
            for e in chain] == [
        (1, "response", 2 * H, 3, 2, "team_lead"),
        (2, "response", 2 * H + 30 * M, 2, 1, "contractor_manager"),
        (3, "response", 2 * H + 45 * M, 1, 1, "owner"),
    ]
    assert due_escalations(times, 3, policy, opened + 1000 * H, chain) == []
    assert due_escalations(times, 1, policy, opened + 1000 * H)[-1].tier == "owner"


def test_new_level_limits_count_from_the_escalation(policy):
    opened = WED.replace(hour=10)
    times = TicketTimes(opened_at=opened, acknowledged_at=opened + H)
    chain = due_escalations(times, 3, policy, opened + 40 * H)
    # level 3 repair (24 h) missed at +24 h; level 2's 8 h run from there: missed at +32 h;
    # level 1's 4 h from there: missed at +36 h
    assert [(e.breach, e.at - opened, e.to_level) for e in chain] == [
        ("repair", 24 * H, 2), ("repair", 32 * H, 1), ("repair", 36 * H, 1)]


def test_level_4_counts_working_days(policy):
    opened = FRI.replace(hour=16)
    times = TicketTimes(opened_at=opened)
    assert due_escalations(times, 4, policy, MON.replace(hour=15)) == []
    [esc] = due_escalations(times, 4, policy, MON.replace(hour=16, minute=1))
    assert (esc.breach, esc.at, esc.to_level, esc.limit) == (
        "response", MON.replace(hour=16), 3, "1 working day")
    # level 3 runs around the clock from the escalation: 2 h later, at 18:00
    [nxt] = due_escalations(times, 4, policy, MON.replace(hour=18, minute=1), [esc])
    assert (nxt.seq, nxt.at, nxt.from_level, nxt.to_level) == (2, MON.replace(hour=18), 3, 2)


def test_continues_from_recorded_history_after_a_restart(policy):
    opened = WED.replace(hour=10)
    times = TicketTimes(opened_at=opened)
    # recorded before a restart, e.g. under an older policy: the next stage starts from it
    recorded = Escalation(seq=1, breach="response", at=opened + 5 * H, from_level=3,
                          to_level=2, tier="team_lead", limit="5h")
    [esc] = due_escalations(times, 3, policy, opened + 5 * H + 31 * M, [recorded])
    assert (esc.seq, esc.at, esc.from_level, esc.tier) == (2, opened + 5 * H + 30 * M, 2,
                                                           "contractor_manager")


ticket_times = st.builds(
    lambda opened, ack, res: TicketTimes(
        opened_at=opened,
        acknowledged_at=None if ack is None else opened + timedelta(minutes=ack),
        resolved_at=None if res is None else opened + timedelta(minutes=res)),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 12, 31),
                 timezones=st.just(SH)),
    st.none() | st.integers(0, 20 * 24 * 60),
    st.none() | st.integers(0, 20 * 24 * 60))


@settings(max_examples=300, deadline=None)
@given(times=ticket_times, level=st.sampled_from([1, 2, 3, 4]),
       steps=st.lists(st.integers(0, 3 * 24 * 60), min_size=1, max_size=30))
def test_any_sequence_of_evaluations_fires_each_breach_once(policy, times, level, steps):
    fired: list[Escalation] = []
    now = times.opened_at
    for step in steps:
        now += timedelta(minutes=step)
        new = due_escalations(times, level, policy, now, fired)
        assert all(e.at < now for e in new)
        fired.extend(new)
    keys = [e.seq for e in fired]
    assert keys == list(range(1, len(fired) + 1))
    # the same breaches, at the same moments, as one evaluation at the end
    assert fired == due_escalations(times, level, policy, now)
    assert len(fired) <= 3 and all(e.to_level >= 1 for e in fired)


# ---------------------------------------------------------------------------------- config

def test_shipped_policy_has_the_contract_defaults(policy):
    limits = {level: (str(policy.levels[level].respond), str(policy.levels[level].repair),
                      policy.levels[level].calendar) for level in (1, 2, 3, 4)}
    assert limits == {1: ("15m", "4h", None), 2: ("30m", "8h", None), 3: ("2h", "1d", None),
                      4: ("1 working day", "5 working days", "office")}
    assert [t.name for t in policy.tiers] == ["technician", "team_lead",
                                              "contractor_manager", "owner"]
    assert policy.calendars["office"].timezone == "Asia/Shanghai"


GOOD = """\
calendars:
  office:
    hours: ["08:30-17:30"]
    holidays: [2026-10-01..2026-10-07]
tiers:
  - {name: technician, channels: [wecom]}
  - {name: team_lead, channels: [mail]}
levels:
  1: {respond: 15m, repair: 4h}
  2: {respond: 30m, repair: 8h}
  3: {respond: 2h, repair: 24h, tier: technician}
  4: {respond: 1 working day, repair: 5 working days, calendar: office}
"""


def errors(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "escalation.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises((ConfigErrors, ConfigError)) as info:
        load_policy(path)
    return [str(e) for e in getattr(info.value, "errors", [info.value])]


def test_good_policy_loads(tmp_path):
    path = tmp_path / "escalation.yaml"
    path.write_text(GOOD.replace('["08:30-17:30"]', "[8:30-12:00, '13:30-17:30']"))
    policy = load_policy(path)
    assert policy.calendars["office"].is_holiday(sh(2026, 10, 3).date())
    assert policy.calendars["office"].day_seconds == 7.5 * 3600


def test_a_date_that_does_not_exist_names_the_file(tmp_path):
    [error] = errors(tmp_path, GOOD.replace("2026-10-01..2026-10-07", "2026-02-30"))
    assert "escalation.yaml" in error and "day is out of range" in error


@pytest.mark.parametrize(("old", "new", "line", "key", "words"), [
    ("tier: technician", "tier: tecnician", 11, "levels[3].tier", "unknown tier 'tecnician'"),
    ("2: {respond: 30m, repair: 8h}", "2: {respond: 30m}", 10, "levels[2].repair",
     "required key is missing"),
    ('["08:30-17:30"]', '["08:30-25:00"]', 3, "calendars.office.hours[0]", "does not exist"),
    ('["08:30-17:30"]', '["17:30-08:30"]', 3, "calendars.office.hours[0]", "end after"),
    ('["08:30-17:30"]', "[9]", 3, "calendars.office.hours[0]", "quoted"),
    ('["08:30-17:30"]', '["8:30"]', 3, "calendars.office.hours[0]", "not a period"),
    ("holidays: [2026-10-01..2026-10-07]", "holidays: ['2026-10-32']", 4,
     "calendars.office.holidays[0]", "not a date"),
    ("holidays: [2026-10-01..2026-10-07]", "holidays: [2026-10-07..2026-10-01]", 4,
     "calendars.office.holidays[0]", "ends before it starts"),
    ("respond: 15m", "respond: soon", 9, "levels[1].respond", "'soon' is not a time limit"),
    ("respond: 15m", "respond: 15m, escalate: no", 9, "levels[1].escalate", "unknown key"),
    ("calendar: office", "calendar: ofice", 12, "levels[4].calendar",
     "unknown calendar 'ofice'"),
    (", calendar: office", "", 12, "levels[4].respond", "needs a business-hours calendar"),
    ("respond: 2h, repair: 24h", "respond: 2d, repair: 24h", 11, "levels[3].respond",
     "longer than the repair limit"),
    ("  4: {respond: 1 working day", "  5: {respond: 1 working day", 8, "levels",
     "level 4 is missing"),
    ("  office:\n", "  office:\n    timezone: Asia/Shangai\n", 3, "calendars.office.timezone",
     "not a known time zone"),
    ("name: team_lead", "name: technician", 7, "tiers[1].name", "defined twice"),
])
def test_bad_policy_names_file_line_and_key(tmp_path, old, new, line, key, words):
    assert old in GOOD
    found = errors(tmp_path, GOOD.replace(old, new, 1))
    assert any(f"escalation.yaml:{line} {key}: " in e and words in e for e in found), found
