"""The HTTP API contract, against a real ``esbridge serve`` and a real Elasticsearch.

One service for the module (token configured, JSON logs) over a fixed index whose documents
are all days old and inside every check's window, so each evaluation gives the same numbers:
that is what lets the ``/nagios`` body be compared byte for byte with ``esbridge run``.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from esbridge_dev import httpcalls
from esbridge_dev.seeding import seed as seed_docs
from esbridge_dev.service import EsbridgeProcess
from test_service_support import delete_index, json_lines, poll, write

# The API's shape over the store; the searches behind it run per backend in the kinds tests.
pytestmark = [pytest.mark.es, pytest.mark.version_independent]

SUMMARY_FIELDS = {
    "name",
    "kind",
    "description",
    "state",
    "status_code",
    "summary",
    "value",
    "unit",
    "since",
    "since_ts",
    "stale_since",
    "stale_since_ts",
    "evaluated_at",
    "evaluated_at_ts",
    "stale",
    "tags",
    "labels",
    "error",
    "groups_not_ok",
    "owner",
    "age_seconds",
}
DETAIL_FIELDS = SUMMARY_FIELDS | {
    "definition",
    "result",
    "nagios",
    "previous_state",
    "last_success_ts",
    "consecutive_failures",
    "runs",
    "errors",
    "transitions",
    "deploys",
    "next_run_ts",
    "max_age_seconds",
    "plugin_command",
}
CHECK_NAMES = {"api-errors", "api-errors-by-host", "api-latency", "api-quiet"}


class Api:
    """The module's service plus everything it answered (for the secret scan)."""

    def __init__(self, service: EsbridgeProcess, token: str, checks: Path, es_url: str) -> None:
        self.service = service
        self.token = token
        self.checks = checks
        self.es_url = es_url
        self.answers: list[httpx.Response] = []

    def get(self, path: str, **kw: Any) -> httpx.Response:
        response = self.service.get(path, **kw)
        self.answers.append(response)
        return response

    def post(self, path: str, **kw: Any) -> httpx.Response:
        response = self.service.post(path, **kw)
        self.answers.append(response)
        return response

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def api(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    index = f"api-logs-{uuid.uuid4().hex[:8]}"
    httpcalls.put(
        f"{es_url}/{index}",
        json={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "host": {"type": "keyword"},
                    "service": {"type": "keyword"},
                    "status": {"type": "integer"},
                    "latency_ms": {"type": "double"},
                }
            },
        },
        timeout=60,
    ).raise_for_status()
    docs = []
    for i in range(60):
        docs.append(
            {
                "ago": f"{2 + i % 5}d",
                "host": f"web-0{1 + i % 3}",
                "service": "api" if i % 2 else "shop",
                "status": 503 if i % 4 == 0 else 200,
                "latency_ms": float(10 * (i % 7) + 5),
            }
        )
    seed_docs(es_url, index, docs)
    folder = tmp_path_factory.mktemp("api")
    checks = write(
        folder / "api.yaml",
        f"""defaults:
  index: {index}
  window: 30d
  interval: 2s
  tags: [api]
checks:
  - name: api-errors
    kind: count
    description: 5xx answers
    query: "status:>=500"
    warning: 5
    critical: 10
    unit: c
  - name: api-errors-by-host
    kind: count
    query: "status:>=500"
    group_by: [host, service]
    warning: 2
    critical: 4
  - name: api-latency
    kind: metric
    field: latency_ms
    agg: avg
    warning: 100
    critical: 200
    unit: ms
    tags: [latency]
  - name: api-quiet
    kind: count
    query: "status:404"
    no_data: ok
    critical: 1
""",
    )
    token = f"tok-{uuid.uuid4().hex}"
    state_index = f"esbridge-test-state-{uuid.uuid4().hex[:8]}"
    service = EsbridgeProcess(
        es_url,
        [checks],
        env={"ESBRIDGE_API__TOKEN": token},
        extra_args=["--log-format", "json"],
        state_index=state_index,
    )
    service.start()
    try:
        service.wait_for(
            lambda: service.get("/api/v1/checks").json()["counts"]["PENDING"] == 0, timeout=30
        )
        yield Api(service, token, checks, es_url)
    finally:
        service.stop()

        service.log_path.unlink(missing_ok=True)
        delete_index(es_url, index)
        delete_index(es_url, state_index)


def test_list_checks_fields_counts_and_order(api: Api) -> None:
    r = api.get("/api/v1/checks")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == {"checks", "counts", "generated_at", "total"}
    assert {c["name"] for c in body["checks"]} == CHECK_NAMES and body["total"] == 4
    for item in body["checks"]:
        assert set(item) == SUMMARY_FIELDS
    states = {c["name"]: c["state"] for c in body["checks"]}
    # 15 of 60 documents are 5xx: CRITICAL; per host/service at most 5: CRITICAL too.
    assert states == {
        "api-errors": "CRITICAL",
        "api-errors-by-host": "CRITICAL",
        "api-latency": "OK",
        "api-quiet": "OK",
    }
    assert body["counts"] == {"OK": 2, "WARNING": 0, "CRITICAL": 2, "UNKNOWN": 0, "PENDING": 0}
    assert [c["state"] for c in body["checks"]] == ["CRITICAL", "CRITICAL", "OK", "OK"]
    errors = next(c for c in body["checks"] if c["name"] == "api-errors")
    assert errors["value"] == 15.0 and errors["status_code"] == 2 and errors["stale"] is False
    # a single instance: no owner; the age is the time since the result was made
    assert errors["owner"] is None
    assert 0 <= errors["age_seconds"] <= body["generated_at"] - errors["evaluated_at_ts"] + 0.01
    assert errors["since"].endswith("Z") and errors["tags"] == ["api"]


def test_list_filters(api: Api) -> None:
    def names(**params: str) -> set[str]:
        r = api.get("/api/v1/checks", params=params)
        assert r.status_code == 200, r.text
        return {c["name"] for c in r.json()["checks"]}

    assert names(state="CRITICAL") == {"api-errors", "api-errors-by-host"}
    assert names(state="ok,warning") == {"api-latency", "api-quiet"}
    assert names(tag="latency") == {"api-latency"}
    assert names(q="api-err*") == {"api-errors", "api-errors-by-host"}
    assert names(q="*host") == {"api-errors-by-host"}
    assert names(q="quiet") == {"api-quiet"}
    assert names(state="CRITICAL", q="*host") == {"api-errors-by-host"}
    bad = api.get("/api/v1/checks", params={"state": "BROKEN"})
    assert bad.status_code == 422 and bad.headers["content-type"] == "application/json"
    assert "BROKEN" in bad.json()["error"] and "CRITICAL" in bad.json()["error"]


def test_check_detail(api: Api) -> None:
    r = api.get("/api/v1/checks/api-errors-by-host")
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) == DETAIL_FIELDS
    assert body["definition"]["group_by"] == ["host", "service"]
    assert body["runs"] >= 1 and body["consecutive_failures"] == 0
    assert body["transitions"] and body["transitions"][-1]["from"] is None
    assert set(body["transitions"][-1]) == {"at", "at_iso", "from", "to", "summary", "after_deploy"}
    assert body["transitions"][-1]["after_deploy"] is None and body["deploys"] == []
    assert body["max_age_seconds"] == 4.0  # 2 s interval x default staleness factor 2
    groups = body["result"]["groups"]
    assert {g["key_text"] for g in groups} >= {"host=web-01,service=shop"}
    assert body["nagios"]["exit_code"] == 2 and body["nagios"]["text"].startswith("CRITICAL - ")
    assert "-C api-errors-by-host" in body["plugin_command"]


def test_nagios_text_headers_and_groups(api: Api) -> None:
    r = api.get("/api/v1/checks/api-errors/nagios")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; charset=utf-8"
    assert r.headers["x-nagios-exit-code"] == "2"
    assert float(r.headers["x-esbridge-evaluated-at"]) > 0
    assert r.text.startswith("CRITICAL - 15 ") and "'count'=15c;5;10;0" in r.text

    one = api.get("/api/v1/checks/api-errors-by-host/nagios?group=host=web-01,service=shop")
    repeated = api.get(
        "/api/v1/checks/api-errors-by-host/nagios",
        params=[("group", "host=web-01"), ("group", "service=shop")],
    )
    assert one.status_code == repeated.status_code == 200
    assert one.text == repeated.text
    # The 5xx documents are i % 4 == 0 (all "shop"); web-01 is i % 3 == 0: i % 12 == 0 gives
    # 5 documents, above critical 4.
    assert one.text.startswith("CRITICAL - web-01/shop"), one.text
    assert one.headers["x-nagios-exit-code"] == repeated.headers["x-nagios-exit-code"] == "2"
    missing = api.get("/api/v1/checks/api-errors-by-host/nagios?group=host=nope")
    assert missing.status_code == 200 and missing.headers["x-nagios-exit-code"] == "3"
    assert missing.text.startswith("UNKNOWN - no group host=nope")


def test_unknown_check_is_404_with_close_names(api: Api) -> None:
    for response in (
        api.get("/api/v1/checks/api-erors"),
        api.get("/api/v1/checks/api-erors/nagios"),
        api.post("/api/v1/checks/api-erors/run", headers=api.auth),
    ):
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert body["error"] == "no check named 'api-erors'"
        assert "api-errors" in body["did_you_mean"]


def test_write_endpoints_need_the_bearer_token(api: Api) -> None:
    for path in ("/api/v1/checks/api-errors/run", "/api/v1/reload"):
        none = api.post(path)
        assert none.status_code == 401 and none.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in none.json()["error"]
        for header in ("Bearer", f"Token {api.token}", "Basic dXNlcjpwYXNz"):
            bad = api.post(path, headers={"Authorization": header})
            assert bad.status_code == 401, header
        wrong = api.post(path, headers={"Authorization": f"Bearer {api.token}x"})
        assert wrong.status_code == 403 and "not valid" in wrong.json()["error"]
    before = api.get("/api/v1/checks/api-quiet").json()["runs"]
    run = api.post("/api/v1/checks/api-quiet/run", headers=api.auth)
    assert run.status_code == 200 and set(run.json()) == SUMMARY_FIELDS
    assert api.get("/api/v1/checks/api-quiet").json()["runs"] > before
    reload = api.post("/api/v1/reload", headers=api.auth)
    assert reload.status_code == 200
    assert reload.json() == {
        "successful": True,
        "error": None,
        "added": [],
        "changed": [],
        "removed": [],
        "checks": 4,
    }


def test_probes_status_and_openapi(api: Api) -> None:
    health = api.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = api.get("/readyz")
    assert ready.status_code == 200 and ready.json()["ready"] is True
    assert ready.json()["elasticsearch"]["default"]["up"] is True
    status = api.get("/api/v1/status").json()
    assert status["checks"] == 4 and status["state_store"]["enabled"] is True
    docs = api.get("/docs")
    assert docs.status_code == 200 and "text/html" in docs.headers["content-type"]
    spec = api.get("/openapi.json").json()
    for path in (
        "/api/v1/checks",
        "/api/v1/checks/{name}",
        "/api/v1/checks/{name}/nagios",
        "/api/v1/checks/{name}/run",
        "/api/v1/reload",
    ):
        assert path in spec["paths"], path


@pytest.mark.parametrize("name", ["api-errors", "api-errors-by-host", "api-latency"])
def test_nagios_body_equals_esbridge_run_output(api: Api, name: str) -> None:
    """The service and the one-shot command print the same bytes for the same numbers."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "esbridge",
            "run",
            "--es-url",
            api.es_url,
            "--checks",
            str(api.checks),
            name,
        ],
        capture_output=True,
        timeout=60,
        check=False,
    )
    served = api.get(f"/api/v1/checks/{name}/nagios")
    assert run.stdout.endswith(b"\n") and not run.stdout.endswith(b"\n\n")
    assert served.content == run.stdout[:-1]
    assert served.headers["x-nagios-exit-code"] == str(run.returncode)


def test_one_json_log_line_per_state_change(api: Api) -> None:
    poll(lambda: api.get("/api/v1/checks/api-errors").json()["runs"] >= 3, timeout=20)
    lines = [e for e in json_lines(api.service.log()) if e.get("logger") == "esbridge.state"]
    assert sorted(e["check"] for e in lines) == sorted(CHECK_NAMES)  # one each, no repeats
    errors = next(e for e in lines if e["check"] == "api-errors")
    assert errors["old_state"] is None and errors["new_state"] == "CRITICAL"
    assert errors["summary"].startswith("15 ")
    assert "PENDING -> CRITICAL" in errors["message"]


def test_token_never_appears_in_responses_or_log(api: Api) -> None:
    """Run last in the module: scans everything answered so far plus the log."""
    api.get("/api/v1/status")
    api.get("/readyz")
    api.get("/metrics")
    api.get("/api/v1/checks/api-errors")
    api.post("/api/v1/reload", headers={"Authorization": f"Bearer {api.token}x"})
    assert len(api.answers) > 20
    for response in api.answers:
        assert api.token not in response.text
        assert all(api.token not in v for v in response.headers.values())
    assert api.token not in api.service.log()


def test_cluster_endpoint_on_a_single_instance(api: Api) -> None:
    r = api.get("/api/v1/cluster")
    assert r.status_code == 200
    assert r.json() == {"enabled": False, "replica": None, "live_members": [], "members": []}
    metrics = api.get("/metrics").text
    assert "esbridge_cluster_members" not in metrics and "esbridge_checks_owned" not in metrics
