"""The benchmark runner works end to end (``bench/run.py --smoke``), so ``make bench`` does too.

No timing is asserted here (speed goes to bench/RESULTS.md); the test checks that every
figure is measured and that the benchmark measures what it claims: esbridge's cycle had no
failed searches, it batched, and ``/metrics`` carried the expected number of group series.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _require import require
from conftest import BACKEND, expected_es_version

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "bench" / "run.py"
CHECK_HTTP = Path("/usr/lib/nagios/plugins/check_http")

CYCLE_KEYS = [
    "esbridge.wall_s",
    "esbridge.cpu_s",
    "esbridge.requests",
    "esbridge.checks_per_request",
    "esbridge.errors",
    "limit.wall_s",
    "limit.requests",
    "naive.wall_s",
    "naive.requests",
    "naive.errors",
    "naive_httpx.wall_s",
    "naive_httpx.requests",
    "esbridge.es_cpu_ms",
    "limit.es_cpu_ms",
    "naive.es_cpu_ms",
    "ratio_to_limit",
    "speedup_vs_naive",
    "speedup_vs_naive_httpx",
]
FIGURE_KEYS = [
    *(f"cycle.{role}.{key}" for role in ("small", "medium", "large") for key in CYCLE_KEYS),
    "eval.ms_per_check",
    "scheduler.lateness_p50_s",
    "scheduler.lateness_p99_s",
    "scheduler.skipped_runs",
    "plugin.check_esbridge_ms",
    "plugin.check_esbridge_cpu_ms",
    "plugin.bare_python_ms",
    "plugin.check_http_ms",
    "plugin.esbridge_run_ms",
    "plugin.esbridge_run_cpu_ms",
    "plugin.ratio_to_bare_python",
    "plugin.ratio_to_check_http",
    "scrape.p50_ms",
    "scrape.p99_ms",
    "scrape.bytes",
    "scrape.cold_p50_ms",
    "scrape.cold_changed_share",
    "scrape.group_series",
    "memory.rss_mb",
    "api.rps",
    "api.p99_ms",
    "api.errors",
]


@pytest.mark.slow
@pytest.mark.es
@pytest.mark.version_independent
@pytest.mark.heavy(cores=2)
@pytest.mark.timeout(1800)  # up to 900 s of it waiting for the heavy lock (conftest)
def test_bench_smoke_writes_every_figure(tmp_path: Path) -> None:
    require(Path("/usr/bin/python3").exists(), "/usr/bin/python3 is needed for the plugin figure")
    require(CHECK_HTTP.exists(), "check_http (monitoring-plugins-basic) is needed")
    results_md = ROOT / "bench" / "RESULTS.md"
    before = results_md.stat().st_mtime_ns if results_md.exists() else None
    env = {k: v for k, v in os.environ.items() if k != "ESBRIDGE_TEST_ES_URL"}
    version = expected_es_version()
    if version:
        env["ESBRIDGE_BENCH_ES_VERSION"] = version
    env["ESBRIDGE_BENCH_BACKEND"] = BACKEND

    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--smoke", "--out-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=840,
    )

    assert proc.returncode == 0, f"bench/run.py --smoke failed:\n{proc.stderr[-4000:]}"
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["mode"] == "smoke"
    figures = data["figures"]
    missing = [k for k in FIGURE_KEYS if k not in figures]
    assert not missing, f"figures not measured: {missing}"
    for key in FIGURE_KEYS:
        for stat in ("min", "median", "max"):
            value = figures[key][stat]
            assert isinstance(value, int | float) and math.isfinite(value), (key, stat, value)
    assert all(g["median"] is not None for g in data["goals"]), data["goals"]
    for role in ("small", "medium", "large"):
        cycle = f"cycle.{role}"
        assert figures[f"{cycle}.esbridge.errors"]["max"] == 0
        assert figures[f"{cycle}.raw_errors"]["max"] == 0
        assert figures[f"{cycle}.naive.errors"]["max"] == 0
        assert (
            figures[f"{cycle}.esbridge.requests"]["max"] < figures[f"{cycle}.naive.requests"]["min"]
        )
    # bench/plugin_latency.sh (hyperfine, scripts/install-test-deps.sh) and
    # bench/passive_vs_plugin.py ran to the end, and their figures made it into the results.
    for script in ("plugin_latency", "passive_vs_plugin"):
        got = data["extra"].get(script)
        assert isinstance(got, dict) and got.get("exit") == 0, (script, got)
        assert any(k.startswith(f"{script}.") for k in figures), (script, sorted(figures))
    sizes = data["sizes"]
    assert figures["scrape.group_series"]["min"] == sizes["scrape_checks"] * sizes["scrape_groups"]
    # the cold scrapes were cold: every check ran again since the previous scrape
    assert figures["scrape.cold_changed_share"]["min"] == 1.0
    assert (tmp_path / "RESULTS.md").read_text().startswith("# esbridge benchmark results (smoke)")
    after = results_md.stat().st_mtime_ns if results_md.exists() else None
    assert after == before, "the smoke run must not overwrite bench/RESULTS.md"


def _bench_module(name: str) -> Any:
    """A module of bench/ (a folder of scripts, not a package), imported from there."""
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(ROOT / "bench"))


def test_full_size_check_sets_load_as_a_service_would() -> None:
    """The full run's largest check set (5,000) is over the 1 MiB bound of one check file,
    so the benchmark splits it into files under the bound (``make bench`` once stopped there)."""
    benchlib = _bench_module("benchlib")
    from esbridge.limits import MAX_CHECK_FILE_BYTES

    hosts = [f"host-{i:02d}" for i in range(50)]
    services = [f"svc-{i:02d}" for i in range(20)]
    mapping = benchlib.check_mix(5000, hosts, services)
    assert len(benchlib.dump(mapping).encode()) > MAX_CHECK_FILE_BYTES  # one file: refused
    parts = benchlib.split(mapping)
    assert all(len(benchlib.dump(p).encode()) <= MAX_CHECK_FILE_BYTES for p in parts)
    assert [c["name"] for p in parts for c in p["checks"]] == [c["name"] for c in mapping["checks"]]
    checks = benchlib.load(mapping)
    assert [c.name for c in checks] == [c["name"] for c in mapping["checks"]]


def test_a_full_run_keeps_the_sections_other_commands_wrote(tmp_path: Path) -> None:
    """bench/run.py rewrites RESULTS.md; the OpenSearch and Replicas sections (written by
    other commands) stay, markers included, and nothing of its own old figures does."""
    run = _bench_module("run")
    old = tmp_path / "RESULTS.md"
    old.write_text(
        "# esbridge benchmark results (full)\n\n## Goals\n\n| old goal |\n\n"
        "## OpenSearch: one cycle\n\n| os figure |\n\n"
        "How each figure is measured: see bench/README.md.\n\n"
        "<!-- replicas:begin -->\n## Replicas (bench/cluster.py)\n\n| replica-1 |\n"
        "<!-- replicas:end -->\n\n## Something else\n\n| dropped |\n\n"
        "<!-- replicas-changing:begin -->\n## Replicas, changing values (bench/cluster.py)\n\n"
        "| replica-2 |\n<!-- replicas-changing:end -->\n"
    )
    kept = run.kept_sections(old)
    assert "| os figure |" in kept and "| replica-1 |" in kept and "| replica-2 |" in kept
    for name in ("replicas", "replicas-changing"):
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        assert begin in kept and end in kept and kept.index(begin) < kept.index(end)
    assert "| dropped |" not in kept
    assert "| old goal |" not in kept and "## Goals" not in kept


def test_rerender_judges_the_goals_as_they_are_now(tmp_path: Path) -> None:
    """``--rerender`` rewrites RESULTS.md from results.json: a goal added to the table since
    the run is judged over the stored figures, not left out as the run's own list was."""
    run = _bench_module("run")
    data = json.loads((ROOT / "bench" / "results.json").read_text())
    data["goals"] = []  # as written by a run before any goal existed
    key = "cycle.large.esbridge.us_cpu_per_check"
    data["figures"][key]["median"] = 61.5
    (tmp_path / "results.json").write_text(json.dumps(data))
    assert run.rerender(tmp_path, []) == 0
    text = (tmp_path / "RESULTS.md").read_text()
    row = next(line for line in text.splitlines() if f"`{key}`" in line and "<= 60" in line)
    assert "61.50" in row and "**no**" in row
    goals = json.loads((tmp_path / "results.json").read_text())["goals"]
    assert len(goals) == len(run.GOALS)
