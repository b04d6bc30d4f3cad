"""``nodes``: node count (and data node count) compared to what is expected."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.cluster_health import CLUSTER_HEALTH
from esbridge.kinds.judge import classify
from esbridge.kinds.kind import Kind
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.kinds.text import plural
from esbridge.ranges import Range
from esbridge.result import Perfdatum, Result, State


class NodesCheck(ClusterCheck):
    """Node count (and data node count) compared to what is expected."""

    value_floor: ClassVar[float] = 0.0

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["nodes"] = "nodes"
    expected_nodes: int = Field(ge=1, le=100_000, description="nodes the cluster should have")
    expected_data_nodes: int | None = Field(
        None, ge=0, le=100_000, description="data nodes expected"
    )


def evaluate(
    check: NodesCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    nodes = int(answer.get("number_of_nodes", 0))
    data = int(answer.get("number_of_data_nodes", 0))
    problems = []
    if nodes < check.expected_nodes:
        problems.append(f"{nodes} of {check.expected_nodes} expected nodes")
    if check.expected_data_nodes is not None and data < check.expected_data_nodes:
        problems.append(f"{data} of {check.expected_data_nodes} expected data nodes")
    if problems:
        state = State.CRITICAL
        summary = "missing nodes: " + ", ".join(problems)
    elif nodes > check.expected_nodes:
        # More nodes than planned is a surprise worth a look (a stray node joined).
        state = State.WARNING
        summary = (
            f"{plural(nodes, 'node')} ({data} data), more than the {check.expected_nodes} expected"
        )
    else:
        state = classify(float(nodes), check.warning, check.critical)
        summary = f"{plural(nodes, 'node')} ({data} data), {check.expected_nodes} expected"
    perf = (
        Perfdatum("nodes", float(nodes), "", None, Range.parse(f"{check.expected_nodes}:"), 0.0),
        Perfdatum(
            "data_nodes",
            float(data),
            "",
            None,
            Range.parse(f"{check.expected_data_nodes}:")
            if check.expected_data_nodes is not None
            else None,
            0.0,
        ),
    )
    return Result(check=check.name, state=state, summary=summary, value=float(nodes), perfdata=perf)


def plan(check: NodesCheck, window: Window) -> ClusterFetch:
    """The whole cluster's health: nodes are counted cluster-wide, whatever ``index`` the
    check has (a default for the file's data checks, say)."""
    return CLUSTER_HEALTH


KIND = Kind(NodesCheck, plan, evaluate, expects=("number_of_nodes", "number_of_data_nodes"))
