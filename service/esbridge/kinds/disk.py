"""``disk``: the highest disk use of any data node, in percent (a group per node)."""

from __future__ import annotations

from typing import Any, Literal

from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.fields import RangeField
from esbridge.kinds.kind import Kind
from esbridge.kinds.per_node import nodes_stats, per_node
from esbridge.ranges import Range
from esbridge.result import Result


class DiskCheck(ClusterCheck):
    """Highest disk use of any data node, in percent."""

    kind: Literal["disk"] = "disk"
    warning: RangeField | None = Range.parse("80")
    critical: RangeField | None = Range.parse("90")
    unit: str = "%"


def _used(node: dict[str, Any]) -> float | None:
    total = (node.get("fs") or {}).get("total", {})
    size, free = total.get("total_in_bytes"), total.get("available_in_bytes")
    return 100.0 * (size - free) / size if size else None


def evaluate(
    check: DiskCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    return per_node(check, answer, _used, "disk used", "disk")


KIND = Kind(DiskCheck, nodes_stats, evaluate)
