"""The scheduler on a real event loop with a fake runner: spreading, batching, no overlap.

These tests use 1-2 s intervals and bounded polling; they assert what ran together and how
often, never how fast.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from types import SimpleNamespace

import apscheduler.executors.base
import apscheduler.schedulers.base

import esbridge.scheduler
from esbridge.loader import load_checks
from esbridge.models import CheckDefinition
from esbridge.result import Result, State
from esbridge.scheduler import Scheduler, same_definition
from esbridge.slots import SLOT_SECONDS, first_offset


def make_checks(tmp_path, body: str, name: str = "c.yaml") -> dict[str, CheckDefinition]:  # type: ignore[no-untyped-def]
    path = tmp_path / name
    path.write_text(body, encoding="utf-8")
    return dict(load_checks([path]).checks)


def count_checks(n: int, interval: str = "1s") -> str:
    lines = ["checks:"]
    for i in range(n):
        lines.append(
            f"  - {{name: c{i}, kind: count, index: x, critical: 1, interval: {interval}}}"
        )
    return "\n".join(lines) + "\n"


class FakeRunner:
    """Records each batch; optionally takes ``delay`` seconds per batch."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[list[str]] = []
        self.running: set[str] = set()
        self.overlaps = 0

    async def __call__(
        self, checks: Sequence[CheckDefinition], lateness: dict[str, float]
    ) -> list[Result]:
        names = [c.name for c in checks]
        self.overlaps += len(self.running & set(names))
        self.running |= set(names)
        self.batches.append(names)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.running -= set(names)
        return [Result(n, State.OK, "ok", evaluated_at=time.time()) for n in names]


async def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def test_first_offset_is_deterministic_in_range_and_on_slots() -> None:
    names = [f"check-{i}" for i in range(200)]
    offsets = [first_offset(n, 60.0) for n in names]
    assert offsets == [first_offset(n, 60.0) for n in names]
    assert all(0 <= o < 60.0 for o in offsets)
    slots = int(60 // SLOT_SECONDS)
    assert all(abs(o / (60.0 / slots) - round(o / (60.0 / slots))) < 1e-9 for o in offsets)
    assert len(set(offsets)) > slots // 2, "offsets do not spread over the interval"
    assert {first_offset(n, 2.0) for n in names} == {0.0}  # shorter than a slot: one slot


async def test_due_checks_reach_the_runner_as_one_batch(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner()
    scheduler = Scheduler(runner, timedelta(seconds=60))
    scheduler.set_checks(make_checks(tmp_path, count_checks(8)))
    scheduler.start()
    try:
        await wait_until(lambda: len(runner.batches) >= 3)
    finally:
        await scheduler.stop(1.0)
    assert all(sorted(b) == sorted(f"c{i}" for i in range(8)) for b in runner.batches)
    assert scheduler.runs == 8 * len(runner.batches)
    assert scheduler.lateness.count == scheduler.runs
    assert all(v >= 0 for v in scheduler.lateness.recent)


async def test_a_check_never_overlaps_itself(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A run longer than the interval: the next slots are coalesced and counted."""
    runner = FakeRunner(delay=2.5)
    scheduler = Scheduler(runner, timedelta(seconds=60))
    scheduler.set_checks(make_checks(tmp_path, count_checks(1)))
    scheduler.start()
    try:
        await wait_until(lambda: scheduler.skipped >= 2 and len(runner.batches) >= 2)
    finally:
        await scheduler.stop(0.1)
    assert runner.overlaps == 0


async def test_runs_go_on_within_an_interval_after_the_wall_clock_steps(  # type: ignore[no-untyped-def]
    tmp_path, monkeypatch, caplog
) -> None:
    """An NTP step or VM restore: APScheduler and the scheduler see the wall clock jump."""
    offset = [0.0]

    def wall() -> float:
        return time.time() + offset[0]

    class SteppedDatetime(dt.datetime):
        @classmethod
        def now(cls, tz=None):  # type: ignore[no-untyped-def]
            return dt.datetime.fromtimestamp(wall(), tz)

    monkeypatch.setattr(apscheduler.schedulers.base, "datetime", SteppedDatetime)
    monkeypatch.setattr(apscheduler.executors.base, "datetime", SteppedDatetime)
    monkeypatch.setattr(esbridge.scheduler, "time", SimpleNamespace(time=wall))
    runner = FakeRunner()
    scheduler = Scheduler(runner, timedelta(seconds=60))
    scheduler.set_checks(make_checks(tmp_path, count_checks(1)))
    scheduler.start()
    try:
        await wait_until(lambda: len(runner.batches) >= 2)
        offset[0] = -60.0  # back a minute: without a reschedule, nothing runs for 60 s
        before = len(runner.batches)
        await wait_until(lambda: len(runner.batches) >= before + 2, timeout=6.0)
        next_run = scheduler.next_run("c0")
        assert next_run is not None and next_run - wall() <= 1.0 + 0.1
        offset[0] = 0.0  # and forward a minute: missed slots coalesce, no burst of runs
        before, started = len(runner.batches), time.monotonic()
        await asyncio.sleep(3.0)
        assert len(runner.batches) - before <= (time.monotonic() - started) / 1.0 + 2
        assert scheduler.clock_jumps == 2
    finally:
        await scheduler.stop(0.1)
    assert runner.overlaps == 0
    steps = [r for r in caplog.records if "wall clock stepped" in r.getMessage()]
    assert [r.levelno for r in steps] == [logging.WARNING] * 2  # one per step
    assert "back by 60" in steps[0].getMessage() and "forward by 60" in steps[1].getMessage()


async def test_stop_cancels_runs_past_the_grace(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner(delay=60.0)
    scheduler = Scheduler(runner, timedelta(seconds=60))
    scheduler.set_checks(make_checks(tmp_path, count_checks(2)))
    scheduler.start()
    await wait_until(lambda: len(runner.batches) >= 1)
    await asyncio.wait_for(scheduler.stop(0.2), 5.0)
    assert runner.running == set()  # the sleeping run was cancelled
    batches = len(runner.batches)
    await asyncio.sleep(1.5)
    assert len(runner.batches) == batches, "scheduled again after stop"


async def test_reload_keeps_unchanged_restarts_changed_removes_removed(tmp_path) -> None:  # type: ignore[no-untyped-def]
    runner = FakeRunner()
    scheduler = Scheduler(runner, timedelta(seconds=60))
    body = (
        "checks:\n"
        "  - {name: keep, kind: count, index: x, critical: 1, interval: 1h}\n"
        "  - {name: change, kind: count, index: x, critical: 1, interval: 1h}\n"
        "  - {name: drop, kind: count, index: x, critical: 1, interval: 1h}\n"
    )
    scheduler.start()
    try:
        assert sorted(scheduler.set_checks(make_checks(tmp_path, body), now=1000.0)) == [
            "change",
            "drop",
            "keep",
        ]
        keep_next = scheduler.next_run("keep")
        # A comment shifts every line: that alone is not a change.
        new_body = (
            "# a comment moves every line: that alone is not a change\n"
            "checks:\n"
            "  - {name: keep, kind: count, index: x, critical: 1, interval: 1h}\n"
            "  - {name: change, kind: count, index: x, critical: 5, interval: 1h}\n"
        )
        new = make_checks(tmp_path, new_body, "d.yaml")
        assert set(new) == {"keep", "change"}
        assert scheduler.set_checks(new, now=2000.0) == ["change"]
        assert scheduler.next_run("keep") == keep_next
        assert scheduler.next_run("drop") is None
        assert scheduler.next_run("change") is not None
    finally:
        await scheduler.stop(0.1)


def test_same_definition_ignores_the_source_position(tmp_path) -> None:  # type: ignore[no-untyped-def]
    one = make_checks(tmp_path, count_checks(1), "a.yaml")["c0"]
    two = make_checks(tmp_path, "\n\n# moved\n" + count_checks(1), "b.yaml")["c0"]
    assert one.source_line != two.source_line
    assert same_definition(one, two)
    other = make_checks(tmp_path, count_checks(1, "2s"), "c.yaml")["c0"]
    assert not same_definition(one, other)


async def test_next_run_before_the_scheduler_starts_is_unknown_not_an_error(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """APScheduler's pending jobs have no ``next_run_time`` until it starts: a reload (or an
    API read) before the start asked for it and raised AttributeError."""

    async def run_batch(checks: Sequence[CheckDefinition]) -> list[Result]:
        return []

    scheduler = Scheduler(run_batch, timedelta(seconds=30))
    scheduler.set_checks(make_checks(tmp_path, count_checks(2)))
    assert scheduler.next_run("c0") is None
    assert scheduler.next_run("nope") is None
