"""ratio and change checks against a real Elasticsearch.

ratio: numerator/denominator in percent, from filter aggregations of ONE search.
change: this window vs the previous one, also one search with two filter aggregations.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from esbridge.nagios import render
from esbridge.result import State
from kinds_support import checks_yaml, run_yaml

pytestmark = pytest.mark.es

MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"type": "keyword"},
        "method": {"type": "keyword"},
        "level": {"type": "keyword"},
        "status": {"type": "integer"},
        "bytes": {"type": "long"},
    }
}


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def requests_index(make_index: Callable[..., str], seed: Callable[..., Any], now: datetime) -> str:
    """20 requests in the window: 5 are 500s (4 GET, 1 POST); 12 GET, 8 POST."""
    index = make_index("rat", mappings=MAPPINGS)
    docs = []
    for i in range(20):
        method = "GET" if i < 12 else "POST"
        status = 500 if i in (0, 1, 2, 3, 12) else 200
        docs.append({"host": f"web-0{i % 2 + 1}", "method": method, "status": status, "ago": "1m"})
    docs += [{"host": "web-01", "method": "GET", "status": 500, "ago": "1h"}] * 10  # outside
    seed(index, docs, now=now)
    return index


async def test_ratio_below_at_above_in_one_search(
    es_url: str, requests_index: str, now: datetime
) -> None:
    """5 of 20 = 25 %: at 25 OK, 24.9 CRITICAL; a single search answers it."""
    base = {"kind": "ratio", "numerator": "status:>=500"}
    cases = {
        "at": ({"critical": 25}, State.OK),
        "below": ({"critical": 24.9}, State.CRITICAL),
        "warn": ({"warning": 20, "critical": 30}, State.WARNING),
        "both": ({"warning": 10, "critical": 20}, State.CRITICAL),
        "inside": ({"critical": "@25:50"}, State.CRITICAL),
        "low": ({"warning": "30:"}, State.WARNING),
    }
    only = checks_yaml(requests_index, [{"name": "at", **base, "critical": 25}])
    stats: dict[str, int] = {}
    await run_yaml(es_url, only, now, stats)
    assert stats == {"requests": 1, "searches": 1}

    text = checks_yaml(requests_index, [{"name": n, **base, **c} for n, (c, _) in cases.items()])
    results = await run_yaml(es_url, text, now)
    assert {n: r.state for n, r in results.items()} == {n: s for n, (_, s) in cases.items()}
    assert all(r.value == 25 for r in results.values())
    below = results["below"]
    assert below.summary == (
        f"ratio 25 % (5 of 20 documents) in last 5m on {requests_index} (critical > 24.9)"
    )
    assert render(below) == (
        f"CRITICAL - {below.summary}"
        " | 'ratio'=25%;;24.9;0;100 'numerator'=5;;;0 'denominator'=20;;;0"
    )


async def test_ratio_denominator_and_dsl_numerator(
    es_url: str, requests_index: str, now: datetime
) -> None:
    """An explicit denominator (GET only: 4 of 12) and a DSL numerator give the same share."""
    text = checks_yaml(
        requests_index,
        [
            {
                "name": "lucene",
                "kind": "ratio",
                "numerator": "status:500",
                "denominator": "method:GET",
                "critical": 33,
            },
            {
                "name": "dsl",
                "kind": "ratio",
                "numerator": {"range": {"status": {"gte": 500}}},
                "denominator": {"term": {"method": "GET"}},
                "critical": 34,
            },
            {
                "name": "query",
                "kind": "ratio",
                "query": "method:POST",
                "numerator": "status:500",
                "critical": 10,
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    lucene, dsl = results["lucene"], results["dsl"]
    assert lucene.value == pytest.approx(100 * 4 / 12)
    assert dsl.value == lucene.value
    assert (lucene.state, dsl.state) == (State.CRITICAL, State.OK)
    assert "(4 of 12 documents)" in lucene.summary
    assert (results["query"].value, results["query"].state) == (12.5, State.CRITICAL)


async def test_ratio_zero_denominator_is_no_data(
    es_url: str, requests_index: str, now: datetime
) -> None:
    """Nothing matches the denominator: a share of nothing is no data, not 0 %."""
    base = {"kind": "ratio", "numerator": "status:500", "denominator": "method:DELETE"}
    text = checks_yaml(
        requests_index,
        [
            {"name": "default", "critical": 5, **base},
            {"name": "warn", "critical": 5, "no_data": "warning", **base},
        ],
    )
    results = await run_yaml(es_url, text, now)
    default = results["default"]
    assert default.state is State.UNKNOWN
    assert default.error_kind == "no_data"
    assert default.value is None
    assert default.summary.startswith("no data: no matching documents for the denominator")
    assert render(default).startswith("UNKNOWN - no data:")
    assert "'ratio'=U;;5" in render(default)
    assert results["warn"].state is State.WARNING


async def test_ratio_group_by_truncated(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """Per host error share; max_groups keeps the largest groups and counts the rest."""
    index = make_index("rat", mappings=MAPPINGS)
    shares = {"web-01": (3, 4), "web-02": (1, 10), "web-03": (0, 2)}  # errors, total
    docs = [
        {"host": h, "status": 500 if i < errors else 200, "ago": "2m"}
        for h, (errors, total) in shares.items()
        for i in range(total)
    ]
    seed(index, docs, now=now)
    base = {"kind": "ratio", "numerator": "status:500", "group_by": "host"}
    text = checks_yaml(
        index,
        [
            {"name": "all", "warning": 5, "critical": 50, **base},
            {"name": "cut", "warning": 5, "critical": 50, "max_groups": 1, **base},
            {"name": "two", **base, "warning": 5, "critical": 50, "group_by": ["host", "status"]},
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert {g.label: (g.state, g.value) for g in results["all"].groups} == {
        "web-01": (State.CRITICAL, 75),
        "web-02": (State.WARNING, 10),
        "web-03": (State.OK, 0),
    }
    cut = results["cut"]
    assert len(cut.groups) == 1 and cut.groups_omitted == 2
    assert "2 more groups not evaluated (max_groups 1)" in cut.summary
    assert "... and 2 more groups not evaluated (max_groups 1)" in render(cut)
    two = results["two"]
    assert {g.label: g.value for g in two.groups} == {
        "web-01/500": 100,
        "web-01/200": 0,
        "web-02/500": 100,
        "web-02/200": 0,
        "web-03/200": 0,
    }


@pytest.fixture
def change_index(make_index: Callable[..., str], seed: Callable[..., Any], now: datetime) -> str:
    """Errors: 4 in the previous 5 minutes, 10 in the last 5; bytes 400 -> 200."""
    index = make_index("chg", mappings=MAPPINGS)
    docs = [{"level": "error", "bytes": 100, "ago": "7m"}] * 4
    docs += [{"level": "error", "bytes": 20, "ago": "2m"}] * 10
    docs += [{"level": "info", "ago": "2m"}] * 3  # only in the current window
    seed(index, docs, now=now)
    return index


async def test_change_below_at_above(es_url: str, change_index: str, now: datetime) -> None:
    """4 -> 10 is +150 %: at ~:150 OK, ~:149 CRITICAL; warning vs critical."""
    base = {"kind": "change", "query": "level:error"}
    cases = {
        "at": ({"critical": "~:150"}, State.OK),
        "below": ({"critical": "~:149"}, State.CRITICAL),
        "warn": ({"warning": "~:100", "critical": "~:200"}, State.WARNING),
        "both": ({"warning": "~:100", "critical": "~:120"}, State.CRITICAL),
        "falls-only": ({"critical": "-50:"}, State.OK),
        "inside": ({"critical": "@150:300"}, State.CRITICAL),
    }
    stats: dict[str, int] = {}
    text = checks_yaml(change_index, [{"name": n, **base, **c} for n, (c, _) in cases.items()])
    results = await run_yaml(es_url, text, now, stats)
    # one search per change check; these six share index and windows, so one merged search
    assert stats["searches"] == 1
    assert {n: r.state for n, r in results.items()} == {n: s for n, (_, s) in cases.items()}
    assert all(r.value == 150 for r in results.values())
    below = results["below"]
    assert below.summary == (
        "count changed +150 % (4 in the previous 5m -> 10 in the last 5m)"
        f" on {change_index} (critical > 149)"
    )
    assert render(below).endswith("| 'change'=150%;;~:149 'current'=10 'previous'=4")


async def test_change_of_a_metric_fall(es_url: str, change_index: str, now: datetime) -> None:
    """sum(bytes) 400 -> 200 is -50 %: ``-50:`` at the edge is OK, ``-49:`` CRITICAL."""
    base = {"kind": "change", "query": "level:error", "field": "bytes", "agg": "sum"}
    text = checks_yaml(
        change_index,
        [{"name": "at", "critical": "-50:", **base}, {"name": "below", "critical": "-49:", **base}],
    )
    results = await run_yaml(es_url, text, now)
    assert (results["at"].state, results["at"].value) == (State.OK, -50)
    assert results["below"].state is State.CRITICAL
    assert results["below"].summary.startswith("sum of bytes changed -50 % (400 in the previous")
    assert results["below"].summary.endswith("(critical < -49)")


async def test_change_zero_baseline(es_url: str, change_index: str, now: datetime) -> None:
    """From 0: no_data (default UNKNOWN, or as configured); 0 -> 0 is a 0 % change."""
    text = checks_yaml(
        change_index,
        [
            {"name": "from-zero", "kind": "change", "query": "level:info", "critical": "~:100"},
            {
                "name": "from-zero-crit",
                "kind": "change",
                "query": "level:info",
                "critical": "~:100",
                "no_data": "critical",
            },
            {"name": "both-zero", "kind": "change", "query": "level:fatal", "critical": "~:100"},
        ],
    )
    results = await run_yaml(es_url, text, now)
    zero = results["from-zero"]
    assert zero.state is State.UNKNOWN
    assert zero.error_kind == "no_data"
    assert "count was 0 in the previous 5m and is 3 now" in zero.summary
    assert "'change'=U;;~:100 'current'=3 'previous'=0" in render(zero)
    assert results["from-zero-crit"].state is State.CRITICAL
    both = results["both-zero"]
    assert (both.state, both.value, both.error_kind) == (State.OK, 0, None)
    assert both.summary.startswith("count changed 0 % (0 in the previous 5m -> 0 in the last 5m)")
