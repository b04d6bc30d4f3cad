"""metric checks against a real Elasticsearch: every agg, thresholds, groups, no data.

Values are chosen so that every aggregation has an exact known answer (integers 1..10,
or all-equal values for percentiles), so "at the threshold" is really at it.
"""

from __future__ import annotations

import json
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
        "service": {"type": "keyword"},
        "latency_ms": {"type": "double"},
        "user": {"type": "keyword"},
    }
}


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def one_to_ten(make_index: Callable[..., str], seed: Callable[..., Any], now: datetime) -> str:
    """latency_ms 1..10 in the window (users u0..u9), plus an outlier outside the window."""
    index = make_index("met", mappings=MAPPINGS)
    docs = [{"latency_ms": i, "user": f"u{i % 10}", "ago": f"{i * 10}s"} for i in range(1, 11)]
    docs.append({"latency_ms": 100_000, "user": "old", "ago": "20m"})
    seed(index, docs, now=now)
    return index


EXACT = {"avg": 5.5, "min": 1, "max": 10, "sum": 55, "value_count": 10, "cardinality": 10}


@pytest.mark.parametrize("agg", sorted(EXACT))
async def test_metric_agg_below_at_above(
    agg: str, es_url: str, one_to_ten: str, now: datetime
) -> None:
    """Each aggregation: at the threshold OK, just below it CRITICAL, warning vs critical."""
    value = EXACT[agg]
    field = "user" if agg == "cardinality" else "latency_ms"
    base = {"kind": "metric", "field": field, "agg": agg, "unit": "ms"}
    cases = {
        "at": ({"critical": value}, State.OK),
        "below": ({"critical": value - 0.5}, State.CRITICAL),
        "above": ({"critical": value + 0.5}, State.OK),
        "warn": ({"warning": value - 0.5, "critical": value + 1}, State.WARNING),
        "both": ({"warning": value - 1, "critical": value - 0.5}, State.CRITICAL),
        "inside": ({"critical": f"@{value}:{value + 5}"}, State.CRITICAL),
        "low-bad": ({"warning": f"{value + 0.5}:"}, State.WARNING),
    }
    text = checks_yaml(one_to_ten, [{"name": n, **base, **c} for n, (c, _) in cases.items()])
    results = await run_yaml(es_url, text, now)
    assert {n: r.state for n, r in results.items()} == {n: want for n, (_, want) in cases.items()}
    for result in results.values():
        assert result.value == value
    below = results["below"]
    number = f"{value:g}"
    assert below.summary == (
        f"{agg} of {field} is {number} ms in last 5m on {one_to_ten} (critical > {value - 0.5:g})"
    )
    assert render(below).startswith(f"CRITICAL - {agg} of {field} is {number} ms")
    assert f"'{agg}'={number}ms;;{value - 0.5:g}" in render(below)


async def test_metric_percentile_exact_and_p999(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """p99.9 (a decimal percentile) at/below/above; all-equal values make it exact."""
    flat = make_index("met", mappings=MAPPINGS)
    seed(flat, [{"latency_ms": 7, "ago": "1m"}] * 50, now=now)
    spread = make_index("met", mappings=MAPPINGS)
    seed(spread, [{"latency_ms": i, "ago": "1m"} for i in range(1, 1001)], now=now)
    p = {"kind": "metric", "field": "latency_ms", "agg": "percentile", "unit": "ms"}
    text = json.dumps(
        {
            "checks": [
                {"name": "at", "index": flat, "percentile": 99.9, "critical": 7, **p},
                {"name": "below", "index": flat, "percentile": 99.9, "critical": 6.99, **p},
                {
                    "name": "warn",
                    "index": flat,
                    "percentile": 99.9,
                    "warning": 6,
                    "critical": 8,
                    **p,
                },
                {"name": "p50", "index": spread, "percentile": 50, "critical": 10_000, **p},
                {"name": "p999", "index": spread, "percentile": 99.9, "critical": 990, **p},
            ]
        }
    )
    results = await run_yaml(es_url, text, now)
    assert (results["at"].state, results["at"].value) == (State.OK, 7)
    assert results["below"].state is State.CRITICAL
    assert results["warn"].state is State.WARNING
    assert results["below"].summary.startswith(f"p99.9 of latency_ms is 7 ms in last 5m on {flat}")
    assert "'p99.9'=7ms;;6.99" in render(results["below"])
    p50, p999 = results["p50"].value, results["p999"].value
    assert p50 is not None and 495 <= p50 <= 506
    assert p999 is not None and 995 <= p999 <= 1000
    assert results["p999"].state is State.CRITICAL


async def test_metric_no_documents_follows_no_data(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """No document in the window: no value, so the no_data policy decides (default UNKNOWN)."""
    index = make_index("met", mappings=MAPPINGS)
    seed(index, [{"latency_ms": 5, "ago": "1h"}], now=now)
    base = {"kind": "metric", "field": "latency_ms", "critical": 1}
    text = checks_yaml(
        index,
        [
            {"name": "default", "agg": "avg", **base},
            {"name": "ok", "agg": "max", "no_data": "ok", **base},
            {"name": "crit", "agg": "percentile", "percentile": 99, "no_data": "critical", **base},
            {"name": "count", "agg": "value_count", "no_data": "warning", **base},
        ],
    )
    results = await run_yaml(es_url, text, now)
    default = results["default"]
    assert default.state is State.UNKNOWN
    assert default.error_kind == "no_data"
    assert default.value is None
    assert default.summary == f"no data: no latency_ms values in last 5m on {index}"
    assert render(default) == (
        f"UNKNOWN - no data: no latency_ms values in last 5m on {index} | 'avg'=U;;1"
    )
    assert results["ok"].state is State.OK
    assert results["crit"].state is State.CRITICAL
    assert results["count"].state is State.WARNING  # even value_count: 0 docs is no data


@pytest.fixture
def hosts(make_index: Callable[..., str], seed: Callable[..., Any], now: datetime) -> str:
    """Per host latency: web-01 avg 100, web-02 avg 50, web-03 avg 10, db-01 avg 1."""
    index = make_index("met", mappings=MAPPINGS)
    per_host = {
        ("api", "web-01"): [90, 110],
        ("api", "web-02"): [50, 50],
        ("web", "web-03"): [5, 15],
        ("db", "db-01"): [1, 1],
    }
    docs = [
        {"service": s, "host": h, "latency_ms": v, "ago": "1m"}
        for (s, h), values in per_host.items()
        for v in values
    ]
    seed(index, docs, now=now)
    return index


async def test_metric_group_by_one_field_keeps_worst(
    es_url: str, hosts: str, now: datetime
) -> None:
    """max_groups keeps the highest values for "> x" and the lowest for "x:" thresholds."""
    base = {"kind": "metric", "field": "latency_ms", "agg": "avg", "group_by": "host"}
    text = checks_yaml(
        hosts,
        [
            {"name": "all", "warning": 10, "critical": 50, **base},
            {"name": "top", "max_groups": 2, "warning": 10, "critical": 50, **base},
            {"name": "low", "max_groups": 1, "critical": "5:", **base},
            {
                "name": "p99",
                "kind": "metric",
                "field": "latency_ms",
                "agg": "percentile",
                "percentile": 99.9,
                "group_by": "host",
                "max_groups": 1,
                "critical": 60,
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    everything = results["all"]
    assert {g.label: (g.state, g.value) for g in everything.groups} == {
        "web-01": (State.CRITICAL, 100),
        "web-02": (State.WARNING, 50),  # at critical (fine), above warning
        "web-03": (State.OK, 10),  # at warning: fine
        "db-01": (State.OK, 1),
    }
    assert everything.state is State.CRITICAL
    assert everything.summary.startswith(
        "2 of 4 groups not OK: web-01 CRITICAL (100), web-02 WARNING (50) -"
        f" avg of latency_ms per host in last 5m on {hosts}"
    )
    top = results["top"]
    assert [g.label for g in top.groups] == ["web-01", "web-02"]
    assert top.groups_omitted == 2
    low = results["low"]
    assert [(g.label, g.state) for g in low.groups] == [("db-01", State.CRITICAL)]
    assert low.groups_omitted == 3
    assert "... and 3 more groups not evaluated (max_groups 1)" in render(low)
    p99 = results["p99"]
    assert p99.error_kind is None, p99.summary
    assert [g.label for g in p99.groups] == ["web-01"]
    assert p99.groups[0].value is not None and 100 <= p99.groups[0].value <= 110
    assert p99.groups_omitted == 3


async def test_metric_group_by_two_fields(es_url: str, hosts: str, now: datetime) -> None:
    """[service, host] groups with max per combination, truncated to the worst 2."""
    base = {"kind": "metric", "field": "latency_ms", "agg": "max", "group_by": ["service", "host"]}
    text = checks_yaml(
        hosts,
        [
            {"name": "all", "critical": 40, **base},
            {"name": "cut", "critical": 40, "max_groups": 2, **base},
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert {g.key: g.value for g in results["all"].groups} == {
        (("service", "api"), ("host", "web-01")): 110,
        (("service", "api"), ("host", "web-02")): 50,
        (("service", "web"), ("host", "web-03")): 15,
        (("service", "db"), ("host", "db-01")): 1,
    }
    cut = results["cut"]
    assert [(g.label, g.state) for g in cut.groups] == [
        ("api/web-01", State.CRITICAL),
        ("api/web-02", State.CRITICAL),
    ]
    assert cut.groups_omitted == 2
    assert "2 more groups not evaluated (max_groups 2)" in cut.summary
    out = render(cut)
    assert "CRITICAL: api/web-01: max of latency_ms 110 (critical > 40)" in out
    assert out.endswith("'api/web-01'=110;;40 'api/web-02'=50;;40")


async def test_documents_without_the_group_field_are_a_group_of_their_own(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """The worst latency is on documents that name no host: they are judged as the group
    "(none)", never dropped (the check read OK while its ungrouped twin read CRITICAL)."""
    index = make_index("met", mappings=MAPPINGS)
    docs = [{"host": h, "latency_ms": 5, "ago": "1m"} for h in ("web-01", "web-02")]
    docs += [{"latency_ms": 2000, "ago": "1m"}] * 4
    seed(index, docs, now=now)
    text = checks_yaml(
        index,
        [
            {"name": "by-host", "kind": "metric", "field": "latency_ms", "agg": "max",
             "group_by": "host", "critical": 1000},
            {"name": "count-by-host", "kind": "count", "group_by": "host", "critical": 3},
        ],
    )  # fmt: skip
    results = await run_yaml(es_url, text, now)
    by_host = results["by-host"]
    assert by_host.state is State.CRITICAL
    first = by_host.groups[0]
    assert (first.label, first.state, first.value) == ("(none)", State.CRITICAL, 2000)
    assert by_host.groups[0].key == (("host", "(none)"),)
    counts = {g.label: g.value for g in results["count-by-host"].groups}
    assert counts == {"(none)": 4, "web-01": 1, "web-02": 1}
    assert results["count-by-host"].groups_omitted == 0


async def test_a_host_really_named_none_is_never_merged_with_documents_without_a_host(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """``(none)`` is a real host name (``uname -n`` without one): beside it, documents
    without the field are ``(no host)``, so every group keeps its own key (one name for two
    groups was one Prometheus series, the other group lost); alone they are ``(none)``."""
    index = make_index("met", mappings=MAPPINGS)
    docs = [{"host": "(none)", "service": "api", "latency_ms": 5, "ago": "1m"}] * 2
    docs += [{"service": "api", "latency_ms": 2000, "ago": "1m"}] * 3
    seed(index, docs, now=now)
    base = {"kind": "count", "critical": 2}
    text = checks_yaml(
        index,
        [
            {"name": "by-host", "group_by": "host", **base},
            {"name": "by-service-host", "group_by": ["service", "host"], **base},
            {"name": "no-named-host", "group_by": "host", "query": "NOT host:*", **base},
        ],
    )
    results = await run_yaml(es_url, text, now)
    one = {g.key: (g.value, g.state) for g in results["by-host"].groups}
    assert one == {
        (("host", "(none)"),): (2, State.OK),
        (("host", "(no host)"),): (3, State.CRITICAL),
    }
    two = {g.key: g.value for g in results["by-service-host"].groups}
    assert two == {
        (("service", "api"), ("host", "(none)")): 2,
        (("service", "api"), ("host", "(no host)")): 3,
    }
    alone = results["no-named-host"].groups
    assert [(g.label, g.value) for g in alone] == [("(none)", 3)]


async def test_a_sum_of_no_values_is_no_data_never_zero(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """Elasticsearch sums nothing to 0: a misspelt field, or documents that carry none,
    read "sum is 0", an OK for ever. A sum of no values is no data (the no_data policy); a
    sum of real zeros is still 0, and so is a group made only of zeros."""
    index = make_index("met", mappings=MAPPINGS)
    docs = [{"host": "web-01", "latency_ms": 0, "ago": "1m"}] * 3  # real zeros
    docs += [{"host": "web-02", "latency_ms": 700, "ago": "1m"}]
    docs += [{"host": "web-03", "user": "u1", "ago": "1m"}] * 5  # no latency_ms at all
    seed(index, docs, now=now)
    base = {"kind": "metric", "agg": "sum", "critical": 500}
    text = checks_yaml(
        index,
        [
            {"name": "misspelt", "field": "latncy_ms", **base},
            {"name": "misspelt-ok", "field": "latncy_ms", "no_data": "ok", **base},
            {"name": "whole", "field": "latency_ms", **base},
            {"name": "zeros", "field": "latency_ms", "query": "host:web-01", **base},
            {"name": "none", "field": "latency_ms", "query": "host:web-03", **base},
            {"name": "by-host", "field": "latency_ms", "group_by": "host", **base},
            {
                "name": "by-host-low",
                "kind": "metric",
                "agg": "sum",
                "field": "latency_ms",
                "group_by": "host",
                "critical": "1:",
            },
            {
                "name": "change",
                "kind": "change",
                "field": "latncy_ms",
                "agg": "sum",
                "critical": 50,
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    misspelt = results["misspelt"]
    assert (misspelt.state, misspelt.value, misspelt.error_kind) == (
        State.UNKNOWN,
        None,
        "no_data",
    )
    assert misspelt.summary == f"no data: no latncy_ms values in last 5m on {index}"
    assert results["misspelt-ok"].state is State.OK
    assert (results["whole"].state, results["whole"].value) == (State.CRITICAL, 700)
    assert (results["zeros"].state, results["zeros"].value) == (State.OK, 0)
    assert (results["none"].state, results["none"].value) == (State.UNKNOWN, None)
    by_host = {g.label: (g.state, g.value) for g in results["by-host"].groups}
    assert by_host == {
        "web-02": (State.CRITICAL, 700),
        "web-01": (State.OK, 0),
        "web-03": (State.UNKNOWN, None),
    }
    low = {g.label: (g.state, g.value) for g in results["by-host-low"].groups}
    assert low["web-01"] == (State.CRITICAL, 0)  # zeros alert on "1:"; no values is no data
    assert low["web-03"] == (State.UNKNOWN, None)
    assert results["change"].state is not State.OK, results["change"].summary
