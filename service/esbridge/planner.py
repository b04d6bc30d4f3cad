"""Turn a check definition into the Elasticsearch request that answers it.

Data kinds become one search body each (sent in batches through ``_msearch``); cluster kinds
become a shared :class:`ClusterFetch` so that ten cluster checks cost one call to each
cluster API per cycle. Each kind plans in its own module (``esbridge.kinds``); this module
dispatches through the registry and adds what every search carries (the server-side timeout).

Everything here is pure: the same check and ``now`` always give the same body, which is what
lets the benchmark send the very bodies esbridge sends.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from esbridge.kinds import REGISTRY
from esbridge.kinds.base import CheckBase
from esbridge.kinds.ratio import ratio_aggs
from esbridge.kinds.requests import ClusterFetch, SearchRequest, Window
from esbridge.kinds.search import (
    GROUP_COUNT_AGG,
    GROUP_MISSING_AGG,
    GROUPS_AGG,
    MULTI_GROUP_FETCH,
    VALUE_AGG,
    metric_agg,
    user_query,
    window_of,
)

__all__ = [
    "GROUPS_AGG",
    "GROUP_COUNT_AGG",
    "GROUP_MISSING_AGG",
    "MULTI_GROUP_FETCH",
    "VALUE_AGG",
    "ClusterFetch",
    "SearchRequest",
    "Window",
    "group_order",
    "metric_agg",
    "plan",
    "ratio_aggs",
    "user_query",
    "window_of",
]


def plan(check: CheckBase, now: datetime, timeout: timedelta) -> SearchRequest | ClusterFetch:
    """The request for ``check`` at ``now``; ``timeout`` bounds the search on the server too."""
    window = window_of(check, now)
    planned = REGISTRY[check.kind].plan(check, window)
    if isinstance(planned, ClusterFetch):
        return planned
    planned["timeout"] = f"{max(1, math.ceil(timeout.total_seconds()))}s"
    return SearchRequest(check=check.name, index=",".join(check.index), body=planned, window=window)


_ANY_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)


def group_order(check: CheckBase) -> dict[str, str] | None:
    """The ``terms`` order of the check's own grouped request (None: by document count).

    Read from the body the kind plans, so a replay orders groups exactly as a run does.
    """
    planned = REGISTRY[check.kind].plan(check, window_of(check, _ANY_MOMENT))
    if isinstance(planned, ClusterFetch):
        return None
    groups = (planned.get("aggs") or {}).get(GROUPS_AGG) or {}
    order: dict[str, str] | None = (groups.get("terms") or {}).get("order")
    return order
