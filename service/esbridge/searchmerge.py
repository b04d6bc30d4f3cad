"""Several checks, one search: a ``filters`` aggregation with one named filter per check.

Checks that search the same indices over the same time range with the same aggregations
differ only in their own query. One search whose query is the shared time range and whose
``filters`` aggregation holds each check's query (the shared aggregations inside) answers all
of them: each bucket's ``doc_count`` is that check's exact hit count and its sub-aggregations
are what the check's own search would have returned. :func:`merge` groups the planned
requests, :func:`split` turns the merged answer back into one answer per check, so evaluation
never knows a merge happened.

Only plain bodies merge (``size: 0``, exact totals, the time range first in the filter, no
``composite``, which cannot sit under another aggregation); anything else goes out alone.
No I/O. The runner decides what to do when a merged search fails (see ``runner.py``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from esbridge.evaluate import partial_problem
from esbridge.kinds.requests import SearchRequest

MERGED_AGG = "checks"
"""The name of the ``filters`` aggregation of a merged search."""
_PLAIN_KEYS = frozenset({"size", "track_total_hits", "query", "aggs", "timeout"})
_COPIED = ("took", "timed_out", "_shards")


@dataclass(frozen=True, slots=True)
class Search:
    """One search to send: a check's own request, or a merged one standing for several.

    ``positions`` are the members' places in the list given to :func:`merge`.
    """

    request: SearchRequest
    members: tuple[SearchRequest, ...]
    positions: tuple[int, ...]

    @property
    def merged(self) -> bool:
        return len(self.members) > 1


def merge_key(request: SearchRequest) -> str | None:
    """What a request must share with others to merge (None: it goes out alone).

    The indices, the time range, the aggregations and the server-side timeout; only the
    check's own filters may differ.
    """
    if request.merge_as is not None:  # the planner knew it (planner.plan)
        return request.merge_as
    parts = merge_parts(request.body)
    if parts is None:
        return None
    time_range, rest = parts
    return key_text(request.index, canonical(time_range), rest)


def merge_parts(body: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A body's time range and the text of the rest it must share to merge (aggregations,
    timeout); None when it goes out alone."""
    if not body.keys() <= _PLAIN_KEYS or body.get("size") != 0:
        return None
    if body.get("track_total_hits") is not True:
        return None
    filters = (body.get("query") or {}).get("bool", {}).get("filter")
    if not isinstance(filters, list) or not filters or len(body["query"]) != 1:
        return None
    if len(body["query"]["bool"]) != 1 or "range" not in filters[0]:
        return None
    aggs = body.get("aggs")
    rest = canonical([aggs, body.get("timeout")])
    if aggs is not None and '"composite"' in rest:
        return None
    return filters[0], rest


def key_text(index: str, range_text: str, rest: str) -> str:
    """The merge key of a search on ``index`` from its parts' canonical texts."""
    return f"{index}\n{range_text}\n{rest}"


def canonical(value: Any) -> str:
    """One text per value (keys sorted): equal values, equal texts. orjson, ~5x the standard
    library's speed, refuses integers beyond 64 bits; those are rare enough for the slow path."""
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(value, sort_keys=True)


def merge(requests: list[SearchRequest], largest: int = 200) -> list[Search]:
    """The searches to send for ``requests``: each alone, or merged with others of its key.

    A merged search holds at most ``largest`` checks. Searches come in the order of their
    first member, so the same requests always give the same searches.
    """
    groups: dict[str, list[int]] = {}
    out: list[Search] = []
    for position, request in enumerate(requests):
        key = merge_key(request)
        if key is None:
            out.append(Search(request, (request,), (position,)))
        else:
            groups.setdefault(key, []).append(position)
    for positions in groups.values():
        for k in range(0, len(positions), largest):
            part = tuple(positions[k : k + largest])
            members = tuple(requests[p] for p in part)
            request = members[0] if len(part) == 1 else _merged(members)
            out.append(Search(request, members, part))
    out.sort(key=lambda search: search.positions[0])
    return out


def _merged(members: tuple[SearchRequest, ...]) -> SearchRequest:
    template = members[0].body
    time_range = template["query"]["bool"]["filter"][0]
    filters: dict[str, Any] = {}
    for k, member in enumerate(members):
        own = member.body["query"]["bool"]["filter"][1:]
        filters[str(k)] = {"bool": {"filter": own}} if own else {"match_all": {}}
    agg: dict[str, Any] = {"filters": {"filters": filters}}
    if template.get("aggs"):
        agg["aggs"] = template["aggs"]
    body: dict[str, Any] = {
        "size": 0,
        "track_total_hits": False,
        "query": {"bool": {"filter": [time_range]}},
        "aggs": {MERGED_AGG: agg},
    }
    if "timeout" in template:
        body["timeout"] = template["timeout"]
    return SearchRequest(
        check=",".join(m.check for m in members),
        index=members[0].index,
        body=body,
        window=members[0].window,
    )


def split(search: Search, answer: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Each member's answer as its own search would have given it (None: not splittable).

    A merged answer with failed or missing shards or a server-side timeout is not split:
    which check caused it is unknown, and a partial count must never reach a check that did
    not cause it; the runner asks each member on its own instead. Partial is what
    evaluation calls partial (:func:`esbridge.evaluate.partial_problem`), one rule for both.
    """
    if partial_problem(answer) is not None:
        return None
    buckets = ((answer.get("aggregations") or {}).get(MERGED_AGG) or {}).get("buckets")
    if not isinstance(buckets, dict) or len(buckets) != len(search.members):
        return None
    copied = {key: answer[key] for key in _COPIED if key in answer}
    out: list[dict[str, Any]] = []
    for k in range(len(search.members)):
        bucket = buckets.get(str(k))
        if not isinstance(bucket, dict):
            return None
        one: dict[str, Any] = dict(copied)
        one["hits"] = {
            "total": {"value": bucket.get("doc_count", 0), "relation": "eq"},
            "max_score": None,
            "hits": [],
        }
        aggs = {name: value for name, value in bucket.items() if name != "doc_count"}
        if aggs:
            one["aggregations"] = aggs
        out.append(one)
    return out
