"""Real Prometheus scrapes three replicas with the shipped rules while one is killed.

Every replica exports every check from the shared view; the shipped rules aggregate with
``max by (job, check)``. Killing the owner of a CRITICAL check must neither resolve nor
restart its alert (same ``activeAt``), and no check may count twice in ``count``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from esbridge_dev import httpcalls
from esbridge_dev.procgroup import start_group
from esbridge_dev.service import free_port, poll
from realclients import open_dir, stop_group, tool
from test_cluster import Replicas, index20, indices  # noqa: F401 (fixtures)
from test_real_prometheus import query, write_config
from test_service_support import write

pytestmark = [
    pytest.mark.clients,
    pytest.mark.es,
    pytest.mark.slow,
    pytest.mark.version_independent,
]

CHECKS = """defaults:
  index: {index}
  window: 1h
  interval: 10s
checks:
  - {{name: p-ok, kind: count, critical: 100}}
  - {{name: p-warning, kind: count, warning: 10, critical: 100}}
  - {{name: p-critical, kind: count, critical: 5}}
"""

CRITICAL_CODE = 'max by (job, check) (esbridge_check_status_code{check="p-critical"})'


@pytest.fixture
def group(es_url: str, index20: str, indices, tmp_path: Path) -> Iterator[Replicas]:  # type: ignore[no-untyped-def]  # noqa: F811
    checks = write(tmp_path / "p.yaml", CHECKS.format(index=index20))
    replicas = Replicas(es_url, checks, *indices)
    try:
        for name in ("p1", "p2", "p3"):
            replicas.start(name)
        poll(lambda: replicas.agreed(3), timeout=90, interval=0.5)
        yield replicas
    finally:
        replicas.stop_all()


def critical_alert(api: str) -> dict | None:
    alerts = httpcalls.get(f"{api}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    found = [
        a
        for a in alerts
        if a["labels"]["alertname"] == "EsbridgeCheckCritical"
        and a["labels"].get("check") == "p-critical"
    ]
    assert len(found) <= 1, found  # one alert, not one per replica
    return found[0] if found else None


@pytest.mark.heavy
@pytest.mark.timeout(1500)  # up to 900 s of it waiting for the heavy lock (conftest)
def test_alert_survives_the_owner_being_killed(group: Replicas) -> None:
    binary = tool("prometheus", "/usr/bin/prometheus")
    ports = [p.port for p in group.procs.values()]
    targets = "\n          - ".join(f"127.0.0.1:{p}" for p in ports)
    with open_dir("esbridge-prometheus-cluster-") as folder:
        config = write_config(folder, targets)
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        proc = start_group(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            folder / "prometheus.log",
        )
        try:
            firing = poll(
                lambda: (a := critical_alert(api)) is not None and a["state"] == "firing" and a,
                timeout=120,
                interval=1,
            )
            active_at = firing["activeAt"]
            assert "instance" not in firing["labels"]
            # every replica exports all three checks; aggregated, each counts once
            poll(lambda: query(api, "count(up == 1)")[0]["value"][1] == "3", 60, 1)
            raw = query(api, "count(esbridge_check_status_code)")
            assert raw[0]["value"][1] == "9"
            one = query(api, "count(max by (job, check) (esbridge_check_status_code))")
            assert one[0]["value"][1] == "3"

            owner = group.view("p1")["p-critical"]["owner"]
            group.procs[owner].kill()
            killed = time.time()
            survivor = next(n for n in group.live())
            taken_over = False
            # 10 s interval + 3 s lease + scrape and rule evaluation: watch 40 s
            while time.time() - killed < 40:
                alert = critical_alert(api)
                assert alert is not None and alert["state"] == "firing", alert
                assert alert["activeAt"] == active_at, "for: restarted"
                code = query(
                    api, 'max by (job, check) (esbridge_check_status_code{check="p-critical"})'
                )
                assert code[0]["value"][1] == "2"
                detail = group.view(survivor)["p-critical"]
                if detail["owner"] != owner and detail["evaluated_at_ts"] > killed:
                    taken_over = True
                time.sleep(1)
            assert taken_over, group.view(survivor)["p-critical"]
            one = query(api, "count(max by (job, check) (esbridge_check_status_code))")
            assert one[0]["value"][1] == "3"
        finally:
            stop_group(proc)
