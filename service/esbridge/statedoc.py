"""Results, transitions and store entries as JSON documents (the state index and the API).

The API shows every field of a result (``result_to_dict``); the state index stores the same
result without what a reader can tell on its own (``result_to_document``): fields at their
defaults, the check name and status code the document already says, a group's label and key
text (both made from its key), and the summary and perfdata of a group its kind worded the
usual way (the result's :class:`~esbridge.kinds.wording.GroupWording`, stored once, words them
again when read). One reader (``result_from_dict``) reads both forms back. Every
replica parses the other replicas' documents all day (the shared view), so a smaller
document is less work on every replica, and less to index and store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from esbridge.errors import ErrorKind
from esbridge.kinds.wording import GroupWording, WordedGroup
from esbridge.mappings import index_mapping
from esbridge.ranges import stored_range
from esbridge.result import GroupResult, Perfdatum, Result, State, slot_init

STATE_MAPPING = index_mapping(
    "strict",
    keyword=("check", "state", "previous_state"),
    double=("since_ts", "last_success_ts"),
    integer=("consecutive_failures",),
    long=("runs",),
    opaque=("errors", "result", "transitions", "group_since"),
    date=("updated_at",),
)


@slot_init
@dataclass(frozen=True, slots=True)
class Transition:
    """A state change of a check, as the on-call engineer sees it in the history."""

    at: float
    from_state: State | None
    to_state: State
    summary: str
    after_deploy: dict[str, Any] | None = None  # the deploy that preceded it (esbridge.events)


# -- serialisation (shared by persistence and the JSON API) ---------------------------------


def _num(value: float | None) -> float | None:
    if value is None:
        return None
    if value != value or value in (float("inf"), float("-inf")):
        return None
    return value


def perfdatum_to_dict(p: Perfdatum) -> dict[str, Any]:
    return {
        "label": p.label,
        "value": _num(p.value),
        "uom": p.uom,
        "warn": str(p.warn) if p.warn else None,
        "crit": str(p.crit) if p.crit else None,
        "min": _num(p.min),
        "max": _num(p.max),
    }


_STATES: dict[str, State] = dict(State.__members__)  # KeyError on a bad name, as State[...]


# Reading back: a state document is written by a replica, but anyone who can write the
# index can put anything in it, and a value of the wrong type would only fail later, in every
# output that shows it (a 500 for the whole check list). Each field is checked as it is read;
# a ValueError makes the store ignore the document (logged), never the service fail.

# datetime's range in epoch seconds (years 1970 to 9999): every time the outputs format.
_LATEST = 253402300799.0


def stored_time(value: Any, field: str) -> float | None:
    """An epoch-seconds time read from a document (None when absent); ValueError otherwise."""
    if value is None:
        return None
    if type(value) not in (int, float) or not 0 <= value <= _LATEST:  # NaN fails too
        raise ValueError(f"{field} is not a time in 1970-9999: {str(value)[:40]!r}")
    return float(value)


def stored_number(value: Any, field: str) -> float | None:
    """A finite number read from a document (None when absent); ValueError otherwise."""
    if value is None:
        return None
    if type(value) not in (int, float) or not math.isfinite(value):
        raise ValueError(f"{field} is not a finite number: {str(value)[:40]!r}")
    return value


def stored_text(value: Any, field: str, default: str | None = "") -> str | None:
    """A string read from a document (``default`` when absent); ValueError otherwise."""
    if value is None:
        return default
    if type(value) is not str:
        raise ValueError(f"{field} is not a string: {str(value)[:40]!r}")
    return value


def perfdatum_from_dict(d: dict[str, Any]) -> Perfdatum:
    warn, crit = d.get("warn"), d.get("crit")
    return Perfdatum(
        label=stored_text(d["label"], "perfdata label") or "",
        value=stored_number(d.get("value"), "perfdata value"),
        uom=stored_text(d.get("uom"), "perfdata uom") or "",
        warn=stored_range(warn) if warn else None,
        crit=stored_range(crit) if crit else None,
        min=stored_number(d.get("min"), "perfdata min"),
        max=stored_number(d.get("max"), "perfdata max"),
    )


def group_to_dict(g: GroupResult) -> dict[str, Any]:
    return {
        "key": dict(g.key),
        "key_text": g.key_text,
        "label": g.label,
        "state": g.state.name,
        "value": _num(g.value),
        "summary": g.summary,
        "perfdata": [perfdatum_to_dict(p) for p in g.perfdata],
    }


def result_to_dict(r: Result) -> dict[str, Any]:
    return {
        "check": r.check,
        "state": r.state.name,
        "status_code": int(r.state),
        "summary": r.summary,
        "value": _num(r.value),
        "unit": r.unit,
        "long_output": list(r.long_output),
        "perfdata": [perfdatum_to_dict(p) for p in r.perfdata],
        "groups": [group_to_dict(g) for g in r.groups],
        "groups_omitted": r.groups_omitted,
        "error": r.error,
        "error_kind": r.error_kind,
        "evaluated_at": r.evaluated_at,
        "duration": r.duration,
    }


def _perfdatum_to_document(p: Perfdatum) -> dict[str, Any]:
    out: dict[str, Any] = {"label": p.label}
    _put(out, "value", _num(p.value))
    _put(out, "uom", p.uom)
    _put(out, "warn", str(p.warn) if p.warn else None)
    _put(out, "crit", str(p.crit) if p.crit else None)
    _put(out, "min", _num(p.min))
    _put(out, "max", _num(p.max))
    return out


def _group_to_document(g: GroupResult, wording: GroupWording | None) -> dict[str, Any]:
    """A group worded by ``wording`` (its result's, stored once) as its key, state and value;
    any other with its summary and perfdata."""
    out: dict[str, Any] = {"key": dict(g.key), "state": g.state.name}
    _put(out, "value", _num(g.value))
    if wording is None or type(g) is not WordedGroup or g.wording is not wording:
        out["summary"] = g.summary
        _put(out, "perfdata", [_perfdatum_to_document(p) for p in g.perfdata])
    return out


def result_to_document(r: Result) -> dict[str, Any]:
    """The result as the state index keeps it: ``result_to_dict`` without what a reader can
    tell on its own (see the module docstring); ``result_from_dict`` reads it back."""
    out: dict[str, Any] = {
        "state": r.state.name,
        "summary": r.summary,
        "evaluated_at": r.evaluated_at,
        "duration": r.duration,
    }
    _put(out, "value", _num(r.value))
    _put(out, "unit", r.unit)
    _put(out, "long_output", list(r.long_output))
    _put(out, "perfdata", [_perfdatum_to_document(p) for p in r.perfdata])
    if r.groups:
        # the result's wording: its groups share one (an uncertain group, worded its own
        # way, may come first: sorted worst first, it is UNKNOWN)
        wording = next((g.wording for g in r.groups if type(g) is WordedGroup), None)
        out["groups"] = [_group_to_document(g, wording) for g in r.groups]
        if wording is not None:
            out["group_wording"] = wording.to_document()
    if r.groups_omitted:
        out["groups_omitted"] = r.groups_omitted
    if r.error is not None:
        out["error"] = r.error
    _put(out, "error_kind", r.error_kind)
    return out


def _put(out: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is what a reader assumes when it is missing (a number,
    zero included, is always kept)."""
    if value is not None and value != "" and value != []:
        out[key] = value


def result_from_dict(d: dict[str, Any], check: str | None = None) -> Result:
    """A result from either form; ``check``: the name when ``d`` has none (a document)."""
    perfdata, groups, long_output = d.get("perfdata"), d.get("groups"), d.get("long_output")
    error_kind, wording = d.get("error_kind"), d.get("group_wording")
    if long_output and not all(type(line) is str for line in long_output):
        raise ValueError("long_output is not a list of strings")
    return Result(
        check=d["check"] if check is None or "check" in d else check,
        state=_STATES[d["state"]],
        summary=stored_text(d["summary"], "summary") or "",
        value=stored_number(d.get("value"), "value"),
        unit=stored_text(d.get("unit"), "unit") or "",
        long_output=tuple(long_output) if long_output else (),
        perfdata=tuple([perfdatum_from_dict(p) for p in perfdata]) if perfdata else (),
        groups=_groups_from_dicts(groups, wording) if groups else (),
        groups_omitted=int(d.get("groups_omitted") or 0),
        error=stored_text(d.get("error"), "error", None),
        error_kind=ErrorKind(error_kind) if error_kind else None,
        evaluated_at=stored_time(d.get("evaluated_at"), "evaluated_at") or 0.0,
        duration=stored_number(d.get("duration"), "duration") or 0.0,
    )


def _groups_from_dicts(groups: list[Any], wording: Any) -> tuple[GroupResult, ...]:
    shared = GroupWording.from_document(wording) if wording is not None else None
    return tuple([_group_from_dict(g, shared) for g in groups])


def _group_from_dict(g: dict[str, Any], wording: GroupWording | None) -> GroupResult:
    key = tuple([(str(k), str(v)) for k, v in (g.get("key") or {}).items()])
    if wording is not None and "summary" not in g:
        return WordedGroup(
            key, _STATES[g["state"]], stored_number(g.get("value"), "group value"), wording
        )
    perfdata = g.get("perfdata")
    return GroupResult(
        key=key,
        state=_STATES[g["state"]],
        value=stored_number(g.get("value"), "group value"),
        summary=stored_text(g.get("summary"), "group summary") or "",
        perfdata=tuple([perfdatum_from_dict(p) for p in perfdata]) if perfdata else (),
    )


def transition_to_dict(t: Transition) -> dict[str, Any]:
    out = {
        "at": t.at,
        "from": t.from_state.name if t.from_state is not None else None,
        "to": t.to_state.name,
        "summary": t.summary,
    }
    if t.after_deploy is not None:
        out["after_deploy"] = t.after_deploy
    return out


def transition_from_dict(d: dict[str, Any]) -> Transition:
    return Transition(
        at=stored_time(d["at"], "transition at") or 0.0,
        from_state=_STATES[d["from"]] if d.get("from") else None,
        to_state=_STATES[d["to"]],
        summary=str(d.get("summary", "")),
        after_deploy=d.get("after_deploy") if isinstance(d.get("after_deploy"), dict) else None,
    )


def dumps(value: Any) -> str:
    """Compact JSON for the state index's ``_bulk`` lines (orjson: the owner writes every
    check's document after every run; the standard library's encoder took about a tenth of a
    replica's CPU). Enum keys (the error counters) are written as their values."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()
