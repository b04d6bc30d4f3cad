"""One bad check never stops the others: planning, evaluating or rendering a check can only
make *that* check UNKNOWN with the reason.

The property test drives the real runner with random definitions and random answers. The
answers come from a stand-in connection (the point is answers Elasticsearch would rarely
give); every other test here talks to the real Elasticsearch.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from esbridge.config import ConnectionConfig, Settings
from esbridge.errors import ESError
from esbridge.esclient import Connections
from esbridge.loader import CheckSet, load_text
from esbridge.models import check_adapter
from esbridge.nagios import rendered
from esbridge.planner import ClusterFetch, SearchRequest
from esbridge.result import Perfdatum, Result, State
from esbridge.runner import Runner

NOW = 1_790_000_000.0
OVERFLOW = timedelta(days=900_000_000)  # valid timedelta, but now - window overflows a date


# --------------------------------------------------------------------------- property test


class _Answers:
    """A stand-in connection: each check's answer is fixed up front, whatever the batch."""

    def __init__(self, answers: dict[str, Any], cluster: dict[str, Any], explode: set[str]):
        self.config = ConnectionConfig(max_searches_per_request=3, max_retries=0)
        self.answers, self.cluster_answers, self.explode = answers, cluster, explode
        self.up = True

    async def msearch(self, requests: list[SearchRequest], timeout: float) -> list[Any]:
        if any(r.check in self.explode for r in requests):
            raise RuntimeError("cannot serialise this body")
        return [self._copy(self.answers[r.check]) for r in requests]

    async def cluster(self, fetch: ClusterFetch, timeout: float) -> Any:
        what = "master" if fetch.masters else fetch.path.split("/")[1].removeprefix("_")
        what = {"nodes": "nodes_stats", "cluster": "health"}.get(what, what)
        if what == "nodes_stats" and "nodes_stats" in self.explode:
            raise RuntimeError("cluster call blew up")
        return self._copy(self.cluster_answers.get(what, {}))

    @staticmethod
    def _copy(answer: Any) -> Any:
        return answer if isinstance(answer, ESError) else copy.deepcopy(answer)


class _OneConnection:
    def __init__(self, connection: _Answers) -> None:
        self.connection = connection

    def get(self, name: str) -> _Answers:
        return self.connection


numbers = st.one_of(
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.just(None),
    st.text(max_size=5),
)
json_trees = st.recursive(
    st.one_of(numbers, st.booleans()),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(
            st.sampled_from(["hits", "total", "value", "aggregations", "groups", "buckets",
                             "key", "doc_count", "_shards", "failed", "responses", "numerator",
                             "current", "previous", "values", "status", "nodes"]),
            inner,
            max_size=5,
        ),
    ),
    max_leaves=20,
)  # fmt: skip
plausible = st.builds(
    lambda total, value, failed: {
        "hits": {"total": {"value": total, "relation": "eq"}},
        "_shards": {"total": 2, "successful": 2 - failed, "failed": failed},
        "aggregations": {
            "value": {"value": value},
            "numerator": {"doc_count": total},
            "current": {"doc_count": total, "value": {"value": value}},
            "previous": {"doc_count": 0, "value": {"value": value}},
            "groups": {"buckets": [{"key": "web\n01", "doc_count": total}]},
        },
    },
    st.integers(0, 10**6),
    numbers,
    st.integers(0, 1),
)
errors = st.builds(
    ESError,
    st.sampled_from(["timeout", "rejected", "unavailable", "internal", "throttled"]),
    st.text(min_size=1, max_size=30),
)
answers = st.one_of(plausible, json_trees, errors)

thresholds = st.sampled_from(["10", "10:", "~:10", "@5:20", "0:100", "~:", "@~:", "1000000"])
definitions = st.fixed_dictionaries(
    {
        "kind": st.sampled_from(
            ["count", "metric", "ratio", "change", "freshness", "cluster_health",
             "unassigned_shards", "jvm_heap", "disk"]
        ),
        "critical": thresholds,
        "grouped": st.booleans(),
        "poison": st.sampled_from(["none", "none", "none", "window", "delay", "explode"]),
    }
)  # fmt: skip


def _build(i: int, spec: dict[str, Any]) -> Any:
    kind = spec["kind"]
    data: dict[str, Any] = {"name": f"c{i}", "kind": kind, "critical": spec["critical"]}
    if kind in {"count", "metric", "ratio", "change", "freshness"}:
        data["index"] = "logs-*"
    if kind in {"metric"}:
        data.update(field="ms", agg="avg")
    if kind == "ratio":
        data["numerator"] = "status:>=500"
    if spec["grouped"] and kind in {"count", "metric", "ratio", "freshness"}:
        data["group_by"] = ["host"]
    check = check_adapter.validate_python(data)
    if spec["poison"] == "window":
        check = check.model_copy(update={"window": OVERFLOW})
    elif spec["poison"] == "delay":
        check = check.model_copy(update={"delay": OVERFLOW})
    return check


def _comparable(result: Result) -> Result:
    return result.with_(duration=0.0)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    specs=st.lists(definitions, min_size=1, max_size=8),
    data=st.data(),
)
def test_random_checks_and_answers_stay_isolated(specs: list[dict[str, Any]], data: Any) -> None:
    checks = [_build(i, spec) for i, spec in enumerate(specs)]
    per_check = {c.name: data.draw(answers, label=c.name) for c in checks}
    cluster = {what: data.draw(answers, label=what) for what in ("health", "nodes_stats")}
    explode = {c.name for c, s in zip(checks, specs, strict=True) if s["poison"] == "explode"}
    connection = _Answers(per_check, cluster, explode)
    runner = Runner(_OneConnection(connection))  # type: ignore[arg-type]

    together = asyncio.run(runner.run(checks, NOW))
    assert [r.check for r in together] == [c.name for c in checks]
    for check, spec, result in zip(checks, specs, together, strict=True):
        alone = asyncio.run(runner.run([check], NOW))[0]
        # Never affected by its batch-mates: the same result as when run on its own.
        assert _comparable(result) == _comparable(alone), check.name
        if spec["poison"] in {"window", "delay"} and not check.is_cluster_kind:
            assert result.state is State.UNKNOWN
            assert result.error and "error while planning the check" in result.error
        if spec["poison"] == "explode" and not check.is_cluster_kind:
            assert result.state is State.UNKNOWN and "could not send the search" in result.error
        if result.state is State.UNKNOWN:
            assert (result.error or result.summary).strip(), result
        shown, text = rendered(result)
        assert shown is result, text  # every result the runner makes can be rendered
        assert text.startswith(f"{result.state.name} - ")


# --------------------------------------------------------------------------- rendering


def test_a_result_that_cannot_be_rendered_is_unknown_alone() -> None:
    broken = Result(
        check="broken",
        state=State.OK,
        summary="fine",
        perfdata=(Perfdatum("x", "not a number"),),  # type: ignore[arg-type]
    )
    fine = Result(check="fine", state=State.CRITICAL, summary="312 errors")
    shown, text = rendered(broken)
    assert shown.state is State.UNKNOWN and text.startswith("UNKNOWN - could not render")
    assert rendered(fine) == (fine, "CRITICAL - 312 errors")


def test_newlines_in_group_values_stay_on_one_line() -> None:
    from esbridge.result import GroupResult

    group = GroupResult(
        key=(("host", "web\nOK - forged"),),
        state=State.CRITICAL,
        value=3,
        summary="web\nOK - forged: 3 errors",
        perfdata=(),
    )
    result = Result(check="g", state=State.CRITICAL, summary="1 group", groups=(group,))
    _, text = rendered(result)
    lines = text.split("\n")
    assert lines == ["CRITICAL - 1 group", "CRITICAL: web OK - forged: 3 errors"]


# --------------------------------------------------------------------------- real Elasticsearch

COUNT = """
checks:
  - name: good-a
    kind: count
    index: {index}
    window: 1h
    critical: 1000
  - name: good-b
    kind: count
    index: {index}
    window: 1h
    group_by: host
    critical: 1000
  - name: bad
    kind: count
    index: {index}
    window: 1h
    critical: 1000
"""


def _poisoned(index: str) -> CheckSet:
    loaded = load_text(COUNT.format(index=index))
    checks = dict(loaded.checks)
    checks["bad"] = checks["bad"].model_copy(update={"window": OVERFLOW})
    return CheckSet(checks=checks, files=loaded.files)


@pytest.mark.es
async def test_an_overflowing_window_only_costs_its_own_check(
    es_url: str, make_index: Any, seed: Any
) -> None:
    index = make_index("iso", mappings={"properties": {"host": {"type": "keyword"}}})
    seed(index, [{"ago": "5m", "host": "web-01"}] * 3 + [{"ago": "5m"}])
    checkset = _poisoned(index)
    connections = Connections({"default": ConnectionConfig(urls=(es_url,))})
    try:
        runner = Runner(connections)
        results = {r.check: r for r in await runner.run(list(checkset), time.time())}
    finally:
        await connections.close()
    assert results["good-a"].state is State.OK and results["good-a"].value == 4
    # web-01, and "(none)": the document without a host is a group of its own
    groups = {g.label: g.value for g in results["good-b"].groups}
    assert results["good-b"].state is State.OK and groups == {"web-01": 3, "(none)": 1}
    bad = results["bad"]
    assert bad.state is State.UNKNOWN and bad.error_kind == "internal"
    assert "error while planning the check: OverflowError" in (bad.error or "")


@pytest.mark.es
async def test_run_now_api_answers_unknown_not_500(es_url: str, make_index: Any) -> None:
    """``POST /api/v1/checks/bad/run``: 200 with UNKNOWN and the reason."""
    from esbridge.api import create_app
    from esbridge.app import Service

    index = make_index("iso-api")
    settings = Settings(
        elasticsearch={"default": ConnectionConfig(urls=(es_url,))},
        state={"enabled": False},
        api={"allow_unauthenticated_writes": True},
    )
    service = Service(settings, _poisoned(index))
    service.store.sync(service.intervals(service.checkset.checks))
    app = create_app(service)
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://esbridge"
        ) as client:
            answer = await client.post("/api/v1/checks/bad/run")
            assert answer.status_code == 200, answer.text
            assert answer.json()["state"] == "UNKNOWN"
            text = await client.get("/api/v1/checks/bad/nagios")
            assert text.headers["x-nagios-exit-code"] == "3"
            assert "error while planning the check: OverflowError" in text.text
            good = await client.post("/api/v1/checks/good-a/run")
            assert good.json()["state"] == "OK"
    finally:
        await service.connections.close()


@pytest.mark.es
def test_esbridge_run_never_prints_a_traceback(es_url: str, tmp_path: Path) -> None:
    """A hostile file: ``esbridge run`` prints one UNKNOWN line and exits 3 (never 1)."""
    corpus = Path(__file__).resolve().parent / "hostile" / "checks"
    for name, check in (("huge_window.yaml", "huge-window"), ("deep_query_dsl.yaml", "deep-dsl")):
        command = [sys.executable, "-m", "esbridge", "run", "--es-url", es_url]
        proc = subprocess.run(
            [*command, "--checks", str(corpus / name), check],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3, proc
        assert proc.stdout.startswith("UNKNOWN - ") and proc.stdout.count("\n") == 1
        assert "Traceback" not in proc.stdout + proc.stderr


def test_metrics_of_one_broken_result_do_not_break_the_scrape() -> None:
    from esbridge.metrics import CheckSeries
    from esbridge.store import ResultStore
    from esbridge.view import ServiceView

    store = ResultStore(history=5, staleness_factor=2.0)
    store.sync({"broken": 60.0, "fine": 60.0})
    now = time.time()
    store.record(Result("broken", State.OK, "ok", value="x", evaluated_at=now))  # type: ignore[arg-type]
    store.record(Result("fine", State.CRITICAL, "5 errors", value=5.0, evaluated_at=now))
    text = CheckSeries(ServiceView(store)).render()
    assert 'esbridge_check_status_code{check="broken"} 3.0' in text
    assert 'esbridge_check_status_code{check="fine"} 2.0' in text
    assert 'esbridge_check_value{check="fine"} 5.0' in text
