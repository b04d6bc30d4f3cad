"""The real-Elasticsearch harness itself: server shape, helpers, clean stop, Java errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from conftest import BACKEND, expected_es_version, index_maker, new_server
from esbridge_dev import elasticsearch as esdev
from esbridge_dev import forkserver, httpcalls, ports
from esbridge_dev import service as esbridge_service
from esbridge_dev.seeding import iso, parse_ago, prepare_docs
from esbridge_dev.service import EsbridgeProcess, listens_on


@pytest.mark.es
def test_server_reachable_with_expected_version(es_url, es_version):
    want = expected_es_version()
    if want:
        assert es_version.split(".")[0] == want.split(".")[0], (es_version, want)
    health = httpcalls.get(f"{es_url}/_cluster/health", timeout=10).json()
    assert health["number_of_nodes"] == 1
    assert health["status"] in ("green", "yellow")


@pytest.mark.es
def test_single_node_on_loopback_only(es_url):
    nodes = httpcalls.get(f"{es_url}/_nodes/http,settings", timeout=10).json()["nodes"]
    assert len(nodes) == 1
    node = next(iter(nodes.values()))
    http = node["http"]
    for addr in [*http["bound_address"], http["publish_address"]]:
        host = addr.rsplit(":", 1)[0].strip("[]")
        assert host in ("127.0.0.1", "::1") or host.endswith("/127.0.0.1"), addr
    if not os.environ.get("ESBRIDGE_TEST_ES_URL"):
        assert node["settings"]["discovery"]["type"] == "single-node"


@pytest.mark.es
def test_security_off(es_url):
    # No credentials and still allowed: security is disabled.
    r = httpcalls.get(f"{es_url}/_cluster/health", timeout=10)
    assert r.status_code == 200
    if BACKEND == "opensearch":
        assert httpcalls.get(es_url, timeout=10).json()["version"]["distribution"] == "opensearch"
    else:
        assert r.headers.get("x-elastic-product") == "Elasticsearch"


@pytest.mark.es
def test_official_client_talks_to_server(es, make_index):
    index = make_index("client")
    if BACKEND == "opensearch":
        es.index(index=index, body={"a": 1}, refresh=True)
    else:
        es.index(index=index, document={"a": 1}, refresh=True)
    assert es.count(index=index)["count"] == 1


@pytest.mark.es
def test_make_index_and_seed_round_trip(es_url, make_index, seed):
    index = make_index(
        "Harness",
        mappings={"properties": {"@timestamp": {"type": "date"}, "status": {"type": "short"}}},
    )
    assert index.startswith("harness-") and index == index.lower()
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    seed(
        index,
        [{"status": 500, "ago": "3m"}, {"status": 200, "ago": 90.5}, {"status": 404, "ago": "2h"}],
        now=now,
    )
    body = {
        "query": {"range": {"@timestamp": {"gte": iso(now - timedelta(minutes=5))}}},
        "sort": [{"@timestamp": "asc"}],
    }
    hits = httpcalls.post(f"{es_url}/{index}/_search", json=body, timeout=10).json()["hits"]["hits"]
    assert [h["_source"]["status"] for h in hits] == [500, 200]
    assert hits[0]["_source"]["@timestamp"] == "2024-05-01T11:57:00.000Z"
    assert hits[1]["_source"]["@timestamp"] == "2024-05-01T11:58:29.500Z"
    assert "ago" not in hits[0]["_source"]


@pytest.mark.es
def test_make_index_deletes_its_indices(es_url):
    """The code behind the ``make_index`` fixture deletes what it made when the test ends."""
    with index_maker(es_url) as make:
        names = [make("gone"), make("gone", mappings={"properties": {"x": {"type": "long"}}})]
        for name in names:
            assert httpx.head(f"{es_url}/{name}", timeout=10).status_code == 200
    for name in names:
        assert httpx.head(f"{es_url}/{name}", timeout=10).status_code == 404, name


@pytest.mark.es
@pytest.mark.slow
@pytest.mark.version_independent  # the session's server proves start-up at every version
def test_second_instance_stops_cleanly():
    server = new_server()
    with server:
        assert httpcalls.get(f"{server.url}/_cluster/health", timeout=10).status_code == 200
        pid = server.pid
        workdir = server.workdir
        assert pid and workdir and (workdir / "data").is_dir()
        # fault helpers: kill keeps data, restart reuses port + data
        port = server.port
        r = httpcalls.put(
            f"{server.url}/keep", json={"settings": {"number_of_replicas": 0}}, timeout=30
        )
        assert r.status_code == 200, r.text
        server.kill()
        assert not esdev.group_alive(pid)
        server.restart()
        assert server.port == port
        health = httpcalls.get(
            f"{server.url}/_cluster/health/keep",
            params={"wait_for_status": "green", "timeout": "30s"},
            timeout=40,
        ).json()
        assert health["status"] == "green"
        pid = server.pid
    assert not esdev.group_alive(pid)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not workdir.exists()
    server.stop()  # idempotent


@pytest.mark.slow
def test_service_harness_ignores_a_foreign_listener_and_moves_off_its_port(tmp_path: Path):
    """Two test lanes can be handed the same free port: the esbridge that loses the bind
    must not take the winner's /healthz for its own, and starts again elsewhere."""
    foreign = _HealthzServer(("127.0.0.1", 0), _AlwaysHealthy)
    threading.Thread(target=foreign.serve_forever, daemon=True).start()
    taken = foreign.server_address[1]
    assert httpcalls.get(f"http://127.0.0.1:{taken}/healthz", timeout=5).status_code == 200
    assert not listens_on(os.getpid() + 10**7, taken)  # no such process: not its socket
    assert listens_on(os.getpid(), taken)
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "checks:\n  - {name: idle, kind: count, index: nothing, window: 5m, critical: 1}\n"
    )
    proc = EsbridgeProcess("http://127.0.0.1:9", [checks])
    proc.port = taken  # as if free_port had handed out the foreign server's port
    try:
        with proc:
            assert proc.port != taken
            assert "address already in use" in proc.log().lower()
            assert proc.proc is not None and listens_on(proc.proc.pid, proc.port)
            assert proc.get("/api/v1/checks").json()["checks"][0]["name"] == "idle"
    finally:
        foreign.shutdown()
        foreign.server_close()
    fixed = EsbridgeProcess("http://127.0.0.1:9", [checks], port=proc.port)
    blocker = socket.create_server(("127.0.0.1", fixed.port))
    try:
        with pytest.raises(RuntimeError, match="esbridge exited"):
            fixed.start(wait=60)
    finally:
        blocker.close()
        fixed.log_path.unlink(missing_ok=True)


@pytest.mark.parametrize(
    "argv",
    [["serve", "--no-such-option"], ["validate", "--checks", "tests/bad_input/unknown_field.yaml"]],
    ids=["bad-option", "bad-file"],
)
def test_a_forked_esbridge_exits_and_prints_as_the_interpreter_would(
    tmp_path: Path, argv: list[str]
) -> None:
    """The fork server stands in for ``python -m esbridge``: same exit code, same words."""
    root = Path(__file__).resolve().parents[1]
    real = subprocess.run(
        [sys.executable, "-m", "esbridge", *argv], cwd=root, capture_output=True, text=True
    )
    log = tmp_path / "forked.log"
    child = forkserver.shared().spawn(argv, dict(os.environ), str(root), log)
    assert child.wait(60) == real.returncode == 2
    assert log.read_text() == real.stdout + real.stderr
    assert "Traceback" not in log.read_text()


def test_a_forked_esbridge_has_its_own_environment_pid_and_signals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the harness starts by fork reads the environment it was given (not the fork
    server's), answers on its own port under its own pid, and a signal ends it as it would
    end an interpreter: SIGTERM cleanly (0), SIGKILL as -9."""
    monkeypatch.setattr(esbridge_service, "FORK_SERVER", True)  # whatever the run chose
    checks = tmp_path / "checks.yaml"
    checks.write_text("checks:\n  - {name: idle, kind: cluster_health}\n")
    env = {"ESBRIDGE_STATE__ENABLED": "0"}
    with_token = EsbridgeProcess(
        "http://127.0.0.1:9", [checks], env=env | {"ESBRIDGE_API__TOKEN": "t0k"}
    )
    without = EsbridgeProcess("http://127.0.0.1:9", [checks], env=env)
    with with_token, without:
        for proc in (with_token, without):
            assert isinstance(proc.proc, forkserver.ForkedProcess)
            assert proc.proc.pid != os.getpid() and listens_on(proc.proc.pid, proc.port)
        assert with_token.post("/api/v1/reload").status_code == 401  # a token is set
        refused = without.post("/api/v1/reload")
        assert refused.status_code == 403 and "disabled" in refused.json()["error"]
        assert with_token.stop() == 0
        assert without.proc is not None
        without.proc.send_signal(signal.SIGKILL)
        assert without.proc.wait(10) == -signal.SIGKILL


def test_a_fork_server_that_is_gone_is_an_error_not_a_hang(tmp_path: Path) -> None:
    server = forkserver.ForkServer()
    server.spawn(["--version"], dict(os.environ), os.getcwd(), tmp_path / "v.log").wait(60)
    server._proc.kill()
    server._proc.wait(10)
    with pytest.raises(RuntimeError, match="fork server"):
        server.spawn(["--version"], dict(os.environ), os.getcwd(), tmp_path / "w.log")


@pytest.mark.parametrize("keep", [False, True])
def test_service_logs_go_with_the_harness_process_unless_kept(tmp_path: Path, keep: bool):
    """The logs of the services a harness process started are removed when it exits (a
    suite starts hundreds); ``ESBRIDGE_KEEP_LOGS=1`` keeps them, and so does ``keep_log``
    (the demo prints its log's path)."""
    script = (
        "from esbridge_dev.service import EsbridgeProcess\n"
        "scratch = EsbridgeProcess(None, ['c.yaml']).log_path\n"
        "kept = EsbridgeProcess(None, ['c.yaml'], keep_log=True).log_path\n"
        "scratch.write_text('x'); print(scratch); print(kept)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "ESBRIDGE_KEEP_LOGS"}
    if keep:
        env["ESBRIDGE_KEEP_LOGS"] = "1"
    env["TMPDIR"] = str(tmp_path)
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    scratch, kept = Path(out[0]), Path(out[1])
    assert scratch.parent.parent == tmp_path and scratch.parent.name.startswith("esbridge-logs-")
    assert scratch.exists() is keep and scratch.parent.exists() is keep
    assert kept.exists() and kept.parent == tmp_path


def test_free_port_is_handed_out_once_across_processes(tmp_path: Path, monkeypatch):
    monkeypatch.setattr(ports, "_FOLDER", tmp_path)
    given = {ports.free_port() for _ in range(200)}
    assert len(given) == 200  # the kernel alone repeats ports; the reservations do not
    assert {int(p.name) for p in tmp_path.iterdir()} == given
    # another process's fresh reservation is honoured, an old one is taken over
    fresh, old = sorted(given)[:2]
    real_socket = socket.socket

    class Kernel(real_socket):  # hands out the same two ports, as a racing kernel might
        picks = iter([fresh, old])

        def getsockname(self):
            return ("127.0.0.1", next(self.picks))

    monkeypatch.setattr(ports.socket, "socket", Kernel)
    os.utime(tmp_path / str(old), (0, 0))
    assert ports.free_port() == old
    assert (tmp_path / str(old)).stat().st_mtime > 0


def test_old_port_reservations_are_swept(tmp_path: Path, monkeypatch):
    """Reservations long past their minute are deleted, so the folder does not grow run
    after run; recent ones (another process may be about to bind) stay."""
    monkeypatch.setattr(ports, "_FOLDER", tmp_path)
    monkeypatch.setattr(ports, "_swept_at", 0.0)
    litter = [tmp_path / str(n) for n in (1, 2, 3)]
    for path in litter:
        path.touch()
        os.utime(path, (time.time() - ports.SWEEP_AFTER - 5,) * 2)
    recent = tmp_path / "4"
    recent.touch()
    os.utime(recent, (time.time() - ports.RESERVED_FOR - 5,) * 2)  # expired, not yet litter
    given = ports.free_port()
    left = {p.name for p in tmp_path.iterdir()}
    assert left == {"4", str(given)}


class _HealthzServer(ThreadingHTTPServer):
    daemon_threads = True


class _AlwaysHealthy(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


def test_java_missing_error_names_major_and_places(tmp_path: Path):
    with pytest.raises(esdev.JavaNotFoundError) as ei:
        esdev.find_java(21, jvm_dirs=[tmp_path])
    msg = str(ei.value)
    assert "Java 21" in msg and str(tmp_path) in msg


def test_java_finder_prefers_lowest_suitable(tmp_path: Path):
    for name, ver in (("jdk-25", "25.0.1"), ("jdk-21", "21.0.4"), ("jdk-11", "11.0.2")):
        (tmp_path / name / "bin").mkdir(parents=True)
        (tmp_path / name / "bin" / "java").write_text("#!/bin/sh\n")
        (tmp_path / name / "bin" / "java").chmod(0o755)
        (tmp_path / name / "release").write_text(f'JAVA_VERSION="{ver}"\n')
    assert esdev.find_java(17, jvm_dirs=[tmp_path]).name == "jdk-21"
    assert esdev.find_java(22, jvm_dirs=[tmp_path]).name == "jdk-25"


def test_versions_and_required_java():
    assert esdev.resolve_version("8") == esdev.ES8 == "8.19.21"
    assert esdev.resolve_version("9") == esdev.ES9 == "9.5.4"
    assert esdev.resolve_version(None) == esdev.ES8
    assert esdev.required_java_major(esdev.ES8) == 17
    assert esdev.required_java_major(esdev.ES9) == 21
    with pytest.raises(esdev.ElasticsearchError):
        esdev.resolve_version("latest")


def test_seeding_pure_helpers():
    now = datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_ago("250ms") == timedelta(milliseconds=250)
    assert parse_ago("2d") == timedelta(days=2)
    assert parse_ago(1.5) == timedelta(seconds=1.5)
    with pytest.raises(ValueError):
        parse_ago("soon")
    docs = prepare_docs([{"ago": "1m", "x": 1}, {"@timestamp": now}], now=now)
    assert docs == [
        {"x": 1, "@timestamp": "2023-12-31T23:59:00.000Z"},
        {"@timestamp": "2024-01-01T00:00:00.000Z"},
    ]


def test_cache_dir_falls_back_when_not_traversable(tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    (locked / "inner").mkdir(parents=True)
    locked.chmod(0o700)
    assert not esdev._traversable_by_others(locked / "inner" / "x")
    locked.chmod(0o755)
    assert esdev._traversable_by_others(locked / "inner" / "x") == bool(
        all(p.stat().st_mode & 0o001 for p in (locked / "inner").parents if p.exists())
    )
    monkeypatch.setenv("ESBRIDGE_CACHE_DIR", str(tmp_path / "c"))
    assert esdev.cache_dir() == tmp_path / "c"
