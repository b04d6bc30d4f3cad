"""Domain types: states, groups, results."""

from __future__ import annotations

import dataclasses
import inspect
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esbridge.errors import ErrorKind
from esbridge.kinds.wording import Describe, GroupWording, WordedGroup
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State, slot_init
from esbridge.statedoc import (
    Transition,
    dumps,
    result_from_dict,
    result_to_dict,
    result_to_document,
)

OK, WARNING, CRITICAL, UNKNOWN = State.OK, State.WARNING, State.CRITICAL, State.UNKNOWN


def test_values_are_exit_codes():
    assert [int(s) for s in (OK, WARNING, CRITICAL, UNKNOWN)] == [0, 1, 2, 3]


def test_severity_order():
    assert sorted(State, key=lambda s: s.severity) == [OK, WARNING, UNKNOWN, CRITICAL]


@pytest.mark.parametrize(
    ("states", "worst"),
    [
        ([], OK),
        ([OK], OK),
        ([OK, WARNING], WARNING),
        ([WARNING, UNKNOWN], UNKNOWN),
        ([UNKNOWN, CRITICAL], CRITICAL),
        ([CRITICAL, UNKNOWN, WARNING, OK], CRITICAL),
        ([OK, UNKNOWN, OK], UNKNOWN),
    ],
)
def test_worst(states, worst):
    assert State.worst(states) is worst
    assert State.worst(iter(states)) is worst


def test_worst_is_order_independent():
    for combo in itertools.permutations([OK, WARNING, CRITICAL, UNKNOWN]):
        assert State.worst(combo) is CRITICAL
    for combo in itertools.permutations([OK, WARNING, UNKNOWN]):
        assert State.worst(combo) is UNKNOWN


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("ok", OK),
        ("OK", OK),
        (" Warning ", WARNING),
        ("critical", CRITICAL),
        ("UNKNOWN", UNKNOWN),
        (0, OK),
        (3, UNKNOWN),
        ("2", CRITICAL),
        (WARNING, WARNING),
    ],
)
def test_parse(text, state):
    assert State.parse(text) is state


@pytest.mark.parametrize("text", ["", "crit", "warn ing", 4, -1, "4", True, None, 1.0])
def test_parse_rejects(text):
    with pytest.raises(ValueError, match="invalid state"):
        State.parse(text)


def _group(*key: tuple[str, str], state: State = OK) -> GroupResult:
    return GroupResult(key=key, state=state, value=1.0, summary="s")


def test_group_key_text_and_label():
    g = _group(("host", "web-01"), ("service", "api"))
    assert g.key_text == "host=web-01,service=api"
    assert g.label == "web-01/api"
    single = _group(("host", "web-01"))
    assert (single.key_text, single.label) == ("host=web-01", "web-01")
    assert (_group().key_text, _group().label) == ("", "")


def test_result_group_lookup():
    a, b = _group(("host", "web-01"), state=CRITICAL), _group(("host", "web-02"))
    r = Result(check="c", state=CRITICAL, summary="x", groups=(a, b))
    assert r.group("host=web-01") is a
    assert r.group("web-02") is b
    assert r.group("host=web-03") is None
    assert r.group("web") is None
    assert Result(check="c", state=OK, summary="x").group("web-01") is None


def test_result_is_immutable_and_with_copies():
    r = Result(check="c", state=OK, summary="fine", value=1.0)
    r2 = r.with_(state=WARNING, summary="meh")
    assert (r.state, r.summary) == (OK, "fine")
    assert (r2.state, r2.summary, r2.value, r2.check) == (WARNING, "meh", 1.0, "c")
    with pytest.raises(AttributeError):
        r.state = CRITICAL  # type: ignore[misc]


# -- the state document's form of a result (persistence, the shared view, the API) ----------

_texts = st.text(max_size=20)
_numbers = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))
_range_texts = ["10", "10:", "~:10", "10:20", "@10:20", "0.5", "-3:7"]
_ranges = st.one_of(st.none(), st.sampled_from(_range_texts).map(Range.parse))
_perfdata = st.builds(
    Perfdatum,
    label=_texts,
    value=_numbers,
    uom=st.sampled_from(["", "s", "%", "B"]),
    warn=_ranges,
    crit=_ranges,
    min=_numbers,
    max=_numbers,
)
# one value per group_by field: the document keeps the key as an object
_keys = st.dictionaries(_texts, _texts, max_size=2).map(lambda d: tuple(d.items()))
_groups = st.builds(
    GroupResult,
    key=_keys,
    state=st.sampled_from(State),
    value=_numbers,
    summary=_texts,
    perfdata=st.lists(_perfdata, max_size=2).map(tuple),
)
_wordings = st.builds(
    GroupWording,
    describe=st.builds(
        Describe,
        prefix=_texts,
        style=st.sampled_from(["number", "value", "age"]),
        unit=st.sampled_from(["", "s", "ms", "%"]),
        suffix=_texts,
    ),
    uom=st.sampled_from(["", "s", "%", "c"]),
    warning=_ranges,
    critical=_ranges,
    perf_min=_numbers,
    perf_max=_numbers,
)


@st.composite
def _worded_groups(draw: st.DrawFn) -> tuple[GroupResult, ...]:
    """The groups of one grouped result: worded by one wording, now and then one worded
    its own way (an uncertain count)."""
    wording = draw(_wordings)
    items = draw(st.lists(st.tuples(_keys, st.sampled_from(State), _numbers), max_size=4))
    groups: list[GroupResult] = [WordedGroup(k, s, v, wording) for k, s, v in items]
    if groups and draw(st.booleans()):
        groups.insert(draw(st.integers(0, len(groups))), draw(_groups))
    return tuple(groups)


_results = st.builds(
    Result,
    check=_texts,
    state=st.sampled_from(State),
    summary=_texts,
    value=_numbers,
    unit=st.sampled_from(["", "ms"]),
    long_output=st.lists(_texts, max_size=2).map(tuple),
    perfdata=st.lists(_perfdata, max_size=2).map(tuple),
    groups=st.one_of(st.lists(_groups, max_size=3).map(tuple), _worded_groups()),
    groups_omitted=st.integers(0, 5),
    error=st.one_of(st.none(), _texts),
    error_kind=st.one_of(st.none(), st.sampled_from(ErrorKind)),
    evaluated_at=st.floats(0, 4e9),
    duration=st.floats(0, 100),
)


@given(_results, _results, st.data())
def test_same_answer_is_equality_but_for_the_runs_times(
    a: Result, b: Result, data: st.DataObject
) -> None:
    """``same_answer`` compares field by field (an owner asks it of every run): it must say
    exactly what equality says of the two results at one run's times, for any two results
    and for one with any single compared field changed, a field added later included."""
    assert a.same_answer(b) == (a.timed(b.evaluated_at, b.duration) == b)
    assert a.same_answer(a.timed(a.evaluated_at + 60.0, a.duration + 1.0))
    compared = [
        f.name
        for f in dataclasses.fields(Result)
        if f.compare and f.name not in ("evaluated_at", "duration")
    ]
    name = data.draw(st.sampled_from(compared))
    other = a.with_(**{name: getattr(b, name)})
    assert a.same_answer(other) == (getattr(a, name) == getattr(b, name))


@given(_results)
def test_a_result_reads_back_as_written(result: Result) -> None:
    """What the owner writes is what a restart, another replica and the API read back."""
    assert result_from_dict(json.loads(dumps(result_to_dict(result)))) == result


@given(_results)
def test_the_state_document_form_reads_back_as_the_result(result: Result) -> None:
    """The state index keeps a smaller form (every replica parses it): nothing is lost."""
    document = result_to_document(result)
    assert result_from_dict(json.loads(dumps(document)), result.check) == result
    assert "check" not in document and "status_code" not in document
    assert len(dumps(document)) < len(dumps(result_to_dict(result)))


@given(_results)
def test_a_grouped_result_stores_its_wording_once_not_a_text_per_group(result: Result) -> None:
    """Every run of a grouped check is written; a group worded the usual way is stored as
    its key, state and value, its result's wording once, and reads back with the same texts."""
    document = result_to_document(result)
    worded = [g for g in result.groups if type(g) is WordedGroup]
    stored = document.get("groups", [])
    if worded:  # whichever group comes first (an uncertain one may)
        assert "group_wording" in document
        assert sum("summary" not in g for g in stored) == len(worded)
    back = result_from_dict(json.loads(dumps(document)), result.check)
    assert [(g.summary, g.perfdata) for g in back.groups] == [
        (g.summary, g.perfdata) for g in result.groups
    ]


def test_a_worded_group_says_what_a_group_with_its_texts_says() -> None:
    wording = GroupWording(
        Describe("", "number", "", " matching documents"),
        "c",
        Range.parse("10"),
        Range.parse("50"),
        0.0,
    )
    group = WordedGroup((("host", "web-01"),), CRITICAL, 60.0, wording)
    assert group.summary == "web-01: 60 matching documents (critical > 50)"
    assert group.perfdata == (
        Perfdatum("web-01", 60.0, "c", Range.parse("10"), Range.parse("50"), 0.0),
    )
    assert group.summary is group.summary  # worded once, at the first read
    plain = GroupResult(group.key, CRITICAL, 60.0, group.summary, group.perfdata)
    assert group == plain and plain == group and hash(group) == hash(plain)
    assert group != GroupResult(group.key, CRITICAL, 60.0, "other words", group.perfdata)
    quiet = WordedGroup((("host", "web-02"),), OK, 3.0, wording)
    assert quiet.summary == "web-02: 3 matching documents (warning > 10, critical > 50)"
    empty = WordedGroup((("host", "web-03"),), UNKNOWN, None, wording)
    assert empty.summary == "web-03: no data"
    with pytest.raises(dataclasses.FrozenInstanceError):
        group.state = OK  # type: ignore[misc]
    assert not hasattr(group, "__dict__")


@pytest.mark.parametrize("cls", [Perfdatum, GroupResult, Result, Transition])
def test_slot_init_builds_what_the_dataclass_describes(cls: type) -> None:
    """The fast ``__init__``: every field in order with its default, frozen afterwards."""
    fields = dataclasses.fields(cls)
    params = inspect.signature(cls).parameters
    assert list(params) == [f.name for f in fields]
    for f in fields:
        expected = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
        assert params[f.name].default == expected, f.name
    required = [f for f in fields if f.default is dataclasses.MISSING]
    values = {f.name: object() for f in required}
    made = cls(**values)
    assert made == cls(*values.values())  # positional and keyword alike
    for f in fields:
        assert getattr(made, f.name) is values.get(f.name, f.default)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, fields[0].name, "changed")
    assert not hasattr(made, "__dict__")  # slots, as before
    with pytest.raises(TypeError):
        cls(*values.values(), *([None] * (len(fields) - len(required) + 1)))  # one too many


def test_slot_init_refuses_fields_it_cannot_build() -> None:
    with pytest.raises(TypeError, match="needs dataclasses' own __init__"):

        @slot_init
        @dataclasses.dataclass(frozen=True, slots=True)
        class WithFactory:
            items: list[int] = dataclasses.field(default_factory=list)


def test_equal_results_hash_alike_and_replace_keeps_the_rest() -> None:
    a = Result("c", CRITICAL, "bad", value=3.0, perfdata=(Perfdatum("v", 3.0),))
    b = Result(check="c", state=CRITICAL, summary="bad", value=3.0, perfdata=(Perfdatum("v", 3.0),))
    assert a == b and hash(a) == hash(b)
    c = a.with_(summary="worse")
    assert (
        c.summary == "worse" and c.value == 3.0 and c.perfdata == a.perfdata and a.summary == "bad"
    )


@given(_results, st.floats(0, 4e9), st.floats(0, 60))
def test_timed_is_with_the_run_times_changed(result: Result, at: float, duration: float) -> None:
    """``timed`` builds by position: it must set exactly what ``with_`` sets by name."""
    result = result.with_(max_groups=7, stale_previous="was OK")
    got, want = result.timed(at, duration), result.with_(evaluated_at=at, duration=duration)
    assert [getattr(got, f.name) for f in dataclasses.fields(Result)] == [
        getattr(want, f.name) for f in dataclasses.fields(Result)
    ]
