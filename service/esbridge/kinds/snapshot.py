"""``snapshot``: state and age of the newest snapshot in a repository ("is there a backup?").

As the NETWAYS check_elasticsearch plugin's snapshot mode: the newest finished snapshot
decides. FAILED → CRITICAL, PARTIAL → WARNING, SUCCESS → OK; its age (seconds since it
finished) is judged by ``warning``/``critical`` like ``freshness``; a snapshot still running
is named but the newest finished one is judged. No finished snapshot at all is ``no_data``
(CRITICAL by default: no backup). One ``_cat/snapshots`` call per repository and cycle, on
Elasticsearch and OpenSearch alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import quote

from pydantic import Field

from esbridge.errors import ESError
from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.fields import Name, ShortText
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import no_data
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.kinds.text import age_text
from esbridge.result import Perfdatum, Result, State

COLUMNS = "id,status,start_epoch,end_epoch,failed_shards,total_shards"
_STATUS_STATE = {
    "SUCCESS": State.OK,
    "PARTIAL": State.WARNING,  # some shards are missing from it
    "FAILED": State.CRITICAL,
    "INCOMPATIBLE": State.CRITICAL,  # written by a version this cluster cannot restore
}


class SnapshotCheck(ClusterCheck):
    """State and age of the newest snapshot in ``repository``."""

    requires_thresholds: ClassVar[bool] = False
    default_no_data: ClassVar[State] = State.CRITICAL
    kind: Literal["snapshot"] = "snapshot"
    repository: Name = Field(
        min_length=1, pattern=r"^[^\s/\\*?\"<>|,#]+$", description="snapshot repository name"
    )
    unit: ShortText = "s"

    def perf_label(self) -> str:
        return "age"


def plan(check: SnapshotCheck, window: Window) -> ClusterFetch:
    """``GET _cat/snapshots/<repository>``: the rows only, in every product and version."""
    return ClusterFetch(
        "/_cat/snapshots/" + quote(check.repository, safe=""),
        params=(("format", "json"), ("h", COLUMNS)),
    )


def explain(check: SnapshotCheck, error: ESError) -> str:
    """A missing repository is a configuration problem worth naming plainly."""
    if "repository_missing_exception" in error.message:
        return (
            f"no snapshot repository [{check.repository}] on this cluster "
            f"(register it with PUT _snapshot/{check.repository})"
        )
    return error.message


def _epoch(row: dict[str, Any], key: str) -> float:
    value = row.get(key)
    return float(value) if value not in (None, "", "0") else 0.0


def evaluate(
    check: SnapshotCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    rows = [r for r in answer.get("rows") or [] if isinstance(r, dict)]
    rows.sort(key=lambda r: (_epoch(r, "start_epoch"), _epoch(r, "end_epoch")))
    running = [r for r in rows if r.get("status") == "IN_PROGRESS"]
    finished = [r for r in rows if r.get("status") != "IN_PROGRESS"]
    repo = f"repository {check.repository}"
    note = ""
    if running:
        since = _when(_epoch(running[-1], "start_epoch"))
        note = f"; {running[-1].get('id', '?')} in progress since {since}"
    if not finished:
        what = "no finished snapshot" if running else "no snapshot"
        return no_data(check, f"{what} in {repo}{note}")
    newest = finished[-1]
    status = str(newest.get("status", "?"))
    ended = _epoch(newest, "end_epoch") or _epoch(newest, "start_epoch")
    age = max(0.0, now - ended)
    by_status = _STATUS_STATE.get(status, State.UNKNOWN)
    by_age = classify(age, check.warning, check.critical)
    state = State.worst((by_status, by_age))
    failed, total = newest.get("failed_shards", "?"), newest.get("total_shards", "?")
    summary = (
        f"newest snapshot {newest.get('id', '?')} in {repo} is {status}, finished"
        f" {age_text(age)} ago ({_when(ended)}), {failed} of {total} shards failed"
    )
    thresholds = threshold_note(by_age, age, check.warning, check.critical)
    if thresholds:
        summary += f" ({thresholds})"
    summary += note
    return Result(
        check=check.name,
        state=state,
        summary=summary,
        value=round(age, 3),
        unit="s",
        error="unrecognised snapshot status " + status if state is State.UNKNOWN else None,
        error_kind="internal" if state is State.UNKNOWN else None,
        long_output=tuple(
            f"{r.get('id', '?')}: {r.get('status', '?')}, started {_when(_epoch(r, 'start_epoch'))}"
            for r in reversed(rows[-5:])
        ),
        perfdata=(
            Perfdatum("age", round(age, 3), "s", check.warning, check.critical, 0.0),
            Perfdatum("snapshots", float(len(rows)), "", None, None, 0.0),
        ),
    )


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


KIND = Kind(SnapshotCheck, plan, evaluate, explain, expects=("rows",))
