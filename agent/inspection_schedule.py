"""Inspection schedules (`inspections:` in agent.yaml) and the pure function that says which
inspections are due at a given time.

Three kinds ship: the monthly visit (月度巡检), the quarterly inspection of the whole system
(季度巡检) and the half-yearly comprehensive test of every device (半年综合测试). Periods are
calendar months, quarters and half-years in `inspections.timezone` (the project's sites are
in one time zone; Asia/Shanghai by default), so "October" means October as the owner counts
it, not in UTC. Each kind has an on-site checklist: items per site, or per device of some
kinds (lens cleaning is per camera).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator, model_validator

from agent.configbase import Duration, Strict

Period = Literal["month", "quarter", "half_year"]
MONTHS = {"month": 1, "quarter": 3, "half_year": 6}
SHORTEST = {"month": 28, "quarter": 89, "half_year": 181}  # days, for checking due_after
CAMERAS = ["ptz_camera", "fixed_camera"]


class ChecklistItem(Strict):
    """One on-site check the technician marks ok / issue / not applicable."""

    id: str = Field(..., pattern=r"^[a-z][a-z0-9_]{0,63}$",
                    description="Identifier of the item, as written in the sheet "
                                "(e.g. `lens_cleaning`).")
    zh: str = Field(..., min_length=1, description="The check, in Chinese.")
    en: str = Field(..., min_length=1, description="The check, in English.")
    per: Literal["site", "device"] = Field(
        "site", description="`site`: once per site; `device`: once per device of `kinds`.")
    kinds: list[str] = Field(
        default_factory=list,
        description="With `per: device`: the device kinds it applies to (empty: every kind).")

    @model_validator(mode="after")
    def _kinds_need_devices(self) -> ChecklistItem:
        if self.kinds and self.per != "device":
            raise ValueError("`kinds` applies to `per: device` items only")
        return self


def _item(id_: str, zh: str, en: str, kinds: list[str] | None = None) -> ChecklistItem:
    if kinds is None:
        return ChecklistItem(id=id_, zh=zh, en=en)
    return ChecklistItem(id=id_, zh=zh, en=en, per="device", kinds=kinds)


MONTHLY_ITEMS = [
    _item("lens_cleaning", "镜头及防护罩清洁", "Lens and housing cleaned", CAMERAS),
    _item("pole_box_rust", "立杆、设备箱锈蚀检查", "Poles and boxes checked for rust"),
    _item("connectors_cables", "接头及线缆检查（松动、老化、进水）",
          "Connectors and cables checked (loose, aged, water)"),
    _item("cabinet_tidy", "机柜整洁、清洁", "Cabinet tidy and clean"),
    _item("spd_earthing_visual", "防雷器及接地目视检查", "SPD and earthing visually checked"),
]
QUARTERLY_ITEMS = [
    *MONTHLY_ITEMS,
    _item("system_function", "系统整体功能检查（预览、云台控制、平台联动）",
          "Whole-system function check (live view, PTZ control, platform)"),
    _item("recording_spot_check", "录像抽查（完整性、保存天数）",
          "Recordings spot-checked (completeness, days kept)"),
]
HALF_YEARLY_ITEMS = [
    *QUARTERLY_ITEMS,
    _item("device_comprehensive_test", "设备综合测试", "Comprehensive device test", []),
    _item("grounding_measurement", "接地电阻测量", "Grounding resistance measured"),
]


class InspectionSchedule(Strict):
    """One kind of periodic inspection."""

    period: Period = Field(..., description="`month`, `quarter` or `half_year` (calendar "
                                            "periods in `inspections.timezone`).")
    due_after: Duration | None = Field(
        None, description="When the inspection is due, counted from the period's start "
                          "(e.g. `25d`). Default: the period's end. Past it and not "
                          "submitted, the inspection is overdue.")
    sites: list[str] = Field(default_factory=list,
                             description="Site ids inspected (empty: every site).")
    title_zh: str = Field("", description="Name on the sheet, in Chinese.")
    title_en: str = Field("", description="Name on the sheet, in English.")
    checklist: list[ChecklistItem] = Field(
        default_factory=list, description="The on-site items (keys: id, zh, en, per, kinds).")

    @model_validator(mode="after")
    def _check(self) -> InspectionSchedule:
        if self.due_after is not None and not \
                0 < self.due_after <= SHORTEST[self.period] * 86400:
            raise ValueError(f"due_after must be within the shortest {self.period} "
                             f"({SHORTEST[self.period]}d)")
        ids = [i.id for i in self.checklist]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"checklist item ids must be unique; twice: {', '.join(twice)}")
        return self


def default_schedules() -> dict[str, InspectionSchedule]:
    return {
        "monthly": InspectionSchedule(period="month", due_after=25 * 86400.0,
                                      title_zh="月度巡检", title_en="Monthly visit",
                                      checklist=MONTHLY_ITEMS),
        "quarterly": InspectionSchedule(period="quarter", title_zh="季度巡检",
                                        title_en="Quarterly system inspection",
                                        checklist=QUARTERLY_ITEMS),
        "half_yearly": InspectionSchedule(period="half_year", title_zh="半年综合测试",
                                          title_en="Half-yearly comprehensive test",
                                          checklist=HALF_YEARLY_ITEMS),
    }


class Inspections(Strict):
    """Periodic inspections: which kinds, when due, which sites, what is checked on site.
    See docs/inspections.md."""

    enabled: bool = Field(True, description="Create the inspections of each period as it "
                                            "starts (needs `tickets.enabled`: same store).")
    timezone: str = Field("Asia/Shanghai",
                          description="Time zone of the calendar periods (IANA name).")
    check_interval: Duration = Field(
        3600.0, gt=0, description="How often the agent creates the inspections of periods "
                                  "that have started and refreshes the overdue metrics.")
    schedules: dict[str, InspectionSchedule] = Field(
        default_factory=default_schedules,
        description="Inspection kinds by name (`monthly`, `quarterly`, `half_yearly` ship with "
                    "their checklists); giving this key replaces the whole map.")

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (IANA name, e.g. "
                             "Asia/Shanghai)") from None
        return value

    @field_validator("schedules")
    @classmethod
    def _names(cls, value: dict[str, InspectionSchedule]) -> dict[str, InspectionSchedule]:
        for name in value:
            if not name or not name.replace("_", "").isalnum() or not name.isascii():
                raise ValueError(f"schedule name {name!r}: letters, digits and _")
        return value


@dataclass(frozen=True)
class Due:
    """One inspection that should exist: site, kind and period, with its times (UTC)."""

    site: str
    kind: str
    period: str  # '2026-10', '2026-Q4', '2026-H2'
    start: datetime
    end: datetime
    due: datetime


def period_of(at: datetime, period: Period, zone: str) -> tuple[str, datetime, datetime]:
    """The calendar period holding `at`: its label and its [start, end) in UTC."""
    if at.tzinfo is None:
        raise ValueError("period_of needs an aware datetime")
    local = at.astimezone(ZoneInfo(zone))
    months = MONTHS[period]
    first = (local.month - 1) // months * months + 1
    start = local.replace(month=first, day=1, hour=0, minute=0, second=0, microsecond=0)
    year, month = (start.year + 1, 1) if first + months > 12 else (start.year, first + months)
    end = start.replace(year=year, month=month)
    label = {"month": f"{start.year}-{start.month:02d}",
             "quarter": f"{start.year}-Q{(first + 2) // 3}",
             "half_year": f"{start.year}-H{1 if first == 1 else 2}"}[period]
    return label, start.astimezone(UTC), end.astimezone(UTC)


def parse_period(label: str, period: Period, zone: str) -> tuple[str, datetime, datetime]:
    """A period label ('2026-10', '2026-Q4', '2026-H2') as `period_of` gives it."""
    try:
        year_text, part = label.split("-")
        year = int(year_text)
        month = {"month": lambda: int(part),
                 "quarter": lambda: (int(part.removeprefix("Q")) - 1) * 3 + 1
                 if part.startswith("Q") else 0,
                 "half_year": lambda: (int(part.removeprefix("H")) - 1) * 6 + 1
                 if part.startswith("H") else 0}[period]()
        at = datetime(year, month, 1, tzinfo=ZoneInfo(zone))
    except (ValueError, KeyError):
        at = None
    example = {"month": "2026-10", "quarter": "2026-Q4", "half_year": "2026-H2"}[period]
    if at is None or not 2000 <= at.year <= 2100:
        raise ValueError(f"period {label!r}: a {period.replace('_', '-')} like {example}")
    found = period_of(at, period, zone)
    if found[0] != label:
        raise ValueError(f"period {label!r}: a {period.replace('_', '-')} like {example}")
    return found


def planned(settings: Inspections, kind: str, site: str, label: str) -> Due:
    """The inspection of `kind` for `site` in the period `label` (ValueError if unknown)."""
    schedule = settings.schedules.get(kind)
    if schedule is None:
        raise ValueError(f"kind {kind!r}: one of {', '.join(settings.schedules)}")
    label, start, end = parse_period(label, schedule.period, settings.timezone)
    return Due(site, kind, label, start, end, _due(schedule, start, end))


def _due(schedule: InspectionSchedule, start: datetime, end: datetime) -> datetime:
    if schedule.due_after is None:
        return end
    return min(end, start + timedelta(seconds=schedule.due_after))


def due_inspections(settings: Inspections, sites: list[str], at: datetime) -> list[Due]:
    """The inspections whose period holds `at`, for every schedule and the sites it covers
    (sites it names that are not in `sites` are skipped). Pure: the caller brings the
    time."""
    out: list[Due] = []
    for kind, schedule in settings.schedules.items():
        label, start, end = period_of(at, schedule.period, settings.timezone)
        for site in sites:
            if schedule.sites and site not in schedule.sites:
                continue
            out.append(Due(site, kind, label, start, end, _due(schedule, start, end)))
    return out
