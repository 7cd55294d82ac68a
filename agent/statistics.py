"""Fault statistics (故障统计) from the ticket store: where failures come from, how fast they
were handled against the contract's limits, and what to do about it.

Which tickets count (docs/statistics.md has the full definitions):

* **Opened in the period** (`opened_at` in [start, end)): the fault counts by site, device
  kind and level, the monthly trend's `opened`, the response and repair times, breaches and
  escalations, and the repeat failures per device. A ticket belongs to the period it was
  opened in, whatever happened to it later (an escalation or repair after the period's end
  still counts for it).
* **Closed in the period** (state `closed`, `closed_at` in [start, end)): the cause
  statistics, because only a closed ticket carries a cause that the owner has accepted
  (`resolve` records it, the owner's confirmation accepts it, a reopening clears it).

Times are those of the ticket's current cycle (since its latest reopening, else its
opening): the store keeps the acknowledgement and repair times of that cycle only. They are
measured against the limits of the level the ticket was opened at (`original_level`), in
the business hours of the level's calendar where the policy gives it one, else around the
clock, exactly as `agent.escalation.deadline` counts them.

Counting is done in SQL (GROUP BY device, site, levels, cause; escalations by breach; the
monthly trend as one SUM(CASE) scan), and so are the durations of levels counted around the
clock (one number per ticket and limit is read, for the median and p90); only the tickets of
a level with a business-hours calendar are read with their times, to walk the calendar.
"""

from __future__ import annotations

import heapq
import itertools
import math
import re
import statistics as stats
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Float, and_, case, cast, extract, func, literal, or_, select

from agent.escalation import LEVELS, Calendar, Policy, deadline
from agent.tickets.models import CAUSES, Ticket, TicketEvent, UtcDateTime

if TYPE_CHECKING:
    from agent.inventory import Inventory
    from agent.tickets.store import TicketStore

DEFAULT_TIMEZONE = "Asia/Shanghai"
TREND_MONTHS = 6
MAX_TREND_MONTHS = 36
WORST = 10
AGGREGATE = "aggregate"  # a ticket of a site or group, not of one device
UNKNOWN_DEVICE = "unknown"  # a device that is not (or no longer) in the inventory

# -- recommendation thresholds (docs/statistics.md lists them) ------------------------------
MIN_EVIDENCE = 3
"""No recommendation fires on fewer than this many tickets: one or two are anecdotes."""
OPERATOR_ERROR_SHARE = 0.20
"""Operator error above 20 % of the closed tickets: the people need training."""
CONCENTRATION_SHARE = 0.50
"""Over half of a cause's tickets on one site, or on one vendor/model/batch: concentrated."""
POWER_UPS_SHARE = 0.25
"""Power/UPS above 25 % of the closed tickets: batteries and supplies need checking."""
REPEAT_FAILURES = 3
"""A device failing this often in the period is to be replaced or overhauled."""
RESPONSE_COMPLIANCE = 0.90
"""Fewer than 90 % of a level's responses within limit: duty roster or staffing is short."""
REPAIR_COMPLIANCE = 0.90
"""Fewer than 90 % of a level's repairs within limit: spare parts or repair capacity is short."""
PROCUREMENT_LABELS = ("vendor", "model", "batch")
"""Device labels (inventory `labels:`) that name where a device was bought."""

CAUSE_NAMES: dict[str, tuple[str, str]] = {
    "operator_error": ("操作失误", "operator error"),
    "connector_cable": ("接头/线缆", "connector/cable"),
    "front_end_hardware": ("前端设备硬件", "front-end hardware"),
    "power_ups": ("电源/UPS", "power/UPS"),
    "network": ("网络", "network"),
    "lightning_surge": ("雷击/浪涌", "lightning/surge"),
    "software_config": ("软件/配置", "software/config"),
    "environment": ("环境", "environment"),
    "unknown": ("不明", "unknown"),
}
KIND_NAMES: dict[str, tuple[str, str]] = {
    "ptz_camera": ("球机", "PTZ camera"),
    "fixed_camera": ("枪机", "fixed camera"),
    "nvr": ("录像机", "NVR"),
    "ups": ("UPS", "UPS"),
    "switch": ("交换机", "switch"),
    "spd_monitor": ("防雷监测", "SPD monitor"),
    "env_monitor": ("环境监测", "environment monitor"),
    AGGREGATE: ("站点/分组", "site/group"),
    UNKNOWN_DEVICE: ("未登记设备", "unknown device"),
}

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")


class StatisticsInputError(ValueError):
    """A period or site the statistics cannot be computed for (API 400, CLI error)."""


# ------------------------------------------------------------------------------ the result

@dataclass(frozen=True)
class Period:
    """[start, end) as aware UTC datetimes; `label` is how it was asked for."""

    label: str
    start: datetime
    end: datetime
    timezone: str


@dataclass
class Share:
    key: str
    count: int
    share: float | None  # of the population's total; None when it is empty


@dataclass
class Durations:
    """Seconds (business seconds where the level has a calendar)."""

    count: int = 0
    mean: float | None = None
    median: float | None = None
    p90: float | None = None


@dataclass
class Compliance:
    """One limit of one level: how many tickets met it.

    `within` + `missed` are the measured tickets; `pending` ones are neither done nor past
    their deadline yet. `durations` are of the tickets that were done (acknowledged, or
    repaired), late or not."""

    limit: str
    limit_seconds: float
    within: int = 0
    missed: int = 0
    pending: int = 0
    share_within: float | None = None
    durations: Durations = field(default_factory=Durations)


@dataclass
class LevelTimes:
    level: int
    tickets: int
    calendar: str | None  # None: around the clock
    respond: Compliance
    repair: Compliance


@dataclass
class Breaches:
    """Escalations recorded on the timelines of the tickets opened in the period."""

    escalations: int = 0
    escalated_tickets: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)  # response, repair, other
    by_level: dict[int, int] = field(default_factory=dict)  # the level breached (from_level)


@dataclass
class DeviceRepeat:
    device: str
    kind: str
    site: str
    tickets: int
    reopens: int
    failures: int  # tickets + reopens
    causes: dict[str, int]  # of its tickets that have a cause
    open: int  # of its tickets without a cause yet


@dataclass
class MonthCount:
    month: str
    opened: int
    closed: int
    by_cause: dict[str, int]  # of the closed ones


@dataclass
class Recommendation:
    code: str
    subject: str  # what it is about: a site, a device, label=value, a level, or ''
    figure: float
    threshold: float
    text_zh: str
    text_en: str


@dataclass
class Statistics:
    period: Period
    site: str | None
    generated_at: datetime
    partial: bool  # the period has not ended yet
    opened: int
    closed: int
    by_cause: list[Share]
    causes_by_site: dict[str, dict[str, int]]
    causes_by_kind: dict[str, dict[str, int]]
    by_kind: list[Share]
    by_site: list[Share]
    by_original_level: list[Share]
    by_final_level: list[Share]
    times: list[LevelTimes]
    breaches: Breaches
    repeat_failures: list[DeviceRepeat]
    trend: list[MonthCount]
    recommendations: list[Recommendation]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: times as ISO 8601, shares rounded to 4 places, seconds to 0.1 s."""
        return _clean(asdict(self))


def _clean(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 4) if abs(value) <= 1 else round(value, 1)
    return value


# ------------------------------------------------------------------------------ the period

def statistics_timezone(policy: Policy) -> str:
    """The contract's local time: the time zone of the policy's calendars when they agree,
    else DEFAULT_TIMEZONE. Months start at local midnight of this zone."""
    zones = {calendar.timezone for calendar in policy.calendars.values()}
    return zones.pop() if len(zones) == 1 else DEFAULT_TIMEZONE


def _zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise StatisticsInputError(f"timezone {timezone!r} is not a known time zone") from None


def _month_start(year: int, month: int, zone: ZoneInfo) -> datetime:
    return datetime(year, month, 1, tzinfo=zone).astimezone(UTC)


def _add_months(year: int, month: int, n: int) -> tuple[int, int]:
    index = year * 12 + (month - 1) + n
    return index // 12, index % 12 + 1


def month_period(month: str, timezone: str, now: datetime) -> Period:
    """The calendar month 'YYYY-MM' in `timezone`; refused if malformed or in the future."""
    match = _MONTH.match(month.strip()) if isinstance(month, str) else None
    if not match or not 1 <= int(match.group(2)) <= 12 or int(match.group(1)) < 1970:
        raise StatisticsInputError(f"month {month!r}: use YYYY-MM with a month 01-12, "
                                   "e.g. 2026-10")
    zone = _zone(timezone)
    year, mon = int(match.group(1)), int(match.group(2))
    start = _month_start(year, mon, zone)
    if start > now:
        raise StatisticsInputError(f"month {month} is in the future (now it is "
                                   f"{now.astimezone(zone):%Y-%m-%d})")
    end = _month_start(*_add_months(year, mon, 1), zone)
    return Period(f"{year:04d}-{mon:02d}", start, end, timezone)


def range_period(first: str, last: str, timezone: str, now: datetime) -> Period:
    """The local dates `first` to `last`, both included ('YYYY-MM-DD')."""
    zone = _zone(timezone)
    days = []
    for name, value in (("start", first), ("end", last)):
        try:
            days.append(date.fromisoformat(str(value).strip()))
        except ValueError:
            raise StatisticsInputError(f"{name} {value!r}: a date YYYY-MM-DD") from None
    if days[1] < days[0]:
        raise StatisticsInputError(f"end {days[1]} is before start {days[0]}")
    start = datetime.combine(days[0], time(), tzinfo=zone).astimezone(UTC)
    if start > now:
        raise StatisticsInputError(f"start {days[0]} is in the future (now it is "
                                   f"{now.astimezone(zone):%Y-%m-%d})")
    end = datetime.combine(days[1] + timedelta(days=1), time(), tzinfo=zone).astimezone(UTC)
    return Period(f"{days[0]}..{days[1]}", start, end, timezone)


# -------------------------------------------------------------------------- the arithmetic

def business_seconds(start: datetime, end: datetime, calendar: Calendar | None) -> float:
    """Seconds from `start` to `end` that count: all of them without a calendar, else those
    in the calendar's working periods (the measure `deadline` counts limits in)."""
    if end <= start:
        return 0.0
    if calendar is None:
        return (end - start).total_seconds()
    total = 0.0
    day = start.astimezone(calendar.zone).date() - timedelta(days=1)
    last = end.astimezone(calendar.zone).date()
    while day <= last:
        for opens, closes in calendar.windows(day):
            overlap = (min(closes, end) - max(opens, start)).total_seconds()
            if overlap > 0:
                total += overlap
        day += timedelta(days=1)
    return total


class _MemoCalendar:
    """A calendar whose working periods are computed once per day: `deadline` and
    `business_seconds` ask for the same days again and again over thousands of tickets."""

    def __init__(self, calendar: Calendar) -> None:
        self._calendar = calendar
        self.zone = calendar.zone
        self.day_seconds = calendar.day_seconds
        self._days: dict[date, list[tuple[datetime, datetime]]] = {}

    def windows(self, day: date) -> list[tuple[datetime, datetime]]:
        found = self._days.get(day)
        if found is None:
            found = self._days[day] = self._calendar.windows(day)
        return found


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def durations(values: Sequence[float]) -> Durations:
    if not values:
        return Durations()
    return Durations(len(values), stats.fmean(values), stats.median(values),
                     percentile(values, 0.9))


def _shares(counts: Counter[Any], keys: Iterable[Any] | None = None) -> list[Share]:
    """Shares of a population; `keys` lists every key in order (zeros included), else the
    keys found, the largest first."""
    total = sum(counts.values())
    order = list(keys) if keys is not None else \
        sorted(counts, key=lambda k: (-counts[k], str(k)))
    return [Share(str(k), counts.get(k, 0), counts.get(k, 0) / total if total else None)
            for k in order]


# ----------------------------------------------------------------------------- computing

async def compute(store: TicketStore, policy: Policy, inventory: Inventory | None, *,
                  month: str | None = None, start: str | None = None, end: str | None = None,
                  site: str | None = None, months: int = TREND_MONTHS,
                  timezone: str | None = None, now: datetime | None = None) -> Statistics:
    """The statistics of one period: a `month` ('YYYY-MM') or `start`..`end` (local dates,
    both included), optionally of one `site`. `now` defaults to the store's clock."""
    now = now or store.now()
    tz = timezone or statistics_timezone(policy)
    if (month is None) == (start is None and end is None):
        raise StatisticsInputError("give either month (YYYY-MM) or start and end "
                                   "(YYYY-MM-DD)")
    if month is not None:
        period = month_period(month, tz, now)
    else:
        if start is None or end is None:
            raise StatisticsInputError("start and end go together (YYYY-MM-DD each)")
        period = range_period(start, end, tz, now)
    if not 1 <= months <= MAX_TREND_MONTHS:
        raise StatisticsInputError(f"months {months}: 1-{MAX_TREND_MONTHS}")
    devices = inventory.devices if inventory is not None else {}
    kinds_seen: dict[str, str] = {"": AGGREGATE}

    def kind_of(device: str) -> str:
        kind = kinds_seen.get(device)
        if kind is None:
            known = devices.get(device)
            kind = kinds_seen[device] = known.kind if known is not None else UNKNOWN_DEVICE
        return kind

    # Core queries on the store's reader engine (deferred BEGIN on SQLite: never waits for a
    # writer). Counting is grouped in SQL and durations are computed there: the fewer values
    # cross the driver, the faster (psycopg's pure-Python build loads ~200,000 values/s).
    async with store._reader_engine.connect() as conn:
        q = _Queries(period, site, conn.dialect.name)
        if site is not None:
            await _check_site(conn, site, inventory)
        by_device = (await conn.execute(q.opened(
            Ticket.device, func.count(), func.sum(Ticket.reopen_count)).group_by(
            Ticket.device))).all()
        by_site = (await conn.execute(q.opened(Ticket.site, func.count()).group_by(
            Ticket.site))).all()
        by_levels = (await conn.execute(q.opened(
            Ticket.original_level, Ticket.level, func.count()).group_by(
            Ticket.original_level, Ticket.level))).all()
        times = await _times(conn, q, policy, now)
        closed_by_site = (await conn.execute(q.closed(
            Ticket.cause_category, Ticket.site, func.count()).group_by(
            Ticket.cause_category, Ticket.site))).all()
        closed_by_device = (await conn.execute(q.closed(
            Ticket.cause_category, Ticket.device, func.count()).group_by(
            Ticket.cause_category, Ticket.device))).all()
        escalation_rows = (await conn.execute(q.escalations())).all()
        escalated_tickets = int(await conn.scalar(q.escalations(tickets=True)) or 0)
        trend = await _trend(conn, period, site, months)
        repeats = await _repeats(conn, q, by_device, kind_of)

    # closed in the period: causes
    by_cause: Counter[str] = Counter()
    causes_by_site: dict[str, Counter[str]] = defaultdict(Counter)
    for cause, row_site, n in closed_by_site:
        by_cause[cause or "unknown"] += n
        causes_by_site[row_site][cause or "unknown"] += n
    causes_by_kind: dict[str, Counter[str]] = defaultdict(Counter)
    causes_by_label: dict[tuple[str, str, str], int] = Counter()  # (cause, label, value)
    for cause, device, n in closed_by_device:
        causes_by_kind[kind_of(device)][cause or "unknown"] += n
        labels = devices[device].labels if device in devices else {}
        for label in PROCUREMENT_LABELS:
            if labels.get(label):
                causes_by_label[(cause or "unknown", label, labels[label])] += n

    # opened in the period: counts
    kinds: Counter[str] = Counter()
    for device, n, _ in by_device:
        kinds[kind_of(device)] += n
    original: Counter[int] = Counter()
    final: Counter[int] = Counter()
    for first, last, n in by_levels:
        original[first] += n
        final[last] += n

    breaches = Breaches(escalated_tickets=escalated_tickets,
                        by_kind={"response": 0, "repair": 0, "other": 0})
    for breach, from_level, n in escalation_rows:
        kind = breach if breach in ("response", "repair") else "other"
        breaches.by_kind[kind] += n
        breaches.escalations += n
        if from_level is not None:
            breaches.by_level[int(from_level)] = breaches.by_level.get(int(from_level), 0) + n

    result = Statistics(
        period=period, site=site, generated_at=now, partial=now < period.end,
        opened=sum(n for _, n in by_site), closed=sum(by_cause.values()),
        by_cause=_shares(by_cause, CAUSES),
        causes_by_site={k: dict(v) for k, v in sorted(causes_by_site.items())},
        causes_by_kind={k: dict(v) for k, v in sorted(causes_by_kind.items())},
        by_kind=_shares(kinds), by_site=_shares(Counter(dict(by_site))),
        by_original_level=_shares(original, LEVELS), by_final_level=_shares(final, LEVELS),
        times=times, breaches=breaches, repeat_failures=repeats, trend=trend,
        recommendations=[])
    result.recommendations = recommend(result, causes_by_label)
    return result


async def _check_site(conn: Any, site: str, inventory: Inventory | None) -> None:
    """A site is known if the inventory has it or a ticket names it (a site removed from the
    inventory keeps its history)."""
    if inventory is not None and site in inventory.sites:
        return
    if await conn.scalar(select(Ticket.id).where(Ticket.site == site).limit(1)) is None:
        known = sorted(inventory.sites) if inventory is not None else []
        raise StatisticsInputError(
            f"unknown site {site!r}: not in the inventory and no ticket names it"
            + (f" (sites: {', '.join(known[:20])})" if known else ""))


@dataclass(frozen=True)
class _Queries:
    """The period's (and site's) two populations, as SELECTs to add columns to."""

    period: Period
    site: str | None
    dialect: str

    def _site(self, query: Any) -> Any:
        return query if self.site is None else query.where(Ticket.site == self.site)

    def opened(self, *columns: Any) -> Any:
        return self._site(select(*columns).where(Ticket.opened_at >= self.period.start,
                                                 Ticket.opened_at < self.period.end))

    def closed(self, *columns: Any) -> Any:
        return self._site(select(*columns).where(
            Ticket.state == "closed", Ticket.closed_at >= self.period.start,
            Ticket.closed_at < self.period.end))

    def seconds(self, later: Any, earlier: Any) -> Any:
        """`later - earlier` in seconds, computed by the database (SQLite: to the ms)."""
        if self.dialect == "postgresql":
            return cast(extract("epoch", later - earlier), Float)
        return func.round((func.julianday(later) - func.julianday(earlier)) * 86400.0, 3)

    def escalations(self, tickets: bool = False) -> Any:
        join = and_(TicketEvent.ticket_id == Ticket.id, TicketEvent.kind == "escalated")
        if tickets:
            return self.opened(func.count(func.distinct(TicketEvent.ticket_id))).select_from(
                TicketEvent).join(Ticket, join)
        breach = TicketEvent.data["breach"].as_string()
        from_level = TicketEvent.data["from_level"].as_integer()
        return self.opened(breach, from_level, func.count()).select_from(TicketEvent).join(
            Ticket, join).group_by(breach, from_level)


async def _trend(conn: Any, period: Period, site: str | None, months: int
                 ) -> list[MonthCount]:
    """Opened and closed tickets of the `months` calendar months ending with the one the
    period ends in, in one scan each (a SUM(CASE) column per month)."""
    zone = ZoneInfo(period.timezone)
    last = (period.end - timedelta(microseconds=1)).astimezone(zone)
    bounds = [_month_start(*_add_months(last.year, last.month, i - months + 1), zone)
              for i in range(months + 1)]
    labels = [f"{b.astimezone(zone):%Y-%m}" for b in bounds[:-1]]

    def columns(column: Any) -> list[Any]:
        return [func.sum(case((and_(column >= a, column < b), 1), else_=0))
                for a, b in itertools.pairwise(bounds)]

    where_site = [] if site is None else [Ticket.site == site]
    opened = (await conn.execute(select(*columns(Ticket.opened_at)).where(
        Ticket.opened_at >= bounds[0], Ticket.opened_at < bounds[-1], *where_site))).one()
    closed = (await conn.execute(select(Ticket.cause_category, *columns(Ticket.closed_at))
              .where(Ticket.state == "closed", Ticket.closed_at >= bounds[0],
                     Ticket.closed_at < bounds[-1], *where_site)
              .group_by(Ticket.cause_category))).all()
    out = []
    for i, label in enumerate(labels):
        by_cause = {(row[0] or "unknown"): int(row[i + 1]) for row in closed if row[i + 1]}
        out.append(MonthCount(label, int(opened[i] or 0), sum(by_cause.values()), by_cause))
    return out


async def _times(conn: Any, q: _Queries, policy: Policy, now: datetime
                 ) -> list[LevelTimes]:
    """Response and repair of the tickets per level opened at, against the level's limits.

    Around the clock the deadline is the cycle's start + the limit, so the database computes
    each duration (and, for a ticket not done, its age) and nothing else is read. With a
    calendar the times are read and measured with `deadline` and `business_seconds`. One
    query for the levels of each kind."""
    levels = [level for level in LEVELS if level in policy.levels]
    plain = [level for level in levels if policy.calendar_of(level) is None]
    begin = func.coalesce(Ticket.reopened_at, Ticket.opened_at)
    by_level: dict[int, list[Any]] = defaultdict(list)
    if plain:
        not_done = or_(Ticket.acknowledged_at.is_(None), Ticket.resolved_at.is_(None))
        for row in await conn.execute(q.opened(
                Ticket.original_level, q.seconds(Ticket.acknowledged_at, begin),
                q.seconds(Ticket.resolved_at, begin),
                case((not_done, q.seconds(literal(now, UtcDateTime()), begin)), else_=None))
                .where(Ticket.original_level.in_(plain))):
            by_level[row[0]].append(row)
    if len(plain) < len(levels):
        for row in await conn.execute(q.opened(
                Ticket.original_level, begin, Ticket.acknowledged_at, Ticket.resolved_at)
                .where(Ticket.original_level.not_in(plain))):
            by_level[row[0]].append(row)
    return [_level_times(level, by_level[level], policy, now) for level in levels]


def _level_times(level: int, rows: Sequence[Any], policy: Policy, now: datetime
                 ) -> LevelTimes:
    limits, plain = policy.limits(level), policy.calendar_of(level)
    calendar: Any = None if plain is None else _MemoCalendar(plain)
    parts = []
    for i, limit in enumerate((limits.respond, limits.repair)):
        c = Compliance(str(limit), limit.business_seconds(plain))
        values: list[float] = []
        for row in rows:
            if calendar is None:  # (level, response s, repair s, age s if not done)
                done, due, late = row[1 + i], c.limit_seconds, row[3]
                if done is not None:
                    values.append(float(done))
            else:  # (level, cycle start, acknowledged, resolved)
                done, due, late = row[2 + i], deadline(row[1], limit, calendar), now
                if done is not None:
                    values.append(business_seconds(row[1], done, calendar))
            if done is not None:
                if done <= due:
                    c.within += 1
                else:
                    c.missed += 1
            elif late > due:
                c.missed += 1
            else:
                c.pending += 1
        measured = c.within + c.missed
        c.share_within = c.within / measured if measured else None
        c.durations = durations(values)
        parts.append(c)
    return LevelTimes(level, len(rows), policy.levels[level].calendar, parts[0], parts[1])


async def _repeats(conn: Any, q: _Queries, by_device: Sequence[Any], kind_of: Any
                   ) -> list[DeviceRepeat]:
    """Devices that failed more than once in the period (tickets + reopenings), the worst
    first (failures, then tickets, then device id), at most WORST of them, with causes."""
    ranked = [(-(n + int(reopens or 0)), -n, device) for device, n, reopens in by_device
              if device and n + int(reopens or 0) >= 2]
    worst = heapq.nsmallest(WORST, ranked)
    if not worst:
        return []
    names = [device for _, _, device in worst]
    causes: dict[str, Counter[str]] = defaultdict(Counter)
    sites: dict[str, str] = {}
    for device, row_site, cause, n in await conn.execute(q.opened(
            Ticket.device, Ticket.site, Ticket.cause_category, func.count()).where(
            Ticket.device.in_(names)).group_by(Ticket.device, Ticket.site,
                                               Ticket.cause_category)):
        causes[device][cause or ""] += n
        sites.setdefault(device, row_site)
    out = []
    for minus_failures, minus_tickets, device in worst:
        found = causes[device]
        out.append(DeviceRepeat(device, kind_of(device), sites.get(device, ""), -minus_tickets,
                                minus_tickets - minus_failures, -minus_failures,
                                {k: v for k, v in sorted(found.items()) if k},
                                found.get("", 0)))
    return out


# ------------------------------------------------------------------------ recommendations

_UNITS_ZH = {"d": "天", "h": "小时", "m": "分钟", "s": "秒"}


def limit_text(limit: str, lang: str) -> str:
    """A limit as the policy writes it ('2h', '1d', '1 working day') in `lang`."""
    if lang != "zh":
        return limit
    days = re.fullmatch(r"(\d+) working days?", limit)
    if days:
        return f"{days.group(1)} 个工作日"
    return re.sub(r"(\d+)([dhms])", lambda m: m.group(1) + _UNITS_ZH[m.group(2)], limit)


def _pct(x: float) -> str:
    return f"{x * 100:.0f}%"


def recommend(s: Statistics, causes_by_label: dict[tuple[str, str, str], int]
              ) -> list[Recommendation]:
    """What the figures call for; each names the figure and the threshold it passed."""
    out: list[Recommendation] = []
    causes = {c.key: c for c in s.by_cause}

    operator = causes["operator_error"]
    if operator.count >= MIN_EVIDENCE and (operator.share or 0) > OPERATOR_ERROR_SHARE:
        out.append(Recommendation(
            "training", "", operator.share or 0, OPERATOR_ERROR_SHARE,
            f"操作失误占已关闭工单的 {_pct(operator.share or 0)}（{operator.count} 单，阈值 "
            f"{_pct(OPERATOR_ERROR_SHARE)}）：建议对值班及使用人员开展操作培训。",
            f"Operator error is {_pct(operator.share or 0)} of the closed tickets "
            f"({operator.count}; threshold {_pct(OPERATOR_ERROR_SHARE)}): train the operators "
            "and users."))

    power = causes["power_ups"]
    if power.count >= MIN_EVIDENCE and (power.share or 0) > POWER_UPS_SHARE:
        out.append(Recommendation(
            "battery_check", "", power.share or 0, POWER_UPS_SHARE,
            f"电源/UPS 故障占已关闭工单的 {_pct(power.share or 0)}（{power.count} 单，阈值 "
            f"{_pct(POWER_UPS_SHARE)}）：建议检查 UPS 蓄电池并安排放电测试，核查供电线路。",
            f"Power/UPS faults are {_pct(power.share or 0)} of the closed tickets "
            f"({power.count}; threshold {_pct(POWER_UPS_SHARE)}): check the UPS batteries, "
            "run discharge tests and inspect the supply."))

    connector = causes["connector_cable"].count
    if connector >= MIN_EVIDENCE:
        for (cause, label, value), n in sorted(causes_by_label.items(),
                                               key=lambda kv: (-kv[1], kv[0])):
            if cause == "connector_cable" and n >= MIN_EVIDENCE \
                    and n / connector > CONCENTRATION_SHARE:
                out.append(Recommendation(
                    "procurement", f"{label}={value}", n / connector, CONCENTRATION_SHARE,
                    f"接头/线缆故障 {connector} 单中有 {n} 单（{_pct(n / connector)}）出在 "
                    f"{label}={value} 的设备上（阈值 {_pct(CONCENTRATION_SHARE)}）：建议向供应商"
                    "提出质量索赔，并在采购中更换该批次/型号。",
                    f"{n} of {connector} connector/cable faults ({_pct(n / connector)}) are on "
                    f"devices with {label}={value} (threshold {_pct(CONCENTRATION_SHARE)}): "
                    "raise a quality claim with the supplier and change it in procurement."))

    lightning = causes["lightning_surge"].count
    if lightning >= MIN_EVIDENCE:
        for site, by in sorted(s.causes_by_site.items()):
            n = by.get("lightning_surge", 0)
            if n >= MIN_EVIDENCE and n / lightning > CONCENTRATION_SHARE:
                out.append(Recommendation(
                    "lightning_inspection", site, n / lightning, CONCENTRATION_SHARE,
                    f"雷击/浪涌故障 {lightning} 单中有 {n} 单（{_pct(n / lightning)}）在站点 "
                    f"{site}（阈值 {_pct(CONCENTRATION_SHARE)}）：建议检查该站点的防雷器(SPD)"
                    "并测量接地电阻。",
                    f"{n} of {lightning} lightning/surge faults ({_pct(n / lightning)}) are at "
                    f"site {site} (threshold {_pct(CONCENTRATION_SHARE)}): inspect its surge "
                    "protectors (SPD) and measure its grounding resistance."))

    for d in s.repeat_failures:
        if d.failures >= REPEAT_FAILURES:
            out.append(Recommendation(
                "replace_device", d.device, d.failures, REPEAT_FAILURES,
                f"设备 {d.device} 本期故障 {d.failures} 次（阈值 {REPEAT_FAILURES} 次）："
                "建议更换或返修大修。",
                f"Device {d.device} failed {d.failures} times in the period (threshold "
                f"{REPEAT_FAILURES}): replace or overhaul it."))

    for t in s.times:
        for code, c, threshold, zh, en in (
                ("staffing", t.respond, RESPONSE_COMPLIANCE,
                 "响应", "建议加强值班安排或增加维护人员。"),
                ("repair_capacity", t.repair, REPAIR_COMPLIANCE,
                 "修复", "建议增加备品备件和维修力量。")):
            measured = c.within + c.missed
            if measured >= MIN_EVIDENCE and c.share_within is not None \
                    and c.share_within < threshold:
                what_en = "responses" if code == "staffing" else "repairs"
                advice_en = ("strengthen the duty roster or add maintenance staff"
                             if code == "staffing" else "stock more spare parts and add "
                             "repair capacity")
                out.append(Recommendation(
                    code, f"level {t.level}", c.share_within, threshold,
                    f"{t.level} 级故障{zh}及时率 {_pct(c.share_within)}（{c.within}/{measured}，"
                    f"时限 {limit_text(c.limit, 'zh')}，阈值 {_pct(threshold)}）：{en}",
                    f"Level {t.level}: {_pct(c.share_within)} of {what_en} within the "
                    f"{c.limit} limit ({c.within}/{measured}; threshold {_pct(threshold)}): "
                    f"{advice_en}."))
    return out
