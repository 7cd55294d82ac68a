"""`vigil stats`: the fault statistics of a month (or dates) from the running agent's API,
as plain-text tables, Chinese by default.

Exit status: 0 done, 1 the API refused (its reason is printed), 2 the agent is unreachable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import click

from agent.cli_common import CONFIG_OPTION, TOKEN_OPTION, URL_OPTION, _api, _table, api_call
from agent.statistics import (
    CAUSE_NAMES,
    KIND_NAMES,
    MAX_TREND_MONTHS,
    TREND_MONTHS,
    limit_text,
)

WORDS = {  # English -> Chinese for headers and captions
    "Fault statistics": "故障统计", "site": "站点", "all sites": "全部站点",
    "opened": "新开工单", "closed": "已关闭工单", "partial period": "统计期未结束",
    "By cause (closed tickets)": "按故障原因（已关闭工单）", "CAUSE": "原因", "COUNT": "数量",
    "SHARE": "占比", "By device kind (opened tickets)": "按设备类型（新开工单）", "KIND": "类型",
    "By site (opened tickets)": "按站点（新开工单）", "SITE": "站点",
    "By level (opened tickets)": "按级别（新开工单）", "LEVEL": "级别", "ORIGINAL": "初始",
    "FINAL": "最终", "Response and repair times": "响应与修复时间", "LIMIT": "时限",
    "WITHIN": "及时", "MISSED": "超时", "PENDING": "未到期", "IN TIME": "及时率",
    "MEAN": "平均", "MEDIAN": "中位", "P90": "P90", "respond": "响应", "repair": "修复",
    "Breaches and escalations": "超时与升级", "escalations": "升级次数",
    "escalated tickets": "升级工单数", "response breaches": "响应超时",
    "repair breaches": "修复超时", "other": "其他", "by level breached": "按超时级别",
    "Repeat failures (worst 10)": "重复故障设备（前 10）", "DEVICE": "设备",
    "TICKETS": "工单", "REOPENS": "重开", "FAILURES": "故障次数", "CAUSES": "原因",
    "Monthly trend": "月度趋势", "MONTH": "月份", "OPENED": "新开", "CLOSED": "关闭",
    "Recommendations": "建议", "none": "无",
}


def _w(text: str, lang: str) -> str:
    return WORDS.get(text, text) if lang == "zh" else text


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.1f}%"


def _dur(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def _name(names: dict[str, tuple[str, str]], key: str, lang: str) -> str:
    pair = names.get(key)
    return key if pair is None else pair[0 if lang == "zh" else 1]


@click.command("stats")
@CONFIG_OPTION
@URL_OPTION
@TOKEN_OPTION
@click.option("--month", metavar="YYYY-MM", help="The month (in the contract's time zone).")
@click.option("--start", metavar="YYYY-MM-DD", help="First day (with --end, instead of --month).")
@click.option("--end", metavar="YYYY-MM-DD", help="Last day, included.")
@click.option("--site", help="Only this site.")
@click.option("--months", type=click.IntRange(1, MAX_TREND_MONTHS), default=TREND_MONTHS,
              show_default=True, help="Months in the trend table.")
@click.option("--lang", type=click.Choice(["zh", "en"]), default="zh", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the statistics as JSON.")
def stats(config_path: Path, url: str | None, token: str | None, month: str | None,
          start: str | None, end: str | None, site: str | None, months: int, lang: str,
          as_json: bool) -> None:
    """Fault statistics of a month: causes, device kinds, sites, levels, response and repair
    times against the contract's limits, escalations, repeat failures, recommendations.

    Read from the running agent (GET /api/v1/statistics); docs/statistics.md defines every
    figure."""
    if (month is None) == (start is None and end is None):
        raise click.UsageError("give --month YYYY-MM, or --start and --end YYYY-MM-DD")
    query = {k: v for k, v in {"month": month, "start": start, "end": end, "site": site,
                               "months": months}.items() if v is not None}
    data = api_call("GET", f"{_api(config_path, url)}/api/v1/statistics?{urlencode(query)}",
                    token=token)
    if as_json:
        click.echo(json.dumps(data, ensure_ascii=False, indent=2))
        return
    click.echo(render(data, lang))


def render(s: dict[str, Any], lang: str) -> str:
    """The statistics as text tables."""
    w = lambda text: _w(text, lang)  # noqa: E731
    p = s["period"]
    out = [f"{w('Fault statistics')} {p['label']}  {w('site')}: {s['site'] or w('all sites')}  "
           f"({p['timezone']})" + (f"  [{w('partial period')}]" if s["partial"] else ""),
           f"{w('opened')}: {s['opened']}   {w('closed')}: {s['closed']}", ""]

    def section(title: str, rows: list[tuple[str, ...]]) -> None:
        out.extend([f"## {w(title)}", _table(rows), ""])

    section("By cause (closed tickets)", [(w("CAUSE"), w("COUNT"), w("SHARE"))] + [
        (_name(CAUSE_NAMES, c["key"], lang), str(c["count"]), _pct(c["share"]))
        for c in s["by_cause"]])
    section("By device kind (opened tickets)", [(w("KIND"), w("COUNT"), w("SHARE"))] + [
        (_name(KIND_NAMES, c["key"], lang), str(c["count"]), _pct(c["share"]))
        for c in s["by_kind"]])
    section("By site (opened tickets)", [(w("SITE"), w("COUNT"), w("SHARE"))] + [
        (c["key"], str(c["count"]), _pct(c["share"])) for c in s["by_site"]])
    section("By level (opened tickets)", [(w("LEVEL"), w("ORIGINAL"), w("FINAL"))] + [
        (a["key"], str(a["count"]), str(b["count"]))
        for a, b in zip(s["by_original_level"], s["by_final_level"], strict=True)])
    rows = [(w("LEVEL"), "", w("LIMIT"), w("WITHIN"), w("MISSED"), w("PENDING"), w("IN TIME"),
             w("MEAN"), w("MEDIAN"), w("P90"))]
    for t in s["times"]:
        for part in ("respond", "repair"):
            c = t[part]
            d = c["durations"]
            rows.append((str(t["level"]), w(part), limit_text(c["limit"], lang), str(c["within"]),
                         str(c["missed"]), str(c["pending"]), _pct(c["share_within"]),
                         _dur(d["mean"]), _dur(d["median"]), _dur(d["p90"])))
    section("Response and repair times", rows)
    b = s["breaches"]
    out += [f"## {w('Breaches and escalations')}",
            f"{w('escalations')}: {b['escalations']}   {w('escalated tickets')}: "
            f"{b['escalated_tickets']}   {w('response breaches')}: {b['by_kind']['response']}"
            f"   {w('repair breaches')}: {b['by_kind']['repair']}   {w('other')}: "
            f"{b['by_kind']['other']}",
            f"{w('by level breached')}: " + (", ".join(
                f"{level}: {n}" for level, n in sorted(b["by_level"].items())) or "-"), ""]
    if s["repeat_failures"]:
        section("Repeat failures (worst 10)", [
            (w("DEVICE"), w("KIND"), w("SITE"), w("TICKETS"), w("REOPENS"), w("FAILURES"),
             w("CAUSES"))] + [
            (d["device"], _name(KIND_NAMES, d["kind"], lang), d["site"], str(d["tickets"]),
             str(d["reopens"]), str(d["failures"]),
             ", ".join(f"{_name(CAUSE_NAMES, k, lang)} {n}" for k, n in d["causes"].items())
             or "-") for d in s["repeat_failures"]])
    section("Monthly trend", [(w("MONTH"), w("OPENED"), w("CLOSED"))] + [
        (m["month"], str(m["opened"]), str(m["closed"])) for m in s["trend"]])
    out.append(f"## {w('Recommendations')}")
    text = "text_zh" if lang == "zh" else "text_en"
    out += [f"- {r[text]}" for r in s["recommendations"]] or [w("none")]
    return "\n".join(out)
