"""Plugin output: exact text, perfdata syntax, sanitising, the 8 KiB bound, staleness."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esbridge.kinds.text import with_unit
from esbridge.nagios import (
    MAX_OUTPUT_BYTES,
    exit_code,
    format_number,
    format_perfdatum,
    render,
    stale,
    summary_value,
    unknown,
)
from esbridge.ranges import Range
from esbridge.result import GroupResult, Perfdatum, Result, State

W, C = Range.parse("10"), Range.parse("50")


def _group(host: str, state: State, value: float, **kw: object) -> GroupResult:
    return GroupResult(
        key=(("host", host),),
        state=state,
        value=value,
        summary=f"{host}: {format_number(value)} 5xx responses",
        perfdata=(Perfdatum(host, value, "", W, C, 0),),
        **kw,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- exact text


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (State.OK, "OK - all good"),
        (State.WARNING, "WARNING - all good"),
        (State.CRITICAL, "CRITICAL - all good"),
        (State.UNKNOWN, "UNKNOWN - all good"),
    ],
)
def test_status_line_only(state, expected):
    result = Result(check="c", state=state, summary="all good")
    assert render(result) == expected
    assert exit_code(result) == int(state)


def test_overall_perfdata_on_first_line():
    result = Result(
        check="c",
        state=State.CRITICAL,
        summary="312 5xx responses in last 5m (critical > 50)",
        perfdata=(Perfdatum("errors", 312, "", W, C, 0),),
    )
    assert render(result) == (
        "CRITICAL - 312 5xx responses in last 5m (critical > 50) | 'errors'=312;10;50;0"
    )


def test_explicit_long_output_without_perfdata():
    result = Result(check="c", state=State.OK, summary="s", long_output=("one", "two"))
    assert render(result) == "OK - s\none\ntwo"


def test_long_output_with_perfdata():
    result = Result(
        check="c",
        state=State.WARNING,
        summary="lag 12 s",
        long_output=("line a", "line b"),
        perfdata=(Perfdatum("lag", 12, "s", W, C), Perfdatum("docs", 3, "c")),
    )
    assert render(result) == "WARNING - lag 12 s | 'lag'=12s;10;50 'docs'=3c\nline a\nline b"


def test_groups_worst_first_then_ok_with_group_perfdata_on_last_line():
    result = Result(
        check="c",
        state=State.CRITICAL,
        summary="312 5xx responses",
        perfdata=(Perfdatum("errors", 312, "", W, C, 0),),
        groups=(
            _group("web-03", State.OK, 0),
            _group("web-02", State.WARNING, 12),
            _group("web-04", State.UNKNOWN, 0),
            _group("web-01", State.CRITICAL, 300),
        ),
    )
    assert render(result) == (
        "CRITICAL - 312 5xx responses | 'errors'=312;10;50;0\n"
        "CRITICAL: web-01: 300 5xx responses\n"
        "UNKNOWN: web-04: 0 5xx responses\n"
        "WARNING: web-02: 12 5xx responses\n"
        "OK: web-03: 0 5xx responses | "
        "'web-03'=0;10;50;0 'web-02'=12;10;50;0 'web-04'=0;10;50;0 'web-01'=300;10;50;0"
    )


def test_groups_omitted_line_and_max_groups():
    groups = (_group("web-01", State.CRITICAL, 300), _group("web-02", State.OK, 1))
    result = Result(
        check="c",
        state=State.CRITICAL,
        summary="s",
        groups=groups,
        groups_omitted=7,
        max_groups=2,
    )
    assert render(result) == (
        "CRITICAL - s\n"
        "CRITICAL: web-01: 300 5xx responses\n"
        "OK: web-02: 1 5xx responses\n"
        "... and 7 more groups not evaluated (max_groups 2) | "
        "'web-01'=300;10;50;0 'web-02'=1;10;50;0"
    )
    # without the evaluator's hint, M is the number of groups present
    assert "(max_groups 2)" in render(result.with_(max_groups=None))


def test_explicit_long_output_wins_over_group_lines_but_omitted_line_stays():
    result = Result(
        check="c",
        state=State.OK,
        summary="s",
        long_output=("custom",),
        groups=(_group("web-01", State.OK, 1),),
        groups_omitted=3,
    )
    assert render(result) == (
        "OK - s\ncustom\n... and 3 more groups not evaluated (max_groups 1) | 'web-01'=1;10;50;0"
    )


def test_group_perfdata_without_any_long_line_goes_to_first_line():
    result = Result(
        check="c",
        state=State.OK,
        summary="s",
        perfdata=(Perfdatum("a", 1),),
        long_output=("", "\n"),  # only empty lines: nothing to carry the group perfdata
        groups=(GroupResult((), State.OK, 1, "", (Perfdatum("b", 2),)),),
    )
    assert render(result) == "OK - s | 'a'=1 'b'=2"


def test_no_trailing_newline():
    result = Result(check="c", state=State.OK, summary="s\n", long_output=("a\n",))
    assert render(result) == "OK - s \na"


# --------------------------------------------------------------------------- perfdata


@pytest.mark.parametrize(
    ("item", "text"),
    [
        (Perfdatum("x", 5, "", W, C), "'x'=5;10;50"),
        (Perfdatum("x", 5, "", None, C), "'x'=5;;50"),
        (Perfdatum("x", 5, "", W), "'x'=5;10"),
        (Perfdatum("x", 5), "'x'=5"),
        (Perfdatum("x", 5, "", None, None, 0), "'x'=5;;;0"),
        (Perfdatum("x", 5, "%", None, None, 0, 100), "'x'=5%;;;0;100"),
        (Perfdatum("x", 1.5, "s", W, C, 0), "'x'=1.5s;10;50;0"),
        (Perfdatum("x", None, "s", W, C, 0), "'x'=U;10;50;0"),
        (Perfdatum("x", None), "'x'=U"),
        (Perfdatum("x", float("nan"), "ms"), "'x'=U"),
        (Perfdatum("x", float("inf")), "'x'=U"),
        (Perfdatum("x", 3, "docs"), "'x'=3"),  # unknown uom: dropped
        (Perfdatum("x", 3, "GB"), "'x'=3"),
        (Perfdatum("x", 3, "KB"), "'x'=3KB"),
        (Perfdatum("x", 3, "us"), "'x'=3us"),
        (Perfdatum("x", 3, "c"), "'x'=3c"),
        (Perfdatum("x", 3, "B", None, None, float("nan"), 8), "'x'=3B;;;;8"),
        (
            Perfdatum("x", 15, "", Range.parse("~:10"), Range.parse("@10:20"), -1.5),
            "'x'=15;~:10;@10:20;-1.5",
        ),
        (Perfdatum("x", 5, "", Range.parse("10:")), "'x'=5;10:"),
        (Perfdatum("x", 1e-7, "s"), "'x'=0.0000001s"),
        (Perfdatum("x", 1e20), "'x'=100000000000000000000"),
    ],
)
def test_perfdatum(item, text):
    assert format_perfdatum(item) == text


@pytest.mark.parametrize(
    ("label", "quoted"),
    [
        ("errors", "'errors'"),
        ("web 01", "'web 01'"),
        ("it's", "'it_s'"),
        ("a=b", "'a_b'"),
        ("a|b", "'a\u00a6b'"),
        ("a\nb", "'a b'"),
        ("", "'_'"),
        ("/var/log", "'/var/log'"),
        ("größe", "'größe'"),
    ],
)
def test_label_quoting(label, quoted):
    assert format_perfdatum(Perfdatum(label, 1)) == f"{quoted}=1"


def test_labels_are_unique_within_one_output():
    result = Result(
        check="c",
        state=State.OK,
        summary="s",
        perfdata=(Perfdatum("x", 1), Perfdatum("x", 2), Perfdatum("x_2", 3), Perfdatum("a=b", 4)),
        groups=(
            GroupResult((("h", "x"),), State.OK, 5, "x", (Perfdatum("x", 5),)),
            GroupResult((("h", "a"),), State.OK, 6, "a", (Perfdatum("a_b", 6),)),
        ),
    )
    assert render(result) == (
        "OK - s | 'x'=1 'x_2'=2 'x_2_2'=3 'a_b'=4\nOK: x\nOK: a | 'x_3'=5 'a_b_2'=6"
    )


# --------------------------------------------------------------------------- numbers


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (-0.0, "0"),
        (312, "312"),
        (312.0, "312"),
        (-5, "-5"),
        (99.5, "99.5"),
        (0.1 + 0.2, "0.3"),
        (1e-07, "0.0000001"),
        (1.5e-10, "0.00000000015"),
        (1234567.891, "1234567.891"),
        (2.0000001, "2"),
        (0.123456789, "0.1234568"),
        (1e16, "10000000000000000"),
        (1.5e17, "150000000000000000"),
        (float("inf"), "inf"),
        (float("nan"), "nan"),
    ],
)
def test_format_number(value, text):
    assert format_number(value) == text


PLAIN = re.compile(r"^-?\d+(\.\d+)?$")


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_format_number_is_plain_and_close(x):
    text = format_number(x)
    assert PLAIN.match(text), text
    assert "e" not in text.lower()
    back = float(text)
    assert abs(back - x) <= 1e-6 * abs(x) or back == x


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(312, "", "312"), (99.5, "%", "99.5 %"), (1.2, "s", "1.2 s"), (None, "s", "n/a")],
)
def test_summary_value(value, unit, text):
    assert summary_value(value, unit) == text


# --------------------------------------------------------------------------- sanitising


def test_pipes_and_newlines_in_text_are_neutralised():
    result = Result(
        check="c",
        state=State.WARNING,
        summary="a | b\nc\r\nd",
        long_output=("x | y", "p\rq"),
        perfdata=(Perfdatum("l|m", 1),),
    )
    assert render(result) == "WARNING - a \u00a6 b c d | 'l\u00a6m'=1\nx \u00a6 y\np\nq"


def _split(line: str) -> tuple[str, str | None]:
    text, sep, perf = line.partition("|")
    return text, (perf if sep else None)


@settings(max_examples=200)
@given(
    summary=st.text(),
    long_output=st.lists(st.text(), max_size=5),
    labels=st.lists(st.text(), max_size=4),
    group_labels=st.lists(st.text(), min_size=1, max_size=4),
)
def test_pipe_only_where_perfdata_goes(summary, long_output, labels, group_labels):
    result = Result(
        check="c",
        state=State.CRITICAL,
        summary=summary,
        long_output=tuple(long_output),
        perfdata=tuple(Perfdatum(label, 1) for label in labels),
        groups=tuple(
            GroupResult((("k", g),), State.OK, 1, g, (Perfdatum(g, 2),)) for g in group_labels
        ),
    )
    lines = render(result).split("\n")
    assert all("\r" not in line and "\x00" not in line for line in lines)
    first_text, _ = _split(lines[0])
    assert first_text.startswith("CRITICAL - ")
    # perfdata only after the first "|" of line 1 and of the last line, nowhere else
    assert all("|" not in line for line in lines[1:-1])
    perfs = [perf for _, perf in map(_split, {0: lines[0], len(lines) - 1: lines[-1]}.values())]
    items = 0
    for perf in perfs:
        if perf is not None:
            assert "|" not in perf and PERFDATA.fullmatch(perf), perf
            items += len(ITEM.findall(perf))
    assert items == len(labels) + len(group_labels)
    if labels:
        assert _split(lines[0])[1] is not None


ITEM = re.compile(r" '[^'=|\n]*'=(?:U|-?\d+(?:\.\d+)?[a-zA-Z%]*)(?:;[-+0-9.:~@]*){0,4}")
PERFDATA = re.compile(rf"(?:{ITEM.pattern})+")


# --------------------------------------------------------------------------- 8 KiB bound


def test_bound_with_2000_groups():
    groups = tuple(
        _group(f"web-{i:04d}-ü", State.CRITICAL if i % 3 else State.WARNING, i) for i in range(2000)
    )
    result = Result(
        check="c",
        state=State.CRITICAL,
        summary="1333 of 2000 hosts have too many 5xx responses",
        perfdata=(Perfdatum("errors", 312, "", W, C, 0),),
        groups=groups,
        groups_omitted=12,
    )
    text = render(result)
    data = text.encode("utf-8")
    assert len(data) <= MAX_OUTPUT_BYTES
    assert data.decode("utf-8") == text
    lines = text.split("\n")
    assert lines[0] == (
        "CRITICAL - 1333 of 2000 hosts have too many 5xx responses | 'errors'=312;10;50;0"
    )
    assert lines[1].startswith("CRITICAL: web-0001-ü")
    note_pattern = r"\.\.\. \((\d+) more lines truncated, 2000 perfdata items dropped\)"
    note = re.fullmatch(note_pattern, lines[-2])
    assert note, lines[-2]
    assert int(note.group(1)) == 2000 - (len(lines) - 3)
    assert lines[-1] == "... and 12 more groups not evaluated (max_groups 2000)"
    assert len(data) > MAX_OUTPUT_BYTES - 200  # used the room, not dropped everything


def test_bound_drops_group_perfdata_before_lines():
    groups = tuple(_group(f"h{i}", State.OK, i) for i in range(250))
    text = render(Result(check="c", state=State.OK, summary="s", groups=groups))
    assert len(text.encode()) <= MAX_OUTPUT_BYTES
    lines = text.split("\n")
    assert len(lines) == 1 + 250 + 1  # every group line kept
    last_text, perf = _split(lines[-1])
    assert re.fullmatch(
        r"\.\.\. \(0 more lines truncated, \d+ perfdata items dropped\) ", last_text
    )
    assert perf is not None and perf.startswith(" 'h0'=0;10;50;0 'h1'=1;10;50;0")


def test_bound_truncates_only_an_oversized_status_line():
    summary = "é" * 10_000
    result = Result(
        check="c",
        state=State.UNKNOWN,
        summary=summary,
        perfdata=(Perfdatum("x", 1),),
        long_output=("detail",),
    )
    text = render(result)
    data = text.encode()
    assert len(data) <= MAX_OUTPUT_BYTES
    first = text.split("\n")[0]
    assert first.startswith("UNKNOWN - éé") and first.endswith("… | 'x'=1")
    assert text.endswith("… | 'x'=1\ndetail")  # the room left still holds the detail


def test_bound_keeps_full_text_when_it_fits():
    lines = tuple(f"line {i}" for i in range(100))
    text = render(Result(check="c", state=State.OK, summary="s", long_output=lines))
    assert "truncated" not in text
    assert text.count("\n") == 100


def test_bound_custom_limit():
    result = Result(check="c", state=State.OK, summary="s", long_output=("a" * 50,) * 10)
    text = render(result, max_bytes=200)
    assert len(text.encode()) <= 200
    assert text.startswith("OK - s\n")
    assert "more lines truncated)" in text


# --------------------------------------------------------------------------- stale/unknown


def _fresh() -> Result:
    return Result(
        check="c",
        state=State.CRITICAL,
        summary="312 5xx responses",
        value=312,
        perfdata=(Perfdatum("errors", 312, "", W, C, 0),),
        groups=(_group("web-01", State.CRITICAL, 300),),
        evaluated_at=1000.0,
    )


def test_stale_returns_fresh_result_unchanged():
    fresh = _fresh()
    assert stale(fresh, now=1300.0, max_age=300) is fresh


def test_stale_result_is_unknown_with_undetermined_perfdata():
    old = stale(_fresh(), now=1900.5, max_age=300)
    assert old.state is State.UNKNOWN and exit_code(old) == 3
    assert old.error_kind == "stale"
    assert old.summary == (
        "stale: last evaluated 901 s ago (max 300 s), last result was CRITICAL - 312 5xx responses"
    )
    assert old.error == old.summary
    assert old.value is None
    assert old.evaluated_at == 1000.0
    assert render(old) == (
        "UNKNOWN - stale: last evaluated 901 s ago (max 300 s), last result was "
        "CRITICAL - 312 5xx responses | 'errors'=U;10;50;0\n"
        "UNKNOWN: stale, last CRITICAL: web-01: 300 5xx responses | 'web-01'=U;10;50;0"
    )


def test_a_stale_result_has_no_group_in_its_last_state():
    """A group asked for alone (``-g host=web-01``, a passive service per host) must not
    read its old OK: every group of a stale result is UNKNOWN, its last state in words."""
    ok = _fresh().with_(state=State.OK, groups=(_group("web-01", State.OK, 3),))
    old = stale(ok, now=1900, max_age=300)
    (group,) = old.groups
    assert group.state is State.UNKNOWN and group.value is None
    assert group.summary == "stale, last OK: web-01: 3 5xx responses"
    alone = old.for_group(group)
    assert exit_code(alone) == 3 and render(alone).startswith("UNKNOWN - stale, last OK")
    twice = stale(old, now=2000, max_age=300)
    assert twice.groups == old.groups  # said once, not "stale, last UNKNOWN: stale, ..."


def test_a_result_from_the_future_beyond_its_age_is_stale():
    """The clock stepped back: an age can no longer be told, so the result stops counting;
    a small skew (another replica's clock) is tolerated."""
    fresh = _fresh()
    assert stale(fresh, now=1000.0 - 299, max_age=300) is fresh
    future = stale(fresh, now=1000.0 - 400, max_age=300)
    assert future.state is State.UNKNOWN and future.error_kind == "stale"
    assert future.summary.startswith("stale: evaluated 400 s in the future of this clock")


def test_stale_twice_uses_the_original():
    once = stale(_fresh(), now=1900, max_age=300)
    twice = stale(once, now=2000, max_age=300)
    assert twice.summary.startswith(
        "stale: last evaluated 1000 s ago (max 300 s), last result was CRITICAL"
    )


def test_stale_never_evaluated():
    never = Result(check="c", state=State.OK, summary="pending")
    assert stale(never, now=1e9, max_age=60).summary == "stale: never evaluated (max 60 s)"


def test_unknown_helper():
    result = unknown("c", "connection refused", "unreachable", now=5.0)
    assert (result.state, result.summary, result.error, result.error_kind, result.evaluated_at) == (
        State.UNKNOWN,
        "connection refused",
        "connection refused",
        "unreachable",
        5.0,
    )
    assert render(result) == "UNKNOWN - connection refused"
    assert exit_code(result) == 3


@given(
    st.one_of(
        st.floats(allow_nan=True, allow_infinity=True),
        st.integers(min_value=-(10**12), max_value=10**12),
        st.decimals(min_value=-2000, max_value=2000, places=3).map(float),  # ties at .xx5
    )
)
def test_summary_numbers_read_as_format_number_of_the_rounded_value(x):
    """``with_unit`` skips ``format_number``'s general path: the text must not change; a
    value below 0.01 is shown in two significant digits, never as 0."""
    if x and abs(x) < 0.01:
        shown = float(f"{x:.2g}")
        assert shown != 0
    else:
        shown = round(x, 1) if abs(x) >= 100 else round(x, 2)
    assert with_unit(x, "") == format_number(shown)
    assert with_unit(x, "ms") == f"{format_number(shown)} ms"
