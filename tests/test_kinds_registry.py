"""The kind registry: one table, and the rules every kind shares computed once (pure)."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from esbridge import models, planner
from esbridge.kinds import REGISTRY
from esbridge.kinds.judge import low_values_alert
from esbridge.kinds.outcome import worst_first
from esbridge.ranges import Range
from esbridge.result import GroupResult, State

SERVICE = Path(__file__).resolve().parent.parent / "service" / "esbridge"
NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def test_registry_is_the_one_list_of_kinds() -> None:
    assert tuple(REGISTRY) == models.KINDS
    for name, kind in REGISTRY.items():
        assert kind.name == name
        assert models.CHECK_CLASSES[name] is kind.model
    assert set(models.CLUSTER_KINDS) == {n for n, k in REGISTRY.items() if k.is_cluster_kind}
    # the discriminated union accepts every registered kind (and only those)
    for name in REGISTRY:
        assert name in models.check_file_schema(name)["title"]


CASES = [
    ("10:", None, True),  # below 10 alerts
    (None, "10:", True),
    ("20:", "10:", True),
    ("~:", "10:", True),  # ~: never alerts: it says nothing (the two old copies differed here)
    ("~:", None, False),
    ("@~:10", None, True),  # 10 or less alerts
    ("50", None, False),
    ("10:20", None, False),
    ("~:10", None, False),  # above 10 alerts
    ("10:", "50", False),
    ("@10:20", None, False),
]


@pytest.mark.parametrize(("warning", "critical", "low"), CASES)
def test_low_values_rule_is_computed_once_and_both_uses_agree(
    warning: str | None, critical: str | None, low: bool
) -> None:
    """The planner keeps the lowest groups exactly when the evaluator lists them first."""
    w = Range.parse(warning) if warning else None
    c = Range.parse(critical) if critical else None
    assert low_values_alert(w, c) is low
    check = models.MetricCheck(
        name="m",
        index="x",
        field="f",
        agg="avg",
        group_by="host",
        warning=w,
        critical=c if (w or c) else Range.parse("1"),
    )
    order = planner.plan(check, NOW, timedelta(seconds=5)).body["aggs"]["groups"]["terms"]
    planner_keeps_lowest = order["order"] == {"value": "asc"}
    groups = [
        GroupResult(key=(("host", h),), state=State.OK, value=v, summary="")
        for h, v in (("a", 3.0), ("b", 1.0), ("c", 2.0))
    ]
    evaluator_lists_lowest_first = sorted(groups, key=worst_first(check))[0].value == 1.0
    assert planner_keeps_lowest is evaluator_lists_lowest_first is low


@pytest.mark.parametrize(
    ("critical", "low_for_counts", "low_anywhere"),
    [
        ("@10", True, False),  # 0 to 10 alerts: nothing is below 0 for a count
        ("@0:10", True, False),
        ("@-5:10", True, False),
        ("@5:10", False, False),  # below 5 is fine: both sides matter
        ("10:", True, True),
    ],
)
def test_at_n_alerts_on_low_values_where_nothing_is_below_zero(
    critical: str, low_for_counts: bool, low_anywhere: bool
) -> None:
    """``@10`` is the Nagios way to say "10 or fewer": for a count, ratio or age it alerts on
    low values, so the planner keeps (and the evaluator lists first) the lowest groups."""
    c = Range.parse(critical)
    assert low_values_alert(None, c, 0.0) is low_for_counts
    assert low_values_alert(None, c) is low_anywhere
    check = models.CountCheck(name="c", index="x", group_by="host", critical=c)
    order = planner.plan(check, NOW, timedelta(seconds=5)).body["aggs"]["groups"]["terms"]
    assert (order.get("order") == {"_count": "asc"}) is low_for_counts
    groups = [
        GroupResult(key=(("host", h),), state=State.OK, value=v, summary="")
        for h, v in (("a", 3.0), ("b", 1.0), ("c", 2.0))
    ]
    assert (sorted(groups, key=worst_first(check))[0].value == 1.0) is low_for_counts


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


@pytest.mark.parametrize(
    "path",
    [SERVICE / "evaluate.py", *sorted((SERVICE / "kinds").glob("*.py"))],
    ids=lambda p: p.name,
)
def test_evaluation_is_pure(path: Path) -> None:
    """No client, no planner, no renderer below the evaluation (errors and numbers only)."""
    bad = {
        m
        for m in _imports(path)
        if m in {"esbridge.esclient", "esbridge.planner", "esbridge.nagios", "esbridge.models"}
        or m.split(".")[0] in {"elasticsearch", "opensearchpy", "httpx"}
    }
    assert not bad, f"{path.name} imports {sorted(bad)}"


def test_the_client_names_no_kind() -> None:
    """esclient runs what a ClusterFetch describes; it knows no kind name."""
    path = SERVICE / "esclient.py"
    kinds = {m for m in _imports(path) if m.startswith("esbridge.kinds") or m == "esbridge.models"}
    assert not kinds  # only the request types, through the planner
    text = path.read_text()
    assert "fetch.what" not in text
    for name in REGISTRY:
        assert f'== "{name}"' not in text


def test_a_kind_unknown_to_the_histogram_method_is_previewed_step_by_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new data kind needs nothing from the preview: without ``histogram=True`` the preview
    runs the kind's own plan per point instead of guessing how to combine its value."""
    import dataclasses

    from esbridge import previewhist

    check = models.CountCheck(name="c", index="logs-*", critical=10)
    assert previewhist._combinable(check) is None
    monkeypatch.setitem(REGISTRY, "count", dataclasses.replace(REGISTRY["count"], histogram=False))
    assert previewhist._combinable(check) == "the histogram method does not know the count kind"
