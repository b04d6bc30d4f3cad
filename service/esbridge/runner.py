"""One evaluation cycle for a set of due checks: plan, fetch in batches, evaluate.

Shared by the scheduler, ``esbridge run``, the plugin's direct mode and the benchmarks, so
all of them send exactly the same requests. Checks are grouped per connection; data checks
go out as ``_msearch`` batches, cluster checks share one fetch of each cluster API.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from esbridge.esclient import Connections, ESError
from esbridge.evaluate import error_result, evaluate
from esbridge.models import CheckDefinition
from esbridge.planner import ClusterFetch, SearchRequest, plan
from esbridge.result import Result


class Runner:
    """Evaluates checks against the configured connections."""

    def __init__(
        self, connections: Connections, default_timeout: timedelta = timedelta(seconds=10)
    ) -> None:
        self.connections = connections
        self.default_timeout = default_timeout

    def timeout_of(self, check: CheckDefinition) -> timedelta:
        return check.timeout or self.default_timeout

    async def run(
        self, checks: Sequence[CheckDefinition], now: float | None = None
    ) -> list[Result]:
        """Results in the order of ``checks``; never raises for an Elasticsearch problem."""
        moment = time.time() if now is None else now
        by_connection: dict[str, list[int]] = {}
        for position, check in enumerate(checks):
            by_connection.setdefault(check.cluster, []).append(position)
        results: list[Result | None] = [None] * len(checks)

        async def one_connection(name: str, positions: list[int]) -> None:
            subset = [checks[p] for p in positions]
            for position, result in zip(
                positions, await self._run_connection(name, subset, moment), strict=True
            ):
                results[position] = result

        await asyncio.gather(*(one_connection(n, p) for n, p in by_connection.items()))
        return [r for r in results if r is not None]

    async def _run_connection(
        self, name: str, checks: list[CheckDefinition], now: float
    ) -> list[Result]:
        started = time.perf_counter()
        try:
            connection = self.connections.get(name)
        except ESError as error:
            return [error_result(c, error.kind, error.message, now) for c in checks]
        moment = datetime.fromtimestamp(now, UTC)
        plans = [plan(c, moment, self.timeout_of(c)) for c in checks]
        timeout = max(self.timeout_of(c).total_seconds() for c in checks)

        searches = [(i, p) for i, p in enumerate(plans) if isinstance(p, SearchRequest)]
        fetches: dict[ClusterFetch, list[int]] = {}
        for i, p in enumerate(plans):
            if isinstance(p, ClusterFetch):
                fetches.setdefault(p, []).append(i)

        answers: list[dict[str, Any] | ESError | None] = [None] * len(checks)

        async def do_searches() -> None:
            if not searches:
                return
            got = await connection.msearch([p for _, p in searches], timeout)  # type: ignore[misc]
            # Elasticsearch parses every body of an _msearch before running any: one malformed
            # query_dsl rejects the whole batch. Re-send those searches one by one so only the
            # faulty check reads UNKNOWN and the others still get their answers.
            shared = [
                k
                for k, answer in enumerate(got)
                if isinstance(answer, ESError)
                and answer.kind == "rejected"
                and sum(other is answer for other in got) > 1
            ]
            if shared:
                alone = await asyncio.gather(
                    *(connection.msearch([searches[k][1]], timeout) for k in shared)  # type: ignore[misc]
                )
                for k, answer in zip(shared, alone, strict=True):
                    got[k] = answer[0]
            for (i, _), answer in zip(searches, got, strict=True):
                answers[i] = answer

        async def do_fetch(fetch: ClusterFetch, positions: list[int]) -> None:
            answer = await connection.cluster(fetch, timeout)
            for i in positions:
                answers[i] = answer

        try:
            # The bound covers retries with backoff too; past it the run is cancelled and
            # every check of it reads UNKNOWN instead of waiting forever.
            bound = (
                timeout * (connection.config.max_retries + 1)
                + 2 * connection.config.max_retries
                + 1
            )
            await asyncio.wait_for(
                asyncio.gather(do_searches(), *(do_fetch(f, ps) for f, ps in fetches.items())),
                bound,
            )
        except TimeoutError:
            error = ESError("timeout", f"Elasticsearch timed out after {timeout:g} s")
            answers = [a if a is not None else error for a in answers]
        duration = time.perf_counter() - started
        return [
            evaluate(
                check,
                answer if answer is not None else ESError("internal", "no answer"),
                now,
                duration,
            )
            for check, answer in zip(checks, answers, strict=True)
        ]
