"""The inspection sheet as a file: exported to XLSX (or CSV) for the technician to fill on
site, imported back.

The workbook's first sheet, `checklist`, has one row per checklist item (and device) with
the columns below; the technician fills `status` (ok / issue / na, or 正常 / 异常 / 不适用)
and `note`. The other sheets (`devices`, `info`) show the pre-filled telemetry and are not
read back. A file whose header is not exactly these columns, or with a row naming an
unknown item or device, or a bad status, is refused as a whole: every problem is listed by
row and column, and nothing is stored.
"""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

from openpyxl import Workbook, load_workbook
from openpyxl.utils import get_column_letter

from agent.inspections import Problem, Row, SheetRefused
from agent.reports.workbook import cell_text

COLUMNS = ("item", "device", "description", "status", "note")
HEADERS = {"item": "item / 检查项", "device": "device / 设备", "description": "description / 内容",
           "status": "status / 结果", "note": "note / 备注"}
CHECKLIST = "checklist"
MAX_ROWS = 20000
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def rows_of(inspection: dict[str, Any], lang: str = "zh") -> list[list[str]]:
    """The checklist rows of an inspection (as `InspectionService.get` gives it), with the
    results recorded so far."""
    done = {(r["item"], r["device"]): r for r in inspection.get("results", [])}
    out = []
    for row in inspection["sheet"].get("checklist", []):
        result = done.get((row["item"], row["device"]), {})
        out.append([row["item"], row["device"], row.get(lang) or row["en"],
                    result.get("status", ""), result.get("note", "")])
    return out


def to_xlsx(inspection: dict[str, Any], lang: str = "zh") -> bytes:
    sheet = inspection["sheet"]
    book = Workbook()
    ws = book.active
    ws.title = CHECKLIST
    ws.append([HEADERS[c] for c in COLUMNS])
    for row in rows_of(inspection, lang):
        ws.append([cell_text(v) for v in row])
    for index, width in enumerate((26, 18, 40, 12, 40), start=1):
        ws.column_dimensions[get_column_letter(index)].width = width
    ws.freeze_panes = "A2"
    devices = book.create_sheet("devices")
    devices.append(["id", "kind", "name", "firmware", "up", "tickets", "open tickets",
                    "causes", "UPS on battery", "UPS charge", "UPS runtime s", "SPD status",
                    "SPD strikes"])
    for d in sheet.get("devices", []):
        ups, spd, tickets = d.get("ups") or {}, d.get("spd") or {}, d["tickets"]
        devices.append([d["id"], d["kind"], d["name"], d.get("firmware") or "",
                        {True: "up", False: "down", None: "?"}[d.get("up")], tickets["count"],
                        ", ".join(map(str, tickets["open"])),
                        ", ".join(f"{k} {v}" for k, v in tickets["causes"].items()),
                        _cell(ups.get("on_battery")), _cell(ups.get("charge_ratio")),
                        _cell(ups.get("runtime_seconds")), _cell(spd.get("status")),
                        _cell(spd.get("strikes"))])
    info = book.create_sheet("info")
    title = sheet.get("title", {}).get(lang, inspection["kind"])
    for key, value in (("inspection", inspection["id"]), ("title", title),
                       ("site", f"{inspection['site']} {sheet.get('site_name', '')}".strip()),
                       ("period", inspection["period"]), ("due", inspection["due_at"]),
                       ("state", inspection["state"]),
                       ("status", "ok 正常 / issue 异常 / na 不适用; an issue needs a note")):
        info.append([key, value])
    for name, section in sheet.get("sections", {}).items():
        available = section.get("available")
        info.append([name, section.get("title", {}).get(lang, name),
                     "" if available else section.get("note", {}).get(lang, "not available")])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value


def to_csv(inspection: dict[str, Any], lang: str = "zh") -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([HEADERS[c] for c in COLUMNS])
    writer.writerows(rows_of(inspection, lang))
    return out.getvalue().encode("utf-8-sig")  # the BOM makes Excel read it as UTF-8


def read_sheet(data: bytes, filename: str = "") -> list[Row]:
    """The rows of a filled sheet (XLSX or CSV, told apart by content), or SheetRefused with
    every problem of its header."""
    if data[:2] == b"PK":
        table = _xlsx_table(data)
    else:
        table = _csv_table(data)
    if not table:
        raise SheetRefused([Problem(1, "-", "the sheet is empty (no header row)")])
    header = [_header(v) for v in table[0]]
    while header and header[-1] == "":
        header.pop()
    problems = []
    for index, name in enumerate(header):
        if name not in COLUMNS:
            problems.append(Problem(1, _col(index, name or "(blank)"),
                                    f"unknown column {name!r}; the columns are "
                                    f"{', '.join(COLUMNS)}"))
        elif header.index(name) != index:
            problems.append(Problem(1, _col(index, name), f"column {name!r} is given twice"))
    for name in COLUMNS:
        if name not in header:
            problems.append(Problem(1, name, f"missing column {name!r}"))
    if problems:
        raise SheetRefused(problems)
    if len(table) - 1 > MAX_ROWS:
        raise SheetRefused([Problem(len(table), "-", f"more than {MAX_ROWS} rows")])
    where = {name: header.index(name) for name in COLUMNS}
    columns = tuple(_col(where[n], n) for n in ("item", "device", "status", "note"))
    rows, outside = [], []
    for number, values in enumerate(table[1:], start=2):
        outside += [Problem(number, _col(i, "?"), "a value outside the columns")
                    for i, v in enumerate(values) if i >= len(header) and _filled(v)]
        cells = {n: values[i] if i < len(values) else None for n, i in where.items()}
        if not any(_filled(v) for v in cells.values()):
            continue  # a blank line
        rows.append(Row(number, cells["item"], cells["device"], cells["status"],
                        cells["note"], columns))  # type: ignore[arg-type]
    if outside:
        raise SheetRefused(outside)
    return rows


def _xlsx_table(data: bytes) -> list[list[Any]]:
    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        raise SheetRefused([Problem("-", "-", f"not a readable XLSX file: {exc}")]) from None
    try:
        if CHECKLIST not in book.sheetnames:
            raise SheetRefused([Problem("-", "-", f"no sheet named {CHECKLIST!r} (found: "
                                                  f"{', '.join(book.sheetnames)})")])
        return [list(r) for r in book[CHECKLIST].iter_rows(values_only=True,
                                                          max_row=MAX_ROWS + 2)]
    finally:
        book.close()


def _csv_table(data: bytes) -> list[list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise SheetRefused([Problem("-", "-", f"a CSV file must be UTF-8: {exc}")]) from None
    try:
        return [row for row in csv.reader(io.StringIO(text))]
    except csv.Error as exc:
        raise SheetRefused([Problem("-", "-", f"not a readable CSV file: {exc}")]) from None


def _header(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.split("/")[0].strip().lower()


def _filled(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _col(index: int, name: str) -> str:
    return f"{get_column_letter(index + 1)} ({name})"
