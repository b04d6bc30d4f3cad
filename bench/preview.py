"""``esbridge preview`` cost over a day of sample data: requests, searches and time per check.

Why: a preview must be cheap enough to run from the status page on demand. This loads the
shipped checks (``checks/``) and replays each data check over ``--since`` (default 24h),
printing the method, the requests and searches sent (Elasticsearch's own counters of the
connection) and the best of ``--repeat`` wall times (query + combining + evaluating).

    .venv/bin/python -m esbridge_dev.sampledata --es-url URL --backfill-minutes 1440 --rate 5
    .venv/bin/python bench/preview.py --es-url URL [--since 24h] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

from esbridge.config import ConnectionConfig
from esbridge.durations import parse_duration
from esbridge.esclient import Connection
from esbridge.loader import load_checks
from esbridge.preview import default_step, preview_check

ROOT = Path(__file__).resolve().parents[1]


async def main(es_url: str, since: str, repeat: int) -> None:
    checks = load_checks([ROOT / "checks"])
    span = parse_duration(since)
    print(f"{'check':26} {'step':>5} {'points':>6} {'method':9} {'req':>3} {'searches':>8} best ms")
    for check in checks.checks.values():
        if check.is_cluster_kind:
            continue
        step = default_step(check, span, parse_duration("60s"))
        best = float("inf")
        for _ in range(repeat):
            connection = Connection("default", ConnectionConfig(urls=(es_url,)))
            try:
                started = time.perf_counter()
                preview = await preview_check(check, connection, span, step)
                best = min(best, time.perf_counter() - started)
                sent = (connection.stats.msearch_requests, connection.stats.searches)
            finally:
                await connection.close()
        assert sent == (preview.requests, preview.searches), (sent, preview.requests)
        print(
            f"{check.name:26} {int(step.total_seconds()):>4}s {len(preview.points):>6} "
            f"{preview.method:9} {preview.requests:>3} {preview.searches:>8} {best * 1000:7.0f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--es-url", required=True)
    parser.add_argument("--since", default="24h")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    asyncio.run(main(args.es_url, args.since, args.repeat))
    sys.exit(0)
