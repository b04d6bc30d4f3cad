"""snapshot checks: the newest snapshot of a real filesystem repository on the test cluster.

Test clusters set ``path.repo``; each test registers its own ``fs`` repository under it (read
from ``GET _nodes/settings``, so an external ``ESBRIDGE_TEST_ES_URL`` works too). PARTIAL is
a real snapshot of a red index (``partial: true``), IN_PROGRESS a real snapshot slowed by the
repository's ``max_snapshot_bytes_per_sec``. A FAILED snapshot cannot be produced on demand
on a single node, so that state is read from the ``_cat/snapshots`` row shape in a unit test.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from esbridge.evaluate import evaluate
from esbridge.models import SnapshotCheck
from esbridge.nagios import render
from esbridge.result import State
from esbridge_dev import httpcalls
from kinds_support import run_yaml


def _yaml(*checks: dict[str, Any]) -> str:
    return json.dumps({"checks": list(checks)})


def _repo_root(es_url: str) -> str:
    nodes = httpcalls.get(f"{es_url}/_nodes/settings", timeout=30).json()["nodes"]
    repo = next(iter(nodes.values()))["settings"]["path"]["repo"]
    return repo[0] if isinstance(repo, list) else repo


class Repo:
    """A registered fs repository; snapshots taken through it are deleted afterwards."""

    def __init__(self, es_url: str) -> None:
        self.url = es_url
        self.name = f"repo-{uuid.uuid4().hex[:8]}"
        self.location = f"{_repo_root(es_url)}/{self.name}"
        self.register()

    def register(self, **settings: Any) -> None:
        body = {"type": "fs", "settings": {"location": self.location, **settings}}
        r = httpcalls.put(f"{self.url}/_snapshot/{self.name}", json=body, timeout=60)
        assert r.status_code == 200, r.text

    def snapshot(self, name: str, indices: str, wait: bool = True, partial: bool = False) -> str:
        r = httpcalls.put(
            f"{self.url}/_snapshot/{self.name}/{name}",
            params={"wait_for_completion": str(wait).lower()},
            json={"indices": indices, "partial": partial, "include_global_state": False},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return str(r.json()["snapshot"]["state"]) if wait else "IN_PROGRESS"

    def wait_done(self, name: str) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            rows = httpcalls.get(
                f"{self.url}/_cat/snapshots/{self.name}", params={"format": "json"}, timeout=30
            ).json()
            if all(r["status"] != "IN_PROGRESS" for r in rows if r["id"] == name):
                return
            time.sleep(0.5)
        raise AssertionError(f"snapshot {name} still running")

    def remove(self) -> None:
        rows = httpcalls.get(
            f"{self.url}/_cat/snapshots/{self.name}", params={"format": "json"}, timeout=30
        ).json()
        for row in rows if isinstance(rows, list) else []:
            httpcalls.delete(f"{self.url}/_snapshot/{self.name}/{row['id']}", timeout=120)
        httpcalls.delete(f"{self.url}/_snapshot/{self.name}", timeout=60)


@pytest.fixture
def repo(es_url: str) -> Iterator[Repo]:
    made = Repo(es_url)
    try:
        yield made
    finally:
        made.remove()


@pytest.mark.es
async def test_missing_repository_is_unknown_naming_it(es_url: str) -> None:
    results = await run_yaml(es_url, _yaml({"name": "s", "kind": "snapshot", "repository": "nope"}))
    result = results["s"]
    assert result.state is State.UNKNOWN
    assert result.summary.startswith("no snapshot repository [nope] on this cluster")
    assert render(result).startswith("UNKNOWN - no snapshot repository [nope]")


@pytest.mark.es
async def test_empty_repository_is_no_data_critical_by_default(es_url: str, repo: Repo) -> None:
    text = _yaml(
        {"name": "default", "kind": "snapshot", "repository": repo.name},
        {"name": "relaxed", "kind": "snapshot", "repository": repo.name, "no_data": "warning"},
    )
    results = await run_yaml(es_url, text)
    assert results["default"].state is State.CRITICAL
    assert results["default"].summary == f"no data: no snapshot in repository {repo.name}"
    assert results["relaxed"].state is State.WARNING


@pytest.mark.es
async def test_newest_success_judged_by_age(
    es_url: str, repo: Repo, make_index: Callable[..., str], seed: Callable[..., Any]
) -> None:
    """A real SUCCESS snapshot: OK now; two hours later its age crosses critical 3600 s."""
    index = make_index("snap")
    seed(index, [{"ago": "1m", "n": i} for i in range(5)])
    assert repo.snapshot("nightly-1", index) == "SUCCESS"
    text = _yaml(
        {"name": "s", "kind": "snapshot", "repository": repo.name, "critical": 3600},
    )
    now = datetime.now(UTC)
    result = (await run_yaml(es_url, text, now))["s"]
    assert result.state is State.OK, result.summary
    assert result.summary.startswith(f"newest snapshot nightly-1 in repository {repo.name} is")
    assert "SUCCESS" in result.summary and "0 of 1 shards failed" in result.summary
    assert result.value is not None and 0 <= result.value < 120
    later = (await run_yaml(es_url, text, now + timedelta(hours=2)))["s"]
    assert later.state is State.CRITICAL
    assert "(critical > 3600)" in later.summary
    assert later.value is not None and later.value > 7000
    assert "'age'=" in render(later) and ";;3600;0" in render(later)


@pytest.mark.es
async def test_partial_newest_is_warning_and_failed_shards_named(
    es_url: str, repo: Repo, make_index: Callable[..., str]
) -> None:
    """A real PARTIAL snapshot (a red index, partial: true) after a SUCCESS one → WARNING."""
    green = make_index("snapg")
    assert repo.snapshot("ok-1", green) == "SUCCESS"
    red = f"snapred-{uuid.uuid4().hex[:8]}"
    r = httpcalls.put(
        f"{es_url}/{red}",
        params={"wait_for_active_shards": "0"},
        json={
            "settings": {
                "index": {
                    "number_of_shards": 1,
                    "number_of_replicas": 0,
                    "routing.allocation.require._name": "no-such-node",
                }
            }
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    try:
        time.sleep(1.1)  # a later start second: the PARTIAL one is the newest
        assert repo.snapshot("partial-1", red, partial=True) == "PARTIAL"
        text = _yaml({"name": "s", "kind": "snapshot", "repository": repo.name})
        result = (await run_yaml(es_url, text))["s"]
    finally:
        httpcalls.delete(f"{es_url}/{red}", timeout=60)
    assert result.state is State.WARNING, result.summary
    assert f"newest snapshot partial-1 in repository {repo.name} is PARTIAL" in result.summary
    assert "1 of 1 shards failed" in result.summary
    assert result.long_output[0].startswith("partial-1: PARTIAL")


@pytest.mark.es
async def test_in_progress_judges_the_newest_finished_one(
    es_url: str, repo: Repo, make_index: Callable[..., str], seed: Callable[..., Any]
) -> None:
    """A real running snapshot (slowed by the repository) is named; the finished one decides."""
    index = make_index("snapslow")
    assert repo.snapshot("done-1", index) == "SUCCESS"
    seed(index, [{"ago": "1m", "blob": uuid.uuid4().hex * 200} for _ in range(40)])
    repo.register(max_snapshot_bytes_per_sec="40kb")
    time.sleep(1.1)
    repo.snapshot("running-1", index, wait=False)
    try:
        text = _yaml({"name": "s", "kind": "snapshot", "repository": repo.name})
        result = (await run_yaml(es_url, text))["s"]
    finally:
        repo.wait_done("running-1")
    assert result.state is State.OK, result.summary
    assert f"newest snapshot done-1 in repository {repo.name} is SUCCESS" in result.summary
    assert "; running-1 in progress since" in result.summary


NOW = 1_790_000_000.0


def _rows(*rows: tuple[str, str, int]) -> dict[str, Any]:
    """``_cat/snapshots?format=json`` rows as Elasticsearch writes them (strings)."""
    return {
        "rows": [
            {
                "id": name,
                "status": status,
                "start_epoch": str(end - 5),
                "end_epoch": str(end) if status != "IN_PROGRESS" else "0",
                "failed_shards": "1" if status in ("FAILED", "PARTIAL") else "0",
                "total_shards": "1",
            }
            for name, status, end in rows
        ]
    }


@pytest.mark.parametrize(
    ("rows", "state", "text"),
    [
        ([("a", "SUCCESS", 100), ("b", "FAILED", 200)], State.CRITICAL, "b in repository r is FA"),
        ([("b", "FAILED", 200), ("a", "SUCCESS", 300)], State.OK, "a in repository r is SUCCESS"),
        ([("a", "SUCCESS", 100), ("c", "IN_PROGRESS", 400)], State.OK, "c in progress since"),
        ([("a", "FAILED", 100), ("c", "IN_PROGRESS", 400)], State.CRITICAL, "a in repository r is"),
        ([("c", "IN_PROGRESS", 400)], State.CRITICAL, "no finished snapshot in repository r"),
        ([("a", "INCOMPATIBLE", 100)], State.CRITICAL, "is INCOMPATIBLE"),
    ],
)  # fmt: skip
def test_snapshot_states_from_rows(rows: Any, state: State, text: str) -> None:
    check = SnapshotCheck(name="s", repository="r")
    result = evaluate(check, _rows(*rows), NOW)
    assert result.state is state, result.summary
    assert text in result.summary
