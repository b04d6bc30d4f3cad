"""``disk``: the highest disk use of any data node, in percent (a group per node)."""

from __future__ import annotations

from typing import Any, Literal

from esbridge.kinds.kind import Kind
from esbridge.kinds.per_node import PerNodeCheck, Threshold, nodes_stats, per_node, percent
from esbridge.result import Result


class DiskCheck(PerNodeCheck):
    """Highest disk use of any data node, in percent."""

    kind: Literal["disk"] = "disk"
    warning: Threshold = percent("80")
    critical: Threshold = percent("90")


def _used(node: dict[str, Any]) -> float | None:
    total = (node.get("fs") or {}).get("total", {})
    size, free = total.get("total_in_bytes"), total.get("available_in_bytes")
    return 100.0 * (size - free) / size if size else None


def evaluate(
    check: DiskCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    return per_node(check, answer, _used, "disk used", "disk")


KIND = Kind(DiskCheck, nodes_stats, evaluate, expects=("nodes",))
