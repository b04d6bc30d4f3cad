"""``master``: all nodes agree on one elected master (split brain / no master → CRITICAL)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, field_validator

from esbridge import limits
from esbridge.errors import ESError
from esbridge.kinds.base import ClusterCheck
from esbridge.kinds.fields import StrList
from esbridge.kinds.kind import Kind
from esbridge.kinds.requests import ClusterFetch, Window
from esbridge.kinds.text import plural
from esbridge.ranges import Range
from esbridge.result import Perfdatum, Result, State


class MasterCheck(ClusterCheck):
    """All nodes agree on one elected master (split brain / no master → CRITICAL)."""

    requires_thresholds: ClassVar[bool] = False
    kind: Literal["master"] = "master"
    node_urls: StrList = Field(
        (),
        max_length=limits.MAX_LIST_ITEMS,
        description="node URLs to ask (default: the connection's)",
    )

    @field_validator("node_urls")
    @classmethod
    def _urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(limits.check_node_url(url) for url in value)


def plan(check: MasterCheck, window: Window) -> ClusterFetch:
    """Every node is asked locally: the answer is ``{"masters": {url: name | ESError}}``."""
    return ClusterFetch(masters=True, node_urls=tuple(check.node_urls))


def evaluate(
    check: MasterCheck, answer: dict[str, Any], now: float, previous: Result | None
) -> Result:
    masters: dict[str, Any] = answer.get("masters") or {}
    failed = {url: m for url, m in masters.items() if isinstance(m, ESError)}
    named = {url: m for url, m in masters.items() if not isinstance(m, ESError)}
    distinct = sorted(set(named.values()))
    long_output = tuple(
        f"{url}: {'error: ' + str(m) if isinstance(m, ESError) else 'master is ' + str(m)}"
        for url, m in masters.items()
    )
    if len(distinct) > 1:
        state = State.CRITICAL
        summary = "split brain: nodes disagree on the elected master: " + ", ".join(
            f"{url} -> {m}" for url, m in named.items()
        )
    elif "none" in distinct:
        state, summary = (
            State.CRITICAL,
            "no elected master: " + ", ".join(u for u, m in named.items() if m == "none"),
        )
    elif failed:
        state = State.UNKNOWN
        summary = (
            f"could not ask {len(failed)} of {len(masters)} nodes for their master: "
            + ", ".join(f"{url}: {err}" for url, err in failed.items())
        )
    elif distinct:
        state, summary = (
            State.OK,
            f"{plural(len(named), 'node')} asked, all agree: the elected master is {distinct[0]}",
        )
    else:
        state, summary = State.UNKNOWN, "no node URLs to ask"
    return Result(
        check=check.name,
        state=state,
        summary=summary,
        value=float(len(distinct)),
        long_output=long_output,
        perfdata=(
            Perfdatum("masters_seen", float(len(distinct)), "", None, Range.parse("1"), 0.0),
        ),
    )


KIND = Kind(MasterCheck, plan, evaluate, expects=("masters",))
