"""The promtool series notation used by rule unit tests."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rules.series import STALE, Stale, expand_series


@pytest.mark.parametrize("text, expected", [
    ("7", [7.0]),
    ("-2+4x3", [-2.0, 2.0, 6.0, 10.0]),
    (" 1-2x4", [1.0, -1.0, -3.0, -5.0, -7.0]),
    ("1x4", [1.0] * 5),
    ("3x0", [3.0]),
    ("_", [None]),
    ("1 _x3 stale", [1.0, None, None, None, STALE]),
    ("_x0 stale", [STALE]),
    ("-1.5 +.5 5. 1e3 2.5E-1 -1e+2", [-1.5, 0.5, 5.0, 1000.0, 0.25, -100.0]),
    ("1e-3-1e-3x2", [0.001, 0.0, -0.001]),
    ("1e+2+1e+1x1", [100.0, 110.0]),
    ("Inf -Inf +inf", [math.inf, -math.inf, math.inf]),
    ("-Infx1", [-math.inf, -math.inf]),
    ("0.1+0.1x2", [0.1, 0.2, 0.1 + 2 * 0.1]),
    ("", []),
    ("\t1 \n 2  ", [1.0, 2.0]),
])
def test_forms(text, expected):
    assert expand_series(text) == expected


def test_nan_and_stale():
    first, second = expand_series("NaN nanx1")[:2]
    assert math.isnan(first) and math.isnan(second)
    assert isinstance(STALE, Stale) and repr(STALE) == "STALE"
    assert expand_series("stale stale") == [STALE, STALE]


def test_step_is_never_applied_to_the_first_value():
    assert expand_series("1+Infx1") == [1.0, math.inf]


@pytest.mark.parametrize("text, message", [
    ("1 2 x5", "item 3 'x5': expected a number, '_', 'stale', 'a+bxn' or 'axn'"),
    ("abc", "item 1 'abc': expected a number"),
    ("1x", "item 1 '1x': expected"),
    ("1x1.5", "item 1 '1x1.5': expected"),
    ("1x-2", "item 1 '1x-2': expected"),
    ("1+-2x3", "item 1 '1+-2x3': expected"),
    ("_+1x2", "item 1 '_+1x2': expected"),
    ("stalex2", "item 1 'stalex2': expected"),
    ("1,2", "item 1 '1,2': expected"),
    ("0x1f", "item 1 '0x1f': expected"),
    ("1 1+2", "item 2 '1+2': a step needs a count, e.g. '1+2x5'"),
])
def test_errors_name_the_item_and_its_position(text, message):
    with pytest.raises(ValueError) as info:
        expand_series(text)
    assert str(info.value).startswith(message)


def test_count():
    assert expand_series("1x2 _", count=4) == [1.0, 1.0, 1.0, None]
    with pytest.raises(ValueError, match=r"^the series has 2 values, 3 expected$"):
        expand_series("1 2", count=3)
    with pytest.raises(ValueError, match=r"^item 2 '1x1000000000': the series would pass "
                                         r"the 3 values expected$"):
        expand_series("1 1x1000000000", count=3)


@given(a=st.integers(-10**6, 10**6), b=st.integers(-10**6, 10**6), n=st.integers(0, 200))
def test_step_expansion_is_n_plus_one_evenly_spaced_values(a, b, n):
    text = f"{a}+{b}x{n}" if b >= 0 else f"{a}-{-b}x{n}"
    values = expand_series(text)
    assert len(values) == n + 1 and values[0] == a and values[-1] == a + n * b
    assert {later - earlier for earlier, later in itertools.pairwise(values)} <= {b}


@given(a=st.floats(-1e9, 1e9), b=st.floats(0, 1e6), n=st.integers(0, 100))
def test_float_steps_stay_within_rounding(a, b, n):
    values = expand_series(f"{a!r}+{b!r}x{n}")
    assert len(values) == n + 1 and values[0] == a
    assert all(value == pytest.approx(a + i * b) for i, value in enumerate(values))
