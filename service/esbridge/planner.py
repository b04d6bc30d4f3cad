"""Turn a check definition into the Elasticsearch request that answers it.

Data kinds become one search body each (sent in batches through ``_msearch``): ratio and
change need two numbers, and both come from filter aggregations of the same request. Cluster
kinds become a shared :class:`ClusterFetch` so that ten cluster checks cost one call to the
cluster APIs per cycle.

Everything here is pure: the same check and ``now`` always give the same body, which is what
lets the benchmark send the very bodies esbridge sends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from esbridge.models import (
    ChangeCheck,
    CheckDefinition,
    ClusterHealthCheck,
    CountCheck,
    DiskCheck,
    FreshnessCheck,
    JvmHeapCheck,
    MasterCheck,
    MetricCheck,
    NodesCheck,
    RatioCheck,
    UnassignedShardsCheck,
)

GROUPS_AGG = "groups"
GROUP_COUNT_AGG = "group_count"
VALUE_AGG = "value"
MULTI_GROUP_FETCH = 10_000
"""Value combinations fetched for a ``group_by`` over several fields (the max_groups limit)."""


@dataclass(frozen=True, slots=True)
class Window:
    """The time range a data check looks at: ``[start, end)`` in UTC."""

    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One item of an ``_msearch`` request."""

    check: str
    index: str
    body: dict[str, Any]
    window: Window

    def header(self) -> dict[str, Any]:
        # allow_no_indices=False: a pattern that matches nothing is "no such index", never
        # a silent count of 0 that would read OK. expand_wildcards includes closed indices
        # so that a closed index matched by a pattern is an error, not silently skipped.
        return {
            "index": self.index,
            "allow_no_indices": False,
            "ignore_unavailable": False,
            "expand_wildcards": "open,closed",
        }


@dataclass(frozen=True, slots=True)
class ClusterFetch:
    """A cluster API call shared by every cluster check of one connection in a cycle."""

    what: str  # "health" | "nodes_stats" | "master"
    index: str = ""  # for health scoped to indices
    node_urls: tuple[str, ...] = ()


def window_of(check: CheckDefinition, now: datetime) -> Window:
    """The window ending ``delay`` before ``now`` (ingestion lag is skipped, not alerted on)."""
    end = now - check.delay
    return Window(start=end - check.window, end=end)


def plan(check: CheckDefinition, now: datetime, timeout: timedelta) -> SearchRequest | ClusterFetch:
    """The request for ``check`` at ``now``; ``timeout`` bounds the search on the server too."""
    if isinstance(check, ClusterHealthCheck | NodesCheck | UnassignedShardsCheck):
        return ClusterFetch("health", index=",".join(check.index))
    if isinstance(check, JvmHeapCheck | DiskCheck):
        return ClusterFetch("nodes_stats")
    if isinstance(check, MasterCheck):
        return ClusterFetch("master", node_urls=tuple(check.node_urls))
    window = window_of(check, now)
    if isinstance(check, ChangeCheck):
        body = _change_body(check, window)
    else:
        base = _base_query(check, window)
        if isinstance(check, CountCheck):
            body = _grouped(check, base, {})
        elif isinstance(check, MetricCheck):
            body = _grouped(
                check, base, {VALUE_AGG: metric_agg(check.agg, check.field, check.percentile)}
            )
        elif isinstance(check, RatioCheck):
            body = _grouped(check, base, ratio_aggs(check))
        elif isinstance(check, FreshnessCheck):
            body = _grouped(check, base, {VALUE_AGG: {"max": {"field": check.timestamp_field}}})
        else:  # pragma: no cover - the union is closed
            raise TypeError(f"no planner for kind {check.kind!r}")
    body["timeout"] = f"{max(1, math.ceil(timeout.total_seconds()))}s"
    return SearchRequest(check=check.name, index=",".join(check.index), body=body, window=window)


def user_query(query: str | dict[str, Any] | None) -> dict[str, Any]:
    """A Lucene string becomes ``query_string``; a DSL object passes through unchanged."""
    if query is None:
        return {"match_all": {}}
    if isinstance(query, dict):
        return query
    return {"query_string": {"query": query, "analyze_wildcard": True}}


def _range(check: CheckDefinition, start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "range": {
            check.timestamp_field: {
                "gte": _iso(start),
                "lt": _iso(end),
                "format": "strict_date_optional_time",
            }
        }
    }


def _base_query(check: CheckDefinition, window: Window) -> dict[str, Any]:
    """Filter context only: no scoring, cacheable, cheap."""
    filters = [_range(check, window.start, window.end)]
    if check.query_dsl is not None:
        filters.append(check.query_dsl)
    elif check.query is not None:
        filters.append(user_query(check.query))
    return {"bool": {"filter": filters}}


def metric_agg(agg: str, field: str, percentile: float | None) -> dict[str, Any]:
    if agg == "percentile":
        return {"percentiles": {"field": field, "percents": [percentile]}}
    if agg == "cardinality":
        return {"cardinality": {"field": field, "precision_threshold": 40000}}
    return {agg: {"field": field}}


def ratio_aggs(check: RatioCheck) -> dict[str, Any]:
    denominator = user_query(check.denominator) if check.denominator is not None else None
    numerator = user_query(check.numerator)
    aggs: dict[str, Any] = {
        "numerator": {
            "filter": {"bool": {"filter": [numerator] + ([denominator] if denominator else [])}}
        }
    }
    if denominator is not None:
        aggs["denominator"] = {"filter": denominator}
    return aggs


def _grouped(check: CheckDefinition, query: dict[str, Any], aggs: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": query}
    if not check.group_by:
        if aggs:
            body["aggs"] = aggs
        return body
    fields = list(check.group_by)
    order = _group_order(check, aggs)
    if len(fields) == 1:
        groups: dict[str, Any] = {"terms": {"field": fields[0], "size": check.max_groups}}
        count_agg: dict[str, Any] = {
            "cardinality": {"field": fields[0], "precision_threshold": 40000}
        }
    else:
        # ``composite`` is in every distribution (``multi_terms`` needs the x-pack analytics
        # module); it cannot order by a sub-aggregation, so it fetches up to
        # MULTI_GROUP_FETCH combinations and evaluate() keeps the max_groups worst of them,
        # which also makes the omitted count exact.
        groups = {
            "composite": {
                "size": MULTI_GROUP_FETCH,
                "sources": [{f: {"terms": {"field": f}}} for f in fields],
            }
        }
        count_agg = {}
        order = None
    if order:
        groups[next(iter(groups))]["order"] = order
    if aggs:
        groups["aggs"] = aggs
    body["aggs"] = {GROUPS_AGG: groups}
    if count_agg:
        body["aggs"][GROUP_COUNT_AGG] = count_agg
    return body


def _group_order(check: CheckDefinition, aggs: dict[str, Any]) -> dict[str, str] | None:
    """Keep the groups most likely to alert when there are more than ``max_groups``.

    Counts keep the largest groups (the terms default). A metric or freshness keeps the
    highest values first, unless the thresholds only alert on low values (``10:``).
    """
    if VALUE_AGG not in aggs:
        return None
    low_is_bad = all(
        r is not None and r.end == math.inf and not r.inside
        for r in (check.warning, check.critical)
        if r is not None
    ) and (check.warning is not None or check.critical is not None)
    direction = "asc" if low_is_bad else "desc"
    if isinstance(check, FreshnessCheck):
        # Oldest newest-document first: the stale groups are the ones that matter.
        return {f"{VALUE_AGG}": "asc"}
    if isinstance(check, MetricCheck) and check.agg == "percentile":
        return {f"{VALUE_AGG}[{_percent_key(check.percentile)}]": direction}
    return {VALUE_AGG: direction}


def _percent_key(percentile: float | None) -> str:
    return repr(float(percentile or 0))


def _change_body(check: ChangeCheck, window: Window) -> dict[str, Any]:
    previous = Window(start=window.start - (window.end - window.start), end=window.start)
    filters = [_range(check, previous.start, window.end)]
    if check.query_dsl is not None:
        filters.append(check.query_dsl)
    elif check.query is not None:
        filters.append(user_query(check.query))
    sub: dict[str, Any] = {}
    if check.field and check.agg:
        sub = {"aggs": {VALUE_AGG: metric_agg(check.agg, check.field, check.percentile)}}
    return {
        "size": 0,
        "track_total_hits": True,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "current": {"filter": _range(check, window.start, window.end), **sub},
            "previous": {"filter": _range(check, previous.start, previous.end), **sub},
        },
    }


@lru_cache(maxsize=1024)
def _iso(moment: datetime) -> str:
    """Cached: a cycle plans every check at the same moment over a handful of windows."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
