"""A filled measurement sheet (测量记录表), CSV or XLSX, read into measurements.

Technicians fill the sheet on site, in Excel or WPS, and the engineer imports it. Its first
non-empty row names the columns, in English or Chinese; the columns are exactly: point,
measured_at, ohm, instrument, technician, weather, and optionally soil and notes. A missing
or unknown column, or a row that cannot be read, is reported with its row and column; the
import (agent/grounding.py `record`) then refuses the whole sheet, so a half-imported sheet
never exists.
"""

from __future__ import annotations

import csv
import io
import re
from datetime import date, datetime, tzinfo
from typing import Any

from agent.grounding import Measurement, Problem

REQUIRED = ("point", "measured_at", "ohm", "instrument", "technician", "weather")
OPTIONAL = ("soil", "notes")
ALIASES = {
    "point": "point", "接地点": "point", "测点": "point", "点位": "point",
    "measured_at": "measured_at", "测量时间": "measured_at", "时间": "measured_at",
    "ohm": "ohm", "ohms": "ohm", "接地电阻": "ohm", "电阻": "ohm", "电阻值": "ohm",
    "instrument": "instrument", "仪表": "instrument", "仪器": "instrument",
    "测量仪器": "instrument",
    "technician": "technician", "测量人": "technician", "技术员": "technician",
    "weather": "weather", "天气": "weather",
    "soil": "soil", "土壤": "soil", "土壤状况": "soil",
    "notes": "notes", "备注": "notes",
}
MAX_ROWS = 10_000
_TIME_FORMATS = ("%Y-%m-%d %H:%M", "%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M", "%Y/%m/%d %H:%M:%S",
                 "%Y-%m-%d", "%Y/%m/%d")


class SheetError(Exception):
    """The file is not a sheet at all (not CSV/XLSX, no header row, too big)."""


def _column_name(header: Any) -> str:
    text = re.sub(r"[\s(（].*$", "", str(header or "").strip()).lower()  # '电阻(Ω)' -> 电阻
    return ALIASES.get(text, ALIASES.get(str(header or "").strip().lower(), ""))


def _letter(index: int) -> str:
    out = ""
    index += 1
    while index:
        index, rem = divmod(index - 1, 26)
        out = chr(65 + rem) + out
    return out


def read_rows(data: bytes, filename: str = "") -> list[list[Any]]:
    """The sheet's cells, row by row: XLSX (a zip: first worksheet) or CSV (UTF-8, or
    GB18030 as Excel saves it on a Chinese Windows)."""
    if data[:2] == b"PK" or filename.lower().endswith(".xlsx"):
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds for a bad file
            raise SheetError(f"not a readable XLSX workbook: {exc}") from None
        try:
            sheet = book.worksheets[0]
            return [list(row) for row in sheet.iter_rows(values_only=True)]
        finally:
            book.close()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:
        raise SheetError("neither an XLSX workbook nor CSV text (UTF-8 or GB18030)")
    if "\x00" in text:
        raise SheetError("neither an XLSX workbook nor CSV text (it holds NUL bytes)")
    return [row for row in csv.reader(io.StringIO(text))]


def _blank(row: list[Any]) -> bool:
    return all(c is None or str(c).strip() == "" for c in row)


def _time(value: Any, tz: tzinfo) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=tz)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=tz)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)
    except ValueError:
        pass
    for fmt in _TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=tz)
        except ValueError:
            continue
    raise ValueError(f"'{text}' is not a time (write e.g. 2026-10-12 09:30)")


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a number")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip().replace("Ω", "").replace("ω", "").strip()
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"'{value}' is not a number of ohms") from None


def parse(data: bytes, tz: tzinfo, filename: str = ""
          ) -> tuple[list[Measurement], list[Problem]]:
    """The sheet's measurements and every problem found reading it (times without an
    offset are in `tz`, the agent's local time)."""
    rows = read_rows(data, filename)
    start = next((i for i, row in enumerate(rows) if not _blank(row)), None)
    if start is None:
        raise SheetError("the sheet is empty (no header row)")
    if len(rows) - start - 1 > MAX_ROWS:
        raise SheetError(f"more than {MAX_ROWS} rows: split the sheet")
    header = rows[start]
    problems: list[Problem] = []
    columns: dict[str, int] = {}
    for i, cell in enumerate(header):
        if cell is None or str(cell).strip() == "":
            continue
        name = _column_name(cell)
        where = f"row {start + 1}"
        if not name:
            problems.append(Problem(f"column {_letter(i)}", f"unknown column '{cell}' "
                                    f"(the columns are {', '.join(REQUIRED + OPTIONAL)})",
                                    where))
        elif name in columns:
            problems.append(Problem(f"column {_letter(i)}", f"'{cell}' is column "
                                    f"{_letter(columns[name])} again", where))
        else:
            columns[name] = i
    for name in REQUIRED:
        if name not in columns:
            problems.append(Problem(name, "required column is missing", f"row {start + 1}"))
    if problems:
        return [], problems
    out: list[Measurement] = []
    for r in range(start + 1, len(rows)):
        row = rows[r]
        if _blank(row):
            continue
        where = f"row {r + 1}"

        def cell(name: str, row: list[Any] = row) -> Any:
            i = columns.get(name)
            return row[i] if i is not None and i < len(row) else None

        def text(name: str) -> str:
            value = cell(name)
            return "" if value is None else str(value).strip()

        extra = [i for i, c in enumerate(row) if i >= len(header) and not _blank([c])]
        for i in extra:
            problems.append(Problem(f"column {_letter(i)}", "a value outside the sheet's "
                                                            "columns", where))
        ohm: Any = cell("ohm")
        if ohm is None or str(ohm).strip() == "":
            problems.append(Problem("ohm", "required", where))
            ohm = None
        else:
            try:
                ohm = _number(ohm)
            except ValueError as exc:
                problems.append(Problem("ohm", str(exc), where))
                ohm = None
        at: datetime | None = None
        raw_at = cell("measured_at")
        if raw_at is None or str(raw_at).strip() == "":
            problems.append(Problem("measured_at", "required", where))
        else:
            try:
                at = _time(raw_at, tz)
            except ValueError as exc:
                problems.append(Problem("measured_at", str(exc), where))
        out.append(Measurement(point=text("point"), ohm=ohm, measured_at=at,
                               instrument=text("instrument"), technician=text("technician"),
                               weather=text("weather"), soil=text("soil"), notes=text("notes"),
                               where=where))
    return out, problems


def problems_of(data: bytes, tz: tzinfo, points: dict[str, Any], now: float,
                filename: str = "") -> tuple[list[Measurement], list[Problem]]:
    """The sheet read and checked: its measurements and every problem, each once (a cell
    that could not be read is not reported again by the range checks)."""
    from agent.grounding import check

    batch, problems = parse(data, tz, filename)
    reported = {(p.where, p.field) for p in problems}
    problems += [p for p in check(batch, points, now) if (p.where, p.field) not in reported]
    problems.sort(key=lambda p: (int(p.where[4:]) if p.where.startswith("row ") else 0,
                                 REQUIRED.index(p.field) if p.field in REQUIRED else 99))
    return batch, problems
