"""Real Prometheus scrapes the real service with the SHIPPED configuration and rules.

The temp copy of ``deploy/prometheus/prometheus.yml`` differs only in the target address and
``scrape_interval``/``evaluation_interval`` (1s). The rule file is the shipped one, except that
every ``for:`` is shortened to 2s so alerts can fire within the test (the rule expressions,
labels and annotations are unchanged; tests/promtool/ unit-tests the real durations).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from ruamel.yaml import YAML

from esbridge_dev import httpcalls
from esbridge_dev.procgroup import start_group
from esbridge_dev.service import free_port
from realclients import (
    DEPLOY,
    Scenario,
    open_dir,
    running_scenario,
    stop_group,
    tool,
    wait_until,
)

pytestmark = [pytest.mark.clients, pytest.mark.es, pytest.mark.version_independent]

EXPECTED = {"rc-ok": 0, "rc-warning": 1, "rc-critical": 2, "rc-unknown": 3, "web-5xx-errors": 1}
FIRING = {
    ("EsbridgeCheckCritical", "rc-critical"),
    ("EsbridgeCheckWarning", "rc-warning"),
    ("EsbridgeCheckWarning", "web-5xx-errors"),
    ("EsbridgeCheckUnknown", "rc-unknown"),
}


@dataclass
class PromRun:
    scenario: Scenario
    api: str
    folder: Path


def write_config(folder: Path, target: str) -> Path:
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    changed = text.replace("127.0.0.1:9108", target)
    changed = changed.replace("scrape_interval: 30s", "scrape_interval: 1s")
    changed = changed.replace("evaluation_interval: 30s", "evaluation_interval: 1s")
    assert changed.count("1s") == 2 and target in changed, "the shipped file changed shape"
    (folder / "prometheus.yml").write_text(changed)
    rules = (DEPLOY / "prometheus" / "esbridge-rules.yml").read_text()
    shortened, count = re.subn(r"^(\s+for:) \d+[smh]$", r"\1 2s", rules, flags=re.M)
    assert count == 8, "every shipped rule has a for:"
    (folder / "esbridge-rules.yml").write_text(shortened)
    return folder / "prometheus.yml"


def query(api: str, expr: str) -> list[dict[str, Any]]:
    r = httpcalls.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    return r.json()["data"]["result"]


def firing(api: str) -> set[tuple[str, str]]:
    r = httpcalls.get(f"{api}/api/v1/alerts", timeout=10)
    r.raise_for_status()
    return {
        (a["labels"]["alertname"], a["labels"].get("check", ""))
        for a in r.json()["data"]["alerts"]
        if a["state"] == "firing"
    }


def status_codes(api: str) -> dict[str, float | None]:
    """esbridge_check_status_code of the EXPECTED checks, as Prometheus stored it."""
    got = {
        s["metric"]["check"]: float(s["value"][1])
        for s in query(api, 'esbridge_check_status_code{job="esbridge"}')
    }
    return {check: got.get(check) for check in EXPECTED}


@pytest.fixture(scope="module")
def prometheus(es_url: str) -> Iterator[PromRun]:
    binary = tool("prometheus", "/usr/bin/prometheus")
    with open_dir("esbridge-prometheus-") as folder, running_scenario(es_url, folder) as scenario:
        config = write_config(folder, f"127.0.0.1:{scenario.service.port}")
        port = free_port()
        api = f"http://127.0.0.1:{port}"
        log = folder / "prometheus.log"
        proc = start_group(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            log,
        )
        try:

            def ready() -> bool:
                assert proc.poll() is None, log.read_text(errors="replace")[-4000:]
                try:
                    return status_codes(api) == EXPECTED and firing(api) >= FIRING
                except httpx.HTTPError:
                    return False

            def describe() -> str:
                try:
                    seen = f"codes {status_codes(api)}, firing {sorted(firing(api))}"
                except httpx.HTTPError as exc:
                    seen = repr(exc)
                return f"{seen}\n--- prometheus ---\n{log.read_text(errors='replace')[-3000:]}"

            wait_until(ready, 90, describe)
            yield PromRun(scenario, api, folder)
        finally:
            stop_group(proc)


def test_target_is_up(prometheus: PromRun) -> None:
    (up,) = query(prometheus.api, 'up{job="esbridge"}')
    assert up["value"][1] == "1"
    assert up["metric"]["instance"] == f"127.0.0.1:{prometheus.scenario.service.port}"


def test_status_codes_for_every_state(prometheus: PromRun) -> None:
    assert status_codes(prometheus.api) == EXPECTED
    # the same states the service's own plugin endpoint reports
    for check, code in EXPECTED.items():
        assert prometheus.scenario.code(check) == code


def test_group_status_codes(prometheus: PromRun) -> None:
    series = query(prometheus.api, 'esbridge_group_status_code{check="web-5xx-errors"}')
    by_host = {s["metric"]["host"]: s["value"][1] for s in series}
    assert by_host == {"web-01": "1", "web-02": "0"}


def test_shipped_alerts_fire(prometheus: PromRun) -> None:
    """EsbridgeCheckCritical/Warning/Unknown (for: shortened to 2s) reach 'firing'."""
    alerts = httpcalls.get(f"{prometheus.api}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
    fired = {(a["labels"]["alertname"], a["labels"].get("check", "")): a for a in alerts}
    assert set(fired) >= FIRING
    critical = fired[("EsbridgeCheckCritical", "rc-critical")]
    assert critical["state"] == "firing"
    assert critical["labels"]["severity"] == "critical"
    assert critical["annotations"]["summary"] == "esbridge check rc-critical is CRITICAL"
    # nothing fires for the OK check, and the service-level alerts stay quiet
    assert not any(check == "rc-ok" for _, check in fired)
    names = {name for name, _ in fired}
    assert not names & {"EsbridgeDown", "EsbridgeConfigReloadFailed", "EsbridgeStateStoreDown"}


def test_shipped_rules_loaded(prometheus: PromRun) -> None:
    r = httpcalls.get(f"{prometheus.api}/api/v1/rules", timeout=10).json()
    rules = [rule for group in r["data"]["groups"] for rule in group["rules"]]
    shipped = YAML(typ="safe").load((DEPLOY / "prometheus" / "esbridge-rules.yml").read_text())
    names = [rule["alert"] for group in shipped["groups"] for rule in group["rules"]]
    assert [rule["name"] for rule in rules] == names
    assert all(rule["health"] == "ok" for rule in rules), rules


def test_promtool_check_metrics_on_the_real_output(prometheus: PromRun) -> None:
    promtool = tool("promtool")
    body = prometheus.scenario.service.get("/metrics").text
    assert "esbridge_check_status_code" in body
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "" and proc.stderr.strip() == "", proc.stdout + proc.stderr


def test_prometheus_copy_differs_only_where_documented(prometheus: PromRun) -> None:
    shipped = (DEPLOY / "prometheus" / "prometheus.yml").read_text().splitlines()
    used = (prometheus.folder / "prometheus.yml").read_text().splitlines()
    changed = [(a.strip(), b.strip()) for a, b in zip(shipped, used, strict=True) if a != b]
    assert [a for a, _ in changed] == [
        "scrape_interval: 30s",
        "evaluation_interval: 30s",
        "- 127.0.0.1:9108",
    ]
