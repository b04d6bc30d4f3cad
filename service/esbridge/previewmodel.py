"""What a preview is: the points a check would have given, what they add up to, its JSON.

A :class:`Preview` holds one :class:`PreviewPoint` per step (the full :class:`Result` the
check would have had) and answers what an operator wants to know about the period:
transitions, time per state, pages, the groups that were not OK the longest.
:func:`preview_to_dict` is the JSON of ``esbridge preview --format json`` and of
``GET /api/v1/checks/{name}/preview``. Plain data: nothing here queries Elasticsearch.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from esbridge.durations import format_duration
from esbridge.models import CheckDefinition
from esbridge.ranges import Range
from esbridge.result import Result, State

GROUPS_SHOWN = 3
"""Worst groups kept per point in the JSON."""


class PreviewError(Exception):
    """A preview that cannot be made; ``kind`` picks the exit code / HTTP status.

    ``no_history`` (cluster kinds), ``bad_request`` (since/step/until/too many points).
    Elasticsearch failures are not raised: they make the points UNKNOWN (``Preview.error``).
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class PreviewPoint:
    """What the check would have said at ``at`` (its window ends ``delay`` before)."""

    at: float
    result: Result

    @property
    def state(self) -> State:
        return self.result.state

    @property
    def value(self) -> float | None:
        return self.result.value


@dataclass
class Preview:
    """A check replayed over a period, with what an operator wants to know about it."""

    check: CheckDefinition
    since: timedelta
    step: timedelta
    until: float
    points: list[PreviewPoint]
    method: str  # "histogram" | "per-step" | "none" (a time field that is not a date)
    requests: int  # HTTP requests sent to Elasticsearch
    searches: int  # searches inside those requests
    notes: list[str] = field(default_factory=list)
    markers: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None  # Elasticsearch answered no point: every point is UNKNOWN

    @property
    def transitions(self) -> list[tuple[PreviewPoint, State]]:
        """(point where the state changed, state before)."""
        out = []
        for before, point in zip(self.points, self.points[1:], strict=False):
            if point.state is not before.state:
                out.append((point, before.state))
        return out

    def time_in_state(self) -> dict[str, float]:
        """Seconds per state: each point stands for one step."""
        seconds = {s.name: 0.0 for s in State}
        for point in self.points:
            seconds[point.state.name] += self.step.total_seconds()
        return seconds

    def pages(self) -> int:
        """Transitions into CRITICAL: each would have paged someone."""
        return sum(1 for p, _ in self.transitions if p.state is State.CRITICAL)

    def warnings(self) -> int:
        """Transitions from OK into WARNING."""
        return sum(
            1 for p, before in self.transitions if p.state is State.WARNING and before is State.OK
        )

    def worst_groups(self, limit: int = 10) -> list[dict[str, Any]]:
        """Groups ranked by the time they were not OK (then by their worst state)."""
        step = self.step.total_seconds()
        stats: dict[str, dict[str, Any]] = {}
        for point in self.points:
            for group in point.result.groups:
                if group.state is State.OK:
                    continue
                entry = stats.setdefault(
                    group.key_text,
                    {"group": group.key_text, "seconds_not_ok": 0.0, "worst": State.OK},
                )
                entry["seconds_not_ok"] += step
                if group.state.severity > entry["worst"].severity:
                    entry["worst"] = group.state
        ranked = sorted(stats.values(), key=lambda e: (-e["seconds_not_ok"], -e["worst"].severity))
        return [{**e, "worst": e["worst"].name} for e in ranked[:limit]]


def _num(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return value


def range_to_dict(value: Range | None) -> dict[str, Any] | None:
    """A threshold for charts: the alerting side(s) with infinities as null."""
    if value is None:
        return None
    return {
        "text": str(value),
        "start": _num(value.start),
        "end": _num(value.end),
        "inside": value.inside,
    }


def preview_to_dict(
    preview: Preview, render: Callable[[Result], str] | None = None
) -> dict[str, Any]:
    """The JSON of ``esbridge preview --format json`` and ``GET .../preview``."""
    check = preview.check

    def point(p: PreviewPoint) -> dict[str, Any]:
        item: dict[str, Any] = {"at": p.at, "value": _num(p.value), "state": p.state.name}
        if check.group_by:
            item["groups"] = [
                {"group": g.key_text, "state": g.state.name, "value": _num(g.value)}
                for g in p.result.groups[:GROUPS_SHOWN]
            ]
        if p.result.error:
            item["error"] = p.result.error
        return item

    last = preview.points[-1]
    body: dict[str, Any] = {
        "check": check.name,
        "kind": check.kind,
        "unit": check.unit,
        "window": format_duration(check.window),
        "since": format_duration(preview.since),
        "step": format_duration(preview.step),
        "from": preview.points[0].at,
        "until": preview.until,
        "thresholds": {
            "warning": range_to_dict(check.warning),
            "critical": range_to_dict(check.critical),
        },
        "error": preview.error,
        "method": preview.method,
        "requests": preview.requests,
        "searches": preview.searches,
        "notes": list(preview.notes),
        "points": [point(p) for p in preview.points],
        "transitions": [
            {
                "at": p.at,
                "from": before.name,
                "to": p.state.name,
                "value": _num(p.value),
                "summary": p.result.summary,
            }
            for p, before in preview.transitions
        ],
        "time_in_state": preview.time_in_state(),
        "pages": preview.pages(),
        "warnings": preview.warnings(),
        "worst_groups": preview.worst_groups() if check.group_by else [],
        "last": {
            "at": last.at,
            "state": last.state.name,
            "value": _num(last.value),
            "summary": last.result.summary,
        },
        "markers": list(preview.markers),
    }
    if render is not None:
        body["last"]["nagios"] = render(last.result)
    return body
