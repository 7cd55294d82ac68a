"""Charts for reports (matplotlib, Agg; no pyplot, so no global figure state and safe on
the agent's worker threads): a bar chart by category and a line chart over time, as SVG
(sharp in the PDF, text drawn as paths so the PDF needs no font for it) or PNG.

Chinese labels need a CJK font: the first of `CJK_FONTS` found among the system's fonts
(set-up installs Debian's `fonts-wqy-microhei`) is registered with matplotlib, whose own
font cache may predate the install.
"""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path

import matplotlib
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

CJK_FONTS = {  # family -> files Debian puts it in
    "WenQuanYi Micro Hei": ("/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",),
    "Noto Sans CJK SC": ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",),
}
COLOURS = ("#2f5597", "#c55a11", "#548235", "#7f6000", "#7030a0", "#808080")
_lock = threading.Lock()
_font: list[str | None] = []


def cjk_font() -> str | None:
    """The CJK font family charts (and the PDF) use, or None when none is installed."""
    with _lock:
        if not _font:
            _font.append(_register())
        return _font[0]


def _register() -> str | None:
    known = {f.name for f in font_manager.fontManager.ttflist}
    chosen = None
    for family, files in CJK_FONTS.items():
        if family not in known:
            for path in files:
                if Path(path).is_file():
                    font_manager.fontManager.addfont(path)
                    known.add(family)
        if family in known:
            chosen = family
            break
    matplotlib.rcParams.update({
        "font.family": "sans-serif",
        "font.sans-serif": [*([chosen] if chosen else []), "DejaVu Sans"],
        "axes.unicode_minus": False,  # CJK fonts lack U+2212
        "svg.fonttype": "path",
        "svg.hashsalt": "vigil",  # the same chart gives the same SVG
    })
    return chosen


@dataclass(frozen=True)
class Chart:
    data: bytes
    mime: str

    @property
    def data_uri(self) -> str:
        """For `<img src=...>` in the HTML (WeasyPrint embeds it in the PDF)."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def bar_chart(categories: Sequence[str], series: Mapping[str, Sequence[float]], *,
              title: str = "", unit: str = "", fmt: str = "svg",
              size: tuple[float, float] = (6.0, 2.8), stacked: bool = False) -> Chart:
    """Bars per category, one colour per series (e.g. faults by cause; time taken vs the
    limit), side by side or `stacked` (e.g. faults per month by level: the total is labelled,
    zeros are not). A single series gets no legend."""
    cjk_font()
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    n = 1 if stacked else max(1, len(series))
    width = 0.8 / n
    positions = range(len(categories))
    bottom = [0.0] * len(categories)
    for i, (name, values) in enumerate(series.items()):
        offset = 0.0 if stacked else (i - (n - 1) / 2) * width
        bars = ax.bar([p + offset for p in positions], list(values), width,
                      bottom=bottom if stacked else None, label=name,
                      color=COLOURS[i % len(COLOURS)])
        if stacked:
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
        elif len(categories) <= 12:  # beyond, the labels run into each other
            ax.bar_label(bars, labels=[_number(v) for v in values], fontsize=7, padding=2)
    if stacked:
        for p, total in zip(positions, bottom, strict=True):
            if total:
                ax.annotate(_number(total), (p, total), ha="center", va="bottom", fontsize=7,
                            xytext=(0, 2), textcoords="offset points")
    ax.set_xticks(list(positions), list(categories))
    _decorate(ax, title, unit, legend=len(series) > 1)
    if len(categories) > 12:  # e.g. 40 sites: upright names, smaller
        ax.tick_params(axis="x", labelrotation=90, labelsize=6)
    return _save(fig, fmt)


def line_chart(series: Mapping[str, Sequence[tuple[datetime, float]]], *, title: str = "",
               unit: str = "", limit: float | None = None, limit_label: str = "",
               tz: tzinfo | None = None, fmt: str = "svg",
               size: tuple[float, float] = (6.0, 2.8)) -> Chart:
    """Lines over time (e.g. monthly fault counts, discharge time or grounding resistance
    per test), with an optional horizontal limit line."""
    cjk_font()
    fig = Figure(figsize=size, layout="constrained")
    ax = fig.add_subplot()
    for i, (name, points) in enumerate(series.items()):
        xs = [t.astimezone(tz).replace(tzinfo=None) for t, _ in points]
        ax.plot(xs, [v for _, v in points], marker="o", markersize=3, label=name,
                color=COLOURS[i % len(COLOURS)])
    if limit is not None:
        ax.axhline(limit, color="#c00000", linestyle="--", linewidth=1, label=limit_label)
    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    _decorate(ax, title, unit, legend=len(series) > 1 or bool(limit_label and limit))
    return _save(fig, fmt)


def _number(value: float) -> str:
    """A bar's label: counts whole (4277, not 4.28e+03), other values to 3 digits."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _decorate(ax: Axes, title: str, unit: str, legend: bool) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(unit, fontsize=8)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", linewidth=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    if legend:
        ax.legend(fontsize=7, frameon=False)


def _save(fig: Figure, fmt: str) -> Chart:
    if fmt not in ("svg", "png"):
        raise ValueError(f"chart format {fmt!r}: svg or png")
    out = io.BytesIO()
    fig.savefig(out, format=fmt, dpi=150, metadata={"Date": None} if fmt == "svg" else None)
    return Chart(out.getvalue(), "image/svg+xml" if fmt == "svg" else "image/png")
