"""When checks run: APScheduler interval jobs, spread over the interval, batched per tick.

Each check gets an interval job whose first run is offset deterministically (a hash of its
name picks one of the interval's slots), so a thousand checks do not all fire at t0 and a
restart keeps the same rhythm. Offsets are quantised into slots so that checks due together
are still sent together: the jobs only enqueue, and a short batching delay hands all due
checks to the runner at once, where they become a few ``_msearch`` requests.

A check never overlaps itself (a due run while the previous one is in flight is counted as
skipped and coalesced), misfires coalesce, and lateness (start minus scheduled time) is
recorded for ``esbridge_scheduler_lateness_seconds``.

APScheduler times runs on the wall clock, so a watcher compares it with the monotonic clock
every ``CLOCK_CHECK_SECONDS``: when the wall clock steps (NTP step, VM restore) by more than
``CLOCK_STEP_SECONDS`` it logs a warning and re-anchors every job on the new clock, so no
check waits out the step (counted in ``Scheduler.clock_jumps``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from time import monotonic

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from esbridge.models import CheckDefinition
from esbridge.result import Result
from esbridge.slots import first_offset

log = logging.getLogger(__name__)

BATCH_DELAY = 0.05
EAGER_SPREAD = 30.0
CLOCK_CHECK_SECONDS = 1.0
CLOCK_STEP_SECONDS = 2.0
LATENESS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

RunBatch = Callable[[Sequence[CheckDefinition], dict[str, float]], Awaitable[list[Result]]]


def same_definition(a: CheckDefinition, b: CheckDefinition) -> bool:
    """True when two definitions run the same check.

    Pydantic's ``==`` also compares private attributes, so a comment added above a check
    (which moves its ``source_line``) would otherwise count as a change and restart its
    schedule on reload.
    """
    return type(a) is type(b) and a.model_dump() == b.model_dump()


class LatenessHistogram:
    """Cumulative histogram of scheduler lateness, read by the metrics collector."""

    def __init__(self, buckets: Sequence[float] = LATENESS_BUCKETS) -> None:
        self.buckets = tuple(buckets)
        self.counts = [0] * len(self.buckets)
        self.count = 0
        self.sum = 0.0
        self.recent: list[float] = []

    def observe(self, value: float) -> None:
        self.count += 1
        self.sum += value
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.recent.append(value)
        if len(self.recent) > 10000:
            del self.recent[:5000]


class Scheduler:
    """Runs each check on its interval through ``run_batch``."""

    def __init__(self, run_batch: RunBatch, default_interval: timedelta) -> None:
        self._run_batch = run_batch
        self._default_interval = default_interval
        self._aps = AsyncIOScheduler(timezone=UTC)
        self._checks: dict[str, CheckDefinition] = {}
        self._anchor: dict[str, float] = {}
        self._eager_at: dict[str, float] = {}
        self._pending: dict[str, float] = {}  # name -> the scheduled time of the due run
        self._in_flight: dict[str, asyncio.Task[list[Result]]] = {}
        self._flush_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[object]] = set()
        self._clock_task: asyncio.Task[None] | None = None
        self.clock_jumps = 0
        self.lateness = LatenessHistogram()
        self.skipped = 0
        self.runs = 0
        self.running = False

    def interval_of(self, check: CheckDefinition) -> float:
        return (check.interval or self._default_interval).total_seconds()

    def start(self) -> None:
        self._aps.start()
        self.running = True
        self._clock_task = asyncio.get_running_loop().create_task(self._watch_clock())

    async def stop(self, grace: float = 10.0) -> None:
        """Stop scheduling; let in-flight runs finish within ``grace`` seconds, then cancel."""
        self.running = False
        if self._aps.running:
            self._aps.shutdown(wait=False)
        if self._flush_task is not None:
            self._flush_task.cancel()
        if self._clock_task is not None:
            self._clock_task.cancel()
            await asyncio.wait([self._clock_task])
            self._clock_task = None
        self._pending.clear()
        tasks = [t for t in self._tasks if not t.done()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()

    def set_checks(
        self,
        checks: dict[str, CheckDefinition],
        now: float | None = None,
        eager: frozenset[str] | set[str] = frozenset(),
    ) -> list[str]:
        """Apply a new set: unchanged checks keep their job, changed ones restart, removed go.

        ``eager`` names checks that have no result yet (new, nothing restored): they also get
        one early run within the first ``EAGER_SPREAD`` seconds, so a check with a one-hour
        interval is not PENDING for an hour after its first start. Returns the names whose
        jobs were (re)created.
        """
        moment = time.time() if now is None else now
        changed = []
        for name in list(self._checks):
            if name not in checks:
                self._remove(name)
        for name, check in checks.items():
            old = self._checks.get(name)
            if old is not None and same_definition(old, check):
                self._checks[name] = check  # same schedule; keep the newest source position
                continue
            if old is not None:
                self._remove(name)
            self._add(check, moment, eager=name in eager)
            changed.append(name)
        return changed

    def _add(self, check: CheckDefinition, now: float, eager: bool = False) -> None:
        interval = self.interval_of(check)
        offset = first_offset(check.name, interval)
        # Anchor the slot grid to whole intervals since the epoch: restarts keep the rhythm.
        period_start = now - (now % interval)
        first = period_start + offset
        if first <= now:
            first += interval
        if eager and first - now > EAGER_SPREAD:
            # Early first run, itself spread over slots of the first EAGER_SPREAD seconds.
            soon = now + first_offset(check.name, EAGER_SPREAD) + 1.0
            self._eager_at[check.name] = soon
            self._aps.add_job(
                self._due,
                DateTrigger(run_date=datetime.fromtimestamp(soon, UTC), timezone=UTC),
                args=[check.name],
                id=f"{check.name}#first",
                misfire_grace_time=max(1, int(interval)),
                replace_existing=True,
            )
        self._checks[check.name] = check
        self._anchor[check.name] = first
        self._aps.add_job(
            self._due,
            IntervalTrigger(
                seconds=interval, start_date=datetime.fromtimestamp(first, UTC), timezone=UTC
            ),
            args=[check.name],
            id=check.name,
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(interval)),
            replace_existing=True,
        )

    async def _watch_clock(self) -> None:
        """Notice wall-clock steps: the wall clock moved unlike the monotonic one."""
        wall, mono = time.time(), monotonic()
        while True:
            await asyncio.sleep(CLOCK_CHECK_SECONDS)
            now, now_mono = time.time(), monotonic()
            step = (now - wall) - (now_mono - mono)
            wall, mono = now, now_mono
            if abs(step) > CLOCK_STEP_SECONDS:
                try:
                    self._clock_stepped(step, now)
                except Exception:  # the watcher must outlive any one failure
                    log.exception("could not reschedule the checks after a clock step")

    def _clock_stepped(self, step: float, now: float) -> None:
        """Re-anchor every job on the new clock: each next run at most one interval away."""
        self.clock_jumps += 1
        log.warning(
            "wall clock stepped %s by %.1f s (NTP step, VM restore or suspend): rescheduling "
            "%d checks on the new clock",
            "forward" if step > 0 else "back",
            abs(step),
            len(self._checks),
        )
        for name, check in list(self._checks.items()):
            # An early first run not yet done is kept, recomputed on the new clock too.
            first_job = self._aps.get_job(f"{name}#first")
            if first_job is not None:
                self._aps.remove_job(f"{name}#first")
            self._eager_at.pop(name, None)
            self._add(check, now, eager=first_job is not None)  # replaces the interval job

    def _remove(self, name: str) -> None:
        self._checks.pop(name, None)
        self._anchor.pop(name, None)
        self._pending.pop(name, None)
        if self._aps.get_job(name) is not None:
            self._aps.remove_job(name)
        self._eager_at.pop(name, None)
        if self._aps.get_job(f"{name}#first") is not None:
            self._aps.remove_job(f"{name}#first")

    def scheduled_time(self, name: str, now: float) -> float:
        """The slot this run belongs to: the anchor plus whole intervals."""
        anchor = self._anchor.get(name, now)
        check = self._checks.get(name)
        interval = self.interval_of(check) if check else 60.0
        if now < anchor:
            return self._eager_at.get(name, now)
        # APScheduler keeps fire times in microseconds: a run woken exactly on its slot may
        # read a hair before the float anchor; do not count it as a whole interval late.
        return anchor + ((now - anchor + 0.001) // interval) * interval

    async def _due(self, name: str) -> None:
        now = time.time()
        if not self.running or name not in self._checks:
            return
        if name in self._in_flight or name in self._pending:
            self.skipped += 1
            log.warning("check %s is still running at its next slot: run coalesced", name)
            return
        self._pending[name] = self.scheduled_time(name, now)
        if self._flush_task is None or self._flush_task.done():
            self._flush_task = asyncio.get_running_loop().create_task(self._flush_after_delay())

    async def _flush_after_delay(self) -> None:
        await asyncio.sleep(BATCH_DELAY)
        pending, self._pending = self._pending, {}
        if not self.running:
            return
        # Lateness is the real start (now, after the batching delay) minus the slot.
        started = time.time()
        lateness = {n: started - at for n, at in pending.items()}
        checks = [self._checks[n] for n in pending if n in self._checks]
        # One batch per connection: a slow or dead cluster must not hold back (and turn
        # stale) the checks of the others, which are only recorded when their batch ends.
        by_cluster: dict[str, list[CheckDefinition]] = {}
        for check in checks:
            by_cluster.setdefault(check.cluster, []).append(check)
        for group in by_cluster.values():
            self.submit(group, lateness)

    def submit(
        self, checks: Sequence[CheckDefinition], lateness: dict[str, float] | None = None
    ) -> asyncio.Task[list[Result]]:
        """Run ``checks`` now as one batch; none of them may be in flight already."""
        lateness = lateness or {}
        task: asyncio.Task[list[Result]] = asyncio.get_running_loop().create_task(
            self._run(list(checks), lateness)
        )
        for check in checks:
            self._in_flight[check.name] = task
            if check.name in lateness:
                self.lateness.observe(max(0.0, lateness[check.name]))
        self._tasks.add(task)  # type: ignore[arg-type]
        task.add_done_callback(self._tasks.discard)  # type: ignore[arg-type]
        return task

    async def run_now(self, check: CheckDefinition) -> Result | None:
        """Run one check at once ("run now"), never beside a run of the same check.

        A run in flight is waited for first; while this one runs, a scheduled slot of the
        check is coalesced like any other overlap. ``None`` when the batch failed.
        """
        while (running := self._in_flight.get(check.name)) is not None:
            await asyncio.wait([running])
        self._pending.pop(check.name, None)  # due in the batching delay: this run is it
        results = await self.submit([check])
        return next((r for r in results if r.check == check.name), None)

    async def _run(self, checks: list[CheckDefinition], lateness: dict[str, float]) -> list[Result]:
        try:
            self.runs += len(checks)
            return await self._run_batch(checks, lateness)
        except Exception:  # keep the scheduler alive whatever happens
            log.exception("a batch of %d checks failed unexpectedly", len(checks))
            return []
        finally:
            me = asyncio.current_task()
            for check in checks:
                if self._in_flight.get(check.name) is me:
                    del self._in_flight[check.name]

    def in_flight(self, name: str) -> bool:
        """Whether a run of ``name`` is going on now (``submit`` must not start another)."""
        return name in self._in_flight

    def next_run(self, name: str) -> float | None:
        """When ``name`` runs next (None: not scheduled, or the scheduler not started yet:
        APScheduler's pending jobs have no ``next_run_time`` attribute until it starts)."""
        job = self._aps.get_job(name)
        when = getattr(job, "next_run_time", None)
        return None if when is None else float(when.timestamp())
