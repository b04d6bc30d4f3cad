"""Backtest a check over past data: what would it have said at each step of the last day?

A query path like the runner (planner → esclient → evaluate), never the store. Each point is
the value the check would have computed over its own window ending at that time, turned into
a state by the very same :func:`~esbridge.evaluate.evaluate` the service uses: the preview
builds, for every point, the answer Elasticsearch would have given to the check's own request
and hands it to the evaluator, so thresholds, ``no_data``, groups and summaries cannot drift.

How the answers are obtained, with as few requests as possible:

- **one histogram search** when the check's aggregation can be combined from pieces
  (:mod:`esbridge.previewhist`); when Elasticsearch says it left groups out, the preview
  falls back to the next method.
- **one ``_msearch`` of per-step searches** otherwise (percentile and cardinality cannot be
  combined from pieces; ``group_by`` on several fields; too many fine buckets): the check's
  own request for every point, ``max_searches_per_request`` searches per ``_msearch``.

Exact by construction: bucket boundaries coincide with window boundaries to the millisecond,
exactly as the planner writes them, so a point equals what ``esbridge run`` says for the same
window end (sums of floating-point values may differ in the last binary digit, never in
what the output shows). What a preview holds and its JSON: :mod:`esbridge.previewmodel`.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from esbridge.durations import format_duration
from esbridge.errors import ErrorKind, ESError
from esbridge.esclient import Connection, ConnectionConfig
from esbridge.evaluate import evaluate
from esbridge.models import CheckDefinition
from esbridge.planner import MULTI_GROUP_FETCH, SearchRequest, plan
from esbridge.previewhist import answers_from_histogram, histogram_plan
from esbridge.previewmodel import (
    Preview,
    PreviewError,
    PreviewPoint,
    preview_to_dict,
    range_to_dict,
)
from esbridge.timefields import TimeFields

__all__ = [
    "Preview",
    "PreviewError",
    "PreviewPoint",
    "default_step",
    "point_times",
    "preview_check",
    "preview_on_own_connection",
    "preview_to_dict",
    "range_to_dict",
]

NICE_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400)


def default_step(check: CheckDefinition, since: timedelta, interval: timedelta) -> timedelta:
    """The check's own interval, unless that makes more than ~300 points: then a round step."""
    own = check.interval or interval
    if since / own <= 300:
        return own
    wanted = since.total_seconds() / 300
    for nice in NICE_STEPS:
        if nice >= wanted:
            return timedelta(seconds=nice)
    return timedelta(seconds=math.ceil(wanted / 86400) * 86400)


def point_times(since: timedelta, step: timedelta, until: float, max_points: int) -> list[datetime]:
    """Window ends, oldest first; the last one is ``until`` itself (the right edge)."""
    if max_points < 1:
        raise PreviewError("bad_request", f"max points must be at least 1, not {max_points}")
    if step <= timedelta(0):
        raise PreviewError("bad_request", "step must be longer than 0s")
    if since <= timedelta(0):
        raise PreviewError("bad_request", "since must be longer than 0s")
    if step > since:
        raise PreviewError(
            "bad_request",
            f"step {format_duration(step)} is longer than since {format_duration(since)}",
        )
    count = int(since / step)
    if count > max_points:
        least = timedelta(seconds=math.ceil(since.total_seconds() / max_points))
        raise PreviewError(
            "bad_request",
            f"since {format_duration(since)} at step {format_duration(step)} is {count} points, "
            f"more than the limit of {max_points}: use a step of at least "
            f"{format_duration(least)}",
        )
    try:
        end = datetime.fromtimestamp(until, UTC)
        return [end - step * k for k in range(count - 1, -1, -1)]
    except (OverflowError, ValueError, OSError):
        raise PreviewError("bad_request", f"until {until!r} is not a usable time") from None


async def preview_check(
    check: CheckDefinition,
    connection: Connection,
    since: timedelta,
    step: timedelta,
    until: float | None = None,
    max_points: int = 2000,
    timeout: timedelta = timedelta(seconds=30),
) -> Preview:
    """Replay ``check`` over ``since`` before ``until`` (default: now), one point per step.

    Raises :class:`PreviewError` for what cannot be previewed; an Elasticsearch failure or a
    partial answer makes the points UNKNOWN with the reason, as it would a live run.
    """
    if check.is_cluster_kind:
        raise PreviewError(
            "no_history",
            f"{check.name} is a {check.kind} check: it reads the cluster's current state "
            "through the cluster APIs, which keep no history, so there is nothing to replay "
            "(preview works for count, metric, ratio, change and freshness checks)",
        )
    end = time.time() if until is None else until
    ends = point_times(since, step, end, max_points)
    nows = [e.timestamp() for e in ends]
    nows[-1] = end  # the right edge is exactly ``until``, as a run at that moment
    seconds = timeout.total_seconds()
    requests = searches = 0
    notes: list[str] = []

    key = (tuple(check.index), check.timestamp_field)
    verdict = (await TimeFields(connection).problems([key], seconds)).get(key)
    if verdict is not None and verdict.fatal:
        problem = verdict.text
        # what a run says (runner): a time field that is not a date, every point UNKNOWN
        failed = [ESError(ErrorKind.REJECTED, problem)] * len(nows)
        points = _evaluate_all(check, failed, nows)
        return Preview(check, since, step, end, points, "none", 0, 0, notes, error=problem)
    if verdict is not None:  # a date in some of the indices only: counted there, as a run
        notes.append(verdict.text)
    hist = histogram_plan(check, ends, timeout)
    why_not = hist if isinstance(hist, str) else None
    if not isinstance(hist, str):
        answer = (await connection.msearch([hist.request], seconds))[0]
        requests += 1
        searches += 1
        if isinstance(answer, ESError):
            # Every point UNKNOWN with the reason, as a live run would be: never a gap
            # that reads as "nothing happened".
            points = _evaluate_all(check, [answer] * len(nows), nows)
            return Preview(
                check,
                since,
                step,
                end,
                points,
                "histogram",
                requests,
                searches,
                notes,
                error=answer.message,
            )
        answers = await asyncio.to_thread(
            answers_from_histogram, check, answer, hist, connection.product
        )
        if isinstance(answers, str):
            why_not = answers
        else:
            points = await asyncio.to_thread(_evaluate_all, check, answers, nows)
            return Preview(check, since, step, end, points, "histogram", requests, searches, notes)
    notes.append(f"one search per point: {why_not}")
    plans = [plan(check, e, timeout) for e in ends]
    per_step = [p for p in plans if isinstance(p, SearchRequest)]
    size = max(1, connection.config.max_searches_per_request)
    chunk = per_step_chunk(check, size, connection.config.max_in_flight)
    points: list[PreviewPoint] = []
    failed, first_error = 0, None
    for first in range(0, len(per_step), chunk):
        # Answered and evaluated a chunk at a time: only the points are kept, so a check
        # with thousands of groups per answer never holds every answer of the period.
        part = per_step[first : first + chunk]
        answers_or_errors = await connection.msearch(part, seconds)
        requests += math.ceil(len(part) / size)
        searches += len(part)
        errors = [a for a in answers_or_errors if isinstance(a, ESError)]
        failed += len(errors)
        first_error = first_error or (errors[0].message if errors else None)
        times = nows[first : first + len(part)]
        points += await asyncio.to_thread(_evaluate_all, check, answers_or_errors, times)
    error = first_error if per_step and failed == len(per_step) else None
    return Preview(
        check, since, step, end, points, "per-step", requests, searches, notes, error=error
    )


ANSWER_BUCKETS = 50_000
"""Group buckets a per-step preview holds in memory at once (tens of MB at most)."""


def per_step_chunk(check: CheckDefinition, size: int, in_flight: int) -> int:
    """How many per-step searches go out (and are evaluated) together: as many as the
    connection sends at once, fewer when each answer may hold thousands of groups."""
    groups = list(getattr(check, "group_by", ()) or ())
    buckets = MULTI_GROUP_FETCH if len(groups) > 1 else check.max_groups if groups else 1
    return max(1, min(size * max(1, in_flight), ANSWER_BUCKETS // max(1, buckets)))


async def preview_on_own_connection(
    check: CheckDefinition,
    config: ConnectionConfig | None,
    since: timedelta,
    step: timedelta,
    until: float | None,
    max_points: int,
    timeout: timedelta,
) -> Preview:
    """:func:`preview_check` on a connection of its own, closed afterwards: a preview's
    searches never queue behind (or delay) the scheduler's on the service's connection."""
    connection = None
    if config is not None and not check.is_cluster_kind:
        connection = Connection(check.cluster, config)
    try:
        return await preview_check(
            check,
            connection,  # type: ignore[arg-type]  # None only for cluster kinds (refused)
            since,
            step,
            until,
            max_points,
            timeout,
        )
    finally:
        if connection is not None:
            await connection.close()


def _evaluate_all(
    check: CheckDefinition, answers: Sequence[dict[str, Any] | ESError], nows: Sequence[float]
) -> list[PreviewPoint]:
    return [
        PreviewPoint(now, evaluate(check, answer, now))
        for answer, now in zip(answers, nows, strict=True)
    ]
