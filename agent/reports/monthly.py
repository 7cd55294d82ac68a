"""The owner's monthly maintenance report (运维月报) of one site, or of all sites.

One calendar month in the report's time zone (`history.timezone`, the zone the daily history
is rolled up in; Asia/Shanghai by default), gathered from what the agent already keeps in the
ticket store's database:

* fault statistics of the month (agent/statistics.py: by cause, kind and level, response and
  repair times against the contract's limits, breaches, escalations, the worst-10 devices,
  recommendations) and the opened tickets per month and level over the last 12 months;
* camera online rate (在线率) and good-order rate (完好率) per site (agent/history_query.py);
* the inspections whose period holds the month, with their state and sign-off;
* the UPS discharge tests of the month, and each UPS's discharge-time trend over 12 months;
* grounding measurements, limits and trend per earthing point (status at the month's end);
  the SPDs' state and strike counters as the agent reads them now (when it has a state);
* the open items at the month's end (now, for the running month): tickets not closed,
  overdue inspections, earthing points over their limit or overdue, failed UPS tests.

The figures are computed here (async, on the store's reader engine); charts and words are
made when the report is rendered (render.py, on a worker thread).
"""

from __future__ import annotations

import itertools
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from agent.escalation import LEVELS, Policy
from agent.grounding import GroundingMeasurement, status
from agent.grounding import trend as grounding_trend
from agent.history_query import CAMERA_KINDS, GoodOrder, HistoryQuery, OnlineRate
from agent.inspection_models import Inspection, InspectionEvent, InspectionResult
from agent.reports.charts import bar_chart, line_chart
from agent.reports.labels import COMMON, actor, named
from agent.reports.ticket import KIND, _tz_name
from agent.reports.workbook import Sheet
from agent.statistics import (
    CAUSE_NAMES,
    Period,
    Statistics,
    StatisticsInputError,
    _add_months,
    _month_start,
    compute,
    limit_text,
)
from agent.tickets.models import Ticket
from agent.tickets.store import TicketStore
from agent.ups_test import trend as ups_trend
from agent.ups_test_models import UpsTest

TREND_MONTHS = 12
OPEN_TICKETS_LISTED = 50
DETAIL_ROWS = 60
"""Rows of a detail table in the PDF/HTML (UPS tests, earthing points, ...); the XLSX has all.
An all-sites report of 10,000 devices has 833 UPS tests: with every row the PDF took 28 s and
69 pages, capped 7.5 s and 20 (docs/reports.md)."""
"""Open tickets listed one by one (the oldest first); all of them are counted by level."""
CHART_LINES = 8
"""At most this many UPSes or earthing points per trend chart (the table has them all)."""
FAILED_TEST = ("error", "aborted", "timeout", "lost")
PERCENT = "0.00%"


# ------------------------------------------------------------------------------ the facts

@dataclass
class SiteRates:
    site: str
    name: str
    online: OnlineRate
    good: GoodOrder


@dataclass
class PointStatus:
    """An earthing point at the month's end, with its measurements (all up to then)."""

    point: str
    site: str
    name: str
    kind: str
    limit: float
    latest: GroundingMeasurement | None
    due: datetime | None
    over_limit: bool
    overdue: bool
    in_month: list[GroundingMeasurement]
    trend: list[Any]  # agent.grounding.TrendPoint, oldest first


@dataclass
class OpenTickets:
    by_level: dict[int, int]
    oldest: list[Ticket]

    @property
    def total(self) -> int:
        return sum(self.by_level.values())


@dataclass
class MonthlyReport:
    """The report's figures; words, charts and layout come at rendering."""

    period: Period
    site: str | None
    site_names: dict[str, str]
    generated_at: datetime
    as_of: datetime  # the month's end, or now for the running month
    stats: Statistics
    level_trend: list[tuple[str, dict[int, int]]]
    rates: list[SiteRates]
    inspections: list[dict[str, Any]]
    ups_tests: list[dict[str, Any]]  # of the month, each with its trend entry
    ups_trend: dict[str, list[dict[str, Any]]]  # device -> trend entries (12 months)
    grounding: list[PointStatus]
    spd: list[dict[str, Any]] | None  # None: the agent's state was not at hand
    open_tickets: OpenTickets
    inspection_titles: dict[str, tuple[str, str]] = field(default_factory=dict)
    template: str = "monthly.html.j2"

    @property
    def tz(self) -> tzinfo:
        return ZoneInfo(self.period.timezone)

    # -- derived figures ----------------------------------------------------------------

    def mean_time(self, which: str) -> float | None:
        """Mean seconds to respond (`respond`) or repair (`repair`) over all levels: the
        levels' means weighted by the tickets measured."""
        total = n = 0.0
        for t in self.stats.times:
            d = getattr(t, which).durations
            if d.count and d.mean is not None:
                total += d.mean * d.count
                n += d.count
        return total / n if n else None

    def overall_rates(self) -> tuple[OnlineRate | None, GoodOrder | None]:
        if not self.rates:
            return None, None
        online = OnlineRate(sum(r.online.up for r in self.rates),
                            sum(r.online.down for r in self.rates),
                            sum(r.online.unknown for r in self.rates),
                            sum(r.online.cameras for r in self.rates))
        good = GoodOrder(sum(r.good.counted for r in self.rates),
                         sum(r.good.good for r in self.rates))
        return online, good

    def overdue_inspections(self) -> list[dict[str, Any]]:
        return [i for i in self.inspections if i["overdue"]]

    def failed_tests(self) -> list[dict[str, Any]]:
        return [t for t in self.ups_tests if t["result"] in FAILED_TEST]

    def grounding_issues(self) -> list[PointStatus]:
        return [p for p in self.grounding if p.over_limit or p.overdue]

    # -- words ----------------------------------------------------------------------------

    def site_label(self, site: str, lang: str) -> str:
        return named(self.site_names.get(site, ""), site, lang)

    def scope(self, lang: str) -> str:
        t = LABELS[lang]
        return self.site_label(self.site, lang) if self.site else t["all_sites"]

    def filename(self, lang: str) -> str:
        scope = self.site or ("全部站点" if lang == "zh" else "all-sites")
        if lang == "zh":
            return f"运维月报-{scope}-{self.period.label}"
        return f"monthly-report-{scope}-{self.period.label}"

    def _cause(self, key: str, lang: str) -> str:
        return COMMON[lang]["cause"].get(key, CAUSE_NAMES.get(key, (key, key))[lang == "en"])

    def _kind(self, key: str, lang: str) -> str:
        return KIND[lang].get(key, key)

    def _inspection_title(self, kind: str, lang: str) -> str:
        zh, en = self.inspection_titles.get(kind, ("", ""))
        return (zh if lang == "zh" else en) or kind

    def summary(self, lang: str) -> list[tuple[str, Any, str]]:
        """(label, value, format) of the key figures; value is a number or None."""
        t, s = LABELS[lang], self.stats
        online, good = self.overall_rates()
        return [
            (t["k_opened"], s.opened, "int"), (t["k_closed"], s.closed, "int"),
            (t["k_online"], online.rate if online else None, "pct"),
            (t["k_good"], good.rate if good else None, "pct"),
            (t["k_mtta"], _minutes(self.mean_time("respond")), "min"),
            (t["k_mttr"], _minutes(self.mean_time("repair")), "min"),
            (t["k_breaches"], sum(x.respond.missed + x.repair.missed for x in s.times), "int"),
            (t["k_escalations"], s.breaches.escalations, "int"),
            (t["k_open"], self.open_tickets.total, "int"),
            (t["k_inspections"], len(self.inspections), "int"),
            (t["k_ups_tests"], len(self.ups_tests), "int"),
            (t["k_measurements"], sum(len(p.in_month) for p in self.grounding), "int"),
        ]

    def times_rows(self, lang: str) -> list[dict[str, Any]]:
        t = LABELS[lang]
        rows = []
        for lt in self.stats.times:
            for measure, c in ((t["response"], lt.respond), (t["repair"], lt.repair)):
                rows.append({"level": COMMON[lang]["level"][lt.level], "measure": measure,
                             "limit": limit_text(c.limit, lang), "tickets": lt.tickets,
                             "measured": c.durations.count,
                             "mean": _minutes(c.durations.mean),
                             "p90": _minutes(c.durations.p90), "within": c.within,
                             "missed": c.missed, "pending": c.pending,
                             "share": c.share_within})
        return rows

    def open_items(self, lang: str) -> list[tuple[str, str, str]]:
        """(what, subject, detail) of everything still to do at the month's end."""
        t, c = LABELS[lang], COMMON[lang]
        items = []
        for k in self.open_tickets.oldest:
            title = (k.title_zh if lang == "zh" else k.title_en) or k.title_en or k.rule
            items.append((t["o_ticket"], f"#{k.id} {self.site_label(k.site, lang)} "
                                         f"{k.device or ''}".strip(),
                          f"{c['level'][k.level]} · {title} · {c['state'].get(k.state, k.state)}"
                          f" · {t['opened_at']} {_local(k.opened_at, self.tz)}"))
        for i in self.overdue_inspections():
            items.append((t["o_inspection"], self.site_label(i["site"], lang),
                          f"{self._inspection_title(i['kind'], lang)} {i['period']} · "
                          f"{t['due']} {_local(i['due_at'], self.tz)} · "
                          f"{t['i_state'][i['state']]}"))
        for p in self.grounding_issues():
            what = []
            if p.over_limit and p.latest is not None:
                what.append(t["over_limit"].format(ohm=f"{p.latest.ohm:g}", limit=f"{p.limit:g}"))
            if p.overdue:
                what.append(t["overdue_since"].format(
                    due=_local(p.due, self.tz)) if p.due else t["never_measured"])
            items.append((t["o_grounding"], f"{p.point} {p.name}".strip(), "；".join(what)
                          if lang == "zh" else "; ".join(what)))
        for x in self.failed_tests():
            items.append((t["o_ups"], f"{x['device']} ({self.site_label(x['site'], lang)})",
                          f"{_local(x['started_at'], self.tz)} · {t['result'][x['result']]}"
                          + (f" · {x['detail']}" if x["detail"] else "")))
        return items

    def _details(self, lang: str) -> dict[str, Any]:
        """The detail tables of the PDF/HTML, each at most DETAIL_ROWS rows, the most
        notable first when there are more (`more`: rows left out; the XLSX has them all)."""
        t = LABELS[lang]
        more: dict[str, int] = {}

        def head(name: str, rows: list[Any], key: Any) -> list[Any]:
            if len(rows) <= DETAIL_ROWS:
                return rows
            more[name] = len(rows) - DETAIL_ROWS
            return sorted(rows, key=key)[:DETAIL_ROWS]

        inspections = head("inspections", self.inspections, lambda i: (
            not i["overdue"], i["state"] == "signed", i["site"], i["period"]))
        tests = head("ups_tests", self.ups_tests, lambda x: (
            x["result"] not in FAILED_TEST, -(x["drop_ratio"] or 0), x["started_at"]))
        trend = head("ups_trend", sorted(self.ups_trend.items()), lambda kv: (
            -(kv[1][-1]["drop_ratio"] or 0), kv[0]))
        grounding = head("grounding", self.grounding, lambda p: (
            not (p.over_limit or p.overdue), p.site, p.point))
        spd = None if self.spd is None else head("spd", self.spd, lambda x: (
            x["status"] != "tripped", x["site"], x["device"]))
        items, shown, seen = self.open_items(lang), [], Counter()
        for item in items:  # open tickets come capped already (OPEN_TICKETS_LISTED)
            seen[item[0]] += 1
            if seen[item[0]] <= DETAIL_ROWS:
                shown.append(item)
        if len(shown) < len(items):
            more["open_items"] = len(items) - len(shown)
        return {"inspections": [{**i, "title": self._inspection_title(i["kind"], lang),
                                 "site_label": self.site_label(i["site"], lang),
                                 "state_text": t["i_state"][i["state"]],
                                 "signed_by": actor(i["signed_by"], lang) if i["signed_by"]
                                 else ""} for i in inspections],
                "ups_tests": tests, "ups_trend": trend, "grounding": grounding, "spd": spd,
                "open_items": shown, "more": more}

    # -- Report protocol ------------------------------------------------------------------

    def context(self, lang: str) -> dict[str, Any]:
        t, c, s = LABELS[lang], COMMON[lang], self.stats
        return {
            "t": t, "title": t["title"], "r": self, "scope": self.scope(lang),
            "month": self.period.label, "summary": self.summary(lang),
            "partial": s.partial,
            "causes": [(self._cause(x.key, lang), x.count, x.share) for x in s.by_cause],
            "kinds": [(self._kind(x.key, lang), x.count, x.share) for x in s.by_kind],
            "levels": [(c["level"][int(x.key)], x.count, x.share,
                        next((f.count for f in s.by_final_level if f.key == x.key), 0))
                       for x in s.by_original_level],
            "times": self.times_rows(lang),
            "breach_kinds": [(t["b_" + k], n) for k, n in s.breaches.by_kind.items()],
            "worst": [{"device": d.device, "kind": self._kind(d.kind, lang),
                       "site": self.site_label(d.site, lang), "failures": d.failures,
                       "tickets": d.tickets, "reopens": d.reopens,
                       "causes": c["sep"].join(f"{self._cause(k, lang)} {n}"
                                               for k, n in d.causes.items())}
                      for d in s.repeat_failures],
            "recommendations": self.recommendations(lang),
            "level_trend": [(m, [by.get(level, 0) for level in LEVELS], sum(by.values()))
                            for m, by in self.level_trend],
            "level_names": [c["level"][level] for level in LEVELS],
            "rates": self.rates, "overall": self.overall_rates(),
            **self._details(lang),
            "open_tickets": self.open_tickets,
            "charts": self.charts(lang), "label": lambda site: self.site_label(site, lang),
            "minutes": _minutes, "pct": _pct,
            "generated_at": self.generated_at, "tz_name": _tz_name(self.tz),
        }

    def charts(self, lang: str) -> dict[str, str | None]:
        """Data URIs of the charts; None where there is nothing to draw."""
        t, c, s = LABELS[lang], COMMON[lang], self.stats
        out: dict[str, str | None] = {}
        causes = [x for x in s.by_cause if x.count]
        out["causes"] = bar_chart([self._cause(x.key, lang) for x in causes],
                                  {t["count"]: [x.count for x in causes]},
                                  title=t["ch_causes"], size=(6.4, 2.8)).data_uri \
            if causes else None
        if any(sum(by.values()) for _, by in self.level_trend):
            months = [m for m, _ in self.level_trend]
            out["trend"] = bar_chart(
                [m[2:] for m in months],
                {c["level"][level]: [by.get(level, 0) for _, by in self.level_trend]
                 for level in LEVELS}, title=t["ch_trend"], size=(6.6, 2.8),
                stacked=True).data_uri
        else:
            out["trend"] = None
        rated = [r for r in self.rates if r.online.rate is not None][:40]
        out["online"] = bar_chart([r.site for r in rated],
                                  {t["online_rate"]: [round(100 * (r.online.rate or 0), 2)
                                                      for r in rated]},
                                  title=t["ch_online"], unit="%",
                                  size=(6.6, 2.8)).data_uri if rated else None
        lines: dict[str, list[tuple[datetime, float]]] = {}
        for device, entries in sorted(self.ups_trend.items(), key=lambda kv: -len(kv[1])):
            for e in entries:  # a line per UPS and test kind: quick and deep differ
                name = f"{device} {t['kinds'].get(e['kind'], e['kind'])}"
                if name in lines or len(lines) < CHART_LINES:
                    lines.setdefault(name, []).append(
                        (datetime.fromisoformat(e["started_at"]), e["discharge_seconds"] / 60))
        out["ups"] = line_chart(dict(sorted(lines.items())), title=t["ch_ups"],
                                unit=t["minutes"], tz=self.tz).data_uri if lines else None
        points = [p for p in self.grounding if p.trend][:CHART_LINES]
        limits = {p.limit for p in points}
        out["grounding"] = line_chart(
            {p.point: [(x.measured_at, x.ohm) for x in p.trend] for p in points},
            title=t["ch_grounding"], unit="Ω", tz=self.tz,
            limit=limits.pop() if len(limits) == 1 else None,
            limit_label=t["limit"]).data_uri if points else None
        return out

    def sheets(self, lang: str) -> list[Sheet]:
        t, c, s = LABELS[lang], COMMON[lang], self.stats
        fmt = {"pct": PERCENT, "min": "0.0", "int": "0"}
        summary = self.summary(lang)
        sheets = [Sheet(t["sh_summary"], [t["item"], t["value"]],
                        [[t["scope"], self.scope(lang)], [t["month_label"], self.period.label],
                         *[[label, value] for label, value, _ in summary]],
                        row_formats={i + 4: fmt[kind] for i, (_, _, kind) in
                                     enumerate(summary)})]  # rates and minutes in one column
        sheets.append(Sheet(t["sh_causes"], [t["cause"], t["count"], t["share"]],
                            [[self._cause(x.key, lang), x.count, x.share] for x in s.by_cause],
                            formats={2: PERCENT}))
        sheets.append(Sheet(t["sh_kinds"], [t["kind"], t["count"], t["share"]],
                            [[self._kind(x.key, lang), x.count, x.share] for x in s.by_kind],
                            formats={2: PERCENT}))
        final = {x.key: x.count for x in s.by_final_level}
        sheets.append(Sheet(t["sh_levels"], [t["level"], t["count"], t["share"], t["final"]],
                            [[c["level"][int(x.key)], x.count, x.share, final.get(x.key, 0)]
                             for x in s.by_original_level], formats={2: PERCENT}))
        sheets.append(Sheet(
            t["sh_times"], [t["level"], t["measure"], t["limit"], t["tickets"], t["measured"],
                            t["mean_min"], t["p90_min"], t["within"], t["missed"], t["pending"],
                            t["share_within"]],
            [[r["level"], r["measure"], r["limit"], r["tickets"], r["measured"], r["mean"],
              r["p90"], r["within"], r["missed"], r["pending"], r["share"]]
             for r in self.times_rows(lang)], formats={5: "0.0", 6: "0.0", 10: PERCENT}))
        sheets.append(Sheet(t["sh_worst"], [t["device"], t["kind"], t["site"], t["failures"],
                                            t["tickets"], t["reopens"], t["causes"]],
                            [[d.device, self._kind(d.kind, lang), d.site, d.failures,
                              d.tickets, d.reopens, c["sep"].join(
                                  f"{self._cause(k, lang)} {n}" for k, n in d.causes.items())]
                             for d in s.repeat_failures]))
        sheets.append(Sheet(t["sh_trend"], [t["month_label"], *[c["level"][lv] for lv in LEVELS],
                                            t["total"]],
                            [[m, *[by.get(lv, 0) for lv in LEVELS], sum(by.values())]
                             for m, by in self.level_trend]))
        sheets.append(Sheet(
            t["sh_rates"], [t["site"], t["name"], t["cameras"], t["online_h"], t["offline_h"],
                            t["unknown_h"], t["online_rate"], t["device_days"], t["good_days"],
                            t["good_rate"]],
            [[r.site, r.name, r.online.cameras, r.online.up / 3600, r.online.down / 3600,
              r.online.unknown / 3600, r.online.rate, r.good.counted, r.good.good,
              r.good.rate] for r in self.rates],
            formats={3: "0.0", 4: "0.0", 5: "0.0", 6: PERCENT, 9: PERCENT}))
        sheets.append(Sheet(
            t["sh_inspections"], [t["id"], t["site"], t["kind"], t["period"], t["due"],
                                  t["state"], t["submitted"], t["signed"], t["signed_by"],
                                  t["results"], t["issues"], t["overdue"]],
            [[i["id"], i["site"], self._inspection_title(i["kind"], lang), i["period"],
              i["due_at"], t["i_state"][i["state"]], i["submitted_at"], i["signed_at"],
              i["signed_by"] or None, i["results"], i["issues"], i["overdue"]]
             for i in self.inspections]))
        sheets.append(Sheet(
            t["sh_ups"], [t["id"], t["device"], t["site"], t["method"], t["test_kind"],
                          t["started"], t["ended"], t["discharge_min"], t["previous_min"],
                          t["drop"], t["result_h"]],
            [[x["id"], x["device"], x["site"], t["methods"].get(x["method"], x["method"]),
              t["kinds"].get(x["kind"], x["kind"]), x["started_at"], x["ended_at"],
              _minutes(x["discharge_seconds"]),
              _minutes(x["previous_seconds"]), x["drop_ratio"],
              t["result"].get(x["result"], x["result"])] for x in self.ups_tests],
            formats={7: "0.0", 8: "0.0", 9: PERCENT}))
        sheets.append(Sheet(
            t["sh_ups_trend"], [t["device"], t["started"], t["test_kind"], t["discharge_min"],
                                t["drop"], t["result_h"]],
            [[device, datetime.fromisoformat(e["started_at"]), t["kinds"].get(e["kind"], e["kind"]),
              _minutes(e["discharge_seconds"]), e["drop_ratio"],
              t["result"].get(e["result"], e["result"])]
             for device, entries in sorted(self.ups_trend.items()) for e in entries],
            formats={3: "0.0", 4: PERCENT}))
        sheets.append(Sheet(
            t["sh_grounding"], [t["point"], t["site"], t["name"], t["kind"], t["limit_ohm"],
                                t["latest_ohm"], t["measured_at"], t["due"],
                                t["over_limit_h"], t["overdue"]],
            [[p.point, p.site, p.name, p.kind, p.limit,
              p.latest.ohm if p.latest else None,
              p.latest.measured_at if p.latest else None, p.due, p.over_limit, p.overdue]
             for p in self.grounding]))
        sheets.append(Sheet(
            t["sh_measurements"], [t["point"], t["measured_at"], t["ohm"], t["limit_ohm"],
                                   t["change_ohm"], t["over_limit_h"], t["instrument"],
                                   t["technician"], t["weather"]],
            [[p.point, x.measured_at, x.ohm, p.limit, x.change_ohm, x.over_limit,
              x.record.get("instrument"), x.record.get("technician"), x.record.get("weather")]
             for p in self.grounding for x in p.trend]))
        if self.spd is not None:
            sheets.append(Sheet(
                t["sh_spd"], [t["device"], t["site"], t["name"], t["spd_status"],
                              t["strikes_total"], t["leakage"]],
                [[x["device"], x["site"], x["name"], t["spd"][x["status"]],
                  x["strikes_total"], x["leakage_max_amperes"]] for x in self.spd]))
        sheets.append(Sheet(t["sh_open"], [t["what"], t["subject"], t["detail"]],
                            [list(item) for item in self.open_items(lang)]))
        sheets.append(Sheet(t["sh_recommendations"], [t["recommendation"]],
                            [[x] for x in self.recommendations(lang)]))
        return sheets

    def recommendations(self, lang: str) -> list[str]:
        return [x.text_zh if lang == "zh" else x.text_en for x in self.stats.recommendations]


def _minutes(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / 60, 1)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _local(at: datetime | None, tz: tzinfo) -> str:
    return "-" if at is None else at.astimezone(tz).strftime("%Y-%m-%d %H:%M")


# ---------------------------------------------------------------------------- gathering

async def load_monthly_report(store: TicketStore, policy: Policy, inventory: Any, month: str,
                              *, site: str | None = None, timezone: str = "Asia/Shanghai",
                              state: Any = None,
                              inspection_titles: dict[str, tuple[str, str]] | None = None,
                              now: datetime | None = None) -> MonthlyReport:
    """The month's figures from the store (and `state` for the SPDs, when given). Raises
    StatisticsInputError for a malformed or future month or an unknown site."""
    if site is not None and not site.strip():
        raise StatisticsInputError("site: give a site id, or leave it out for all sites")
    now = now or store.now()
    stats = await compute(store, policy, inventory, month=month, site=site,
                          timezone=timezone, now=now)
    period = stats.period
    as_of = min(now, period.end)
    zone = ZoneInfo(timezone)
    sites_known = dict(getattr(inventory, "sites", {}) or {})
    site_names = {k: getattr(v, "name", "") or "" for k, v in sites_known.items()}
    if site is not None:
        sites = [site]
    else:
        sites = sorted(set(sites_known) | {x.key for x in stats.by_site if x.key})
    engine = store._reader_engine
    history = HistoryQuery(engine, timezone)
    online = await history.online_rates(sites, period.start, period.end, CAMERA_KINDS)
    good = await history.good_order_rates(sites, period.start, period.end)
    rates = [SiteRates(name, site_names.get(name, ""), online[name], good[name])
             for name in sites]
    async with AsyncSession(engine) as conn:  # ORM rows: tests, measurements, tickets
        level_trend = await _level_trend(conn, period, site, zone)
        inspections = await _inspections(conn, period, site, as_of)
        tests, trends = await _ups(conn, period, site, zone)
        grounding = await _grounding(conn, inventory, period, site, as_of)
        open_tickets = await _open_tickets(conn, site, as_of)
    spd = None
    if state is not None and inventory is not None:
        from agent.lightning import spd_summary

        spd = spd_summary(state, inventory, site)
    return MonthlyReport(period=period, site=site, site_names=site_names, generated_at=now,
                         as_of=as_of, stats=stats, level_trend=level_trend, rates=rates,
                         inspections=inspections, ups_tests=tests, ups_trend=trends,
                         grounding=grounding, spd=spd, open_tickets=open_tickets,
                         inspection_titles=inspection_titles or {})


def _where_site(column: Any, site: str | None) -> list[Any]:
    return [] if site is None else [column == site]


async def _level_trend(conn: Any, period: Period, site: str | None, zone: ZoneInfo
                       ) -> list[tuple[str, dict[int, int]]]:
    """Tickets opened per month (the 12 ending with the report's) and original level, in
    one scan (a SUM(CASE) column per month)."""
    last = (period.end - timedelta(microseconds=1)).astimezone(zone)
    bounds = [_month_start(*_add_months(last.year, last.month, i - TREND_MONTHS + 1), zone)
              for i in range(TREND_MONTHS + 1)]
    columns = [func.sum(case((and_(Ticket.opened_at >= a, Ticket.opened_at < b), 1), else_=0))
               for a, b in itertools.pairwise(bounds)]
    rows = (await conn.execute(select(Ticket.original_level, *columns).where(
        Ticket.opened_at >= bounds[0], Ticket.opened_at < bounds[-1],
        *_where_site(Ticket.site, site)).group_by(Ticket.original_level))).all()
    out = []
    for i, start in enumerate(bounds[:-1]):
        by = {int(row[0]): int(row[i + 1] or 0) for row in rows if row[i + 1]}
        out.append((f"{start.astimezone(zone):%Y-%m}", by))
    return out


async def _inspections(conn: Any, period: Period, site: str | None, as_of: datetime
                       ) -> list[dict[str, Any]]:
    """The inspections whose period overlaps the month, and older ones still overdue at
    `as_of`: state, sign-off, results and issues."""
    overdue = and_(Inspection.due_at <= as_of,
                   or_(Inspection.submitted_at.is_(None), Inspection.submitted_at > as_of,
                       Inspection.state == "open"))
    in_month = and_(Inspection.period_start < period.end, Inspection.period_end > period.start)
    rows = list((await conn.execute(select(
        Inspection.id, Inspection.site, Inspection.kind, Inspection.period,
        Inspection.period_start, Inspection.due_at, Inspection.state, Inspection.submitted_at,
        Inspection.signed_at).where(or_(in_month, and_(overdue,
                                                       Inspection.period_start < period.end)),
                                    *_where_site(Inspection.site, site))
        .order_by(Inspection.site, Inspection.period_start, Inspection.kind))).all())
    ids = [r.id for r in rows]
    results: dict[int, tuple[int, int]] = {}
    signers: dict[int, str] = {}
    if ids:
        for inspection_id, n, issues in await conn.execute(select(
                InspectionResult.inspection_id, func.count(),
                func.sum(case((InspectionResult.status == "issue", 1), else_=0)))
                .where(InspectionResult.inspection_id.in_(ids))
                .group_by(InspectionResult.inspection_id)):
            results[inspection_id] = (int(n), int(issues or 0))
        for inspection_id, who in await conn.execute(select(
                InspectionEvent.inspection_id, InspectionEvent.actor).where(
                InspectionEvent.inspection_id.in_(ids), InspectionEvent.kind == "signed")
                .order_by(InspectionEvent.id)):
            signers[inspection_id] = who
    out = []
    for r in rows:
        late = r.due_at <= as_of and (r.submitted_at is None or r.submitted_at > as_of
                                      or r.state == "open")
        n, issues = results.get(r.id, (0, 0))
        out.append({"id": r.id, "site": r.site, "kind": r.kind, "period": r.period,
                    "due_at": r.due_at, "state": r.state, "submitted_at": r.submitted_at,
                    "signed_at": r.signed_at, "signed_by": signers.get(r.id, ""),
                    "results": n, "issues": issues, "overdue": late})
    return out


async def _ups(conn: Any, period: Period, site: str | None, zone: ZoneInfo
               ) -> tuple[list[dict[str, Any]], dict[str, list[dict[str, Any]]]]:
    """The month's tests (each with its change against the previous test of its kind), and
    per UPS the trend of the 12 months ending with the report's."""
    last = (period.end - timedelta(microseconds=1)).astimezone(zone)
    since = _month_start(*_add_months(last.year, last.month, 1 - TREND_MONTHS), zone)
    tests = list((await conn.execute(select(UpsTest).where(
        UpsTest.started_at < period.end, *_where_site(UpsTest.site, site))
        .order_by(UpsTest.device, UpsTest.started_at, UpsTest.id))).scalars())
    month: list[dict[str, Any]] = []
    trends: dict[str, list[dict[str, Any]]] = {}
    for device, group in itertools.groupby(tests, key=lambda x: x.device):
        mine = list(group)
        entries = {e["id"]: e for e in ups_trend(mine)}
        window = [e for e in entries.values()
                  if datetime.fromisoformat(e["started_at"]) >= since]
        if window:
            trends[device] = window
        for x in mine:
            if x.started_at >= period.start:
                e = entries.get(x.id, {})
                month.append({"id": x.id, "device": x.device, "site": x.site,
                              "method": x.method, "kind": x.kind, "state": x.state,
                              "result": x.result or "running", "detail": x.detail or "",
                              "started_at": x.started_at, "ended_at": x.ended_at,
                              "discharge_seconds": x.discharge_seconds,
                              "previous_seconds": e.get("previous_seconds"),
                              "drop_ratio": e.get("drop_ratio"), "actor": x.actor})
    month.sort(key=lambda x: (x["started_at"], x["id"]))
    return month, trends


async def _grounding(conn: Any, inventory: Any, period: Period, site: str | None,
                     as_of: datetime) -> list[PointStatus]:
    points = getattr(inventory, "earthing_points", {}) or {}
    chosen = sorted((p for p in points.values() if site is None or p.site == site),
                    key=lambda p: (p.site, p.id))
    if not chosen:
        return []
    rows: dict[str, list[GroundingMeasurement]] = defaultdict(list)
    names = [p.id for p in chosen]
    for i in range(0, len(names), 500):
        for row in (await conn.execute(select(GroundingMeasurement).where(
                GroundingMeasurement.point.in_(names[i:i + 500]),
                GroundingMeasurement.measured_at < period.end)
                .order_by(GroundingMeasurement.measured_at))).scalars():
            rows[row.point].append(row)
    out = []
    for p in chosen:
        mine = [r for r in rows[p.id] if r.measured_at <= as_of]
        latest = mine[-1] if mine else None
        now = status(p, latest, as_of.timestamp())
        out.append(PointStatus(
            p.id, p.site, p.name, p.kind, p.limit, latest,
            datetime.fromisoformat(now["due"]) if now["due"] else None, now["over_limit"],
            now["overdue"], [r for r in rows[p.id] if r.measured_at >= period.start],
            grounding_trend(rows[p.id], p.limit)))
    return out


async def _open_tickets(conn: Any, site: str | None, as_of: datetime) -> OpenTickets:
    """Tickets opened before `as_of` and not closed by then (their current level)."""
    not_closed = and_(Ticket.opened_at < as_of,
                      or_(Ticket.state != "closed", Ticket.closed_at >= as_of))
    where = [not_closed, *_where_site(Ticket.site, site)]
    by_level = {int(level): int(n) for level, n in await conn.execute(
        select(Ticket.level, func.count()).where(*where).group_by(Ticket.level))}
    oldest = list((await conn.execute(select(Ticket).where(*where).order_by(
        Ticket.opened_at, Ticket.id).limit(OPEN_TICKETS_LISTED))).scalars())
    return OpenTickets(by_level, oldest)


# ------------------------------------------------------------------------------ words

LABELS: dict[str, dict[str, Any]] = {
    "zh": {
        "title": "运维月报", "all_sites": "全部站点", "scope": "范围", "month_label": "月份",
        "partial": "本月尚未结束，数据截至生成时间。",
        "s_summary": "一、本月概况", "s_faults": "二、故障统计",
        "s_trend": "三、近 12 个月故障趋势",
        "s_rates": "四、在线率与完好率", "s_inspections": "五、巡检", "s_ups": "六、UPS 放电测试",
        "s_lightning": "七、防雷与接地", "s_open": "八、遗留问题（月末）",
        "s_recommendations": "九、建议",
        "k_opened": "本月新增故障（工单）", "k_closed": "本月关闭工单",
        "k_online": "摄像机在线率", "k_good": "设备完好率", "k_mtta": "平均响应时间（分钟）",
        "k_mttr": "平均修复时间（分钟）", "k_breaches": "超时次数（响应+修复）",
        "k_escalations": "超时升级次数", "k_open": "月末未关闭工单",
        "k_inspections": "巡检", "k_ups_tests": "UPS 放电测试", "k_measurements": "接地电阻测量",
        "by_cause": "按故障原因（本月关闭的工单）", "by_kind": "按设备类型", "by_level": "按级别",
        "times_h": "响应与修复时限（按开单级别）", "breaches_h": "超时升级",
        "worst_h": "故障最多的设备（前 10）",
        "cause": "故障原因", "kind": "类型", "level": "级别", "count": "数量", "share": "占比",
        "final": "当前级别数量", "measure": "考核项", "limit": "时限", "tickets": "工单数",
        "measured": "已完成", "mean_min": "平均（分钟）", "p90_min": "P90（分钟）",
        "within": "达标", "missed": "超时", "pending": "进行中", "share_within": "及时率",
        "response": "响应", "repair": "修复",
        "b_response": "响应超时", "b_repair": "修复超时", "b_other": "其他",
        "device": "设备", "site": "站点", "failures": "故障次数", "reopens": "重开次数",
        "causes": "原因", "total": "合计", "name": "名称",
        "cameras": "摄像机数", "online_h": "在线（小时）", "offline_h": "离线（小时）",
        "unknown_h": "未知（小时）", "online_rate": "在线率", "device_days": "统计设备·天",
        "good_days": "完好设备·天", "good_rate": "完好率", "all": "合计",
        "rates_note": "在线率 = 摄像机在线时长 ÷ 已知时长（在线 + 离线）；完好率 = 完好的设备·天"
                      " ÷ 状态已知的设备·天（当天多数时间在线且无未关闭的一至三级工单）。",
        "id": "编号", "period": "周期", "due": "截止", "state": "状态", "submitted": "提交时间",
        "signed": "签认时间", "signed_by": "签认人", "results": "已填项", "issues": "异常项",
        "overdue": "逾期",
        "i_state": {"open": "待巡检", "submitted": "待业主签认", "signed": "已签认"},
        "method": "方式", "methods": {"snmp": "远程（SNMP）", "manual": "人工"},
        "test_kind": "测试类型", "kinds": {"quick": "快速", "deep": "深度"},
        "started": "开始", "ended": "结束",
        "discharge_min": "放电时间（分钟）", "previous_min": "上次（分钟）", "drop": "下降",
        "result_h": "结果",
        "result": {"pass": "通过", "warning": "警告", "error": "失败", "aborted": "中止",
                   "timeout": "超时", "lost": "失去联系", "running": "进行中"},
        "ups_trend_h": "近 12 个月放电时间", "latest": "最近", "tests_n": "测试次数",
        "point": "接地点", "limit_ohm": "限值（Ω）", "latest_ohm": "最近测量（Ω）",
        "measured_at": "测量时间", "ohm": "电阻（Ω）", "change_ohm": "变化（Ω）",
        "over_limit_h": "超限", "instrument": "仪表", "technician": "测量人", "weather": "天气",
        "in_month": "本月测量", "grounding_h": "接地电阻", "spd_h": "防雷器（SPD，当前状态）",
        "spd_status": "状态", "strikes_total": "雷击计数", "leakage": "泄漏电流（A）",
        "spd": {"ok": "正常", "tripped": "失效", "unknown": "未知"},
        "no_spd_state": "未读取防雷器状态（报告未由运行中的 agent 生成）。",
        "o_ticket": "未关闭工单", "o_inspection": "逾期巡检", "o_grounding": "接地点",
        "o_ups": "UPS 测试未通过", "what": "类别", "subject": "对象", "detail": "说明",
        "opened_at": "开单", "over_limit": "{ohm} Ω 超过限值 {limit} Ω",
        "overdue_since": "应于 {due} 前复测", "never_measured": "从未测量",
        "open_by_level": "月末未关闭工单 {n} 单", "open_more": "另有 {n} 单未列出。",
        "no_open": "无遗留问题。", "recommendation": "建议", "no_recommendations": "本月无建议。",
        "no_data": "无数据", "minutes": "分钟", "more_rows": "另有 {n} 行未列出，见 XLSX。",
        "ch_causes": "故障原因分布", "ch_trend": "近 12 个月新增故障（按级别）",
        "ch_online": "各站点摄像机在线率（%）", "ch_ups": "UPS 放电时间趋势",
        "ch_grounding": "接地电阻趋势",
        "sign_contractor": "运维单位", "sign_owner": "业主单位", "sign_date": "日期",
        "item": "项目", "value": "数值",
        "sh_summary": "概况", "sh_causes": "故障原因", "sh_kinds": "设备类型", "sh_levels": "级别",
        "sh_times": "时限考核", "sh_worst": "故障最多设备", "sh_trend": "月度趋势",
        "sh_rates": "在线率与完好率", "sh_inspections": "巡检", "sh_ups": "UPS测试",
        "sh_ups_trend": "UPS放电趋势", "sh_grounding": "接地点", "sh_measurements": "接地测量",
        "sh_spd": "防雷器", "sh_open": "遗留问题", "sh_recommendations": "建议",
    },
    "en": {
        "title": "Monthly Maintenance Report", "all_sites": "all sites", "scope": "Scope",
        "month_label": "Month",
        "partial": "The month is not over yet: figures up to the time of generation.",
        "s_summary": "1. The month at a glance", "s_faults": "2. Fault statistics",
        "s_trend": "3. Faults over the last 12 months", "s_rates": "4. Online and good-order rates",
        "s_inspections": "5. Inspections", "s_ups": "6. UPS discharge tests",
        "s_lightning": "7. Lightning protection and grounding",
        "s_open": "8. Open items at the month's end", "s_recommendations": "9. Recommendations",
        "k_opened": "Faults (tickets) opened", "k_closed": "Tickets closed",
        "k_online": "Camera online rate", "k_good": "Good-order rate",
        "k_mtta": "Mean time to respond (min)", "k_mttr": "Mean time to repair (min)",
        "k_breaches": "Limits missed (response + repair)", "k_escalations": "Escalations",
        "k_open": "Tickets open at the month's end", "k_inspections": "Inspections",
        "k_ups_tests": "UPS discharge tests", "k_measurements": "Grounding measurements",
        "by_cause": "By cause (tickets closed in the month)", "by_kind": "By device kind",
        "by_level": "By level", "times_h": "Response and repair limits (level opened at)",
        "breaches_h": "Escalations", "worst_h": "Devices failing most (top 10)",
        "cause": "Cause", "kind": "Kind", "level": "Level", "count": "Count", "share": "Share",
        "final": "Count at current level", "measure": "Measure", "limit": "Limit",
        "tickets": "Tickets", "measured": "Done", "mean_min": "Mean (min)",
        "p90_min": "P90 (min)", "within": "Within", "missed": "Missed", "pending": "Pending",
        "share_within": "Within limit", "response": "Response", "repair": "Repair",
        "b_response": "response limit missed", "b_repair": "repair limit missed",
        "b_other": "other", "device": "Device", "site": "Site", "failures": "Failures",
        "reopens": "Reopened", "causes": "Causes", "total": "Total", "name": "Name",
        "cameras": "Cameras", "online_h": "Online (h)", "offline_h": "Offline (h)",
        "unknown_h": "Unknown (h)", "online_rate": "Online rate",
        "device_days": "Device-days counted", "good_days": "Device-days in good order",
        "good_rate": "Good-order rate", "all": "All",
        "rates_note": "Online rate = cameras' online time ÷ known time (online + offline); "
                      "good-order rate = device-days in good order ÷ device-days whose state "
                      "is known (online most of the day, no level 1-3 ticket open).",
        "id": "No.", "period": "Period", "due": "Due", "state": "State",
        "submitted": "Submitted", "signed": "Signed", "signed_by": "Signed by",
        "results": "Results", "issues": "Issues", "overdue": "Overdue",
        "i_state": {"open": "to inspect", "submitted": "awaiting sign-off",
                    "signed": "signed off"},
        "method": "Method", "methods": {"snmp": "remote (SNMP)", "manual": "manual"},
        "test_kind": "Test", "kinds": {"quick": "quick", "deep": "deep"},
        "started": "Started", "ended": "Ended",
        "discharge_min": "Discharge (min)", "previous_min": "Previous (min)", "drop": "Drop",
        "result_h": "Result",
        "result": {"pass": "pass", "warning": "warning", "error": "failed",
                   "aborted": "aborted", "timeout": "timed out", "lost": "lost",
                   "running": "running"},
        "ups_trend_h": "Discharge time, last 12 months", "latest": "Latest",
        "tests_n": "Tests", "point": "Earthing point", "limit_ohm": "Limit (Ω)",
        "latest_ohm": "Latest (Ω)", "measured_at": "Measured", "ohm": "Resistance (Ω)",
        "change_ohm": "Change (Ω)", "over_limit_h": "Over limit", "instrument": "Instrument",
        "technician": "Technician", "weather": "Weather", "in_month": "This month",
        "grounding_h": "Grounding resistance", "spd_h": "Surge protectors (SPD, now)",
        "spd_status": "State", "strikes_total": "Strikes", "leakage": "Leakage (A)",
        "spd": {"ok": "ok", "tripped": "tripped", "unknown": "unknown"},
        "no_spd_state": "SPD state not read (the report was not made by a running agent).",
        "o_ticket": "Ticket not closed", "o_inspection": "Inspection overdue",
        "o_grounding": "Earthing point", "o_ups": "UPS test failed", "what": "What",
        "subject": "Subject", "detail": "Detail", "opened_at": "opened",
        "over_limit": "{ohm} Ω over the {limit} Ω limit",
        "overdue_since": "to be measured again by {due}", "never_measured": "never measured",
        "open_by_level": "{n} tickets open at the month's end",
        "open_more": "{n} more not listed.", "no_open": "Nothing open.",
        "recommendation": "Recommendation", "no_recommendations": "No recommendations.",
        "no_data": "no data", "minutes": "minutes",
        "more_rows": "{n} more rows in the XLSX.",
        "ch_causes": "Faults by cause", "ch_trend": "Faults opened per month, by level",
        "ch_online": "Camera online rate per site (%)", "ch_ups": "UPS discharge time",
        "ch_grounding": "Grounding resistance",
        "sign_contractor": "Maintenance contractor", "sign_owner": "Owner", "sign_date": "Date",
        "item": "Item", "value": "Value",
        "sh_summary": "Summary", "sh_causes": "Causes", "sh_kinds": "Device kinds",
        "sh_levels": "Levels", "sh_times": "Time limits", "sh_worst": "Worst devices",
        "sh_trend": "Monthly trend", "sh_rates": "Online and good-order",
        "sh_inspections": "Inspections", "sh_ups": "UPS tests",
        "sh_ups_trend": "UPS discharge trend", "sh_grounding": "Earthing points",
        "sh_measurements": "Grounding measurements", "sh_spd": "SPD",
        "sh_open": "Open items", "sh_recommendations": "Recommendations",
    },
}
