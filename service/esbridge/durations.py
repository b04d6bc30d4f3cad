"""Durations as operators write them in check files: ``30s``, ``5m``, ``1h``, ``2d``.

Kept tiny and strict on purpose: a typo in an interval must be an error with the
accepted forms spelled out, not a silently different schedule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from functools import lru_cache
from typing import Annotated, Any, TypeVar

from pydantic import PlainSerializer, PlainValidator, WithJsonSchema

T = TypeVar("T")

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)?\s*$")


def parse_duration(text: str | int | float | timedelta) -> timedelta:
    """Parse ``90s``/``5m``/``1.5h`` (a bare number means seconds)."""
    if isinstance(text, timedelta):
        return text
    if isinstance(text, bool):
        raise ValueError(f"invalid duration {text!r}")
    if isinstance(text, int | float):
        if not text >= 0:  # also rejects NaN
            raise ValueError(f"invalid duration {text!r}: must be a non-negative number")
        return _seconds(text, text)
    match = _PATTERN.match(str(text))
    if not match:
        raise ValueError(
            f"invalid duration {text!r}: use a number with a unit, e.g. 30s, 5m, 1h, 2d"
        )
    number, unit = match.groups()
    return _seconds(float(number) * _UNITS[unit or "s"], text)


def _seconds(seconds: float, text: object) -> timedelta:
    """``timedelta(seconds=...)`` with overflow reported as ``ValueError`` like other errors."""
    try:
        return timedelta(seconds=seconds)
    except (OverflowError, ValueError):
        raise ValueError(f"invalid duration {text!r}: too large") from None


@lru_cache(maxsize=1024)
def format_duration(value: timedelta) -> str:
    """Render the shortest exact form (``300s`` → ``5m``), for summaries and the API.

    Cached: every result's summary names its check's window, and windows are a handful."""
    seconds = value.total_seconds()
    if seconds == 0:
        return "0s"
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNITS[unit]
        if seconds >= size and (seconds / size).is_integer():
            return f"{int(seconds // size)}{unit}"
    micros = value // timedelta(microseconds=1)
    if micros % 1000 == 0 and seconds < 1:
        return f"{micros // 1000}ms"
    # Exact plain decimal seconds (timedelta has microsecond resolution; never exponents).
    whole, frac = divmod(micros, 1_000_000)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".") + "s"


DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d|w)?\s*$"


def from_scalar(
    cls: type[T], parse: Callable[[str | int | float], T], problem: str
) -> Callable[[Any], T]:
    """A validator of a field written as a number or text in a file, parsed into ``cls``.

    ``problem`` is the error for anything else (``{value!r}`` is filled in); a bool is not a
    number here, whatever Python says.
    """

    def validate(value: Any) -> T:
        if isinstance(value, cls):
            return value
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError(problem.format(value=value))
        return parse(value)

    return validate


_validate = from_scalar(
    timedelta,
    parse_duration,
    "invalid duration {value!r}: use a number with a unit, e.g. 30s, 5m, 1h",
)


Duration = Annotated[
    timedelta,
    PlainValidator(_validate),
    PlainSerializer(format_duration, when_used="json"),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "a duration: number + unit ms, s, m, h, d or w (e.g. 30s, 5m, 1h)",
        }
    ),
]
"""A duration field for pydantic models (check files and the service configuration)."""
