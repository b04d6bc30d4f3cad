"""Pure parts of the preview (no Elasticsearch), and the read rule of its API route."""

from __future__ import annotations

import math
import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from esbridge.loader import load_text
from esbridge.preview import (
    Preview,
    PreviewError,
    PreviewPoint,
    default_step,
    point_times,
    preview_to_dict,
    range_to_dict,
)
from esbridge.previewhist import _sliding_max
from esbridge.previewtext import chart, format_duration_seconds, render_text
from esbridge.ranges import Range
from esbridge.result import Result, State

CHECK = load_text(
    "checks:\n  - {name: c, kind: count, index: x, window: 5m, warning: 10, critical: 50}\n"
).checks["c"]


@given(
    st.lists(st.one_of(st.none(), st.floats(-1e6, 1e6)), min_size=1, max_size=60),
    st.integers(1, 10),
    st.integers(1, 5),
)
def test_sliding_max_equals_the_brute_force(values, width, step):
    spans = [(max(0, b - width), b) for b in range(1, len(values) + 1, step)]
    expected = []
    for a, b in spans:
        present = [v for v in values[a:b] if v is not None]
        expected.append(max(present) if present else None)
    assert _sliding_max(values, spans) == expected


def test_point_times_end_at_until_and_are_bounded():
    times = point_times(timedelta(hours=1), timedelta(minutes=5), 1_800_000_000.25, 100)
    assert len(times) == 12
    assert times[-1].timestamp() == 1_800_000_000.25
    assert (times[1] - times[0]) == timedelta(minutes=5)
    with pytest.raises(PreviewError, match="8640 points, more than the limit of 1000"):
        point_times(timedelta(days=1), timedelta(seconds=10), 1_800_000_000, 1000)
    with pytest.raises(PreviewError, match="longer than since"):
        point_times(timedelta(minutes=1), timedelta(minutes=5), 1_800_000_000, 1000)
    with pytest.raises(PreviewError, match="not a usable time"):
        point_times(timedelta(minutes=10), timedelta(minutes=5), math.nan, 1000)
    with pytest.raises(PreviewError, match="max points must be at least 1, not 0"):
        point_times(timedelta(minutes=10), timedelta(minutes=5), 1_800_000_000, 0)  # was 1/0


def test_default_step_is_the_interval_unless_too_many_points():
    assert default_step(CHECK, timedelta(hours=1), timedelta(seconds=60)) == timedelta(minutes=1)
    assert default_step(CHECK, timedelta(days=1), timedelta(seconds=15)) == timedelta(minutes=5)
    assert default_step(CHECK, timedelta(days=7), timedelta(seconds=60)) == timedelta(hours=1)


def test_range_to_dict_keeps_the_alerting_side():
    assert range_to_dict(Range.parse("10")) == {
        "text": "10",
        "start": 0.0,
        "end": 10.0,
        "inside": False,
    }
    assert range_to_dict(Range.parse("~:5"))["start"] is None
    assert range_to_dict(Range.parse("@3:7"))["inside"] is True
    assert range_to_dict(None) is None


def fake_preview(states_values: list[tuple[State, float]]) -> Preview:
    points = [
        PreviewPoint(1_800_000_000 + 300 * i, Result("c", state, f"{value} docs", value=value))
        for i, (state, value) in enumerate(states_values)
    ]
    return Preview(CHECK, timedelta(minutes=5 * len(points)), timedelta(minutes=5), points[-1].at,
                   points, "histogram", 1, 1)  # fmt: skip


def test_transitions_time_in_state_and_pages():
    ok, warn, crit = State.OK, State.WARNING, State.CRITICAL
    preview = fake_preview(
        [(ok, 1), (warn, 12), (crit, 60), (crit, 70), (warn, 20), (crit, 55), (ok, 0)]
    )
    assert [(p.state, before) for p, before in preview.transitions] == [
        (warn, ok),
        (crit, warn),
        (warn, crit),
        (crit, warn),
        (ok, crit),
    ]
    assert preview.pages() == 2 and preview.warnings() == 1
    assert preview.time_in_state() == {"OK": 600.0, "WARNING": 600.0, "CRITICAL": 900.0,
                                       "UNKNOWN": 0.0}  # fmt: skip
    body = preview_to_dict(preview)
    assert body["pages"] == 2 and len(body["transitions"]) == 5
    assert body["markers"] == [] and "nagios" not in body["last"]


def test_terminal_chart_draws_values_thresholds_and_states():
    rng = random.Random(3)
    data = [(State.OK, rng.uniform(0, 9)) for _ in range(40)]
    data += [(State.CRITICAL, 80.0)] * 5 + [(State.WARNING, 20.0)] * 5
    preview = fake_preview(data)
    rows = chart(preview, width=72, height=8)
    strip = rows[-2]
    assert strip.strip().startswith("." * 40 + "C" * 5 + "W" * 5)
    assert any(r.endswith(" critical 50") for r in rows)
    assert any(r.endswith(" warning 10") for r in rows)
    top = rows[0]
    assert top.split("┤")[0].strip() == "80"  # the highest value labels the top row
    assert top.split("┤")[1][40:45] == "█" * 5  # only the critical burst reaches it
    text = render_text(preview)
    assert "would have paged 1 time (transitions into CRITICAL)" in text
    assert "time in state: OK 3h 20m (80.0 %), WARNING 25m (10.0 %)" in text
    wide = chart(fake_preview([(State.OK, float(i)) for i in range(300)]), width=72)
    assert len(wide[-2].split()[0]) == 72  # 300 points in 72 columns


def test_duration_text():
    assert format_duration_seconds(0) == "0s"
    assert format_duration_seconds(3725) == "1h 2m 5s"
    assert format_duration_seconds(90000) == "1d 1h"


def test_preview_route_follows_the_read_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    """With api.require_token_for_reads the preview needs the token like every read."""
    from fastapi.testclient import TestClient

    import esbridge.api as api
    from esbridge.app import Service
    from esbridge.config import load_settings

    monkeypatch.setenv("ESBRIDGE_API__TOKEN", "read-token")
    monkeypatch.setenv("ESBRIDGE_API__REQUIRE_TOKEN_FOR_READS", "true")
    settings = load_settings(None, state={"enabled": False})
    checkset = load_text("checks:\n  - {name: ct, kind: cluster_health}\n")
    client = TestClient(api.create_app(Service(settings, checkset)))  # no lifespan: no ES
    r = client.get("/api/v1/checks/ct/preview")
    assert r.status_code == 401
    r = client.get("/api/v1/checks/ct/preview", headers={"Authorization": "Bearer read-token"})
    assert r.status_code == 422 and "no history" in r.json()["error"]  # past the token check
