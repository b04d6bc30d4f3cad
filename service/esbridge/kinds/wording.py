"""How the groups of a grouped result read, worded when an output reads them.

A grouped check has tens of groups per run; most runs are written to the state index and
counted in ``/metrics`` (state and value), and only a few outputs ever read a group's text
(the API, ``/nagios`` and the plugin, a passive push, the status page). So a group keeps its
key, state and value, plus the :class:`GroupWording` its result shares, and its summary and
perfdata are made from them at the first read (:class:`WordedGroup`): the same words as before,
made once per read group instead of once per group per run. The state index stores the
wording once per result (:meth:`GroupWording.to_document`), not a text per group, so another
replica's view words the groups the same way; a group worded any other way (an uncertain
count, a stale result, a cluster kind) keeps its text as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, get_args

from esbridge.kinds.judge import threshold_note
from esbridge.kinds.text import age_text, with_unit
from esbridge.numbers import format_number
from esbridge.ranges import Range, stored_range
from esbridge.result import GroupResult, Perfdatum, State

Style = Literal["number", "value", "age"]
_STYLES: frozenset[str] = frozenset(get_args(Style))


class Describe(NamedTuple):
    """How a group's value reads: ``prefix`` + the value as ``style`` words it + ``suffix``.

    ``number``: :func:`format_number` (a count); ``value``: :func:`with_unit` in ``unit``;
    ``age``: :func:`age_text` in ``unit`` (seconds also in hours and days).
    """

    prefix: str = ""
    style: Style = "number"
    unit: str = ""
    suffix: str = ""


_OK_KEY = (State.OK, False, False)


@dataclass(frozen=True, slots=True)
class GroupWording:
    """Everything a group's summary and perfdata are made of besides its key and value."""

    describe: Describe
    uom: str
    warning: Range | None
    critical: Range | None
    perf_min: float | None = None
    perf_max: float | None = None
    # the `` (critical > 50)`` notes: one text per state and side crossed, worded once
    _notes: dict[tuple[State, bool, bool], str] = field(
        default_factory=dict, init=False, compare=False, repr=False
    )

    def value_text(self, value: float) -> str:
        prefix, style, unit, suffix = self.describe
        if style == "number":
            text = format_number(value)
        elif style == "age":
            text = age_text(value, unit)
        else:
            text = with_unit(value, unit)
        return f"{prefix}{text}{suffix}"

    def note(self, state: State, value: float) -> str:
        """`` (critical > 50)``: the same words as an ungrouped result's note."""
        known = self._notes
        if state is State.OK:  # most groups: the same words whatever the value
            note = known.get(_OK_KEY)
            if note is not None:
                return note
        crossed = self.critical if state is State.CRITICAL else self.warning
        # A range's phrase depends on the value only through the side it lies on.
        side = (
            (value > crossed.end, value < crossed.start)
            if crossed is not None and state is not State.OK
            else (False, False)
        )
        key = (state, *side)
        note = known.get(key)
        if note is None:
            note = known[key] = f" ({threshold_note(state, value, self.warning, self.critical)})"
        return note

    def summary(self, label: str, state: State, value: float | None) -> str:
        if value is None:
            return f"{label}: no data"
        return f"{label}: {self.value_text(value)}{self.note(state, value)}"

    def perfdata(self, label: str, value: float | None) -> tuple[Perfdatum, ...]:
        return (
            Perfdatum(
                label, value, self.uom, self.warning, self.critical, self.perf_min, self.perf_max
            ),
        )

    def to_document(self) -> dict[str, Any]:
        """The wording as the state index keeps it, once per result (read back by
        :meth:`from_document`)."""
        prefix, style, unit, suffix = self.describe
        out: dict[str, Any] = {"style": style}
        for key, value in (
            ("prefix", prefix),
            ("unit", unit),
            ("suffix", suffix),
            ("uom", self.uom),
            ("warn", str(self.warning) if self.warning else None),
            ("crit", str(self.critical) if self.critical else None),
            ("min", self.perf_min),
            ("max", self.perf_max),
        ):
            if value is not None and value != "":
                out[key] = value
        return out

    @classmethod
    def from_document(cls, d: Any) -> GroupWording:
        """Read back, each field checked: ValueError (or TypeError) on a document of the
        wrong shape, which the store then ignores (logged), as any unreadable document."""
        if type(d) is not dict:
            raise ValueError("group_wording is not an object")
        style = d.get("style")
        if style not in _STYLES:
            raise ValueError(f"group_wording style is not one of {sorted(_STYLES)}")
        text = {k: d.get(k, "") for k in ("prefix", "unit", "suffix", "uom")}
        for key, value in text.items():
            if type(value) is not str:
                raise ValueError(f"group_wording {key} is not a string")
        warn, crit = d.get("warn"), d.get("crit")
        bounds = [d.get("min"), d.get("max")]
        for value in bounds:
            if value is not None and (type(value) not in (int, float) or value != value):
                raise ValueError("group_wording min/max is not a number")
        return cls(
            Describe(text["prefix"], style, text["unit"], text["suffix"]),
            text["uom"],
            stored_range(_text(warn)) if warn else None,
            stored_range(_text(crit)) if crit else None,
            bounds[0],
            bounds[1],
        )


def _text(value: Any) -> str:
    if type(value) is not str:
        raise ValueError("group_wording threshold is not a string")
    return value


class WordedGroup(GroupResult):
    """A group whose summary and perfdata are made from its result's wording when first read.

    Compares, hashes and prints like a :class:`GroupResult` with the same texts.
    """

    __slots__ = ("_worded", "wording")

    wording: GroupWording
    _worded: tuple[str, tuple[Perfdatum, ...]]

    def __init__(
        self,
        key: tuple[tuple[str, str], ...],
        state: State,
        value: float | None,
        wording: GroupWording,
    ) -> None:
        _set_key(self, key)
        _set_state(self, state)
        _set_value(self, value)
        _set_wording(self, wording)
        # _worded stays unset until the first read: one store fewer per group per run

    def _words(self) -> tuple[str, tuple[Perfdatum, ...]]:
        try:
            return self._worded
        except AttributeError:
            label, wording = self.label, self.wording
            worded = (
                wording.summary(label, self.state, self.value),
                wording.perfdata(label, self.value),
            )
            _set_worded(self, worded)
            return worded

    @property  # type: ignore[override]
    def summary(self) -> str:
        return self._words()[0]

    @property  # type: ignore[override]
    def perfdata(self) -> tuple[Perfdatum, ...]:
        return self._words()[1]


_set_key = GroupResult.key.__set__  # type: ignore[attr-defined]
_set_state = GroupResult.state.__set__  # type: ignore[attr-defined]
_set_value = GroupResult.value.__set__  # type: ignore[attr-defined]
_set_wording = WordedGroup.wording.__set__  # type: ignore[attr-defined]
_set_worded = WordedGroup._worded.__set__  # type: ignore[attr-defined]
