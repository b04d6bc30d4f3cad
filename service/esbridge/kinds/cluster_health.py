"""``cluster_health``: green → OK, yellow → WARNING, red → CRITICAL (optionally for indices)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal
from urllib.parse import quote

from esbridge.errors import ErrorKind, ESError
from esbridge.kinds.base import CheckBase, ClusterCheck
from esbridge.kinds.kind import Kind
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.kinds.text import index_text, plural
from esbridge.result import Perfdatum, Result, State


class ClusterHealthCheck(ClusterCheck):
    """green → OK, yellow → WARNING, red → CRITICAL."""

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["cluster_health"] = "cluster_health"


CLUSTER_HEALTH = ClusterFetch("/_cluster/health")


def health_fetch(check: CheckBase, window: Window | None = None) -> ClusterFetch:
    """``GET _cluster/health[/<indices>]``: shared by cluster_health and unassigned_shards.

    Scoped to indices, it asks for them one by one (``level=indices``): a pattern matching
    no index answers green with no shard at all, which :func:`unmatched` turns into UNKNOWN.
    """
    if not check.index:
        return CLUSTER_HEALTH
    path = "/_cluster/health/" + quote(",".join(check.index), safe=",*:")
    # a concrete index that does not exist is waited for up to ``timeout`` (30 s by default,
    # holding a connection slot), then answered 408: at once instead (errormap names it)
    return ClusterFetch(path, (("level", "indices"), ("timeout", "1s")))


def unmatched(check: CheckBase, answer: dict[str, Any]) -> Result | None:
    """UNKNOWN ``no_such_index`` when the check's indices match nothing (never a green OK)."""
    if not check.index or answer.get("indices") != {}:
        return None
    summary = f"no such index [{index_text(check)}]: no cluster health to judge"
    return Result(
        check=check.name,
        state=State.UNKNOWN,
        summary=summary,
        error=summary,
        error_kind=ErrorKind.NO_SUCH_INDEX,
    )


def explain(check: CheckBase, error: ESError) -> str:
    """A scoped health of an index that does not exist, in the words of :func:`unmatched`."""
    if error.kind == ErrorKind.NO_SUCH_INDEX and check.index:
        return f"no such index [{index_text(check)}]: no cluster health to judge"
    return error.message


HEALTH_FIELDS = ("status", "number_of_nodes")
"""What every cluster health answer holds: one without them is not one (see ``Kind.expects``)."""


_HEALTH_STATE = {"green": State.OK, "yellow": State.WARNING, "red": State.CRITICAL}


def evaluate(
    check: ClusterHealthCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    if (missing := unmatched(check, answer)) is not None:
        return missing
    status = str(answer.get("status", "unknown"))
    state = _HEALTH_STATE.get(status, State.UNKNOWN)
    scope = f" for {index_text(check)}" if check.index else ""
    nodes = plural(int(answer.get("number_of_nodes", 0)), "node")
    summary = (
        f"cluster {answer.get('cluster_name', '?')} is {status}{scope}: {nodes}, "
        f"{answer.get('active_shards', 0)} active shards, "
        f"{answer.get('relocating_shards', 0)} relocating, "
        f"{answer.get('initializing_shards', 0)} initializing, "
        f"{answer.get('unassigned_shards', 0)} unassigned"
    )
    perf = tuple(
        Perfdatum(key, float(answer.get(key, 0)), "", None, None, 0.0)
        for key in (
            "active_shards",
            "relocating_shards",
            "initializing_shards",
            "unassigned_shards",
        )
    )
    return Result(
        check=check.name, state=state, summary=summary, value=float(int(state)), perfdata=perf
    )


KIND = Kind(ClusterHealthCheck, health_fetch, evaluate, explain, expects=HEALTH_FIELDS)
