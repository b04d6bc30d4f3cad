"""The domain of one evaluation: states, perfdata, per-group and overall results.

Small immutable values (after nagiosplugin's Metric/Result model) so that evaluation stays
pure and every output (Nagios text, Prometheus, JSON) renders the same facts.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any, TypeVar

from esbridge.errors import ErrorKind
from esbridge.ranges import Range


class State(IntEnum):
    """Check state; the value is the Nagios plugin exit code."""

    OK = 0
    WARNING = 1
    CRITICAL = 2
    UNKNOWN = 3

    @property
    def severity(self) -> int:
        """Rank for "worst first": CRITICAL, UNKNOWN, WARNING, OK (as Icinga Web sorts)."""
        return _SEVERITY[self]

    @staticmethod
    def worst(states: Iterable[State]) -> State:
        """The most severe state; OK for no states at all."""
        return max(states, key=_SEVERITY.__getitem__, default=State.OK)

    @classmethod
    def parse(cls, text: str | int | State) -> State:
        """Accept ``ok``/``OK``/``0``; raise ``ValueError`` otherwise."""
        if isinstance(text, State):
            return text
        if isinstance(text, int) and not isinstance(text, bool) and 0 <= text <= 3:
            return cls(text)
        name = str(text).strip().upper()
        if name in {"0", "1", "2", "3"}:
            return cls(int(name))
        try:
            return cls[name]
        except KeyError:
            raise ValueError(
                f"invalid state {text!r}: use ok, warning, critical or unknown"
            ) from None


_SEVERITY = {State.OK: 0, State.WARNING: 1, State.UNKNOWN: 2, State.CRITICAL: 3}


_T = TypeVar("_T")


def slot_init(cls: type[_T]) -> type[_T]:
    """Give a frozen, slotted dataclass an ``__init__`` that stores through its slots.

    The ``__init__`` that dataclasses writes for a frozen class stores every field with
    ``object.__setattr__``, one Python-level call each: a :class:`Result` took ~5 us to build,
    and esbridge builds one per check per run, a :class:`Perfdatum` and a :class:`GroupResult`
    per group, and one of each per state document a replica reads from the others. The slot
    descriptors store the same values ~4x cheaper. Everything else stays as dataclasses made
    it: the instance is frozen (assignment raises), compares, hashes and prints the same, and
    the signature (names, order, defaults) is the same (tests/test_result.py checks it).
    """
    params, lines = [], []
    namespace: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default_factory is not dataclasses.MISSING or f.kw_only or not f.init:
            raise TypeError(f"slot_init: {cls.__name__}.{f.name} needs dataclasses' own __init__")
        if f.default is dataclasses.MISSING:
            params.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            params.append(f"{f.name}=_default_{f.name}")
        namespace[f"_set_{f.name}"] = getattr(cls, f.name).__set__  # the slot's descriptor
        lines.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(lines) + "\n"
    exec(source, namespace)  # as dataclasses itself writes __init__
    init: Callable[..., None] = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls


@slot_init
@dataclass(frozen=True, slots=True)
class Perfdatum:
    """One performance data item: ``'label'=value[uom];[warn];[crit];[min];[max]``."""

    label: str
    value: float | None
    uom: str = ""
    warn: Range | None = None
    crit: Range | None = None
    min: float | None = None
    max: float | None = None


@slot_init
@dataclass(frozen=True, slots=True)
class GroupResult:
    """The measurement of one group (e.g. one host) of a grouped check.

    Grouped kinds make :class:`~esbridge.kinds.wording.WordedGroup`, whose summary and perfdata
    are made when first read; both compare, hash and serialise by what they say.
    """

    key: tuple[tuple[str, str], ...]
    state: State
    value: float | None
    summary: str
    perfdata: tuple[Perfdatum, ...] = ()

    def _said(self) -> tuple[Any, ...]:
        return (self.key, self.state, self.value, self.summary, self.perfdata)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, GroupResult):
            return NotImplemented
        return self._said() == other._said()

    def __hash__(self) -> int:
        return hash(self._said())

    @property
    def key_text(self) -> str:
        """``host=web-01,service=api``: how a group is named in URLs and the plugin's ``-g``."""
        return ",".join(f"{k}={v}" for k, v in self.key)

    @property
    def label(self) -> str:
        """``web-01`` or ``web-01/api``: how a group is named in summaries and perfdata."""
        return "/".join(v for _, v in self.key)


@slot_init
@dataclass(frozen=True, slots=True)
class Result:
    """One evaluation of one check: what every output renders."""

    check: str
    state: State
    summary: str
    value: float | None = None
    unit: str = ""
    long_output: tuple[str, ...] = ()
    perfdata: tuple[Perfdatum, ...] = ()
    groups: tuple[GroupResult, ...] = ()
    groups_omitted: int = 0
    error: str | None = None
    error_kind: ErrorKind | None = None
    evaluated_at: float = 0.0
    duration: float = 0.0
    # the check's max_groups when groups were left out, for "... (max_groups N)"
    max_groups: int | None = field(default=None, compare=False, hash=False)
    # when stale: the text of the real last result, so applying stale again still names it
    stale_previous: str | None = field(default=None, compare=False, hash=False)

    def with_(self, **changes: object) -> Result:
        """A copy with some fields changed (results are immutable)."""
        return replace(self, **changes)  # type: ignore[arg-type]

    def timed(self, evaluated_at: float, duration: float) -> Result:
        """The same result at another run: what a replica reads when an owner's check gave
        the same answer again (``with_`` takes ~4x as long, by keyword)."""
        return Result(
            self.check,
            self.state,
            self.summary,
            self.value,
            self.unit,
            self.long_output,
            self.perfdata,
            self.groups,
            self.groups_omitted,
            self.error,
            self.error_kind,
            evaluated_at,
            duration,
            self.max_groups,
            self.stale_previous,
        )

    def same_answer(self, other: Result) -> bool:
        """Whether ``other`` says what this result says, whenever it was evaluated: a run
        that repeats the answer an owner already wrote need not be written again.

        Compares what :data:`_ANSWER` reads of both: an owner asks this of each run, and
        building a timed copy to compare took three times as long."""
        return _ANSWER(self) == _ANSWER(other)

    def for_group(self, group: GroupResult) -> Result:
        """One group as a result of its own (one Nagios service per host, say)."""
        return Result(
            check=self.check,
            state=group.state,
            summary=group.summary,
            value=group.value,
            unit=self.unit,
            perfdata=group.perfdata,
            evaluated_at=self.evaluated_at,
            duration=self.duration,
        )

    def group(self, key_text: str) -> GroupResult | None:
        """The group named ``host=web-01`` (or just ``web-01``), if present."""
        for group in self.groups:
            if key_text in (group.key_text, group.label):
                return group
        return None


# What a result says, whenever it was evaluated: every field equality compares but the
# run's times, read from the dataclass so that a field added later is compared too.
_ANSWER = operator.attrgetter(
    *(
        f.name
        for f in dataclasses.fields(Result)
        if f.compare and f.name not in ("evaluated_at", "duration")
    )
)
