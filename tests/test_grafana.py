"""``deploy/grafana/esbridge.json``: every PromQL expression parses, every metric exists.

Each expression of the dashboard (panel targets and the variables' selectors), with the
Grafana variables replaced by plain values, becomes a recording rule that the real
``promtool check rules`` must accept; every ``esbridge_*`` name it uses must be in a real
``/metrics`` scrape of a running esbridge with grouped, failing and passive parts.
"""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess, free_port
from realclients import tool

# promtool and the metric names esbridge exports: the search server's version plays no part.
pytestmark = pytest.mark.version_independent

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "esbridge.json"
VARIABLES = {"$__rate_interval": "5m", "$job": ".*", "$check": "web-5xx"}


def load() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard, variables substituted."""
    found = []
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            found.append((f"{panel['title']} {target['refId']}", target["expr"]))
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            inner = re.fullmatch(r"label_values\((.*), *\w+\)", query["query"])
            assert inner, query
            found.append((f"variable {variable['name']}", inner.group(1)))
    out = []
    for where, expr in found:
        for name, value in VARIABLES.items():
            expr = expr.replace(name, value)
        assert "$" not in expr, f"{where}: unknown variable in {expr}"
        out.append((where, expr))
    return out


def promtool_rules(folder: Path, exprs: list[str]) -> subprocess.CompletedProcess[str]:
    rules = {
        "groups": [
            {
                "name": "grafana-dashboard",
                "rules": [
                    {"record": f"esbridge:dashboard:{i}", "expr": e} for i, e in enumerate(exprs)
                ],
            }
        ]
    }
    path = folder / "dashboard-rules.yml"
    with path.open("w") as out:
        YAML().dump(rules, out)
    return subprocess.run(
        [tool("promtool"), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )


def test_every_expression_parses_with_promtool(tmp_path: Path) -> None:
    exprs = [e for _, e in expressions(load())]
    assert len(exprs) >= 25
    proc = promtool_rules(tmp_path, exprs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(exprs)} rules found" in proc.stdout


def test_promtool_really_rejects_a_broken_expression(tmp_path: Path) -> None:
    proc = promtool_rules(tmp_path, ['sum by (state) (esbridge_check_state{job=~".*"}'])
    assert proc.returncode != 0


def test_each_check_counts_once_whatever_labels_the_scrape_adds(tmp_path: Path) -> None:
    """Three replicas export every check; the Prometheus Operator adds pod, container,
    endpoint, namespace and service to each target: the panels still count each check
    once (``max without (instance)`` counted it three times there)."""
    where = dict(expressions(load()))
    series = []
    for i in range(3):
        target = (
            f'job="esbridge",instance="10.0.0.{i}:9108",pod="esbridge-{i}",'
            'container="esbridge",endpoint="http",namespace="mon",service="esbridge"'
        )
        for check, code, state in (("web-5xx", 2, "CRITICAL"), ("web-ok", 0, "OK")):
            series.append(
                {
                    "series": f'esbridge_check_status_code{{{target},check="{check}"}}',
                    "values": f"{code}x5",
                }
            )
            series.append(
                {
                    "series": f'esbridge_check_state{{{target},check="{check}",state="{state}"}}',
                    "values": "1x5",
                }
            )
        series.append(
            {"series": f'esbridge_check_value{{{target},check="web-5xx"}}', "values": "312x5"}
        )
    cases = [
        (where["Checks by state A"], [('{state="CRITICAL"}', 1), ('{state="OK"}', 1)]),
        (where["Not OK / stale A"], [("{}", 1)]),
        (where["Worst checks (state, since) A"], [('{check="web-5xx",job="esbridge"}', 2)]),
        (where["$check: value and thresholds A"], [('{check="web-5xx",job="esbridge"}', 312)]),
    ]
    tests = {
        "rule_files": [],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "2m",
                        "exp_samples": [
                            {"labels": labels, "value": value} for labels, value in exp
                        ],
                    }
                    for expr, exp in cases
                ],
            }
        ],
    }
    path = tmp_path / "dashboard-test.yml"
    with path.open("w") as out:
        YAML().dump(tests, out)
    proc = subprocess.run(
        [tool("promtool"), "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_the_dashboard_covers_what_operators_need() -> None:
    dashboard = load()
    titles = " | ".join(p["title"] for p in panels(dashboard))
    for needed in (
        "Checks by state",
        "Worst checks (state, since)",
        "$check: value and thresholds",
        "Scheduler lateness",
        "Elasticsearch up",
        "check errors",
        "Last reload",
        "Passive delivery",
    ):
        assert needed in titles, needed
    names = {v["name"] for v in dashboard["templating"]["list"]}
    assert names == {"datasource", "job", "check"}
    ids = [p["id"] for p in panels(dashboard)]
    assert len(ids) == len(set(ids))
    for panel in panels(dashboard):
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def scraped_names(text: str) -> set[str]:
    """Every series name a scrape offers, counters and histograms with their suffixes."""
    from prometheus_client.parser import text_string_to_metric_families

    names: set[str] = set()
    for family in text_string_to_metric_families(text):
        names.update(s.name for s in family.samples)
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_sum", "_count"))
        elif family.type == "info":
            names.add(family.name + "_info")
        else:
            names.add(family.name)
    return names


@pytest.mark.es
def test_every_metric_name_is_in_a_real_scrape(es_url: str, tmp_path: Path) -> None:
    from esbridge_dev.seeding import seed

    suffix = uuid.uuid4().hex[:8]
    index, state_index = f"gf-logs-{suffix}", f"gf-state-{suffix}"
    seed(es_url, index, [{"host": f"web-0{i % 3}", "status": 500, "ago": "30s"} for i in range(9)])
    checks = tmp_path / "checks.yaml"
    checks.write_text(
        textwrap.dedent(f"""\
            defaults:
              index: {index}
              interval: 1s
              timeout: 1s
            checks:
              - name: web-5xx
                kind: count
                query: "status:>=500"
                group_by: host.keyword
                warning: 2
                critical: "@4:10"
              - name: missing
                kind: count
                index: gf-missing-{suffix}
                critical: 1
            """)
    )
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        textwrap.dedent(f"""\
            passive:
              - name: icinga
                type: icinga2
                url: https://127.0.0.1:{free_port()}
                username: esbridge
                password: not-used
                retries: 0
                timeout: 1s
            """)
    )
    svc = EsbridgeProcess(es_url, [checks], config=config, state_index=state_index)
    try:
        svc.start()

        def ready() -> str | None:
            text = svc.get("/metrics").text
            done = "esbridge_group_value{" in text and 'reason="no_such_index"' in text
            return text if done and "esbridge_passive_failed_total{" in text else None

        text = svc.wait_for(ready, timeout=60)
    finally:
        svc.stop()
        svc.log_path.unlink(missing_ok=True)
        for name in (index, state_index):
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)
    exported = scraped_names(text)
    used = {n for _, e in expressions(load()) for n in re.findall(r"\besbridge_[a-z_]+", e)}
    assert len(used) >= 20
    missing = sorted(used - exported)
    assert missing == [], f"the dashboard uses names esbridge does not export: {missing}"
    # the thresholds the value panel draws: warning 2 (upper only), critical @4:10 (inside)
    prefix = "esbridge_check_threshold{"
    lines = sorted(x[len(prefix) :] for x in text.splitlines() if x.startswith(prefix))
    assert lines == [
        'check="missing",level="critical",bound="upper",inside="false"} 1.0',
        'check="web-5xx",level="critical",bound="lower",inside="true"} 4.0',
        'check="web-5xx",level="critical",bound="upper",inside="true"} 10.0',
        'check="web-5xx",level="warning",bound="upper",inside="false"} 2.0',
    ]
