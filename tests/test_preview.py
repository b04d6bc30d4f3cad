"""``esbridge preview`` against a real Elasticsearch holding the sample data with its incidents.

The sample generator's logs and host metrics (with the injected incident schedule) are loaded
into indices of this module only. Every point of a preview is compared with a live evaluation
by the runner at the same moment (the same code path as the service and ``esbridge run``),
for every data kind and both methods; the incident is found where the schedule put it; the
last point equals a live ``esbridge run`` and a live scheduled run of ``esbridge serve``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from esbridge.config import ConnectionConfig
from esbridge.esclient import Connection, Connections
from esbridge.loader import load_checks
from esbridge.nagios import render
from esbridge.preview import (
    Preview,
    PreviewError,
    per_step_chunk,
    preview_check,
    preview_to_dict,
)
from esbridge.previewtext import render_text
from esbridge.runner import Runner
from esbridge_dev import httpcalls
from esbridge_dev import sampledata as sd
from esbridge_dev.service import EsbridgeProcess

ROOT = Path(__file__).resolve().parents[1]
MINUTES = 40
INCIDENT = sd.IncidentSchedule()

EXTRA_CHECKS = """\
defaults:
  index: {logs}
checks:
  # the error burst of web-03 (60 s - 180 s of every 6-minute cycle), 1-minute windows
  - name: web03-5xx
    kind: count
    query: "host:web-03 AND status:>=500"
    window: 1m
    warning: 5
    critical: 15
  - name: bytes-sum
    kind: metric
    field: bytes
    agg: sum
    window: 2m
    warning: 10000000
  - name: latency-min
    kind: metric
    field: latency_ms
    agg: min
    window: 3m
    critical: "5:"
  - name: latency-count
    kind: metric
    field: latency_ms
    agg: value_count
    window: 5m
    warning: "2500:"
  - name: hosts-count
    kind: metric
    field: host
    agg: value_count
    window: 5m
    warning: "2000:"
  - name: newest-log-max
    kind: metric
    field: "@timestamp"
    agg: max
    window: 3m
    critical: "1:"
  - name: latency-avg-by-service
    kind: metric
    field: latency_ms
    agg: avg
    group_by: service
    window: 5m
    warning: 60
    critical: 90
  - name: hosts-seen
    kind: metric
    field: host
    agg: cardinality
    window: 5m
    critical: "8:"
  - name: get-5xx-ratio
    kind: ratio
    numerator: "status:>=500"
    denominator: "method:GET"
    window: 4m
    warning: 2
    critical: 5
  - name: 5xx-by-host-delayed
    kind: count
    query: "status:>=500"
    group_by: host
    window: 5m
    delay: 30s
    warning: 10
    critical: 30
  - name: latency-change
    kind: change
    field: latency_ms
    agg: avg
    window: 2m
    warning: "~:30"
    critical: "~:60"
  - name: latency-p95-by-host
    kind: metric
    field: latency_ms
    agg: percentile
    percentile: 95
    group_by: host
    window: 5m
    warning: 200
    critical: 500
  - name: 5xx-by-host-and-service
    kind: count
    query: "status:>=500"
    group_by: [host, service]
    window: 5m
    warning: 5
    critical: 15
  - name: metrics-fresh
    kind: freshness
    index: {metrics}
    window: 1h
    warning: 30
    critical: 60
  - name: cluster
    kind: cluster_health
  - name: missing-index
    kind: count
    index: pv-no-such-index-*
    critical: 1
"""


def _bulk(es_url: str, index: str, docs: list[str]) -> None:
    for i in range(0, len(docs), 5000):
        chunk = docs[i : i + 5000]
        body = "".join(f'{{"index":{{"_index":"{index}"}}}}\n{d}\n' for d in chunk)
        r = httpcalls.post(
            f"{es_url}/_bulk?filter_path=errors",
            content=body.encode(),
            headers={"Content-Type": "application/x-ndjson"},
            timeout=120,
        )
        assert r.status_code == 200 and not r.json()["errors"], r.text[:500]


@pytest.fixture(scope="module")
def sample(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """40 minutes of sample logs and metrics (with incidents) ending 2 s ago, own indices."""
    suffix = uuid.uuid4().hex[:8]
    logs, metrics = f"pv-logs-web-{suffix}", f"pv-metrics-host-{suffix}"
    for index, template in ((logs, sd.LOGS_TEMPLATE), (metrics, sd.METRICS_TEMPLATE)):
        r = httpcalls.put(f"{es_url}/{index}", json=template["template"], timeout=60)
        assert r.status_code == 200, r.text
    end = time.time() - 2
    start = end - MINUTES * 60
    gen = sd.Generator(hosts=8, services=5, incident=INCIDENT, seed=7)
    _bulk(es_url, logs, [doc for _, doc in gen.log_docs(start, end, 10)])
    _bulk(es_url, metrics, [doc for _, doc in gen.metric_docs(start, end, 10)])
    httpcalls.post(f"{es_url}/{logs},{metrics}/_refresh", timeout=60)
    folder = tmp_path_factory.mktemp("preview-checks")
    for name in ("web.yaml", "metrics.yaml"):
        text = (ROOT / "checks" / name).read_text()
        text = text.replace("logs-web-*", logs).replace("metrics-host-*", metrics)
        (folder / name).write_text(text)
    (folder / "extra.yaml").write_text(EXTRA_CHECKS.format(logs=logs, metrics=metrics))
    checks = load_checks([folder])
    try:
        yield {"logs": logs, "metrics": metrics, "folder": folder, "checks": checks, "end": end}
    finally:
        for index in (logs, metrics):
            httpcalls.delete(f"{es_url}/{index}", timeout=60)


def run_preview(
    es_url: str,
    check: Any,
    since: timedelta,
    step: timedelta,
    until: float,
    max_searches: int = 200,
) -> tuple[Preview, Connection]:
    config = ConnectionConfig(urls=(es_url,), max_searches_per_request=max_searches)

    async def go() -> tuple[Preview, Connection]:
        connection = Connection("default", config)
        try:
            return await preview_check(check, connection, since, step, until), connection
        finally:
            await connection.close()

    return asyncio.run(go())


def live(es_url: str, check: Any, moments: list[float]) -> list[str]:
    """What the runner (the service's code path) says at each moment, as Nagios text."""

    async def go() -> list[str]:
        connections = Connections({"default": ConnectionConfig(urls=(es_url,))})
        try:
            runner = Runner(connections)
            return [render((await runner.run([check], moment))[0]) for moment in moments]
        finally:
            await connections.close()

    return asyncio.run(go())


HISTOGRAM = {
    "web-5xx",
    "web-5xx-ratio-by-host",
    "web-error-spike",
    "host-cpu",
    "host-disk",
    "host-metrics-fresh",
    "web03-5xx",
    "bytes-sum",
    "latency-min",
    "latency-count",
    "hosts-count",
    "newest-log-max",
    "latency-avg-by-service",
    "get-5xx-ratio",
    "5xx-by-host-delayed",
    "latency-change",
    "metrics-fresh",
}
PER_STEP = {"web-latency-p99", "hosts-seen", "latency-p95-by-host", "5xx-by-host-and-service"}


@pytest.mark.parametrize("name", sorted(HISTOGRAM | PER_STEP))
@pytest.mark.parametrize("step", [timedelta(seconds=50), timedelta(minutes=7)])
def test_every_point_equals_a_live_run_at_that_moment(
    es_url: str, sample: dict[str, Any], name: str, step: timedelta
) -> None:
    """Moving windows (step < window) and gaps (step > window), every kind, both methods."""
    check = sample["checks"].checks[name]
    until = sample["end"] - 13.377  # not on any bucket boundary of the data
    since = timedelta(minutes=20) if step < timedelta(minutes=5) else timedelta(minutes=28)
    preview, connection = run_preview(es_url, check, since, step, until)
    assert len(preview.points) == int(since / step)
    assert preview.points[-1].at == until
    expected_method = "histogram" if name in HISTOGRAM else "per-step"
    assert preview.method == expected_method
    if expected_method == "histogram":
        assert (preview.requests, connection.stats.msearch_requests) == (1, 1)
    got = [render(p.result) for p in preview.points]
    assert got == live(es_url, check, [p.at for p in preview.points])
    assert any(p.value is not None for p in preview.points), "nothing measured: a vacuous test"


def test_the_incident_shows_at_the_right_time_with_the_right_state(
    es_url: str, sample: dict[str, Any]
) -> None:
    """web-03's error burst is CRITICAL exactly in the 1-minute windows inside the burst."""
    check = sample["checks"].checks["web03-5xx"]
    until = sample["end"] - 1
    preview, _ = run_preview(es_url, check, timedelta(minutes=30), timedelta(seconds=20), until)
    a, b = INCIDENT.error_window
    inside = outside = 0
    for point in preview.points:
        start = point.at - 60
        phases = [INCIDENT.phase(start + k) for k in range(0, 61, 1)]
        if all(a <= p < b for p in phases[:-1]):
            assert point.state.name == "CRITICAL", (point.at, point.value)
            inside += 1
        elif not any(a <= p < b for p in phases):
            assert point.state.name == "OK", (point.at, point.value)
            outside += 1
    assert inside >= 8 and outside >= 30, (inside, outside)
    pages = preview.pages()
    # one burst per 6-minute cycle: 30 minutes hold 5 (a cut one at either end may add one)
    assert 4 <= pages <= 6, pages


def test_grouped_freshness_finds_the_silent_host(es_url: str, sample: dict[str, Any]) -> None:
    """web-05 stops sending metrics 180 s - 360 s of every cycle: its age, point by point."""
    check = sample["checks"].checks["host-metrics-fresh"]  # warning 60, critical 180
    until = sample["end"] - 1
    preview, _ = run_preview(es_url, check, timedelta(minutes=30), timedelta(seconds=10), until)
    checked = 0
    for point in preview.points:
        # newest web-05 sample before the point: a multiple of 10 s outside the silence
        t = math.ceil(point.at / 10) * 10 - 10
        while INCIDENT.metrics_silent(t, "web-05"):
            t -= 10
        age = point.at - t
        group = point.result.group("host=web-05")
        assert group is not None
        assert group.value == pytest.approx(age, abs=0.002), point.at
        want = "CRITICAL" if age > 180 else "WARNING" if age > 60 else "OK"
        assert group.state.name == want
        assert point.state.name == want  # the other hosts send every 10 s
        checked += 1
    assert checked == 180
    names = {p.state.name for p in preview.points}
    assert names == {"OK", "WARNING", "CRITICAL"}, names
    worst = preview.worst_groups()
    assert worst[0]["group"] == "host=web-05" and worst[0]["worst"] == "CRITICAL"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "esbridge", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("name", ["web-5xx-ratio-by-host", "host-metrics-fresh", "web03-5xx"])
def test_last_point_equals_a_live_esbridge_run(
    es_url: str, sample: dict[str, Any], name: str
) -> None:
    folder = str(sample["folder"])
    until = repr(sample["end"] - 3.21)
    common = ["--checks", folder, "--es-url", es_url]
    preview = _cli("preview", *common, name, "--since", "30m", "--until", until, "--format", "json")
    assert preview.returncode == 0, preview.stderr
    body = json.loads(preview.stdout)
    run = _cli("run", *common, name, "--at", until)
    assert run.stdout.rstrip("\n") == body["last"]["nagios"]
    assert (
        run.returncode
        == {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}[body["last"]["state"]]
    )
    assert body["points"][-1]["at"] == float(until)
    assert body["markers"] == []


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_text_output_shows_chart_transitions_time_and_pages(
    es_url: str, sample: dict[str, Any]
) -> None:
    folder = str(sample["folder"])
    until = repr(sample["end"] - 1)
    proc = _cli(
        "preview",
        "--checks",
        folder,
        "--es-url",
        es_url,
        "web03-5xx",
        "--since",
        "30m",
        "--step",
        "20s",
        "--until",
        until,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "90 points every 20s" in text
    assert "1 request to Elasticsearch (histogram)" in text
    assert "┤" in text and " critical 15" in text and " warning 5" in text
    strip = next(line for line in text.splitlines() if line.endswith("  state"))
    assert set(strip.split()[0]) <= set(".WC?") and "C" in strip and "." in strip
    assert "OK -> " in text and "-> CRITICAL" in text
    assert "time in state: OK " in text
    assert "would have paged " in text


def test_cluster_kinds_have_no_history(es_url: str, sample: dict[str, Any]) -> None:
    proc = _cli(
        "preview", "--checks", str(sample["folder"]), "--es-url", es_url, "cluster", "--since", "1h"
    )
    assert proc.returncode == 2
    assert "cluster_health check" in proc.stderr and "no history" in proc.stderr
    with pytest.raises(PreviewError) as info:
        run_preview(
            es_url, sample["checks"].checks["cluster"], timedelta(hours=1), timedelta(minutes=5), 0
        )
    assert info.value.kind == "no_history"


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_bad_input_is_named(es_url: str, sample: dict[str, Any]) -> None:
    common = ["preview", "--checks", str(sample["folder"]), "--es-url", es_url]
    proc = _cli(*common, "web-5xx", "--since", "24h", "--step", "1s", "--max-points", "500")
    assert proc.returncode == 2
    assert "86400 points, more than the limit of 500" in proc.stderr
    assert "at least 2m53s" in proc.stderr or "at least 173s" in proc.stderr, proc.stderr
    proc = _cli(*common, "web-5xxx", "--since", "1h")
    assert proc.returncode == 2 and "no check named 'web-5xxx'" in proc.stderr
    assert "web-5xx" in proc.stderr
    proc = _cli(*common, "web-5xx", "--since", "soon")
    assert proc.returncode == 2 and "soon" in proc.stderr


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_elasticsearch_down_is_exit_3(sample: dict[str, Any]) -> None:
    from esbridge_dev.service import free_port

    proc = _cli(
        "preview",
        "--checks",
        str(sample["folder"]),
        "--es-url",
        f"http://127.0.0.1:{free_port()}",
        "web-5xx",
        "--since",
        "1h",
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "unreachable" in proc.stderr


def test_per_step_requests_are_counted(es_url: str, sample: dict[str, Any]) -> None:
    """25 points, 10 searches per _msearch: 3 requests, as said (and as really sent)."""
    check = sample["checks"].checks["web-latency-p99"]
    preview, connection = run_preview(
        es_url,
        check,
        timedelta(minutes=25),
        timedelta(minutes=1),
        sample["end"],
        max_searches=10,
    )
    assert preview.method == "per-step"
    assert (preview.requests, preview.searches) == (3, 25)
    assert connection.stats.msearch_requests == 3
    assert connection.stats.searches == 25
    assert "percentile cannot be combined" in " ".join(preview.notes)


def test_per_step_answers_of_many_groups_are_taken_a_chunk_at_a_time(
    es_url: str, sample: dict[str, Any]
) -> None:
    """Two group_by fields: each answer may hold 10,000 groups, so 5 points go out (and are
    evaluated, then dropped) at a time, not the whole period: 25 points in 5 requests."""
    check = sample["checks"].checks["5xx-by-host-and-service"]
    assert per_step_chunk(check, 200, 4) == 5
    preview, connection = run_preview(
        es_url, check, timedelta(minutes=25), timedelta(minutes=1), sample["end"]
    )
    assert preview.method == "per-step"
    assert (preview.requests, connection.stats.msearch_requests, preview.searches) == (5, 5, 25)
    assert [render(p.result) for p in preview.points] == live(
        es_url, check, [p.at for p in preview.points]
    )


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_json_shape_and_text_agree(es_url: str, sample: dict[str, Any]) -> None:
    check = sample["checks"].checks["web-5xx-ratio-by-host"]
    preview, _ = run_preview(
        es_url, check, timedelta(minutes=30), timedelta(minutes=1), sample["end"]
    )
    body = preview_to_dict(preview, render)
    assert len(body["points"]) == 30
    assert body["thresholds"]["warning"] == {
        "text": "2",
        "start": 0.0,
        "end": 2.0,
        "inside": False,
    }
    assert body["thresholds"]["critical"]["end"] == 5.0
    seconds = sum(body["time_in_state"].values())
    assert seconds == 30 * 60
    states = [p["state"] for p in body["points"]]
    changes = sum(1 for x, y in itertools.pairwise(states) if x != y)
    assert len(body["transitions"]) == changes
    assert body["pages"] == sum(1 for t in body["transitions"] if t["to"] == "CRITICAL")
    assert all(len(p["groups"]) <= 3 for p in body["points"])
    assert body["worst_groups"][0]["group"] == "host=web-03"
    text = render_text(preview)
    assert f"would have paged {body['pages']} time" in text
    assert "worst groups" in text and "host=web-03" in text


# -- the HTTP API ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def service(es_url: str, sample: dict[str, Any]) -> Iterator[EsbridgeProcess]:
    """``esbridge serve`` over the sample checks; writes need a token, reads do not."""
    state_index = f"pv-state-{uuid.uuid4().hex[:8]}"
    svc = EsbridgeProcess(
        es_url,
        [sample["folder"]],
        state_index=state_index,
        env={"ESBRIDGE_API__TOKEN": "s3cret-preview", "ESBRIDGE_PREVIEW__MAX_CONCURRENT": "1"},
    )
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        svc.log_path.unlink(missing_ok=True)
        httpcalls.delete(
            f"{es_url}/{state_index}", params={"ignore_unavailable": "true"}, timeout=60
        )


@pytest.mark.parametrize("name", ["web-5xx", "host-metrics-fresh", "web-error-spike"])
def test_api_last_point_equals_the_services_own_scheduled_run(
    service: EsbridgeProcess, name: str
) -> None:
    detail = service.wait_for(
        lambda: (d := service.get(f"/api/v1/checks/{name}").json())["result"] and d, timeout=60
    )
    at = detail["result"]["evaluated_at"]
    r = service.get(
        f"/api/v1/checks/{name}/preview", params={"since": "30m", "step": "1m", "until": at}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["last"]["at"] == at
    assert body["last"]["nagios"] == detail["nagios"]["text"]
    assert body["last"]["state"] == detail["state"]
    assert len(body["points"]) == 30 and body["markers"] == []
    assert body["thresholds"]["critical"]["text"] == detail["definition"]["critical"]


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_api_bounds_and_errors(service: EsbridgeProcess) -> None:
    r = service.get("/api/v1/checks/web-5xx/preview", params={"since": "7d", "step": "1m"})
    assert r.status_code == 422
    assert "10080 points, more than the limit of 1500" in r.json()["error"]
    r = service.get("/api/v1/checks/cluster/preview")
    assert r.status_code == 422 and "no history" in r.json()["error"]
    r = service.get("/api/v1/checks/web-5xxx/preview")
    assert r.status_code == 404 and "web-5xx" in r.json()["did_you_mean"]
    r = service.get("/api/v1/checks/web-5xx/preview", params={"step": "fast"})
    assert r.status_code == 422 and "fast" in r.json()["error"]
    r = service.get("/api/v1/checks/web-5xx/preview", params={"until": time.time() + 3600})
    assert r.status_code == 422 and "past time" in r.json()["error"]
    r = service.get("/api/v1/checks/web-5xx/preview", params={"until": "nan"})
    assert r.status_code == 422
    # Elasticsearch cannot answer (no such index): every point UNKNOWN with the reason
    r = service.get("/api/v1/checks/missing-index/preview", params={"since": "1h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert "no such index" in body["error"]
    assert {p["state"] for p in body["points"]} == {"UNKNOWN"}
    assert all("no such index" in p["error"] for p in body["points"])
    # the default step: the check's interval (15s) would be 5760 points in 24h: a round step
    r = service.get("/api/v1/checks/web-5xx/preview")
    assert r.status_code == 200, r.text
    assert r.json()["step"] == "5m" and len(r.json()["points"]) == 288


def _searches(service: EsbridgeProcess) -> float:
    text = service.get("/metrics").text
    line = next(x for x in text.splitlines() if x.startswith("esbridge_elasticsearch_searches"))
    return float(line.rsplit(" ", 1)[1])


@pytest.mark.version_independent  # output and limits, not the searches: once, in main
def test_api_concurrency_is_bounded_and_previews_use_their_own_client(
    service: EsbridgeProcess,
) -> None:
    """max_concurrent 1: a second preview at the same time is refused at once with 429; the
    previews' searches never go through the scheduled runs' connection."""
    import concurrent.futures

    before = _searches(service)
    params = {"since": "24h", "step": "1m"}  # per-step: 1440 searches in 8 _msearch requests

    def one(_: int) -> tuple[int, dict[str, Any], float]:
        started = time.monotonic()
        r = httpcalls.get(
            f"{service.url}/api/v1/checks/web-latency-p99/preview", params=params, timeout=120
        )
        return r.status_code, r.json(), time.monotonic() - started

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(one, range(4)))
    codes = sorted(code for code, _, _ in answers)
    assert codes[0] == 200 and codes[-1] == 429, codes
    refused = next(body for code, body, _ in answers if code == 429)
    assert "max_concurrent 1" in refused["error"]
    done = next(body for code, body, _ in answers if code == 200)
    assert done["method"] == "per-step" and done["searches"] == 1440
    assert _searches(service) - before < 1440  # only the scheduled runs' own searches
    # the service kept its schedule meanwhile
    checks = service.get("/api/v1/checks").json()["checks"]
    assert not any(c["stale"] for c in checks)


def test_documents_without_the_group_field_are_replayed_as_their_own_group(
    es_url: str, make_index: Any
) -> None:
    """The "(none)" group (documents that name no host) is in every point of the preview
    exactly as a live run has it, for the histogram method and per step alike."""
    import json

    from esbridge.loader import load_text

    index = make_index(
        "pv-none",
        mappings={"properties": {"@timestamp": {"type": "date"}, "host": {"type": "keyword"}}},
    )
    end = time.time() - 2
    docs = []
    for k in range(600):  # 20 minutes: a host every 4 s, a document without host every 10 s
        at = end - 1200 + 2 * k
        doc: dict[str, Any] = {"@timestamp": int(at * 1000)}
        if k % 5:
            doc["host"] = f"web-0{k % 3}"
        docs.append(json.dumps(doc))
    _bulk(es_url, index, docs)
    httpcalls.post(f"{es_url}/{index}/_refresh", timeout=60)
    checks = load_text(
        f"defaults: {{index: {index}, window: 2m}}\nchecks:\n"
        "  - {name: by-host, kind: count, group_by: host, critical: 45}\n"
        "  - {name: fresh-by-host, kind: freshness, group_by: host, critical: 5}\n"
        "  - {name: p99-by-host, kind: count, group_by: host, critical: '@5', max_groups: 2}\n"
    )
    until = end - 7.7
    for name in ("by-host", "fresh-by-host", "p99-by-host"):
        check = checks.checks[name]
        preview, _ = run_preview(es_url, check, timedelta(minutes=15), timedelta(seconds=70), until)
        got = [render(p.result) for p in preview.points]
        assert got == live(es_url, check, [p.at for p in preview.points]), name
        assert any("(none)" in text for text in got), name


def test_a_sum_of_no_values_is_replayed_as_no_data(es_url: str, make_index: Any) -> None:
    """A host whose documents carry no ``bytes`` is "no data" in every point of the preview,
    as in a live run (never "sum is 0"), and max_groups keeps the same groups in both."""
    import json

    from esbridge.loader import load_text

    index = make_index(
        "pv-sum",
        mappings={
            "properties": {
                "@timestamp": {"type": "date"},
                "host": {"type": "keyword"},
                "bytes": {"type": "long"},
            }
        },
    )
    end = time.time() - 2
    docs = []
    for k in range(600):  # 20 minutes, a document every 2 s over three hosts
        doc: dict[str, Any] = {"@timestamp": int((end - 1200 + 2 * k) * 1000), "host": f"h{k % 3}"}
        if k % 3 == 1:
            doc["bytes"] = 0 if k % 2 else 40  # h1: zeros and forties
        elif k % 3 == 2:
            doc["bytes"] = 100
        docs.append(json.dumps(doc))  # h0: never a byte count
    _bulk(es_url, index, docs)
    httpcalls.post(f"{es_url}/{index}/_refresh", timeout=60)
    checks = load_text(
        f"defaults: {{index: {index}, window: 2m}}\nchecks:\n"
        "  - {name: by-host, kind: metric, agg: sum, field: bytes, group_by: host,"
        " critical: 1500}\n"
        "  - {name: by-host-top, kind: metric, agg: sum, field: bytes, group_by: host,"
        " critical: 1500, max_groups: 2}\n"
        "  - {name: misspelt, kind: metric, agg: sum, field: byts, critical: 1500}\n"
        # Elasticsearch orders an empty avg (NaN) first, an empty max (-Infinity) last
        "  - {name: avg-top, kind: metric, agg: avg, field: bytes, group_by: host,"
        " critical: 50, max_groups: 2}\n"
        "  - {name: max-top, kind: metric, agg: max, field: bytes, group_by: host,"
        " critical: 50, max_groups: 2}\n"
        "  - {name: min-low, kind: metric, agg: min, field: bytes, group_by: host,"
        " critical: '10:', max_groups: 1}\n"
    )
    until = end - 7.7
    for name in ("avg-top", "max-top", "min-low"):
        check = checks.checks[name]
        preview, _ = run_preview(es_url, check, timedelta(minutes=15), timedelta(seconds=70), until)
        got = [render(p.result) for p in preview.points]
        assert got == live(es_url, check, [p.at for p in preview.points]), name
    for name in ("by-host", "by-host-top", "misspelt"):
        check = checks.checks[name]
        preview, _ = run_preview(es_url, check, timedelta(minutes=15), timedelta(seconds=70), until)
        got = [render(p.result) for p in preview.points]
        assert got == live(es_url, check, [p.at for p in preview.points]), name
        assert not any("sum of byts is 0" in text for text in got), name
        if name == "by-host-top":  # Elasticsearch orders h0's empty sum as 0: left out
            assert all("1 more groups not evaluated" in text for text in got), got[-1]
        else:
            assert all("no data" in text for text in got), name
