"""Thresholds make a state: the rules every kind shares.

``low_values_alert`` is the one place that decides whether a check's thresholds alert on low
values (``10:``): the planner uses it to keep the lowest groups when there are more than
``max_groups``, the evaluator to list the lowest groups first.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache

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


def classifier(warning: Range | None, critical: Range | None) -> Callable[[float], State]:
    """:func:`classify` with the thresholds bound, for a number that is never None.

    A grouped check judges tens of values against the same two ranges on every run; the
    bounds are read once here instead of through two method calls per value. Same answers
    as ``classify`` (``tests/test_judge.py`` compares them).
    """
    # No threshold: an empty span that alerts inside it, so no value ever alerts.
    never = (math.inf, -math.inf, True)
    c_lo, c_hi, c_in = (critical.start, critical.end, critical.inside) if critical else never
    w_lo, w_hi, w_in = (warning.start, warning.end, warning.inside) if warning else never
    crit, warn, ok, unknown = State.CRITICAL, State.WARNING, State.OK, State.UNKNOWN

    def judge(value: float) -> State:
        if value != value:  # NaN
            return unknown
        # A range alerts inside its span when ``inside`` (``@``), outside it otherwise.
        if (c_lo <= value <= c_hi) == c_in:
            return crit
        if (w_lo <= value <= w_hi) == w_in:
            return warn
        return ok

    return judge


def threshold_note(
    state: State, value: float | None, warning: Range | None, critical: Range | None
) -> str:
    """``critical > 50`` for the crossed threshold, or both thresholds when OK."""
    if state is State.CRITICAL and critical is not None:
        return f"critical {critical.describe(value)}"
    if state is State.WARNING and warning is not None:
        return f"warning {warning.describe(value)}"
    return _both(warning, critical)


@lru_cache(maxsize=1024)
def _both(warning: Range | None, critical: Range | None) -> str:
    """Both thresholds, as an OK result names them: the same text run after run (cached)."""
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
