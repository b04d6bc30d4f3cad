"""Durations as written in check files."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esbridge.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1h", 3600),
        ("2d", 172800),
        ("1w", 604800),
        ("250ms", 0.25),
        ("1.5h", 5400),
        ("0.5s", 0.5),
        ("90", 90),
        ("0", 0),
        (" 5m ", 300),
        ("5 m", 300),
        (45, 45),
        (2.5, 2.5),
        (timedelta(minutes=3), 180),
    ],
)
def test_forms(text, seconds):
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "text",
    ["", "abc", "5x", "5M", "m", "-5s", "5 minutes", "1h30m", "1e3s", ".5s", "5s5", True, -1,
     float("nan"), float("inf"), "99999999999999d"],
)  # fmt: skip
def test_errors(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_error_names_accepted_forms():
    with pytest.raises(ValueError, match=r"30s, 5m, 1h, 2d"):
        parse_duration("five minutes")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (3600, "1h"),
        (5400, "90m"),
        (86400, "1d"),
        (604800, "1w"),
        (0.25, "250ms"),
        (1.5, "1.5s"),
        (0.0015, "0.0015s"),
        (1234567.5, "1234567.5s"),
    ],
)
def test_format(seconds, text):
    assert format_duration(timedelta(seconds=seconds)) == text


@given(st.integers(min_value=0, max_value=10**12))
def test_format_round_trips_microseconds(micros):
    value = timedelta(microseconds=micros)
    text = format_duration(value)
    assert "e" not in text
    assert parse_duration(text) == value


@pytest.mark.parametrize("text", ["30s", "5m", "1h", "2d", "1w", "250ms", "90s"])
def test_canonical_text_round_trips(text):
    assert format_duration(parse_duration(text)) == text
