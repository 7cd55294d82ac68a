"""Input series for rule unit tests, in the value notation of `promtool test rules`.

Engineers who write Prometheus rule tests already know it, and one line such as
`1+1x9 _x2 stale` says what a list of 13 samples would: 10 rising values, two missed
scrapes, then a staleness marker.

- `a`: one value; numbers may be signed, decimal, with an exponent, or Inf / NaN;
- `a+bxn`, `a-bxn`: n + 1 values a, a±b, ..., a±n·b;
- `axn`: n + 1 copies of a (`a+0xn`);
- `_`: a missed scrape (None); `_xn`: n of them (a missing sample cannot step);
- `stale`: a staleness marker (STALE).
"""

from __future__ import annotations

import re
from collections.abc import Callable

_NUMBER = r"(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF]|[nN][aA][nN])"
_ITEM = re.compile(rf"(?P<start>[+-]?{_NUMBER})(?:(?P<sign>[+-])(?P<step>{_NUMBER}))?"
                   rf"(?:x(?P<times>\d+))?")
_MISSING = re.compile(r"_(?:x(?P<times>\d+))?")
_EXPECTED = "expected a number, '_', 'stale', 'a+bxn' or 'axn'"


class Stale:
    """A staleness marker: the series ended there, unlike `_`, a scrape that just missed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "STALE"


STALE = Stale()
Value = float | None | Stale


def expand_series(text: str, count: int | None = None) -> list[Value]:
    """The samples `text` stands for; with `count`, there must be exactly that many.

    `count` is checked before each item is expanded, so a typo such as `1x1000000000`
    fails at once instead of building a billion samples."""
    out: list[Value] = []
    for position, item in enumerate(text.split(), 1):
        size, make = _parse(position, item)
        if count is not None and len(out) + size > count:
            raise ValueError(f"item {position} '{item}': the series would pass the {count} "
                             f"values expected")
        out.extend(make(i) for i in range(size))
    if count is not None and len(out) != count:
        raise ValueError(f"the series has {len(out)} values, {count} expected")
    return out


def _parse(position: int, item: str) -> tuple[int, Callable[[int], Value]]:
    """How many values one item stands for, and the i-th of them."""
    if item == "stale":
        return 1, lambda i: STALE
    if missing := _MISSING.fullmatch(item):
        return (1 if missing["times"] is None else int(missing["times"])), lambda i: None
    number = _ITEM.fullmatch(item)
    if number is None:
        raise ValueError(f"item {position} '{item}': {_EXPECTED}")
    if number["sign"] and number["times"] is None:
        raise ValueError(f"item {position} '{item}': a step needs a count, e.g. '{item}x5'")
    start = float(number["start"])
    step = float(number["step"] or 0) * (-1 if number["sign"] == "-" else 1)
    # start + i * step, not a running sum, so the last value carries no rounding drift;
    # i = 0 is start itself, even for an infinite step (0 * inf is NaN)
    return int(number["times"] or 0) + 1, lambda i: start + i * step if i else start
