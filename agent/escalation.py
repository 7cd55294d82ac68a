"""Escalation policy (`escalation.yaml`): the service contract's time limits made executable.

Per fault level (1 most severe ... 4 least) the contract sets a *response* limit (someone
acknowledges the ticket) and a *repair* limit (the device is healthy again), counted either
around the clock or in business hours of a calendar (working days, working hours, public
holidays and make-up working days, in the calendar's time zone). A ticket not handled within
its limit is escalated: its level is raised by one (never beyond level 1) and the next tier
(technician -> team lead -> contractor manager -> owner) is notified.

Everything below the models is pure: no clock, no I/O. `due_escalations` decides from stored
times only (opened, acknowledged, resolved, the escalations already recorded), so the
scheduler may call it as often as it likes, and after a restart, and it never reports one
breach twice.

Semantics (the choices the contract leaves open):

* Stages. A ticket lives through stages. The first starts when the ticket is opened, at the
  ticket's level, notifying the level's first tier. Each escalation ends a stage and starts the
  next one *at the moment of the breach* (the deadline that was missed, not the moment the
  scheduler noticed), at the raised level and the next tier.
* After an escalation, the new level's limits (both of them) apply from the escalation time.
  Counting them from the opening instead would make every escalation to a shorter limit fire
  again at once (a level-3 ticket breaching its 24 h repair limit is also long past level 2's
  8 h), cascading to the top in one step; restarting the clock gives each tier the time the
  contract gives that level.
* Response breach: the stage's response deadline passed and the ticket was not acknowledged by
  then. An acknowledgement once given stays given: later stages have no response breach.
* Repair breach: the stage's repair deadline passed and the fault was not resolved by then.
* A deadline met exactly (acknowledged or resolved at the deadline itself) is met; a breach is
  due once `now` is past the deadline. Once resolved, nothing more escalates.
* If both deadlines of a stage are breached, the earlier one (response first on a tie)
  escalates, and the next stage starts there.
* Escalation stops when there is nothing left to raise: the ticket is at level 1 and the last
  tier has been notified. At level 1 a breach still notifies the next tier (level unchanged);
  when the tiers run out before the levels, the last tier is notified again.
* An escalation is identified by its sequence number on the ticket (1, 2, ...). Evaluation
  continues from the last recorded escalation (its time, level and tier), so recorded history
  is never recomputed, even when the policy changed in between.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, PlainValidator, field_validator

from agent import yamlfile
from agent.settings import Strict
from agent.validation import parse_duration, validate
from agent.yamlfile import ConfigError, ConfigErrors

LEVELS = (1, 2, 3, 4)
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
Breach = Literal["response", "repair"]

_WORKING_DAYS = re.compile(r"^(\d+)\s*(?:working[ _-]?days?|wd)$")
_PERIOD = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")
_SEARCH_DAYS = 3660  # a calendar without a working moment in ten years is a broken calendar


# --------------------------------------------------------------------------------- limits

@dataclass(frozen=True)
class Limit:
    """A time limit: a duration (`seconds`), or a number of working days (`working_days`),
    which only a calendar can measure: one working day is the calendar's working hours of
    one day."""

    seconds: float | None = None
    working_days: int | None = None

    def business_seconds(self, calendar: Calendar | None) -> float:
        """Length of the limit in seconds (of business time when a calendar is given)."""
        if self.working_days is None:
            return float(self.seconds or 0.0)
        if calendar is None:
            raise ValueError("a limit in working days needs a business-hours calendar")
        return self.working_days * calendar.day_seconds

    def __str__(self) -> str:
        if self.working_days is not None:
            return f"{self.working_days} working day{'s' if self.working_days != 1 else ''}"
        return _format_seconds(float(self.seconds or 0.0))


def _format_seconds(seconds: float) -> str:
    out, rest = "", int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            out += f"{rest // size}{unit}"
            rest %= size
    return out or f"{seconds}s"


def parse_limit(value: Any) -> Limit:
    """'15m', '4h', '1h30m', seconds as a number, or '1 working day', '5 working days', '5wd'."""
    if isinstance(value, Limit):
        return value
    if isinstance(value, str):
        match = _WORKING_DAYS.match(value.strip())
        if match:
            days = int(match.group(1))
            if days <= 0:
                raise ValueError("a limit must be greater than zero")
            return Limit(working_days=days)
    try:
        return Limit(seconds=parse_duration(value))
    except ValueError:
        raise ValueError(f"'{value}' is not a time limit (use e.g. 15m, 4h, 1h30m, "
                         "1 working day, 5 working days)") from None


LimitField = Annotated[Limit, PlainValidator(parse_limit)]


# ------------------------------------------------------------------------------- calendars

def _parse_holiday(value: Any) -> tuple[date, date]:
    if isinstance(value, datetime):
        value = value.date()
    if isinstance(value, date):
        return value, value
    text = str(value).strip()
    first, sep, last = text.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        raise ValueError(f"'{value}' is not a date or a range of dates "
                         "(use 2025-10-01 or 2025-10-01..2025-10-08)") from None
    if end < start:
        raise ValueError(f"'{value}': the range ends before it starts")
    return start, end


def _parse_period(value: Any) -> tuple[time, time]:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a period of working hours; write it as a quoted "
                         "string like '08:30-17:30'")
    match = _PERIOD.match(value.strip())
    if not match:
        raise ValueError(f"'{value}' is not a period of working hours (use e.g. '08:30-17:30')")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        raise ValueError(f"'{value}' has a time that does not exist (hours 00-23, minutes 00-59)")
    opens = time(h1, m1)
    closes = time.max if h2 == 24 else time(h2, m2)
    if closes <= opens:
        raise ValueError(f"'{value}': the period must end after it starts, on the same day")
    return opens, closes


Holiday = Annotated[tuple[date, date], PlainValidator(_parse_holiday)]
Period = Annotated[tuple[time, time], PlainValidator(_parse_period)]


class Calendar(Strict):
    """A business-hours calendar: limits counted in it run only during its working hours."""

    timezone: str = Field(
        "Asia/Shanghai",
        description="IANA time zone the working hours and dates are in, e.g. `Asia/Shanghai`.")
    working_days: list[Weekday] = Field(
        ["mon", "tue", "wed", "thu", "fri"],
        description="Days of the week that are working days (`mon` ... `sun`).")
    hours: list[Period] = Field(
        default_factory=lambda: [(time(8, 30), time(17, 30))],
        description="Working hours of a working day, as quoted periods `'HH:MM-HH:MM'`; "
                    "several periods leave a lunch break out, e.g. "
                    "`['08:30-12:00', '13:30-17:30']`. `24:00` ends a period at midnight.")
    holidays: list[Holiday] = Field(
        default_factory=list,
        description="Public holidays: dates (`2025-10-01`) or ranges of dates "
                    "(`2025-10-01..2025-10-08`) that are not working days even on a working "
                    "weekday. Update them every year from the State Council's notice.")
    extra_working_days: list[date] = Field(
        default_factory=list,
        description="Make-up working days (调休): dates that are working days although their "
                    "weekday is not, e.g. a Sunday worked before a long holiday.")

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"'{value}' is not a known time zone (e.g. Asia/Shanghai)") from None
        return value

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: list[tuple[time, time]]) -> list[tuple[time, time]]:
        if not value:
            raise ValueError("a calendar needs at least one period of working hours")
        ordered = sorted(value)
        for (_, end), (start, _) in itertools.pairwise(ordered):
            if start < end:
                raise ValueError("periods of working hours overlap")
        return ordered

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def day_seconds(self) -> float:
        """Working seconds of one working day: the length of 'one working day'."""
        return sum(_seconds_between(a, b) for a, b in self.hours)

    def is_holiday(self, day: date) -> bool:
        return any(first <= day <= last for first, last in self.holidays)

    def is_working_day(self, day: date) -> bool:
        """Holidays win over weekdays; make-up working days win over both."""
        if day in self.extra_working_days:
            return True
        return WEEKDAYS[day.weekday()] in self.working_days and not self.is_holiday(day)

    def windows(self, day: date) -> list[tuple[datetime, datetime]]:
        """The working periods of one local date, as aware UTC datetimes (empty if none)."""
        if not self.is_working_day(day):
            return []
        zone = self.zone
        out = []
        for opens, closes in self.hours:
            start = datetime.combine(day, opens, tzinfo=zone).astimezone(UTC)
            end = (datetime.combine(day + timedelta(days=1), time(), tzinfo=zone)
                   if closes == time.max else datetime.combine(day, closes, tzinfo=zone))
            out.append((start, end.astimezone(UTC)))
        return out


def _seconds_between(a: time, b: time) -> float:
    end = 86400.0 if b == time.max else b.hour * 3600 + b.minute * 60 + b.second
    return end - (a.hour * 3600 + a.minute * 60 + a.second)


# ---------------------------------------------------------------------------- tiers, policy

class Tier(Strict):
    """One step of the escalation chain and whom it reaches."""

    name: str = Field(..., pattern=r"^[a-z][a-z0-9_-]{0,62}$",
                      description="Tier name, e.g. `technician`, `team_lead`, "
                                  "`contractor_manager`, `owner`.")
    channels: list[str] = Field(
        default_factory=list,
        description="Notification channels (names of channels defined in the notification "
                    "configuration) that reach this tier.")
    people: list[str] = Field(
        default_factory=list,
        description="People of this tier, as named in messages and mentioned where the "
                    "channel can (e.g. a WeCom or DingTalk @ by mobile number).")


class LevelLimits(Strict):
    """The contract's time limits of one fault level."""

    respond: LimitField = Field(
        ..., description="Response limit: the ticket must be acknowledged within it. "
                         "A duration (`15m`, `2h`) or `N working days` (needs `calendar`).")
    repair: LimitField = Field(
        ..., description="Repair limit: the fault must be resolved within it. A duration "
                         "(`4h`) or `N working days` (needs `calendar`).")
    calendar: str | None = Field(
        None, description="Name of a calendar under `calendars`: the limits count only its "
                          "working hours. Empty: around the clock (24x7).")
    tier: str | None = Field(
        None, description="Tier notified when a ticket of this level opens. Default: the "
                          "first tier.")


class Policy(Strict):
    """Top level of `escalation.yaml`."""

    calendars: dict[str, Calendar] = Field(
        default_factory=dict, description="Business-hours calendars, by name.")
    tiers: list[Tier] = Field(
        ..., min_length=1,
        description="The escalation chain, first notified first (technician -> team lead -> "
                    "contractor manager -> owner). Each escalation notifies the next one.")
    levels: dict[int, LevelLimits] = Field(
        ..., description="Limits per fault level, for each of the levels 1 to 4.")

    def limits(self, level: int) -> LevelLimits:
        return self.levels[level]

    def calendar_of(self, level: int) -> Calendar | None:
        name = self.levels[level].calendar
        return None if name is None else self.calendars[name]

    def tier_index(self, name: str) -> int:
        for i, tier in enumerate(self.tiers):
            if tier.name == name:
                return i
        raise KeyError(name)

    def first_tier(self, level: int) -> int:
        name = self.levels[level].tier
        return 0 if name is None else self.tier_index(name)

    def tier(self, name: str) -> Tier:
        return self.tiers[self.tier_index(name)]


def _check(policy: Policy, doc: yamlfile.Document) -> list[ConfigError]:
    """Cross-references the models cannot see: tier and calendar names, limits' units."""
    errors: list[ConfigError] = []
    names = [t.name for t in policy.tiers]
    for i, name in enumerate(names):
        if name in names[:i]:
            errors.append(doc.error(("tiers", i, "name"), f"tier '{name}' is defined twice"))
    for level in LEVELS:
        if level not in policy.levels:
            errors.append(doc.error(("levels",), f"level {level} is missing (levels 1 to 4 "
                                                 "each need a respond and a repair limit)"))
    for level, limits in policy.levels.items():
        where: tuple[str | int, ...] = ("levels", level)
        if level not in LEVELS:
            errors.append(doc.error(where, f"unknown level {level}; levels are 1 to 4"))
        if limits.tier is not None and limits.tier not in names:
            errors.append(doc.error((*where, "tier"), f"unknown tier '{limits.tier}'; tiers: "
                                                      f"{', '.join(names)}"))
        calendar = None
        if limits.calendar is not None:
            calendar = policy.calendars.get(limits.calendar)
            if calendar is None:
                known = ", ".join(policy.calendars) or "none defined"
                errors.append(doc.error((*where, "calendar"), f"unknown calendar "
                                        f"'{limits.calendar}'; calendars: {known}"))
                continue
        bad = False
        for key in ("respond", "repair"):
            if getattr(limits, key).working_days is not None and calendar is None:
                errors.append(doc.error((*where, key), "a limit in working days needs a "
                                        "business-hours calendar (set `calendar`)"))
                bad = True
        if not bad and (limits.respond.business_seconds(calendar)
                        > limits.repair.business_seconds(calendar)):
            errors.append(doc.error((*where, "respond"), f"the response limit "
                                    f"({limits.respond}) is longer than the repair limit "
                                    f"({limits.repair})"))
    for name, calendar in policy.calendars.items():
        if not calendar.working_days and not calendar.extra_working_days:
            errors.append(doc.error(("calendars", name, "working_days"),
                                    "a calendar needs at least one working day"))
        for i, day in enumerate(calendar.extra_working_days):
            if calendar.is_holiday(day):
                errors.append(doc.error(("calendars", name, "extra_working_days", i),
                                        f"{day} is also listed as a holiday"))
    return errors


def load_policy(path: str | Path, text: str | None = None) -> Policy:
    """Read and validate an escalation policy; raise ConfigErrors (file, line, key) or a
    ConfigError for a file that is not YAML at all."""
    doc = yamlfile.load(path, text)  # a date that does not exist is a ConfigError there
    policy = validate(Policy, doc)
    errors = _check(policy, doc)
    if errors:
        raise ConfigErrors(errors)
    return policy


# ------------------------------------------------------------------------------- deadlines

def deadline(start: datetime, limit: Limit | timedelta | float,
             calendar: Calendar | None = None) -> datetime:
    """The moment `limit` runs out when started at `start` (an aware datetime).

    Without a calendar the limit runs around the clock. With one it runs only in the
    calendar's working periods: nights, non-working weekdays and holidays are skipped, and
    `N working days` is N times the working hours of one day. The result is in `start`'s
    time zone; it is never before `start` and grows with the limit."""
    if start.tzinfo is None or start.utcoffset() is None:
        raise ValueError("deadline() needs an aware datetime (with a time zone)")
    if isinstance(limit, timedelta):
        limit = Limit(seconds=limit.total_seconds())
    elif not isinstance(limit, Limit):
        limit = Limit(seconds=float(limit))
    remaining = timedelta(seconds=limit.business_seconds(calendar))
    if remaining < timedelta(0):
        raise ValueError("a limit cannot be negative")
    now = start.astimezone(UTC)
    if calendar is None:
        return (now + remaining).astimezone(start.tzinfo)
    day = now.astimezone(calendar.zone).date() - timedelta(days=1)  # periods ending past midnight
    for _ in range(_SEARCH_DAYS):
        for opens, closes in calendar.windows(day):
            if closes <= now:
                continue
            now = max(now, opens)
            available = closes - now
            if remaining <= available:
                return (now + remaining).astimezone(start.tzinfo)
            remaining -= available
            now = closes
        day += timedelta(days=1)
    raise ValueError(f"calendar has no working hours within {_SEARCH_DAYS} days of {start}")


# ----------------------------------------------------------------------------- escalations

@dataclass(frozen=True)
class TicketTimes:
    """The stored times of a ticket that escalation depends on (aware datetimes)."""

    opened_at: datetime
    acknowledged_at: datetime | None = None
    resolved_at: datetime | None = None


@dataclass(frozen=True)
class Escalation:
    """One breach of a limit and what it causes. `seq` numbers a ticket's escalations from 1
    and identifies the breach: store it unique per ticket."""

    seq: int
    breach: Breach
    at: datetime
    """The deadline that was missed (not the moment it was noticed)."""
    from_level: int
    to_level: int
    tier: str
    """The tier to notify now."""
    limit: str
    """The limit that was missed, as written ('15m', '1 working day'), for messages."""


def due_escalations(times: TicketTimes, level: int, policy: Policy, now: datetime,
                    already_fired: Iterable[Escalation] = ()) -> list[Escalation]:
    """The escalations that are due at `now` and not in `already_fired`, oldest first.

    `level` is the ticket's level when it was opened; the current level is that of the last
    recorded escalation. Record every escalation returned (in `already_fired` next time) and
    it is never returned again."""
    if level not in policy.levels:
        raise ValueError(f"no limits for level {level}")
    fired: Sequence[Escalation] = sorted(already_fired, key=lambda e: e.seq)
    tiers = policy.tiers
    if fired:
        last = fired[-1]
        seq, current, start = last.seq, last.to_level, last.at
        try:
            tier = policy.tier_index(last.tier)
        except KeyError:  # the tier was renamed or removed since: count it as the last one
            tier = len(tiers) - 1
    else:
        seq, current, start, tier = 0, level, times.opened_at, policy.first_tier(level)
    ack, resolved = times.acknowledged_at, times.resolved_at
    out: list[Escalation] = []
    while current > 1 or tier < len(tiers) - 1:
        limits, calendar = policy.limits(current), policy.calendar_of(current)
        candidates: list[tuple[datetime, Breach, Limit]] = []
        respond_by = deadline(start, limits.respond, calendar)
        if ack is None or ack > respond_by:
            candidates.append((respond_by, "response", limits.respond))
        repair_by = deadline(start, limits.repair, calendar)
        if resolved is None or resolved > repair_by:
            candidates.append((repair_by, "repair", limits.repair))
        candidates = [c for c in candidates if resolved is None or resolved > c[0]]
        if not candidates:
            break
        at, breach, limit = min(candidates, key=lambda c: (c[0], c[1] != "response"))
        if not now > at:
            break
        seq += 1
        tier = min(tier + 1, len(tiers) - 1)
        escalation = Escalation(seq=seq, breach=breach, at=at, from_level=current,
                                to_level=max(1, current - 1), tier=tiers[tier].name,
                                limit=str(limit))
        out.append(escalation)
        current, start = escalation.to_level, at
    return out


# --------------------------------------------------------------------------- built-in policy

BUILTIN_POLICY = """\
calendars:
  office: {timezone: Asia/Shanghai, working_days: [mon, tue, wed, thu, fri],
           hours: ["08:30-17:30"]}
tiers:
  - {name: technician}
  - {name: team_lead}
  - {name: contractor_manager}
  - {name: owner}
levels:
  1: {respond: 15m, repair: 4h}
  2: {respond: 30m, repair: 8h}
  3: {respond: 2h, repair: 24h}
  4: {respond: 1 working day, repair: 5 working days, calendar: office}
"""
"""The policy of an agent without an escalation file: the limits of the shipped
config/escalation.yaml (a test keeps them equal), tiers without channels."""


def builtin_policy() -> Policy:
    return load_policy("<built-in escalation policy>", BUILTIN_POLICY)
