"""The deployment gate and deploy events against a real esbridge and a real Elasticsearch.

One ``esbridge serve`` process for the module, checks every 1 s:

- ``gate-shop-*`` (tag ``shop``) stay OK: the gate passes after ``for``, and the deploy/
  examples (GitLab CI, GitHub Actions, Argo Rollouts) are run against them;
- ``gate-web-errors`` (tag ``web``) goes CRITICAL when error documents arrive after a recorded
  deploy: the gate fails within one check interval naming it, the transition says
  "started N s after deploy web 1.4.2 by ci" in the API, the log and the status page;
- ``gate-flaky`` reads through a proxy that starts answering 503: its result goes stale and the
  gate reads ``unknown``, never ``pass``.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from esbridge import limits
from esbridge_dev import httpcalls, sampledata
from esbridge_dev.seeding import seed
from esbridge_dev.service import EsbridgeProcess, poll
from test_service_support import CountingProxy, delete_index, json_lines

pytestmark = [pytest.mark.es, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
GATE_DIR = ROOT / "deploy" / "gate"
TOKEN = "gate-test-token-5b1c"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
INTERVAL = 1.0
ESBRIDGE = str(Path(sys.executable).parent / "esbridge")
MAPPINGS = sampledata.LOGS_TEMPLATE["template"]["mappings"]  # the sample web access logs


def sample_logs(start: float, end: float, rate: float, incident: Any) -> list[dict[str, Any]]:
    """The sample data generator's web access logs for [start, end), with its incidents."""
    gen = sampledata.Generator(incident=incident, seed=7)
    return [json.loads(doc) for _, doc in gen.log_docs(start, end, rate)]


def incident_from(at: float) -> Any:
    """The sample data's error burst (web-03: 40 % 5xx, 10x slower), starting at ``at``."""
    cycle = 86400.0
    begin = at % cycle
    return sampledata.IncidentSchedule(
        cycle_s=cycle,
        error_window=(begin, begin + 3600.0),
        silent_host=None,
        disk_host=None,
    )


def checks_yaml(web: str, shop: str) -> str:
    return f"""\
defaults: {{interval: 1s, timeout: 1s, window: 1h}}
checks:
  - {{name: gate-web-errors, kind: count, index: {web}, query: "host:web-03 AND status:>=500",
      critical: 5, tags: [web]}}
  - {{name: gate-shop-errors, kind: count, index: {shop}, query: "status:>=500", critical: 5,
      tags: [shop]}}
  - {{name: gate-shop-traffic, kind: count, index: {shop}, critical: "1:", tags: [shop]}}
  - {{name: gate-flaky, kind: count, index: {shop}, cluster: flaky, query: "status:>=500",
      critical: 5, interval: 2s, timeout: 2s, tags: [flaky]}}
"""


@pytest.fixture(scope="module")
def gate_env(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    suffix = uuid.uuid4().hex[:8]
    web, shop = f"gate-web-{suffix}", f"gate-shop-{suffix}"
    state, events = f"gate-state-{suffix}", f"gate-events-{suffix}"
    pipeline = f"gate-pipeline-deploys-{suffix}"  # what a pipeline writes on its own
    seeded_at = time.time()
    seed(
        es_url,
        pipeline,
        [
            {
                "app": {"name": "shop"},
                "release": "7.0.1",
                "user": "jenkins",
                "labels": ["shop"],
                "ago": "30m",
            }
        ],
    )
    for index in (web, shop):
        r = httpcalls.put(f"{es_url}/{index}", json={"mappings": MAPPINGS}, timeout=60)
        assert r.status_code == 200, r.text
    now = time.time()  # a minute of healthy sample traffic on the web index
    seed(es_url, web, sample_logs(now - 60, now, 10.0, sampledata.NO_INCIDENTS))
    seed(es_url, shop, [{"status": 200, "ago": f"{i}s"} for i in range(1, 10)])
    folder = tmp_path_factory.mktemp("gate")
    checks = folder / "checks.yaml"
    checks.write_text(checks_yaml(web, shop))
    with CountingProxy(es_url) as proxy:
        config = folder / "esbridge.yaml"
        config.write_text(
            f"elasticsearch:\n  default:\n    urls: [{es_url}]\n"
            f"  flaky:\n    urls: [{proxy.url}]\n    max_retries: 10\n"
            f"state: {{index: {state}}}\n"
            f"events:\n  index: {events}\n  refresh_interval: 1s\n"
            f"  pipeline:\n    index: {pipeline}\n"
            "    fields: {service: app.name, version: release, by: user, tags: labels}\n"
            f"api: {{token: {TOKEN}}}\n"
            "defaults: {staleness_factor: 4}\n"  # 1 s checks stay fresh under load
            "log: {format: json}\n"
        )
        svc = EsbridgeProcess(None, [checks], config=config)
        try:
            svc.start(wait=90)  # a loaded machine starts Python slowly
            svc.wait_for(
                lambda: all(c["state"] == "OK" for c in svc.get("/api/v1/checks").json()["checks"]),
                timeout=60,
            )
            yield {
                "svc": svc,
                "es_url": es_url,
                "web": web,
                "shop": shop,
                "events": events,
                "pipeline": pipeline,
                "pipeline_seeded_at": seeded_at,
                "proxy": proxy,
            }
        finally:
            svc.stop()
            svc.log_path.unlink(missing_ok=True)
            for index in (web, shop, state, events, pipeline):
                delete_index(es_url, index)


def gate(svc: EsbridgeProcess, timeout: float = 10.0, **params: Any) -> httpx.Response:
    return httpcalls.get(svc.url + "/api/v1/gate", params=params, timeout=timeout)


def run_gate_cli(svc: EsbridgeProcess, *args: str, timeout: float = 60) -> tuple[int, str]:
    p = subprocess.run(
        [ESBRIDGE, "gate", "--url", svc.url, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return p.returncode, p.stdout + p.stderr


# -- pass, pending, wait bounds --------------------------------------------------------------


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_gate_over_healthy_checks_is_pending_then_passes_after_for(gate_env: dict) -> None:
    svc = gate_env["svc"]
    first = gate(svc, tag="shop", **{"for": "3s"}).json()
    assert first["verdict"] == "pending", first
    assert {c["name"] for c in first["checks"]} == {"gate-shop-errors", "gate-shop-traffic"}
    assert 2.0 < first["remaining_seconds"] <= 3.0

    started = time.monotonic()
    r = gate(svc, timeout=30, tag="shop", since=str(first["start"]), wait="20s", **{"for": "3s"})
    held = time.monotonic() - started
    body = r.json()
    assert body["verdict"] == "pass", body
    assert all(c["verdict"] == "pass" and c["state"] == "OK" for c in body["checks"])
    assert held < 3.0 + 2 * INTERVAL + 2.0, held  # answered once the period was over


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_wait_never_holds_longer_than_its_deadline(gate_env: dict) -> None:
    svc = gate_env["svc"]
    for wait in (1.5, 3.0):
        started = time.monotonic()
        body = gate(svc, tag="shop", wait=f"{wait}s", **{"for": "1h"}).json()
        held = time.monotonic() - started
        assert body["verdict"] == "pending"
        assert wait <= held < wait + 1.0, (wait, held)
    too_long = gate(svc, tag="shop", wait="31m", **{"for": "10m"})
    assert too_long.status_code == 422 and "maximum 30m" in too_long.json()["error"]


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_bad_selections_are_errors_never_a_pass(gate_env: dict) -> None:
    svc = gate_env["svc"]
    none = gate(svc, check="gate-shop-erors", **{"for": "1s"})
    assert none.status_code == 404, none.text
    assert "gate-shop-errors" in none.json()["did_you_mean"]
    assert gate(svc, **{"for": "1s"}).status_code == 422  # no selection at all
    assert gate(svc, tag="shop", **{"for": "soon"}).status_code == 422
    assert gate(svc, tag="shop", since="yesterday", **{"for": "1s"}).status_code == 422
    for since, period in (("1e12", "1s"), ("nan", "1s"), ("inf", "1s"), ("-1s", "9999999w")):
        beyond = gate(svc, tag="shop", since=since, **{"for": period})  # was a 500
        assert beyond.status_code == 422 and "9999" in beyond.json()["error"], beyond.text


def raw_get(port: int, target: str, timeout: float) -> tuple[bytes, float]:
    """One GET on a fresh connection (``Connection: close``): the answer (b"" when closed
    without one) and how long it took."""

    async def ask() -> tuple[bytes, float]:
        started = time.monotonic()
        try:
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            data = await asyncio.wait_for(r.read(), timeout)
            w.close()
        except (TimeoutError, OSError):
            data = b""
        return data, time.monotonic() - started

    return asyncio.run(ask())


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_waiting_gate_requests_are_bounded_and_healthz_keeps_answering(gate_env: dict) -> None:
    """520 gate waits (more than the 512 connections): the first 32 are held, the rest get a
    429 with Retry-After at once, so /healthz still finds a connection (it used to be closed
    without an answer: a failed liveness probe, a restarted pod)."""
    svc = gate_env["svc"]
    flood = 520
    held_request = b"GET /api/v1/gate?tag=shop&for=1h&wait=10s HTTP/1.1\r\nHost: x\r\n\r\n"

    async def scenario() -> tuple[list[bytes], list[bytes]]:
        conns = []
        for _ in range(flood):
            r, w = await asyncio.open_connection("127.0.0.1", svc.port)
            w.write(held_request)
            await w.drain()
            conns.append((r, w))
        await asyncio.sleep(1.0)

        async def first_answer(r: asyncio.StreamReader) -> bytes:
            try:
                return await asyncio.wait_for(r.read(4096), 2.0)
            except TimeoutError:
                return b""  # still held
            except OSError:
                return b"reset"  # closed by the server

        answers = await asyncio.gather(*(first_answer(r) for r, _ in conns))
        probes = []
        for _ in range(3):
            r, w = await asyncio.open_connection("127.0.0.1", svc.port)
            w.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            try:
                probes.append(await asyncio.wait_for(r.read(), 5.0))
            except (TimeoutError, OSError):  # closed without an answer (reset)
                probes.append(b"")
            w.close()
        for _, w in conns:
            w.close()
        return answers, probes

    answers, probes = asyncio.run(scenario())
    assert all(p.startswith(b"HTTP/1.1 200") for p in probes), probes
    refused = [a for a in answers if a.startswith(b"HTTP/1.1 429")]
    held = [a for a in answers if not a]
    # Past MAX_CONNECTIONS the connection waiting longest for a request is closed to make
    # room; on a busy machine that can be one whose request the server has not read yet (its
    # client sees a reset): at most one per connection over the bound, never a held one.
    resets = [a for a in answers if a == b"reset"]
    others = sorted({a[:60] for a in answers if a and not a.startswith(b"HTTP/1.1 429")})
    assert len(held) == 32, (len(held), len(refused), others)
    assert len(refused) + len(resets) == flood - 32, (len(refused), others)
    assert len(resets) <= flood - limits.MAX_CONNECTIONS, len(resets)
    head, _, body = refused[0].partition(b"\r\n\r\n")
    assert b"retry-after: 10" in head.lower(), head
    error = json.loads(body)["error"]
    assert "already waiting" in error and "without wait" in error, error

    # the held ones are let go when their clients leave: waiting works again at once
    def waits() -> httpx.Response | None:
        r = gate(svc, tag="shop", wait="0.5s", **{"for": "1h"})
        return r if r.status_code == 200 else None

    assert poll(waits, timeout=10).json()["verdict"] == "pending"


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_selection_parameters_are_bounded_and_deduplicated(gate_env: dict) -> None:
    svc = gate_env["svc"]
    many = [f"gate-shop-{i}*" for i in range(101)]
    r = httpcalls.get(svc.url + "/api/v1/gate", params={"check": many, "for": "1s"}, timeout=10)
    assert r.status_code == 422, r.text
    assert "at most 100" in r.json()["error"] and "glob" in r.json()["error"], r.text
    both = {"check": many[:60], "tag": [f"t{i}" for i in range(41)], "for": "1s"}
    assert httpcalls.get(svc.url + "/api/v1/gate", params=both, timeout=10).status_code == 422
    # repeats count once: 700 times the same glob is one pattern
    same = {"check": ["gate-sh*"] * 700, "for": "1s"}
    r = httpcalls.get(svc.url + "/api/v1/gate", params=same, timeout=10)
    assert r.status_code == 200, r.text
    assert {c["name"] for c in r.json()["checks"]} == {"gate-shop-errors", "gate-shop-traffic"}
    # did-you-mean for the first few patterns only (a similarity search each)
    for typos, suggested in (
        (["zzz", "zzz", "gate-shop-erors"], ["gate-shop-errors"]),  # repeats count once
        (["zzz", "qqq", "xxx", "gate-shop-erors"], []),  # the 4th pattern is not searched
    ):
        r = httpcalls.get(
            svc.url + "/api/v1/gate", params={"check": typos, "for": "1s"}, timeout=10
        )
        assert r.status_code == 404, r.text
        assert suggested == [n for n in r.json()["did_you_mean"] if n == "gate-shop-errors"]


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_many_patterns_over_thousands_of_checks_never_stall_healthz(
    es_url: str, tmp_path: Path
) -> None:
    """1,500 check=z* over 5,000 checks took 7.6 s on the event loop, /healthz stalled as long."""
    checks = tmp_path / "checks.yaml"
    index = f"gate-many-{uuid.uuid4().hex[:8]}"  # never created: the checks read UNKNOWN
    checks.write_text(
        f"defaults: {{interval: 1h, timeout: 10s, index: {index}, window: 1h}}\n"
        "checks:\n"
        + "".join(
            f"  - {{name: bulk-check-{i:05d}, kind: count, critical: 9}}\n" for i in range(5000)
        )
    )
    env = {"ESBRIDGE_STATE__ENABLED": "false", "ESBRIDGE_EVENTS__ENABLED": "false"}
    with EsbridgeProcess(es_url, [checks], env=env) as svc:
        for patterns in (["z*"] * 1500, [f"*{'a*' * 50}b{i}" for i in range(100)]):
            target = "/api/v1/gate?for=1m&" + "&".join(f"check={p}" for p in patterns)
            worst = 0.0
            answer: list[bytes] = []

            def ask(target: str = target, answer: list[bytes] = answer) -> None:
                answer.append(raw_get(svc.port, target, 30)[0])

            asker = threading.Thread(target=ask)
            asker.start()
            while asker.is_alive():
                data, took = raw_get(svc.port, "/healthz", 30)
                assert data.startswith(b"HTTP/1.1 200"), data
                worst = max(worst, took)
                time.sleep(0.02)
            asker.join()
            assert answer[0].startswith(b"HTTP/1.1 404"), answer[0][:300]
            assert worst < 1.0, (len(patterns), worst)


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_openapi_describes_the_gate_and_the_events(gate_env: dict) -> None:
    spec = gate_env["svc"].get("/openapi.json").json()
    answer = spec["components"]["schemas"]["GateAnswer"]
    assert answer["properties"]["verdict"]["enum"] == ["pass", "fail", "pending", "unknown"]
    assert "for" in answer["properties"]
    assert "/api/v1/gate" in spec["paths"] and "post" in spec["paths"]["/api/v1/events"]
    assert "DeployEventIn" in spec["components"]["schemas"]


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_sigterm_answers_a_held_gate_request_at_once(gate_env: dict, tmp_path: Path) -> None:
    """A gate request held by wait does not delay a restart: it answers pending, exit is 0."""
    import signal
    import threading

    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "checks:\n  - {name: term-shop, kind: count, index: " + gate_env["shop"] + ","
        " query: 'status:>=500', critical: 5, interval: 1s, timeout: 1s, window: 1h,"
        " tags: [shop]}\n"
    )
    env = {"ESBRIDGE_STATE__ENABLED": "false", "ESBRIDGE_EVENTS__ENABLED": "false"}
    with EsbridgeProcess(gate_env["es_url"], [checks], env=env) as svc:
        svc.wait_for(lambda: svc.get("/api/v1/checks/term-shop").json()["state"] == "OK")
        got: dict[str, Any] = {}

        def ask() -> None:
            r = gate(svc, timeout=60, tag="shop", wait="30s", **{"for": "1h"})
            got["answer"], got["at"] = r.json(), time.monotonic()

        asker = threading.Thread(target=ask)
        asker.start()
        time.sleep(1.5)  # the request is being held
        signalled = time.monotonic()
        svc.signal(signal.SIGTERM)
        asker.join(30)
        assert got["answer"]["verdict"] == "pending", got
        assert got["at"] - signalled < 3.0, got["at"] - signalled
        assert svc.proc is not None and svc.proc.wait(20) == 0
        assert time.monotonic() - signalled < 8.0  # no 10 s graceful-shutdown timeout


# -- the CLI's exit codes ------------------------------------------------------------------


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_cli_exit_codes_pass_error_and_pending_timeout(gate_env: dict) -> None:
    svc = gate_env["svc"]
    code, out = run_gate_cli(svc, "--tag", "shop", "--for", "2s")
    assert code == 0, out
    assert re.search(r"^PASS +gate-shop-errors: OK since ", out, re.M), out
    assert "gate pass: all 2 checks" in out

    code, out = run_gate_cli(svc, "--check", "gate-shop-*", "--for", "1s", "--json")
    assert code == 0, out
    assert '"verdict": "pass"' in out

    # A relative --since is fixed once: the period ends (it restarted at every poll).
    code, out = run_gate_cli(svc, "--tag", "shop", "--since=-1s", "--for", "2s")
    assert code == 0 and "gate pass" in out, out
    code, out = run_gate_cli(svc, "--tag", "shop", "--since=1e12", "--for", "2s")
    assert code == 2 and "between 1970 and 9999" in out, out

    code, out = run_gate_cli(svc, "--check", "no-such-check", "--for", "1s")
    assert code == 2 and "HTTP 404" in out, out
    code, out = run_gate_cli(svc, "--for", "1s")
    assert code == 2 and "--check and/or --tag" in out, out
    # Unreachable: retried (esbridge may be restarting) until --timeout, then exit 2.
    nowhere = ["--url", "http://127.0.0.1:9", "--tag", "x", "--for", "1s", "--timeout", "3s"]
    unreachable = subprocess.run(
        [ESBRIDGE, "gate", *nowhere],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert unreachable.returncode == 2 and "cannot reach esbridge" in unreachable.stderr

    # No verdict before --timeout: unknown (3), never a pass.
    started = time.monotonic()
    code, out = run_gate_cli(svc, "--tag", "shop", "--for", "1h", "--timeout", "2s")
    assert code == 3 and "no verdict within the timeout" in out, out
    assert time.monotonic() - started < 15


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_cli_sends_the_token_when_reads_need_one(gate_env: dict, tmp_path: Path) -> None:
    """With require_token_for_reads, the CLI sends --token-file or $ESBRIDGE_TOKEN."""
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        "checks:\n  - {name: tok-shop, kind: count, index: " + gate_env["shop"] + ","
        " query: 'status:>=500', critical: 5, interval: 1s, timeout: 1s, window: 1h,"
        " tags: [shop]}\n"
    )
    bad, good = tmp_path / "bad-token", tmp_path / "token"
    bad.write_text("wrong\n")
    good.write_text(TOKEN + "\n")
    env = {
        "ESBRIDGE_API__TOKEN": TOKEN,
        "ESBRIDGE_API__REQUIRE_TOKEN_FOR_READS": "true",
        "ESBRIDGE_STATE__ENABLED": "false",
        "ESBRIDGE_EVENTS__INDEX": gate_env["events"],
    }
    with EsbridgeProcess(gate_env["es_url"], [checks], env=env) as svc:
        svc.wait_for(
            lambda: svc.get("/api/v1/checks/tok-shop", headers=AUTH).json()["state"] == "OK"
        )
        code, out = run_gate_cli(svc, "--tag", "shop", "--for", "1s")
        assert code == 2 and "HTTP 401" in out, out
        code, out = run_gate_cli(svc, "--tag", "shop", "--for", "1s", "--token-file", str(bad))
        assert code == 2 and "HTTP 403" in out, out
        code, out = run_gate_cli(svc, "--tag", "shop", "--for", "1s", "--token-file", str(good))
        assert code == 0, out
        p = subprocess.run(
            [ESBRIDGE, "gate", "--url", svc.url, "--tag", "shop", "--for", "1s"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "ESBRIDGE_TOKEN": TOKEN},
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert TOKEN not in p.stdout + p.stderr + out
        assert TOKEN not in svc.log()


# -- deploy events, the incident after a deploy, the status page ------------------------------


@pytest.fixture(scope="module")
def incident(gate_env: dict) -> dict[str, Any]:
    """A deploy of tag web, then the sample data's incident: gate-web-errors goes CRITICAL."""
    svc, es_url = gate_env["svc"], gate_env["es_url"]
    event = {"service": "web", "version": "1.4.2", "by": "ci", "tags": ["web"]}
    assert svc.post("/api/v1/events", json=event).status_code in (401, 403)
    r = svc.post("/api/v1/events", json=event, headers=AUTH)
    assert r.status_code == 201, r.text
    recorded = r.json()
    since = recorded["at"]
    first = gate(svc, tag="web", since=str(since), **{"for": "1m"}).json()
    assert first["verdict"] == "pending", first
    time.sleep(1.5)  # the deploy, then the incident a moment later
    # The traffic since the deploy, with the sample data's error burst starting after it.
    docs = sample_logs(since, time.time(), 200.0, incident_from(since + 0.5))
    errors = [d for d in docs if d["host"] == "web-03" and d["status"] >= 500]
    first_error = min(
        datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")).timestamp() for e in errors
    )
    assert len(errors) > 5 and first_error > since  # the incident starts after the deploy
    seed(es_url, gate_env["web"], docs)
    seeded = time.time()
    r = gate(svc, timeout=30, tag="web", since=str(since), wait="20s", **{"for": "1m"})
    return {"event": recorded, "since": since, "seeded": seeded, "answer": r.json()}


def test_pipeline_events_are_read_through_the_field_mapping(gate_env: dict) -> None:
    svc = gate_env["svc"]
    events = svc.wait_for(
        lambda: [
            e
            for e in svc.get("/api/v1/events", params={"tag": "shop"}).json()["events"]
            if e["source"] == gate_env["pipeline"]
        ]
    )
    assert [(e["service"], e["version"], e["by"], e["tags"]) for e in events] == [
        ("shop", "7.0.1", "jenkins", ["shop"])
    ]
    assert abs(gate_env["pipeline_seeded_at"] - events[0]["at"] - 30 * 60) < 5  # ago: 30m


def test_events_are_stored_in_elasticsearch_with_an_explicit_mapping(
    gate_env: dict, incident: dict
) -> None:
    es_url, index = gate_env["es_url"], gate_env["events"]
    mapping = httpcalls.get(f"{es_url}/{index}/_mapping", timeout=10).json()[index]["mappings"]
    assert mapping["dynamic"] == "strict"
    assert mapping["properties"]["tags"]["type"] == "keyword"
    assert mapping["properties"]["at"]["type"] == "date"
    doc = httpcalls.get(f"{es_url}/{index}/_doc/{incident['event']['id']}", timeout=10).json()
    assert doc["_source"]["version"] == "1.4.2" and doc["_source"]["tags"] == ["web"]
    listed = gate_env["svc"].get("/api/v1/events", params={"check": "gate-web-errors"}).json()
    assert [e["id"] for e in listed["events"]] == [incident["event"]["id"]]
    assert gate_env["svc"].get("/api/v1/events", params={"tag": "db"}).json()["events"] == []
    bad = gate_env["svc"].post("/api/v1/events", json={"version": "1"}, headers=AUTH)
    assert bad.status_code == 422 and "service" in bad.json()["error"]


def test_gate_fails_within_one_interval_of_an_incident_after_a_deploy(
    gate_env: dict, incident: dict
) -> None:
    body = incident["answer"]
    assert body["verdict"] == "fail", body
    failed = [c for c in body["checks"] if c["verdict"] == "fail"]
    assert [c["name"] for c in failed] == ["gate-web-errors"]
    assert failed[0]["state"] == "CRITICAL"
    assert re.match(r"\d+ matching documents in last 1h on gate-web-", failed[0]["summary"])
    assert body["reason"].startswith("gate-web-errors CRITICAL: ")
    # The bad transition came at the next run: within one interval (+ a run) of the documents.
    went_bad = failed[0]["since"]
    lag = went_bad - incident["seeded"]
    print(f"incident seeded -> CRITICAL recorded: {lag:.2f} s (interval {INTERVAL} s)")
    assert -0.5 < lag <= INTERVAL + 1.0, lag
    assert body["generated_at"] - went_bad < 1.0  # the waiting request answered right away


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_transition_after_deploy_in_api_and_log(gate_env: dict, incident: dict) -> None:
    svc = gate_env["svc"]
    detail = svc.get("/api/v1/checks/gate-web-errors").json()
    bad = next(t for t in detail["transitions"] if t["to"] == "CRITICAL")
    note = bad["after_deploy"]
    assert note is not None, bad
    assert note["event"]["id"] == incident["event"]["id"]
    assert re.fullmatch(r"started \d+ s after deploy web 1\.4\.2 by ci", note["text"]), note
    assert 0 < note["seconds_after"] < 15
    assert [d["id"] for d in detail["deploys"]] == [incident["event"]["id"]]
    # Checks of other tags are not linked to it.
    shop = svc.get("/api/v1/checks/gate-shop-errors").json()
    assert shop["deploys"] == [] and all(t.get("after_deploy") is None for t in shop["transitions"])
    lines = poll(
        lambda: [
            e
            for e in json_lines(svc.log())
            if e.get("logger") == "esbridge.state"
            and e.get("check") == "gate-web-errors"
            and e.get("new_state") == "CRITICAL"
        ]
    )
    assert lines[0]["after_deploy"] == note["text"]
    assert lines[0]["message"].endswith(f"({note['text']})")


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_preview_chart_data_marks_the_deploy(gate_env: dict, incident: dict) -> None:
    svc = gate_env["svc"]
    r = svc.get("/api/v1/checks/gate-web-errors/preview", params={"since": "10m", "step": "1m"})
    assert r.status_code == 200, r.text
    event = incident["event"]
    assert r.json()["markers"] == [{"at": event["at"], "label": "deploy web 1.4.2 by ci"}]
    shop = svc.get("/api/v1/checks/gate-shop-errors/preview", params={"since": "10m"}).json()
    assert all(m["label"] != "deploy web 1.4.2 by ci" for m in shop["markers"])


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_status_page_shows_the_deploy_beside_the_transition(
    gate_env: dict,
    incident: dict,
    browser: Any,
) -> None:
    from playwright.sync_api import expect

    svc = gate_env["svc"]
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.goto(svc.url + "/?check=gate-web-errors")
        items = page.locator("dialog#detail ol.history li")
        expect(items.first).to_be_visible()
        texts = items.all_inner_texts()
        bad = next(i for i, t in enumerate(texts) if "CRITICAL" in t and "after deploy" in t)
        assert re.search(r"started \d+ s after deploy web 1\.4\.2 by ci", texts[bad]), texts
        # Newest first: the deploy marker is the entry right below the transition it preceded.
        marker = items.nth(bad + 1)
        expect(marker).to_have_class(re.compile(r"\bdeploy\b"))
        expect(marker).to_contain_text("deploy web 1.4.2 by ci")
        # The preview chart in the same detail draws the deploy as a vertical marker.
        chart_marker = page.locator("dialog#detail svg line.marker")
        expect(chart_marker).to_have_count(1)
        expect(chart_marker.locator("title")).to_contain_text("deploy web 1.4.2 by ci")
        (ROOT / "test-artifacts").mkdir(exist_ok=True)
        page.screenshot(path=str(ROOT / "test-artifacts" / "status-deploy-marker.png"))
    finally:
        context.close()


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_cli_exits_1_naming_the_failed_check(gate_env: dict, incident: dict) -> None:
    since = str(incident["since"])
    code, out = run_gate_cli(gate_env["svc"], "--tag", "web", "--for", "1m", "--since", since)
    assert code == 1, out
    assert re.search(r"^FAIL +gate-web-errors: CRITICAL since ", out, re.M), out


# -- stale data ----------------------------------------------------------------------------


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_stale_result_reads_unknown_never_pass(gate_env: dict) -> None:
    svc, proxy = gate_env["svc"], gate_env["proxy"]
    poll(lambda: svc.get("/api/v1/checks/gate-flaky").json()["state"] == "OK")
    since = str(time.time())
    proxy.fail[r"_msearch"] = 503
    try:
        # With answers this gate would pass 2 s from now (as the shop gate does above).
        seen = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            body = gate(svc, check="gate-flaky", since=since, **{"for": "2s"}).json()
            seen.append(body["verdict"])
            if body["verdict"] != "pending":
                break
            time.sleep(0.3)
        assert seen[-1] == "unknown" and "pass" not in seen, seen
        check = body["checks"][0]
        assert check["state"] == "UNKNOWN" and "stale" in check["reason"], check
        code, out = run_gate_cli(svc, "--check", "gate-flaky", "--for", "1s")
        assert code == 3 and "UNKNOWN" in out, out
    finally:
        proxy.fail.clear()


# -- the deploy/ examples, run as written ----------------------------------------------------


def example_env(svc: EsbridgeProcess, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{Path(ESBRIDGE).parent}:{os.environ.get('PATH', '')}",
        "ESBRIDGE_URL": svc.url,
        "ESBRIDGE_TOKEN": TOKEN,
        **extra,
    }


def sh(line: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-euo", "pipefail", "-c", line],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_gitlab_ci_example_records_and_gates(gate_env: dict) -> None:
    svc = gate_env["svc"]
    doc = YAML(typ="safe").load((GATE_DIR / "gitlab-ci.yml").read_text())
    lines = [line for job in ("deploy-web", "verify-web") for line in doc[job]["script"]]
    calls = [line for line in lines if "api/v1/events" in line or "esbridge gate" in line]
    assert len(calls) == 2, lines
    env = example_env(
        svc,
        **{**doc["variables"], "GATE_TAG": "shop", "GATE_FOR": "2s"},
        CI_PROJECT_NAME="shop",
        CI_COMMIT_SHORT_SHA="abc1234",
    )
    for call in calls:
        done = sh(call, env)
        assert done.returncode == 0, (call, done.stdout, done.stderr)
    assert "gate pass" in done.stdout
    events = svc.get("/api/v1/events", params={"tag": "shop"}).json()["events"]
    assert any(e["version"] == "abc1234" and e["by"] == "gitlab-ci" for e in events), events
    # The same job fails the pipeline on the failing checks.
    failing = sh(calls[1], {**env, "GATE_TAG": "web", "GATE_FOR": "1m"})
    assert failing.returncode == 1, failing.stdout


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_github_actions_example_records_and_gates(gate_env: dict) -> None:
    svc = gate_env["svc"]
    doc = YAML(typ="safe").load((GATE_DIR / "github-actions.yml").read_text())
    job = doc["jobs"]["deploy"]
    steps = [s for s in job["steps"] if "run" in s]
    calls = [s for s in steps if "api/v1/events" in s["run"] or "esbridge gate" in s["run"]]
    assert len(calls) == 2, steps
    # ${{ ... }} values come from the repository settings: the test supplies them.
    plain = {k: v for k, v in job["env"].items() if "${{" not in v}
    assert set(job["env"]) - set(plain) == {"ESBRIDGE_URL"}
    env = example_env(svc, **{**plain, "GATE_TAG": "shop", "GATE_FOR": "2s"})
    for step in calls:
        step_env = {k: v for k, v in (step.get("env") or {}).items() if "${{" not in v}
        if "VERSION" in (step.get("env") or {}):
            step_env["VERSION"] = "0123456789abcdef0123"
        done = sh(step["run"], {**env, **step_env})
        assert done.returncode == 0, (step["run"], done.stdout, done.stderr)
    assert "gate pass" in done.stdout
    events = svc.get("/api/v1/events", params={"tag": "shop"}).json()["events"]
    assert any(e["version"] == "0123456789ab" and e["by"] == "github-actions" for e in events)


def argo_condition(expr: str, result: str) -> bool:
    """Evaluate the example's conditions (``result == "x"`` joined by ``||``/``&&``) exactly."""

    def term(text: str) -> bool:
        m = re.fullmatch(r'\s*result\s*(==|!=)\s*"([^"]*)"\s*', text)
        assert m, f'the test only understands result ==/!= "text": {text!r}'
        return (result == m.group(2)) == (m.group(1) == "==")

    return any(all(term(t) for t in part.split("&&")) for part in expr.split("||"))


@pytest.mark.version_independent  # gate logic over the store: once, in main
def test_argo_analysis_template_asks_the_gate(gate_env: dict) -> None:
    svc = gate_env["svc"]
    doc = YAML(typ="safe").load((GATE_DIR / "argo-analysistemplate.yaml").read_text())
    assert doc["kind"] == "AnalysisTemplate"
    metric = doc["spec"]["metrics"][0]
    web = metric["provider"]["web"]
    assert web["jsonPath"] == "{$.verdict}"
    args = {a["name"]: a.get("value") for a in doc["spec"]["args"]}

    def url(**override: str) -> str:
        values = {**args, "esbridge-url": svc.url, **override}
        return re.sub(r"\{\{args\.([\w-]+)\}\}", lambda m: values[m.group(1)], web["url"])

    wait = float(args["wait"].rstrip("m")) * 60
    assert web["timeoutSeconds"] > wait  # the gate answers before Argo gives up

    ok = httpcalls.get(url(tag="shop", **{"for": "2s", "wait": "20s"}), timeout=30).json()[
        "verdict"
    ]
    assert ok == "pass"
    assert argo_condition(metric["successCondition"], ok)
    assert not argo_condition(metric["failureCondition"], ok)

    bad = httpcalls.get(url(tag="web", **{"for": "1m", "wait": "20s"}), timeout=30).json()
    if bad["verdict"] == "fail":  # the web incident (tests above) is still on
        assert argo_condition(metric["failureCondition"], "fail")
    assert argo_condition(metric["failureCondition"], "unknown")
    assert not argo_condition(metric["successCondition"], "pending")
    assert not argo_condition(metric["failureCondition"], "pending")  # inconclusive


# -- last: it deletes the events index ---------------------------------------------------


def test_events_index_is_recreated_with_its_mapping_when_deleted(gate_env: dict) -> None:
    svc, es_url, index = gate_env["svc"], gate_env["es_url"], gate_env["events"]
    # A deleted events index must come back with the explicit mapping, not a dynamic one.
    delete_index(es_url, index)
    event = {"service": "shop", "version": "9", "by": "test", "tags": ["none-such"]}
    r = svc.post("/api/v1/events", json=event, headers=AUTH)
    assert r.status_code == 201, r.text
    mapping = httpcalls.get(f"{es_url}/{index}/_mapping", timeout=10).json()[index]["mappings"]
    assert mapping["dynamic"] == "strict"
