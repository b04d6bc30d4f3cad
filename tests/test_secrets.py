"""Secrets never leak: not in the log, any API answer, /metrics, error texts, the state
store or the plugin's output.

One service runs every failure at once with known secret values: a good user, a readable
and a forbidden index, a wrong password, an API key the cluster rejects, a dead port and a
black hole (timeout), each with its own credentials, plus the API token. The secrets come
from files in one run and from environment variables in the other (never the command line;
esbridge has no flag for them). The log level is DEBUG to be as talkative as possible.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esbridge_dev.elasticsearch import free_port
from esbridge_dev.service import EsbridgeProcess
from faultproxy import FaultProxy
from secure_es import Provisioned, SecureES

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
CHECKS = ["ok-count", "forbidden-count", "wrong-count", "keyed-count", "dead-count", "hole-count"]


@pytest.fixture(scope="module")
def hole() -> Iterator[FaultProxy]:
    """Accepts connections, never answers (the TLS handshake never completes)."""
    with FaultProxy("127.0.0.1", 9) as proxy:
        proxy.blackhole = True
        yield proxy


def _variants(secret: str, user: str | None = None) -> set[str]:
    """The secret and the encodings it could leak in (Basic header, base64, URL quoting)."""
    out = {secret, base64.b64encode(secret.encode()).decode()}
    if user:
        out.add(base64.b64encode(f"{user}:{secret}".encode()).decode())
    if ":" in (decoded := _maybe_b64(secret)):
        out.update(part for part in decoded.split(":") if len(part) >= 8)
    return out


def _maybe_b64(text: str) -> str:
    try:
        return base64.b64decode(text, validate=True).decode()
    except ValueError:
        return ""


@pytest.mark.parametrize("source", ["files", "env"])
def test_no_secret_anywhere(
    secured: tuple[SecureES, Provisioned], hole: FaultProxy, tmp_path: Path, source: str
) -> None:
    sec, prov = secured
    tag = uuid.uuid4().hex[:10]
    wrong_pw = f"wrong-pw-{tag}"
    dead_pw = f"dead-pw-{tag}"
    hole_pw = f"hole-pw-{tag}"
    api_key = base64.b64encode(f"keyid{tag}:keysecret{tag}{tag}".encode()).decode()
    token = f"api-token-{tag}-{uuid.uuid4().hex}"
    state_index = f"esbridge-state-secrets-{tag}"
    secrets: dict[str, set[str]] = {
        "checks password": _variants(prov.checks_password, prov.checks_user),
        "store password": _variants(prov.store_password, prov.store_user),
        "wrong password": _variants(wrong_pw, prov.checks_user),
        "dead password": _variants(dead_pw, "esb_dead"),
        "hole password": _variants(hole_pw, "esb_hole"),
        "API key": _variants(api_key),
        "API token": _variants(token),
    }
    connections: dict[str, dict[str, Any]] = {
        "default": {"url": sec.url, "username": prov.checks_user, "password": prov.checks_password},
        "store": {"url": sec.url, "username": prov.store_user, "password": prov.store_password},
        "wrong": {"url": sec.url, "username": prov.checks_user, "password": wrong_pw},
        "keyed": {"url": sec.url, "api_key": api_key},
        "dead": {"url": f"https://127.0.0.1:{free_port()}", "username": "esb_dead",
                 "password": dead_pw},
        "hole": {"url": hole.url.replace("http:", "https:"), "username": "esb_hole",
                 "password": hole_pw},
    }  # fmt: skip
    env: dict[str, str] = {"ESBRIDGE_LOG__LEVEL": "DEBUG"}
    lines = ["elasticsearch:"]
    for name, conn in connections.items():
        lines += [f"  {name}:", f"    urls: ['{conn['url']}']", f"    ca_certs: {sec.ca_path}"]
        if "username" in conn:
            lines.append(f"    username: {conn['username']}")
        for key in ("password", "api_key"):
            if key not in conn:
                continue
            if source == "files":
                path = tmp_path / f"{name}.{key}"
                path.write_text(conn[key] + "\n")
                path.chmod(0o600)
                lines.append(f"    {key}_file: {path.name}")
            else:
                env[f"ESBRIDGE_ELASTICSEARCH__{name.upper()}__{key.upper()}"] = conn[key]
    lines += ["state:", "  connection: store", f"  index: {state_index}", "api:"]
    if source == "files":
        (tmp_path / "token").write_text(token + "\n")
        lines.append("  token_file: token")
    else:
        lines.append("  require_token_for_reads: false")
        env["ESBRIDGE_API__TOKEN"] = token
    config = tmp_path / "esbridge.yaml"
    config.write_text("\n".join(lines) + "\n")
    checks = tmp_path / "checks.yaml"
    data = f"index: '{prov.logs_index}', window: 1d, critical: 100"
    checks.write_text(
        "defaults:\n  interval: 6s\n  timeout: 3s\nchecks:\n"
        f"  - {{name: ok-count, kind: count, {data}}}\n"
        f"  - {{name: forbidden-count, kind: count, index: '{prov.secret_index}', "
        "window: 1d, critical: 100}\n"
        f"  - {{name: wrong-count, kind: count, {data}, cluster: wrong}}\n"
        f"  - {{name: keyed-count, kind: count, {data}, cluster: keyed}}\n"
        f"  - {{name: dead-count, kind: count, {data}, cluster: dead}}\n"
        f"  - {{name: hole-count, kind: count, {data}, cluster: hole}}\n"
    )
    texts: dict[str, str] = {}
    proc = EsbridgeProcess(None, [checks], config=config, env=env)
    with proc:
        got = proc.wait_for(
            lambda: (
                (c := {x["name"]: x for x in proc.get("/api/v1/checks").json()["checks"]})
                and all(c[n]["evaluated_at_ts"] for n in CHECKS)
                # a freshly booted TLS cluster on a loaded machine may time out the first
                # search (3 s, the black hole's bound): the next run of ok-count reads OK
                and c["ok-count"]["state"] == "OK"
                and c
            ),
            timeout=60,
        )
        # the scenario really happened: every failure kind is there
        assert got["ok-count"]["state"] == "OK", got["ok-count"]
        expect = {
            "forbidden-count": "forbidden: ",
            "wrong-count": "authentication failed",
            "keyed-count": "authentication failed",
            "dead-count": "Elasticsearch unreachable: connection refused",
            "hole-count": "Elasticsearch timed out after 3 s",
        }
        for name, start in expect.items():
            assert got[name]["summary"].startswith(start), got[name]
        proc.wait_for(lambda: proc.get("/readyz").json()["state_store"]["writable"], 20)
        auth = {"Authorization": f"Bearer {token}"}
        paths = [
            "/api/v1/checks",
            "/api/v1/status",
            "/readyz",
            "/healthz",
            "/metrics",
            "/openapi.json",
            "/",
            "/api/v1/checks/no-such-check",
            "/api/v1/checks/no-such-check/nagios",
        ]
        for name in CHECKS:
            paths += [f"/api/v1/checks/{name}", f"/api/v1/checks/{name}/nagios"]
        for path in paths:
            r = proc.get(path)
            texts[f"GET {path}"] = f"{r.headers}\n{r.text}"
        for path in [f"/api/v1/checks/{n}/run" for n in CHECKS] + ["/api/v1/reload"]:
            for headers in (auth, {"Authorization": "Bearer wrong"}, {}):
                r = proc.post(path, headers=headers)
                texts[f"POST {path} {list(headers.values())}"] = f"{r.headers}\n{r.text}"
        for name in CHECKS:
            plugin = subprocess.run(
                [PYTHON, "-I", "-S", str(PLUGIN), "-vvv", "-H", proc.url, "-C", name],
                capture_output=True,
                text=True,
                timeout=30,
                env={"PATH": "/usr/bin:/bin", "ESBRIDGE_TOKEN": token},
            )
            assert plugin.stdout.startswith(("OK - ", "UNKNOWN - ")), plugin
            texts[f"plugin {name}"] = plugin.stdout + plugin.stderr
        sec.request("POST", f"/{state_index}/_refresh")
        stored = sec.request("POST", f"/{state_index}/_search", json={"size": 100})
        assert stored.status_code == 200 and stored.json()["hits"]["hits"], stored.text
        texts["state store documents"] = stored.text
        assert proc.stop() == 0  # the shutdown lines belong to the log too
        texts["esbridge log"] = proc.log()
    sec.request("DELETE", f"/{state_index}", params={"ignore_unavailable": "true"})
    assert " DEBUG " in texts["esbridge log"] and "esbridge stopped" in texts["esbridge log"]

    leaks = [
        f"{what} in {where}"
        for where, text in texts.items()
        for what, values in secrets.items()
        if any(v in text for v in values)
    ]
    assert not leaks, leaks
    # and the texts are not empty by accident: error reasons are there
    assert "authentication failed" in texts["GET /api/v1/checks/wrong-count"]
    assert "connection refused" in texts["plugin dead-count"]
