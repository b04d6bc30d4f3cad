"""Search-body pieces shared by the data kinds: the window, the filter, groups, metrics.

Pure: the same check and window always give the same body, which is what lets the benchmark
send the very bodies esbridge sends.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from esbridge.kinds.base import CheckBase
from esbridge.kinds.judge import low_values_alert
from esbridge.kinds.requests import Window

GROUPS_AGG = "groups"
GROUP_COUNT_AGG = "group_count"
GROUP_MISSING_AGG = "group_missing"
"""Documents without the ``group_by`` field: one more group, "(none)", never dropped."""
VALUE_AGG = "value"
MULTI_GROUP_FETCH = 10_000
"""Value combinations fetched for a ``group_by`` over several fields (the max_groups limit)."""
SHARD_SIZE_MIN = 1000
SHARD_SIZE_FACTOR = 10
"""Each shard returns ``shard_size`` terms: 10 times ``max_groups``, at least 1,000 and at most
MULTI_GROUP_FETCH (but never fewer than ``max_groups``). A shard holding fewer distinct
values returns all of them, so the counts are exact; beyond, Elasticsearch reports the
possible error per group (``doc_count_error_upper_bound``) and the evaluation says so."""


def shard_size(max_groups: int) -> int:
    """The ``shard_size`` of a grouped check's ``terms`` aggregation (see SHARD_SIZE_MIN)."""
    wanted = max(SHARD_SIZE_FACTOR * max_groups, SHARD_SIZE_MIN)
    return max(max_groups, min(wanted, MULTI_GROUP_FETCH))


def window_of(check: CheckBase, now: datetime) -> Window:
    """The window ending ``delay`` before ``now`` (ingestion lag is skipped, not alerted on)."""
    end = now - check.delay
    return Window(start=end - check.window, end=end)


def user_query(query: str | dict[str, Any] | None) -> dict[str, Any]:
    """A Lucene string becomes ``query_string``; a DSL object passes through unchanged."""
    if query is None:
        return {"match_all": {}}
    if isinstance(query, dict):
        return query
    return {"query_string": {"query": query, "analyze_wildcard": True}}


def time_range(check: CheckBase, start: datetime, end: datetime) -> dict[str, Any]:
    """``[start, end)`` on the check's timestamp field."""
    return time_range_on(check.timestamp_field, start, end)


def time_range_on(field: str, start: datetime, end: datetime) -> dict[str, Any]:
    """``[start, end)`` on ``field``."""
    return {
        "range": {
            field: {
                "gte": _iso(start),
                "lt": _iso(end),
                "format": "strict_date_optional_time",
            }
        }
    }


def base_query(check: CheckBase, start: datetime, end: datetime) -> dict[str, Any]:
    """Filter context only (no scoring, cacheable, cheap): the time range and the user query."""
    filters = [time_range(check, start, end)]
    if check.query_dsl is not None:
        filters.append(check.query_dsl)
    elif check.query is not None:
        filters.append(user_query(check.query))
    return {"bool": {"filter": filters}}


def metric_agg(agg: str, field: str, percentile: float | None) -> dict[str, Any]:
    """The aggregation that measures ``agg`` of ``field`` (read back by ``metric_value``)."""
    if agg == "sum":
        # ``sum`` of no values is 0, so a misspelt or absent field read as a true 0 (an OK
        # forever); ``stats`` gives the sum with the count of values it was made of.
        return {"stats": {"field": field}}
    if agg == "percentile":
        return {"percentiles": {"field": field, "percents": [percentile]}}
    if agg == "cardinality":
        return {"cardinality": {"field": field, "precision_threshold": 40000}}
    return {agg: {"field": field}}


def percent_key(percentile: float | None) -> str:
    """The key Elasticsearch gives a percentile in ``values`` (``99.0``)."""
    return repr(float(percentile or 0))


def value_order(check: CheckBase, key: str = VALUE_AGG) -> dict[str, str]:
    """Keep the groups most likely to alert when there are more than ``max_groups``.

    The highest values first, unless the thresholds only alert on low values (``10:``).
    """
    low = low_values_alert(check.warning, check.critical, check.value_floor)
    return {key: "asc" if low else "desc"}


def grouped(
    check: CheckBase,
    query: dict[str, Any],
    aggs: dict[str, Any],
    order: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A search body: totals, the kind's ``aggs``, per group when ``group_by`` is set.

    ``order`` is the terms order that keeps the groups most likely to alert (by default the
    largest groups, the terms default).
    """
    body: dict[str, Any] = {"size": 0, "track_total_hits": True, "query": query}
    if not check.group_by:
        if aggs:
            body["aggs"] = aggs
        return body
    fields = list(check.group_by)
    missing: dict[str, Any] = {}
    if len(fields) == 1:
        # Each shard sends only its top ``shard_size`` values: a group spread over several
        # shards (daily indices) can be counted only where it was in a shard's top. A generous
        # shard_size makes that rare, and the per-group error bound makes it visible
        # (outcome.grouped_result judges a group on its whole possible range).
        groups: dict[str, Any] = {
            "terms": {
                "field": fields[0],
                "size": check.max_groups,
                "shard_size": shard_size(check.max_groups),
                "show_term_doc_count_error": True,
            }
        }
        count_agg: dict[str, Any] = {
            "cardinality": {"field": fields[0], "precision_threshold": 40000}
        }
        # A terms aggregation leaves out documents without the field (any sentinel value
        # would have to match the field's type): they are counted here, as a group.
        missing = {"missing": {"field": fields[0]}}
        if aggs:
            missing["aggs"] = aggs
    else:
        # ``composite`` is in every distribution (``multi_terms`` needs the x-pack analytics
        # module); it cannot order by a sub-aggregation, so it fetches up to
        # MULTI_GROUP_FETCH combinations and the evaluation keeps the max_groups worst of
        # them, which also makes the omitted count exact.
        groups = {
            "composite": {
                "size": MULTI_GROUP_FETCH,
                "sources": [{f: {"terms": {"field": f, "missing_bucket": True}}} for f in fields],
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
    if missing:
        body["aggs"][GROUP_MISSING_AGG] = missing
    return body


@lru_cache(maxsize=1024)
def _iso(moment: datetime) -> str:
    """Cached: a cycle plans every check at the same moment over a handful of windows."""
    return (
        moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    )
