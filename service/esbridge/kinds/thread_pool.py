"""``thread_pool``: tasks each node's pools rejected since the previous run, as groups.

A cluster rejecting ``write`` tasks is losing log lines. Elasticsearch counts rejections per
node and pool since the node started; this kind reports the increase since the previous
run (a group per ``node`` and ``pool``) and judges it with ``warning``/``critical``. The
cumulative counters travel in the result (perfdata ``<node>/<pool>_total``, uom ``c``), so
the next evaluation gets them from the previous result, which the runner passes in from the
store: evaluation stays pure.

- First run (no previous result, or the previous one was an error): a baseline, OK, value
  unknown ("baseline: N rejected since the node started"); counting starts with the next run.
- A counter lower than before (the node restarted): the rejections since the restart are
  counted, as they all happened after the previous run.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from esbridge import limits
from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.fields import RangeField, ShortText, StrList
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import combine_groups, worst_first
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.numbers import format_number
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State

THREAD_POOL_STATS = ClusterFetch("/_nodes/stats/thread_pool")
TOTAL_SUFFIX = "_total"


class ThreadPoolCheck(ClusterCheck):
    """Rejected tasks per node and thread pool since the previous run."""

    value_floor: ClassVar[float] = 0.0

    kind: Literal["thread_pool"] = "thread_pool"
    pools: StrList = Field(
        ("write", "search"),
        min_length=1,
        max_length=limits.MAX_LIST_ITEMS,
        description="thread pools to watch ('*': every pool)",
    )
    warning: RangeField | None = Range.parse("0")
    unit: ShortText = ""

    def perf_label(self) -> str:
        return "rejected"


def plan(check: ThreadPoolCheck, window: Window) -> ClusterFetch:
    """``GET _nodes/stats/thread_pool``: one fetch shared by every thread_pool check."""
    return THREAD_POOL_STATS


def _totals_of(previous: Result | None) -> dict[str, float]:
    """``node/pool`` → cumulative rejections, from the previous result's perfdata."""
    if previous is None:
        return {}
    totals = {}
    for group in previous.groups:
        for datum in group.perfdata:
            if datum.label.endswith(TOTAL_SUFFIX) and datum.value is not None:
                totals[datum.label.removesuffix(TOTAL_SUFFIX)] = datum.value
    return totals


def evaluate(
    check: ThreadPoolCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    before = _totals_of(previous)
    every = "*" in check.pools
    warning, critical = check.warning, check.critical
    groups: list[GroupResult] = []
    for node in (answer.get("nodes") or {}).values():
        name = str(node.get("name", "?"))
        pools: dict[str, Any] = node.get("thread_pool") or {}
        for pool in sorted(pools) if every else [p for p in check.pools if p in pools]:
            total = float(pools[pool].get("rejected", 0))
            label = f"{name}/{pool}"
            last = before.get(label)
            value: float | None
            if last is None:
                value, state = None, State.OK
                text = f"baseline: {format_number(total)} rejected since the node started"
            else:
                reset = total < last
                value = total if reset else total - last
                state = classify(value, warning, critical)
                text = f"{format_number(value)} rejected since the previous run"
                if reset:
                    text += " (counter reset: the node restarted, counted since then)"
                text += f" ({threshold_note(state, value, warning, critical)})"
            groups.append(
                GroupResult(
                    key=(("node", name), ("pool", pool)),
                    state=state,
                    value=value,
                    summary=f"{label}: {text}",
                    perfdata=(
                        Perfdatum(label, value, "", warning, critical, 0.0),
                        Perfdatum(label + TOTAL_SUFFIX, total, "c", None, None, 0.0),
                    ),
                )
            )
    groups.sort(key=worst_first(check))
    omitted = max(0, len(groups) - check.max_groups)
    groups = groups[: check.max_groups]
    headline = f"tasks rejected since the previous run per node and pool ({', '.join(check.pools)})"
    if not groups:
        return Result(
            check=check.name,
            state=check.effective_no_data,
            summary=f"no thread pool named {', '.join(check.pools)} on any node",
            error_kind="no_data",
            error="no such thread pool" if check.effective_no_data is State.UNKNOWN else None,
        )
    return combine_groups(check, groups, omitted, headline, "", noun="pools")


KIND = Kind(ThreadPoolCheck, plan, evaluate, expects=("nodes",))
