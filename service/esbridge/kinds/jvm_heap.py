"""``jvm_heap``: the highest JVM heap use of any node, in percent (a group per node)."""

from __future__ import annotations

from typing import Any, Literal

from esbridge.kinds.kind import Kind
from esbridge.kinds.per_node import PerNodeCheck, Threshold, nodes_stats, per_node, percent
from esbridge.result import Result


class JvmHeapCheck(PerNodeCheck):
    """Highest JVM heap use of any node, in percent."""

    kind: Literal["jvm_heap"] = "jvm_heap"
    warning: Threshold = percent("85")
    critical: Threshold = percent("95")


def _heap(node: dict[str, Any]) -> float | None:
    value = (node.get("jvm") or {}).get("mem", {}).get("heap_used_percent")
    return None if value is None else float(value)


def evaluate(
    check: JvmHeapCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    return per_node(check, answer, _heap, "heap used", "heap")


KIND = Kind(JvmHeapCheck, nodes_stats, evaluate, expects=("nodes",))
