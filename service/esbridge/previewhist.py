"""The histogram method of a preview: one search answers every point of the period.

Used when the check's aggregation can be combined from pieces (count, ratio, change of a
count, metric/change with avg, sum, min, max or value_count, freshness; ``group_by`` on one
field): a ``date_histogram`` with the check's query, at the largest interval that divides
every window boundary (the gcd of step, window and the change's previous window), and the
aggregation inside each bucket (``min``, ``max`` and ``value_count`` as themselves, ``stats``
for avg and sum, ``filter`` counts for ratios, ``max`` of the time field for freshness). A
window that is longer than the step (a moving window) is the sum/min/max of its buckets,
computed here. Groups are a ``terms`` aggregation around the histogram; when Elasticsearch
says it left groups out (``sum_other_doc_count`` > 0), the preview falls back to per-step
searches. For each point this module builds the answer the check's own request would have
got, so :func:`~esbridge.evaluate.evaluate` judges it exactly as a live run. Pure: no client.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from esbridge.kinds import REGISTRY
from esbridge.models import (
    ChangeCheck,
    CheckDefinition,
    FreshnessCheck,
    MetricCheck,
    RatioCheck,
)
from esbridge.planner import (
    GROUP_COUNT_AGG,
    GROUP_MISSING_AGG,
    GROUPS_AGG,
    VALUE_AGG,
    SearchRequest,
    Window,
    group_order,
    ratio_aggs,
    user_query,
    window_of,
)

COMBINABLE_AGGS = frozenset({"avg", "sum", "min", "max", "value_count"})
"""Aggregations whose value over a window follows from the values over its pieces."""
MAX_FINE_BUCKETS = 50_000
"""Histogram buckets (times groups) one search may ask for; Elasticsearch's default
``search.max_buckets`` is 65,536. Beyond, the per-step method is used."""
MAX_GROUPS = 1000
"""Groups the histogram method fetches; more (or a cut-off answer) → per-step searches."""
HIST_AGG = "preview_histogram"


def _ms(moment: datetime) -> int:
    """Milliseconds exactly as the planner writes a time (microseconds truncated)."""
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()) * 1000 + moment.microsecond // 1000


def _combinable(check: CheckDefinition) -> str | None:
    """None when the histogram method works for this check, else why not."""
    if not REGISTRY[check.kind].histogram:
        return f"the histogram method does not know the {check.kind} kind"
    if len(check.group_by) > 1:
        return "group_by on several fields"
    if isinstance(check, MetricCheck) and check.agg not in COMBINABLE_AGGS:
        return f"agg {check.agg} cannot be combined from pieces of the window"
    if isinstance(check, ChangeCheck) and check.agg and check.agg not in COMBINABLE_AGGS:
        return f"agg {check.agg} cannot be combined from pieces of the window"
    return None


@dataclass(frozen=True, slots=True)
class _Spans:
    """Millisecond spans each point needs: the window, and the previous one for change."""

    current: list[tuple[int, int]]
    previous: list[tuple[int, int]] | None


def _spans(check: CheckDefinition, ends: Sequence[datetime]) -> _Spans:
    windows = [window_of(check, end) for end in ends]
    current = [(_ms(w.start), _ms(w.end)) for w in windows]
    previous = None
    if isinstance(check, ChangeCheck):
        # planner._change_body: previous = [start - (end - start), start)
        previous = [(_ms(w.start - (w.end - w.start)), _ms(w.start)) for w in windows]
    return _Spans(current, previous)


@dataclass(frozen=True, slots=True)
class HistogramPlan:
    """The one search of the histogram method and what is needed to read its answer."""

    request: SearchRequest
    spans: _Spans
    lo: int  # the first bucket's start, epoch milliseconds
    grain: int  # the bucket width, milliseconds


def histogram_plan(
    check: CheckDefinition, ends: Sequence[datetime], timeout: timedelta
) -> HistogramPlan | str:
    """The histogram search for points ending at ``ends``, or why this check needs one search
    per point instead."""
    why_not = _combinable(check)
    if why_not is not None:
        return why_not
    spans = _spans(check, ends)
    boundaries = [x for pair in spans.current for x in pair]
    if spans.previous is not None:
        boundaries += [x for pair in spans.previous for x in pair]
    lo, hi = min(boundaries), max(boundaries)
    grain = 0
    for x in boundaries:
        grain = math.gcd(grain, x - lo)
    grain = grain or (hi - lo) or 1
    buckets = (hi - lo) // grain
    if buckets > MAX_FINE_BUCKETS:
        return f"{buckets} histogram buckets would be needed (limit {MAX_FINE_BUCKETS})"
    request = SearchRequest(
        check=check.name,
        index=",".join(check.index),
        body=_histogram_body(check, lo, hi, grain, timeout),
        window=Window(ends[0], ends[-1]),
    )
    return HistogramPlan(request, spans, lo, grain)


def answers_from_histogram(
    check: CheckDefinition,
    response: dict[str, Any],
    hist: HistogramPlan,
    product: str = "Elasticsearch",
) -> list[dict[str, Any]] | str:
    """For each point, the answer the check's own request would have got; or why the
    histogram's answer cannot give them (groups left out)."""
    cut = (response.get("aggregations") or {}).get(GROUPS_AGG, {}).get("sum_other_doc_count")
    if cut:
        return "more groups than one histogram search returns"
    return _answers(check, response, hist.spans, hist.lo, hist.grain, product)


def _sub_aggs(check: CheckDefinition) -> dict[str, Any]:
    """What each histogram bucket carries: the pieces the check's value is made of."""
    if isinstance(check, MetricCheck) or (isinstance(check, ChangeCheck) and check.field):
        assert check.agg is not None and check.field is not None
        # min, max and value_count combine as themselves (and work on any field type, as
        # in the check's own request); avg and sum need a count and a sum: ``stats``.
        piece = check.agg if check.agg in ("min", "max", "value_count") else "stats"
        return {VALUE_AGG: {piece: {"field": check.field}}}
    if isinstance(check, RatioCheck):
        return ratio_aggs(check)
    if isinstance(check, FreshnessCheck):
        return {VALUE_AGG: {"max": {"field": check.timestamp_field}}}
    return {}


def _histogram_body(
    check: CheckDefinition, lo: int, hi: int, grain: int, timeout: timedelta
) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {
            "range": {
                check.timestamp_field: {
                    "gte": lo,
                    "lt": hi,
                    "format": "epoch_millis",
                }
            }
        }
    ]
    if check.query_dsl is not None:
        filters.append(check.query_dsl)
    elif check.query is not None:
        filters.append(user_query(check.query))
    histogram: dict[str, Any] = {
        "date_histogram": {
            "field": check.timestamp_field,
            "fixed_interval": f"{grain}ms",
            "offset": f"+{lo % grain}ms" if lo % grain else "+0ms",
            "min_doc_count": 1,
        }
    }
    sub = _sub_aggs(check)
    if sub:
        histogram["aggs"] = sub
    aggs: dict[str, Any] = {HIST_AGG: histogram}
    if check.group_by:
        buckets = (hi - lo) // grain + 1
        size = max(1, min(MAX_GROUPS, MAX_FINE_BUCKETS // buckets))
        aggs[GROUPS_AGG] = {
            "terms": {"field": check.group_by[0], "size": size, "shard_size": size},
            "aggs": {HIST_AGG: histogram},
        }
        # documents without the field: the "(none)" group, as the check's own search has it
        aggs[GROUP_MISSING_AGG] = {
            "missing": {"field": check.group_by[0]},
            "aggs": {HIST_AGG: histogram},
        }
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"bool": {"filter": filters}},
        "aggs": aggs,
        "timeout": f"{max(1, math.ceil(timeout.total_seconds()))}s",
    }


class _Series:
    """Per-bucket pieces of one histogram (all documents, or one group), dense by index."""

    def __init__(self, node: dict[str, Any], lo: int, grain: int, size: int) -> None:
        self.count = [0] * size
        self.parts: dict[str, list[Any]] = {}
        for bucket in (node.get(HIST_AGG) or {}).get("buckets", []):
            index = (int(bucket["key"]) - lo) // grain
            if not 0 <= index < size:
                continue
            self.count[index] = int(bucket["doc_count"])
            for name, value in bucket.items():
                if isinstance(value, dict):
                    self.parts.setdefault(name, [None] * size)[index] = value
        self.prefix = [0]
        for c in self.count:
            self.prefix.append(self.prefix[-1] + c)

    def docs(self, a: int, b: int) -> int:
        return self.prefix[b] - self.prefix[a]

    def sub_count(self, name: str, a: int, b: int) -> int:
        column = self.parts.get(name) or []
        return sum(int(node["doc_count"]) for node in column[a:b] if node)

    def metric(self, agg: str, a: int, b: int) -> dict[str, Any]:
        """The check's own aggregation answer (``{"value": ...}``) over buckets [a, b)."""
        nodes = [n for n in (self.parts.get(VALUE_AGG) or [])[a:b] if n]
        if agg == "value_count":
            return {"value": sum(int(n["value"]) for n in nodes)}
        if agg in ("min", "max"):
            values = [float(n["value"]) for n in nodes if n.get("value") is not None]
            pick = min if agg == "min" else max
            return {"value": pick(values) if values else None}
        counted = [n for n in nodes if n.get("count")]
        count = sum(int(n["count"]) for n in counted)
        total = math.fsum(float(n["sum"]) for n in counted)
        if agg == "sum":
            return {"count": count, "sum": total}  # the check's own stats answer
        return {"value": total / count if count else None}


def _sliding_max(values: list[float | None], spans: list[tuple[int, int]]) -> list[float | None]:
    """max over each [a, b) of ``spans`` (non-decreasing a and b), in linear time."""
    out: list[float | None] = []
    window: deque[int] = deque()
    right = 0
    for a, b in spans:
        while right < b:
            if values[right] is not None:
                while window and values[window[-1]] <= values[right]:  # type: ignore[operator]
                    window.pop()
                window.append(right)
            right += 1
        while window and window[0] < a:
            window.popleft()
        out.append(values[window[0]] if window else None)
    return out


def _node_for(
    check: CheckDefinition,
    series: _Series,
    a: int,
    b: int,
    newest: float | None,
) -> dict[str, Any]:
    """One group bucket (or the top-level aggregations) as the check's request returns it."""
    node: dict[str, Any] = {"doc_count": series.docs(a, b)}
    if isinstance(check, MetricCheck):
        node[VALUE_AGG] = series.metric(check.agg, a, b)
    elif isinstance(check, RatioCheck):
        node["numerator"] = {"doc_count": series.sub_count("numerator", a, b)}
        if check.denominator is not None:
            node["denominator"] = {"doc_count": series.sub_count("denominator", a, b)}
    elif isinstance(check, FreshnessCheck):
        node[VALUE_AGG] = {"value": newest}
    return node


def _answers(
    check: CheckDefinition,
    response: dict[str, Any],
    spans: _Spans,
    lo: int,
    grain: int,
    product: str = "Elasticsearch",
) -> list[dict[str, Any]]:
    """For each point, the answer the check's own request would have got."""
    size = (max(b for _, b in spans.current) - lo) // grain
    aggs = response.get("aggregations") or {}
    top = _Series(aggs, lo, grain, size)
    index = [((a - lo) // grain, (b - lo) // grain) for a, b in spans.current]
    shell = {k: response[k] for k in ("_shards", "timed_out") if k in response}
    answers: list[dict[str, Any]] = []

    def newest_of(series: _Series) -> list[float | None]:
        column = series.parts.get(VALUE_AGG) or [None] * size
        values = [n.get("value") if n else None for n in column]
        return _sliding_max(values, index)

    if isinstance(check, ChangeCheck):
        assert spans.previous is not None
        before = [((a - lo) // grain, (b - lo) // grain) for a, b in spans.previous]
        for (a, b), (pa, pb) in zip(index, before, strict=True):
            sides = {}
            for name, (x, y) in (("current", (a, b)), ("previous", (pa, pb))):
                node: dict[str, Any] = {"doc_count": top.docs(x, y)}
                if check.field and check.agg:
                    node[VALUE_AGG] = top.metric(check.agg, x, y)
                sides[name] = node
            answers.append(
                {
                    **shell,
                    "hits": {"total": {"value": top.docs(min(a, pa), max(b, pb))}},
                    "aggregations": sides,
                }
            )
        return answers

    top_newest = newest_of(top) if isinstance(check, FreshnessCheck) else [None] * len(index)
    groups: list[tuple[dict[str, Any], _Series, list[float | None]]] = []
    if check.group_by:
        for bucket in (aggs.get(GROUPS_AGG) or {}).get("buckets", []):
            series = _Series(bucket, lo, grain, size)
            newest = newest_of(series) if isinstance(check, FreshnessCheck) else [None] * len(index)
            groups.append((bucket, series, newest))
    missing: tuple[_Series, list[float | None]] | None = None
    if check.group_by and (aggs.get(GROUP_MISSING_AGG) or {}).get("doc_count"):
        series = _Series(aggs[GROUP_MISSING_AGG], lo, grain, size)
        newest = newest_of(series) if isinstance(check, FreshnessCheck) else [None] * len(index)
        missing = (series, newest)
    order = _terms_order(check, product)
    for k, (a, b) in enumerate(index):
        answer: dict[str, Any] = {**shell, "hits": {"total": {"value": top.docs(a, b)}}}
        if not check.group_by:
            node = _node_for(check, top, a, b, top_newest[k])
            node.pop("doc_count")
            answer["aggregations"] = node
        else:
            buckets = []
            for bucket, series, newest in groups:
                if series.docs(a, b) == 0:
                    continue  # no document of this group in the window: not a group then
                entry = _node_for(check, series, a, b, newest[k])
                entry["key"] = bucket["key"]
                if "key_as_string" in bucket:
                    entry["key_as_string"] = bucket["key_as_string"]
                buckets.append(entry)
            buckets.sort(key=order)
            found, left_out = len(buckets), 0
            if len(check.group_by) == 1:
                # ``terms`` returns the first max_groups in its order; the evaluation never
                # sees the others (composite: it gets all and keeps the worst, here too).
                left_out = sum(b["doc_count"] for b in buckets[check.max_groups :])
                buckets = buckets[: check.max_groups]
            answer["aggregations"] = {
                GROUPS_AGG: {"buckets": buckets, "sum_other_doc_count": left_out},
                GROUP_COUNT_AGG: {"value": found},
            }
            if missing is not None and missing[0].docs(a, b):
                node = _node_for(check, missing[0], a, b, missing[1][k])
                answer["aggregations"][GROUP_MISSING_AGG] = node
        answers.append(answer)
    return answers


def _terms_order(
    check: CheckDefinition, product: str = "Elasticsearch"
) -> Callable[[dict[str, Any]], Any]:
    """Sort key giving the bucket order of the check's own ``terms`` aggregation.

    Elasticsearch orders by the planner's order (document count or the value, up or down)
    and breaks ties by the key, ascending; the evaluator keeps that order among equals.
    """
    order = group_order(check)
    descending = order is None or next(iter(order.values())) == "desc"
    by_count = order is None or "_count" in order
    # A group without a value sorts where the server's empty aggregation does: max of
    # nothing is -Infinity, min of nothing +Infinity; an average or percentile of nothing is
    # NaN, which Elasticsearch orders above every number (first when descending, last when
    # ascending) and OpenSearch last either way.
    agg = getattr(check, "agg", None) if isinstance(check, MetricCheck) else "max"
    tier, empty = {"max": (0, -math.inf), "min": (0, math.inf)}.get(agg or "", (1, 0.0))
    sign = -1 if descending else 1
    nan_last = tier == 1 and product == "OpenSearch"

    def key(bucket: dict[str, Any]) -> Any:
        if by_count:
            return (0, sign * float(bucket["doc_count"]), bucket["key"])
        node = bucket.get(VALUE_AGG) or {}
        # ordered by "value.sum" for a sum (stats: 0 when empty), else by "value"
        measure = node.get("sum") if "sum" in node else node.get("value")
        if measure is None:
            return (
                (1, 0.0, bucket["key"]) if nan_last else (sign * tier, sign * empty, bucket["key"])
            )
        return (0, sign * measure, bucket["key"])

    return key
