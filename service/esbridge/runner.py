"""One evaluation cycle for a set of due checks: plan, fetch in batches, evaluate.

Shared by the scheduler, ``esbridge run``, the plugin's direct mode and the benchmarks, so
all of them send exactly the same requests. Checks are grouped per connection; data checks
go out as ``_msearch`` batches, cluster checks share one fetch of each cluster API.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from esbridge.errors import ErrorKind, ESError
from esbridge.esclient import Connection, Connections
from esbridge.evaluate import error_result, evaluate
from esbridge.models import CheckDefinition
from esbridge.planner import ClusterFetch, SearchRequest, plan
from esbridge.result import Result
from esbridge.searchmerge import Search, merge, split
from esbridge.timefields import TimeFields, Verdict

log = logging.getLogger(__name__)

# What a merged search can fail with because of one member's query or data: its members are
# then asked on their own (``_merged_search``). Other errors (unreachable, timeout,
# throttled, forbidden) are what each member's own search would have got.
_SEARCH_FAULTS = frozenset({ErrorKind.REJECTED, ErrorKind.INTERNAL})


class Runner:
    """Evaluates checks against the configured connections."""

    def __init__(
        self,
        connections: Connections,
        default_timeout: timedelta = timedelta(seconds=10),
        previous: Callable[[str], Result | None] | None = None,
    ) -> None:
        self.connections = connections
        self.default_timeout = default_timeout
        # The check's last result (the store's), for kinds that measure since the last run.
        self.previous = previous
        self._time_fields: dict[str, TimeFields] = {}  # per connection name

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
            try:
                got = await self._run_connection(name, subset, moment)
            except Exception as exc:  # isolation: a bug here costs this connection only
                got = [failed(c, "running", exc, moment) for c in subset]
            for position, result in zip(positions, got, strict=True):
                results[position] = result

        await asyncio.gather(*(one_connection(n, p) for n, p in by_connection.items()))
        return [r for r in results if r is not None]

    async def _run_connection(
        self, name: str, checks: list[CheckDefinition], now: float
    ) -> list[Result]:
        try:
            connection = self.connections.get(name)
        except ESError as error:
            return [error_result(c, error.kind, error.message, now) for c in checks]
        moment = datetime.fromtimestamp(now, UTC)
        timeout = max(self.timeout_of(c).total_seconds() for c in checks)
        results: list[Result | None] = [None] * len(checks)
        data = [i for i, c in enumerate(checks) if not c.is_cluster_kind]
        size = max(1, connection.config.max_searches_per_request)
        batches = [data[k : k + size] for k in range(0, len(data), size)]

        def planned(i: int) -> SearchRequest | ClusterFetch | None:
            try:
                return plan(checks[i], moment, self.timeout_of(checks[i]))
            except Exception as exc:  # e.g. a window that overflows the date range
                results[i] = failed(checks[i], "planning", exc, now)
                return None

        def evaluated(i: int, answer: dict[str, Any] | ESError, duration: float) -> None:
            try:
                before = self.previous(checks[i].name) if self.previous is not None else None
                results[i] = evaluate(checks[i], answer, now, duration, before)
            except Exception as exc:
                results[i] = failed(checks[i], "evaluating", exc, now, duration)

        def planned_data(positions: list[int]) -> tuple[list[int], list[SearchRequest]]:
            sent: list[int] = []
            requests: list[SearchRequest] = []
            for i in positions:
                request = planned(i)
                if isinstance(request, SearchRequest):
                    sent.append(i)
                    requests.append(request)
            return sent, requests

        async def one_batch(positions: list[int]) -> None:
            # Plan, send and evaluate batch by batch: while Elasticsearch works on one
            # batch, esbridge plans the next and evaluates the previous one. A check that
            # fails to plan or evaluate is UNKNOWN on its own; its batch-mates go on.
            started = time.perf_counter()
            sent, requests = planned_data(positions)
            if not requests:
                return
            answers = await self._search(connection, requests, timeout)
            duration = time.perf_counter() - started
            for i, answer in zip(sent, answers, strict=True):
                evaluated(i, answer, duration)

        async def merged_batch(sent: list[int], searches: list[Search]) -> None:
            started = time.perf_counter()
            answers = await self._merged_search(connection, searches, timeout)
            duration = time.perf_counter() - started
            for search, got in zip(searches, answers, strict=True):
                for position, answer in zip(search.positions, got, strict=True):
                    evaluated(sent[position], answer, duration)

        if connection.config.merge_searches and len(data) > 1:
            # Merging needs every request of the cycle first (the more checks share a
            # search, the less Elasticsearch works); planning is cheap next to a search.
            # Each _msearch still answers about `size` checks, so that esbridge evaluates
            # one answer while Elasticsearch works on the next, as without merging.
            sent, requests = planned_data(data)
            sends = [merged_batch(sent, part) for part in _by_checks(merge(requests, size), size)]
        else:
            sends = [one_batch(b) for b in batches]

        async def cluster_checks() -> None:
            fetches: dict[ClusterFetch, list[int]] = {}
            for i, check in enumerate(checks):
                if check.is_cluster_kind:
                    fetch = planned(i)
                    if isinstance(fetch, ClusterFetch):
                        fetches.setdefault(fetch, []).append(i)

            async def one_fetch(fetch: ClusterFetch, positions: list[int]) -> None:
                started = time.perf_counter()
                try:
                    answer = await connection.cluster(fetch, timeout)
                except Exception as exc:
                    answer = ESError("internal", f"cluster API call failed: {_reason(exc)}")
                duration = time.perf_counter() - started
                for i in positions:
                    evaluated(i, answer, duration)

            await asyncio.gather(*(one_fetch(f, ps) for f, ps in fetches.items()))

        not_dates: dict[int, Verdict] = {}

        async def date_fields() -> None:
            # beside the searches, not before them: a slow cluster must not double the wait
            try:
                not_dates.update(await self._date_field_problems(name, connection, checks, data))
            except Exception:  # never the runs' failure: the searches report the cluster
                log.exception("checking the timestamp fields on %s failed", name)

        started = time.perf_counter()
        try:
            # The bound covers retries with backoff too; past it the run is cancelled and
            # every check of it reads UNKNOWN instead of waiting forever.
            bound = (
                timeout * (connection.config.max_retries + 1)
                + 2 * connection.config.max_retries
                + 1
            )
            await asyncio.wait_for(asyncio.gather(*sends, cluster_checks(), date_fields()), bound)
        except TimeoutError:
            pass
        duration = time.perf_counter() - started
        for i, verdict in not_dates.items():
            if verdict.fatal:  # whatever the search said: its window held the wrong documents
                results[i] = error_result(
                    checks[i], ErrorKind.REJECTED, verdict.text, now, duration
                )
            elif (result := results[i]) is not None:  # judged; the long output says what it lacks
                results[i] = result.with_(long_output=(verdict.text, *result.long_output))
        return [
            result
            if result is not None
            else error_result(
                check,
                "timeout",
                f"{connection.product} timed out after {timeout:g} s",
                now,
                duration,
            )
            for check, result in zip(checks, results, strict=True)
        ]

    @staticmethod
    async def _merged_search(
        connection: Connection, searches: list[Search], timeout: float
    ) -> list[list[dict[str, Any] | ESError]]:
        """One ``_msearch`` of possibly merged searches: each member's own answer.

        A merged search that the cluster refuses (one member's bad query rejects it all) or
        that answers with failed or missing shards or a server-side timeout is sent again as
        its members' own searches, so only the faulty check reads UNKNOWN and no check gets
        a partial count because of another. An error that is not about the search
        (unreachable, client-side timeout, throttled, forbidden) is every member's answer, as
        their own searches would have got.
        """
        got = await Runner._search(connection, [s.request for s in searches], timeout)
        out: list[list[dict[str, Any] | ESError]] = []
        again: list[int] = []
        for k, (search, answer) in enumerate(zip(searches, got, strict=True)):
            if not search.merged:
                out.append([answer])
            elif isinstance(answer, ESError):
                out.append([answer] * len(search.members))
                if answer.kind in _SEARCH_FAULTS:
                    again.append(k)
            else:
                parts = split(search, answer)
                out.append(parts if parts is not None else [])
                if parts is None:
                    again.append(k)
        if again:
            alone = [member for k in again for member in searches[k].members]
            answers = iter(await Runner._search(connection, alone, timeout))
            for k in again:
                out[k] = [next(answers) for _ in searches[k].members]
        return out

    async def _date_field_problems(
        self, name: str, connection: Connection, checks: list[CheckDefinition], data: list[int]
    ) -> dict[int, Verdict]:
        """The data checks (positions in ``checks``) whose timestamp field is not a date
        everywhere they search, with what to fix (:mod:`esbridge.timefields`)."""
        if not data:
            return {}
        fields = self._time_fields.get(name)
        if fields is None or fields.connection is not connection:
            fields = self._time_fields[name] = TimeFields(connection)
        keys = {i: (tuple(checks[i].index), checks[i].timestamp_field) for i in data}
        timeout = min(self.timeout_of(checks[i]).total_seconds() for i in data)
        problems = await fields.problems(set(keys.values()), timeout)
        return {i: problems[key] for i, key in keys.items() if key in problems}

    @staticmethod
    async def _search(
        connection: Connection, requests: list[SearchRequest], timeout: float
    ) -> list[dict[str, Any] | ESError]:
        """One ``_msearch``; a rejected batch is retried search by search.

        Elasticsearch parses every body of an ``_msearch`` before running any: one malformed
        ``query_dsl`` rejects the whole batch. Those searches are re-sent one by one so only
        the faulty check reads UNKNOWN and the others still get their answers.
        """
        try:
            got = await connection.msearch(requests, timeout)
        except Exception as exc:
            # Not an Elasticsearch answer but a failure building the request (a body that
            # cannot be serialised): retry alone so only the faulty search is affected.
            if len(requests) == 1:
                return [ESError("internal", f"could not send the search: {_reason(exc)}")]
            parts = await asyncio.gather(
                *(Runner._search(connection, [r], timeout) for r in requests)
            )
            return [part[0] for part in parts]
        shared = [
            k
            for k, answer in enumerate(got)
            if isinstance(answer, ESError)
            and answer.kind == "rejected"
            and sum(other is answer for other in got) > 1
        ]
        if shared:
            alone = await asyncio.gather(
                *(connection.msearch([requests[k]], timeout) for k in shared)
            )
            for k, answer in zip(shared, alone, strict=True):
                got[k] = answer[0]
        return got


def _by_checks(searches: list[Search], size: int) -> list[list[Search]]:
    """Consecutive searches grouped so that each group answers at most ``size`` checks."""
    parts: list[list[Search]] = []
    checks = size
    for search in searches:
        if checks + len(search.members) > size:
            parts.append([])
            checks = 0
        parts[-1].append(search)
        checks += len(search.members)
    return parts


def _reason(exc: BaseException) -> str:
    text = str(exc)
    if len(text) > 300:
        text = text[:300] + "…"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def failed(
    check: CheckDefinition, step: str, exc: BaseException, now: float, duration: float = 0.0
) -> Result:
    """The UNKNOWN result of a check whose own planning/evaluation raised."""
    return error_result(
        check, "internal", f"error while {step} the check: {_reason(exc)}", now, duration
    )
