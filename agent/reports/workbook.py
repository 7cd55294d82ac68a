"""XLSX output (openpyxl): one sheet per report section, typed cells.

Acceptance staff sum, filter and chart these in Excel, so numbers are numbers (not text),
times are Excel date-times in the report's time zone (Excel has no time zones), durations
are minutes as numbers, the header row is frozen and filterable, and columns are wide
enough for their (Chinese) text.
"""

from __future__ import annotations

import io
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter

MIN_WIDTH, MAX_WIDTH = 8, 60
DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
_BAD_TITLE = str.maketrans({c: "_" for c in "[]:*?/\\"})


@dataclass
class Sheet:
    """One sheet: a header row and rows of values (str, int, float, bool, aware datetime,
    None). `formats`: Excel number formats by column index (e.g. `0.0` for minutes);
    `row_formats` by sheet row number (1 is the header), for a column of mixed figures."""

    title: str
    header: Sequence[str]
    rows: list[Sequence[Any]] = field(default_factory=list)
    formats: dict[int, str] = field(default_factory=dict)
    row_formats: dict[int, str] = field(default_factory=dict)


def workbook(sheets: Sequence[Sheet], tz: tzinfo | None) -> bytes:
    """The .xlsx file of `sheets`, in order."""
    book = Workbook()
    book.remove(book.active)
    bold = Font(bold=True)
    fill = PatternFill("solid", fgColor="DDE4EE")
    for spec in sheets:
        ws = book.create_sheet(spec.title.translate(_BAD_TITLE)[:31])
        ws.append(list(spec.header))
        for cell in ws[1]:
            cell.font, cell.fill = bold, fill
        widths = [_width(h) for h in spec.header]
        for row in spec.rows:
            ws.append([_cell(v, tz) for v in row])
            for i, value in enumerate(row):
                text = value.strftime("%Y-%m-%d %H:%M") if isinstance(value, datetime) \
                    else str(value if value is not None else "")
                if i < len(widths):
                    widths[i] = max(widths[i], max(map(_width, text.splitlines() or [""])))
        for i, width in enumerate(widths, start=1):
            letter = get_column_letter(i)
            ws.column_dimensions[letter].width = min(MAX_WIDTH, max(MIN_WIDTH, width + 2))
            fmt = spec.formats.get(i - 1)
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                if isinstance(cell.value, datetime):
                    cell.number_format = DATETIME_FORMAT
                elif fmt and isinstance(cell.value, int | float):
                    cell.number_format = fmt
                if isinstance(cell.value, str) and (len(cell.value) > MAX_WIDTH
                                                    or "\n" in cell.value):
                    cell.alignment = Alignment(wrap_text=True, vertical="top")
        for number, fmt in spec.row_formats.items():
            for cell in ws[number]:
                if isinstance(cell.value, int | float) and not isinstance(cell.value, bool):
                    cell.number_format = fmt
        ws.freeze_panes = "A2"
        if spec.rows:
            ws.auto_filter.ref = ws.dimensions
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def _cell(value: Any, tz: tzinfo | None) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(tz).replace(tzinfo=None) if value.tzinfo else value
    if value is None or isinstance(value, int | float | bool):
        return value
    return cell_text(str(value))


def cell_text(text: str) -> str:
    """`text` without the control characters an XLSX cell cannot hold (a note typed with
    one, e.g. an ESC from a terminal, must not stop the report)."""
    return ILLEGAL_CHARACTERS_RE.sub("", text)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)
