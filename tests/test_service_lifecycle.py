"""The service as an operator lives with it: restarts, reloads, stalls, a broken state store.

Every test drives a real ``esbridge serve`` process against a real Elasticsearch; faults are
injected by the counting proxy (never by touching the shared cluster).
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess
from scheduling_support import name_with_early_slot
from test_service_support import (
    CountingProxy,
    delete_index,
    json_lines,
    metric_samples,
    poll,
    write,
)

pytestmark = [pytest.mark.es, pytest.mark.slow]


@pytest.fixture
def state_index(es_url: str) -> Iterator[str]:
    name = f"esbridge-test-state-{uuid.uuid4().hex[:8]}"
    yield name
    delete_index(es_url, name)


@pytest.fixture
def errors_index(make_index, seed) -> str:  # type: ignore[no-untyped-def]
    """20 recent 5xx documents: a ``critical: 5`` count check is CRITICAL for the test."""
    index = make_index("life")
    seed(index, [{"ago": f"{i + 1}m", "status": 500, "host": "web-01"} for i in range(20)])
    return index


def state_doc(es_url: str, index: str, check: str) -> dict | None:
    r = httpcalls.get(f"{es_url}/{index}/_doc/{check}", timeout=10)
    return r.json()["_source"] if r.status_code == 200 else None


def all_written(service: EsbridgeProcess) -> None:
    """Wait until the periodic flush has written every result. For tests about reading state
    back: the shutdown flush is bounded by its grace, which a loaded machine can spend
    creating the state index (the shutdown flush has its own test, the first one below)."""
    service.wait_for(
        lambda: (
            (s := service.get("/readyz").json()["state_store"])["writable"] is True
            and s["pending_writes"] == 0
        ),
        timeout=60,
    )


def detail(service: EsbridgeProcess, name: str) -> dict:
    r = service.get(f"/api/v1/checks/{name}")
    assert r.status_code == 200, r.text
    return r.json()


def state_lines(service: EsbridgeProcess, check: str) -> list[dict]:
    return [
        e
        for e in json_lines(service.log())
        if e.get("logger") == "esbridge.state" and e.get("check") == check
    ]


def test_state_survives_sigterm_and_sigkill_restarts(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """SIGTERM flushes and exits 0; a restart (even after SIGKILL) keeps since and history."""
    checks = write(
        tmp_path / "life.yaml",
        f"checks:\n  - {{name: life-errors, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 1s}\n",
    )
    json_log = ["--log-format", "json"]

    # 1. Only the shutdown flush can write: the periodic flush is an hour away.
    first = EsbridgeProcess(
        es_url,
        [checks],
        env={"ESBRIDGE_STATE__FLUSH_INTERVAL": "1h"},
        extra_args=json_log,
        state_index=state_index,
    )
    with first:
        first.wait_for(lambda: detail(first, "life-errors")["runs"] >= 3)
        before = detail(first, "life-errors")
        assert before["state"] == "CRITICAL"
        assert state_doc(es_url, state_index, "life-errors") is None
        assert first.stop() == 0
        assert "esbridge stopped" in first.log()
        assert len(state_lines(first, "life-errors")) == 1
    flushed = state_doc(es_url, state_index, "life-errors")
    assert flushed is not None and flushed["runs"] >= before["runs"]
    assert flushed["since_ts"] == before["since_ts"] and flushed["state"] == "CRITICAL"

    # 2. Restart: same since, no new transition, no "recovery"; then die without flushing.
    second = EsbridgeProcess(
        es_url,
        [checks],
        env={"ESBRIDGE_STATE__FLUSH_INTERVAL": "1s"},
        extra_args=json_log,
        state_index=state_index,
    )
    try:
        second.start()
        restored = detail(second, "life-errors")
        assert restored["since_ts"] == before["since_ts"]
        assert restored["runs"] >= flushed["runs"]
        second.wait_for(lambda: detail(second, "life-errors")["runs"] >= flushed["runs"] + 3)
        second.wait_for(
            lambda: (
                (state_doc(es_url, state_index, "life-errors") or {}).get("runs", 0)
                >= flushed["runs"] + 3
            )
        )
        now = detail(second, "life-errors")
        assert now["since_ts"] == before["since_ts"] and len(now["transitions"]) == 1
        assert state_lines(second, "life-errors") == []
        second.kill()
    finally:
        second.stop()
        second.log_path.unlink(missing_ok=True)

    # 3. After SIGKILL: what the periodic flush wrote comes back, transitions not duplicated.
    third = EsbridgeProcess(es_url, [checks], extra_args=json_log, state_index=state_index)
    with third:
        third.wait_for(lambda: detail(third, "life-errors")["runs"] > now["runs"])
        after = detail(third, "life-errors")
        assert after["since_ts"] == before["since_ts"] and after["state"] == "CRITICAL"
        assert [t["to"] for t in after["transitions"]] == ["CRITICAL"]
        assert state_lines(third, "life-errors") == []


@pytest.mark.version_independent  # reloading, not searching
def test_reload_by_sighup_and_api(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """Good reloads swap the set; bad ones keep it running and say why everywhere."""
    folder = tmp_path / "checks"
    folder.mkdir()
    path = folder / "r.yaml"

    def body(change_critical: int, extra: str, header: str = "") -> str:
        return (
            f"{header}defaults:\n  index: {errors_index}\n  window: 1h\n  interval: 1s\n"
            "checks:\n"
            "  - {name: r-keep, kind: count, critical: 5}\n"
            f"  - {{name: r-change, kind: count, critical: {change_critical}}}\n"
            f"{extra}"
        )

    write(path, body(100, "  - {name: r-drop, kind: count, critical: 5}\n"))
    service = EsbridgeProcess(
        es_url,
        [folder],
        env={"ESBRIDGE_API__ALLOW_UNAUTHENTICATED_WRITES": "true"},
        extra_args=["--log-format", "json"],
        state_index=state_index,
    )
    with service:
        service.wait_for(lambda: service.get("/api/v1/checks").json()["counts"]["PENDING"] == 0)
        keep = detail(service, "r-keep")
        assert detail(service, "r-change")["state"] == "OK"

        # SIGHUP: a comment moves every line (not a change), one changed, one added, one gone.
        write(
            path,
            body(5, "  - {name: r-add, kind: count, critical: 5}\n", "# reloaded by SIGHUP\n"),
        )
        service.signal(signal.SIGHUP)
        service.wait_for(
            lambda: (
                {c["name"] for c in service.get("/api/v1/checks").json()["checks"]}
                == {"r-keep", "r-change", "r-add"}
            )
        )
        reloaded = [
            e["message"] for e in json_lines(service.log()) if "reloaded" in e.get("message", "")
        ]
        assert reloaded == ["reloaded 3 checks: 1 added, 1 changed, 1 removed"]
        service.wait_for(lambda: detail(service, "r-change")["state"] == "CRITICAL")
        kept = detail(service, "r-keep")
        assert kept["since_ts"] == keep["since_ts"] and kept["runs"] > keep["runs"]
        assert service.get("/api/v1/checks/r-drop").status_code == 404
        assert service.get("/api/v1/checks/r-drop/nagios").status_code == 404
        metrics = service.get("/metrics").text
        assert 'check="r-drop"' not in metrics and 'check="r-add"' in metrics

        # A broken file by SIGHUP: the running set stays, the failure shows everywhere.
        write(path, body(5, "  - {name: r-add, kind: count, critical: [5\n"))
        service.signal(signal.SIGHUP)
        service.wait_for(
            lambda: (
                metric_samples(
                    service.get("/metrics").text, "esbridge_config_last_reload_successful"
                )
                == {"": 0.0}
            )
        )
        ready = service.get("/readyz").json()
        assert ready["config"]["last_reload_successful"] is False
        assert "r.yaml" in ready["config"]["error"]
        assert "reload rejected" in service.log()
        runs = detail(service, "r-add")["runs"]
        service.wait_for(lambda: detail(service, "r-add")["runs"] > runs)

        # Fixed, by the API: accepted, and the metric is back to 1.
        write(path, body(5, "  - {name: r-add, kind: count, critical: 6}\n"))
        good = service.post("/api/v1/reload")
        assert good.status_code == 200, good.text
        assert good.json()["changed"] == ["r-add"] and good.json()["successful"] is True
        metrics = service.get("/metrics").text
        assert metric_samples(metrics, "esbridge_config_last_reload_successful") == {"": 1.0}

        # Broken again, by the API: 422 naming file, check and field; nothing changes.
        write(path, body(5, "  - {name: r-add, kind: count, critical: 6, critcal: 7}\n"))
        bad = service.post("/api/v1/reload")
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/json"
        error = bad.json()["error"]
        assert "r.yaml" in error and "r-add" in error and "critcal" in error
        assert bad.json()["successful"] is False and bad.json()["checks"] == 3
        assert detail(service, "r-add")["definition"]["critical"] == "6"


def test_stalled_elasticsearch_makes_results_stale_everywhere(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """Elasticsearch answers 503 to every search: runs hang in retries, results go stale.

    Stale means UNKNOWN "stale: ..." in the plugin text, the API and ``/metrics`` alike, a
    due run is coalesced rather than overlapping, and SIGTERM still exits 0 in bounded time.
    """
    checks = write(
        tmp_path / "stale.yaml",
        f"checks:\n  - {{name: s-errors, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 2s, timeout: 2s}\n",
    )
    with CountingProxy(es_url) as proxy:
        config = write(
            tmp_path / "esbridge.yaml",
            f"elasticsearch:\n  default:\n    urls: [{proxy.url}]\n    max_retries: 10\n"
            f"  direct:\n    urls: [{es_url}]\n"
            "state:\n  connection: direct\n"
            "defaults:\n  staleness_factor: 1.5\n",
        )
        service = EsbridgeProcess(None, [checks], config=config, state_index=state_index)
        with service:
            service.wait_for(lambda: detail(service, "s-errors")["state"] == "CRITICAL")
            proxy.fail[r"_msearch"] = 503

            nagios = poll(
                lambda: (
                    (r := service.get("/api/v1/checks/s-errors/nagios")).text.startswith(
                        "UNKNOWN - stale: last evaluated"
                    )
                    and r
                ),
                timeout=30,
            )
            assert nagios.headers["x-nagios-exit-code"] == "3"
            assert "last result was CRITICAL - 20 " in nagios.text
            shown = poll(lambda: (d := detail(service, "s-errors"))["stale"] and d)
            assert shown["state"] == "UNKNOWN" and shown["summary"].startswith("stale: ")
            assert shown["value"] is None and shown["status_code"] == 3
            listed = poll(
                lambda: [
                    c
                    for c in service.get("/api/v1/checks", params={"state": "UNKNOWN"}).json()[
                        "checks"
                    ]
                    if c["stale"]
                ]
            )
            assert listed[0]["summary"].startswith("stale: ")
            metrics = poll(
                lambda: (
                    (t := service.get("/metrics").text)
                    and metric_samples(t, "esbridge_check_stale") == {'{check="s-errors"}': 1.0}
                    and t
                )
            )
            assert metric_samples(metrics, "esbridge_check_status_code") == {
                '{check="s-errors"}': 3.0
            }
            assert 'esbridge_check_value{check="s-errors"}' not in metrics
            poll(
                lambda: (
                    metric_samples(
                        service.get("/metrics").text, "esbridge_scheduler_skipped_runs_total"
                    )[""]
                    >= 1
                )
            )
            assert len(proxy.msearches()) > 3  # the retries did reach "Elasticsearch"
            started = time.monotonic()
            assert service.stop() == 0
            assert time.monotonic() - started < 20  # bounded: no SIGKILL was needed


def test_broken_state_store_keeps_evaluating_and_says_so(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """Writes to the state index fail: checks still run; readyz, API and metrics tell."""
    checks = write(
        tmp_path / "store.yaml",
        f"checks:\n  - {{name: st-errors, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 1s}\n",
    )
    with CountingProxy(es_url) as proxy:
        proxy.fail[rf"_bulk|^PUT /{state_index}"] = 500
        config = write(
            tmp_path / "esbridge.yaml",
            f"elasticsearch:\n  default:\n    urls: [{es_url}]\n"
            f"  store:\n    urls: [{proxy.url}]\n"
            "state:\n  connection: store\n  flush_interval: 1s\n",
        )
        service = EsbridgeProcess(None, [checks], config=config, state_index=state_index)
        with service:
            # Unwritable from the start (creating the index fails), then with the first
            # result waiting to be written: both shown while writes fail.
            ready = poll(
                lambda: (
                    (r := service.get("/readyz")).status_code == 503
                    and r.json()["state_store"]["pending_writes"] >= 1
                    and r.json()
                ),
                timeout=30,
            )
            store = ready["state_store"]
            assert store["writable"] is False and store["pending_writes"] >= 1
            assert state_index in store["error"] and "HTTP 500" in store["error"]
            assert service.get("/api/v1/status").json()["state_store"]["writable"] is False
            metrics = service.get("/metrics").text
            assert metric_samples(metrics, "esbridge_state_store_up") == {"": 0.0}
            runs = detail(service, "st-errors")["runs"]
            service.wait_for(lambda: detail(service, "st-errors")["runs"] >= runs + 2)
            assert detail(service, "st-errors")["state"] == "CRITICAL"

            proxy.fail.clear()  # the index accepts writes again
            service.wait_for(lambda: service.get("/readyz").status_code == 200)
            metrics = service.get("/metrics").text
            assert metric_samples(metrics, "esbridge_state_store_up") == {"": 1.0}
            doc = poll(lambda: state_doc(es_url, state_index, "st-errors"))
            assert doc["state"] == "CRITICAL" and doc["runs"] >= runs


def test_a_run_past_its_timeout_is_cancelled_and_unknown(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """Elasticsearch stops answering: the run ends at its timeout as UNKNOWN, then recovers."""
    checks = write(
        tmp_path / "slow.yaml",
        f"checks:\n  - {{name: t-errors, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 2s, timeout: 1s}\n",
    )
    with CountingProxy(es_url) as proxy:
        config = write(
            tmp_path / "esbridge.yaml",
            f"elasticsearch:\n  default:\n    urls: [{proxy.url}]\n"
            f"  direct:\n    urls: [{es_url}]\nstate:\n  connection: direct\n",
        )
        service = EsbridgeProcess(None, [checks], config=config, state_index=state_index)
        with service:
            service.wait_for(lambda: detail(service, "t-errors")["state"] == "CRITICAL")
            proxy.stall[r"_msearch"] = 30.0
            late = poll(lambda: (d := detail(service, "t-errors"))["state"] == "UNKNOWN" and d)
            assert late["result"]["error_kind"] == "timeout" and "timed out" in late["summary"]
            assert late["stale"] is False and late["consecutive_failures"] >= 1
            nagios = service.get("/api/v1/checks/t-errors/nagios")
            assert nagios.headers["x-nagios-exit-code"] == "3"
            proxy.stall.clear()
            back = poll(lambda: (d := detail(service, "t-errors"))["state"] == "CRITICAL" and d)
            assert [t["to"] for t in back["transitions"]][:2] == ["CRITICAL", "UNKNOWN"]


def test_new_check_runs_early_a_restored_one_waits_for_its_slot(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """interval 1d: a check with no result runs about 1 s after start, not a day later; after a
    restart its restored result is shown and no early run is added."""
    name = name_with_early_slot("early", 86400.0, margin=600.0)
    checks = write(
        tmp_path / "early.yaml",
        f"checks:\n  - {{name: {name}, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 1d}\n",
    )
    with EsbridgeProcess(es_url, [checks], state_index=state_index) as first:
        started = time.time()
        ran = first.wait_for(lambda: (d := detail(first, name))["runs"] >= 1 and d, timeout=20)
        assert ran["state"] == "CRITICAL" and ran["runs"] == 1
        assert ran["evaluated_at_ts"] - started < 10, ran["evaluated_at_ts"] - started
        assert ran["next_run_ts"] - time.time() > 500  # the regular slot, far away
        all_written(first)
    doc = state_doc(es_url, state_index, name)
    assert doc is not None and doc["runs"] == 1
    with EsbridgeProcess(es_url, [checks], state_index=state_index) as second:
        restored = detail(second, name)
        assert restored["runs"] == 1 and restored["evaluated_at_ts"] == ran["evaluated_at_ts"]
        time.sleep(3)  # well past the early slot (1 s) a new check would have had
        assert detail(second, name)["runs"] == 1
        assert "restored state of 1 checks" in second.log()


def test_corrupt_state_document_is_ignored_and_rewritten(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """One unreadable persisted document: a warning naming the check, that check starts
    afresh (and runs early), the other is restored; the bad document is replaced."""
    # names whose early first run is 1 s after start: no waiting for a spread slot
    good, bad = (name_with_early_slot(p, 3600.0, margin=300.0) for p in ("good", "bad"))
    checks = write(
        tmp_path / "corrupt.yaml",
        "defaults:\n  interval: 1h\nchecks:\n"
        f"  - {{name: {good}, kind: count, index: {errors_index}, window: 1h, critical: 5}}\n"
        f"  - {{name: {bad}, kind: count, index: {errors_index}, window: 1h, critical: 5}}\n",
    )
    with EsbridgeProcess(es_url, [checks], state_index=state_index) as first:
        first.wait_for(lambda: all(detail(first, n)["runs"] >= 1 for n in (good, bad)), timeout=60)
        good_before = detail(first, good)
        all_written(first)
    bad_doc = state_doc(es_url, state_index, bad)
    assert bad_doc is not None
    bad_doc["previous_state"] = "NOT-A-STATE"  # a keyword the mapping accepts, State[] does not
    bad_doc["runs"] = 1000
    r = httpcalls.put(
        f"{es_url}/{state_index}/_doc/{bad}", params={"refresh": "true"}, json=bad_doc, timeout=10
    )
    assert r.status_code == 200, r.text

    with EsbridgeProcess(es_url, [checks], state_index=state_index) as second:
        assert f"ignoring unreadable persisted state for check {bad}" in second.log()
        assert "restored state of 1 checks" in second.log(), second.log()[-2000:]
        assert detail(second, good)["since_ts"] == good_before["since_ts"]
        fresh = second.wait_for(lambda: (d := detail(second, bad))["runs"] >= 1 and d, timeout=60)
        assert fresh["runs"] < 1000 and fresh["state"] == "CRITICAL"
        assert fresh["transitions"][0]["from"] is None  # started afresh
        assert second.get("/readyz").status_code == 200
        second.wait_for(
            lambda: (
                (state_doc(es_url, state_index, bad) or {}).get("previous_state") != "NOT-A-STATE"
            ),
            timeout=30,
        )


def test_the_state_index_is_created_at_start_not_at_the_first_flush(
    es_url: str, errors_index: str, state_index: str, tmp_path: Path
) -> None:
    """Creating an index can take seconds on a loaded cluster: done at start, beside the
    restore, a service stopped in its first seconds does not spend its shutdown grace on it.
    With the periodic flush an hour away, the index exists, strict mapping and all, within
    seconds of start; a stop then writes the first result."""
    name = name_with_early_slot("prepared", 3600.0, margin=300.0)
    checks = write(
        tmp_path / "prepared.yaml",
        f"checks:\n  - {{name: {name}, kind: count, index: {errors_index}, window: 1h,"
        " critical: 5, interval: 1h}\n",
    )
    env = {"ESBRIDGE_STATE__FLUSH_INTERVAL": "1h"}
    with EsbridgeProcess(es_url, [checks], state_index=state_index, env=env) as service:
        mapping = poll(
            lambda: (
                (r := httpcalls.get(f"{es_url}/{state_index}/_mapping", timeout=10)).status_code
                == 200
                and r.json()
            ),
            timeout=60,  # a loaded cluster can take seconds; the flush is an hour away
        )
        assert mapping[state_index]["mappings"]["dynamic"] == "strict", mapping
        service.wait_for(lambda: detail(service, name)["runs"] >= 1, timeout=30)
        assert state_doc(es_url, state_index, name) is None  # no flush has run yet
    doc = state_doc(es_url, state_index, name)
    assert doc is not None and doc["runs"] == 1 and doc["state"] == "CRITICAL"
