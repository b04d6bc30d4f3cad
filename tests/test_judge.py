"""The per-group shortcuts give exactly what the general functions give.

Grouped checks judge their groups with ``classifier`` (bounds read once per run) and read
their values with ``metric_reader`` (chosen once per check); single values and everything
else use ``classify`` and ``metric_value``. One rule, two speeds: they must never differ.
"""

from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from esbridge.kinds.judge import classifier, classify
from esbridge.kinds.outcome import metric_reader, metric_value
from esbridge.kinds.search import VALUE_AGG
from esbridge.ranges import Range

ENDS = st.sampled_from([-math.inf, -10.0, -1.0, 0.0, 0.5, 1.0, 10.0, 50.0, math.inf])


@st.composite
def ranges(draw: st.DrawFn) -> Range | None:
    if draw(st.booleans()):
        return None
    a, b = sorted((draw(ENDS), draw(ENDS)))
    return Range(start=a, end=b, inside=draw(st.booleans()))


VALUES = st.one_of(
    ENDS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, -0.0, 9.999999, 10.000001, 50.0, 49.99]),
)


@given(ranges(), ranges(), st.lists(VALUES, min_size=1, max_size=20))
def test_classifier_agrees_with_classify(
    warning: Range | None, critical: Range | None, values: list[float]
) -> None:
    judge = classifier(warning, critical)
    for value in values:
        assert judge(value) is classify(value, warning, critical), (value, warning, critical)


def test_classifier_on_the_usual_thresholds() -> None:
    judge = classifier(Range.parse("10"), Range.parse("@20:30"))
    assert [judge(v).name for v in (5, 10, 10.5, 20, 25, 30, 31, -1)] == [
        "OK", "OK", "WARNING", "CRITICAL", "CRITICAL", "CRITICAL", "WARNING", "WARNING",
    ]  # fmt: skip
    assert classifier(None, None)(math.inf).name == "OK"
    assert classifier(None, Range.parse("1"))(math.nan).name == "UNKNOWN"


NODES = [
    None,
    {},
    {"value": None},
    {"value": 3},
    {"value": 2.5},
    {"value": math.nan},
    {"values": {"95.0": 120.0}},
    {"values": {"99.0": None}},
    {"values": {}},
    {"sum": 0.0, "count": 0},
    {"sum": 12.0, "count": 3},
    {"sum": math.nan, "count": 1},
]


def test_metric_reader_reads_what_metric_value_reads() -> None:
    """Both read the value aggregation inside what holds it (a bucket, the aggregations)."""
    expected = {
        "avg": [None, None, None, 3.0, 2.5, None, None, None, None, None, None, None],
        "percentile": [None, None, None, None, None, None, 120.0, None, None, None, None, None],
        "sum": [None, None, None, None, None, None, None, None, None, None, 12.0, None],
    }
    for agg, want in expected.items():
        read = metric_reader(agg)
        holders = [{VALUE_AGG: node} for node in NODES]
        assert [read(holder) for holder in holders] == want, agg
        assert [metric_value(holder, agg) for holder in holders] == want, agg
        assert read({}) is None, agg  # no such aggregation
