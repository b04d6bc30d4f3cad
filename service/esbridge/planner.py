"""Turn a check definition into the Elasticsearch request that answers it.

Data kinds become one search body each (sent in batches through ``_msearch``); cluster kinds
become a shared :class:`ClusterFetch` so that ten cluster checks cost one call to each
cluster API per cycle. Each kind plans in its own module (``esbridge.kinds``); this module
dispatches through the registry and adds what every search carries (the server-side timeout).

Everything here is pure: the same check and ``now`` always give the same body, which is what
lets the benchmark send the very bodies esbridge sends.

A body changes from one cycle to the next only in its time range for most kinds, so each
check's body is planned once (:class:`_Template`) and each cycle puts its range in; a kind
whose body uses the window elsewhere (``change``: two windows) is planned whole every time.
The bodies of successive cycles share those parts, so nothing may change a planned body
(the client only serializes it; ``searchmerge`` builds merged bodies anew).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

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
    time_range,
    time_range_on,
    user_query,
    window_of,
)
from esbridge.searchmerge import canonical, key_text, merge_parts

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
    template = _TEMPLATES.get(id(check), _UNKNOWN)
    if template is _UNKNOWN or (template is not None and template.timeout != timeout):
        template = _template(check, timeout)
    if template is None:
        planned = REGISTRY[check.kind].plan(check, window)
        if isinstance(planned, ClusterFetch):
            return planned
        planned["timeout"] = _timeout_text(timeout)
        return SearchRequest(
            check=check.name, index=",".join(check.index), body=planned, window=window
        )
    clause, range_text = _time_range(template.field, window.start, window.end)
    body = dict(template.body)
    body["query"] = {"bool": {"filter": [clause, *template.filters]}}
    index, rest = template.index, template.rest
    request = SearchRequest(check.name, index, body, window)
    if rest is not None:
        _set_merge_as(request, key_text(index, range_text, rest))
    return request


@dataclass(frozen=True, slots=True)
class _Template:
    """A check's search body at any moment but for its time range (the query's first filter)."""

    timeout: timedelta
    index: str
    body: dict[str, Any]  # every key, "query" a placeholder (set each time, kept in place)
    filters: tuple[Any, ...]  # the query's filters after the time range
    field: str  # the time range's field
    rest: str | None  # the merge key's text but for the range (None: it goes out alone)


# id(check) -> its template (None: planned whole each time), dropped when the check is
_TEMPLATES: dict[int, _Template | None] = {}
_UNKNOWN: Any = object()
_set_merge_as = SearchRequest.merge_as.__set__  # type: ignore[attr-defined]  # frozen
_ANY_MOMENT = datetime(2000, 1, 1, tzinfo=UTC)
_OTHER_MOMENT = datetime(2001, 2, 3, 4, 5, 6, 789000, tzinfo=UTC)


def _template(check: CheckBase, timeout: timedelta) -> _Template | None:
    """The check's template, or None when its body depends on the window beyond the range.

    Found out by planning it at two moments: the bodies must differ in the range only.
    """
    template = None
    try:
        if not check.is_cluster_kind:
            template = _templated(check, timeout)
    except Exception:  # planned whole, where the error says what to fix (e.g. an overflow)
        template = None
    if id(check) not in _TEMPLATES:
        weakref.finalize(check, _TEMPLATES.pop, id(check), None)
    _TEMPLATES[id(check)] = template
    return template


def _templated(check: CheckBase, timeout: timedelta) -> _Template | None:
    kind = REGISTRY[check.kind]
    one, other = window_of(check, _ANY_MOMENT), window_of(check, _OTHER_MOMENT)
    body, twin = kind.plan(check, one), kind.plan(check, other)
    if isinstance(body, ClusterFetch) or isinstance(twin, ClusterFetch):
        return None
    filters, twin_filters = _filters(body), _filters(twin)
    if filters is None or twin_filters is None:
        return None
    if filters[0] != time_range(check, one.start, one.end):
        return None
    twin["query"] = {"bool": {"filter": [filters[0], *twin_filters[1:]]}}
    if twin != body:  # the window shows elsewhere too
        return None
    body["timeout"] = _timeout_text(timeout)
    parts = merge_parts(body)
    body["query"] = None
    return _Template(
        timeout=timeout,
        index=",".join(check.index),
        body=body,
        filters=tuple(filters[1:]),
        field=check.timestamp_field,
        rest=None if parts is None else parts[1],
    )


def _filters(body: dict[str, Any]) -> list[Any] | None:
    """The filters of a body whose query is only ``bool.filter``, the range first; else None."""
    query = body.get("query")
    if not isinstance(query, dict) or query.keys() != {"bool"}:
        return None
    clauses = query["bool"]
    if not isinstance(clauses, dict) or clauses.keys() != {"filter"}:
        return None
    filters = clauses["filter"]
    if not isinstance(filters, list) or not filters or not isinstance(filters[0], dict):
        return None
    return filters


@lru_cache(maxsize=256)
def _time_range(field: str, start: datetime, end: datetime) -> tuple[dict[str, Any], str]:
    """A range clause and its merge text: a cycle plans every check over a few windows.

    The clause is shared by the bodies of a cycle; nothing changes a planned body.
    """
    clause = time_range_on(field, start, end)
    return clause, canonical(clause)


def _timeout_text(timeout: timedelta) -> str:
    return f"{max(1, math.ceil(timeout.total_seconds()))}s"


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
