"""The deployment gate verdict: did the selected checks stay healthy for a period? Pure.

A pipeline asks "were these checks OK continuously for ``for`` after ``since``?". The answer is
judged from the store's state history (the transitions and the current result), never from
the latest state alone: a check that went CRITICAL and back within the period fails. Missing
data never passes: a stale, UNKNOWN or never-evaluated result makes the verdict ``unknown``,
and ``pass`` needs a result evaluated at or after the end of the period.

Verdicts, overall and per check: ``fail`` (some check left the allowed states; final),
``unknown`` (no trustworthy data; final), ``pending`` (the period runs), ``pass`` (final).
Overall: any fail → fail, else any unknown → unknown, else any pending → pending, else pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from esbridge.durations import parse_duration
from esbridge.result import State
from esbridge.statedoc import Transition

Verdict = Literal["pass", "fail", "pending", "unknown"]
VERDICT_ORDER: tuple[Verdict, ...] = ("fail", "unknown", "pending", "pass")
EXIT_CODES: dict[str, int] = {"pass": 0, "fail": 1, "unknown": 3}  # 2: error (CLI only)


LATEST = datetime(9999, 1, 1, tzinfo=UTC).timestamp()
"""Times from the outside must stay below this (so any period after them prints as a date)."""


def parse_time(text: str, now: float) -> float:
    """Unix seconds, ISO 8601 (``2026-11-29T01:00:00Z``) or a duration ago (``-5m``), as
    unix seconds between 1970 and 9999 (what a date can be; beyond is an error, not a 500)."""
    text = text.strip()
    if text.startswith("-"):
        at = now - parse_duration(text[1:]).total_seconds()
    else:
        try:
            at = float(text)
        except ValueError:
            try:
                parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
            except ValueError:
                raise ValueError(
                    f"since {text!r}: use unix seconds, ISO 8601 (2026-11-29T01:00:00Z) "
                    "or -DURATION"
                ) from None
            at = (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
    if not 0.0 <= at < LATEST:
        raise ValueError(f"since {text!r} is not a time between 1970 and 9999")
    return at


@dataclass(frozen=True, slots=True)
class CheckHistory:
    """What the store knows about one check, read at one moment."""

    name: str
    state: State | None  # the effective state now (UNKNOWN when stale); None: never evaluated
    summary: str
    evaluated_at: float | None  # of the latest result
    stale: bool
    changes: Sequence[Transition]  # oldest first, as kept by the store (bounded history)


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    name: str
    verdict: Verdict
    state: str  # the state that decided (the bad one for fail), PENDING when never evaluated
    summary: str
    since: float | None  # when the deciding state began (for fail: when it went bad)
    reason: str


@dataclass(frozen=True, slots=True)
class GateVerdict:
    verdict: Verdict
    reason: str
    start: float
    end: float
    checks: tuple[CheckVerdict, ...]


def allowed(state: State, allow_warning: bool) -> bool:
    return state is State.OK or (allow_warning and state is State.WARNING)


def judge_check(
    history: CheckHistory, start: float, end: float, now: float, allow_warning: bool = False
) -> CheckVerdict:
    """The verdict of one check over [start, end], as far as ``now`` has seen it."""
    name = history.name
    if history.state is None or history.evaluated_at is None:
        if now < end:
            return CheckVerdict(name, "pending", "PENDING", "", None, "not evaluated yet")
        return CheckVerdict(
            name, "unknown", "PENDING", "", None, "never evaluated: no data for the period"
        )
    # The states in effect during [start, min(now, end)]: the one at start, then each change.
    seen: list[Transition] = []
    before = [c for c in history.changes if c.at <= start]
    after = [c for c in history.changes if start < c.at <= min(now, end)]
    later = [c for c in history.changes if c.at > min(now, end)]
    first = after[0] if after else later[0] if later else None
    if before:
        seen.append(before[-1])
    elif first is not None and first.from_state is not None:
        # History was trimmed: the state at start is what the first kept change left.
        seen.append(Transition(at=start, from_state=None, to_state=first.from_state, summary=""))
    elif first is not None and not after:
        # The first result came after the period (a new check, esbridge started late):
        # nothing was seen of the period, and missing data never passes.
        return CheckVerdict(
            name,
            "unknown",
            first.to_state.name,
            history.summary,
            first.at,
            "never evaluated during the period: its first result came after the end",
        )
    seen.extend(after)
    if not history.changes and history.state is not None:  # no history kept: current only
        seen.append(
            Transition(at=start, from_state=None, to_state=history.state, summary=history.summary)
        )
    for change in seen:
        if change.to_state not in (State.OK, State.WARNING, State.UNKNOWN) or (
            change.to_state is State.WARNING and not allow_warning
        ):
            return CheckVerdict(
                name,
                "fail",
                change.to_state.name,
                change.summary or history.summary,
                change.at,
                f"{change.to_state.name} during the period",
            )
    if history.stale:
        return CheckVerdict(
            name,
            "unknown",
            "UNKNOWN",
            history.summary,
            history.evaluated_at,
            "the result is stale: esbridge cannot evaluate this check",
        )
    for change in seen:
        if change.to_state is State.UNKNOWN:
            return CheckVerdict(
                name,
                "unknown",
                "UNKNOWN",
                change.summary or history.summary,
                change.at,
                "UNKNOWN during the period: no data to judge",
            )
    current = seen[-1] if seen else None
    since = current.at if current else None
    state = history.state.name
    if now < end or history.evaluated_at < end:
        wait = "the period runs" if now < end else "waiting for an evaluation after the period"
        return CheckVerdict(name, "pending", state, history.summary, since, wait)
    return CheckVerdict(
        name, "pass", state, history.summary, since, "stayed allowed for the whole period"
    )


def judge(
    histories: Sequence[CheckHistory],
    start: float,
    duration: float,
    now: float,
    allow_warning: bool = False,
) -> GateVerdict:
    """The overall verdict; ``histories`` must not be empty (no selection is an error)."""
    if not histories:
        raise ValueError("no checks selected")
    end = start + duration
    checks = tuple(judge_check(h, start, end, now, allow_warning) for h in histories)
    verdict = next(v for v in VERDICT_ORDER if any(c.verdict == v for c in checks))
    deciding = [c for c in checks if c.verdict == verdict]
    if verdict == "pass":
        reason = f"all {len(checks)} checks stayed allowed for the whole period"
    elif verdict == "pending":
        reason = f"{len(deciding)} of {len(checks)} checks still in the period"
    else:
        first = deciding[0]
        what = f"{first.state}: {first.summary}" if verdict == "fail" else first.reason
        more = f" (and {len(deciding) - 1} more)" if len(deciding) > 1 else ""
        reason = f"{first.name} {what}{more}"
    return GateVerdict(verdict, reason, start, end, checks)
