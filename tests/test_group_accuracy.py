"""Grouped checks over several shards: a kept group is judged on its exact value, or UNKNOWN.

A ``terms`` aggregation asks each shard for its top ``shard_size`` values only. A group spread
over daily indices can be missing from one shard's top, and its count then lacks that shard's
documents: read as is, a host over the threshold would be a false OK. The check's request
asks for a generous ``shard_size`` and for the per-group error bound; a group whose state
could differ within its possible range is UNKNOWN, never judged on a partial value.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from esbridge.evaluate import evaluate
from esbridge.loader import load_text
from esbridge.models import CheckDefinition
from esbridge.nagios import render
from esbridge.planner import GROUP_COUNT_AGG, GROUPS_AGG, VALUE_AGG, plan
from esbridge.result import Result, State
from esbridge_dev import httpcalls
from kinds_support import checks_yaml, run_yaml

MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"type": "keyword"},
        "status": {"type": "integer"},
    }
}
NOW = 1_714_564_800.0  # 2024-05-01T12:00:00Z


def _bulk(es_url: str, index: str, counts: list[tuple[str, int]], at: datetime) -> None:
    """``n`` documents of each host at ``at``: thousands of documents in one request."""
    stamp = at.isoformat()
    lines: list[str] = []
    for host, n in counts:
        doc = json.dumps({"@timestamp": stamp, "host": host, "status": 200})
        lines += ['{"index":{}}', doc] * n
    r = httpcalls.post(
        f"{es_url}/{index}/_bulk",
        params={"refresh": "true"},
        content="\n".join(lines) + "\n",
        headers={"Content-Type": "application/x-ndjson"},
        timeout=120,
    )
    assert r.status_code == 200 and not r.json()["errors"], r.text[:500]


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def daily(make_index: Callable[..., str]) -> Iterator[Callable[[], str]]:
    """Two "daily" indices (one shard each) under one pattern; yields a maker of the pair."""

    def make() -> str:
        first = make_index("grpacc", mappings=MAPPINGS)
        make_index(first, mappings=MAPPINGS)  # "<first>-<hex>": matches "<first>*"
        return first

    yield make


def _count(es_url: str, pattern: str, host: str) -> int:
    r = httpcalls.post(
        f"{es_url}/{pattern}/_count", json={"query": {"term": {"host": host}}}, timeout=30
    )
    return int(r.json()["count"])


def _indices(es_url: str, pattern: str) -> list[str]:
    r = httpcalls.get(f"{es_url}/_cat/indices/{pattern}", params={"h": "index"}, timeout=30)
    return sorted(r.text.split())


@pytest.mark.es
async def test_group_spread_over_daily_indices_is_counted_in_full(
    es_url: str, daily: Callable[[], str], now: datetime
) -> None:
    """The reviewer's layout: 170 other hosts and 15 documents of ``t`` in yesterday's index,
    190 of ``t`` in today's; default max_groups (100), critical above 200. ``t`` has 205:
    CRITICAL, as a plain count says (the old request read 190 and said OK)."""
    first = daily()
    older, newer = _indices(es_url, f"{first}*")
    at = now - timedelta(seconds=20)
    _bulk(es_url, older, [(f"web-{i:03d}", 20) for i in range(170)] + [("t", 15)], at)
    _bulk(es_url, newer, [("t", 190)], at)
    assert _count(es_url, f"{first}*", "t") == 205
    checks = [
        {"name": "per-host", "kind": "count", "group_by": "host", "critical": 200},
        {"name": "plain", "kind": "count", "query": "host:t", "critical": 200},
    ]
    results = await run_yaml(es_url, checks_yaml(f"{first}*", checks), now)
    plain, grouped = results["plain"], results["per-host"]
    assert plain.state is State.CRITICAL and plain.value == 205
    group = grouped.group("host=t")
    assert group is not None
    assert (group.state, group.value) == (State.CRITICAL, 205), group.summary
    assert grouped.state is State.CRITICAL, grouped.summary


@pytest.mark.es
async def test_group_count_short_by_an_unread_shard_is_unknown_near_the_threshold(
    es_url: str, daily: Callable[[], str], now: datetime
) -> None:
    """More hosts in one index than any shard_size: 1,100 hosts with 2 documents and 1 of
    ``t``, which that shard leaves out of its top; 199 of ``t`` in the other. Elasticsearch
    counts 199 and says up to 2 may be missing: ``t`` really has 200.

    critical 199: the range 199..201 could be OK or CRITICAL → UNKNOWN with the range named.
    critical 250: OK whatever the missing documents. critical 198: CRITICAL whatever they are.
    """
    first = daily()
    older, newer = _indices(es_url, f"{first}*")
    at = now - timedelta(seconds=20)
    _bulk(es_url, older, [(f"h-{i:04d}", 2) for i in range(1100)] + [("t", 1)], at)
    _bulk(es_url, newer, [("t", 199)], at)
    assert _count(es_url, f"{first}*", "t") == 200
    checks = [
        {
            "name": f"crit-{limit}",
            "kind": "count",
            "group_by": "host",
            "max_groups": 5,
            "critical": limit,
        }
        for limit in (199, 250, 198)
    ]
    results = await run_yaml(es_url, checks_yaml(f"{first}*", checks), now)
    near = results["crit-199"].group("host=t")
    assert near is not None
    assert near.state is State.UNKNOWN, near.summary  # never "OK 199" for a real 200
    assert near.value == 199
    assert "uncertain: really between 199 and 201" in near.summary
    assert "critical > 199" in near.summary
    assert results["crit-199"].state is State.UNKNOWN
    far = results["crit-250"].group("host=t")
    assert far is not None and far.state is State.OK, far.summary
    over = results["crit-198"].group("host=t")
    assert over is not None and over.state is State.CRITICAL, over.summary


def test_grouped_request_asks_every_shard_for_enough_groups_and_their_error() -> None:
    """A generous shard_size (10 x max_groups, 1,000..10,000, never below max_groups) and the
    per-group error bound."""
    for max_groups, want in ((1, 1000), (100, 1000), (500, 5000), (2000, 10000), (10000, 10000)):
        spec = (
            "{name: c, kind: count, index: x, group_by: host, critical: 5,"
            f" max_groups: {max_groups}}}"
        )
        terms = _plan(_check(spec))["aggs"][GROUPS_AGG]["terms"]
        assert terms["size"] == max_groups
        assert terms["shard_size"] == want
        assert terms["show_term_doc_count_error"] is True


# --- canned answers: the orders and kinds a small test cluster rarely produces ----------


def _check(spec: str) -> CheckDefinition:
    return next(iter(load_text(f"checks:\n  - {spec}")))


def _plan(check: CheckDefinition) -> dict[str, Any]:
    return plan(check, datetime.fromtimestamp(NOW, UTC), timedelta(seconds=5)).body


def _answer(buckets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "timed_out": False,
        "_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0},
        "hits": {"total": {"value": sum(b["doc_count"] for b in buckets), "relation": "eq"}},
        "aggregations": {
            GROUPS_AGG: {"buckets": buckets, "sum_other_doc_count": 0},
            GROUP_COUNT_AGG: {"value": len(buckets)},
        },
    }


def _run(spec: str, buckets: list[dict[str, Any]]) -> Result:
    return evaluate(_check(spec), _answer(buckets), NOW, None)


def _state(result: Result, key: str) -> State:
    group = result.group(f"host={key}")
    assert group is not None
    return group.state


def test_exact_buckets_are_judged_as_before() -> None:
    """Error 0 or absent (one shard, a preview's replay): the value is the verdict."""
    result = _run(
        "{name: c, kind: count, index: x, group_by: host, critical: 200}",
        [
            {"key": "a", "doc_count": 205, "doc_count_error_upper_bound": 0},
            {"key": "b", "doc_count": 190},
        ],
    )
    assert (_state(result, "a"), _state(result, "b")) == (State.CRITICAL, State.OK)
    assert "uncertain" not in result.summary


def test_an_unbounded_error_is_judged_on_the_value_read() -> None:
    """``critical: "10:"`` orders groups smallest first; a shard with more values than its
    shard_size makes Elasticsearch's error -1 ("cannot bound"): routine for an order other
    than the largest counts, so the group is judged on what was read, as without bounds
    (UNKNOWN for every group of every large freshness check would hide the stale ones)."""
    spec = "{name: c, kind: count, index: x, group_by: host, critical: '10:'}"
    result = _run(
        spec,
        [
            {"key": "low", "doc_count": 3, "doc_count_error_upper_bound": -1},
            {"key": "fine", "doc_count": 12, "doc_count_error_upper_bound": -1},
        ],
    )
    assert _state(result, "low") is State.CRITICAL
    assert _state(result, "fine") is State.OK
    assert "uncertain" not in result.summary


def test_one_shard_searched_is_exact_whatever_the_error_says() -> None:
    """One shard (a one-shard index: the default) counts every group exactly, yet
    Elasticsearch still reports -1 once it holds more values than ``shard_size``."""
    answer = _answer(
        [
            {"key": "a", "doc_count": 199, "doc_count_error_upper_bound": 5},
            {"key": "b", "doc_count": 3, "doc_count_error_upper_bound": -1},
        ]
    )
    answer["_shards"] = {"total": 3, "successful": 3, "skipped": 2, "failed": 0}
    result = evaluate(
        _check("{name: c, kind: count, index: x, group_by: host, critical: '10:199'}"),
        answer,
        NOW,
        None,
    )
    assert (_state(result, "a"), _state(result, "b")) == (State.OK, State.CRITICAL)


def test_inside_range_crossed_between_the_bounds_is_unknown() -> None:
    """``@10:20`` alerts inside: 5 read, up to 30 real → both ends OK, the middle not."""
    result = _run(
        "{name: c, kind: count, index: x, group_by: host, critical: '@10:20'}",
        [{"key": "a", "doc_count": 5, "doc_count_error_upper_bound": 25}],
    )
    assert _state(result, "a") is State.UNKNOWN


@pytest.mark.parametrize(
    ("agg", "value", "critical", "want"),
    [
        ("max", 900.0, 500, State.CRITICAL),  # max of some shards ≤ the real max: over
        ("max", 100.0, 500, State.UNKNOWN),  # could be over on the shard not read
        ("min", 100.0, "~:500", State.OK),  # min of some shards ≥ the real min: under
        ("min", 100.0, 500, State.UNKNOWN),  # 500 is 0..500: the real min may be negative
        ("value_count", 600.0, 500, State.CRITICAL),
        ("avg", 100.0, 500, State.UNKNOWN),  # an average of some shards says nothing
        ("avg", 900.0, 500, State.UNKNOWN),
    ],
)
def test_metric_of_some_shards_is_judged_only_where_it_bounds_the_value(
    agg: str, value: float, critical: int | str, want: State
) -> None:
    spec = (
        f"{{name: m, kind: metric, index: x, field: ms, agg: {agg}, group_by: host,"
        f" critical: '{critical}'}}"
    )
    node = {"value": value}
    result = _run(
        spec, [{"key": "a", "doc_count": 4, "doc_count_error_upper_bound": 3, VALUE_AGG: node}]
    )
    assert _state(result, "a") is want, result.summary


def test_ratio_of_some_shards_is_bounded_by_the_documents_not_read() -> None:
    """10 of 100 read, up to 5 more documents: 9.52% .. 14.29%. critical 12 → UNKNOWN,
    critical 20 → OK."""
    bucket = {
        "key": "a",
        "doc_count": 100,
        "doc_count_error_upper_bound": 5,
        "numerator": {"doc_count": 10},
    }
    for critical, want in ((12, State.UNKNOWN), (20, State.OK), ("50:", State.CRITICAL)):
        spec = (
            "{name: r, kind: ratio, index: x, numerator: 'status:500', group_by: host,"
            f" critical: '{critical}'}}"
        )
        result = _run(spec, [dict(bucket)])
        assert _state(result, "a") is want, (critical, result.summary)
        if want is State.UNKNOWN:
            group = result.group("host=a")
            assert group is not None
            assert "really between 9.52381 and 14.285714" in group.summary, group.summary


def test_uncertain_span_is_never_narrower_than_the_value() -> None:
    """An unbounded span (no bounds known) names no numbers and is never OK near a limit."""
    result = _run(
        "{name: m, kind: metric, index: x, field: ms, agg: percentile, percentile: 99,"
        " group_by: host, critical: 500}",
        [
            {
                "key": "a",
                "doc_count": 4,
                "doc_count_error_upper_bound": 2,
                VALUE_AGG: {"values": {"99.0": 100.0}},
            }
        ],
    )
    group = result.group("host=a")
    assert group is not None and group.state is State.UNKNOWN
    assert "the real value is not known" in group.summary
    assert not math.isnan(group.value or 0.0)


def test_freshness_of_some_shards_is_an_upper_bound_of_the_age() -> None:
    """The shards that did not return a host can only hold newer documents: a host read
    fresh is fresh; one read stale may not be (UNKNOWN, never a stale alarm or OK on it)."""
    ms = (NOW - 30) * 1000  # 30 s old
    old = (NOW - 900) * 1000  # 15 min old
    result = _run(
        "{name: f, kind: freshness, index: x, group_by: host, critical: 300}",
        [
            {"key": k, "doc_count": 5, "doc_count_error_upper_bound": e, "value": {"value": at}}
            for k, e, at in (("fresh", 7, ms), ("stale", 7, old), ("exact", 0, old))
        ],
    )
    assert _state(result, "fresh") is State.OK
    assert _state(result, "stale") is State.UNKNOWN
    assert _state(result, "exact") is State.CRITICAL


@pytest.mark.es
async def test_a_one_shard_index_with_many_hosts_is_judged_as_counted(
    es_url: str, make_index: Callable[..., str], now: datetime
) -> None:
    """One shard holding more hosts than it sends: Elasticsearch reports -1 for every group
    of a check ordered other than by the largest counts, though one shard counts exactly.
    The quiet host is CRITICAL, never "UNKNOWN: spread over shards" (a regression once)."""
    index = make_index("acc-one", mappings=MAPPINGS, settings={"number_of_shards": 1})
    at = now - timedelta(seconds=20)
    _bulk(es_url, index, [(f"h{i:04d}", 3) for i in range(1100)] + [("quiet", 1)], at)
    checks = [
        {"name": "low", "kind": "count", "group_by": "host", "critical": "2:", "max_groups": 3},
        {"name": "fresh", "kind": "freshness", "group_by": "host", "critical": 5, "window": "1h"},
    ]
    results = await run_yaml(es_url, checks_yaml(index, checks), now)
    low = results["low"]
    assert [(g.label, g.state) for g in low.groups][:1] == [("quiet", State.CRITICAL)], low.summary
    assert "uncertain" not in low.summary and "uncertain" not in render(results["fresh"])
    assert results["fresh"].state is State.CRITICAL  # every host 20 s old, critical 5 s
