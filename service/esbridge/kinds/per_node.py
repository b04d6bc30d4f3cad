"""Node statistics judged per node (``jvm_heap``, ``disk``): one group per node."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from esbridge.kinds.base import CheckBase, ClusterCheck
from esbridge.kinds.fields import RangeField, ShortText
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.outcome import combine_groups
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.kinds.text import with_unit
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result

NODES_STATS = ClusterFetch("/_nodes/stats/jvm,fs")

#: a percent threshold with a default (``warning: Threshold = percent("85")``)
Threshold = RangeField | None


def percent(text: str) -> Range:
    return Range.parse(text)


class PerNodeCheck(ClusterCheck):
    """A percentage measured on every node: one group per node, unit ``%``."""

    value_floor: ClassVar[float] = 0.0

    unit: ShortText = "%"


def nodes_stats(check: CheckBase, window: Window) -> ClusterFetch:
    """``GET _nodes/stats/jvm,fs``: one fetch shared by jvm_heap and disk."""
    return NODES_STATS


def per_node(
    check: CheckBase,
    answer: dict[str, Any],
    measure: Callable[[dict[str, Any]], float | None],
    text: str,
    suffix: str,
) -> Result:
    """A group per node of ``_nodes/stats``: ``measure(node)`` in percent, worst first."""
    groups: list[GroupResult] = []
    for node in (answer.get("nodes") or {}).values():
        name = str(node.get("name", "?"))
        value = measure(node)
        value = float(value) if value is not None else None
        state = (
            classify(value, check.warning, check.critical)
            if value is not None
            else check.effective_no_data
        )
        summary = f"{name}: {text} {with_unit(value, '%')}" + (
            f" ({threshold_note(state, value, check.warning, check.critical)})"
            if value is not None
            else ""
        )
        groups.append(
            GroupResult(
                key=(("node", name),),
                state=state,
                value=value,
                summary=summary,
                perfdata=(
                    Perfdatum(
                        f"{name}_{suffix}", value, "%", check.warning, check.critical, 0.0, 100.0
                    ),
                ),
            )
        )
    groups.sort(key=lambda g: (-g.state.severity, -(g.value or 0)))
    # Cluster kinds accept an index only to share defaults: it says nothing about them.
    return combine_groups(check, groups, 0, f"{text} per node", "%", noun="nodes")
