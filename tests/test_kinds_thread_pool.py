"""thread_pool checks: real ``write`` rejections on a cluster with a one-slot write queue.

A dedicated cluster starts with ``thread_pool.write.size: 1`` and ``queue_size: 1``; concurrent
``_bulk`` requests then get real ``es_rejected_execution_exception`` answers, and the node's
own ``_nodes/stats`` counter is the ground truth the check's per-run count is compared with.
The first run is a baseline (OK, no value), a run after rejections alerts with exactly the
increase, the next quiet run is back to 0, and after a real node restart (the counter starts
again from 0) nothing alerts falsely.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from conftest import BACKEND_NAME, new_server
from esbridge.evaluate import evaluate
from esbridge.models import ThreadPoolCheck
from esbridge.nagios import render
from esbridge.result import Result, State
from esbridge_dev import httpcalls
from kinds_support import run_yaml

TEXT = json.dumps(
    {
        "checks": [
            {"name": "tp", "kind": "thread_pool", "pools": "write", "critical": 0},
            {"name": "tp-default", "kind": "thread_pool"},
        ]
    }
)


@pytest.fixture(scope="module")
def tiny_queue() -> Iterator[Any]:
    server = new_server(settings={"thread_pool.write.size": 1, "thread_pool.write.queue_size": 1})
    try:
        server.start()
    except Exception as e:
        server.stop()
        pytest.fail(f"could not start a {BACKEND_NAME} with a one-slot write queue: {e}")
    try:
        yield server
    finally:
        server.stop()


def _rejected(url: str) -> tuple[str, int]:
    nodes = httpcalls.get(f"{url}/_nodes/stats/thread_pool", timeout=30).json()["nodes"]
    node = next(iter(nodes.values()))
    return node["name"], int(node["thread_pool"]["write"]["rejected"])


async def _flood(url: str, index: str) -> int:
    """Concurrent bulk requests until the write pool rejects some; the 429s seen."""
    lines = "".join(
        json.dumps({"index": {}}) + "\n" + json.dumps({"n": i, "text": "x" * 200}) + "\n"
        for i in range(300)
    )
    seen = 0
    async with httpx.AsyncClient(timeout=60) as client:

        async def one() -> int:
            r = await client.post(
                f"{url}/{index}/_bulk",
                content=lines,
                headers={"content-type": "application/x-ndjson"},
            )
            body = r.text
            return int(r.status_code == 429 or "rejected_execution_exception" in body)

        for _ in range(10):
            seen += sum(await asyncio.gather(*(one() for _ in range(40))))
            if seen:
                break
    return seen


@pytest.mark.es
async def test_real_write_rejections_counted_per_run(tiny_queue: Any) -> None:
    url = tiny_queue.url
    httpcalls.put(f"{url}/flood", json={"settings": {"number_of_replicas": 0}}, timeout=60)
    node, before = _rejected(url)

    first = await run_yaml(url, TEXT)
    baseline = first["tp"]
    assert baseline.state is State.OK, baseline.summary
    write = baseline.group(f"node={node},pool=write")
    assert write is not None and write.value is None
    assert f"baseline: {before} rejected since the node started" in write.summary

    assert await _flood(url, "flood") > 0
    node, after = _rejected(url)
    assert after > before

    second = await run_yaml(url, TEXT, previous=first)
    write = second["tp"].group(f"node={node},pool=write")
    assert write is not None
    assert write.value == after - before  # exactly the node's own counter increase
    assert second["tp"].state is State.CRITICAL
    assert second["tp-default"].state is State.WARNING  # default warning: 0
    text = render(second["tp"])
    assert text.startswith(f"CRITICAL - 1 of 1 pools not OK: {node}/write CRITICAL")
    assert f"'{node}/write_total'={after}c" in text

    third = await run_yaml(url, TEXT, previous=second)
    write = third["tp"].group(f"node={node},pool=write")
    assert write is not None and write.value == 0
    assert third["tp"].state is State.OK

    # A real restart: the node counts from 0 again, below the previous total.
    tiny_queue.kill()
    tiny_queue.restart()
    _, restarted = _rejected(url)
    assert restarted < after
    fourth = await run_yaml(url, TEXT, previous=third)
    write = fourth["tp"].group(f"node={node},pool=write")
    assert write is not None and write.value == restarted
    assert "counter reset" in write.summary
    assert fourth["tp"].state is (State.OK if restarted == 0 else State.CRITICAL)


def _stats(rejected: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        "nodes": {
            name: {
                "name": name,
                "thread_pool": {pool: {"rejected": n, "queue": 0} for pool, n in pools.items()},
            }
            for name, pools in rejected.items()
        }
    }


def test_groups_per_node_and_pool_and_what_first_and_reset_show() -> None:
    """Pure: baseline, increase, reset and a new node, from the previous result's totals."""
    check = ThreadPoolCheck(name="tp", pools=["write", "search"], warning=5, critical=50)
    first = evaluate(check, _stats({"a": {"write": 10, "search": 0, "get": 3}}), 1.0)
    assert first.state is State.OK
    assert {g.key for g in first.groups} == {
        (("node", "a"), ("pool", "write")),
        (("node", "a"), ("pool", "search")),
    }  # only the pools asked for ("get" is left out)
    assert all(g.value is None for g in first.groups)
    later = _stats({"a": {"write": 17, "search": 2}, "b": {"write": 100, "search": 0}})
    second: Result = evaluate(check, later, 61.0, previous=first)
    values = {g.label: (g.value, g.state) for g in second.groups}
    assert values["a/write"] == (7, State.WARNING)
    assert values["a/search"] == (2, State.OK)
    assert values["b/write"] == (None, State.OK)  # a node seen for the first time: baseline
    assert second.state is State.WARNING
    reset = evaluate(check, _stats({"a": {"write": 3, "search": 0}}), 121.0, previous=second)
    write = reset.group("a/write")
    assert write is not None and write.value == 3 and write.state is State.OK
    assert "counter reset" in write.summary
    everything = ThreadPoolCheck(name="all", pools="*")
    every = evaluate(everything, _stats({"a": {"write": 1, "get": 2}}), 1.0)
    assert {g.label for g in every.groups} == {"a/get", "a/write"}


@pytest.mark.es
def test_service_hands_the_stored_result_to_the_next_run(es_url: str, tmp_path: Any) -> None:
    """In the service, the second run compares with the stored first one: a count, not a
    baseline (and no false alert on a cluster that rejects nothing)."""
    from esbridge_dev.service import EsbridgeProcess
    from test_service_support import delete_index, poll, write

    checks = write(
        tmp_path / "tp.yaml",
        "checks:\n  - {name: tp, kind: thread_pool, pools: write, interval: 2s}\n",
    )
    state_index = f"esbridge-test-state-{uuid.uuid4().hex[:8]}"
    seen: list[dict[str, Any]] = []

    def counted() -> bool:
        detail = service.get("/api/v1/checks/tp").json()
        groups = (detail.get("result") or {}).get("groups") or []
        seen.append(detail)
        return bool(groups) and all(g.get("value") is not None for g in groups)

    service = EsbridgeProcess(es_url, [checks], port=None, state_index=state_index)
    try:
        with service:
            poll(counted, timeout=60)
    finally:
        delete_index(es_url, state_index)
    result = seen[-1]["result"]
    assert result["state"] == "OK"
    assert [g["value"] for g in result["groups"]] == [0]
    assert "rejected since the previous run" in result["groups"][0]["summary"]
    # it took a previous run: the first one, a baseline, was the stored result it compared with
    assert seen[-1]["runs"] >= 2
