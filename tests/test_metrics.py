"""``/metrics`` of a real service: ``promtool check metrics`` passes without a single warning.

The service runs grouped checks (two different ``group_by`` field sets, so the per-group
families mix label sets), a failing check (error counters) and a cluster check, so the
output linted is what a real deployment exposes, not a hand-made sample.
"""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _require import require
from esbridge.metrics import label_name
from esbridge.result import State
from esbridge_dev.service import EsbridgeProcess
from test_service_support import delete_index, metric_samples, write

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


def test_label_names_are_valid_prometheus_labels() -> None:
    assert label_name("host.name") == "host_name"
    assert label_name("1st") == "group_1st"
    assert label_name("__x") == "group_x"
    assert label_name("check") == "group_check"
    assert label_name("le") == "group_le"


def _fake_service(store: object) -> object:
    from esbridge.view import ServiceView

    return ServiceView(store)  # type: ignore[arg-type]


def test_check_series_text_escapes_labels_and_follows_the_store() -> None:
    """The cached text writer: valid escaping, cache invalidated by new results and by age."""
    from prometheus_client.parser import text_string_to_metric_families

    from esbridge.metrics import CheckSeries
    from esbridge.result import GroupResult, Result, State
    from esbridge.store import ResultStore

    store = ResultStore(staleness_factor=2.0)
    store.sync({'we"ird\\name': 10.0})
    name = 'we"ird\\name'
    group = GroupResult(
        key=(("host.name", 'a"b\\c\nd'),), state=State.CRITICAL, value=7.5, summary=""
    )
    now = __import__("time").time()
    store.record(
        Result(
            check=name,
            state=State.CRITICAL,
            summary="s",
            value=7.5,
            groups=(group,),
            evaluated_at=now,
        )
    )
    series = CheckSeries(_fake_service(store))  # type: ignore[arg-type]

    def families() -> dict[str, list[object]]:
        return {f.name: f.samples for f in text_string_to_metric_families(series.render())}

    first = families()
    (sample,) = first["esbridge_group_status_code"]
    assert sample.labels == {"check": name, "host_name": 'a"b\\c\nd'}  # type: ignore[attr-defined]
    assert sample.value == 2.0  # type: ignore[attr-defined]
    assert first["esbridge_check_stale"][0].value == 0.0  # type: ignore[attr-defined]

    store.record(Result(check=name, state=State.OK, summary="s", value=1.0, evaluated_at=now + 1))
    second = families()
    assert second["esbridge_check_status_code"][0].value == 0.0  # type: ignore[attr-defined]
    assert "esbridge_group_status_code" not in second

    entry = store.get(name)
    assert entry is not None and entry.result is not None
    store.record(entry.result.with_(evaluated_at=now - 100))  # an old result: stale now
    third = families()
    assert third["esbridge_check_status_code"][0].value == 3.0  # type: ignore[attr-defined]
    assert third["esbridge_check_stale"][0].value == 1.0  # type: ignore[attr-defined]
    assert "esbridge_check_value" not in third


def test_a_followed_run_is_exported_without_building_its_result() -> None:
    """A check another replica owns, brought forward to a run its owner announced: the
    scrape exports that run's time and duration with the held answer, builds no result for
    it, renders again at the next run, and says UNKNOWN once that time is too old."""
    from prometheus_client.parser import text_string_to_metric_families

    from esbridge.metrics import CheckSeries
    from esbridge.result import Result, State
    from esbridge.store import Mark, ResultStore

    owner, store = ResultStore(staleness_factor=2.0), ResultStore(staleness_factor=2.0)
    for each in (owner, store):
        each.sync({"c": 10.0})
    owner.write_on_change = True
    now = 1_800_000_000.0

    def run(at: float, duration: float) -> Result:
        return Result("c", State.CRITICAL, "5 errors", 5.0, evaluated_at=at, duration=duration)

    owner.record(run(now - 100, 0.1))
    documents = owner.dirty_documents()
    owner.mark_clean(documents)
    store.adopt([{k: v for k, v in documents[0][1].items() if not k.startswith("_")}], False)
    series = CheckSeries(_fake_service(store))  # type: ignore[arg-type]

    def samples(at: float) -> dict[str, float]:
        text = series.render(at)
        assert text == CheckSeries(_fake_service(store)).render(at)  # type: ignore[arg-type]
        families = text_string_to_metric_families(text)
        return {f.name: f.samples[0].value for f in families if f.samples}  # type: ignore[attr-defined]

    for at, duration in ((now - 5, 0.25), (now - 1, 0.5)):
        owner.record(run(at, duration))
        assert store.follow("o", owner.progress({"c"}), {"c": "o"}) == ([], 1)
        got = samples(now)
        assert got["esbridge_check_last_run_timestamp_seconds"] == at
        assert got["esbridge_check_duration_seconds"] == duration
        assert (got["esbridge_check_status_code"], got["esbridge_check_value"]) == (2.0, 5.0)
        entry = store.get("c")
        assert entry is not None and entry._shown is None  # no result built for the run
    got = samples(now + 30)  # that run is 31 s old, allowed 20 s
    assert (got["esbridge_check_status_code"], got["esbridge_check_stale"]) == (3.0, 1.0)
    # an owner's mark followed: each scrape exports the last slot up to it, as it moves
    entry = store.get("c")
    assert entry is not None
    mark = Mark(now)
    store.follow("o", {"c": [*owner.progress({"c"})["c"], 10.0]}, {"c": "o"}, mark)
    for upto in (now + 10, now + 20):
        mark.at = upto
        got = samples(upto)
        slot = upto - (upto - entry.slot) % 10
        assert got["esbridge_check_last_run_timestamp_seconds"] == slot
        assert got["esbridge_check_last_success_timestamp_seconds"] == slot
        assert (got["esbridge_check_status_code"], got["esbridge_check_stale"]) == (2.0, 0.0)


_GROUP = st.builds(
    lambda host, state, value: (host, state, value),
    st.sampled_from(["web-01", "web-02", 'we"b\\3', "db-1"]),
    st.sampled_from(list(State)),
    st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True)),
)
_STEP = st.tuples(
    st.sampled_from(["a", "b", 'c"\\q']),  # check
    st.sampled_from(list(State)),
    st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=True, width=32)),
    st.lists(_GROUP, max_size=4, unique_by=lambda g: g[0]),
    st.sampled_from([None, "unreachable", "timeout"]),  # error kind
    st.integers(min_value=0, max_value=40),  # age in seconds (stale after 20)
)


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=12))
def test_check_series_text_after_many_results_equals_a_fresh_render(
    steps: list[
        tuple[str, State, float | None, list[tuple[str, State, float | None]], str | None, int]
    ],
) -> None:
    """The label text kept from run to run never leaks an old group, value or error."""
    from esbridge.metrics import CheckSeries
    from esbridge.result import GroupResult, Result
    from esbridge.store import ResultStore

    store = ResultStore(staleness_factor=2.0)
    store.sync({"a": 10.0, "b": 10.0, 'c"\\q': 10.0})
    now = 1_800_000_000.0
    kept = CheckSeries(_fake_service(store))  # type: ignore[arg-type]
    for check, state, value, groups, error_kind, age in steps:
        store.record(
            Result(
                check=check,
                state=state,
                summary="s",
                value=value,
                groups=tuple(
                    GroupResult(key=(("host.name", h),), state=s, value=v, summary="")
                    for h, s, v in groups
                ),
                error="e" if error_kind else None,
                error_kind=error_kind,
                evaluated_at=now - age,
            )
        )
        text = kept.render(now)
        assert text == CheckSeries(_fake_service(store)).render(now)  # type: ignore[arg-type]
        _assert_text_tells_the_store(text, store, now)


def _assert_text_tells_the_store(text: str, store: object, now: float) -> None:
    """Every check's samples, parsed back, say what the store's effective result says."""
    import math

    from prometheus_client.parser import text_string_to_metric_families

    samples: dict[tuple[str, str], dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = dict(sample.labels)
            check = labels.pop("check")
            key = (sample.name, check)
            samples.setdefault(key, {})[tuple(sorted(labels.items()))] = sample.value
    for entry in store.all():  # type: ignore[attr-defined]
        name = entry.name
        result = store.effective(entry, now)  # type: ignore[attr-defined]
        if result is None:  # never ran: UNKNOWN, and nothing else to tell
            assert samples[("esbridge_check_status_code", name)] == {(): 3.0}
            assert samples[("esbridge_check_stale", name)] == {(): 0.0}
            assert ("esbridge_check_value", name) not in samples
            continue
        stale = result.error_kind == "stale"
        assert samples[("esbridge_check_status_code", name)] == {(): float(int(result.state))}
        assert samples[("esbridge_check_state", name)] == {
            (("state", s.name),): 1.0 if s is result.state else 0.0 for s in State
        }
        assert samples[("esbridge_check_stale", name)] == {(): 1.0 if stale else 0.0}
        assert samples[("esbridge_check_runs_total", name)] == {(): float(entry.runs)}
        errors = samples.get(("esbridge_check_errors_total", name), {})
        assert errors == {(("reason", r),): float(n) for r, n in entry.errors.items()}
        value = samples.get(("esbridge_check_value", name))
        if stale or result.value is None:
            assert value is None
        else:
            assert value is not None
            got, want = value[()], result.value
            assert got == want or (math.isnan(got) and math.isnan(want))
        groups = {} if stale else {g.key[0][1]: g for g in result.groups}
        codes = samples.get(("esbridge_group_status_code", name), {})
        assert codes == {(("host_name", h),): float(int(g.state)) for h, g in groups.items()}
        values = samples.get(("esbridge_group_value", name), {})
        want_values = {
            (("host_name", h),): g.value for h, g in groups.items() if g.value is not None
        }
        assert values.keys() == want_values.keys()
        for key, got in values.items():
            want = want_values[key]
            assert got == want or (math.isnan(got) and math.isnan(want))


@pytest.fixture(scope="module")
def service(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EsbridgeProcess]:
    from esbridge_dev.seeding import seed as seed_docs

    index = f"metrics-logs-{uuid.uuid4().hex[:8]}"
    seed_docs(
        es_url,
        index,
        [
            {"ago": f"{i + 1}m", "host": f"web-0{i % 3}", "service": f"s{i % 2}", "status": 500}
            for i in range(30)
        ],
    )
    folder = tmp_path_factory.mktemp("metrics")
    checks = write(
        folder / "m.yaml",
        f"""defaults:
  index: {index}
  window: 1h
  interval: 2s
checks:
  - {{name: m-by-host, kind: count, group_by: host.keyword, critical: 9}}
  - {{name: m-by-host-service, kind: count, group_by: [host.keyword, service.keyword],
      warning: 4, critical: 100}}
  - {{name: m-total, kind: count, critical: 100}}
  - {{name: m-missing, kind: count, index: no-such-index-{uuid.uuid4().hex[:6]}, critical: 1}}
  - {{name: m-health, kind: cluster_health}}
""",
    )
    state_index = f"esbridge-test-state-{uuid.uuid4().hex[:8]}"
    proc = EsbridgeProcess(es_url, [checks], state_index=state_index)
    proc.start()
    try:
        proc.wait_for(
            lambda: proc.get("/api/v1/checks").json()["counts"]["PENDING"] == 0, timeout=30
        )
        yield proc
    finally:
        proc.stop()
        proc.log_path.unlink(missing_ok=True)
        delete_index(es_url, index)
        delete_index(es_url, state_index)


def test_promtool_accepts_the_real_output_without_warnings(service: EsbridgeProcess) -> None:
    require(Path(PROMTOOL).exists(), "promtool is not installed (apt install prometheus)")
    r = service.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=")
    lint = subprocess.run(
        [PROMTOOL, "check", "metrics"],
        input=r.content,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert lint.returncode == 0 and lint.stdout == b"" and lint.stderr == b"", (
        lint.stdout.decode() + lint.stderr.decode()
    )
    assert "_created" not in r.text


def test_metrics_agree_with_the_api(service: EsbridgeProcess) -> None:
    text = service.get("/metrics").text
    status = metric_samples(text, "esbridge_check_status_code")
    api = {c["name"]: c["status_code"] for c in service.get("/api/v1/checks").json()["checks"]}
    assert {k: int(v) for k, v in status.items()} == {f'{{check="{n}"}}': c for n, c in api.items()}
    assert api["m-by-host"] == 2 and api["m-missing"] == 3

    groups = metric_samples(text, "esbridge_group_value")
    assert groups['{check="m-by-host",host_keyword="web-00"}'] == 10.0
    assert groups['{check="m-by-host-service",host_keyword="web-00",service_keyword="s0"}'] == 5.0
    errors = metric_samples(text, "esbridge_check_errors_total")
    assert errors['{check="m-missing",reason="no_such_index"}'] >= 1
    lateness = metric_samples(text, "esbridge_scheduler_lateness_seconds_bucket")
    assert lateness['{le="+Inf"}'] >= 5
    assert metric_samples(text, "esbridge_state_store_up") == {"": 1.0}
    assert metric_samples(text, "esbridge_config_last_reload_successful") == {"": 1.0}
    assert metric_samples(text, "esbridge_checks") == {"": 5.0}


def test_writes_are_refused_when_no_token_is_configured(service: EsbridgeProcess) -> None:
    """No token and no explicit opt-in: run-now and reload answer 403 saying what to set."""
    for path in ("/api/v1/checks/m-total/run", "/api/v1/reload"):
        r = service.post(path, headers={"Authorization": "Bearer anything"})
        assert r.status_code == 403
        assert "ESBRIDGE_API__TOKEN" in r.json()["error"]
        assert "allow_unauthenticated_writes" in r.json()["error"]
