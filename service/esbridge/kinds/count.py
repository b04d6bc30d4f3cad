"""``count``: number of documents matching the query in the window (per group)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from esbridge.kinds.base import DataCheck
from esbridge.kinds.judge import classify, low_values_alert, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import count_bounds, grouped_result, single, total_hits
from esbridge.kinds.requests import Window
from esbridge.kinds.search import base_query, grouped
from esbridge.kinds.text import index_text, window_text
from esbridge.kinds.wording import Describe
from esbridge.numbers import format_number
from esbridge.result import Result, State


class CountCheck(DataCheck):
    """Number of documents matching the query in the window."""

    value_floor: ClassVar[float] = 0.0

    supports_group_by: ClassVar[bool] = True
    kind: Literal["count"] = "count"


def plan(check: CountCheck, window: Window) -> dict[str, Any]:
    # Beyond max_groups, keep the groups most likely to alert: the largest (the terms
    # default), or the smallest when only low counts alert (a host gone quiet).
    low = low_values_alert(check.warning, check.critical, check.value_floor)
    order = {"_count": "asc"} if low else None
    return grouped(check, base_query(check, window.start, window.end), {}, order=order)


def evaluate(
    check: CountCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    total = float(total_hits(answer))
    # ``c`` is the perfdata "counter" unit, not a word: "312 c" would puzzle anyone.
    noun = check.unit if check.unit not in ("", "c") else "matching documents"
    if check.group_by:
        return grouped_result(
            check,
            answer,
            value_of=lambda bucket: float(bucket["doc_count"]),
            describe=Describe("", "number", "", f" {noun}"),
            headline=f"{format_number(total)} {noun} in all groups",
            perf_min=0.0,
            empty=State.OK,  # no documents at all is a count of 0, not missing data
            bounds=count_bounds,  # counted on some shards only: [count, count + error]
        )
    state = classify(total, check.warning, check.critical)
    summary = (
        f"{format_number(total)} {noun} in last {window_text(check)} on {index_text(check)}"
        f" ({threshold_note(state, total, check.warning, check.critical)})"
    )
    return single(check, state, summary, total, perf_min=0.0)


KIND = Kind(CountCheck, plan, evaluate, histogram=True)
