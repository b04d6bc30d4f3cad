"""check_esbridge against the REAL service: the copied single file, as Nagios runs it.

The plugin is copied to a folder under /tmp (outside the project) and run by the system
interpreter with ``-I -S`` from that folder, so nothing of the project or the venv can leak in.
Its output must be the service's ``/nagios`` body byte for byte plus one newline, and its exit
code the ``X-Nagios-Exit-Code`` header (tests/test_plugin.py covers the parsing against a fake).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esbridge_dev import httpcalls
from esbridge_dev.nagios import install_plugin
from esbridge_dev.seeding import seed
from esbridge_dev.service import EsbridgeProcess
from realclients import (
    STALE_RE,
    SYSTEM_PYTHON,
    TYPO_RE,
    Scenario,
    open_dir,
    running_scenario,
    tool,
)

pytestmark = [pytest.mark.clients, pytest.mark.es, pytest.mark.version_independent]

CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with open_dir("esbridge-plugin-") as d:
        yield d


@pytest.fixture(scope="module")
def plugin(folder: Path) -> Path:
    tool("python3", SYSTEM_PYTHON)
    return install_plugin(folder)


@pytest.fixture(scope="module")
def scenario(es_url: str, folder: Path) -> Iterator[Scenario]:
    with running_scenario(es_url, folder) as s:
        yield s


def run_plugin(
    plugin: Path, *args: str, env: dict[str, str] | None = None, python: str = SYSTEM_PYTHON
) -> subprocess.CompletedProcess[bytes]:
    flags = ["-I", "-S"] if python == SYSTEM_PYTHON else []
    return subprocess.run(
        [python, *flags, str(plugin), *args],
        capture_output=True,
        cwd=plugin.parent,
        env={**CLEAN_ENV, **(env or {})},
        timeout=60,
    )


@pytest.mark.parametrize(
    ("check", "group", "code"),
    [
        ("rc-ok", None, 0),
        ("rc-warning", None, 1),
        ("rc-critical", None, 2),
        ("rc-unknown", None, 3),
        ("web-5xx-errors", None, 1),
        ("web-5xx-errors", "host=web-01", 1),
        ("web-5xx-errors", "host=web-02", 0),
        ("web-5xx-errors", "host=web-99", 3),
    ],
)
def test_output_is_the_service_answer_byte_for_byte(
    scenario: Scenario, plugin: Path, check: str, group: str | None, code: int
) -> None:
    args = ["-H", scenario.url, "-C", check, *(["-g", group] if group else [])]
    proc = run_plugin(plugin, *args)
    status, body, headers = scenario.nagios(check, group)
    assert status == 200
    assert int(headers["x-nagios-exit-code"]) == code
    assert proc.stdout == body + b"\n"
    assert proc.returncode == code
    assert proc.stderr == b""


def test_grouped_check_output_is_multiline(scenario: Scenario, plugin: Path) -> None:
    """Long output (one line per group) and the group perfdata survive unchanged."""
    proc = run_plugin(plugin, "-H", scenario.url, "-C", "web-5xx-errors")
    lines = proc.stdout.decode().splitlines()
    assert len(lines) == 3, lines
    assert lines[0].startswith("WARNING - 1 of 2 groups not OK: web-01 WARNING"), lines
    assert "|" not in lines[0]
    assert lines[1].startswith("WARNING: web-01: 15 "), lines
    text, _, perf = lines[2].partition(" | ")
    assert text.startswith("OK: web-02: 5 "), lines
    assert perf == "'web-01'=15c;10;50;0 'web-02'=5c;10;50;0"


def test_max_age_turns_an_old_result_unknown(scenario: Scenario, plugin: Path) -> None:
    # rc-stale was evaluated once (interval 7d): wait until it is older than 1 s.
    time.sleep(1.2)
    proc = run_plugin(plugin, "-H", scenario.url, "-C", "rc-stale", "--max-age", "1")
    assert proc.returncode == 3
    text = proc.stdout.decode()
    assert text.count("\n") == 1 and STALE_RE.fullmatch(text.rstrip("\n")), text
    # a generous limit leaves the same result untouched
    proc = run_plugin(plugin, "-H", scenario.url, "-C", "rc-stale", "--max-age", "3600")
    assert proc.returncode == 0
    assert proc.stdout == scenario.body("rc-stale").encode() + b"\n"


def test_unknown_check_suggests_the_close_name(scenario: Scenario, plugin: Path) -> None:
    proc = run_plugin(plugin, "-H", scenario.url, "-C", "rc-critcal")
    assert proc.returncode == 3
    text = proc.stdout.decode()
    assert text.count("\n") == 1 and TYPO_RE.fullmatch(text.rstrip("\n")), text


def test_url_from_environment(scenario: Scenario, plugin: Path) -> None:
    proc = run_plugin(plugin, "-C", "rc-critical", env={"ESBRIDGE_URL": scenario.url})
    assert proc.returncode == 2
    assert proc.stdout == scenario.body("rc-critical").encode() + b"\n"


def test_direct_mode_against_real_elasticsearch(
    scenario: Scenario, plugin: Path, es_url: str
) -> None:
    """--direct evaluates now, without the service: same text as the service's evaluation."""
    # -t 30: importing esbridge and the client takes seconds of CPU on a loaded test machine
    args = ["--direct", "--checks", str(scenario.checks_file), "--es-url", es_url, "-t", "30"]
    proc = run_plugin(plugin, *args, "-C", "rc-critical", python=sys.executable)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stdout == scenario.body("rc-critical").encode() + b"\n"
    proc = run_plugin(plugin, *args, "-C", "web-5xx-errors", python=sys.executable)
    assert proc.returncode == 1
    assert proc.stdout == scenario.body("web-5xx-errors").encode() + b"\n"
    # the isolated system interpreter has no esbridge package: one honest line
    proc = run_plugin(plugin, *args, "-C", "rc-critical")
    assert proc.returncode == 3
    assert proc.stdout == b"UNKNOWN - direct mode needs the esbridge package installed\n"


def test_token_required_for_reads(es_url: str, plugin: Path) -> None:
    """Token from $ESBRIDGE_TOKEN or --token-file; none or a wrong one is one UNKNOWN line."""
    token = "rc-" + os.urandom(8).hex()
    with open_dir("esbridge-plugin-token-") as d, running_scenario(es_url, d, token=token) as s:
        base = ["-H", s.url, "-C", "rc-critical"]
        proc = run_plugin(plugin, *base, env={"ESBRIDGE_TOKEN": token})
        assert proc.returncode == 2
        assert proc.stdout == s.body("rc-critical").encode() + b"\n"

        token_file = d / "token"
        token_file.write_text(token + "\n")
        proc = run_plugin(plugin, *base, "--token-file", str(token_file))
        assert proc.returncode == 2
        assert proc.stdout == s.body("rc-critical").encode() + b"\n"

        proc = run_plugin(plugin, *base)
        assert proc.returncode == 3
        assert proc.stdout == (
            b"UNKNOWN - esbridge requires a token (HTTP 401), "
            b"set $ESBRIDGE_TOKEN or give --token-file PATH\n"
        )
        proc = run_plugin(plugin, *base, env={"ESBRIDGE_TOKEN": "wrong"})
        assert proc.returncode == 3
        assert proc.stdout == (
            b"UNKNOWN - esbridge refused the token (HTTP 403), "
            b"check $ESBRIDGE_TOKEN or the --token-file content\n"
        )
        assert token.encode() not in proc.stdout + proc.stderr
        url = s.url
        s.service.stop()

        # the service is gone: one line, exit 3, fast
        proc = run_plugin(plugin, *base, "-t", "5", env={"ESBRIDGE_TOKEN": token})
        assert proc.returncode == 3
        assert (
            proc.stdout
            == f"UNKNOWN - cannot reach esbridge at {url}: connection refused\n".encode()
        )


def test_precompiled_plugin_gives_the_same_bytes(scenario: Scenario, plugin: Path) -> None:
    """The documented fast start: the same file compiled once to .pyc by the system Python.

    Python never caches the bytecode of a script it runs, so compiling it is part of every
    plugin run; running the .pyc skips that. The output must not change.
    """
    pyc = plugin.with_name("check_esbridge.pyc")
    subprocess.run(
        [
            SYSTEM_PYTHON,
            "-I",
            "-c",
            "import py_compile, sys; "
            "py_compile.compile(sys.argv[1], cfile=sys.argv[2], doraise=True)",
            str(plugin),
            str(pyc),
        ],
        check=True,
        timeout=60,
    )
    for check, code in (("rc-ok", 0), ("rc-critical", 2)):
        proc = run_plugin(pyc, "-H", scenario.url, "-C", check)
        status, body, _ = scenario.nagios(check, None)
        assert status == 200
        assert proc.stdout == body + b"\n"
        assert proc.returncode == code


# --------------------------------------------------------------------------- HTTPS


class TlsFront:
    """A TLS-terminating front for the service (as a reverse proxy would be), in a thread.

    Certificate for localhost/127.0.0.1 signed by a CA made here; each connection forwards
    one request to the plain-HTTP service and relays the answer (the plugin sends
    ``Connection: close``).
    """

    def __init__(self, folder: Path, backend_port: int) -> None:
        from secure_es import make_pki

        pki = make_pki("localhost")
        self.ca = folder / "front-ca.crt"
        self.ca.write_bytes(pki.ca_cert)
        (folder / "front.crt").write_bytes(pki.node_cert)
        (folder / "front.key").write_bytes(pki.node_key)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(folder / "front.crt", folder / "front.key")
        self.backend_port = backend_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.handshakes_failed = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        try:
            with self.context.wrap_socket(raw, server_side=True) as client:
                request = b""
                while b"\r\n\r\n" not in request:
                    chunk = client.recv(65536)
                    if not chunk:
                        return
                    request += chunk
                with socket.create_connection(("127.0.0.1", self.backend_port)) as backend:
                    backend.sendall(request)
                    while chunk := backend.recv(65536):
                        client.sendall(chunk)
        except (ssl.SSLError, OSError):
            self.handshakes_failed += 1
            raw.close()

    def close(self) -> None:
        self.listener.close()


def test_https_url_verifies_the_certificate(scenario: Scenario, plugin: Path, folder: Path) -> None:
    """https:// goes through TLS with verification: trusted CA → same bytes; untrusted → UNKNOWN."""
    port = int(scenario.url.rsplit(":", 1)[1])
    front = TlsFront(folder, port)
    try:
        url = f"https://localhost:{front.port}"
        # OpenSSL's default verify paths honour SSL_CERT_FILE (even under -I): the CA bundle
        trusted = {"SSL_CERT_FILE": str(front.ca)}
        for check, code in (("rc-critical", 2), ("web-5xx-errors", 1)):
            proc = run_plugin(plugin, "-H", url, "-C", check, env=trusted)
            status, body, _ = scenario.nagios(check, None)
            assert status == 200
            assert proc.stdout == body + b"\n", proc.stdout
            assert proc.returncode == code and proc.stderr == b""
        assert front.handshakes_failed == 0

        proc = run_plugin(plugin, "-H", url, "-C", "rc-critical")  # system CAs only
        assert proc.returncode == 3, proc.stdout
        text = proc.stdout.decode()
        assert text.startswith(f"UNKNOWN - cannot reach esbridge at {url}: TLS error: "), text
        assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text, text
        assert text.count("\n") == 1
    finally:
        front.close()


# --------------------------------------------------------------------------- 8 KiB bound


def test_output_bound_of_8_kib_end_to_end(es_url: str, plugin: Path, folder: Path) -> None:
    """300 groups with long names: the service cuts at 8192 bytes, the plugin passes it on."""
    index = f"rc-big-{uuid.uuid4().hex[:8]}"
    state_index = f"rc-big-state-{uuid.uuid4().hex[:8]}"
    httpcalls.put(
        f"{es_url}/{index}",
        json={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"host": {"type": "keyword"}}},
        },
        timeout=60,
    ).raise_for_status()
    hosts = [f"web-{i:03d}-" + "x" * 60 for i in range(300)]
    seed(es_url, index, [{"ago": "1m", "host": h} for h in hosts for _ in range(2)])
    checks = folder / "big-checks.yaml"
    checks.write_text(
        "checks:\n"
        f"  - {{name: big, kind: count, index: {index}, window: 1h, group_by: [host],\n"
        "     max_groups: 1000, warning: 1, critical: 5, interval: 1h}\n"
    )
    try:
        with EsbridgeProcess(es_url, [checks], state_index=state_index) as svc:
            svc.wait_for(lambda: svc.get("/api/v1/checks/big").json()["runs"] >= 1, timeout=60)
            answer = svc.get("/api/v1/checks/big/nagios")
            proc = run_plugin(plugin, "-H", svc.url, "-C", "big")
        body = answer.content
        assert answer.headers["x-nagios-exit-code"] == "1"
        assert len(body) <= 8192 and len(body) > 8192 - 200, len(body)  # full, not half empty
        assert proc.returncode == 1
        assert proc.stdout == body + b"\n"
        lines = proc.stdout.decode().splitlines()
        assert lines[0].startswith("WARNING - ")
        assert re.match(r"\.\.\. \(\d+ more lines truncated", lines[-1]), lines[-1]
        assert len(lines) < 300  # groups were dropped, not the bound exceeded
    finally:
        for name in (index, state_index):
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)
