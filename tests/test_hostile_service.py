"""Hostile input and odd clusters against the running service and a real Elasticsearch.

Start-up, API reload and SIGHUP with hostile check files; closed, red and partially
available indices; the state index deleted while running; ``/metrics`` staying parseable;
``make demo``'s Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from _require import require
from esbridge.config import ConnectionConfig
from esbridge.esclient import Connections
from esbridge.loader import load_text
from esbridge.result import State
from esbridge.runner import Runner
from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess, free_port
from test_service_support import delete_index, metric_samples

CORPUS = Path(__file__).resolve().parent / "hostile" / "checks"
ROOT = Path(__file__).resolve().parents[1]
ESBRIDGE = [sys.executable, "-m", "esbridge"]
DEMO = [sys.executable, "-m", "esbridge_dev.demo"]

pytestmark = pytest.mark.es

GOOD = "checks:\n  - {name: health, kind: cluster_health}\n"


# --------------------------------------------------------------------------- start, reload


@pytest.mark.parametrize(
    ("name", "located"),
    [
        ("huge_threshold.yaml", "check 'huge-threshold': field 'critical'"),
        ("deep_query_dsl.yaml", "check 'deep-dsl': field 'query_dsl'"),
        ("alias_bomb.yaml", "more than 200000 values"),
    ],
)
@pytest.mark.version_independent  # the file is refused before any search
def test_serve_refuses_hostile_file_with_exit_2(es_url: str, name: str, located: str) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "esbridge",
            "serve",
            "--port",
            str(free_port()),
            "--es-url",
            es_url,
            "--checks",
            str(CORPUS / name),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc
    assert "not starting" in proc.stderr and located in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.fixture
def checks_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "checks"
    folder.mkdir()
    (folder / "a.yaml").write_text(GOOD)
    return folder


def _reload_metric(proc: EsbridgeProcess) -> float:
    return metric_samples(proc.get("/metrics").text, "esbridge_config_last_reload_successful")[""]


@pytest.mark.version_independent  # a refused reload, not a search
def test_reload_with_hostile_file_answers_json_and_keeps_serving(
    es_url: str, checks_dir: Path
) -> None:
    env = {"ESBRIDGE_API__ALLOW_UNAUTHENTICATED_WRITES": "true", "ESBRIDGE_STATE__ENABLED": "0"}
    with EsbridgeProcess(es_url, [checks_dir], env=env) as proc:
        assert _reload_metric(proc) == 1
        for name in ("huge_threshold.yaml", "deep_query_dsl.yaml", "huge_threshold_5000.yaml"):
            shutil.copy(CORPUS / name, checks_dir / "bad.yaml")
            answer = proc.post("/api/v1/reload")
            assert answer.status_code == 422, answer.text
            assert answer.headers["content-type"].startswith("application/json")
            body = answer.json()
            assert body["successful"] is False and "bad.yaml" in body["error"]
            ready = proc.get("/readyz").json()
            assert ready["config"]["last_reload_successful"] is False
            assert _reload_metric(proc) == 0
            assert proc.get("/api/v1/checks/health").status_code == 200  # old set serves
        (checks_dir / "bad.yaml").unlink()
        assert proc.post("/api/v1/reload").status_code == 200
        assert _reload_metric(proc) == 1
        assert "Traceback" not in proc.log()


@pytest.mark.version_independent  # a refused reload, not a search
def test_sighup_with_hostile_file_logs_a_clear_error(es_url: str, checks_dir: Path) -> None:
    with EsbridgeProcess(es_url, [checks_dir], env={"ESBRIDGE_STATE__ENABLED": "0"}) as proc:
        shutil.copy(CORPUS / "deep_query_dsl.yaml", checks_dir / "bad.yaml")
        proc.signal(signal.SIGHUP)
        proc.wait_for(lambda: "reload rejected" in proc.log())
        time.sleep(0.5)
        log = proc.log()
        assert "check 'deep-dsl': field 'query_dsl': nested deeper than 64 levels" in log
        assert "Task exception was never retrieved" not in log and "Traceback" not in log
        assert _reload_metric(proc) == 0
        assert proc.get("/healthz").status_code == 200
        assert proc.stop() == 0


# --------------------------------------------------------------------------- odd indices

COUNT = """
checks:
  - name: count
    kind: count
    index: "{pattern}"
    window: 1h
    critical: 1000
  - name: fresh
    kind: freshness
    index: "{pattern}"
    group_by: host
    critical: 3600
"""


async def _run(es_url: str, pattern: str) -> dict[str, Any]:
    checks = load_text(COUNT.format(pattern=pattern))
    connections = Connections({"default": ConnectionConfig(urls=(es_url,), max_retries=0)})
    try:
        results = await Runner(connections, timedelta(seconds=5)).run(list(checks))
    finally:
        await connections.close()
    return {r.check: r for r in results}


def _index(es_url: str, name: str, settings: dict[str, Any] | None = None) -> None:
    """An index; with ``settings`` that keep its primary unassigned (a red index), the
    create call does not wait the server's 30 s for a shard that will never start."""
    body = {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, **(settings or {})},
        "mappings": {"properties": {"host": {"type": "keyword"}}},
    }
    params = {"wait_for_active_shards": "0"} if settings else {}
    r = httpcalls.put(f"{es_url}/{name}", params=params, json=body, timeout=60)
    assert r.status_code == 200, r.text


def _seed(es_url: str, seed: Any, name: str) -> None:
    seed(name, [{"ago": "2m", "host": f"{name}-host"}])


async def test_closed_index_in_pattern_is_unknown_naming_it(es_url: str, seed: Any) -> None:
    prefix = f"hostile-closed-{uuid.uuid4().hex[:6]}"
    a, b = f"{prefix}-a", f"{prefix}-b"
    try:
        for name in (a, b):
            _index(es_url, name)
            _seed(es_url, seed, name)
        assert httpcalls.post(f"{es_url}/{b}/_close", timeout=30).status_code == 200
        results = await _run(es_url, f"{prefix}-*")
        for check in ("count", "fresh"):
            result = results[check]
            assert result.state is State.UNKNOWN, result  # never "OK 1"
            assert result.error_kind == "unavailable"
            assert f"index [{b}] is closed" in result.summary
    finally:
        delete_index(es_url, f"{prefix}-*")


async def test_red_index_is_unknown_no_primary(es_url: str) -> None:
    name = f"hostile-red-{uuid.uuid4().hex[:6]}"
    try:
        _index(es_url, name, {"index.routing.allocation.require._name": "no-such-node"})
        results = await _run(es_url, name)
        result = results["count"]
        assert result.state is State.UNKNOWN and result.error_kind == "unavailable"
        assert "no primary shard available" in result.summary and "red" in result.summary
        assert "overloaded" not in result.summary and "503" not in result.summary
    finally:
        delete_index(es_url, name)


async def test_partially_red_pattern_is_unknown_partial(
    es_url: str, seed: Any, backend_name: str
) -> None:
    prefix = f"hostile-partial-{uuid.uuid4().hex[:6]}"
    good, red = f"{prefix}-good", f"{prefix}-red"
    try:
        _index(es_url, good)
        _seed(es_url, seed, good)
        _index(es_url, red, {"index.routing.allocation.require._name": "no-such-node"})
        results = await _run(es_url, f"{prefix}-*")
        for check in ("count", "fresh"):
            result = results[check]
            assert result.state is State.UNKNOWN and result.error_kind == "partial", result
            assert "no primary shard available" in result.summary
            # Elasticsearch names the failed shard's index; OpenSearch's answer names none
            # (it only counts the shard as not successful), so its summary cannot either.
            assert red in result.summary or backend_name == "OpenSearch", result.summary
    finally:
        delete_index(es_url, f"{prefix}-*")


# --------------------------------------------------------------------------- state index


def test_state_index_deleted_while_running_is_recreated(es_url: str, checks_dir: Path) -> None:
    state = f"esbridge-state-hostile-{uuid.uuid4().hex[:6]}"
    env = {
        "ESBRIDGE_STATE__FLUSH_INTERVAL": "1s",
        "ESBRIDGE_API__ALLOW_UNAUTHENTICATED_WRITES": "1",
    }
    try:
        with EsbridgeProcess(es_url, [checks_dir], env=env, state_index=state) as proc:
            proc.wait_for(lambda: proc.get("/readyz").status_code == 200)
            # Run it now: its first scheduled run may be up to half a minute away (its slot
            # of the minute), which a CI run once met exactly at this wait's bound.
            assert proc.post("/api/v1/checks/health/run").status_code == 200
            proc.wait_for(lambda: httpcalls.get(f"{es_url}/{state}/_doc/health").status_code == 200)
            assert httpcalls.delete(f"{es_url}/{state}", timeout=30).status_code == 200
            proc.post("/api/v1/checks/health/run")  # a new result makes the store dirty
            proc.wait_for(
                lambda: httpcalls.get(f"{es_url}/{state}/_doc/health").status_code == 200, 30
            )
            mapping = httpcalls.get(f"{es_url}/{state}/_mapping", timeout=10).json()
            assert mapping[state]["mappings"]["dynamic"] == "strict"
            settings = httpcalls.get(f"{es_url}/{state}/_settings", timeout=10).json()
            assert settings[state]["settings"]["index"]["auto_expand_replicas"] == "0-1"
            proc.wait_for(lambda: proc.get("/readyz").status_code == 200, 30)
            assert proc.get("/readyz").json()["state_store"]["writable"] is True
            assert "re-created it" in proc.log()
    finally:
        delete_index(es_url, state)


# --------------------------------------------------------------------------- /metrics


@pytest.mark.version_independent  # group keys come back as sent; the escaping is ours
def test_metrics_stay_parseable_with_hostile_group_values(
    es_url: str, checks_dir: Path, seed: Any
) -> None:
    """Group values with quotes, backslashes and newlines; label collisions never load."""
    promtool = shutil.which("promtool")
    require(promtool is not None, "promtool (Debian package prometheus) is not installed")
    assert promtool is not None
    index = f"hostile-metrics-{uuid.uuid4().hex[:6]}"
    try:
        httpcalls.put(
            f"{es_url}/{index}",
            json={
                "settings": {"number_of_shards": 1, "number_of_replicas": 0},
                "mappings": {
                    "properties": {
                        "host": {"properties": {"name": {"type": "keyword"}}},
                        "host_name": {"type": "keyword"},
                    }
                },
            },
            timeout=60,
        )
        seed(
            index,
            [
                {"ago": "1m", "host": {"name": 'we"b\\01\nx'}, "host_name": "b"},
                {"ago": "1m", "host": {"name": "web-02"}, "host_name": "b"},
            ],
        )
        (checks_dir / "g.yaml").write_text(
            f"checks:\n  - {{name: grouped, kind: count, index: {index}, window: 1h,"
            " interval: 5s, group_by: [host.name], critical: 100}\n"
        )
        with EsbridgeProcess(es_url, [checks_dir], env={"ESBRIDGE_STATE__ENABLED": "0"}) as proc:
            proc.wait_for(lambda: "esbridge_group_status_code" in proc.get("/metrics").text)
            text = proc.get("/metrics").text
            check = subprocess.run(
                [promtool, "check", "metrics"], input=text, capture_output=True, text=True
            )
            assert "error" not in (check.stdout + check.stderr).lower(), check
            nagios = proc.get("/api/v1/checks/grouped/nagios").text
            assert all(not line.startswith("x") for line in nagios.split("\n"))
            (checks_dir / "g.yaml").write_text(
                f"checks:\n  - {{name: grouped, kind: count, index: {index},"
                " group_by: [host.name, host_name], critical: 100}\n"
            )
            proc.signal(signal.SIGHUP)
            proc.wait_for(lambda: "would both be the metric label 'host_name'" in proc.log())
    finally:
        delete_index(es_url, index)


# --------------------------------------------------------------------------- make demo


@pytest.mark.version_independent  # signals, not searches
@pytest.mark.parametrize("presses", [1, 2])
def test_demo_ctrl_c_exits_0(es_url: str, presses: int) -> None:
    """Ctrl-C reaches the whole foreground process group (demo, esbridge): exit 0, and a
    second press while it stops still ends in a clean stop, not a traceback."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "esbridge_dev.demo",
            "--es-url",
            es_url,
            "--port",
            str(port),
            "--rate",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        out = b""
        deadline = time.monotonic() + 240
        assert proc.stdout is not None
        while b"Press Ctrl-C" not in out and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            out += line
        assert b"Press Ctrl-C" in out, out.decode(errors="replace")
        os.killpg(proc.pid, signal.SIGINT)
        if presses == 2:
            while b"Stopping" not in out and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                out += line
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGINT)
        rest, _ = proc.communicate(timeout=60)
        out += rest
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    text = out.decode(errors="replace")
    for log in re.findall(r"^esbridge log: (\S+)$", text, re.MULTILINE):  # kept for a user
        Path(log).unlink(missing_ok=True)
    tail = text[-4000:]
    assert proc.returncode == 0, f"exit {proc.returncode}; the demo's output ends:\n{tail}"
    assert b"Stopped esbridge" in out, tail
    assert b"Traceback" not in out, tail
