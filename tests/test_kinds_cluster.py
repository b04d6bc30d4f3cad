"""Cluster kinds against the real single-node cluster (and a second one for split brain).

A single node can never allocate a replica: an index with ``number_of_replicas: 1`` is yellow
with exactly one unassigned shard, and one that requires a non-existent node is red. That
gives known answers for cluster_health and unassigned_shards without touching the cluster.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from conftest import BACKEND_NAME
from esbridge.nagios import render
from esbridge.result import State
from esbridge_dev import httpcalls
from kinds_support import run_yaml

pytestmark = pytest.mark.es


def checks_yaml(checks: list[dict[str, Any]]) -> str:
    return json.dumps({"checks": checks})


@pytest.fixture
def node_name(es_url: str) -> str:
    nodes = httpcalls.get(f"{es_url}/_nodes/_local", timeout=10).json()["nodes"]
    return next(iter(nodes.values()))["name"]


@pytest.fixture
def red_index(es_url: str) -> Iterator[str]:
    """An index whose primary can never be allocated (it requires a node that does not exist)."""
    name = f"red-{uuid.uuid4().hex[:8]}"
    settings = {
        "number_of_shards": 1,
        "number_of_replicas": 0,
        "routing.allocation.require._name": "no-such-node",
    }
    r = httpcalls.put(
        f"{es_url}/{name}",
        params={"wait_for_active_shards": "0"},
        json={"settings": {"index": settings}},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    try:
        yield name
    finally:
        httpcalls.delete(f"{es_url}/{name}", timeout=60)


async def test_cluster_health_scoped_to_an_index(
    es_url: str, make_index: Callable[..., str], red_index: str
) -> None:
    """``index:`` scopes health: replicas=1 yellow WARNING, replicas=0 green OK, red CRITICAL."""
    yellow = make_index("yel", settings={"number_of_replicas": 1})
    green = make_index("grn")
    text = checks_yaml(
        [
            {"name": "yellow", "kind": "cluster_health", "index": yellow},
            {"name": "green", "kind": "cluster_health", "index": green},
            {"name": "red", "kind": "cluster_health", "index": red_index},
            {"name": "whole", "kind": "cluster_health"},
        ]
    )
    results = await run_yaml(es_url, text)
    assert results["yellow"].state is State.WARNING
    assert f"is yellow for {yellow}: 1 node, 1 active shards" in results["yellow"].summary
    assert "1 unassigned" in results["yellow"].summary
    assert render(results["yellow"]).endswith("'unassigned_shards'=1;;;0")
    assert results["green"].state is State.OK
    assert f"is green for {green}:" in results["green"].summary
    assert render(results["green"]).startswith("OK - cluster ")
    assert results["red"].state is State.CRITICAL
    assert f"is red for {red_index}:" in results["red"].summary
    # The whole cluster is red while the red index exists; the shared cluster says so too.
    whole = results["whole"]
    assert whole.state is State.CRITICAL
    assert " is red: " in whole.summary
    assert " for " not in whole.summary


async def test_indices_that_match_nothing_are_unknown_never_green(es_url: str) -> None:
    """A pattern that matches no index answers green with no shard: a typo, or an index
    deleted, must not read as healthy. ``nodes`` counts the cluster whatever its index."""
    none = f"nothing-{uuid.uuid4().hex[:8]}"
    text = checks_yaml(
        [
            {"name": "health", "kind": "cluster_health", "index": f"{none}-*"},
            {
                "name": "unassigned",
                "kind": "unassigned_shards",
                "index": f"{none}-*",
                "critical": 1,
            },
            {"name": "nodes", "kind": "nodes", "index": none, "expected_nodes": 1},
            # a concrete name was waited for up to 30 s, then "HTTP 408 ... or a proxy"
            {"name": "health-named", "kind": "cluster_health", "index": none, "timeout": "20s"},
            {
                "name": "unassigned-named",
                "kind": "unassigned_shards",
                "index": none,
                "critical": 1,
                "timeout": "20s",
            },
        ]
    )
    started = time.monotonic()
    results = await run_yaml(es_url, text)
    assert time.monotonic() - started < 10
    for name, pattern in (
        ("health", f"{none}-*"),
        ("unassigned", f"{none}-*"),
        ("health-named", none),
        ("unassigned-named", none),
    ):
        result = results[name]
        assert (result.state, result.error_kind) == (State.UNKNOWN, "no_such_index"), result
        assert result.summary.startswith(f"no such index [{pattern}]: no cluster health")
    assert results["nodes"].state is State.OK and results["nodes"].value == 1


async def test_nodes_expected(es_url: str) -> None:
    """One node: expected 1 OK, expected 2 CRITICAL "missing nodes", data nodes likewise."""
    text = checks_yaml(
        [
            {"name": "one", "kind": "nodes", "expected_nodes": 1},
            {"name": "two", "kind": "nodes", "expected_nodes": 2},
            {"name": "data", "kind": "nodes", "expected_nodes": 1, "expected_data_nodes": 2},
            {"name": "data-ok", "kind": "nodes", "expected_nodes": 1, "expected_data_nodes": 1},
        ]
    )
    results = await run_yaml(es_url, text)
    assert (results["one"].state, results["one"].value) == (State.OK, 1)
    assert results["one"].summary == "1 node (1 data), 1 expected"
    two = results["two"]
    assert two.state is State.CRITICAL
    assert render(two) == (
        "CRITICAL - missing nodes: 1 of 2 expected nodes | 'nodes'=1;;2:;0 'data_nodes'=1;;;0"
    )
    assert results["data"].state is State.CRITICAL
    assert results["data"].summary == "missing nodes: 1 of 2 expected data nodes"
    assert results["data-ok"].state is State.OK


async def test_unassigned_shards(es_url: str, make_index: Callable[..., str]) -> None:
    """A replica on a single node stays unassigned: 1 crosses ``critical: 0``, not ``1``."""
    yellow = make_index("yel", settings={"number_of_replicas": 1})
    text = checks_yaml(
        [
            {"name": "cluster", "kind": "unassigned_shards", "critical": 0},
            {"name": "scoped-at", "kind": "unassigned_shards", "index": yellow, "critical": 1},
            {
                "name": "scoped",
                "kind": "unassigned_shards",
                "index": yellow,
                "warning": 0,
                "critical": 5,
            },
        ]
    )
    results = await run_yaml(es_url, text)
    cluster = results["cluster"]
    assert cluster.state is State.CRITICAL
    assert cluster.value is not None and cluster.value >= 1
    assert "unassigned shards in cluster" in cluster.summary
    assert cluster.summary.endswith("(critical > 0)")
    assert (results["scoped-at"].state, results["scoped-at"].value) == (State.OK, 1)
    assert results["scoped"].state is State.WARNING
    assert render(results["scoped"]).endswith("| 'unassigned_shards'=1;0;5;0")


async def test_jvm_heap_and_disk_per_node(es_url: str, node_name: str) -> None:
    """Per-node groups; ``critical: 1`` forces CRITICAL, 100 can never be crossed."""
    text = checks_yaml(
        [
            {"name": "heap-crit", "kind": "jvm_heap", "critical": 1},
            {"name": "heap-ok", "kind": "jvm_heap", "warning": 100, "critical": 100},
            {"name": "disk-crit", "kind": "disk", "critical": 1, "index": "ignored-*"},
            {"name": "disk-ok", "kind": "disk", "warning": 100, "critical": 100},
        ]
    )
    results = await run_yaml(es_url, text)
    stats = httpcalls.get(f"{es_url}/_nodes/_local/stats/fs", timeout=10).json()
    fs = next(iter(stats["nodes"].values()))["fs"]["total"]
    disk_now = 100 * (fs["total_in_bytes"] - fs["available_in_bytes"]) / fs["total_in_bytes"]
    for name, label in (("heap-crit", "heap"), ("disk-crit", "disk")):
        result = results[name]
        assert result.state is State.CRITICAL
        assert [g.key for g in result.groups] == [(("node", node_name),)]
        group = result.groups[0]
        assert group.value is not None and 1 < group.value <= 100
        assert result.summary.startswith(f"1 of 1 nodes not OK: {node_name} CRITICAL (")
        assert result.summary.endswith(" used per node (critical > 1)")
        assert "ignored-*" not in result.summary and " in last " not in result.summary
        out = render(result)
        assert f"CRITICAL: {node_name}: {label} used " in out
        assert f"'{node_name}_{label}'=" in out
    disk = results["disk-crit"].groups[0].value
    assert disk is not None and abs(disk - disk_now) < 2
    for name in ("heap-ok", "disk-ok"):
        assert results[name].state is State.OK
        assert results[name].summary.startswith("all 1 nodes OK -")


async def test_master_agreement_and_unreachable_node(es_url: str, node_name: str) -> None:
    """The node names its master: OK; a node that does not answer is UNKNOWN, named."""
    dead = "http://127.0.0.1:9"  # discard port: nothing listens on loopback
    text = checks_yaml(
        [
            {"name": "agree", "kind": "master", "node_urls": [es_url, es_url + "/"]},
            {"name": "default-urls", "kind": "master"},
            {"name": "dead", "kind": "master", "node_urls": [es_url, dead]},
        ]
    )
    results = await run_yaml(es_url, text)
    agree = results["agree"]
    assert agree.state is State.OK
    assert agree.summary == f"2 nodes asked, all agree: the elected master is {node_name}"
    assert results["default-urls"].state is State.OK
    dead_result = results["dead"]
    assert dead_result.state is State.UNKNOWN
    assert dead_result.summary.startswith(f"could not ask 1 of 2 nodes for their master: {dead}")
    out = render(dead_result)
    assert f"{dead}: error: {BACKEND_NAME} unreachable" in out
    assert f"{es_url}: master is {node_name}" in out


@pytest.mark.slow
async def test_master_split_brain_two_clusters(es_url: str, node_name: str, spare_es) -> None:
    """Two different single-node clusters listed as one: they disagree, CRITICAL split brain."""
    server = spare_es  # the session's second cluster
    other = httpcalls.get(f"{server.url}/_nodes/_local", timeout=10).json()["nodes"]
    other_name = next(iter(other.values()))["name"]
    assert other_name != node_name
    text = checks_yaml([{"name": "brain", "kind": "master", "node_urls": [es_url, server.url]}])
    result = (await run_yaml(es_url, text))["brain"]
    assert result.state is State.CRITICAL
    assert result.summary == (
        "split brain: nodes disagree on the elected master: "
        f"{es_url} -> {node_name}, {server.url} -> {other_name}"
    )
    assert render(result).startswith("CRITICAL - split brain:")
    assert "'masters_seen'=2;;1;0" in render(result)
