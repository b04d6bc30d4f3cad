"""count checks against a real Elasticsearch: thresholds, ranges, groups, errors.

Every test seeds documents with a known answer (timestamps relative to a fixed ``now``),
loads the check from YAML and runs it through the real Runner, so the planner, the
``_msearch`` round trip, evaluate() and the Nagios rendering are all exercised together.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import BACKEND_NAME
from esbridge.nagios import exit_code, render
from esbridge.result import State
from esbridge_dev import httpcalls
from kinds_support import checks_yaml, run_yaml

pytestmark = pytest.mark.es

MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"type": "keyword"},
        "service": {"type": "keyword"},
        "status": {"type": "integer"},
    }
}


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def ten_docs(make_index: Callable[..., str], seed: Callable[..., Any], now: datetime) -> str:
    """10 documents in the last 5 minutes (3 of them status 500), 3 older ones."""
    index = make_index("cnt", mappings=MAPPINGS)
    docs = [
        {"host": "web-01", "status": 500 if i < 3 else 200, "ago": f"{i + 1}0s"} for i in range(10)
    ]
    docs += [{"host": "web-01", "status": 500, "ago": "10m"} for _ in range(3)]
    seed(index, docs, now=now)
    return index


async def test_count_below_at_above_each_threshold(
    es_url: str, ten_docs: str, now: datetime
) -> None:
    """10 documents: at a threshold is fine, one below alerts; critical wins over warning."""
    cases = {
        "crit-11": ({"critical": 11}, State.OK),
        "crit-10": ({"critical": 10}, State.OK),
        "crit-9": ({"critical": 9}, State.CRITICAL),
        "warn-9": ({"warning": 9, "critical": 20}, State.WARNING),
        "warn-10": ({"warning": 10, "critical": 20}, State.OK),
        "both-crossed": ({"warning": 5, "critical": 9}, State.CRITICAL),
        "inside-at-start": ({"critical": "@10:20"}, State.CRITICAL),
        "inside-at-end": ({"critical": "@5:10"}, State.CRITICAL),
        "inside-missed": ({"critical": "@11:20"}, State.OK),
        "min-10": ({"critical": "10:"}, State.OK),
        "min-11": ({"critical": "11:"}, State.CRITICAL),
        "max-open-9": ({"warning": "~:9"}, State.WARNING),
        "max-open-10": ({"warning": "~:10"}, State.OK),
        "between": ({"critical": "10:20"}, State.OK),
        "between-missed": ({"critical": "11:20"}, State.CRITICAL),
    }
    text = checks_yaml(
        ten_docs, [{"name": n, "kind": "count", **spec} for n, (spec, _) in cases.items()]
    )
    results = await run_yaml(es_url, text, now)
    got = {name: results[name].state for name in cases}
    assert got == {name: want for name, (_, want) in cases.items()}
    for result in results.values():
        assert result.value == 10
        assert result.error_kind is None
        assert f"10 matching documents in last 5m on {ten_docs}" in result.summary

    assert render(results["crit-9"]) == (
        f"CRITICAL - 10 matching documents in last 5m on {ten_docs} (critical > 9)"
        " | 'count'=10;;9;0"
    )
    assert exit_code(results["crit-9"]) == 2
    assert results["warn-9"].summary.endswith("(warning > 9)")
    assert results["both-crossed"].summary.endswith("(critical > 9)")
    assert results["min-11"].summary.endswith("(critical < 11)")
    assert results["inside-at-start"].summary.endswith("(critical inside 10..20)")
    assert render(results["warn-10"]).startswith("OK - 10 matching documents")


async def test_count_lucene_query_and_query_dsl_agree(
    es_url: str, ten_docs: str, now: datetime
) -> None:
    """``query`` (Lucene) and ``query_dsl`` select the same 3 errors out of 10."""
    text = checks_yaml(
        ten_docs,
        [
            {"name": "lucene", "kind": "count", "query": "status:>=500", "critical": 2},
            {
                "name": "dsl",
                "kind": "count",
                "query_dsl": {"range": {"status": {"gte": 500}}},
                "critical": 2,
            },
            {
                "name": "lucene-ok",
                "kind": "count",
                "query": "status:500 AND host:web-01",
                "critical": 3,
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert results["lucene"].value == results["dsl"].value == 3
    assert results["lucene"].state is results["dsl"].state is State.CRITICAL
    assert results["lucene-ok"].state is State.OK


async def test_count_delay_excludes_recent_documents(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """``delay: 1m`` moves the window back: the 5 documents of the last minute do not count."""
    index = make_index("cnt", mappings=MAPPINGS)
    docs = [{"host": "a", "ago": "30s"}] * 5 + [{"host": "a", "ago": "3m"}] * 2
    seed(index, [*docs, {"host": "a", "ago": "330s"}], now=now)
    text = checks_yaml(
        index,
        [
            {"name": "plain", "kind": "count", "critical": 100},
            {"name": "delayed", "kind": "count", "delay": "1m", "critical": 100},
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert results["plain"].value == 7  # 330 s ago is outside [now-5m, now)
    assert results["delayed"].value == 3  # [now-6m, now-1m): 2 at 3m + 1 at 5m30s


async def test_count_zero_documents_is_zero_not_no_data(
    es_url: str, make_index: Callable[..., str], now: datetime
) -> None:
    """A count never has "no data": an empty window is the value 0."""
    index = make_index("cnt", mappings=MAPPINGS)
    text = checks_yaml(
        index,
        [
            {"name": "max", "kind": "count", "critical": 5},
            {"name": "min", "kind": "count", "critical": "1:"},
            {"name": "grouped", "kind": "count", "group_by": "host", "critical": 5},
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert (results["max"].state, results["max"].value) == (State.OK, 0)
    assert (results["min"].state, results["min"].value) == (State.CRITICAL, 0)
    assert results["min"].summary.endswith("(critical < 1)")
    assert results["grouped"].state is State.OK
    assert results["grouped"].groups == ()
    assert "no matching documents" in results["grouped"].summary


async def test_count_group_by_one_field_truncated(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """5 hosts, ``max_groups: 2``: the 2 largest are evaluated, exactly 3 reported omitted;
    when only low counts alert (``3:``), the 2 smallest are kept instead: the quiet hosts."""
    index = make_index("cnt", mappings=MAPPINGS)
    counts = {"web-01": 6, "web-02": 5, "web-03": 3, "web-04": 2, "web-05": 1}
    seed(index, [{"host": h, "ago": "1m"} for h, n in counts.items() for _ in range(n)], now=now)
    text = checks_yaml(
        index,
        [
            {
                "name": "per-host",
                "kind": "count",
                "group_by": "host",
                "max_groups": 2,
                "warning": 5,
                "critical": 5.5,
            },
            {"name": "all-hosts", "kind": "count", "group_by": "host", "warning": 2, "critical": 5},
            {
                "name": "quiet",
                "kind": "count",
                "group_by": "host",
                "max_groups": 2,
                "critical": "3:",
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    quiet = results["quiet"]
    assert [(g.label, g.state, g.value) for g in quiet.groups] == [
        ("web-05", State.CRITICAL, 1),
        ("web-04", State.CRITICAL, 2),
    ]
    assert quiet.state is State.CRITICAL and quiet.groups_omitted == 3
    cut = results["per-host"]
    assert [(g.label, g.state, g.value) for g in cut.groups] == [
        ("web-01", State.CRITICAL, 6),
        ("web-02", State.OK, 5),
    ]
    assert cut.groups[0].key == (("host", "web-01"),)
    assert cut.state is State.CRITICAL
    assert cut.groups_omitted == 3
    assert "3 more groups not evaluated (max_groups 2)" in cut.summary
    assert cut.summary.startswith("1 of 2 groups not OK: web-01 CRITICAL (6)")
    text_out = render(cut)
    assert text_out.splitlines()[-1].startswith(
        "... and 3 more groups not evaluated (max_groups 2)"
    )
    assert "'web-01'=6;5;5.5;0 'web-02'=5;5;5.5;0" in text_out

    full = results["all-hosts"]
    assert full.groups_omitted == 0
    assert {g.label: g.state for g in full.groups} == {
        "web-01": State.CRITICAL,
        "web-02": State.WARNING,
        "web-03": State.WARNING,
        "web-04": State.OK,
        "web-05": State.OK,
    }
    # Worst first, then the value furthest on the alerting side.
    assert [g.label for g in full.groups] == ["web-01", "web-02", "web-03", "web-04", "web-05"]
    assert "not evaluated" not in render(full)


async def test_count_group_by_two_fields(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """group_by [service, host]: one group per combination, a document without a host in its
    own ("(none)"); truncation counts the rest exactly."""
    index = make_index("cnt", mappings=MAPPINGS)
    combos = {("api", "web-01"): 4, ("api", "web-02"): 1, ("db", "web-01"): 7, ("db", "db-01"): 2}
    docs = [
        {"service": s, "host": h, "ago": "2m"} for (s, h), n in combos.items() for _ in range(n)
    ]
    docs.append({"service": "api", "ago": "2m"})  # no host: the group api/(none)
    seed(index, docs, now=now)
    text = checks_yaml(
        index,
        [
            {"name": "all", "kind": "count", "group_by": ["service", "host"], "critical": 3},
            {
                "name": "cut",
                "kind": "count",
                "group_by": ["service", "host"],
                "max_groups": 1,
                "critical": 3,
            },
        ],
    )
    results = await run_yaml(es_url, text, now)
    everything = results["all"]
    assert {g.key: g.value for g in everything.groups} == {
        **{(("service", s), ("host", h)): n for (s, h), n in combos.items()},
        (("service", "api"), ("host", "(none)")): 1,
    }
    assert [g.label for g in everything.groups][:2] == ["db/web-01", "api/web-01"]
    assert everything.groups_omitted == 0
    assert everything.summary.startswith("2 of 5 groups not OK: db/web-01 CRITICAL (7)")

    cut = results["cut"]
    assert [(g.label, g.value) for g in cut.groups] == [("db/web-01", 7)]
    assert cut.groups_omitted == 4
    assert "4 more groups not evaluated (max_groups 1)" in cut.summary
    assert "... and 4 more groups not evaluated (max_groups 1)" in render(cut)


async def test_count_exact_above_10000(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """10,050 documents count as 10,050 (track_total_hits), not "10,000 or more"."""
    index = make_index("big", mappings=MAPPINGS)
    seed(index, [{"host": "h", "ago": "1m"}] * 10_050, now=now)
    # Without track_total_hits Elasticsearch stops counting at 10,000: the trap is real.
    plain = httpcalls.post(f"{es_url}/{index}/_search", json={"size": 0}, timeout=30).json()
    assert plain["hits"]["total"] == {"value": 10_000, "relation": "gte"}
    text = checks_yaml(
        index,
        [
            {"name": "at", "kind": "count", "critical": 10_050},
            {"name": "below", "kind": "count", "critical": 10_049},
        ],
    )
    results = await run_yaml(es_url, text, now)
    assert (results["at"].state, results["at"].value) == (State.OK, 10_050)
    assert (results["below"].state, results["below"].value) == (State.CRITICAL, 10_050)
    assert results["below"].summary.startswith("10050 matching documents")


async def test_bad_query_is_unknown_quoting_elasticsearch(
    es_url: str, ten_docs: str, now: datetime
) -> None:
    """A query Elasticsearch refuses is UNKNOWN with its reason; other checks still answer."""
    text = checks_yaml(
        ten_docs,
        [
            {"name": "bad-lucene", "kind": "count", "query": "status:[[[", "critical": 1},
            {"name": "bad-dsl", "kind": "count", "query_dsl": {"no_such_query": {}}, "critical": 1},
            {"name": "good", "kind": "count", "critical": 100},
        ],
    )
    results = await run_yaml(es_url, text, now)
    lucene, dsl = results["bad-lucene"], results["bad-dsl"]
    assert lucene.state is State.UNKNOWN and lucene.error_kind == "rejected"
    assert "Failed to parse query [status:[[[]" in lucene.summary
    assert render(lucene).startswith(f"UNKNOWN - query rejected by {BACKEND_NAME}:")
    assert dsl.state is State.UNKNOWN and dsl.error_kind == "rejected"
    assert "no_such_query" in dsl.summary
    # A malformed body rejects a whole _msearch; the runner isolates it.
    assert (results["good"].state, results["good"].value) == (State.OK, 10)


async def test_missing_index_and_empty_pattern_are_unknown(es_url: str, now: datetime) -> None:
    """No index (or a pattern matching nothing) is "no such index", never a silent 0 = OK."""
    missing = f"esb-missing-{uuid.uuid4().hex[:8]}"
    text = json.dumps(
        {
            "checks": [
                {"name": "missing", "kind": "count", "index": missing, "critical": 1},
                {"name": "pattern", "kind": "count", "index": f"{missing}-*", "critical": 1},
            ]
        }
    )
    results = await run_yaml(es_url, text, now)
    for name, index in (("missing", missing), ("pattern", f"{missing}-*")):
        result = results[name]
        assert result.state is State.UNKNOWN
        assert result.error_kind == "no_such_index"
        assert f"no such index [{index}]" in result.summary
        assert render(result).startswith(f"UNKNOWN - no such index [{index}]")
        assert exit_code(result) == 3


async def test_pattern_matching_two_indices(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """``prefix-*`` and a comma list both count the documents of both indices."""
    prefix = f"two{uuid.uuid4().hex[:6]}"
    first, second = make_index(prefix, mappings=MAPPINGS), make_index(prefix, mappings=MAPPINGS)
    seed(first, [{"host": "a", "ago": "1m"}] * 4, now=now)
    seed(second, [{"host": "b", "ago": "1m"}] * 3, now=now)
    text = json.dumps(
        {
            "checks": [
                {"name": "pattern", "kind": "count", "index": f"{prefix}-*", "critical": 6},
                {"name": "list", "kind": "count", "index": f"{first},{second}", "critical": 7},
                {
                    "name": "grouped",
                    "kind": "count",
                    "index": f"{prefix}-*",
                    "group_by": "host",
                    "critical": 3,
                },
            ]
        }
    )
    results = await run_yaml(es_url, text, now)
    assert (results["pattern"].state, results["pattern"].value) == (State.CRITICAL, 7)
    assert f"on {prefix}-*" in results["pattern"].summary
    assert (results["list"].state, results["list"].value) == (State.OK, 7)
    assert {g.label: g.state for g in results["grouped"].groups} == {
        "a": State.CRITICAL,
        "b": State.OK,
    }
