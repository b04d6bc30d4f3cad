"""What the kind tests (test_kinds_*.py) share: run a check file through the real Runner.

A plain module rather than conftest fixtures: these are functions the tests call with their
own YAML and ``now``, and each test file keeps its own ``now`` fixture and index mappings.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from esbridge.config import ConnectionConfig
from esbridge.esclient import Connections
from esbridge.loader import load_text
from esbridge.result import Result
from esbridge.runner import Runner


async def run_yaml(
    es_url: str,
    text: str,
    now: datetime | None = None,
    stats: dict[str, int] | None = None,
    previous: dict[str, Result] | None = None,
    **connection: Any,
) -> dict[str, Result]:
    """Load a check file and run all its checks in one cycle at ``now`` (the clock if None),
    as the service would; ``stats`` receives the connection counters; ``previous`` holds the
    last results by check name (what the service's store hands the runner); ``connection``:
    more connection settings (``merge_searches=False``)."""
    checks = list(load_text(text))
    connections = Connections({"default": ConnectionConfig(urls=(es_url,), **connection)})
    moment = None if now is None else now.timestamp()
    try:
        last = previous.get if previous is not None else None
        results = await Runner(connections, previous=last).run(checks, now=moment)
        if stats is not None:
            counters = connections.get("default").stats
            # _msearch requests: what batching and merging decide (the once-a-minute
            # _field_caps of the time fields is not one of them)
            stats.update(requests=counters.msearch_requests, searches=counters.searches)
    finally:
        await connections.close()
    return {r.check: r for r in results}


def checks_yaml(index: str, checks: list[dict[str, Any]]) -> str:
    """A check file (JSON is YAML) with ``index`` as a default."""
    return json.dumps({"defaults": {"index": index}, "checks": checks})
