"""The API token is read once, at start; the request-body bound answers 413 for chunked bodies.

- A token file that becomes unreadable after start must not turn protected requests into
  500s: the service compares against the token it read at start (a rotation needs a restart).
- A token file unreadable at start stops ``esbridge serve`` before it listens, naming the file.
- A chunked body over the bound is a 413 with the middleware's JSON error (FastAPI's body
  parsing used to turn it into its own 400 "There was an error parsing the body").
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from esbridge import limits

CHECKS = "checks:\n  - {name: tk, kind: cluster_health}\n"


def _app(tmp_path: Path, config: str, **env: str) -> Any:
    """The app as the tests build it (``create_app(Service(...))``, no lifespan: no ES)."""
    import esbridge.api as api
    from esbridge.app import Service
    from esbridge.config import load_settings
    from esbridge.loader import load_text

    (tmp_path / "esbridge.yaml").write_text(config)
    settings = load_settings(tmp_path / "esbridge.yaml", state={"enabled": False})
    return api.create_app(Service(settings, load_text(CHECKS)))


@pytest.mark.parametrize("reads", [False, True])
def test_token_file_gone_after_start_is_not_a_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reads: bool
) -> None:
    """``mv token token.bak`` under a running service: writes (and, with
    require_token_for_reads, reads) keep the rules with the token read at start."""
    token = "api-" + uuid.uuid4().hex
    (tmp_path / "token").write_text(token + "\n")
    config = f"api:\n  token_file: token\n  require_token_for_reads: {str(reads).lower()}\n"
    app = _app(tmp_path, config)
    (tmp_path / "token").rename(tmp_path / "token.bak")
    (tmp_path / "token").write_text("rotated-" + token + "\n")  # no effect until a restart
    (tmp_path / "token").unlink()
    client = TestClient(app, raise_server_exceptions=False)
    good = {"Authorization": f"Bearer {token}"}
    reads_paths = ["/api/v1/checks", "/metrics", "/api/v1/status"] if reads else []
    # the reload last: without the lifespan the scheduler is not running after it
    for method, path in [*(("GET", p) for p in reads_paths), ("POST", "/api/v1/reload")]:
        assert client.request(method, path).status_code == 401, path
        bad = client.request(method, path, headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 403, (path, bad.status_code, bad.text)
        ok = client.request(method, path, headers=good)
        assert ok.status_code == 200, (path, ok.status_code, ok.text)


def test_token_file_changed_after_start_needs_a_restart(tmp_path: Path) -> None:
    """The token in memory stays the one read at start: the new file's token is refused."""
    (tmp_path / "token").write_text("old-token\n")
    app = _app(tmp_path, "api:\n  token_file: token\n")
    (tmp_path / "token").write_text("new-token\n")
    client = TestClient(app, raise_server_exceptions=False)
    assert client.post("/api/v1/reload", headers={"Authorization": "Bearer old-token"}).is_success
    new = client.post("/api/v1/reload", headers={"Authorization": "Bearer new-token"})
    assert new.status_code == 403, new.text


def test_unreadable_token_file_when_the_app_is_built_is_a_config_error(tmp_path: Path) -> None:
    from esbridge.config import ConfigError, load_settings, validate_references
    from esbridge.loader import load_text

    (tmp_path / "esbridge.yaml").write_text("api:\n  token_file: missing-token\n")
    with pytest.raises(ConfigError, match="missing-token"):
        _app(tmp_path, "api:\n  token_file: missing-token\n")
    settings = load_settings(tmp_path / "esbridge.yaml", state={"enabled": False})
    problems = [str(i) for i in validate_references(settings, load_text(CHECKS))]
    assert any("api.token_file" in p and "missing-token" in p for p in problems), problems


def test_serve_refuses_to_start_with_an_unreadable_token_file(tmp_path: Path) -> None:
    """``esbridge serve`` exits with the configuration problem, naming the file, and never
    listens (before: it started, and every protected request was a 500)."""
    (tmp_path / "esbridge.yaml").write_text("api:\n  token_file: missing-token\n")
    (tmp_path / "checks").mkdir()
    (tmp_path / "checks" / "checks.yaml").write_text(CHECKS)
    env = {**os.environ, "ESBRIDGE_STATE__ENABLED": "false"}
    command = [sys.executable, "-c", "import sys; from esbridge.cli import main; sys.exit(main())"]
    args = ["serve", "-c", str(tmp_path / "esbridge.yaml"), "--checks", str(tmp_path / "checks")]
    try:
        done = subprocess.run(
            [*command, *args, "--es-url", "http://127.0.0.1:9", "--port", str(_free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("esbridge serve started with an unreadable api.token_file")
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "not starting" in done.stderr
    assert "api.token_file" in done.stderr and "missing-token" in done.stderr, done.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ chunked body over the bound


async def _drive(app: Any, chunks: list[bytes], token: str) -> tuple[int, bytes, int]:
    """One chunked POST /api/v1/events through ``RequestLimits(app)``, ASGI level: (status,
    body, bytes of the request body the middleware and app took)."""
    from esbridge.httplimits import RequestLimits

    headers = [
        (b"host", b"testserver"),
        (b"content-type", b"application/json"),
        (b"transfer-encoding", b"chunked"),
        (b"authorization", f"Bearer {token}".encode()),
    ]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/api/v1/events",
        "raw_path": b"/api/v1/events",
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1),
        "server": ("testserver", 80),
    }
    pending = list(chunks)
    taken = 0

    async def receive() -> dict[str, Any]:
        nonlocal taken
        if not pending:
            await asyncio.sleep(3600)  # the client sent everything; it waits for the answer
        chunk = pending.pop(0)
        taken += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await asyncio.wait_for(RequestLimits(app)(scope, receive, send), 30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, taken


def test_chunked_body_over_the_bound_is_413(tmp_path: Path) -> None:
    import json

    (tmp_path / "token").write_text("tok\n")
    app = _app(tmp_path, "api:\n  token_file: token\n")
    chunk = b" " * 4096
    count = 4 * limits.MAX_REQUEST_BODY_BYTES // len(chunk)  # four times the bound
    status, body, taken = asyncio.run(_drive(app, [b"{"] + [chunk] * count + [b"}"], "tok"))
    assert status == 413, (status, body)
    assert json.loads(body) == {
        "error": f"request body larger than {limits.MAX_REQUEST_BODY_BYTES} bytes"
    }
    # reading stopped at the bound (memory bounded), not at the end of the body
    assert taken <= limits.MAX_REQUEST_BODY_BYTES + len(chunk) + 1


def test_chunked_body_within_the_bound_reaches_the_app(tmp_path: Path) -> None:
    """A small chunked body is read whole and handed to the app (not a 413, not a 400)."""
    (tmp_path / "token").write_text("tok\n")
    app = _app(tmp_path, "api:\n  token_file: token\n")
    event = b'{"service": "web", "version": "1.2.3"}'
    parts = [event[i : i + 5] for i in range(0, len(event), 5)]
    status, body, _ = asyncio.run(_drive(app, parts, "tok"))
    assert status not in (400, 413, 500), (status, body)
