"""The requests a kind plans: one search body for ``_msearch``, or a shared cluster API fetch.

Plain values with no client attached, so planning and evaluation stay pure and the client
(``esclient``) needs to know nothing about kinds: it runs what these describe.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode


@dataclass(frozen=True, slots=True)
class Window:
    """The time range a data check looks at: ``[start, end)`` in UTC."""

    start: datetime
    end: datetime


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """One item of an ``_msearch`` request."""

    check: str
    index: str
    body: dict[str, Any]
    window: Window
    #: what it must share with others to merge, when the planner knows it already (None:
    #: ``searchmerge.merge_key`` works it out from the body). Not an argument: a copy made
    #: with another body (``dataclasses.replace``) must not keep it.
    merge_as: str | None = field(default=None, init=False, compare=False)

    def header(self) -> dict[str, Any]:
        # allow_no_indices=False: a pattern that matches nothing is "no such index", never
        # a silent count of 0 that would read OK. expand_wildcards includes closed indices
        # so that a closed index matched by a pattern is an error, not silently skipped.
        return {
            "index": self.index,
            "allow_no_indices": False,
            "ignore_unavailable": False,
            "expand_wildcards": "open,closed",
        }


@dataclass(frozen=True, slots=True)
class ClusterFetch:
    """A ``GET`` of a cluster API, shared by every cluster check of a connection needing it.

    Equal fetches compare equal, so ten checks reading ``_cluster/health`` cost one call per
    cycle. ``masters`` is the one special case: every node in ``node_urls`` (default: the
    connection's) is asked locally which node it sees as the elected master; the client
    picks the product's API for that question (``_cat/master`` or ``_cat/cluster_manager``)
    and answers ``{"masters": {url: node name | "none" | ESError}}``.
    """

    path: str = ""  # "/_cluster/health", "/_nodes/stats/jvm,fs", ...
    params: tuple[tuple[str, str], ...] = ()
    masters: bool = False
    node_urls: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        """The path with its query string, as sent."""
        return f"{self.path}?{urlencode(self.params)}" if self.params else self.path
