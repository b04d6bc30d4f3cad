"""``ratio``: numerator / denominator of the matched documents in percent (per group)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from esbridge.kinds.base import DataCheck
from esbridge.kinds.fields import JsonObject, QueryText, ShortText
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import grouped_result, no_data, single, total_hits
from esbridge.kinds.requests import Window
from esbridge.kinds.search import base_query, grouped, user_query
from esbridge.kinds.text import index_text, window_text, with_unit
from esbridge.kinds.wording import Describe
from esbridge.numbers import format_number
from esbridge.result import Perfdatum, Result


class RatioCheck(DataCheck):
    """numerator / denominator of the documents, in percent (0..100)."""

    value_floor: ClassVar[float] = 0.0

    supports_group_by: ClassVar[bool] = True
    kind: Literal["ratio"] = "ratio"
    unit: ShortText = "%"
    numerator: QueryText | JsonObject = Field(description="Lucene query or DSL object: the part")
    denominator: QueryText | JsonObject | None = Field(
        None, description="Lucene query or DSL object: the whole (default: all matched)"
    )

    @field_validator("numerator", "denominator")
    @classmethod
    def _not_blank(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("must not be empty")
        return value


def ratio_aggs(check: RatioCheck) -> dict[str, Any]:
    """Two filter aggregations: the numerator (within the denominator) and the denominator."""
    denominator = user_query(check.denominator) if check.denominator is not None else None
    numerator = user_query(check.numerator)
    aggs: dict[str, Any] = {
        "numerator": {
            "filter": {"bool": {"filter": [numerator] + ([denominator] if denominator else [])}}
        }
    }
    if denominator is not None:
        aggs["denominator"] = {"filter": denominator}
    return aggs


def plan(check: RatioCheck, window: Window) -> dict[str, Any]:
    return grouped(check, base_query(check, window.start, window.end), ratio_aggs(check))


def _ratio_value(node: dict[str, Any], total: float) -> tuple[float | None, float, float]:
    numerator = float(node["numerator"]["doc_count"])
    denominator = float(node["denominator"]["doc_count"]) if "denominator" in node else total
    if denominator == 0:
        return None, numerator, denominator
    return 100.0 * numerator / denominator, numerator, denominator


def ratio_bounds(bucket: dict[str, Any], value: float, error: int) -> tuple[float, float]:
    """The range of a group's true ratio when shards that did not return its bucket may hold
    up to ``error`` more of its documents (-1: any number): each may or may not be in the
    numerator (which lies within the denominator)."""
    _, numerator, denominator = _ratio_value(bucket, float(bucket["doc_count"]))
    if error < 0:
        return 0.0, 100.0
    whole = denominator + error
    return 100.0 * numerator / whole, 100.0 * (numerator + error) / whole


def evaluate(
    check: RatioCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    unit = check.unit or "%"
    if check.group_by:
        return grouped_result(
            check,
            answer,
            value_of=lambda b: _ratio_value(b, float(b["doc_count"]))[0],
            describe=Describe("ratio ", "value", unit),
            headline="ratio per " + ", ".join(check.group_by),
            perf_min=0.0,
            perf_max=100.0,
            bounds=ratio_bounds,
        )
    aggs = answer.get("aggregations") or {}
    value, numerator, denominator = _ratio_value(aggs, float(total_hits(answer)))
    if value is None:
        return no_data(
            check,
            "no matching documents for the denominator (0 of 0)"
            f" in last {window_text(check)} on {index_text(check)}",
        )
    state = classify(value, check.warning, check.critical)
    note = threshold_note(state, value, check.warning, check.critical)
    summary = (
        f"ratio {with_unit(value, unit)} ({format_number(numerator)} of"
        f" {format_number(denominator)} documents) in last {window_text(check)}"
        f" on {index_text(check)} ({note})"
    )
    extra = (
        Perfdatum("numerator", numerator, "", None, None, 0.0),
        Perfdatum("denominator", denominator, "", None, None, 0.0),
    )
    return single(check, state, summary, value, perf_min=0.0, perf_max=100.0, extra_perf=extra)


KIND = Kind(RatioCheck, plan, evaluate, histogram=True)
