"""Groups worst first: the cheaper sort grouped checks use gives exactly the plain sort's order,
and the overall result of sorted groups (which reads only their head) is that of all of them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esbridge.kinds.outcome import combine_groups, sorted_worst_first, worst_first
from esbridge.loader import load_text
from esbridge.models import CheckDefinition
from esbridge.result import GroupResult, State


def _check(thresholds: str) -> CheckDefinition:
    text = f"checks:\n  - {{name: m, kind: metric, index: x, field: v, agg: avg, {thresholds}}}"
    return next(iter(load_text(text)))


CHECKS = [_check("critical: '10'"), _check("critical: '10:'"), _check("warning: '@5:7'")]

_values = st.one_of(
    st.none(),
    st.sampled_from([0.0, -0.0, 1.0, 1.0, 10.0, float("inf"), float("-inf")]),
    st.floats(allow_nan=False, min_value=-1e6, max_value=1e6),
)
_groups = st.lists(
    st.builds(
        lambda n, state, value: GroupResult(((("host", f"h{n}"),)), state, value, f"h{n}"),
        st.integers(0, 1000),
        st.sampled_from(list(State)),
        _values,
    ),
    max_size=60,
)


@pytest.mark.parametrize("check", CHECKS, ids=["high-alerts", "low-alerts", "inside"])
@given(groups=_groups)
def test_the_cheaper_sort_is_the_plain_sort(
    check: CheckDefinition, groups: list[GroupResult]
) -> None:
    """Same order, ties included (both sorts are stable): the same summary names the same
    groups first, and ``max_groups`` keeps the same ones."""
    expected = sorted(groups, key=worst_first(check))
    got = sorted_worst_first(list(groups), check)
    assert [id(g) for g in got] == [id(g) for g in expected]


@pytest.mark.parametrize("check", CHECKS, ids=["high-alerts", "low-alerts", "inside"])
@given(groups=_groups)
def test_the_overall_result_of_sorted_groups(
    check: CheckDefinition, groups: list[GroupResult]
) -> None:
    result = combine_groups(check, sorted_worst_first(groups, check), 0, "h", "")
    if not groups:
        assert result.state is check.effective_no_data
        return
    assert result.state is State.worst(g.state for g in groups)
    bad = sum(1 for g in groups if g.state is not State.OK)
    if bad:
        assert result.summary.startswith(f"{bad} of {len(groups)} groups not OK: ")
    else:
        assert result.summary.startswith(f"all {len(groups)} groups OK")
