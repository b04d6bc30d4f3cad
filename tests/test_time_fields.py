"""A check's ``timestamp_field`` that is not a date where it searches: UNKNOWN, never a
silent "0 matching documents" (against a real Elasticsearch).

A ``range`` on an unmapped field matches nothing and on a ``keyword`` compares text, so a
misspelt field, a pattern with an index whose documents carry their time under another
name, or a field mapped as text or number read OK for ever before.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from esbridge.result import State
from esbridge_dev import httpcalls
from kinds_support import checks_yaml, run_yaml

pytestmark = pytest.mark.es

DATED = {"properties": {"@timestamp": {"type": "date"}, "status": {"type": "integer"}}}


def _at(now: datetime, seconds: float) -> str:
    return (now - timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


async def test_a_time_field_that_is_not_a_date_is_unknown_naming_what_to_fix(
    es_url: str, make_index: Callable[..., str], seed: Callable[..., Any]
) -> None:
    now = datetime.now(UTC)
    big = make_index("tf-big", mappings=DATED)
    seed(big, [{"status": 500, "ago": "30s"}] * 20, now=now)
    # one index of the pattern has its time under another name: its documents were left out
    prefix = f"tf-mix-{big[-8:]}"
    good = make_index(f"{prefix}-a", mappings=DATED)
    other = make_index(
        f"{prefix}-b",
        mappings={"properties": {"ts": {"type": "date"}, "status": {"type": "integer"}}},
    )
    seed(good, [{"status": 500, "ago": "30s"}] * 3, now=now)
    seed(other, [{"status": 500, "ts": _at(now, 30)}] * 30, now=now)
    keyword = make_index("tf-kw", mappings={"properties": {"ts": {"type": "keyword"}}})
    seed(keyword, [{"ts": _at(now, 30)}] * 20, now=now)
    number = make_index("tf-long", mappings={"properties": {"ts": {"type": "long"}}})
    seed(number, [{"ts": int((now.timestamp() - 30) * 1000)}] * 20, now=now)
    nanos = make_index("tf-nanos", mappings={"properties": {"ts": {"type": "date_nanos"}}})
    seed(nanos, [{"ts": _at(now, 30)}] * 20, now=now)
    # a new daily index, still empty: no mapping for the field yet, and nothing left out
    empty_prefix = f"tf-day-{big[-8:]}"
    today = make_index(f"{empty_prefix}-1", mappings=DATED)
    seed(today, [{"status": 500, "ago": "30s"}] * 4, now=now)
    make_index(f"{empty_prefix}-2")

    base = {"kind": "count", "critical": 10}
    text = checks_yaml(
        big,
        [
            {"name": "misspelt", "timestamp_field": "@timestmap", **base},
            {"name": "misspelt-change", "kind": "change", "timestamp_field": "@timestmap",
             "critical": "~:100"},
            {"name": "fine", **base},
            {"name": "mixed", "index": f"{prefix}-*", **base},
            {"name": "keyword", "index": keyword, "timestamp_field": "ts", **base},
            {"name": "number", "index": number, "timestamp_field": "ts", **base},
            {"name": "nanos", "index": nanos, "timestamp_field": "ts", **base},
            {"name": "new-day", "index": f"{empty_prefix}-*", **base},
        ],
    )  # fmt: skip
    results = await run_yaml(es_url, text, now)
    misspelt = results["misspelt"]
    assert (misspelt.state, misspelt.error_kind) == (State.UNKNOWN, "rejected")
    assert misspelt.summary.startswith(
        f"timestamp_field '@timestmap' is not mapped in {big} (20 documents there are never "
        "in the window)"
    ), misspelt.summary
    assert results["misspelt-change"].state is State.UNKNOWN
    assert (results["fine"].state, results["fine"].value) == (State.CRITICAL, 20)
    # a date in some indices of the pattern only (a broad pattern, a renamed field): judged
    # on those, never UNKNOWN for good; the long output names what it cannot count
    mixed = results["mixed"]
    assert (mixed.state, mixed.value) == (State.OK, 3), mixed.summary
    assert mixed.long_output[0] == (
        f"timestamp_field '@timestamp' is not mapped in {other} (30 documents there are never "
        "in the window): only the indices where it is a date are counted"
    )
    assert results["keyword"].summary.startswith(
        f"timestamp_field 'ts' is keyword in {keyword}, not a date"
    )
    assert results["number"].summary.startswith(f"timestamp_field 'ts' is long in {number}")
    assert (results["nanos"].state, results["nanos"].value) == (State.CRITICAL, 20)
    new_day = results["new-day"]
    assert (new_day.state, new_day.value) == (State.OK, 4), new_day.summary


def test_the_preview_says_what_a_run_says(es_url: str, make_index: Callable[..., str]) -> None:
    """A run read UNKNOWN while the preview of the same check drew a CRITICAL history."""

    from esbridge.esclient import ConnectionConfig
    from esbridge.loader import load_text
    from esbridge.preview import preview_on_own_connection

    now = datetime.now(UTC)
    index = make_index("tf-pv", mappings={"properties": {"ts": {"type": "long"}}})
    docs = "".join(
        f'{{"index":{{}}}}\n{{"ts":{int((now.timestamp() - 60 * k) * 1000)}}}\n' for k in range(30)
    )
    r = httpcalls.post(
        f"{es_url}/{index}/_bulk?refresh=true",
        content=docs,
        headers={"content-type": "application/x-ndjson"},
        timeout=60,
    )
    assert r.status_code == 200 and not r.json()["errors"]
    check = load_text(
        f"checks:\n  - {{name: c, kind: count, index: {index}, timestamp_field: ts, critical: 1}}\n"
    ).checks["c"]
    import asyncio

    preview = asyncio.run(
        preview_on_own_connection(
            check,
            ConnectionConfig(urls=(es_url,)),
            timedelta(minutes=20),
            timedelta(minutes=1),
            None,
            100,
            timedelta(seconds=30),
        )
    )
    assert preview.error is not None and preview.error.startswith(
        f"timestamp_field 'ts' is long in {index}"
    )
    assert {p.result.state for p in preview.points} == {State.UNKNOWN}


async def test_a_failing_field_caps_is_asked_again_after_a_minute_not_every_run() -> None:
    """The verdicts cache (pure: a stand-in for the connection). A failure (a privilege
    missing, a black-holed cluster) concludes nothing and is asked again a minute later,
    never at every run: a second request held for the whole timeout at each run made the
    runs of a check on a black-holed connection late enough to read stale."""
    from esbridge.errors import ESError
    from esbridge.timefields import TTL, TimeFields

    class Failing:
        def __init__(self, kind: str) -> None:
            self.kind, self.asked = kind, 0

        async def raw(self, *args: Any) -> Any:
            self.asked += 1
            raise ESError(self.kind, "no")

    clock = [1000.0]
    key = (("logs-*",), "@timestamp")
    for kind in ("forbidden", "timeout", "unreachable"):
        connection = Failing(kind)
        fields = TimeFields(connection, clock=lambda: clock[0])  # type: ignore[arg-type]
        for _ in range(3):
            assert await fields.problems([key], 1.0) == {}
        assert connection.asked == 1, kind
        clock[0] += TTL + 1
        await fields.problems([key], 1.0)
        assert connection.asked == 2, kind
