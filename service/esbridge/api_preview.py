"""``GET /api/v1/checks/{name}/preview``: the check replayed over past data, as JSON.

Reads only (a token only when reads are protected). Bounded so that it can never delay the
scheduled runs: at most ``preview.max_points`` points, at most ``preview.max_concurrent``
previews at once (more are refused with 429 at once, never queued), each with its own
Elasticsearch client (the scheduled runs keep all their in-flight slots, and a failed
preview does not count as an Elasticsearch failure in ``/metrics``), and the combining and
evaluating done in a worker thread so the event loop keeps serving. When Elasticsearch
cannot answer, the points are UNKNOWN with the reason (``error`` says it), as live runs are.
"""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from esbridge.durations import parse_duration
from esbridge.limits import Slots
from esbridge.nagios import render
from esbridge.preview import (
    PreviewError,
    default_step,
    preview_on_own_connection,
    preview_to_dict,
)
from esbridge.view import Control

router = APIRouter()


def _gate(request: Request) -> Slots:
    control: Control = request.app.state.control
    gate = getattr(request.app.state, "preview_gate", None)
    if gate is None or gate.limit != control.settings.preview.max_concurrent:
        gate = Slots(control.settings.preview.max_concurrent)
        request.app.state.preview_gate = gate
    return gate


async def _read_access(request: Request) -> None:
    """The same rule as every read endpoint (``api.require_read``)."""
    from esbridge.api import require_read

    await require_read(request, request.app.state.view)


@router.get(
    "/api/v1/checks/{name}/preview",
    dependencies=[Depends(_read_access)],
    response_model=dict[str, Any],
    responses={
        404: {"description": "No such check"},
        422: {"description": "Bad since/step/until, too many points, or a cluster kind"},
        401: {"description": "Reads need a token (api.require_token_for_reads)"},
        403: {"description": "The token is not valid"},
        429: {"description": "Too many previews running"},
    },
)
async def check_preview(
    name: str,
    request: Request,
    since: Annotated[str, Query(description="how far back, e.g. 24h")] = "24h",
    step: Annotated[
        str | None, Query(description="one point per step (default: the check's interval)")
    ] = None,
    until: Annotated[
        float | None, Query(description="end of the period, unix seconds (default: now)")
    ] = None,
) -> JSONResponse:
    """What the check would have said at every step of the period, with its thresholds."""
    from esbridge.api import _not_found

    control: Control = request.app.state.control
    check = control.view.checks.get(name)
    if check is None:
        raise _not_found(name, request.app.state.view)
    bounds = control.settings.preview
    try:
        span = parse_duration(since)
        every = (
            parse_duration(step)
            if step
            else default_step(check, span, control.settings.defaults.interval)
        )
    except (ValueError, OverflowError) as error:
        raise HTTPException(422, f"bad request: {error}") from None
    if until is not None and not (0 < until <= time.time() + 60):
        raise HTTPException(
            422, "until must be a past time in unix seconds: a preview replays the past"
        )
    gate = _gate(request)
    if not gate.try_enter():
        raise HTTPException(
            429,
            f"{gate.taken} previews are already running (preview.max_concurrent "
            f"{gate.limit}): try again in a few seconds",
            {"Retry-After": "5"},
        )
    try:
        preview = await preview_on_own_connection(
            check,
            control.settings.elasticsearch.get(check.cluster),
            span,
            every,
            until,
            bounds.max_points,
            bounds.timeout,
        )
        if control.events is not None:  # deploys of a matching tag, as chart markers
            preview.markers = [
                {"at": e.at, "label": e.label}
                for e in control.events.matching(
                    check.tags, preview.until - span.total_seconds(), preview.until
                )
            ]
        body = await asyncio.to_thread(preview_to_dict, preview, render)
        # Encoded here, off the validation path: up to max_points points, on the event loop.
        return JSONResponse(body)
    except PreviewError as error:
        raise HTTPException(422, error.message) from None
    finally:
        gate.leave()
