"""Evaluation: an Elasticsearch answer becomes a measurement, thresholds make it a state.

Pure functions, no I/O and no client: ``evaluate(check, answer, now)`` gets the response (or
the :class:`~esbridge.errors.ESError` that replaced it) and returns a :class:`Result` with a
summary written for a person woken at night: what was measured, the value, the threshold
crossed, the window and the index. Each kind evaluates in its own module
(``esbridge.kinds``); this module handles what is the same for all of them: failures and
partial answers become UNKNOWN, and a kind that cannot read its answer is UNKNOWN too.

Honesty rules: a failed or partial answer is UNKNOWN with the reason, never a number; a
missing value follows the check's ``no_data`` policy; groups beyond ``max_groups`` are counted
in the result, never dropped silently.
"""

from __future__ import annotations

from typing import Any

from esbridge.errors import ErrorKind, ESError
from esbridge.kinds import REGISTRY
from esbridge.kinds.base import CheckBase
from esbridge.kinds.judge import classify, low_values_alert, threshold_note
from esbridge.kinds.text import PERFDATA_UOMS, index_text, uom
from esbridge.result import Perfdatum, Result, State

__all__ = [
    "PERFDATA_UOMS",
    "classify",
    "error_result",
    "evaluate",
    "low_values_alert",
    "partial_problem",
    "threshold_note",
]


def evaluate(
    check: CheckBase,
    answer: dict[str, Any] | ESError,
    now: float,
    duration: float = 0.0,
    previous: Result | None = None,
) -> Result:
    """Turn the answer to ``check``'s request into a :class:`Result`.

    ``previous`` is the check's last result (from the store), for kinds that measure a
    change since the previous run (``thread_pool``); the others ignore it.
    """
    kind = REGISTRY[check.kind]
    if isinstance(answer, ESError):
        reason = kind.explain(check, answer) if kind.explain is not None else answer.message
        return error_result(check, answer.kind, reason, now, duration)
    problem = partial_problem(answer)
    if problem is not None:
        return error_result(check, "partial", problem, now, duration)
    lacking = [key for key in kind.expects if key not in answer] if kind.expects else None
    if lacking:
        reason = (
            f"unexpected answer from the cluster API (no {lacking[0]}): is something other "
            "than Elasticsearch or OpenSearch answering for it (a proxy)?"
        )
        return error_result(check, "internal", reason, now, duration)
    try:
        result = kind.evaluate(check, answer, now, previous)
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        return error_result(
            check,
            "internal",
            f"could not read Elasticsearch's answer: {type(exc).__name__}: {exc}",
            now,
            duration,
        )
    # The result was just built for this call and is not shared yet: set the two fields in
    # place instead of copying it (``dataclasses.replace`` was a tenth of the evaluation cost).
    object.__setattr__(result, "evaluated_at", now)
    object.__setattr__(result, "duration", duration)
    return result


def error_result(
    check: CheckBase, kind: ErrorKind | str, reason: str, now: float, duration: float = 0.0
) -> Result:
    """UNKNOWN with the reason: what every failure becomes."""
    where = f"{check.kind} check on {index_text(check)}"
    return Result(
        check=check.name,
        state=State.UNKNOWN,
        summary=f"{reason} ({where})" if check.index else reason,
        unit=check.unit,
        error=reason,
        error_kind=kind,
        evaluated_at=now,
        duration=duration,
        perfdata=(
            Perfdatum(check.perf_label(), None, uom(check.unit), check.warning, check.critical),
        ),
    )


_NO_SHARD = "no_shard_available_action_exception"


def partial_problem(answer: dict[str, Any]) -> str | None:
    """Never an OK built on partial data: failed shards or a server-side timeout."""
    shards = answer.get("_shards") or {}
    failed = int(shards.get("failed", 0) or 0)
    if failed:
        failures = shards.get("failures") or []
        detail = ", ".join(_shard_failure(f) for f in failures[:3])
        if any((f.get("reason") or {}).get("type") == _NO_SHARD for f in failures):
            detail += "; no primary shard available (an index is red)"
        return f"partial results: {failed} of {shards.get('total', '?')} shards failed ({detail})"
    total = int(shards.get("total", 0) or 0)
    answered = int(shards.get("successful", 0) or 0) + int(shards.get("skipped", 0) or 0)
    if total and answered < total:
        # OpenSearch leaves a shard with no copy to search out of "failed" (and names none).
        return (
            f"partial results: {total - answered} of {total} shards had no copy to search "
            "(no primary shard available: an index is red)"
        )
    if answer.get("timed_out"):
        return "search timed out on the server side (its timeout), partial results ignored"
    return None


def _shard_failure(failure: dict[str, Any]) -> str:
    """``[logs-1][0]: query_shard_exception: failed to create query``."""
    reason = failure.get("reason") or {}
    return (
        f"[{failure.get('index', '?')}][{failure.get('shard', '?')}]: "
        f"{reason.get('type', '')}: {reason.get('reason', '')}"
    )
