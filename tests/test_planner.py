"""The planner's request bodies: what esbridge asks Elasticsearch, checked without a server.

The shapes matter for cost and honesty: ``size: 0`` (no hits fetched), exact totals
(``track_total_hits``), filter context (no scoring), ratio and change answered by ONE search.
"""

from __future__ import annotations

import dataclasses
import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esbridge import planner
from esbridge.kinds import REGISTRY
from esbridge.loader import load_checks, load_text
from esbridge.models import CheckDefinition
from esbridge.planner import (
    GROUP_COUNT_AGG,
    GROUP_MISSING_AGG,
    GROUPS_AGG,
    MULTI_GROUP_FETCH,
    VALUE_AGG,
    ClusterFetch,
    SearchRequest,
    plan,
    window_of,
)
from esbridge.searchmerge import merge_key

NOW = datetime(2024, 5, 1, 12, 0, 0, 250_000, tzinfo=UTC)
TIMEOUT = timedelta(seconds=10)


def check(yaml_body: str) -> CheckDefinition:
    return next(iter(load_text("checks:\n" + yaml_body)))


def search(yaml_body: str) -> SearchRequest:
    request = plan(check(yaml_body), NOW, TIMEOUT)
    assert isinstance(request, SearchRequest)
    return request


def time_range(start: str, end: str, field: str = "@timestamp") -> dict[str, Any]:
    return {"range": {field: {"gte": start, "lt": end, "format": "strict_date_optional_time"}}}


def test_count_body_is_size_0_exact_total_filter_context() -> None:
    request = search(
        """
  - name: c
    kind: count
    index: logs-a,logs-b-*
    query: "status:>=500"
    critical: 5
"""
    )
    assert request.index == "logs-a,logs-b-*"
    assert request.header() == {
        "index": "logs-a,logs-b-*",
        "allow_no_indices": False,
        "ignore_unavailable": False,
        "expand_wildcards": "open,closed",
    }
    assert request.body == {
        "size": 0,
        "track_total_hits": True,
        "query": {
            "bool": {
                "filter": [
                    time_range("2024-05-01T11:55:00.250Z", "2024-05-01T12:00:00.250Z"),
                    {"query_string": {"query": "status:>=500", "analyze_wildcard": True}},
                ]
            }
        },
        "timeout": "10s",
    }


def test_query_dsl_passes_through_and_delay_shifts_window() -> None:
    dsl = {"bool": {"must_not": [{"term": {"level": "debug"}}]}}
    c = check(
        f"""
  - name: c
    kind: count
    index: x
    timestamp_field: event.created
    window: 1h
    delay: 2m
    query_dsl: {dsl!r}
    critical: 5
"""
    )
    window = window_of(c, NOW)
    assert window.end == NOW - timedelta(minutes=2)
    assert (window.end - window.start).total_seconds() == 3600
    request = plan(c, NOW, timedelta(milliseconds=1500))
    assert isinstance(request, SearchRequest)
    assert request.body["query"]["bool"]["filter"] == [
        time_range("2024-05-01T10:58:00.250Z", "2024-05-01T11:58:00.250Z", "event.created"),
        dsl,
    ]
    assert request.body["timeout"] == "2s"  # rounded up, never 0


def test_no_query_has_only_the_time_filter() -> None:
    body = search("  - {name: c, kind: count, index: x, critical: 1}").body
    assert len(body["query"]["bool"]["filter"]) == 1
    assert "must" not in body["query"]["bool"]


@pytest.mark.parametrize(
    ("agg", "extra", "expected"),
    [
        ("avg", "", {"avg": {"field": "f"}}),
        ("min", "", {"min": {"field": "f"}}),
        ("max", "", {"max": {"field": "f"}}),
        ("sum", "", {"stats": {"field": "f"}}),  # the count says whether anything was summed
        ("value_count", "", {"value_count": {"field": "f"}}),
        ("cardinality", "", {"cardinality": {"field": "f", "precision_threshold": 40000}}),
        ("percentile", "percentile: 99.9", {"percentiles": {"field": "f", "percents": [99.9]}}),
    ],
)
def test_metric_aggregations(agg: str, extra: str, expected: dict[str, Any]) -> None:
    body = search(
        f"""
  - name: m
    kind: metric
    index: x
    field: f
    agg: {agg}
    {extra}
    critical: 5
"""
    ).body
    assert body["size"] == 0
    assert body["aggs"] == {VALUE_AGG: expected}


def test_group_by_one_field_terms_with_exact_group_count() -> None:
    body = search(
        """
  - name: m
    kind: metric
    index: x
    field: f
    agg: avg
    group_by: host
    max_groups: 7
    critical: 5
"""
    ).body
    groups = body["aggs"][GROUPS_AGG]
    assert groups["terms"] == {
        "field": "host",
        "size": 7,
        "order": {VALUE_AGG: "desc"},
        # each shard sends far more than it keeps, and says how short a count may be
        "shard_size": 1000,
        "show_term_doc_count_error": True,
    }
    assert groups["aggs"] == {VALUE_AGG: {"avg": {"field": "f"}}}
    assert body["aggs"][GROUP_COUNT_AGG] == {
        "cardinality": {"field": "host", "precision_threshold": 40000}
    }
    # documents without the field: a group of their own, with the same measure
    assert body["aggs"][GROUP_MISSING_AGG] == {
        "missing": {"field": "host"},
        "aggs": {VALUE_AGG: {"avg": {"field": "f"}}},
    }


@pytest.mark.parametrize(
    ("thresholds", "order"),
    [
        ("critical: 5", "desc"),
        ('critical: "5:"', "asc"),
        ('warning: "10:"\n    critical: "5:"', "asc"),
        ('warning: "10:"\n    critical: 50', "desc"),
    ],
)
def test_group_order_keeps_the_alerting_side(thresholds: str, order: str) -> None:
    body = search(
        f"""
  - name: m
    kind: metric
    index: x
    field: f
    agg: min
    group_by: host
    {thresholds}
"""
    ).body
    assert body["aggs"][GROUPS_AGG]["terms"]["order"] == {VALUE_AGG: order}


@pytest.mark.parametrize(
    ("thresholds", "order"),
    [
        ("critical: 5", None),  # the terms default: the largest counts
        ('critical: "5:"', {"_count": "asc"}),  # a host gone quiet is the worst
        ('warning: "10:"\n    critical: 50', None),
    ],
)
def test_count_group_order_keeps_the_alerting_side(
    thresholds: str, order: dict[str, str] | None
) -> None:
    body = search(
        f"""
  - name: c
    kind: count
    index: x
    group_by: host
    {thresholds}
"""
    ).body
    assert body["aggs"][GROUPS_AGG]["terms"].get("order") == order


def test_percentile_group_order_path() -> None:
    body = search(
        """
  - name: m
    kind: metric
    index: x
    field: f
    agg: percentile
    percentile: 99.9
    group_by: host
    critical: 5
"""
    ).body
    assert body["aggs"][GROUPS_AGG]["terms"]["order"] == {f"{VALUE_AGG}[99.9]": "desc"}


def test_freshness_groups_oldest_first_with_max_timestamp() -> None:
    body = search(
        """
  - name: f
    kind: freshness
    index: x
    group_by: host
    critical: 60
"""
    ).body
    groups = body["aggs"][GROUPS_AGG]
    assert groups["terms"]["order"] == {VALUE_AGG: "asc"}
    assert groups["aggs"] == {VALUE_AGG: {"max": {"field": "@timestamp"}}}
    start = body["query"]["bool"]["filter"][0]["range"]["@timestamp"]["gte"]
    assert start == "2024-04-30T12:00:00.250Z"  # default lookback 24h


def test_group_by_two_fields_is_composite() -> None:
    """Composite exists in every distribution (multi_terms needs x-pack analytics); documents
    without one of the fields make their own combination ("(none)"), never dropped."""
    body = search(
        """
  - name: c
    kind: count
    index: x
    group_by: [service, host]
    max_groups: 3
    critical: 5
"""
    ).body
    assert body["aggs"] == {
        GROUPS_AGG: {
            "composite": {
                "size": MULTI_GROUP_FETCH,
                "sources": [
                    {"service": {"terms": {"field": "service", "missing_bucket": True}}},
                    {"host": {"terms": {"field": "host", "missing_bucket": True}}},
                ],
            }
        }
    }
    assert "multi_terms" not in repr(body)


def test_ratio_is_one_search_with_filter_aggs() -> None:
    body = search(
        """
  - name: r
    kind: ratio
    index: x
    query: "service:api"
    numerator: "status:>=500"
    denominator:
      term: {method: GET}
    critical: 5
"""
    ).body
    numerator = {"query_string": {"query": "status:>=500", "analyze_wildcard": True}}
    denominator = {"term": {"method": "GET"}}
    assert body["size"] == 0 and body["track_total_hits"] is True
    assert body["aggs"] == {
        "numerator": {"filter": {"bool": {"filter": [numerator, denominator]}}},
        "denominator": {"filter": denominator},
    }
    assert body["query"]["bool"]["filter"][1] == {
        "query_string": {"query": "service:api", "analyze_wildcard": True}
    }


def test_ratio_without_denominator_uses_the_total() -> None:
    body = search("  - {name: r, kind: ratio, index: x, numerator: 'a:b', critical: 5}").body
    assert set(body["aggs"]) == {"numerator"}


def test_change_current_and_previous_filters() -> None:
    body = search(
        """
  - name: ch
    kind: change
    index: x
    window: 10m
    query: "level:error"
    field: bytes
    agg: sum
    critical: "~:100"
"""
    ).body
    current = time_range("2024-05-01T11:50:00.250Z", "2024-05-01T12:00:00.250Z")
    previous = time_range("2024-05-01T11:40:00.250Z", "2024-05-01T11:50:00.250Z")
    sub = {"aggs": {VALUE_AGG: {"stats": {"field": "bytes"}}}}
    assert body["size"] == 0
    assert body["query"]["bool"]["filter"][0] == time_range(
        "2024-05-01T11:40:00.250Z", "2024-05-01T12:00:00.250Z"
    )
    assert body["aggs"] == {
        "current": {"filter": current, **sub},
        "previous": {"filter": previous, **sub},
    }


def test_change_of_counts_has_no_sub_aggregation() -> None:
    body = search("  - {name: ch, kind: change, index: x, critical: '~:100'}").body
    assert set(body["aggs"]["current"]) == {"filter"}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("{name: h, kind: cluster_health}", ClusterFetch("/_cluster/health")),
        (
            "{name: h, kind: cluster_health, index: [a, b]}",
            ClusterFetch("/_cluster/health/a,b", (("level", "indices"), ("timeout", "1s"))),
        ),
        ("{name: n, kind: nodes, expected_nodes: 3}", ClusterFetch("/_cluster/health")),
        ("{name: u, kind: unassigned_shards, critical: 0}", ClusterFetch("/_cluster/health")),
        ("{name: j, kind: jvm_heap}", ClusterFetch("/_nodes/stats/jvm,fs")),
        ("{name: d, kind: disk}", ClusterFetch("/_nodes/stats/jvm,fs")),
        ("{name: m, kind: master}", ClusterFetch(masters=True)),
        (
            "{name: m, kind: master, node_urls: ['http://a:9200', 'http://b:9200']}",
            ClusterFetch(masters=True, node_urls=("http://a:9200", "http://b:9200")),
        ),
    ],
)
def test_cluster_kinds_share_fetches(spec: str, expected: ClusterFetch) -> None:
    """Equal fetches compare equal, so the runner asks each cluster API once per cycle."""
    assert plan(check(f"  - {spec}"), NOW, TIMEOUT) == expected


# Every data kind and shape: the sample checks, grouped (one field, several), a DSL query,
# a delay, another timestamp field.
_MORE = """
  - {name: g1, kind: count, index: x, group_by: [host], critical: 5}
  - {name: g2, kind: count, index: x, group_by: [host, service], critical: 5}
  - {name: p, kind: metric, index: x, field: v, agg: percentile, percentile: 99,
     group_by: [host], critical: 5}
  - {name: d, kind: count, index: x, query_dsl: {term: {a: 1}}, delay: 2m, critical: 5}
  - {name: t, kind: freshness, index: x, timestamp_field: ts, group_by: [h], critical: 60}
  - {name: r, kind: ratio, index: x, numerator: "s:5*", critical: 0.1}
  - {name: c, kind: change, index: x, field: v, agg: avg, critical: '~:100'}
"""


def _data_checks() -> list[CheckDefinition]:
    root = Path(__file__).resolve().parent.parent
    checks = [*load_checks(sorted((root / "checks").glob("*.yaml"))), *load_text(f"checks:{_MORE}")]
    return [c for c in checks if not c.is_cluster_kind]


_CHECKS = _data_checks()


@settings(max_examples=60, deadline=None)
@given(
    moment=st.datetimes(
        min_value=datetime(2001, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
    ),
    seconds=st.integers(min_value=1, max_value=120),
)
def test_a_planned_body_is_the_kinds_own_at_every_moment(moment: datetime, seconds: int) -> None:
    """Bodies are planned once per check with the range put in each time (the change kind,
    whose window shows in its aggregations, whole each time): the same body as the kind's own
    plan, and the merge key the planner gives is the one the body gives."""
    timeout = timedelta(seconds=seconds)
    for one in _CHECKS:
        request = plan(one, moment, timeout)
        assert isinstance(request, SearchRequest)
        whole = REGISTRY[one.kind].plan(one, window_of(one, moment))
        assert isinstance(whole, dict)
        assert request.body == {**whole, "timeout": f"{seconds}s"}, one.name
        assert request.window == window_of(one, moment)
        assert merge_key(request) == merge_key(dataclasses.replace(request)), one.name


def test_a_checks_planned_body_goes_with_it() -> None:
    """A reload replaces every check object: what was planned for the old ones is dropped."""
    before = len(planner._TEMPLATES)
    checks = list(load_text(f"checks:{_MORE}"))
    for one in checks:
        plan(one, NOW, TIMEOUT)
    assert len(planner._TEMPLATES) == before + len(checks)
    del checks, one
    gc.collect()
    assert len(planner._TEMPLATES) == before


def test_a_kind_that_uses_the_window_beyond_its_range_is_planned_whole(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A body whose first filter is the window's range but which shows the window elsewhere
    too (here an aggregation over the window's end) is never put together from a template."""
    count = REGISTRY["count"]

    def plan_with_end(one: Any, window: Any) -> dict[str, Any]:
        body = count.plan(one, window)
        body["aggs"] = {"late": {"range": {"field": "ts", "ranges": [{"from": str(window.end)}]}}}
        return body

    monkeypatch.setitem(REGISTRY, "count", dataclasses.replace(count, plan=plan_with_end))
    one = check("  - {name: w, kind: count, index: x, critical: 5}")
    for moment in (NOW, NOW + timedelta(minutes=1)):
        request = plan(one, moment, TIMEOUT)
        assert isinstance(request, SearchRequest)
        assert request.body["aggs"]["late"]["range"]["ranges"] == [
            {"from": str(window_of(one, moment).end)}
        ]
