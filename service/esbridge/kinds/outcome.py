"""Building a :class:`Result` from a measurement: one value, no data, or groups.

Shared by every kind so that a result reads the same whatever measured it: the value with
its threshold note, groups worst first with the omitted ones counted, never dropped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from functools import lru_cache
from itertools import pairwise
from operator import attrgetter
from typing import Any

from esbridge.kinds.base import CheckBase
from esbridge.kinds.judge import classifier, classify, low_values_alert, threshold_note
from esbridge.kinds.search import (
    GROUP_COUNT_AGG,
    GROUP_MISSING_AGG,
    GROUPS_AGG,
    MULTI_GROUP_FETCH,
    VALUE_AGG,
)
from esbridge.kinds.text import index_text, key_text, no_value_text, uom, window_text, with_unit
from esbridge.kinds.wording import Describe, GroupWording, WordedGroup
from esbridge.numbers import format_number
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State


def single(
    check: CheckBase,
    state: State,
    summary: str,
    value: float,
    unit: str | None = None,
    perf_min: float | None = None,
    perf_max: float | None = None,
    extra_perf: Iterable[Perfdatum] = (),
) -> Result:
    """One measured value with its perfdata."""
    unit = check.unit if unit is None else unit
    perf = (
        Perfdatum(
            check.perf_label(),
            value,
            uom(unit),
            check.warning,
            check.critical,
            perf_min,
            perf_max,
        ),
        *extra_perf,
    )
    return Result(
        check=check.name, state=state, summary=summary, value=value, unit=unit, perfdata=perf
    )


def no_data(check: CheckBase, reason: str, extra_perf: Iterable[Perfdatum] = ()) -> Result:
    """Nothing to measure: the check's ``no_data`` state with the reason."""
    state = check.effective_no_data
    return Result(
        check=check.name,
        state=state,
        summary=f"no data: {reason}",
        unit=check.unit,
        error=reason if state is State.UNKNOWN else None,
        error_kind="no_data",
        perfdata=(
            Perfdatum(check.perf_label(), None, uom(check.unit), check.warning, check.critical),
            *extra_perf,
        ),
    )


ERROR_KEY = "doc_count_error_upper_bound"
"""Per ``terms`` bucket (``show_term_doc_count_error``): documents of the group that shards
which did not return it may hold; -1 when Elasticsearch cannot bound them (an order other
than the largest count first: judged on the value read, as without bounds). 0 or absent
(composite, "(none)", a preview's replay, one shard searched): exact."""

Bounds = Callable[[dict[str, Any], float, int], tuple[float, float]]
"""``(bucket, value read, error)`` → the range the group's true value lies in."""


def count_bounds(bucket: dict[str, Any], value: float, error: int) -> tuple[float, float]:
    """A count read on some shards only: at least what was counted, at most ``error`` more."""
    return value, (value + error if error > 0 else math.inf)


def grouped_result(
    check: CheckBase,
    answer: dict[str, Any],
    value_of: Callable[[dict[str, Any]], float | None],
    describe: Describe,
    headline: str,
    perf_min: float | None = None,
    perf_max: float | None = None,
    empty: State | None = None,
    bounds: Bounds | None = None,
) -> Result:
    """One group per bucket of the ``groups`` aggregation; ``empty``: state with no groups.

    A bucket that not every shard returned (``doc_count_error_upper_bound`` not 0) is judged
    on the whole range ``bounds`` gives its true value (no bounds: any value): when the
    state could differ within it, the group is UNKNOWN, never a verdict on a partial value.
    """
    aggs = answer.get("aggregations") or {}
    buckets = (aggs.get(GROUPS_AGG) or {}).get("buckets", [])
    listed = len(buckets)
    missing = aggs.get(GROUP_MISSING_AGG) or {}
    if missing.get("doc_count"):  # documents without the group_by field: the "(none)" group
        buckets = [*buckets, {**missing, "key": None}]
    fields = list(check.group_by)
    groups: list[GroupResult] = []
    warning, critical = check.warning, check.critical
    wording = GroupWording(describe, uom(check.unit), warning, critical, perf_min, perf_max)
    no_data_state = check.effective_no_data
    single_field = fields[0] if len(fields) == 1 else None
    # one shard searched: every count is exact, whatever Elasticsearch says it cannot bound
    shards = answer.get("_shards") or {}
    several_shards = int(shards.get("total", 2) or 0) - int(shards.get("skipped", 0) or 0) > 1
    nones: dict[str, str] | None = None  # the name of "no value" per field, when needed
    judge = classifier(warning, critical)
    for bucket in buckets:
        key = bucket["key"]
        if single_field is not None and type(key) is str and "key_as_string" not in bucket:
            # one group_by field, a keyword value: the usual case, its own label
            key_pairs: tuple[tuple[str, str], ...] = _one_key(single_field, key)
        else:
            if nones is None:
                nones = {f: no_value_text(buckets, f) for f in fields}
            if single_field is not None and not isinstance(key, dict | list):
                key_pairs = ((single_field, key_text(key, bucket, 1, nones[single_field])),)
            else:
                if isinstance(key, dict):  # composite: {"service": "api", "host": "web-01"}
                    values = [key.get(f) for f in fields]
                else:
                    values = key if isinstance(key, list) else [key]
                key_pairs = tuple(
                    [
                        (f, key_text(v, bucket, len(values), nones[f]))
                        for f, v in zip(fields, values, strict=False)
                    ]
                )
        value = value_of(bucket)
        if value is None:
            groups.append(WordedGroup(key_pairs, no_data_state, None, wording))
            continue
        state = judge(value)
        # error 0 or absent (exact, the usual case): one lookup, no call. -1 ("cannot
        # bound": an order other than the largest counts first, once a shard holds more
        # values than it sends) is judged on the value read, as before bounds existed:
        # routine for freshness over many hosts, and no worse than that.
        error = bucket.get(ERROR_KEY) if several_shards else None
        span = (
            _uncertain_span(bucket, value, error, state, bounds, warning, critical)
            if error is not None and error > 0
            else None
        )
        if span is None:
            groups.append(WordedGroup(key_pairs, state, value, wording))
        else:  # worded now: its note is not the wording's
            label = "/".join([v for _, v in key_pairs])  # as GroupResult.label
            text = wording.value_text(value) + _uncertain_note(span, warning, critical)
            groups.append(
                GroupResult(
                    key_pairs,
                    State.UNKNOWN,
                    value,
                    f"{label}: {text}",
                    wording.perfdata(label, value),
                )
            )
    omitted = _omitted(aggs, listed)
    groups = sorted_worst_first(groups, check)
    if len(groups) > check.max_groups:
        # Several group_by fields: every combination was fetched (composite), keep the
        # max_groups worst; the rest is counted, never silently dropped.
        omitted += len(groups) - check.max_groups
        groups = groups[: check.max_groups]
    where = f" in last {window_text(check)} on {index_text(check)}" if check.index else ""
    return combine_groups(check, groups, omitted, headline, check.unit, where=where, empty=empty)


@lru_cache(maxsize=16384)
def _one_key(field: str, value: str) -> tuple[tuple[str, str], ...]:
    """A one-field group's key, the same tuples run after run: every result a cycle makes
    lives until the cycle ends (and in the store after it), so each new key meant two more
    objects for the garbage collector to walk; bench/ measured the collector at ~9 of ~60 us
    per check at 5,000 checks, ~6 with keys shared (a few MB at most: 16,384 keys)."""
    return ((field, value),)


def _uncertain_span(
    bucket: dict[str, Any],
    value: float,
    error: Any,
    state: State,
    bounds: Bounds | None,
    warning: Range | None,
    critical: Range | None,
) -> tuple[float, float] | None:
    """The range of the group's true value when its state could differ within it, else None.

    Called only for a bucket with an error: that many documents more may lie on shards that
    did not return it.
    """
    lo, hi = bounds(bucket, value, int(error)) if bounds is not None else (-math.inf, math.inf)
    lo, hi = min(lo, value), max(hi, value)
    cuts = {lo, hi}
    for limits in (warning, critical):
        if limits is not None:
            cuts.update(x for x in (limits.start, limits.end) if lo <= x <= hi)
    points = sorted(cuts)
    probes = list(points)
    # The state is constant between two consecutive cuts: one probe inside each gap.
    for a, b in pairwise(points):
        if math.isinf(a) and math.isinf(b):
            probes.append(0.0)
        elif math.isinf(a):
            probes.append(b - 1)
        elif math.isinf(b):
            probes.append(a + 1)
        else:
            probes.append((a + b) / 2)
    if all(classify(p, warning, critical) is state for p in probes):
        return None
    return lo, hi


def _uncertain_note(
    span: tuple[float, float], warning: Range | None, critical: Range | None
) -> str:
    lo, hi = span
    if not math.isinf(lo) and not math.isinf(hi):
        where = f"really between {format_number(lo)} and {format_number(hi)}"
    elif not math.isinf(lo):
        where = f"really at least {format_number(lo)}"
    elif not math.isinf(hi):
        where = f"really at most {format_number(hi)}"
    else:
        where = "the real value is not known"
    thresholds = threshold_note(State.OK, None, warning, critical)
    return (
        f" (uncertain: {where}: the group is spread over shards that did not all return it;"
        f" {thresholds})"
    )


def worst_first(check: CheckBase) -> Callable[[GroupResult], tuple[int, int, float]]:
    """Sort key: most severe state first, then the value furthest on the alerting side."""
    low = low_values_alert(check.warning, check.critical, check.value_floor)

    def key(group: GroupResult) -> tuple[int, int, float]:
        value = group.value
        if value is None:
            return (-group.state.severity, 1, 0.0)
        return (-group.state.severity, 0, value if low else -value)

    return key


def sorted_worst_first(groups: list[GroupResult], check: CheckBase) -> list[GroupResult]:
    """``sorted(groups, key=worst_first(check))``, cheaper: most groups are OK with a value,
    and those sort by their value alone (``tests/test_outcome_sort.py`` compares the two)."""
    ok_state = State.OK
    ok = [g for g in groups if g.state is ok_state and g.value is not None]
    if len(ok) == len(groups):
        rest: list[GroupResult] = []
    else:
        rest = [g for g in groups if g.state is not ok_state or g.value is None]
        rest.sort(key=worst_first(check))
    low = low_values_alert(check.warning, check.critical, check.value_floor)
    ok.sort(key=_VALUE, reverse=not low)  # a stable sort, reversed or not
    # rest: the groups not OK first, then the OK ones without a value (after the valued)
    cut = next((k for k, g in enumerate(rest) if g.state is ok_state), len(rest))
    return [*rest[:cut], *ok, *rest[cut:]]


_VALUE = attrgetter("value")


def combine_groups(
    check: CheckBase,
    groups: list[GroupResult],
    omitted: int,
    headline: str,
    unit: str,
    noun: str = "groups",
    where: str = "",
    empty: State | None = None,
) -> Result:
    """The overall result of groups sorted worst first: the worst state, the bad ones named.

    Sorted by severity first (as :func:`worst_first` does), the worst state is the first
    group's and the groups not OK are the ones before the first OK one: nothing here
    reads every group (a grouped check has tens).
    """
    if not groups:
        state = check.effective_no_data if empty is None else empty
        return Result(
            check=check.name,
            state=state,
            summary=f"no groups: no matching documents{where}",
            unit=unit,
            error_kind="no_data" if state is not State.OK else None,
        )
    state, ok = groups[0].state, State.OK
    bad = next((k for k, g in enumerate(groups) if g.state is ok), len(groups))
    shown = groups[: min(bad, 5)]
    if bad:
        names = ", ".join(f"{g.label} {g.state.name} ({with_unit(g.value, unit)})" for g in shown)
        more = f" and {bad - len(shown)} more" if bad > len(shown) else ""
        summary = f"{bad} of {len(groups)} {noun} not OK: {names}{more} - {headline}{where}"
    else:
        summary = f"all {len(groups)} {noun} OK - {headline}{where}"
    note = threshold_note(
        state if bad else State.OK, groups[0].value, check.warning, check.critical
    )
    if note:
        summary += f" ({note})"
    if omitted:
        summary += f", {omitted} more {noun} not evaluated (max_groups {check.max_groups})"
    return Result(
        check=check.name,
        state=state,
        summary=summary,
        value=groups[0].value,
        unit=unit,
        groups=tuple(groups),
        groups_omitted=omitted,
        max_groups=check.max_groups,
    )


def _omitted(aggs: dict[str, Any], shown: int) -> int:
    """Groups Elasticsearch left out: exact from the cardinality, else at least one."""
    count = (aggs.get(GROUP_COUNT_AGG) or {}).get("value")
    if count is not None:
        return max(0, int(count) - shown)
    node = aggs.get(GROUPS_AGG) or {}
    if node.get("after_key") is not None and shown >= MULTI_GROUP_FETCH:
        return 1  # composite page full: more combinations exist, how many is unknown
    return 1 if node.get("sum_other_doc_count", 0) else 0


def metric_value(holder: dict[str, Any], agg: str) -> float | None:
    """The number of the metric aggregation ``VALUE_AGG`` in ``holder`` (the answer's
    aggregations, a bucket), the one percentile asked for; None when empty (no value to
    aggregate: also a ``sum``, whatever Elasticsearch's sum of nothing)."""
    return metric_reader(agg)(holder)


def metric_reader(agg: str) -> Callable[[dict[str, Any]], float | None]:
    """:func:`metric_value` for one ``agg``, chosen once: a grouped check reads tens of
    buckets per run, one call each."""
    if agg == "percentile":
        return _percentile_number
    if agg == "sum":
        return _sum_number
    return _value_number


# NaN is no value, as None.
def _percentile_number(holder: dict[str, Any]) -> float | None:
    node = holder.get(VALUE_AGG)
    values = node.get("values") if node else None
    value = next(iter(values.values()), None) if values else None
    return None if value is None or value != value else float(value)


def _sum_number(holder: dict[str, Any]) -> float | None:
    node = holder.get(VALUE_AGG)
    # stats: a sum of no values is no value, not 0
    value = node.get("sum") if node and node.get("count") else None
    return None if value is None or value != value else float(value)


def _value_number(holder: dict[str, Any]) -> float | None:
    node = holder.get(VALUE_AGG)
    value = node.get("value") if node else None
    return None if value is None or value != value else float(value)


def total_hits(answer: dict[str, Any]) -> int:
    total = (answer.get("hits") or {}).get("total", 0)
    return int(total["value"] if isinstance(total, dict) else total)
