"""freshness checks against a real Elasticsearch: the age of the newest document.

Documents are seeded at exact offsets from a fixed ``now`` and the check runs at that same
``now``, so ages are exact to the millisecond and "at the threshold" is really at it.
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

MAPPINGS = {"properties": {"@timestamp": {"type": "date"}, "host": {"type": "keyword"}}}


@pytest.fixture
def now() -> datetime:
    # Whole milliseconds: Elasticsearch stores dates in ms, so ages come out exact.
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


async def test_freshness_below_at_above(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """Newest document 90 s old: at 90 OK, 89 CRITICAL, warning vs critical, ranges."""
    index = make_index("fr", mappings=MAPPINGS)
    seed(index, [{"host": "a", "ago": "90s"}, {"host": "a", "ago": "10m"}], now=now)
    cases = {
        "at": ({"critical": 90}, State.OK),
        "below": ({"critical": 89}, State.CRITICAL),
        "warn": ({"warning": 60, "critical": 120}, State.WARNING),
        "both": ({"warning": 30, "critical": 60}, State.CRITICAL),
        "inside": ({"critical": "@90:100"}, State.CRITICAL),
        "too-new": ({"warning": "100:"}, State.WARNING),
    }
    text = checks_yaml(
        index, [{"name": n, "kind": "freshness", **c} for n, (c, _) in cases.items()]
    )
    results = await run_yaml(es_url, text, now)
    assert {n: r.state for n, r in results.items()} == {n: s for n, (_, s) in cases.items()}
    assert all(r.value == 90 for r in results.values())
    newest = datetime.fromtimestamp(now.timestamp() - 90, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    below = results["below"]
    assert below.summary == (f"newest document is 90 s old ({newest}) on {index} (critical > 89)")
    assert render(below) == f"CRITICAL - {below.summary} | 'age'=90s;;89;0"


async def test_freshness_long_age_reads_in_hours(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """An age of 2 h 1 min is also written in hours, not only as 7260 s."""
    index = make_index("fr", mappings=MAPPINGS)
    seed(index, [{"host": "a", "ago": "7260s"}], now=now)
    text = checks_yaml(index, [{"name": "old", "kind": "freshness", "critical": 3600}])
    result = (await run_yaml(es_url, text, now))["old"]
    assert result.state is State.CRITICAL
    assert result.summary.startswith("newest document is 7260 s (2h 1m) old")


async def test_freshness_ignores_a_delay_it_would_measure_against(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """A ``delay`` (for late documents, often a file's default) would hide the newest ones
    while the age is taken from now: the newest document is 10 s old, not missing."""
    index = make_index("fr", mappings=MAPPINGS)
    seed(index, [{"host": "a", "ago": "10s"}, {"host": "b", "ago": "3m"}], now=now)
    text = json.dumps(
        {
            "defaults": {"index": index, "delay": "2m"},
            "checks": [
                {"name": "fresh", "kind": "freshness", "critical": 60},
                {"name": "per-host", "kind": "freshness", "critical": 60, "group_by": "host"},
                {"name": "late", "kind": "count", "critical": 100},
            ],
        }
    )
    results = await run_yaml(es_url, text, now)
    assert results["fresh"].state is State.OK and results["fresh"].value == 10
    assert {g.label: g.value for g in results["per-host"].groups} == {"a": 10, "b": 180}
    assert results["late"].value == 1  # other kinds keep the delay: the 10 s one is skipped


async def test_freshness_nothing_in_lookback_is_no_data(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """Silence longer than the lookback: no newest document, CRITICAL unless no_data says."""
    index = make_index("fr", mappings=MAPPINGS)
    seed(index, [{"host": "a", "ago": "2h"}], now=now)
    text = checks_yaml(
        index,
        [
            {"name": "default", "kind": "freshness", "window": "1h", "critical": 60},
            {
                "name": "unknown",
                "kind": "freshness",
                "window": "1h",
                "critical": 60,
                "no_data": "unknown",
            },
            {"name": "day", "kind": "freshness", "critical": 60},  # default lookback 24h
        ],
    )
    results = await run_yaml(es_url, text, now)
    default = results["default"]
    assert default.state is State.CRITICAL
    assert default.error_kind == "no_data"
    assert default.summary == f"no data: no matching document in the last 1h on {index}"
    assert render(default) == f"CRITICAL - {default.summary} | 'age'=U;;60"
    assert results["unknown"].state is State.UNKNOWN
    assert (results["day"].state, results["day"].value) == (State.CRITICAL, 7200)


async def test_freshness_group_by_oldest_first(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any], now: datetime
) -> None:
    """Per host ages 30/90/300 s; max_groups keeps the stalest; a vanished host is gone."""
    index = make_index("fr", mappings=MAPPINGS)
    ages = {"web-01": "30s", "web-02": "90s", "web-03": "300s", "gone": "3h"}
    seed(index, [{"host": h, "ago": a} for h, a in ages.items()], now=now)
    seed(index, [{"host": "web-01", "ago": "40m"}], now=now)  # older doc: max wins
    base = {"kind": "freshness", "window": "1h", "group_by": "host", "warning": 60, "critical": 180}
    text = checks_yaml(index, [{"name": "all", **base}, {"name": "cut", "max_groups": 1, **base}])
    results = await run_yaml(es_url, text, now)
    everything = results["all"]
    assert [(g.label, g.state, g.value) for g in everything.groups] == [
        ("web-03", State.CRITICAL, 300),
        ("web-02", State.WARNING, 90),
        ("web-01", State.OK, 30),
    ]
    assert everything.summary.startswith(
        "2 of 3 groups not OK: web-03 CRITICAL (300 s), web-02 WARNING (90 s) -"
        f" age of the newest document per host in last 1h on {index}"
    )
    cut = results["cut"]
    assert [g.label for g in cut.groups] == ["web-03"]
    assert cut.groups_omitted == 2
    out = render(cut)
    assert "CRITICAL: web-03: newest document 300 s (5m) old (critical > 180)" in out
    assert out.endswith(
        "... and 2 more groups not evaluated (max_groups 1) | 'web-03'=300s;60;180;0"
    )
