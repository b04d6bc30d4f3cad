"""Batching as Elasticsearch sees it: requests counted by a proxy in front of the cluster.

30 data checks due together with ``max_searches_per_request: 10`` must reach Elasticsearch
as 3 ``_msearch`` requests per cycle, not 30 searches; the cluster checks that need node
statistics share one fetch per cycle; at most ``max_in_flight`` requests run at once.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from esbridge_dev.service import EsbridgeProcess
from test_service_support import CountingProxy, cycles, delete_index, poll, write

pytestmark = [pytest.mark.es, pytest.mark.slow]

N_CHECKS = 30
PER_REQUEST = 10


def test_due_checks_go_out_as_few_msearch_requests(
    es_url: str, make_index, seed, tmp_path: Path
) -> None:
    """30 due checks → 3 ``_msearch`` per cycle; jvm_heap + disk → 1 nodes stats fetch."""
    index = make_index("batch")
    seed(index, [{"ago": "1m", "status": 200}, {"ago": "2m", "status": 503}])
    lines = ["checks:"]
    for i in range(N_CHECKS):
        lines += [
            f"  - name: batch-{i:02d}",
            "    kind: count",
            f"    index: {index}",
            "    interval: 3s",
            "    window: 1h",
            f"    critical: {i}",
        ]
    lines += [
        "  - {name: batch-heap, kind: jvm_heap, interval: 3s}",
        "  - {name: batch-disk, kind: disk, interval: 3s}",
    ]
    checks = write(tmp_path / "batch.yaml", "\n".join(lines) + "\n")
    state_index = f"esbridge-test-state-{uuid.uuid4().hex[:8]}"
    with CountingProxy(es_url) as proxy:
        config = write(
            tmp_path / "esbridge.yaml",
            f"elasticsearch:\n  default:\n    urls: [{proxy.url}]\n"
            f"    max_searches_per_request: {PER_REQUEST}\n    max_in_flight: 2\n"
            # one search per check here: what is batched, not what is merged
            "    merge_searches: false\n",
        )
        service = EsbridgeProcess(None, [checks], config=config, state_index=state_index)
        try:
            with service:
                # Three complete cycles after the first one (which may start mid-startup).
                poll(lambda: len(cycles(proxy.msearches())) >= 5, timeout=60)
                body = service.get("/api/v1/checks").json()
                runs = service.get("/api/v1/checks/batch-00").json()["runs"]
        finally:
            delete_index(es_url, state_index)

    bursts = cycles(proxy.msearches())[1:-1]
    assert len(bursts) >= 3
    for burst in bursts:
        assert sorted(s.searches for s in burst) == [PER_REQUEST] * (N_CHECKS // PER_REQUEST), (
            f"one cycle sent {[s.searches for s in burst]} searches per _msearch"
        )
        start, end = burst[0].at, burst[-1].at
        stats = proxy.requests(r"^GET /_nodes/[^ ]*stats", start - 1.0)
        assert len([s for s in stats if s.at <= end + 1.0]) == 1, "nodes stats not shared"
    # No check fell back to one search per request.
    assert proxy.requests(rf"/{index}/_search") == []
    assert proxy.max_in_flight["msearch"] <= 2
    by_name = {c["name"]: c for c in body["checks"]}
    assert len(by_name) == N_CHECKS + 2
    assert by_name["batch-05"]["state"] == "OK" and by_name["batch-00"]["state"] == "CRITICAL"
    assert by_name["batch-heap"]["state"] != "PENDING"
    # Every check ran once per cycle: the scheduled runs are counted.
    assert runs >= len(bursts)
