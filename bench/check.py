#!/usr/bin/env python3
"""Regression guard: the *ratios* of a smoke run against committed baselines.

    .venv/bin/python bench/check.py        # `bench/run.py --smoke --only cycle`, 5 repeats
    .venv/bin/python bench/check.py --results DIR/results.json   # compare an existing run
    .venv/bin/python bench/check.py --write-baseline             # after a deliberate change

Only ratios are compared (esbridge against the raw ``_msearch`` limit and against one search per
check, measured in the same run, interleaved): absolute times follow the machine's load, ratios
much less so. A ratio more than 25 % worse than ``bench/baseline.json`` fails (exit 1). Not part
of CI: even ratios move on a busy machine, so run it on a quiet one (``make bench-check``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
BASELINE = HERE / "baseline.json"
TOLERANCE = 0.25
# Medians of 5 repeats of cycles of 1,000 and 2,000 checks: one repeat of the smoke sizes
# (100 and 400, cycles of a few tenths of a second) moved the same code's ratios by up to 49 %.
REPEATS = 5
SIZES = 'cycle_sizes=[["medium", 1000], ["large", 2000]]'

# (name, numerator figure, denominator figure or None, which way is better)
RATIOS: list[tuple[str, str, str | None, str]] = [
    ("cycle.medium.ratio_to_limit", "cycle.medium.ratio_to_limit", None, "lower"),
    ("cycle.large.ratio_to_limit", "cycle.large.ratio_to_limit", None, "lower"),
    # esbridge's own cost: the same searches as the raw loop, one per check (no merging)
    ("cycle.medium.single_ratio_to_limit", "cycle.medium.single_ratio_to_limit", None, "lower"),
    ("cycle.large.single_ratio_to_limit", "cycle.large.single_ratio_to_limit", None, "lower"),
    ("cycle.medium.speedup_vs_naive", "cycle.medium.speedup_vs_naive", None, "higher"),
    ("cycle.large.speedup_vs_naive", "cycle.large.speedup_vs_naive", None, "higher"),
    (
        "cycle.large.client_cpu_to_limit",
        "cycle.large.esbridge.cpu_s",
        "cycle.large.limit.cpu_s",
        "lower",
    ),
    (
        "cycle.large.es_cpu_to_naive",
        "cycle.large.esbridge.es_cpu_ms",
        "cycle.large.naive.es_cpu_ms",
        "lower",
    ),
]


def ratios(results: dict) -> dict[str, float]:
    """The guarded ratios of one run (medians of the repeats)."""
    figures = results["figures"]
    out: dict[str, float] = {}
    for name, num, den, _ in RATIOS:
        if num not in figures or (den is not None and den not in figures):
            continue
        value = figures[num]["median"]
        if den is not None:
            bottom = figures[den]["median"]
            if not bottom:
                continue
            value = value / bottom
        out[name] = value
    return out


def compare(current: dict[str, float], baseline: dict[str, float]) -> list[str]:
    """One line per regression beyond the tolerance (empty: all good)."""
    problems = []
    better = {name: way for name, _, _, way in RATIOS}
    for name, base in baseline.items():
        if name not in current:
            problems.append(f"{name}: missing from this run (baseline {base:.3g})")
            continue
        now = current[name]
        worse = now / base - 1 if better[name] == "lower" else base / now - 1
        if worse > TOLERANCE:
            problems.append(
                f"{name}: {now:.3g} against baseline {base:.3g}"
                f" ({worse:.0%} worse, limit {TOLERANCE:.0%})"
            )
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, help="results.json of a finished smoke run")
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--write-baseline", action="store_true", help="store this run's ratios")
    args = parser.parse_args(argv)
    path = args.results
    if path is None:
        out = Path(tempfile.mkdtemp(prefix="esbridge-bench-check-"))
        smoke = ["--smoke", "--only", "cycle", "--repeats", str(REPEATS), "--set", SIZES]
        cmd = [sys.executable, str(HERE / "run.py"), *smoke]
        subprocess.run([*cmd, "--out-dir", str(out)], check=True)
        path = out / "results.json"
    current = ratios(json.loads(path.read_text()))
    if args.write_baseline:
        args.baseline.write_text(json.dumps(current, indent=2, sort_keys=True) + "\n")
        print(f"wrote {args.baseline}")
        return 0
    baseline = json.loads(args.baseline.read_text())
    for name in sorted(current):
        base = baseline.get(name)
        shown = f"{base:.3g}" if base is not None else "-"
        print(f"{name:36} {current[name]:8.3g}   baseline {shown}")
    problems = compare(current, baseline)
    for line in problems:
        print("REGRESSION", line)
    print("bench-check:", "FAILED" if problems else "ok")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
