"""Targets that refuse or hang never stall evaluation, stay visible, stay bounded, recover.

The HTTP target goes through three lives on one port: nothing listening (connection
refused), a TCP server that accepts and never answers (timeout), then an answering stand-in
for Icinga's API (stdlib server). The Nagios target is a real FIFO: first with no reader
(ENXIO), then with a reader that never reads (pipe full), then a reader that drains it.
A wrong password against a real Icinga 2 is in test_passive_icinga.py.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess, free_port
from test_passive_icinga import seeded_checks

pytestmark = [pytest.mark.slow, pytest.mark.version_independent]

NAMES = ("p-ok", "p-warn", "p-crit")


def samples(svc: EsbridgeProcess) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = svc.get("/metrics").text
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def metric(svc: EsbridgeProcess, name: str, **labels: str) -> float:
    return samples(svc).get((name, tuple(sorted(labels.items()))), 0.0)


def runs(svc: EsbridgeProcess) -> float:
    return sum(metric(svc, "esbridge_check_runs_total", check=n) for n in NAMES)


def passive_status(svc: EsbridgeProcess) -> dict:
    ready = svc.get("/readyz").json()
    [target] = ready["passive"]
    return target


def assert_still_evaluating_and_bounded(svc: EsbridgeProcess, target: str) -> None:
    """Checks keep running while the target fails, and its queue holds ≤ 1 per check."""
    before = runs(svc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        queue = metric(svc, "esbridge_passive_queue_length", target=target)
        assert queue <= len(NAMES), queue
        assert passive_status(svc)["queue_length"] <= len(NAMES)
        if runs(svc) >= before + 2 * len(NAMES):
            return
        time.sleep(0.3)
    raise AssertionError(f"evaluation stalled: runs {before} -> {runs(svc)}")


class Stub:
    """A stand-in for Icinga's process-check-result endpoint that records the bodies."""

    def __init__(self, port: int) -> None:
        self.bodies: list[dict] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stub.bodies.append({"path": self.path, **json.loads(body)})
                payload = b'{"results":[{"code":200,"status":"ok"}]}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_http_target_refused_then_hanging_then_recovering(es_url, make_index, seed, tmp_path):
    checks = seeded_checks(tmp_path, make_index, seed)
    port = free_port()
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        "passive:\n"
        "  - name: icinga\n"
        "    type: icinga2\n"
        f"    url: http://127.0.0.1:{port}\n"
        "    username: esbridge\n"
        "    password_env: TEST_ICINGA_PASSWORD\n"
        "    timeout: 1s\n"
        "    backoff: 100ms\n"
        "    backoff_max: 500ms\n"
        "    retries: 2\n"
    )
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    env = {"TEST_ICINGA_PASSWORD": "pw"}
    hanging: socket.socket | None = None
    stub: Stub | None = None
    accepted: list[socket.socket] = []
    try:
        with EsbridgeProcess(
            es_url, [checks], config=config, env=env, state_index=state_index
        ) as svc:
            # 1. nothing listens: refused, visible, evaluation goes on, queue bounded
            svc.wait_for(lambda: metric(svc, "esbridge_passive_failed_total", target="icinga",
                                        reason="connect") >= 3)  # fmt: skip
            assert metric(svc, "esbridge_passive_target_up", target="icinga") == 0.0
            status = passive_status(svc)
            assert status["up"] is False and "connect" in status["last_error"], status
            assert svc.get("/readyz").json()["ready"] is True  # a down target is not unready
            assert_still_evaluating_and_bounded(svc, "icinga")

            # 2. a server that accepts and never answers: timeouts, never a stall
            hanging = socket.create_server(("127.0.0.1", port), reuse_port=False)
            hanging.listen(64)
            stop = threading.Event()

            def accept_forever() -> None:
                hanging.settimeout(0.2)
                while not stop.is_set():
                    try:
                        conn, _ = hanging.accept()
                        accepted.append(conn)  # held open, never read, never answered
                    except OSError:
                        continue

            acceptor = threading.Thread(target=accept_forever, daemon=True)
            acceptor.start()
            svc.wait_for(lambda: metric(svc, "esbridge_passive_failed_total", target="icinga",
                                        reason="timeout") >= 2)  # fmt: skip
            assert passive_status(svc)["up"] is False
            assert_still_evaluating_and_bounded(svc, "icinga")
            dropped = metric(svc, "esbridge_passive_dropped_total", target="icinga")
            assert dropped > 0  # newer results replaced the ones that could not go out

            # 3. the target comes back: delivery resumes by itself
            stop.set()
            acceptor.join(5)
            hanging.close()
            for conn in accepted:
                conn.close()
            sent_before = metric(svc, "esbridge_passive_sent_total", target="icinga")
            stub = Stub(port)
            svc.wait_for(lambda: {b["service"] for b in stub.bodies} >= {
                f"esbridge!{n}" for n in NAMES})  # fmt: skip
            svc.wait_for(lambda: passive_status(svc)["up"] is True)
            assert metric(svc, "esbridge_passive_sent_total", target="icinga") > sent_before
            assert metric(svc, "esbridge_passive_target_up", target="icinga") == 1.0
            body = next(b for b in stub.bodies if b["service"] == "esbridge!p-crit")
            assert body["path"] == "/v1/actions/process-check-result"
            assert body["type"] == "Service" and body["exit_status"] == 2
            assert body["plugin_output"].startswith("CRITICAL - 5 ")
            assert body["performance_data"] == ["'count'=5;1;3;0"]
    finally:
        if stub is not None:
            stub.close()
        if hanging is not None:
            hanging.close()
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)


def test_command_file_without_reader_then_full_then_drained(es_url, make_index, seed, tmp_path):
    checks = seeded_checks(tmp_path, make_index, seed)
    fifo = tmp_path / "nagios.cmd"
    os.mkfifo(fifo, 0o660)
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        "passive:\n"
        "  - name: nagios\n"
        "    type: nagios\n"
        f"    command_file: {fifo}\n"
        "    timeout: 1s\n"
        "    backoff: 100ms\n"
        "    backoff_max: 500ms\n"
    )
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    reader = -1
    try:
        with EsbridgeProcess(es_url, [checks], config=config, state_index=state_index) as svc:
            # 1. no reader (Nagios down): ENXIO, never a blocked open
            svc.wait_for(lambda: metric(svc, "esbridge_passive_failed_total", target="nagios",
                                        reason="no_reader") >= 3)  # fmt: skip
            assert passive_status(svc)["up"] is False
            assert_still_evaluating_and_bounded(svc, "nagios")

            # 2. a reader that never reads, the pipe already full: writes time out
            reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
            fcntl.fcntl(reader, 1031, 4096)  # F_SETPIPE_SZ: fill it quickly
            filler = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            try:
                while True:
                    os.write(filler, b"#" * 512)
            except BlockingIOError:
                pass
            finally:
                os.close(filler)
            svc.wait_for(lambda: metric(svc, "esbridge_passive_failed_total", target="nagios",
                                        reason="blocked") >= 2)  # fmt: skip
            assert passive_status(svc)["up"] is False
            assert_still_evaluating_and_bounded(svc, "nagios")

            # 3. the reader drains the pipe: delivery resumes, whole lines
            received = bytearray()

            def drained() -> bool:
                try:
                    while chunk := os.read(reader, 65536):
                        received.extend(chunk)
                except BlockingIOError:
                    pass
                lines = received.replace(b"#", b"").decode(errors="replace").splitlines()
                got = {
                    line.split(";")[2]
                    for line in lines
                    if "PROCESS_SERVICE_CHECK_RESULT;esbridge;" in line
                }
                return got >= set(NAMES) and passive_status(svc)["up"] is True

            svc.wait_for(drained)
            text = received.replace(b"#", b"").decode()
            crit = [ln for ln in text.splitlines() if ";p-crit;" in ln][-1]
            assert crit.split("] ", 1)[1].startswith(
                "PROCESS_SERVICE_CHECK_RESULT;esbridge;p-crit;2;CRITICAL - 5 "
            ), crit
            assert crit.endswith("| 'count'=5;1;3;0"), crit
    finally:
        if reader >= 0:
            os.close(reader)
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)


def test_wrong_fifo_path_is_reported(tmp_path: Path) -> None:
    """A command file that does not exist is its own failure reason (misconfiguration)."""
    from esbridge.passive import write_commands

    error = write_commands(str(tmp_path / "missing.cmd"), [b"x\n"], 1.0)
    assert not isinstance(error, tuple) and error.reason == "no_command_file"
