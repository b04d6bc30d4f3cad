"""``make bench-check``'s comparison: ratios only, 25 % tolerance, either direction of better."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_check", ROOT / "bench" / "check.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_check"] = module
    spec.loader.exec_module(module)
    return module


check = _load()


def _fig(value: float) -> dict[str, float]:
    return {"min": value, "median": value, "max": value}


def test_ratios_are_medians_and_quotients() -> None:
    results = {
        "figures": {
            "cycle.large.ratio_to_limit": _fig(1.1),
            "cycle.large.esbridge.cpu_s": _fig(0.3),
            "cycle.large.limit.cpu_s": _fig(0.1),
            "cycle.large.esbridge.wall_s": _fig(9.0),  # absolute: never compared
        }
    }
    got = check.ratios(results)
    assert got == pytest.approx(
        {"cycle.large.ratio_to_limit": 1.1, "cycle.large.client_cpu_to_limit": 3.0}
    )


def test_regressions_beyond_25_percent_fail_in_the_right_direction() -> None:
    base = {"cycle.large.ratio_to_limit": 1.0, "cycle.large.speedup_vs_naive": 4.0}
    assert (
        check.compare(
            {"cycle.large.ratio_to_limit": 1.2, "cycle.large.speedup_vs_naive": 3.3}, base
        )
        == []
    )
    worse_lower = check.compare(
        {"cycle.large.ratio_to_limit": 1.3, "cycle.large.speedup_vs_naive": 4.0}, base
    )
    assert len(worse_lower) == 1 and "ratio_to_limit" in worse_lower[0]
    worse_higher = check.compare(
        {"cycle.large.ratio_to_limit": 0.9, "cycle.large.speedup_vs_naive": 3.0}, base
    )
    assert len(worse_higher) == 1 and "speedup_vs_naive" in worse_higher[0]
    missing = check.compare({"cycle.large.ratio_to_limit": 1.0}, base)
    assert len(missing) == 1 and "missing" in missing[0]


def test_committed_baseline_names_known_ratios() -> None:
    baseline = json.loads((ROOT / "bench" / "baseline.json").read_text())
    known = {name for name, *_ in check.RATIOS}
    assert baseline and set(baseline) <= known
    assert all(isinstance(v, float) and v > 0 for v in baseline.values())


def test_main_compares_a_results_file(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    baseline = tmp_path / "baseline.json"
    baseline.write_text(json.dumps({"cycle.medium.ratio_to_limit": 1.0}))
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"figures": {"cycle.medium.ratio_to_limit": _fig(1.5)}}))
    assert check.main(["--results", str(results), "--baseline", str(baseline)]) == 1
    assert "REGRESSION" in capsys.readouterr().out
    results.write_text(json.dumps({"figures": {"cycle.medium.ratio_to_limit": _fig(1.1)}}))
    assert check.main(["--results", str(results), "--baseline", str(baseline)]) == 0
