"""``unassigned_shards``: the number of unassigned shards against the thresholds."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.cluster_health import HEALTH_FIELDS, explain, health_fetch, unmatched
from esbridge.kinds.judge import classify, threshold_note
from esbridge.kinds.kind import Kind
from esbridge.kinds.outcome import single
from esbridge.numbers import format_number
from esbridge.result import Result


class UnassignedShardsCheck(ClusterCheck):
    """Number of unassigned shards."""

    value_floor: ClassVar[float] = 0.0

    kind: Literal["unassigned_shards"] = "unassigned_shards"


def evaluate(
    check: UnassignedShardsCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    # The original nagios-elasticsearch plugin compared this value with itself and never
    # alerted; here it is compared with the configured thresholds.
    if (missing := unmatched(check, answer)) is not None:
        return missing
    value = float(answer.get("unassigned_shards", 0))
    state = classify(value, check.warning, check.critical)
    summary = (
        f"{format_number(value)} unassigned shards in cluster {answer.get('cluster_name', '?')}"
        f" ({threshold_note(state, value, check.warning, check.critical)})"
    )
    return single(check, state, summary, value, perf_min=0.0)


EXPECTS = (*HEALTH_FIELDS, "unassigned_shards")
KIND = Kind(UnassignedShardsCheck, health_fetch, evaluate, explain, expects=EXPECTS)
