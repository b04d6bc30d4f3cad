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


def too_old(evaluated_at: float, now: float, max_age: float) -> bool:
    """The rule itself: older than ``max_age``, or from the future by more than that (the
    clock stepped back: an NTP step, a restored VM; a smaller skew between replicas' clocks
    is tolerated)."""
    return not abs(now - evaluated_at) <= max_age  # NaN (never written so) is too old too


def stale(result: Result, now: float, max_age: float) -> Result:
    """``result`` itself when fresh; an UNKNOWN copy when older than ``max_age`` seconds.

    The copy keeps labels, thresholds, groups and long output (the last known detail is
    useful to the operator) but sets every perfdata value, and ``value``, to undetermined
    (``U``): graphing backends timestamp perfdata when they receive it, so old numbers
    would be recorded as fresh measurements. Every group is UNKNOWN too, its last state in
    its summary: a group is asked for on its own (``check_esbridge -g host=web-01``, a
    passive service per host), so an old OK there would be a stale OK. ``evaluated_at``
    stays the real evaluation time. Applying ``stale`` again recomputes the age and still
    names the real last result (kept as text in ``stale_previous``).

    A result from the future by more than ``max_age`` is stale too (:func:`too_old`).
    """
    if not too_old(result.evaluated_at, now, max_age):
        return result
    age = now - result.evaluated_at
    limit = format_number(max_age)
    # Already stale: the copy kept evaluated_at; reuse the text of the real last result.
    previous = result.stale_previous or f"{result.state.name} - {result.summary}"
    if result.evaluated_at <= 0:
        summary = f"stale: never evaluated (max {limit} s)"
    elif age < 0:
        summary = (
            f"stale: evaluated {math.ceil(-age)} s in the future of this clock (it stepped "
            f"back?), last result was {previous}"
        )
    else:
        summary = (
            f"stale: last evaluated {math.ceil(age)} s ago (max {limit} s), "
            f"last result was {previous}"
        )
    groups = result.groups  # already stale: the groups say their last state
    if result.stale_previous is None:
        groups = tuple(
            GroupResult(
                g.key,
                State.UNKNOWN,
                None,
                f"stale, last {g.state.name}: {g.summary}",
                _undetermined(g.perfdata),
            )
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
