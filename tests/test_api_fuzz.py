"""API fuzzing: schemathesis against the running service's own /openapi.json.

Every operation gets a fixed, derandomized budget of generated requests (valid and
invalid). The service must never answer 5xx (503 from /readyz is documented and allowed),
and every answer must match the documented status codes, content types and response
schemas. Writes are sent with the token, so run-now and reload are exercised for real.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess

# The API's contract, not the searches: once, in main.
pytestmark = pytest.mark.version_independent


def _hypothesis_jsonschema_compat() -> None:
    """hypothesis-jsonschema 0.23 calls ``many(...).more()``, which newer Hypothesis
    releases replaced by ``with many(...) as e: for _ in e``. Give only that module an
    adapter with the old interface (Hypothesis itself is left alone)."""
    import types

    import hypothesis_jsonschema._from_schema as from_schema
    from hypothesis.internal.conjecture import utils as cu

    if hasattr(cu.many, "more"):
        return

    class _Many:
        def __init__(self, data: Any, **sizes: Any) -> None:
            self._many = cu.many(data, **sizes)
            self._many.__enter__()
            self._elements = iter(self._many)

        def more(self) -> bool:
            try:
                next(self._elements)
            except StopIteration:
                self._many.__exit__(None, None, None)
                return False
            return True

        def reject(self, why: str | None = None) -> None:
            self._many.reject(why)

    shim = types.ModuleType("cu_compat")
    shim.__dict__.update(vars(cu))
    shim.many = _Many  # type: ignore[attr-defined]
    from_schema.cu = shim  # type: ignore[attr-defined]


_hypothesis_jsonschema_compat()

# FastAPI writes OpenAPI 3.1; schemathesis 3.x supports it behind this switch.
schemathesis.experimental.OPEN_API_3_1.enable()

TOKEN = "fuzz-token-" + uuid.uuid4().hex
MAX_EXAMPLES = 30


@pytest.fixture(scope="module")
def fuzz_service(
    es_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EsbridgeProcess]:
    folder = tmp_path_factory.mktemp("fuzz")
    index = f"fuzz-logs-{uuid.uuid4().hex[:8]}"
    httpcalls.put(
        f"{es_url}/{index}",
        json={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"host": {"type": "keyword"}}},
        },
        timeout=60,
    ).raise_for_status()
    from esbridge_dev.seeding import seed

    seed(es_url, index, [{"ago": "1m", "host": f"web-0{i % 3}"} for i in range(6)])
    checks = folder / "checks.yaml"
    checks.write_text(
        "defaults:\n  interval: 5s\nchecks:\n"
        f"  - {{name: fuzz-count, kind: count, index: '{index}', critical: 100, "
        "group_by: host, tags: [web]}\n"
        "  - {name: fuzz-health, kind: cluster_health}\n"
        f"  - {{name: fuzz-missing, kind: count, index: 'no-such-{index}', critical: 1}}\n"
    )
    state = f"esbridge-state-fuzz-{uuid.uuid4().hex[:8]}"
    events = f"esbridge-events-fuzz-{uuid.uuid4().hex[:8]}"  # fuzzed deploys stay here
    env = {"ESBRIDGE_API__TOKEN": TOKEN, "ESBRIDGE_EVENTS__INDEX": events}
    proc = EsbridgeProcess(es_url, [checks], env=env, state_index=state)
    with proc:
        proc.wait_for(
            lambda: all(c["evaluated_at_ts"] for c in proc.get("/api/v1/checks").json()["checks"]),
            timeout=30,
        )
        yield proc
    for name in (index, state, events):
        httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=30)


@pytest.fixture(scope="module")
def api_schema(fuzz_service: EsbridgeProcess) -> Any:
    return schemathesis.openapi.from_uri(
        f"{fuzz_service.url}/openapi.json", base_url=fuzz_service.url
    )


schema = schemathesis.openapi.from_pytest_fixture("api_schema")


def not_a_server_error(response: Any, case: Any) -> None:
    """No 5xx, except the documented 503 of /readyz."""
    if response.status_code >= 500 and not (case.path == "/readyz" and response.status_code == 503):
        raise AssertionError(f"server error {response.status_code}: {response.text[:500]}")


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_fuzz(case: Any, fuzz_service: EsbridgeProcess) -> None:
    case.headers = {**(case.headers or {}), "Authorization": f"Bearer {TOKEN}"}
    response = case.call(timeout=30)
    case.validate_response(
        response,
        checks=(
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ),
    )


def test_service_survived_the_fuzzing(fuzz_service: EsbridgeProcess) -> None:
    """After the fuzzing the service still evaluates and serves its checks."""
    assert fuzz_service.proc is not None and fuzz_service.proc.poll() is None
    names = {c["name"] for c in fuzz_service.get("/api/v1/checks").json()["checks"]}
    assert names == {"fuzz-count", "fuzz-health", "fuzz-missing"}
    assert "Traceback" not in fuzz_service.log(), fuzz_service.log()[-3000:]
