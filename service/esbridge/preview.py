"""Backtest a check over past data: what would it have said at each step of the last day?

A query path like the runner (planner → esclient → evaluate), never the store. Each point is
the value the check would have computed over its own window ending at that time, turned into
a state by the very same :func:`~esbridge.evaluate.evaluate` the service uses: the preview
builds, for every point, the answer Elasticsearch would have given to the check's own request
and hands it to the evaluator, so thresholds, ``no_data``, groups and summaries cannot drift.

How the answers are obtained, with as few requests as possible:

- **one histogram search** when the check's aggregation can be combined from pieces (count,
  ratio, change of a count, metric/change with avg, sum, min, max or value_count, freshness;
  ``group_by`` on one field): a ``date_histogram`` with the check's query, at the largest
  interval that divides every window boundary (the gcd of step, window and the change's
  previous window), and the aggregation inside each bucket (``min``, ``max`` and
  ``value_count`` as themselves, ``stats`` for avg and sum, ``filter`` counts for ratios,
  ``max`` of the time field for freshness). A window that is
  longer than the step (a moving window) is the sum/min/max of its buckets, computed here.
  Groups are a ``terms`` aggregation around the histogram; when Elasticsearch says it left
  groups out (``sum_other_doc_count`` > 0), the preview falls back to the next method.
- **one ``_msearch`` of per-step searches** otherwise (percentile and cardinality cannot be
  combined from pieces; ``group_by`` on several fields; too many fine buckets): the check's
  own request for every point, ``max_searches_per_request`` searches per ``_msearch``.

Exact by construction: bucket boundaries coincide with window boundaries to the millisecond,
exactly as the planner writes them, so a point equals what ``esbridge run`` says for the same
window end (sums of floating-point values may differ in the last binary digit, never in
what the output shows).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from esbridge.durations import format_duration
from esbridge.errors import ESError
from esbridge.esclient import Connection, ConnectionConfig
from esbridge.evaluate import evaluate
from esbridge.models import (
    ChangeCheck,
    CheckDefinition,
    FreshnessCheck,
    MetricCheck,
    RatioCheck,
)
from esbridge.planner import (
    GROUP_COUNT_AGG,
    GROUPS_AGG,
    VALUE_AGG,
    SearchRequest,
    Window,
    _group_order,
    plan,
    ratio_aggs,
    user_query,
    window_of,
)
from esbridge.ranges import Range
from esbridge.result import Result, State

__all__ = [
    "COMBINABLE_AGGS",
    "MAX_FINE_BUCKETS",
    "Preview",
    "PreviewError",
    "PreviewPoint",
    "default_step",
    "point_times",
    "preview_check",
    "preview_to_dict",
]

COMBINABLE_AGGS = frozenset({"avg", "sum", "min", "max", "value_count"})
"""Aggregations whose value over a window follows from the values over its pieces."""
MAX_FINE_BUCKETS = 50_000
"""Histogram buckets (times groups) one search may ask for; Elasticsearch's default
``search.max_buckets`` is 65,536. Beyond, the per-step method is used."""
MAX_GROUPS = 1000
"""Groups the histogram method fetches; more (or a cut-off answer) → per-step searches."""
GROUPS_SHOWN = 3
"""Worst groups kept per point in the JSON."""
NICE_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)
HIST_AGG = "preview_histogram"


class PreviewError(Exception):
    """A preview that cannot be made; ``kind`` picks the exit code / HTTP status.

    ``no_history`` (cluster kinds), ``bad_request`` (since/step/until/too many points).
    Elasticsearch failures are not raised: they make the points UNKNOWN (``Preview.error``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class PreviewPoint:
    """What the check would have said at ``at`` (its window ends ``delay`` before)."""

    at: float
    result: Result

    @property
    def state(self) -> State:
        return self.result.state

    @property
    def value(self) -> float | None:
        return self.result.value


@dataclass
class Preview:
    """A check replayed over a period, with what an operator wants to know about it."""

    check: CheckDefinition
    since: timedelta
    step: timedelta
    until: float
    points: list[PreviewPoint]
    method: str  # "histogram" | "per-step"
    requests: int  # HTTP requests sent to Elasticsearch
    searches: int  # searches inside those requests
    notes: list[str] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # Elasticsearch answered no point: every point is UNKNOWN

    @property
    def transitions(self) -> list[tuple[PreviewPoint, State]]:
        """(point where the state changed, state before)."""
        out = []
        for before, point in zip(self.points, self.points[1:], strict=False):
            if point.state is not before.state:
                out.append((point, before.state))
        return out

    def time_in_state(self) -> dict[str, float]:
        """Seconds per state: each point stands for one step."""
        seconds = {s.name: 0.0 for s in State}
        for point in self.points:
            seconds[point.state.name] += self.step.total_seconds()
        return seconds

    def pages(self) -> int:
        """Transitions into CRITICAL: each would have paged someone."""
        return sum(1 for p, _ in self.transitions if p.state is State.CRITICAL)

    def warnings(self) -> int:
        """Transitions from OK into WARNING."""
        return sum(
            1 for p, before in self.transitions if p.state is State.WARNING and before is State.OK
        )

    def worst_groups(self, limit: int = 10) -> list[dict[str, Any]]:
        """Groups ranked by the time they were not OK (then by their worst state)."""
        step = self.step.total_seconds()
        stats: dict[str, dict[str, Any]] = {}
        for point in self.points:
            for group in point.result.groups:
                if group.state is State.OK:
                    continue
                entry = stats.setdefault(
                    group.key_text,
                    {"group": group.key_text, "seconds_not_ok": 0.0, "worst": State.OK},
                )
                entry["seconds_not_ok"] += step
                if group.state.severity > entry["worst"].severity:
                    entry["worst"] = group.state
        ranked = sorted(stats.values(), key=lambda e: (-e["seconds_not_ok"], -e["worst"].severity))
        return [{**e, "worst": e["worst"].name} for e in ranked[:limit]]


# -- the plan ------------------------------------------------------------------------------


def default_step(check: CheckDefinition, since: timedelta, interval: timedelta) -> timedelta:
    """The check's own interval, unless that makes more than ~300 points: then a round step."""
    own = check.interval or interval
    if since / own <= 300:
        return own
    wanted = since.total_seconds() / 300
    for nice in NICE_STEPS:
        if nice >= wanted:
            return timedelta(seconds=nice)
    return timedelta(seconds=math.ceil(wanted / 86400) * 86400)


def point_times(since: timedelta, step: timedelta, until: float, max_points: int) -> list[datetime]:
    """Window ends, oldest first; the last one is ``until`` itself (the right edge)."""
    if step <= timedelta(0):
        raise PreviewError("bad_request", "step must be longer than 0s")
    if since <= timedelta(0):
        raise PreviewError("bad_request", "since must be longer than 0s")
    if step > since:
        raise PreviewError(
            "bad_request",
            f"step {format_duration(step)} is longer than since {format_duration(since)}",
        )
    count = int(since / step)
    if count > max_points:
        least = timedelta(seconds=math.ceil(since.total_seconds() / max_points))
        raise PreviewError(
            "bad_request",
            f"since {format_duration(since)} at step {format_duration(step)} is {count} points, "
            f"more than the limit of {max_points}: use a step of at least "
            f"{format_duration(least)}",
        )
    try:
        end = datetime.fromtimestamp(until, UTC)
        return [end - step * k for k in range(count - 1, -1, -1)]
    except (OverflowError, ValueError, OSError):
        raise PreviewError("bad_request", f"until {until!r} is not a usable time") from None


def _ms(moment: datetime) -> int:
    """Milliseconds exactly as the planner writes a time (microseconds truncated)."""
    whole = moment.replace(microsecond=0)
    return int(whole.timestamp()) * 1000 + moment.microsecond // 1000


def _combinable(check: CheckDefinition) -> str | None:
    """None when the histogram method works for this check, else why not."""
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


# -- the histogram method ------------------------------------------------------------------


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
            return {"value": total}  # Elasticsearch's sum of nothing is 0
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


def _answers_from_histogram(
    check: CheckDefinition,
    response: dict[str, Any],
    spans: _Spans,
    lo: int,
    grain: int,
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
    order = _terms_order(check)
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
            answer["aggregations"] = {
                GROUPS_AGG: {"buckets": buckets, "sum_other_doc_count": 0},
                GROUP_COUNT_AGG: {"value": len(buckets)},
            }
        answers.append(answer)
    return answers


def _terms_order(check: CheckDefinition) -> Callable[[dict[str, Any]], Any]:
    """Sort key giving the bucket order of the check's own ``terms`` aggregation.

    Elasticsearch orders by the planner's order (document count, or the value up or down)
    and breaks ties by the key, ascending; the evaluator keeps that order among equals.
    """
    has_value = isinstance(check, MetricCheck | FreshnessCheck)
    order = _group_order(check, {VALUE_AGG: {}} if has_value else {})
    descending = order is None or next(iter(order.values())) == "desc"

    def key(bucket: dict[str, Any]) -> Any:
        if order is None:
            measure: float | None = float(bucket["doc_count"])
        else:
            measure = (bucket.get(VALUE_AGG) or {}).get("value")
        if measure is None:
            return (1, 0.0, bucket["key"])
        return (0, -measure if descending else measure, bucket["key"])

    return key


# -- running it ----------------------------------------------------------------------------


async def preview_check(
    check: CheckDefinition,
    connection: Connection,
    since: timedelta,
    step: timedelta,
    until: float | None = None,
    max_points: int = 2000,
    timeout: timedelta = timedelta(seconds=30),
) -> Preview:
    """Replay ``check`` over ``since`` before ``until`` (default: now), one point per step.

    Raises :class:`PreviewError` for what cannot be previewed; an Elasticsearch failure or a
    partial answer makes the points UNKNOWN with the reason, as it would a live run.
    """
    if check.is_cluster_kind:
        raise PreviewError(
            "no_history",
            f"{check.name} is a {check.kind} check: it reads the cluster's current state "
            "through the cluster APIs, which keep no history, so there is nothing to replay "
            "(preview works for count, metric, ratio, change and freshness checks)",
        )
    end = time.time() if until is None else until
    ends = point_times(since, step, end, max_points)
    spans = _spans(check, ends)
    nows = [e.timestamp() for e in ends]
    nows[-1] = end  # the right edge is exactly ``until``, as a run at that moment
    seconds = timeout.total_seconds()
    requests = searches = 0
    notes: list[str] = []

    why_not = _combinable(check)
    if why_not is None:
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
            why_not = f"{buckets} histogram buckets would be needed (limit {MAX_FINE_BUCKETS})"
        else:
            body = _histogram_body(check, lo, hi, grain, timeout)
            request = SearchRequest(
                check=check.name,
                index=",".join(check.index),
                body=body,
                window=Window(ends[0], ends[-1]),
            )
            answer = (await connection.msearch([request], seconds))[0]
            requests += 1
            searches += 1
            if isinstance(answer, ESError):
                # Every point UNKNOWN with the reason, as a live run would be: never a gap
                # that reads as "nothing happened".
                points = _evaluate_all(check, [answer] * len(nows), nows)
                return Preview(
                    check,
                    since,
                    step,
                    end,
                    points,
                    "histogram",
                    requests,
                    searches,
                    notes,
                    error=answer.message,
                )
            cut = (answer.get("aggregations") or {}).get(GROUPS_AGG, {}).get("sum_other_doc_count")
            if cut:
                why_not = "more groups than one histogram search returns"
            else:
                answers = await asyncio.to_thread(
                    _answers_from_histogram, check, answer, spans, lo, grain
                )
                points = await asyncio.to_thread(_evaluate_all, check, answers, nows)
                return Preview(
                    check, since, step, end, points, "histogram", requests, searches, notes
                )
    notes.append(f"one search per point: {why_not}")
    plans = [plan(check, e, timeout) for e in ends]
    per_step = [p for p in plans if isinstance(p, SearchRequest)]
    answers_or_errors = await connection.msearch(per_step, seconds)
    size = max(1, connection.config.max_searches_per_request)
    requests += math.ceil(len(per_step) / size)
    searches += len(per_step)
    failed = [a for a in answers_or_errors if isinstance(a, ESError)]
    error = failed[0].message if failed and len(failed) == len(answers_or_errors) else None
    points = await asyncio.to_thread(_evaluate_all, check, answers_or_errors, nows)
    return Preview(
        check, since, step, end, points, "per-step", requests, searches, notes, error=error
    )


async def preview_on_own_connection(
    check: CheckDefinition,
    config: ConnectionConfig | None,
    since: timedelta,
    step: timedelta,
    until: float | None,
    max_points: int,
    timeout: timedelta,
) -> Preview:
    """:func:`preview_check` on a connection of its own, closed afterwards: a preview's
    searches never queue behind (or delay) the scheduler's on the service's connection."""
    connection = None
    if config is not None and not check.is_cluster_kind:
        connection = Connection(check.cluster, config)
    try:
        return await preview_check(
            check,
            connection,  # type: ignore[arg-type]  # None only for cluster kinds (refused)
            since,
            step,
            until,
            max_points,
            timeout,
        )
    finally:
        if connection is not None:
            await connection.close()


def _evaluate_all(
    check: CheckDefinition, answers: Sequence[dict[str, Any] | ESError], nows: Sequence[float]
) -> list[PreviewPoint]:
    return [
        PreviewPoint(now, evaluate(check, answer, now))
        for answer, now in zip(answers, nows, strict=True)
    ]


# -- JSON ----------------------------------------------------------------------------------


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def range_to_dict(value: Range | None) -> dict[str, Any] | None:
    """A threshold for charts: the alerting side(s) with infinities as null."""
    if value is None:
        return None
    return {
        "text": str(value),
        "start": _num(value.start),
        "end": _num(value.end),
        "inside": value.inside,
    }


def preview_to_dict(
    preview: Preview, render: Callable[[Result], str] | None = None
) -> dict[str, Any]:
    """The JSON of ``esbridge preview --format json`` and ``GET .../preview``."""
    check = preview.check

    def point(p: PreviewPoint) -> dict[str, Any]:
        item: dict[str, Any] = {"at": p.at, "value": _num(p.value), "state": p.state.name}
        if check.group_by:
            item["groups"] = [
                {"group": g.key_text, "state": g.state.name, "value": _num(g.value)}
                for g in p.result.groups[:GROUPS_SHOWN]
            ]
        if p.result.error:
            item["error"] = p.result.error
        return item

    last = preview.points[-1]
    body: dict[str, Any] = {
        "check": check.name,
        "kind": check.kind,
        "unit": check.unit,
        "window": format_duration(check.window),
        "since": format_duration(preview.since),
        "step": format_duration(preview.step),
        "from": preview.points[0].at,
        "until": preview.until,
        "thresholds": {
            "warning": range_to_dict(check.warning),
            "critical": range_to_dict(check.critical),
        },
        "error": preview.error,
        "method": preview.method,
        "requests": preview.requests,
        "searches": preview.searches,
        "notes": list(preview.notes),
        "points": [point(p) for p in preview.points],
        "transitions": [
            {
                "at": p.at,
                "from": before.name,
                "to": p.state.name,
                "value": _num(p.value),
                "summary": p.result.summary,
            }
            for p, before in preview.transitions
        ],
        "time_in_state": preview.time_in_state(),
        "pages": preview.pages(),
        "warnings": preview.warnings(),
        "worst_groups": preview.worst_groups() if check.group_by else [],
        "last": {
            "at": last.at,
            "state": last.state.name,
            "value": _num(last.value),
            "summary": last.result.summary,
        },
        "markers": list(preview.markers),
    }
    if render is not None:
        body["last"]["nagios"] = render(last.result)
    return body
