"""HTTP routes of the deployment gate and the deploy events (included by ``api.py``).

``GET /api/v1/gate`` reads the store only (the verdict logic is :mod:`esbridge.gate`);
``POST /api/v1/events`` needs the write token and goes to Elasticsearch through
:class:`esbridge.events.EventStore`; ``GET /api/v1/events`` lists the events esbridge knows.
"""

from __future__ import annotations

import asyncio
import fnmatch
import re
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from esbridge.api import ControlDep, ErrorBody, ViewDep, guarded
from esbridge.durations import format_duration, parse_duration
from esbridge.errors import ESError
from esbridge.events import DeployEvent, DeployEventIn, iso
from esbridge.gate import LATEST, CheckHistory, GateVerdict, judge, parse_time
from esbridge.limits import Slots
from esbridge.models import CheckDefinition
from esbridge.view import ServiceView

MAX_WAIT = 1800.0  # seconds: the longest a gate request is held (wait=30m)
POLL = 0.25  # seconds between looks at the store while a request waits
MAX_WAITING = 32
"""Gate requests held by ``wait`` at once. Each holds a connection (of
``limits.MAX_CONNECTIONS``, which can only evict idle ones): more get a 429 at once, so
``/healthz``, ``/metrics`` and the Nagios plugin always find a connection."""
POLL_SHARE = 2 * MAX_WAITING
"""A waiting request looks again after at least this many times what its last look cost:
with every waiting slot taken, the looks use at most half of the event loop (a wait over
5,000 checks costs ~0.1 s a look; polled every 0.25 s by 32 requests, /healthz stalled)."""
WAITING_RETRY_AFTER = 10  # seconds, the Retry-After of that 429
MAX_SELECTORS = 100  # check= plus tag= parameters of one request (422 beyond)
MAX_SUGGESTED = 3  # patterns of a 404 given "did you mean" suggestions (a similarity search)
GLOB_CHARS = frozenset("*?[")

router = APIRouter()
errors: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody},
    403: {"model": ErrorBody},
    404: {"model": ErrorBody, "description": "No check matches the selection"},
    422: {"model": ErrorBody},
    429: {"model": ErrorBody, "description": f"{MAX_WAITING} gate requests are already waiting"},
    503: {"model": ErrorBody, "description": "Deploy events are disabled or unreachable"},
}


def _route(
    path: str, model: type[Any], summary: str, write: bool = False, **options: Any
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A route of this module: a read (GET) or a write (POST, needs the write token)."""
    method = router.post if write else router.get
    return method(path, response_model=model, summary=summary, **guarded(write, errors), **options)


class GateCheck(BaseModel):
    name: str
    verdict: Literal["pass", "fail", "pending", "unknown"]
    state: str = Field(description="the deciding state: the bad one for fail, else the current")
    summary: str
    since: float | None = Field(description="when the deciding state began (unix seconds)")
    since_iso: str | None
    reason: str


class GateAnswer(BaseModel):
    """The verdict over the selected checks; ``pass``, ``fail`` and ``unknown`` are final."""

    verdict: Literal["pass", "fail", "pending", "unknown"]
    reason: str
    start: float = Field(description="start of the period (the since parameter, default now)")
    start_iso: str
    end: float = Field(description="start + for")
    end_iso: str
    for_: str = Field(alias="for", description="the period, e.g. 10m")
    allow: Literal["ok", "warning"]
    remaining_seconds: float = Field(description="until the end of the period (0 when over)")
    generated_at: float
    checks: list[GateCheck]

    model_config = {"populate_by_name": True}


class EventList(BaseModel):
    events: list[DeployEvent]
    error: str | None = Field(description="why reading the events index failed, if it did")


def _wait_slots(request: Request) -> Slots:
    slots = getattr(request.app.state, "gate_wait_slots", None)
    if slots is None:
        slots = Slots(MAX_WAITING)
        request.app.state.gate_wait_slots = slots
    return slots


def matcher(patterns: list[str]) -> Callable[[str], bool] | None:
    """One test for "matches any of these names or globs" (None: no patterns, all match).

    Plain names are a set lookup; the globs are compiled once into one regex (``fnmatch``'s
    own translation, case-sensitive as ``fnmatchcase``), so the cost per check is one match
    however many patterns there are.
    """
    if not patterns:
        return None
    unique = list(dict.fromkeys(patterns))
    exact = {p for p in unique if GLOB_CHARS.isdisjoint(p)}
    globs = [p for p in unique if p not in exact]
    if not globs:
        return exact.__contains__
    regex = re.compile("|".join(fnmatch.translate(p) for p in globs))
    return lambda name: name in exact or regex.match(name) is not None


def select(
    checks: Iterable[tuple[str, CheckDefinition]], patterns: list[str], tags: list[str]
) -> list[str]:
    """Checks matching any name glob (all checks when none) and carrying every tag."""
    match = matcher(patterns)
    wanted = set(tags)
    names = [
        name
        for name, check in checks
        if (match is None or match(name)) and wanted.issubset(check.tags)
    ]
    return sorted(names)


def suggest(view: ServiceView, patterns: list[str]) -> list[str]:
    """Loaded names close to the first few patterns (a similarity search over every name)."""
    return sorted({n for p in patterns[:MAX_SUGGESTED] for n in view.close_names(p)})


def histories(view: ServiceView, names: list[str], now: float) -> list[CheckHistory]:
    out = []
    for name in names:
        entry = view.entry(name)
        result = view.effective(entry, now) if entry is not None else None
        if entry is None or result is None:
            out.append(CheckHistory(name, None, "not evaluated yet", None, False, ()))
            continue
        out.append(
            CheckHistory(
                name=name,
                state=result.state,
                summary=result.summary,
                evaluated_at=entry.result.evaluated_at if entry.result else None,
                stale=view.is_stale(entry, now),
                changes=list(entry.transitions),
            )
        )
    return out


def answer(verdict: GateVerdict, duration: float, allow_warning: bool, now: float) -> GateAnswer:
    return GateAnswer(
        verdict=verdict.verdict,
        reason=verdict.reason,
        start=verdict.start,
        start_iso=iso(verdict.start),
        end=verdict.end,
        end_iso=iso(verdict.end),
        for_=format_duration(parse_duration(duration)),
        allow="warning" if allow_warning else "ok",
        remaining_seconds=round(max(0.0, verdict.end - now), 3),
        generated_at=now,
        checks=[
            GateCheck(
                name=c.name,
                verdict=c.verdict,
                state=c.state,
                summary=c.summary,
                since=c.since,
                since_iso=iso(c.since) if c.since else None,
                reason=c.reason,
            )
            for c in verdict.checks
        ],
    )


@_route(
    "/api/v1/gate",
    GateAnswer,
    "Deployment gate: did the selected checks stay OK for a period?",
    response_model_by_alias=True,
)
async def gate(
    view: ViewDep,
    request: Request,
    for_: Annotated[str, Query(alias="for", description="the period, e.g. 10m")],
    check: Annotated[
        list[str] | None, Query(description="check name or glob, e.g. web-* (repeatable)")
    ] = None,
    tag: Annotated[list[str] | None, Query(description="checks with this tag (repeatable)")] = None,
    since: Annotated[
        str | None,
        Query(description="start of the period: unix seconds, ISO 8601 or -5m; default now"),
    ] = None,
    wait: Annotated[
        str | None,
        Query(description="hold the request up to this long (max 30m) for a final verdict"),
    ] = None,
    allow: Annotated[
        Literal["ok", "warning"], Query(description="warning: WARNING does not fail the gate")
    ] = "ok",
) -> GateAnswer:
    received = time.time()
    try:
        duration = parse_duration(for_).total_seconds()
        held = parse_duration(wait).total_seconds() if wait else 0.0
        start = parse_time(since, received) if since else received
    except ValueError as exc:
        raise HTTPException(422, f"bad request: {exc}") from None
    if duration <= 0:
        raise HTTPException(422, "bad request: for must be longer than 0s")
    if start + duration >= LATEST:
        raise HTTPException(422, f"bad request: since {since} plus for {for_} ends after 9999")
    if held > MAX_WAIT:
        raise HTTPException(
            422, f"bad request: wait {wait} is longer than the maximum 30m; poll again instead"
        )
    if not check and not tag:
        raise HTTPException(422, "bad request: select checks with check=NAME_OR_GLOB or tag=TAG")
    patterns = list(dict.fromkeys(check or []))
    tags = list(dict.fromkeys(tag or []))
    if len(patterns) + len(tags) > MAX_SELECTORS:
        raise HTTPException(
            422,
            f"bad request: {len(patterns)} check and {len(tags)} tag parameters, at most "
            f"{MAX_SELECTORS} together: select with globs (check=web-*) or a tag instead",
        )
    slots = _wait_slots(request)
    if held > 0 and not slots.try_enter():  # refused before any work: cheap under a flood
        raise HTTPException(
            429,
            f"{slots.taken} gate requests are already waiting (at most {slots.limit}): "
            f"ask again in {WAITING_RETRY_AFTER} s with the same since, or ask without wait "
            "and poll",
            {"Retry-After": str(WAITING_RETRY_AFTER)},
        )
    try:
        return await _judge(view, request, patterns, tags, start, duration, received + held, allow)
    finally:
        if held > 0:
            slots.leave()


async def _judge(
    view: ServiceView,
    request: Request,
    patterns: list[str],
    tags: list[str],
    start: float,
    duration: float,
    deadline: float,
    allow: str,
) -> GateAnswer:
    """The verdict over the selection, looked at again until final or ``deadline``."""
    # In a worker thread over a snapshot: with thousands of checks and a hundred globs,
    # matching (and the similarity search of a 404) takes tens of milliseconds.
    names = await asyncio.to_thread(select, list(view.checks.items()), patterns, tags)
    if not names:
        raise HTTPException(
            404,
            {
                "error": f"no check matches check={patterns} tag={tags}",
                "did_you_mean": await asyncio.to_thread(suggest, view, patterns),
            },
        )
    allow_warning = allow == "warning"

    def look() -> tuple[GateVerdict, float, float]:
        """The verdict now, the time, and what working it out cost (seconds)."""
        began = time.perf_counter()
        now = time.time()
        verdict = judge(histories(view, names, now), start, duration, now, allow_warning)
        return verdict, now, time.perf_counter() - began

    while True:
        verdict, now, cost = look()
        if verdict.verdict != "pending" or now >= deadline or view.stopping:
            return answer(verdict, duration, allow_warning, now)
        if await request.is_disconnected():
            return answer(verdict, duration, allow_warning, now)
        await asyncio.sleep(min(max(POLL, cost * POLL_SHARE), max(0.0, deadline - now)))


@_route(
    "/api/v1/events", DeployEvent, "Record a deploy (needs the write token)", True, status_code=201
)
async def record_event(body: DeployEventIn, control: ControlDep) -> DeployEvent:
    if control.events is None:
        raise HTTPException(503, "deploy events are disabled (events.enabled: false)")
    try:
        return await control.events.record(body)
    except ESError as exc:
        if exc.status == 400:  # the content, not the cluster: the client's to fix
            raise HTTPException(422, f"Elasticsearch rejected the event: {exc}") from None
        raise HTTPException(503, f"could not record the deploy event: {exc}") from None


@_route(
    "/api/v1/events", EventList, "Recent deploy events (read from Elasticsearch by every replica)"
)
async def list_events(
    view: ViewDep,
    control: ControlDep,
    tag: Annotated[list[str] | None, Query(description="events concerning this tag")] = None,
    check: Annotated[str | None, Query(description="events concerning this check's tags")] = None,
    since: Annotated[str | None, Query(description="unix seconds, ISO 8601 or -1h")] = None,
) -> EventList:
    events = control.events
    if events is None:
        raise HTTPException(503, "deploy events are disabled (events.enabled: false)")
    try:
        start = parse_time(since, time.time()) if since else 0.0
    except ValueError as exc:
        raise HTTPException(422, f"bad request: {exc}") from None
    tags = list(tag or [])
    if check is not None:
        definition = view.checks.get(check)
        if definition is None:
            raise HTTPException(
                404,
                {
                    "error": f"no check named {check!r}",
                    "did_you_mean": view.close_names(check),
                },
            )
        tags += list(definition.tags)
    shown = [e for e in events.events if e.at >= start and (not tags or e.matches(tags))]
    return EventList(events=shown[::-1], error=events.error)
