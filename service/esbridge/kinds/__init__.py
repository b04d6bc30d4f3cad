"""Check kinds: one module per kind, listed once in :data:`REGISTRY`.

A kind's module holds its pydantic model (with its perfdata label), its plan (a search body
or a :class:`~esbridge.kinds.requests.ClusterFetch`) and its evaluation, and ends with
``KIND = Kind(Model, plan, evaluate)``. ``models``, ``planner`` and ``evaluate`` dispatch
through the registry; nothing else names a kind. Adding a kind: one module, one line below,
its tests and its section in docs/checks.md (see docs/architecture.md, "Add a kind").
"""

from __future__ import annotations

from esbridge.kinds import (
    change,
    cluster_health,
    count,
    disk,
    freshness,
    jvm_heap,
    master,
    metric,
    nodes,
    ratio,
    snapshot,
    thread_pool,
    unassigned_shards,
)
from esbridge.kinds.kind import Kind

__all__ = ["REGISTRY", "Kind"]

#: every kind by its ``kind:`` name, in the order the docs and the schema list them
REGISTRY: dict[str, Kind] = {
    k.name: k
    for k in (
        count.KIND,
        metric.KIND,
        ratio.KIND,
        change.KIND,
        freshness.KIND,
        cluster_health.KIND,
        nodes.KIND,
        unassigned_shards.KIND,
        jvm_heap.KIND,
        disk.KIND,
        master.KIND,
        snapshot.KIND,
        thread_pool.KIND,
    )
}
