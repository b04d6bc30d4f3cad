"""CPU a test cluster costs with the JVM as shipped and on the JIT's first tier only.

The test suites start several single-node clusters per run on a 2-core machine; this prints
what one costs to boot (until it answers) and to index and search a little (200 documents,
200 small aggregations), read from /proc for the node's processes, for each JIT setting:

    .venv/bin/python bench/es_jit.py [--trials 2] [--version 8.19.21]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import httpx

from esbridge_dev.elasticsearch import QUICK_JIT, ElasticsearchServer

TICK = os.sysconf("SC_CLK_TCK")
AGG = {"size": 0, "aggs": {"m": {"max": {"field": "a"}}}}


def cpu_seconds(workdir: Path) -> float:
    """User + system CPU of every process whose command line names the node's folder."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if str(workdir) not in Path(f"/proc/{pid}/cmdline").read_text():
                continue
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def one(version: str | None, quick: bool) -> tuple[float, float, float]:
    server = ElasticsearchServer(version=version, config_files=QUICK_JIT if quick else None)
    started = time.monotonic()
    with server:
        wall = time.monotonic() - started
        assert server.workdir is not None
        boot = cpu_seconds(server.workdir)
        url = server.url
        with httpx.Client(timeout=60) as http:
            http.put(f"{url}/x", json={"settings": {"number_of_replicas": 0}})
            for i in range(200):
                http.post(f"{url}/x/_doc", json={"a": i})
                http.post(f"{url}/x/_search", json=AGG)
        work = cpu_seconds(server.workdir) - boot
    return wall, boot, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--version", default=None, help="Elasticsearch version (default: ES8)")
    args = parser.parse_args()
    print(
        f"{'JIT':<12} {'boot wall s':>12} {'boot CPU s':>11} {'work CPU s':>11}",
        f" (median of {args.trials})",
    )
    for quick in (False, True):
        runs = [one(args.version, quick) for _ in range(args.trials)]
        wall, boot, work = (statistics.median(r[i] for r in runs) for i in range(3))
        print(
            f"{'first tier' if quick else 'as shipped':<12} {wall:12.1f} {boot:11.1f} {work:11.1f}"
        )


if __name__ == "__main__":
    main()
