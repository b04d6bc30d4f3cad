"""What the registry holds for each kind: its model, how it plans, how it evaluates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from esbridge.errors import ESError
from esbridge.kinds.base import CheckBase
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.result import Result

#: (check, window) -> a search body for ``_msearch``, or the cluster API to fetch
Planner = Callable[[Any, Window], "dict[str, Any] | ClusterFetch"]
#: (check, answer, now, previous result or None) -> result; pure, never raises on purpose
Evaluator = Callable[[Any, dict[str, Any], float, "Result | None"], Result]
#: (check, error) -> the reason in the kind's words (e.g. "no snapshot repository [x]")
Explainer = Callable[[Any, ESError], str]


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of check. Its module holds the model (with its perfdata label), the plan and
    the evaluation; ``esbridge.kinds.REGISTRY`` lists every kind once."""

    model: type[CheckBase]
    plan: Planner
    evaluate: Evaluator
    explain: Explainer | None = None
    #: the preview's one-search histogram method knows how to rebuild this kind's value from
    #: pieces of the window (``previewhist``); any other data kind is previewed by running its
    #: own plan once per point, so a new kind needs nothing from the preview to be previewed
    histogram: bool = False
    #: keys every answer of this kind's cluster fetch holds: an answer without one of them is
    #: not that API's (a proxy's ``{}``, another server) and reads UNKNOWN, never a value made
    #: of defaults (``unassigned_shards`` 0, OK)
    expects: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return str(self.model.model_fields["kind"].default)

    @property
    def is_cluster_kind(self) -> bool:
        return self.model.is_cluster_kind
