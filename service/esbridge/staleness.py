"""The staleness rule: a result older than its check allows is shown UNKNOWN, never a stale OK.

One function every output applies through the store (the API, ``/metrics``, the plugin text,
passive delivery, the gate), so they all agree on when a result stopped counting.
"""

from __future__ import annotations

import math

from esbridge.errors import ErrorKind
from esbridge.numbers import format_number
from esbridge.result import GroupResult, Perfdatum, Result, State


def _undetermined(items: tuple[Perfdatum, ...]) -> tuple[Perfdatum, ...]:
    return tuple(Perfdatum(p.label, None, p.uom, p.warn, p.crit, p.min, p.max) for p in items)


def stale(result: Result, now: float, max_age: float) -> Result:
    """``result`` itself when fresh; an UNKNOWN copy when older than ``max_age`` seconds.

    The copy keeps labels, thresholds, groups and long output (the last known detail is
    useful to the operator) but sets every perfdata value, and ``value``, to undetermined
    (``U``): graphing backends timestamp perfdata when they receive it, so old numbers
    would be recorded as fresh measurements. ``evaluated_at`` stays the real evaluation
    time. Applying ``stale`` again recomputes the age and still names the real last
    result (kept as text in ``stale_previous``).
    """
    age = now - result.evaluated_at
    if age <= max_age:
        return result
    limit = format_number(max_age)
    # Already stale: the copy kept evaluated_at; reuse the text of the real last result.
    previous = result.stale_previous or f"{result.state.name} - {result.summary}"
    if result.evaluated_at <= 0:
        summary = f"stale: never evaluated (max {limit} s)"
    else:
        summary = (
            f"stale: last evaluated {math.ceil(age)} s ago (max {limit} s), "
            f"last result was {previous}"
        )
    groups = tuple(
        GroupResult(g.key, g.state, None, g.summary, _undetermined(g.perfdata))
        for g in result.groups
    )
    return result.with_(
        state=State.UNKNOWN,
        summary=summary,
        value=None,
        perfdata=_undetermined(result.perfdata),
        groups=groups,
        error=summary,
        error_kind=ErrorKind.STALE,
        stale_previous=previous,
    )
