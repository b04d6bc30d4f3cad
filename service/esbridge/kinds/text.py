"""How measurements read in summaries: units, ages, windows, indices, plurals.

Written for a person woken at night; every kind words its summary with these so the same
value always reads the same.
"""

from __future__ import annotations

from typing import Any

from esbridge.durations import format_duration
from esbridge.kinds.base import CheckBase
from esbridge.numbers import format_number

PERFDATA_UOMS = frozenset({"", "s", "ms", "us", "%", "B", "KB", "MB", "TB", "c"})


def uom(unit: str) -> str:
    """The perfdata unit: the check's unit when the guidelines know it, else none."""
    return unit if unit in PERFDATA_UOMS else ""


def with_unit(value: float | None, unit: str) -> str:
    """A value as a summary shows it: 2 decimals (1 from 100 on), then its unit; a value
    below 0.01 in two significant digits, never 0 (0.004 beside "critical > 0" must not
    read as 0)."""
    if value is None:
        return "no data"
    if value and abs(value) < 0.01:
        text = format_number(float(f"{value:.2g}"))
    else:
        text = _rounded(round(value, 1) if abs(value) >= 100 else round(value, 2))
    if not unit:
        return text
    return f"{text} {unit}" if unit != "%" else f"{text} %"


def _rounded(shown: float) -> str:
    """``format_number`` of a value already rounded to 1 or 2 decimals, without its general
    (Decimal) path (every group of every grouped check is worded with this): below 1e9 the
    double nearest a 2-decimal fraction prints as that number at 2 places; whole numbers,
    large ones and the rest go to ``format_number``."""
    shown = float(shown)  # round() of an int is an int
    if -1e9 < shown < 1e9 and not shown.is_integer():
        return f"{shown:.2f}".rstrip("0").rstrip(".")
    return format_number(shown)


def age_text(seconds: float, unit: str = "s") -> str:
    """``42.5 s``; long ages also in hours/days: ``7260 s (2h 1m)``."""
    text = with_unit(seconds, unit)
    if unit != "s" or seconds < 120:
        return text
    minutes = int(seconds // 60)
    days, hours, mins = minutes // 1440, minutes % 1440 // 60, minutes % 60
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{mins}m" if mins else ""]
    return f"{text} ({' '.join(p for p in parts if p)})"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def maybe(value: float | None) -> str:
    return "no data" if value is None else format_number(value)


def agg_name(agg: str | None, percentile: float | None) -> str:
    """``avg``, ``p99.9``; ``count`` when there is no aggregation."""
    if agg == "percentile":
        return f"p{format_number(percentile or 0)}"
    return agg or "count"


def window_text(check: CheckBase) -> str:
    return format_duration(check.window)


def index_text(check: CheckBase) -> str:
    return ",".join(check.index)


NO_VALUE = "(none)"
"""The group value of documents without the ``group_by`` field."""


def key_text(value: Any, bucket: dict[str, Any], fields: int, none: str = NO_VALUE) -> str:
    """A group's value as text (``key_as_string`` for dates and booleans of one field);
    ``none`` for documents without the field."""
    as_string = bucket.get("key_as_string")
    if fields == 1 and isinstance(as_string, str):
        return as_string
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return none
    return str(value)


def no_value_text(buckets: list[dict[str, Any]], field: str) -> str:
    """What documents without ``field`` are called among ``buckets``: ``(none)``, unless a
    real value is spelt so (``uname -n`` of a machine without a host name), then
    ``(no <field>)``: two groups under one name were one series in Prometheus, one lost."""
    for bucket in buckets:
        key = bucket["key"]
        if key == NO_VALUE or (isinstance(key, dict) and key.get(field) == NO_VALUE):
            return f"(no {field})"
    return NO_VALUE
