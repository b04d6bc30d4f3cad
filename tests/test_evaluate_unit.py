"""evaluate() on canned Elasticsearch answers: the cases a live cluster rarely produces.

Partial shard failures and server-side timeouts must never become a number; odd answers
(missing keys, composite pages, nodes without stats) must read as something a person can act on.
"""

from __future__ import annotations

from typing import Any

import pytest

from esbridge.errors import ESError
from esbridge.evaluate import classify, evaluate, threshold_note
from esbridge.loader import load_text
from esbridge.models import CheckDefinition
from esbridge.nagios import render
from esbridge.planner import GROUP_COUNT_AGG, GROUPS_AGG, MULTI_GROUP_FETCH, VALUE_AGG
from esbridge.ranges import Range
from esbridge.result import State

NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def check(spec: str) -> CheckDefinition:
    return next(iter(load_text(f"checks:\n  - {spec}")))


def answer(total: int = 0, aggs: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "took": 3,
        "timed_out": False,
        "_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": total, "relation": "eq"}, "hits": []},
    }
    if aggs is not None:
        body["aggregations"] = aggs
    body.update(extra)
    return body


COUNT = check("{name: c, kind: count, index: logs-*, warning: 10, critical: 50}")


def test_partial_shard_failure_is_unknown_naming_the_shard() -> None:
    shards = {
        "total": 3,
        "successful": 2,
        "skipped": 0,
        "failed": 1,
        "failures": [
            {
                "shard": 1,
                "index": "logs-2024.05.01",
                "node": "n1",
                "reason": {"type": "query_shard_exception", "reason": "failed to create query"},
            }
        ],
    }
    result = evaluate(COUNT, answer(total=3, _shards=shards), NOW)
    assert result.state is State.UNKNOWN
    assert result.error_kind == "partial"
    assert result.value is None
    assert result.summary == (
        "partial results: 1 of 3 shards failed ([logs-2024.05.01][1]: query_shard_exception:"
        " failed to create query) (count check on logs-*)"
    )
    assert render(result).endswith("| 'count'=U;10;50")


def test_server_side_timeout_is_unknown() -> None:
    result = evaluate(COUNT, answer(total=3, timed_out=True), NOW)
    assert result.state is State.UNKNOWN
    assert result.error_kind == "partial"
    assert "search timed out on the server side" in result.summary


def test_es_error_becomes_unknown_with_its_kind() -> None:
    error = ESError("unreachable", "Elasticsearch unreachable: Connection refused")
    result = evaluate(COUNT, error, NOW, duration=0.5)
    assert (result.state, result.error_kind, result.duration) == (State.UNKNOWN, "unreachable", 0.5)
    assert result.summary == "Elasticsearch unreachable: Connection refused (count check on logs-*)"
    assert result.evaluated_at == NOW


def test_an_error_without_a_reason_still_says_what_happened() -> None:
    """A blank reason (a proxy's ``{"error": {"reason": " "}}``) never makes a blank summary."""
    result = evaluate(COUNT, ESError("timeout", "  "), NOW, duration=0.5)
    assert result.summary == "timeout error, no reason given (count check on logs-*)"
    assert result.error == "timeout error, no reason given"


def test_malformed_answer_is_internal_not_a_crash() -> None:
    ratio = check("{name: r, kind: ratio, index: x, numerator: 'a:b', critical: 5}")
    result = evaluate(ratio, answer(total=5, aggs={}), NOW)
    assert result.state is State.UNKNOWN
    assert result.error_kind == "internal"
    assert "could not read Elasticsearch's answer" in result.summary


@pytest.mark.parametrize(
    ("value", "state", "note"),
    [
        (10, State.OK, "warning > 10, critical > 50"),
        (10.5, State.WARNING, "warning > 10"),
        (50, State.WARNING, "warning > 10"),
        (51, State.CRITICAL, "critical > 50"),
        (-1, State.CRITICAL, "critical < 0"),
    ],
)
def test_classify_endpoints_and_precedence(value: float, state: State, note: str) -> None:
    warning, critical = Range.parse("10"), Range.parse("50")
    assert classify(value, warning, critical) is state
    assert threshold_note(state, value, warning, critical) == note


def test_classify_inside_range_endpoint_alerts() -> None:
    assert classify(10, None, Range.parse("@10:20")) is State.CRITICAL
    assert classify(9.99, None, Range.parse("@10:20")) is State.OK
    assert classify(None, None, Range.parse("1")) is State.UNKNOWN
    assert classify(float("nan"), None, Range.parse("1")) is State.UNKNOWN


def test_count_unit_c_is_not_used_as_a_word() -> None:
    c = check("{name: c, kind: count, index: x, critical: 5, unit: c}")
    result = evaluate(c, answer(total=7), NOW)
    assert result.summary == "7 matching documents in last 5m on x (critical > 5)"
    assert render(result).endswith("| 'count'=7c;;5;0")
    named = check("{name: c, kind: count, index: x, critical: 5, unit: errors}")
    assert evaluate(named, answer(total=7), NOW).summary.startswith("7 errors in last 5m")


def test_grouped_omitted_from_cardinality() -> None:
    c = check("{name: c, kind: count, index: x, group_by: host, max_groups: 2, critical: 5}")
    aggs = {
        GROUPS_AGG: {
            "sum_other_doc_count": 4,
            "buckets": [{"key": "a", "doc_count": 9}, {"key": "b", "doc_count": 3}],
        },
        GROUP_COUNT_AGG: {"value": 6},
    }
    result = evaluate(c, answer(total=16, aggs=aggs), NOW)
    assert result.groups_omitted == 4
    assert result.summary.endswith(", 4 more groups not evaluated (max_groups 2)")
    assert (
        render(result)
        .splitlines()[-1]
        .startswith("... and 4 more groups not evaluated (max_groups 2)")
    )


def test_composite_keys_truncated_worst_first() -> None:
    c = check(
        "{name: m, kind: metric, index: x, field: f, agg: max, group_by: [svc, host],"
        " max_groups: 2, warning: 10, critical: 20}"
    )
    buckets = [
        {"key": {"svc": "api", "host": "a"}, "doc_count": 1, VALUE_AGG: {"value": 5.0}},
        {"key": {"svc": "api", "host": "b"}, "doc_count": 1, VALUE_AGG: {"value": 15.0}},
        {"key": {"svc": "db", "host": "c"}, "doc_count": 1, VALUE_AGG: {"value": 30.0}},
        {"key": {"svc": "db", "host": "d"}, "doc_count": 1, VALUE_AGG: {"value": 12.0}},
    ]
    aggs = {GROUPS_AGG: {"after_key": {"svc": "db", "host": "d"}, "buckets": buckets}}
    result = evaluate(c, answer(total=4, aggs=aggs), NOW)
    assert [(g.key, g.state) for g in result.groups] == [
        ((("svc", "db"), ("host", "c")), State.CRITICAL),
        ((("svc", "api"), ("host", "b")), State.WARNING),
    ]
    assert result.groups_omitted == 2
    assert result.state is State.CRITICAL


def test_composite_full_page_reports_more_groups() -> None:
    c = check("{name: c, kind: count, index: x, group_by: [a, b], max_groups: 10000, critical: 5}")
    buckets = [{"key": {"a": str(i), "b": "x"}, "doc_count": 1} for i in range(MULTI_GROUP_FETCH)]
    aggs = {GROUPS_AGG: {"after_key": {"a": "z", "b": "x"}, "buckets": buckets}}
    result = evaluate(c, answer(total=MULTI_GROUP_FETCH, aggs=aggs), NOW)
    assert len(result.groups) == MULTI_GROUP_FETCH
    assert result.groups_omitted >= 1  # more exist, never silently dropped


def test_group_without_value_follows_no_data() -> None:
    c = check(
        "{name: m, kind: metric, index: x, field: f, agg: avg, group_by: host,"
        " critical: 5, no_data: warning}"
    )
    buckets = [
        {"key": "a", "doc_count": 2, VALUE_AGG: {"value": None}},
        {"key": "b", "doc_count": 2, VALUE_AGG: {"value": 1.0}},
    ]
    aggs = {GROUPS_AGG: {"buckets": buckets}, GROUP_COUNT_AGG: {"value": 2}}
    result = evaluate(c, answer(total=4, aggs=aggs), NOW)
    assert [(g.label, g.state) for g in result.groups] == [("a", State.WARNING), ("b", State.OK)]
    assert result.summary.startswith("1 of 2 groups not OK: a WARNING (no data)")


def test_metric_no_data_and_change_fall() -> None:
    metric = check("{name: m, kind: metric, index: x, field: f, agg: avg, critical: 1}")
    result = evaluate(metric, answer(total=0, aggs={VALUE_AGG: {"value": None}}), NOW)
    assert (result.state, result.error_kind) == (State.UNKNOWN, "no_data")
    change = check("{name: ch, kind: change, index: x, critical: '-50:'}")
    aggs = {"current": {"doc_count": 3}, "previous": {"doc_count": 12}}
    fall = evaluate(change, answer(total=15, aggs=aggs), NOW)
    assert (fall.state, fall.value) == (State.CRITICAL, -75)
    assert fall.summary == (
        "count changed -75 % (12 in the previous 5m -> 3 in the last 5m) on x (critical < -50)"
    )


def test_freshness_age_from_max_timestamp() -> None:
    f = check("{name: f, kind: freshness, index: x, critical: 60}")
    newest_ms = (NOW - 75) * 1000
    result = evaluate(f, answer(total=1, aggs={VALUE_AGG: {"value": newest_ms}}), NOW)
    assert (result.state, result.value) == (State.CRITICAL, 75)
    assert result.summary == (
        "newest document is 75 s old (2024-05-01 11:58:45Z) on x (critical > 60)"
    )


def test_cluster_health_states() -> None:
    health = check("{name: h, kind: cluster_health}")
    base = {"cluster_name": "prod", "number_of_nodes": 3, "active_shards": 10}
    for status, state in (("green", State.OK), ("yellow", State.WARNING), ("red", State.CRITICAL)):
        assert evaluate(health, {**base, "status": status}, NOW).state is state
    odd = evaluate(health, {**base, "status": "purple"}, NOW)
    assert odd.state is State.UNKNOWN
    assert odd.summary.startswith("cluster prod is purple: 3 nodes, 10 active shards")


def test_nodes_more_than_expected_is_warning() -> None:
    nodes = check("{name: n, kind: nodes, expected_nodes: 2}")
    result = evaluate(nodes, {"number_of_nodes": 3, "number_of_data_nodes": 3}, NOW)
    assert result.state is State.WARNING
    assert result.summary == "3 nodes (3 data), more than the 2 expected"


def test_jvm_heap_node_without_stats_follows_no_data() -> None:
    heap = check("{name: j, kind: jvm_heap}")
    stats = {
        "nodes": {
            "x1": {"name": "es-1", "jvm": {"mem": {"heap_used_percent": 97}}},
            "x2": {"name": "es-2", "jvm": {"mem": {"heap_used_percent": 40}}},
            "x3": {"name": "es-3"},
        }
    }
    result = evaluate(heap, stats, NOW)
    assert result.state is State.CRITICAL
    assert [(g.label, g.state) for g in result.groups] == [
        ("es-1", State.CRITICAL),
        ("es-3", State.UNKNOWN),
        ("es-2", State.OK),
    ]
    assert result.summary.startswith("2 of 3 nodes not OK: es-1 CRITICAL (97 %), es-3 UNKNOWN")


def test_master_none_elected_and_split_brain() -> None:
    master = check("{name: m, kind: master}")
    none = evaluate(master, {"masters": {"http://a": "none"}}, NOW)
    assert (none.state, none.summary) == (State.CRITICAL, "no elected master: http://a")
    split = evaluate(master, {"masters": {"http://a": "n1", "http://b": "n2"}}, NOW)
    assert split.state is State.CRITICAL
    assert split.summary.startswith("split brain: nodes disagree on the elected master:")
    assert evaluate(master, {"masters": {}}, NOW).state is State.UNKNOWN


def test_shards_without_a_copy_to_search_are_partial_not_a_number() -> None:
    """OpenSearch's answer when one index of a pattern is red: no shard counted as failed,
    but fewer successful than total. Never a number built on it."""
    shards = {"total": 2, "successful": 1, "skipped": 0, "failed": 0}
    result = evaluate(COUNT, answer(total=1, _shards=shards), NOW)
    assert result.state is State.UNKNOWN and result.error_kind == "partial"
    assert result.value is None
    assert "1 of 2 shards had no copy to search" in result.summary


def test_group_notes_name_the_side_each_group_crossed() -> None:
    """Every group's note is worded for its own value: below or above an outside range,
    whichever threshold it crossed, and both thresholds for OK groups (one per evaluation is
    reused across groups, never across sides or states)."""
    c = check(
        "{name: c, kind: count, index: x, group_by: host, max_groups: 10,"
        " warning: '10:20', critical: '5:30'}"
    )
    counts = {"lo": 7, "low": 1, "hi": 25, "high": 40, "ok": 15, "ok2": 12, "lo2": 8, "hi2": 31}
    buckets = [{"key": k, "doc_count": v} for k, v in counts.items()]
    result = evaluate(c, answer(100, {GROUPS_AGG: {"buckets": buckets}}), NOW)
    summaries = {g.label: g.summary for g in result.groups}
    assert summaries == {
        "lo": "lo: 7 matching documents (warning < 10)",
        "lo2": "lo2: 8 matching documents (warning < 10)",
        "low": "low: 1 matching documents (critical < 5)",
        "hi": "hi: 25 matching documents (warning > 20)",
        "high": "high: 40 matching documents (critical > 30)",
        "hi2": "hi2: 31 matching documents (critical > 30)",
        "ok": "ok: 15 matching documents (warning outside 10..20, critical outside 5..30)",
        "ok2": "ok2: 12 matching documents (warning outside 10..20, critical outside 5..30)",
    }
    assert [g.label for g in result.groups][:3] == ["high", "hi2", "low"]  # worst first
