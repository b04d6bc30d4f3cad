"""Helpers of the benchmark runner: the check mix, statistics, Prometheus text parsing.

Kept apart from ``run.py`` so that the pieces with arithmetic in them (percentiles from
histogram buckets, the generated mix) can be read and checked on their own.
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

WINDOWS = ("5m", "15m", "1h")
LOGS = "logs-web-*"
METRICS = "metrics-host-*"


def check_mix(
    n: int,
    hosts: Sequence[str],
    services: Sequence[str],
    interval: str = "30s",
    prefix: str = "bench",
) -> dict[str, Any]:
    """A realistic mix of ``n`` data checks as a check-file mapping (JSON is valid YAML).

    Per 10 checks: 3 counts with Lucene queries, 2 metrics (avg/max), 2 percentiles
    (p95/p99), 2 ratios, 1 host metric; a fifth of each kind is grouped by host.
    Windows rotate over 5m/15m/1h so Elasticsearch sees different ranges.
    """
    checks: list[dict[str, Any]] = []
    for i in range(n):
        host = hosts[i % len(hosts)]
        svc = services[(i // 3) % len(services)]
        window = WINDOWS[(i // 10) % len(WINDOWS)]
        slot = i % 10
        check: dict[str, Any] = {"name": f"{prefix}-{i:05d}", "window": window}
        if slot == 0:
            check |= {"kind": "count", "index": LOGS, "query": f"status:>=500 AND service:{svc}"}
            check |= {"warning": 10, "critical": 50, "unit": "c"}
        elif slot == 1:
            check |= {"kind": "count", "index": LOGS, "query": f"level:ERROR AND host:{host}"}
            check |= {"warning": 20, "critical": 100}
        elif slot == 2:
            query = f'status:[400 TO 499] AND path:"/login" AND method:{("GET", "POST")[i % 2]}'
            check |= {"kind": "count", "index": LOGS, "query": query, "critical": 500}
        elif slot == 3:
            check |= {"kind": "metric", "index": LOGS, "query": f"service:{svc}"}
            check |= {"field": "latency_ms", "agg": "avg", "warning": 200, "critical": 500}
            check["unit"] = "ms"
        elif slot == 4:
            check |= {"kind": "metric", "index": LOGS, "query": f"service:{svc} AND method:GET"}
            check |= {"field": "bytes", "agg": "max", "critical": 50_000_000, "unit": "B"}
        elif slot in (5, 6):
            pct = 95 if slot == 5 else 99
            check |= {"kind": "metric", "index": LOGS, "query": f"service:{svc}"}
            check |= {"field": "latency_ms", "agg": "percentile", "percentile": pct}
            check |= {"warning": 300 if pct == 95 else 600, "critical": 1000, "unit": "ms"}
        elif slot in (7, 8):
            check |= {"kind": "ratio", "index": LOGS, "query": f"service:{svc}"}
            numerator = "status:>=500" if slot == 7 else "latency_ms:>1000"
            check |= {"numerator": numerator, "warning": 2, "critical": 5}
        else:
            field_ = ("cpu_pct", "disk_pct", "mem_pct")[(i // 10) % 3]
            check |= {"kind": "metric", "index": METRICS, "query": f"host:{host}"}
            check |= {"field": field_, "agg": "max", "warning": 80, "critical": 90, "unit": "%"}
        if (i // 10 + slot) % 5 == 0:  # 20 % of each kind
            check["group_by"] = "host"
            if slot == 1:
                check["query"] = "level:ERROR"
            elif slot == 9:
                del check["query"]
        checks.append(check)
    return {"defaults": {"interval": interval}, "checks": checks}


def grouped_mix(
    n: int, hosts: Sequence[str], groups: int, interval: str, prefix: str = "scrape"
) -> dict[str, Any]:
    """``n`` checks grouped by host, each matching exactly ``groups`` hosts (series count)."""
    picked = " OR ".join(hosts[:groups])
    checks = []
    for i in range(n):
        check: dict[str, Any] = {
            "name": f"{prefix}-{i:05d}",
            "index": LOGS,
            "window": "1h",
            "query": f"host:({picked})",
            "group_by": "host",
        }
        if i % 2:
            check |= {"kind": "count", "warning": 500, "critical": 2000}
        else:
            check |= {"kind": "metric", "field": "latency_ms", "agg": "avg", "critical": 500}
        checks.append(check)
    return {"defaults": {"interval": interval}, "checks": checks}


def dump(mapping: dict[str, Any]) -> str:
    return json.dumps(mapping, indent=1)


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (``/proc/<pid>/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


CHECKS_PER_FILE = 1000  # a check file holds at most 1 MiB (limits.MAX_CHECK_FILE_BYTES)


def split(mapping: dict[str, Any], per_file: int = CHECKS_PER_FILE) -> list[dict[str, Any]]:
    """The mapping as several check files with the same defaults, each well under 1 MiB.

    5,000 checks in one file would be refused, as an operator's would: a deployment of that
    size has its checks in several files.
    """
    checks = mapping["checks"]
    return [
        {**mapping, "checks": checks[i : i + per_file]} for i in range(0, len(checks), per_file)
    ] or [mapping]


def load(mapping: dict[str, Any]) -> list[Any]:
    """The mapping's checks, validated as a service loads them (one file per ``split`` part)."""
    from esbridge.loader import load_text

    return [
        check
        for i, part in enumerate(split(mapping))
        for check in load_text(dump(part), f"<bench part {i + 1}>")
    ]


def write(mapping: dict[str, Any], folder: Path, tag: str) -> list[Path]:
    """The mapping written as check files ``tag-N.yaml`` in ``folder``."""
    paths = []
    for i, part in enumerate(split(mapping)):
        path = folder / f"{tag}-{i + 1}.yaml"
        path.write_text(dump(part))
        paths.append(path)
    return paths


# --------------------------------------------------------------------------- statistics


@dataclass
class Figure:
    """One measured quantity over repeated runs."""

    key: str
    unit: str
    what: str
    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(float(value))

    def summary(self) -> dict[str, Any]:
        vals = [v for v in self.values if not math.isnan(v)]
        if not vals:
            return {"min": None, "median": None, "max": None, "n": 0, "unit": self.unit}
        return {
            "min": min(vals),
            "median": statistics.median(vals),
            "max": max(vals),
            "n": len(vals),
            "unit": self.unit,
            "what": self.what,
        }


class Figures:
    """Ordered collection of figures, keyed by a stable dotted name."""

    def __init__(self) -> None:
        self.by_key: dict[str, Figure] = {}

    def add(self, key: str, value: float, unit: str = "", what: str = "") -> None:
        fig = self.by_key.get(key)
        if fig is None:
            fig = self.by_key[key] = Figure(key, unit, what)
        fig.add(value)

    def median(self, key: str) -> float | None:
        fig = self.by_key.get(key)
        return fig.summary()["median"] if fig else None

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {k: f.summary() for k, f in self.by_key.items()}


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100) of raw samples."""
    if not values:
        return math.nan
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo, hi = math.floor(pos), math.ceil(pos)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


# --------------------------------------------------------------------------- Prometheus text

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")
_LE = re.compile(r'le="([^"]+)"')


def samples(text: str, name: str) -> list[tuple[str, float]]:
    """(labels text, value) of every sample of metric ``name``."""
    out = []
    for line in text.splitlines():
        if not line or line[0] == "#":
            continue
        m = _SAMPLE.match(line)
        if m and m.group(1) == name:
            out.append((m.group(2) or "", float(m.group(3))))
    return out


def histogram(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) buckets of histogram ``name``, +Inf last."""
    buckets = []
    for labels, value in samples(text, f"{name}_bucket"):
        m = _LE.search(labels)
        if m:
            buckets.append((float(m.group(1)), value))
    return sorted(buckets)


def bucket_delta(
    after: Sequence[tuple[float, float]], before: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    """The observations made between two scrapes of the same cumulative histogram."""
    prior = dict(before)
    return [(le, count - prior.get(le, 0.0)) for le, count in after]


def bucket_quantile(buckets: Sequence[tuple[float, float]], q: float) -> float:
    """Quantile (0..1) from cumulative buckets, interpolating linearly inside a bucket.

    Same rule as PromQL's ``histogram_quantile``: the first bucket starts at 0; a rank in
    the +Inf bucket returns the largest finite bound (the value is "at least" that).
    """
    if not buckets:
        return math.nan
    total = buckets[-1][1]
    if total <= 0:
        return math.nan
    rank = q * total
    prev_le, prev_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return prev_le
            if count == prev_count:
                return le
            return prev_le + (le - prev_le) * (rank - prev_count) / (count - prev_count)
        prev_le, prev_count = le, count
    return prev_le


def parse_wrk(lines: Iterable[str]) -> dict[str, float]:
    """The JSON line our wrk Lua ``done`` hook prints."""
    for line in lines:
        if line.startswith("BENCHJSON "):
            return {k: float(v) for k, v in json.loads(line[len("BENCHJSON ") :]).items()}
    raise ValueError("wrk printed no BENCHJSON line")
