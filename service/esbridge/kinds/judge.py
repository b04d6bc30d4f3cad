"""Thresholds make a state: the rules every kind shares.

``low_values_alert`` is the one place that decides whether a check's thresholds alert on low
values (``10:``): the planner uses it to keep the lowest groups when there are more than
``max_groups``, the evaluator to list the lowest groups first.
"""

from __future__ import annotations

import math

from esbridge.ranges import Range
from esbridge.result import State


def classify(value: float | None, warning: Range | None, critical: Range | None) -> State:
    """Critical is evaluated before warning, as the guidelines say."""
    if value is None or math.isnan(value):
        return State.UNKNOWN
    if critical is not None and critical.alerts(value):
        return State.CRITICAL
    if warning is not None and warning.alerts(value):
        return State.WARNING
    return State.OK


def threshold_note(
    state: State, value: float | None, warning: Range | None, critical: Range | None
) -> str:
    """``critical > 50`` for the crossed threshold, or both thresholds when OK."""
    if state is State.CRITICAL and critical is not None:
        return f"critical {critical.describe(value)}"
    if state is State.WARNING and warning is not None:
        return f"warning {warning.describe(value)}"
    parts = []
    if warning is not None:
        parts.append(f"warning {warning.describe()}")
    if critical is not None:
        parts.append(f"critical {critical.describe()}")
    return ", ".join(parts)


def _alerts_only_low(r: Range, floor: float) -> bool:
    """``10:`` (below 10 alerts) and ``@~:10`` (10 or less alerts): only low values alert;
    so does ``@10`` (0 to 10) when no value can be below ``floor`` 0 (a count, an age)."""
    if r.inside:
        return r.start <= floor and r.end != math.inf
    return r.end == math.inf and r.start != -math.inf


def _never_alerts(r: Range) -> bool:
    """``~:`` holds every value: it says nothing about which side alerts."""
    return not r.inside and r.start == -math.inf and r.end == math.inf


def low_values_alert(
    warning: Range | None, critical: Range | None, floor: float = -math.inf
) -> bool:
    """True when every threshold that can alert alerts only on low values (``10:``).

    Then the "worst" groups are the lowest; otherwise (``50``, ``10:20``, no threshold)
    the highest. A range that can never alert (``~:``) is left out of the question.
    ``floor``: the lowest value the kind can have (0 for counts, ratios, ages), so that
    ``@10`` (0 to 10 alerts) counts as alerting on low values there.
    """
    ranges = [r for r in (warning, critical) if r is not None and not _never_alerts(r)]
    return bool(ranges) and all(_alerts_only_low(r, floor) for r in ranges)
