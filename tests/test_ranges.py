"""Nagios threshold ranges: every example of the Monitoring Plugins guidelines' table."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esbridge.ranges import Range

INF = math.inf

# (text, start, end, inside, values that alert, values that do not)
TABLE = [
    # guidelines: "10" -> alert if < 0 or > 10 (outside {0 .. 10})
    ("10", 0, 10, False, [-1, -0.001, 10.001, 11, 1e9], [0, 0.5, 5, 10]),
    # "10:" -> alert if < 10 (outside {10 .. inf})
    ("10:", 10, INF, False, [9.999, 0, -5], [10, 10.5, 1e12]),
    # "~:10" -> alert if > 10 (outside {-inf .. 10})
    ("~:10", -INF, 10, False, [10.001, 11], [10, 0, -1e12]),
    # "10:20" -> alert if < 10 or > 20 (outside the range {10 .. 20})
    ("10:20", 10, 20, False, [9.99, 20.01, 0, -10], [10, 15, 20]),
    # "@10:20" -> alert if >= 10 and <= 20 (inside the range {10 .. 20})
    ("@10:20", 10, 20, True, [10, 15, 20], [9.99, 20.01, 0]),
    # negative values and floats
    ("-10:-5", -10, -5, False, [-11, -4.9, 0], [-10, -7.5, -5]),
    ("~:-5", -INF, -5, False, [-4.999, 0], [-5, -100]),
    ("-5:", -5, INF, False, [-5.1], [-5, 0, 100]),
    ("@-5:5", -5, 5, True, [-5, 0, 5], [-5.01, 5.01]),
    ("1.5:2.5", 1.5, 2.5, False, [1.49, 2.51], [1.5, 2, 2.5]),
    (".5", 0, 0.5, False, [0.51, -0.01], [0, 0.5]),
    ("0.25", 0, 0.25, False, [0.26], [0.25]),
    ("+10", 0, 10, False, [10.5], [10]),
    ("@10", 0, 10, True, [0, 10, 5], [-1, 11]),
    ("@10:", 10, INF, True, [10, 99], [9.9]),
    ("@~:10", -INF, 10, True, [10, -99], [10.1]),
    ("0", 0, 0, False, [0.001, -0.001], [0]),
    ("10:10", 10, 10, False, [9.9, 10.1], [10]),
    ("~:", -INF, INF, False, [], [-1e300, 0, 1e300]),
    (":10", 0, 10, False, [-1, 11], [0, 10]),
]


@pytest.mark.parametrize(("text", "start", "end", "inside", "alerting", "quiet"), TABLE)
def test_guideline_table(text, start, end, inside, alerting, quiet):
    r = Range.parse(text)
    assert (r.start, r.end, r.inside) == (start, end, inside)
    assert str(r) == text
    for value in alerting:
        assert r.alerts(value), f"{text} should alert for {value}"
    for value in quiet:
        assert not r.alerts(value), f"{text} should not alert for {value}"


@pytest.mark.parametrize(
    ("value", "text", "end"),
    [(10, "10", 10), (2.5, "2.5", 2.5), (1e-7, "0.0000001", 1e-7), (0, "0", 0)],
)
def test_parse_numbers(value, text, end):
    r = Range.parse(value)
    assert (str(r), r.start, r.end) == (text, 0, end)


def test_whitespace_is_stripped():
    assert str(Range.parse("  10:20 ")) == "10:20"


@pytest.mark.parametrize(
    "text",
    ["abc", "1:2:3", "@", "", "   ", "~", ":", "@:", "10:5", "@20:10", "-5", "1e3", "10;20", "x:1",
     "1:x", "~10", "10~", "@@10", True, False],
)  # fmt: skip
def test_garbage_is_rejected(text):
    with pytest.raises(ValueError, match="invalid range"):
        Range.parse(text)


def test_start_greater_than_end_names_both():
    with pytest.raises(ValueError, match="start 20 is greater than end 10"):
        Range.parse("20:10")


@pytest.mark.parametrize(
    ("text", "value", "phrase"),
    [
        ("50", None, "> 50"),
        ("50", 60, "> 50"),
        ("50", -1, "< 0"),
        ("10:", None, "< 10"),
        ("10:", 5, "< 10"),
        ("~:10", None, "> 10"),
        ("~:10", 11, "> 10"),
        ("10:20", None, "outside 10..20"),
        ("10:20", 25, "> 20"),
        ("10:20", 5, "< 10"),
        ("@10:20", 15, "inside 10..20"),
        ("@10:", 15, ">= 10"),
        ("@~:10", 5, "<= 10"),
        ("0.5:1.5", None, "outside 0.5..1.5"),
    ],
)
def test_describe(text, value, phrase):
    assert Range.parse(text).describe(value) == phrase


def test_canonical_text_without_original():
    assert str(Range(start=10)) == "10:"
    assert str(Range(start=-math.inf, end=10)) == "~:10"
    assert str(Range(end=10)) == "10"
    assert str(Range(start=10, end=20, inside=True)) == "@10:20"


def _fixed(x: float) -> str:
    """Exact fixed-point text of a float (ranges accept no exponent)."""
    return format(Decimal(repr(x)), "f")


finite = st.floats(min_value=-1e12, max_value=1e12, allow_nan=False)


@given(a=finite, b=finite, v=finite)
def test_inside_is_negation_of_outside(a, b, v):
    lo, hi = sorted((a, b))
    text = f"{_fixed(lo)}:{_fixed(hi)}"
    outside = Range.parse(text)
    inside = Range.parse("@" + text)
    assert inside.alerts(v) is (not outside.alerts(v))
    assert outside.alerts(v) is not (lo <= v <= hi)
