"""Wiring of the running service against a real Elasticsearch: runs, reloads, outputs.

Regression tests for four wiring bugs:

a. "run now" (``POST /api/v1/checks/{name}/run``) went around the scheduler and could run
   a check beside its own scheduled run;
b. a result of a check removed by a reload while it ran still reached the outputs;
c. a reload validated the passive targets, so a passive problem (a password file gone)
   blocked reloading the check files;
d. in cluster mode, a check lost and won back while its run was in flight got a second run
   beside the first (the overdue run at takeover).

The cluster is real; a proxy in front of it (tests/faultproxy.py) holds every ``_msearch``
for a while, so a run is reliably in flight when the test acts.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from esbridge.app import Service
from esbridge.config import load_settings, validate_references
from esbridge.loader import load_checks
from esbridge.result import Result
from esbridge.store import Transition
from esbridge_dev import httpcalls
from faultproxy import FaultProxy
from scheduling_support import name_with_early_slot

pytestmark = pytest.mark.es

HOLD = 1.5  # seconds the proxy holds each _msearch


@pytest.fixture
def proxy(es_url: str) -> Iterator[FaultProxy]:
    parts = urlsplit(es_url)
    assert parts.scheme == "http", "the proxy speaks plain HTTP"
    with FaultProxy(parts.hostname or "127.0.0.1", parts.port or 9200, match="_msearch") as p:
        yield p


def _checks(path: Path, index: str, names: list[str], interval: str = "1h") -> Path:
    lines = ["checks:"]
    for name in names:
        lines += [
            f"  - name: {name}",
            "    kind: count",
            f"    index: {index}",
            f"    interval: {interval}",
            "    window: 1h",
            "    critical: 100",
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _service(tmp_path: Path, url: str, checks: Path, extra: str = "") -> Service:
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        f"elasticsearch:\n  default:\n    urls: ['{url}']\n"
        f"checks: ['{checks}']\n"
        "state:\n  enabled: false\n"
        "api:\n  allow_unauthenticated_writes: true\n" + extra
    )
    settings = load_settings(config)
    return Service(settings, load_checks(list(settings.checks)))


def _replica(
    tmp_path: Path,
    url: str,
    checks: list[Path],
    replica: str,
    state: str = "",
    cluster: str = "",
    more: str = "",
) -> tuple[Service, list[str]]:
    """A replica in cluster mode (heartbeat 1 s, lease 3 s) with a state and a members index
    of its own, named in the list returned beside it (for :func:`_drop`). ``state`` and
    ``cluster``: more lines of those sections; ``more``: more sections."""
    suffix = uuid.uuid4().hex[:8]
    own = [f"esbridge-test-{replica}-state-{suffix}", f"esbridge-test-{replica}-members-{suffix}"]
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        f"elasticsearch:\n  default:\n    urls: ['{url}']\n"
        f"checks: {[str(c) for c in checks]}\n"
        f"state:\n  enabled: true\n  index: {own[0]}\n{state}"
        f"cluster:\n  enabled: true\n  replica_id: {replica}\n  index: {own[1]}\n"
        f"  heartbeat: 1s\n  lease: 3s\n{cluster}{more}"
    )
    settings = load_settings(config)
    return Service(settings, load_checks(list(settings.checks))), own


def _drop(es_url: str, indices: list[str]) -> None:
    for name in indices:
        httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)


async def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.02)


def count_runs(service: Service, monkeypatch: Any) -> dict[str, int]:
    """Checks in the runner right now (``name -> runs``), and ``"peak"``: most at once."""
    active: dict[str, int] = {"peak": 0}
    run = service.runner.run

    async def counted(checks: Any, *args: Any, **kwargs: Any) -> list[Result]:
        for check in checks:
            active[check.name] = active.get(check.name, 0) + 1
            active["peak"] = max(active["peak"], active[check.name])
        try:
            return await run(checks, *args, **kwargs)
        finally:
            for check in checks:
                active[check.name] -= 1

    monkeypatch.setattr(service.runner, "run", counted)
    return active


class Recorder:
    """A declared output that remembers what it was given."""

    def __init__(self) -> None:
        self.results: list[Result] = []
        self.started = self.stopped = False

    async def start(self) -> None:
        self.started = True

    async def stop(self, grace: float) -> None:
        self.stopped = True

    def on_result(self, result: Result, transition: Transition | None) -> None:
        self.results.append(result)

    def status(self) -> list[dict[str, Any]]:
        return []

    def metrics(self) -> Iterator[Any]:
        return iter(())


async def test_run_now_never_overlaps_a_scheduled_run(
    proxy: FaultProxy, make_index: Any, seed: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Bug a: the API's run waits for the scheduled run in flight; never two at once."""
    from esbridge.api import create_app

    index = make_index("wiring-a")
    seed(index, [{"ago": "1m", "status": 500}] * 3)
    service = _service(tmp_path, proxy.url, _checks(tmp_path / "c.yaml", index, ["a"], "1s"))
    active = count_runs(service, monkeypatch)
    proxy.delay = HOLD
    await service.start()
    try:
        # A scheduled run (every second, each held 1.5 s) is in flight now.
        await _until(lambda: active.get("a") == 1)
        scheduled_runs = service.store.get("a").runs  # type: ignore[union-attr]
        transport = httpx.ASGITransport(app=create_app(service))
        async with httpx.AsyncClient(transport=transport, base_url="http://esbridge") as client:
            answer = await client.post("/api/v1/checks/a/run", timeout=30)
        assert answer.status_code == 200, answer.text
        assert answer.json()["state"] == "OK" and answer.json()["value"] == 3
        entry = service.store.get("a")
        assert entry is not None and entry.runs >= scheduled_runs + 2  # its own and the one
        assert active["peak"] == 1, "run now went out beside the scheduled run"
        assert service.scheduler.skipped >= 1  # slots met a run in flight: coalesced
    finally:
        proxy.clear()
        await service.stop(5)


async def test_a_removed_check_result_reaches_no_output(
    proxy: FaultProxy, make_index: Any, seed: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Bug b: a reload removes a check while it runs; its result is dropped everywhere."""
    index = make_index("wiring-b")
    seed(index, [{"ago": "1m", "status": 500}])
    checks = _checks(tmp_path / "c.yaml", index, ["gone", "kept"])
    service = _service(tmp_path, proxy.url, checks)
    recorder = Recorder()
    service.add_listener(recorder)
    active = count_runs(service, monkeypatch)
    await service.start()
    assert recorder.started
    try:
        proxy.delay = HOLD
        in_flight = asyncio.create_task(service.run_now("gone"))
        await _until(lambda: active.get("gone") == 1)
        _checks(checks, index, ["kept"])
        status = await service.reload()
        assert status.successful and status.removed == ["gone"], status
        assert await in_flight is not None  # the run itself finished
        proxy.clear()
        kept = await service.run_now("kept")
        assert kept is not None and kept.value == 1
        seen = [r.check for r in recorder.results]
        assert "gone" not in seen and "kept" in seen, seen
        assert service.store.get("gone") is None
    finally:
        proxy.clear()
        await service.stop(5)
    assert recorder.stopped


async def test_reload_is_not_blocked_by_a_passive_target(
    es_url: str, make_index: Any, seed: Any, tmp_path: Path
) -> None:
    """Bug c: a password file gone after start does not stop the check files reloading."""
    index = make_index("wiring-c")
    seed(index, [{"ago": "1m", "status": 500}] * 2)
    password = tmp_path / "icinga-password"
    password.write_text("secret\n")
    checks = _checks(tmp_path / "c.yaml", index, ["first"])
    service = _service(
        tmp_path,
        es_url,
        checks,
        "passive:\n  - name: icinga\n    type: icinga2\n    url: 'http://127.0.0.1:9'\n"
        f"    username: esbridge\n    password_file: '{password}'\n",
    )
    # At start the target is valid.
    assert validate_references(service.settings, service.checkset) == []
    await service.start()
    try:
        password.unlink()
        _checks(checks, index, ["first", "second"])
        status = await service.reload()
        assert status.successful, status.error
        assert status.added == ["second"]
        second = await service.run_now("second")
        assert second is not None and second.value == 2
        # Start-time validation still names the passive problem (esbridge serve refuses it).
        problems = [str(p) for p in validate_references(service.settings, service.checkset)]
        assert any("passive.0.password_file" in p for p in problems), problems
    finally:
        await service.stop(5)


async def test_a_reload_says_when_the_configuration_file_changed_unapplied(
    es_url: str, make_index: Any, seed: Any, tmp_path: Path, caplog: Any
) -> None:
    """SIGHUP re-reads the check files only: a changed configuration file (a new connection,
    a lower timeout) would otherwise look applied. Each reload says so until a restart."""
    import logging

    index = make_index("wiring-conf")
    seed(index, [{"ago": "1m", "status": 500}])
    checks = _checks(tmp_path / "c.yaml", index, ["first"])
    service = _service(tmp_path, es_url, checks)
    config = tmp_path / "esbridge.yaml"
    await service.start()
    try:
        with caplog.at_level(logging.WARNING, logger="esbridge"):
            assert (await service.reload()).successful
            assert "configuration file" not in caplog.text
            config.write_text(config.read_text() + "log:\n  level: debug\n")
            assert (await service.reload()).successful
        assert f"the configuration file {config} changed since esbridge started" in caplog.text
        assert "restart esbridge to apply it" in caplog.text
    finally:
        await service.stop(5)


async def test_a_check_regained_while_its_run_is_in_flight_is_not_run_twice(
    es_url: str, proxy: FaultProxy, make_index: Any, seed: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Cluster mode: a replica that loses a check and wins it back while the check's run is
    still in flight must not start a second run of it beside the first (the overdue run at
    takeover skips checks in flight); the held run's result is recorded as usual."""
    from esbridge.ownership import assign

    index = make_index("wiring-d")
    seed(index, [{"ago": "1m", "status": 500}] * 4)
    me = "wiring-me"
    # a member that wins "a" from this replica, so the check moves there and back
    other = next(f"other-{i}" for i in range(1000) if assign(["a"], [me, f"other-{i}"])["a"] != me)
    checks = _checks(tmp_path / "c.yaml", index, ["a"])
    service, own = _replica(tmp_path, proxy.url, [checks], me)
    active = count_runs(service, monkeypatch)
    proxy.delay = 3.0  # every _msearch is held in the proxy for 3 s
    await service.start()
    try:
        cluster = service.cluster
        assert cluster is not None
        await _until(lambda: active.get("a") == 1)  # the takeover run, in flight
        await cluster.rebalance([me, other])  # "a" moves away...
        assert "a" not in cluster.owned
        await cluster.rebalance([me])  # ...and comes back while its run is still held
        assert "a" in cluster.owned and active.get("a") == 1
        await _until(lambda: service.store.get("a").result is not None)  # type: ignore[union-attr]
        assert active["peak"] == 1, "a second run of 'a' started beside the one in flight"
        assert service.store.get("a").result.value == 4  # type: ignore[union-attr]
    finally:
        proxy.delay = 0.0
        await service.stop(5)
        _drop(es_url, own)


@pytest.mark.parametrize(
    ("tuning", "warned"),
    [
        ("", True),  # defaults: shown fresh elsewhere from (2 s + 1 s + 1 s) / (2 - 1) = 4 s
        ("  view_refresh: 0.5s\n", False),  # (0.5 s + 0.5 s + 1 s) / (3 - 1) = 1 s
    ],
)
async def test_cluster_mode_says_which_checks_run_too_often_to_read_fresh_everywhere(
    es_url: str, make_index: Any, tmp_path: Path, caplog: Any, tuning: str, warned: bool
) -> None:
    """A check read by version reaches the other replicas up to a flush and a view round
    after its owner ran it: at an interval whose allowed age cannot spare that, a replica
    that does not own it may show it stale. Cluster mode names those checks at start and
    what to change; with settings that spare it, it says nothing."""
    import logging

    index = make_index("wiring-short")
    fast = _checks(tmp_path / "fast.yaml", index, ["fast-a", "fast-b"], interval="2s")
    slow = _checks(tmp_path / "slow.yaml", index, ["slow"], interval="1h")
    service, own = _replica(
        tmp_path,
        es_url,
        [fast, slow],
        "short-me",
        state="  flush_interval: 0.5s\n" if tuning else "",
        cluster=tuning,
        more="defaults:\n  staleness_factor: 3\n" if tuning else "",
    )
    try:
        with caplog.at_level(logging.WARNING, logger="esbridge"):
            await service.start()
            cluster = service.cluster
            assert cluster is not None
            await _until(lambda: cluster.last_rebalance is not None, timeout=30)
        said = [r.getMessage() for r in caplog.records if "run more often" in r.getMessage()]
        if not warned:
            assert said == []
            return
        assert len(said) == 1, said
        assert "2 checks run more often than every 4 s (fast-a, fast-b)" in said[0]
        assert "state.flush_interval + cluster.view_refresh (2 s + 1 s)" in said[0]
        assert "slow" not in said[0] and "defaults.staleness_factor (2)" in said[0]
    finally:
        await service.stop(5)
        _drop(es_url, own)


def _threshold_checks(path: Path, index: str, name: str, critical: int) -> Path:
    path.write_text(
        f"checks:\n  - {{name: {name}, kind: count, index: {index}, interval: 1h, window: 1h,"
        f" critical: {critical}}}\n"
    )
    return path


async def test_a_reload_that_changes_a_running_check_drops_the_old_verdict(
    proxy: FaultProxy, make_index: Any, seed: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """Bug e: the threshold is raised while the check runs. The run's result, judged by the
    old threshold, is dropped, and the changed check runs again at once, not an hour later."""
    index = make_index("wiring-e")
    seed(index, [{"ago": "1m", "status": 500}] * 5)
    name = name_with_early_slot("thr", 3600.0, margin=300.0)
    checks = _threshold_checks(tmp_path / "c.yaml", index, name, critical=1)
    service = _service(tmp_path, proxy.url, checks)
    active = count_runs(service, monkeypatch)
    await service.start()
    try:
        entry = service.store.get(name)
        assert entry is not None
        await _until(lambda: entry.result is not None)  # its early first run
        assert entry.state.name == "CRITICAL" and entry.runs == 1
        proxy.delay = HOLD
        in_flight = asyncio.create_task(service.run_now(name))
        await _until(lambda: active.get(name) == 1)
        _threshold_checks(checks, index, name, critical=100)
        status = await service.reload()
        assert status.successful and status.changed == [name], status
        await in_flight
        assert entry.runs == 1, "the result judged by the old threshold was recorded"
        proxy.clear()
        await _until(lambda: entry.runs == 2, timeout=15)  # the changed check ran again
        assert entry.state.name == "OK"
        assert "critical > 100" in entry.result.summary  # type: ignore[union-attr]
    finally:
        proxy.clear()
        await service.stop(5)


async def test_a_restored_result_older_than_its_interval_runs_at_start(
    es_url: str, make_index: Any, seed: Any, tmp_path: Path
) -> None:
    """Bug f: esbridge was down for three hours; an hourly check restored from the state
    index runs at start instead of showing stale UNKNOWN until its next slot."""
    from esbridge.persistence import StatePersistence
    from esbridge.result import Result, State

    index = make_index("wiring-f")
    seed(index, [{"ago": "1m", "status": 500}] * 2)
    name = name_with_early_slot("late", 3600.0, margin=300.0)
    state = f"esbridge-test-wiring-state-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        f"elasticsearch:\n  default:\n    urls: ['{es_url}']\n"
        f"checks: ['{_threshold_checks(tmp_path / 'c.yaml', index, name, critical=100)}']\n"
        f"state:\n  enabled: true\n  index: {state}\n"
    )
    settings = load_settings(config)
    service = Service(settings, load_checks(list(settings.checks)))
    three_hours_ago = time.time() - 3 * 3600
    service.store.sync({name: 3600.0})
    service.store.record(
        Result(name, State.OK, "2 matching documents", evaluated_at=three_hours_ago)
    )
    connection = service.connections.get("default")
    try:
        await StatePersistence(service.store, connection, state, 10.0).flush()
        fresh = Service(settings, load_checks(list(settings.checks)))
        started = time.time()
        await fresh.start()
        try:
            entry = fresh.store.get(name)
            assert entry is not None and entry.result is not None  # restored
            await _until(lambda: entry.result.evaluated_at > started, timeout=15)  # type: ignore[union-attr]
            assert entry.runs == 2 and entry.state.name == "OK"
        finally:
            await fresh.stop(5)
    finally:
        await service.connections.close()
        httpcalls.delete(f"{es_url}/{state}", params={"ignore_unavailable": "true"}, timeout=60)


async def test_a_service_stopped_right_after_start_stops_at_once(
    es_url: str, make_index: Any, seed: Any, tmp_path: Path
) -> None:
    """Stopped while its first requests (the product detection, the deploy events) are in
    flight, the service must still stop: a cancellation lost in that race (Python 3.11's
    ``asyncio.wait_for``) left the events loop running and the stop waiting for it for good
    (CI, OpenSearch 3: within two tries). Twenty starts and stops, each bounded."""
    index = make_index("wiring-stop")
    seed(index, [{"ago": "1m", "status": 500}])
    loop = asyncio.get_running_loop()
    for attempt in range(20):
        folder = tmp_path / f"start-{attempt}"
        folder.mkdir()
        service = _service(folder, es_url, _checks(folder / "c.yaml", index, ["first"]))
        await service.start()
        assert (await service.reload()).successful
        assert (await service.reload()).successful
        stopping = loop.create_task(service.stop(5))
        done, _ = await asyncio.wait([stopping], timeout=20)  # the grace is 5 s
        assert stopping in done, f"stop still waiting after 20 s (start {attempt + 1})"
