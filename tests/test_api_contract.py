"""The API's contract as ``/openapi.json`` states it: typed bodies, the error kinds, the token.

Pure: the app is built around a service that never starts (no Elasticsearch is asked); the
schemathesis run (tests/test_api_fuzz.py) checks live answers against this same schema.
"""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient

from esbridge.api import create_app
from esbridge.app import Service
from esbridge.config import ConnectionConfig, Settings
from esbridge.errors import ErrorKind
from esbridge.loader import load_text


def _schema() -> dict[str, Any]:
    settings = Settings(
        elasticsearch={"default": ConnectionConfig(urls=("http://127.0.0.1:9",))},
        state={"enabled": False},
    )
    checkset = load_text("checks:\n  - {name: c, kind: count, index: logs, critical: 1}\n")
    client = TestClient(create_app(Service(settings, checkset)))  # no lifespan: no ES
    return client.get("/openapi.json").json()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _json_body(schema: dict[str, Any], path: str, method: str = "get") -> dict[str, Any]:
    answer = schema["paths"][path][method]["responses"]["200"]
    return _resolve(schema, answer["content"]["application/json"]["schema"])


def test_every_json_route_has_a_described_body() -> None:
    schema = _schema()
    routes = {
        ("/api/v1/checks", "get"): "CheckList",
        ("/api/v1/checks/{name}", "get"): "CheckDetail",
        ("/api/v1/checks/{name}/run", "post"): "CheckSummary",
        ("/api/v1/reload", "post"): "ReloadAnswer",
        ("/api/v1/status", "get"): "StatusAnswer",
        ("/healthz", "get"): "HealthAnswer",
        ("/readyz", "get"): "Readiness",
    }
    for (path, method), model in routes.items():
        body = _json_body(schema, path, method)
        assert body.get("title") == model, (path, body)
        assert body.get("properties"), f"{path}: no fields described"


def test_result_groups_perfdata_and_transitions_are_typed() -> None:
    schema = _schema()
    components = schema["components"]["schemas"]
    detail = components["CheckDetail"]["properties"]
    assert "ResultBody" in str(detail["result"]) and "NagiosText" in str(detail["nagios"])
    assert "Transition" in str(detail["transitions"])
    result = components["ResultBody"]["properties"]
    assert "GroupBody" in str(result["groups"]) and "PerfdatumBody" in str(result["perfdata"])
    assert set(components["PerfdatumBody"]["properties"]) == {
        "label",
        "value",
        "uom",
        "warn",
        "crit",
        "min",
        "max",
    }
    assert "AfterDeploy" in str(components["Transition"]["properties"]["after_deploy"])


def test_error_kind_is_the_one_enum() -> None:
    schema = _schema()
    kind = schema["components"]["schemas"]["ErrorKind"]
    assert kind["enum"] == [k.value for k in ErrorKind]
    assert "ErrorKind" in str(schema["components"]["schemas"]["ResultBody"]["properties"])


def test_the_bearer_token_is_a_declared_security_scheme() -> None:
    schema = _schema()
    schemes = schema["components"]["securitySchemes"]
    (name,) = [n for n, s in schemes.items() if s == {**s, "type": "http", "scheme": "bearer"}]
    for path, method in (("/api/v1/reload", "post"), ("/api/v1/checks", "get")):
        assert {name: []} in schema["paths"][path][method]["security"], path


def test_error_kinds_are_documented_once_and_completely() -> None:
    """docs/checks.md's "Error kinds" table lists exactly the values of ``ErrorKind``."""
    import re
    from pathlib import Path

    from esbridge.errors import ErrorKind

    text = (Path(__file__).resolve().parents[1] / "docs" / "checks.md").read_text()
    section = text.split("## Error kinds", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \| (?!meaning)", section, re.M)
    assert sorted(documented) == sorted(k.value for k in ErrorKind)
    assert len(documented) == len(set(documented))


def test_a_stale_check_reads_unknown_since_it_went_stale_with_no_group_in_its_old_state() -> None:
    """The API over a result too old to count: UNKNOWN with the moment it went stale beside
    its last real transition, no group left OK."""
    import time

    from esbridge.result import GroupResult, Result, State

    settings = Settings(
        elasticsearch={"default": ConnectionConfig(urls=("http://127.0.0.1:9",))},
        state={"enabled": False},
    )
    checkset = load_text(
        "checks:\n  - {name: c, kind: count, index: logs, critical: 1, interval: 10s,"
        " group_by: host}\n"
    )
    service = Service(settings, checkset)
    service.store.sync({"c": 10.0})  # what start does (no lifespan here: no Elasticsearch)
    then = time.time() - 3600
    group = GroupResult((("host", "web-01"),), State.OK, 0.0, "web-01: 0 documents")
    service.store.record(Result("c", State.CRITICAL, "bad", evaluated_at=then - 86_400))
    service.store.record(Result("c", State.OK, "fine", groups=(group,), evaluated_at=then))
    client = TestClient(create_app(service))
    body = client.get("/api/v1/checks/c").json()
    assert (body["state"], body["stale"], body["since_ts"]) == ("UNKNOWN", True, then)
    assert body["stale_since_ts"] == then + 20  # 2 x the 10 s interval after the last result
    assert [g["state"] for g in body["result"]["groups"]] == ["UNKNOWN"]
    listed = client.get("/api/v1/checks").json()["checks"][0]
    assert listed["stale_since_ts"] == then + 20 and listed["groups_not_ok"] == 1
    text = client.get("/api/v1/checks/c/nagios").text
    assert "\nOK:" not in text and "UNKNOWN: stale, last OK: web-01" in text
