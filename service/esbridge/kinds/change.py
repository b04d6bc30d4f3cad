"""``change``: percent change of this window against the previous window of the same length."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from esbridge.kinds.base import DataCheck
from esbridge.kinds.fields import Agg, Name, Percentile, ShortText
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import metric_value, no_data, single
from esbridge.kinds.requests import Window
from esbridge.kinds.search import VALUE_AGG, base_query, metric_agg, time_range
from esbridge.kinds.text import agg_name, index_text, maybe, window_text, with_unit
from esbridge.result import Perfdatum, Result


class ChangeCheck(DataCheck):
    """Percent change of this window vs the previous window of the same length."""

    kind: Literal["change"] = "change"
    unit: ShortText = "%"
    field: Name | None = Field(None, description="numeric field (omit to compare counts)")
    agg: Agg | None = Field(None, validate_default=True, description="aggregation of field")
    percentile: Percentile = Field(None, validate_default=True)

    @field_validator("agg")
    @classmethod
    def _field_and_agg(cls, value: str | None, info: ValidationInfo) -> str | None:
        field = info.data.get("field")
        if (field is None) != (value is None):
            raise ValueError("set both field and agg, or neither (to compare document counts)")
        return value


def plan(check: ChangeCheck, window: Window) -> dict[str, Any]:
    previous = Window(start=window.start - (window.end - window.start), end=window.start)
    sub: dict[str, Any] = {}
    if check.field and check.agg:
        sub = {"aggs": {VALUE_AGG: metric_agg(check.agg, check.field, check.percentile)}}
    return {
        "size": 0,
        "track_total_hits": True,
        "query": base_query(check, previous.start, window.end),
        "aggs": {
            "current": {"filter": time_range(check, window.start, window.end), **sub},
            "previous": {"filter": time_range(check, previous.start, previous.end), **sub},
        },
    }


def evaluate(
    check: ChangeCheck, answer: dict[str, Any], now: float, previous_result: Result | None
) -> Result:
    aggs = answer.get("aggregations") or {}
    metric = bool(check.field and check.agg)
    what = f"{agg_name(check.agg, check.percentile)} of {check.field}" if metric else "count"

    def side(name: str) -> float | None:
        node = aggs[name]
        if metric:
            return metric_value(node, check.agg or "")
        return float(node["doc_count"])

    current, previous = side("current"), side("previous")
    span = window_text(check)
    perf = (
        Perfdatum("current", current, "", None, None),
        Perfdatum("previous", previous, "", None, None),
    )
    if current is not None and previous is not None and current == 0 and previous == 0:
        value: float | None = 0.0
    elif previous is None or previous == 0 or current is None:
        return no_data(
            check,
            f"{what} was {maybe(previous)} in the previous {span} and is {maybe(current)} now"
            f" on {index_text(check)}: a change from zero is undefined",
            extra_perf=perf,
        )
    else:
        value = 100.0 * (current - previous) / abs(previous)
    state = classify(value, check.warning, check.critical)
    sign = "+" if value > 0 else ""
    note = threshold_note(state, value, check.warning, check.critical)
    summary = (
        f"{what} changed {sign}{with_unit(value, '%')} ({maybe(previous)} in the previous"
        f" {span} -> {maybe(current)} in the last {span}) on {index_text(check)} ({note})"
    )
    return single(check, state, summary, value, unit="%", extra_perf=perf)


KIND = Kind(ChangeCheck, plan, evaluate, histogram=True)
