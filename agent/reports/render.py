"""Rendering a report to HTML, PDF or XLSX.

A report is data plus a template: an object with `template` (a file in `templates/`, which
extends `base.html.j2`: A4, print CSS, the CJK font), `context(lang)` (what the template
reads), `sheets(lang)` (the XLSX sheets) and `filename(lang)`. The HTML is what the agent
serves; the PDF is WeasyPrint's rendering of that same HTML, so the two never disagree.

Templates run in Jinja2's sandbox with autoescaping: ticket texts typed by people (a
diagnosis, a note) are data, never markup.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import tzinfo
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from agent.reports import labels
from agent.reports.charts import cjk_font
from agent.reports.workbook import Sheet, workbook

TEMPLATES = Path(__file__).parent / "templates"
CONTENT_TYPES = {
    "html": "text/html; charset=utf-8",
    "pdf": "application/pdf",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
FORMATS = tuple(CONTENT_TYPES)
logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)  # 7 INFO lines a PDF


class Report(Protocol):
    template: str
    tz: tzinfo | None

    def context(self, lang: str) -> dict[str, Any]: ...

    def sheets(self, lang: str) -> list[Sheet]: ...

    def filename(self, lang: str) -> str:
        """The file name without extension (may be Chinese)."""
        ...


@dataclass(frozen=True)
class Output:
    body: bytes
    content_type: str
    filename: str
    fallback: str  # ASCII: the English file name

    def content_disposition(self) -> str:
        """RFC 6266: the ASCII name for old clients, the UTF-8 (Chinese) name for the
        others (`filename*`, RFC 8187). HTML and PDF open in the browser, XLSX downloads."""
        kind = "attachment" if self.filename.endswith(".xlsx") else "inline"
        fallback = re.sub(r"[^A-Za-z0-9._-]+", "_", self.fallback).strip("_") or "report"
        return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(self.filename)}"


class ReportRenderer:
    """Renders any report; `directory` replaces the shipped templates."""

    def __init__(self, directory: Path = TEMPLATES) -> None:
        self.env = SandboxedEnvironment(loader=FileSystemLoader(str(directory)),
                                        undefined=StrictUndefined, autoescape=True,
                                        trim_blocks=True, lstrip_blocks=True)
        self.directory = directory

    def render(self, report: Report, fmt: str, lang: str = "zh") -> Output:
        if fmt not in CONTENT_TYPES:
            raise ValueError(f"format {fmt!r}: one of {', '.join(FORMATS)}")
        if lang not in labels.LANGS:
            raise ValueError(f"lang {lang!r}: one of {', '.join(labels.LANGS)}")
        name = f"{report.filename(lang)}.{fmt}"
        if fmt == "xlsx":
            body = workbook(report.sheets(lang), report.tz)
        elif fmt == "pdf":
            body = self.pdf(self.html(report, lang))
        else:
            body = self.html(report, lang).encode("utf-8")
        return Output(body, CONTENT_TYPES[fmt], name, f"{report.filename('en')}.{fmt}")

    def html(self, report: Report, lang: str) -> str:
        tz = report.tz
        env = self.env.overlay()
        env.filters.update(
            when=lambda t, seconds=False: labels.when(t, tz, seconds),
            duration=lambda v: labels.duration(v, lang),
            cell=lambda v: labels.cell(v, tz, lang))
        context = {"lang": lang, "c": labels.COMMON[lang],
                   "font": cjk_font() or "sans-serif", **report.context(lang)}
        return env.get_template(report.template).render(context)

    def pdf(self, html: str) -> bytes:
        from weasyprint import HTML  # imported when first needed: half a second

        return HTML(string=html, base_url=str(self.directory)).write_pdf()
