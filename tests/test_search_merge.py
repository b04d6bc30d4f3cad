"""Merged searches (``searchmerge``): one ``filters`` search for checks that differ only in
their own query gives every check exactly the result of its own search.

The property test runs random check sets twice on the real server, once with
``merge_searches`` off (one search per check) and once on, and compares every result; the
other tests pin what a merge must never do: let one check's bad query or failing shard turn
the others UNKNOWN. The first tests are pure (no server).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esbridge.loader import load_text
from esbridge.planner import plan
from esbridge.result import Result, State
from esbridge.searchmerge import MERGED_AGG, merge, merge_key, split
from kinds_support import checks_yaml, run_yaml

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"type": "keyword"},
        "service": {"type": "keyword"},
        "method": {"type": "keyword"},
        "level": {"type": "keyword"},
        "status": {"type": "integer"},
        "latency_ms": {"type": "double"},
        "bytes": {"type": "long"},
    }
}


def planned(index: str, checks: list[dict[str, Any]]) -> list[Any]:
    return [plan(c, NOW, timedelta(seconds=5)) for c in load_text(checks_yaml(index, checks))]


# --------------------------------------------------------------------------- pure


def test_only_checks_sharing_index_range_and_aggregations_merge() -> None:
    requests = planned(
        "logs",
        [
            {"name": "a", "kind": "count", "query": "status:500", "critical": 1},
            {"name": "b", "kind": "freshness", "critical": 600},  # other aggregations
            {"name": "c", "kind": "count", "query": "level:ERROR", "critical": 1},
            {"name": "d", "kind": "count", "window": "1h", "critical": 1},  # another range
            {"name": "e", "kind": "count", "group_by": ["host", "method"], "critical": 1},
            {"name": "f", "kind": "count", "critical": 1},
        ],
    )
    assert merge_key(requests[4]) is None  # composite cannot sit under filters
    hits = dataclasses.replace(requests[0], body=requests[0].body | {"size": 1})
    assert merge_key(hits) is None  # only size-0 searches: a hit cannot be split
    searches = merge(requests)
    assert [[m.check for m in s.members] for s in searches] == [
        ["a", "c", "f"],
        ["b"],
        ["d"],
        ["e"],
    ]
    merged = searches[0]
    assert merged.merged and merged.positions == (0, 2, 5)
    body = merged.request.body
    assert body["query"]["bool"]["filter"] == [requests[0].body["query"]["bool"]["filter"][0]]
    filters = body["aggs"][MERGED_AGG]["filters"]["filters"]
    assert filters["0"] == {"bool": {"filter": requests[0].body["query"]["bool"]["filter"][1:]}}
    assert filters["2"] == {"match_all": {}}  # f has no query of its own
    assert searches[1].request is requests[1]  # alone: the check's own request, untouched
    assert merge([*requests[:1], hits])[1].request is hits


def test_a_merged_search_holds_at_most_largest_checks() -> None:
    checks = [{"name": f"c{i}", "kind": "count", "critical": 1} for i in range(7)]
    searches = merge(planned("logs", checks), largest=3)
    assert [len(s.members) for s in searches] == [3, 3, 1]
    assert [p for s in searches for p in s.positions] == list(range(7))


def test_requests_with_numbers_beyond_64_bits_still_merge_by_their_key() -> None:
    """The key's fast encoder refuses such integers; the key falls back, the same for both."""
    requests = planned(
        "logs", [{"name": n, "kind": "count", "critical": 1} for n in ("a", "b", "c")]
    )
    huge = {"big": {"filter": {"range": {"bytes": {"gte": 2**70}}}}}
    a, b = (dataclasses.replace(r, body=r.body | {"aggs": huge}) for r in requests[:2])
    assert merge_key(a) == merge_key(b) != merge_key(requests[2])
    assert merge_key(a) is not None and str(2**70) in merge_key(a)  # type: ignore[operator]
    assert [[m.check for m in s.members] for s in merge([a, b, requests[2]])] == [["a", "b"], ["c"]]


def test_split_refuses_partial_answers() -> None:
    checks = [{"name": f"c{i}", "kind": "count", "critical": 1} for i in range(2)]
    search = merge(planned("logs", checks))[0]
    buckets = {"0": {"doc_count": 3}, "1": {"doc_count": 0}}
    good = {
        "took": 2,
        "timed_out": False,
        "_shards": {"total": 2, "successful": 2, "skipped": 0, "failed": 0},
        "aggregations": {MERGED_AGG: {"buckets": buckets}},
    }
    parts = split(search, good)
    assert parts is not None
    assert [p["hits"]["total"] for p in parts] == [
        {"value": 3, "relation": "eq"},
        {"value": 0, "relation": "eq"},
    ]
    assert all("aggregations" not in p and p["_shards"] == good["_shards"] for p in parts)
    for bad in (
        {"timed_out": True},
        {"_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 1}},
        {"_shards": {"total": 2, "successful": 1, "skipped": 0, "failed": 0}},  # no copy
        {"aggregations": {MERGED_AGG: {"buckets": {"0": {"doc_count": 3}}}}},
    ):
        assert split(search, good | bad) is None, bad


# --------------------------------------------------------------------------- real server


def run(
    es_url: str, text: str, merged: bool, stats: dict[str, int] | None = None, **config: Any
) -> tuple[dict[str, Result], int]:
    """One cycle of every check in ``text`` at NOW; the results and the searches sent
    (``stats`` gets the requests too); ``config``: more connection settings."""
    counters: dict[str, int] = {} if stats is None else stats
    cycle = run_yaml(es_url, text, NOW, counters, merge_searches=merged, **config)
    return asyncio.run(cycle), counters["searches"]


def comparable(result: Result) -> str:
    """Everything but the time the search took (NaN-safe: compared as text)."""
    return repr(dataclasses.replace(result, duration=0.0))


@pytest.fixture
def logs(make_index: Callable[..., str], seed: Callable[..., Any]) -> str:
    """Two shards (so answers are reduced across shards), 600 documents over two hours."""
    index = make_index("merge", mappings=MAPPINGS, settings={"number_of_shards": 2})
    docs = []
    for i in range(600):
        docs.append(
            {
                "ago": f"{(i * 37) % 7200 + 1}s",
                "host": f"web-{i % 5}",
                "service": ("api", "shop", "auth")[i % 3],
                "method": ("GET", "POST")[i % 2],
                "level": ("INFO", "INFO", "WARN", "ERROR")[i % 4],
                "status": (200, 200, 200, 404, 500, 503)[i % 6],
                "latency_ms": (i * 7919) % 1500 / 3,
                "bytes": (i * 104729) % 90000,
            }
        )
    seed(index, docs, now=NOW)
    return index


QUERIES = (None, "status:>=500", "level:ERROR", "host:web-1", "method:GET AND status:200", "xyz:1")
THRESHOLDS = ({"critical": 5}, {"warning": 10, "critical": 50}, {"critical": "10:"})


@st.composite
def check_specs(draw: st.DrawFn, i: int) -> dict[str, Any]:
    kind = draw(st.sampled_from(("count", "metric", "ratio", "change")))
    spec: dict[str, Any] = {"name": f"c{i}", "kind": kind}
    spec["window"] = draw(st.sampled_from(("5m", "15m", "1h")))
    query = draw(st.sampled_from(QUERIES))
    if query is not None:
        spec["query"] = query
    spec |= draw(st.sampled_from(THRESHOLDS))
    if kind in ("metric", "change") and (kind == "metric" or draw(st.booleans())):
        spec["field"] = draw(st.sampled_from(("latency_ms", "bytes")))
        spec["agg"] = draw(
            st.sampled_from(("avg", "max", "min", "sum", "percentile", "cardinality"))
        )
        if spec["agg"] == "percentile":
            spec["percentile"] = draw(st.sampled_from((50, 95, 99.9)))
    if kind == "ratio":
        spec["numerator"] = draw(st.sampled_from(("status:>=500", "latency_ms:>300")))
    if kind in ("count", "metric"):
        spec["group_by"] = draw(st.sampled_from((None, ["host"], ["service"], ["host", "method"])))
        if spec["group_by"] is None:
            del spec["group_by"]
    return spec


check_sets = st.integers(2, 14).flatmap(
    lambda n: st.tuples(*(check_specs(i) for i in range(n))).map(list)
)


@pytest.mark.es
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(specs=check_sets)
def test_merged_and_single_searches_give_identical_results(
    es_url: str, logs: str, specs: list[dict[str, Any]]
) -> None:
    text = checks_yaml(logs, specs)
    single, single_searches = run(es_url, text, merged=False)
    merged, merged_searches = run(es_url, text, merged=True)
    assert single_searches == len(specs)
    assert {n: comparable(r) for n, r in merged.items()} == {
        n: comparable(r) for n, r in single.items()
    }
    expected = len(merge(planned(logs, specs)))
    assert merged_searches == expected  # a merge happened wherever keys were shared
    # every answer was a real one (no check went UNKNOWN for a reason other than its data)
    assert {r.error_kind for r in single.values()} <= {None, "no_data"}, [
        (r.check, r.error) for r in single.values() if r.error
    ]


@pytest.mark.es
def test_a_merge_with_enough_checks_sends_fewer_searches(es_url: str, logs: str) -> None:
    specs = [
        {"name": f"c{i}", "kind": "count", "query": QUERIES[i % 5], "critical": 50}
        for i in range(10)
    ]
    specs += [
        {"name": f"m{i}", "kind": "metric", "field": "latency_ms", "agg": "avg", "query": q}
        | {"critical": 300}
        for i, q in enumerate(QUERIES[1:5])
    ]
    single, single_searches = run(es_url, checks_yaml(logs, specs), merged=False)
    merged, merged_searches = run(es_url, checks_yaml(logs, specs), merged=True)
    assert (single_searches, merged_searches) == (14, 2)
    assert {n: comparable(r) for n, r in merged.items()} == {
        n: comparable(r) for n, r in single.items()
    }
    assert single["c1"].value is not None and single["c1"].value > 0
    # Five checks per _msearch: merged searches of at most five, requests of at most five
    # checks (10 counts → 5 + 5, 4 metrics → 4), so evaluation still overlaps the searches.
    stats: dict[str, int] = {}
    small, _ = run(es_url, checks_yaml(logs, specs), True, stats, max_searches_per_request=5)
    assert stats == {"requests": 3, "searches": 3}
    assert {n: comparable(r) for n, r in small.items()} == {
        n: comparable(r) for n, r in single.items()
    }


@pytest.mark.es
@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"query": "status:[500 TO"}, id="rejected-query"),  # 400 for the whole
        pytest.param({"query_dsl": {"term": {"status": "not-a-number"}}}, id="shard-failure"),
    ],
)
def test_one_bad_query_turns_only_its_own_check_unknown(
    es_url: str, logs: str, bad: dict[str, Any]
) -> None:
    specs = [
        {"name": f"c{i}", "kind": "count", "query": QUERIES[i % 5], "critical": 50}
        for i in range(6)
    ]
    specs.insert(3, {"name": "bad", "kind": "count", "critical": 50, **bad})
    text = checks_yaml(logs, specs)
    single, _ = run(es_url, text, merged=False)
    merged, searches = run(es_url, text, merged=True)
    assert single["bad"].state is State.UNKNOWN
    assert merged["bad"].state is State.UNKNOWN
    assert merged["bad"].error_kind == single["bad"].error_kind
    assert searches == 1 + len(specs)  # the merged search, then each check on its own
    for name in (s["name"] for s in specs if s["name"] != "bad"):
        assert comparable(merged[name]) == comparable(single[name]), name
        assert merged[name].error_kind is None


def test_the_merged_body_is_plain_json() -> None:
    """What goes on the wire: one JSON line, the shared range and the filters."""
    searches = merge(
        planned("logs", [{"name": f"c{i}", "kind": "count", "critical": 1} for i in range(3)])
    )
    line = json.dumps(searches[0].request.body)
    assert json.loads(line)["aggs"][MERGED_AGG]["filters"]["filters"].keys() == {"0", "1", "2"}
