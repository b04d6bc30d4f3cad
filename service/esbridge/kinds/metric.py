"""``metric``: an aggregation (avg, max, percentile, ...) of a numeric field (per group)."""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

from pydantic import Field

from esbridge.kinds.base import DataCheck
from esbridge.kinds.fields import Agg, Name, Percentile
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import (
    Bounds,
    grouped_result,
    metric_reader,
    metric_value,
    no_data,
    single,
    total_hits,
)
from esbridge.kinds.requests import Window
from esbridge.kinds.search import (
    VALUE_AGG,
    base_query,
    grouped,
    metric_agg,
    percent_key,
    value_order,
)
from esbridge.kinds.text import agg_name, index_text, window_text, with_unit
from esbridge.kinds.wording import Describe
from esbridge.result import Result


class MetricCheck(DataCheck):
    """An aggregation (avg, max, percentile, ...) of a numeric field over the window."""

    supports_group_by: ClassVar[bool] = True
    kind: Literal["metric"] = "metric"
    field: Name = Field(description="numeric field to aggregate")
    agg: Agg = Field(description="aggregation")
    percentile: Percentile = Field(
        None, validate_default=True, description="with agg: percentile, e.g. 99.9"
    )

    def perf_label(self) -> str:
        return agg_name(self.agg, self.percentile)


def plan(check: MetricCheck, window: Window) -> dict[str, Any]:
    key = VALUE_AGG
    if check.agg == "percentile":
        key = f"{VALUE_AGG}[{percent_key(check.percentile)}]"
    elif check.agg == "sum":
        key = f"{VALUE_AGG}.sum"  # a stats aggregation (metric_agg)
    return grouped(
        check,
        base_query(check, window.start, window.end),
        {VALUE_AGG: metric_agg(check.agg, check.field, check.percentile)},
        order=value_order(check, key),
    )


GROWS_WITH_DOCUMENTS = frozenset({"max", "value_count", "cardinality"})
"""Aggregations whose value over some shards is at most the value over all (min: at least)."""


def metric_bounds(agg: str) -> Bounds | None:
    """The range of a group's true value when only some shards returned its bucket.

    ``max``, ``value_count`` and ``cardinality`` can only grow with the missing shards' documents,
    ``min`` only shrink; an average, a sum (values may be negative) or a percentile of some
    shards says nothing about the whole (None: any value).
    """
    if agg in GROWS_WITH_DOCUMENTS:
        return lambda bucket, value, error: (value, math.inf)
    if agg == "min":
        return lambda bucket, value, error: (-math.inf, value)
    return None


def evaluate(
    check: MetricCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    what = f"{agg_name(check.agg, check.percentile)} of {check.field}"
    if check.group_by:
        return grouped_result(
            check,
            answer,
            value_of=metric_reader(check.agg),
            describe=Describe(f"{what} ", "value", check.unit),
            headline=f"{what} per {', '.join(check.group_by)}",
            bounds=metric_bounds(check.agg),
        )
    value = metric_value(answer.get("aggregations") or {}, check.agg)
    if value is None or total_hits(answer) == 0:
        return no_data(
            check, f"no {check.field} values in last {window_text(check)} on {index_text(check)}"
        )
    state = classify(value, check.warning, check.critical)
    summary = (
        f"{what} is {with_unit(value, check.unit)} in last {window_text(check)}"
        f" on {index_text(check)}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return single(check, state, summary, value)


KIND = Kind(MetricCheck, plan, evaluate, histogram=True)
