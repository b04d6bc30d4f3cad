"""``freshness``: age of the newest document (per group): "a host stopped sending"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from esbridge.durations import Duration
from esbridge.kinds.base import DataCheck
from esbridge.kinds.fields import ShortText
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import grouped_result, no_data, single
from esbridge.kinds.requests import Window
from esbridge.kinds.search import VALUE_AGG, base_query, grouped
from esbridge.kinds.text import age_text, index_text, window_text
from esbridge.kinds.wording import Describe
from esbridge.result import Result, State


class FreshnessCheck(DataCheck):
    """Age in seconds of the newest document (per group): "host stopped sending"."""

    value_floor: ClassVar[float] = 0.0

    supports_group_by: ClassVar[bool] = True
    default_no_data: ClassVar[State] = State.CRITICAL
    kind: Literal["freshness"] = "freshness"
    window: Duration = Field(timedelta(hours=24), description="lookback for the newest document")
    unit: ShortText = "s"

    def perf_label(self) -> str:
        return "age"

    @field_validator("delay")
    @classmethod
    def _no_delay(cls, value: timedelta) -> timedelta:
        """Always 0: ingestion lag is what freshness measures. A window ending ``delay`` ago
        hid the newest documents while the age was still taken from now, so a host sending
        every 10 s read CRITICAL "no matching document" under a ``delay: 2m`` default."""
        return timedelta(0)


def plan(check: FreshnessCheck, window: Window) -> dict[str, Any]:
    return grouped(
        check,
        base_query(check, window.start, window.end),
        {VALUE_AGG: {"max": {"field": check.timestamp_field}}},
        # Oldest newest-document first: the stale groups are the ones that matter.
        order={VALUE_AGG: "asc"},
    )


def evaluate(
    check: FreshnessCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    def age(node: dict[str, Any] | None) -> float | None:
        newest = (node or {}).get("value")
        if newest is None:
            return None
        return max(0.0, now - float(newest) / 1000.0)

    unit = check.unit or "s"
    if check.group_by:
        return grouped_result(
            check,
            answer,
            value_of=lambda b: age(b.get(VALUE_AGG)),
            describe=Describe("newest document ", "age", unit, " old"),
            headline="age of the newest document per " + ", ".join(check.group_by),
            perf_min=0.0,
            # shards that did not return the group can only hold newer documents: younger
            bounds=lambda bucket, value, error: (0.0, value),
        )
    value = age((answer.get("aggregations") or {}).get(VALUE_AGG))
    if value is None:
        return no_data(
            check, f"no matching document in the last {window_text(check)} on {index_text(check)}"
        )
    state = classify(value, check.warning, check.critical)
    newest = datetime.fromtimestamp(now - value, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    summary = (
        f"newest document is {age_text(value, unit)} old ({newest}) on {index_text(check)}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return single(check, state, summary, round(value, 3), unit=unit, perf_min=0.0)


KIND = Kind(FreshnessCheck, plan, evaluate, histogram=True)
