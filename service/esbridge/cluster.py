"""Several replicas, one view: membership → ownership → scheduling, plus the shared view.

One :class:`Cluster` per service when ``cluster.enabled``. Every heartbeat it

1. writes this replica's heartbeat and reads the members (:mod:`esbridge.membership`);
2. when the live set (or the check set) changed, recomputes ownership by rendezvous hashing
   (:mod:`esbridge.ownership`); checks it gains are restored from the state index (real-time
   ``_mget``) *before* their first run here, so a CRITICAL that stays CRITICAL keeps its
   ``since``; the scheduler is then given only the owned checks, and gained checks whose last
   result is older than their interval run at once; so are the checks it still owns when
   its membership is confirmed again after a time alone (a partition), when another replica
   may have covered them;
3. brings the checks owned elsewhere forward to the runs their owners' heartbeats
   announced, and reads the state documents that changed into the store
   (:mod:`esbridge.sharedview`), so every output answers for every check. While every peer
   announces, an owner writes a check's state only when its answer changes.

Only the owner evaluates a check, writes its state and pushes its passive results: the
outputs and passive senders are fed from :meth:`Service._record`, which only owned runs
reach; the shared view writes into the store without marking anything dirty.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from esbridge.membership import (
    Announcement,
    Membership,
    default_advertise_url,
    default_replica_id,
)
from esbridge.models import CheckDefinition
from esbridge.ownership import assign
from esbridge.result import Result
from esbridge.sharedview import SharedView
from esbridge.tasks import TaskClock, cancel_all

if TYPE_CHECKING:
    from esbridge.app import Service
    from esbridge.store import Transition

log = logging.getLogger(__name__)


class Cluster:
    """This replica's part in a group of replicas sharing one state index."""

    def __init__(self, service: Service) -> None:
        settings = service.settings
        config = settings.cluster
        connection = service.connections.get(settings.state.connection)
        timeout = settings.defaults.timeout.total_seconds()
        self.service = service
        self.replica_id = config.replica_id or default_replica_id(settings.port)
        self.heartbeat = config.heartbeat.total_seconds()
        self.lease = config.lease.total_seconds()
        self.view_refresh = (config.view_refresh or config.heartbeat).total_seconds()
        self.membership = Membership(
            connection,
            config.index,
            self.replica_id,
            self.heartbeat,
            self.lease,
            url=config.advertise_url or default_advertise_url(settings.host, settings.port),
            timeout=max(timeout, self.lease),
            owned=lambda: len(self.owned),
            progress=self._announcement,
            hold_on_return=True,  # released in rebalance, once the owned checks are restored
        )
        # A document is asked for from this long (plus its last run's duration) before its
        # owner's next write is due: the owner's flush and a second of slack for a late run
        # or request (the round before the change bounds the last write; sharedview.py).
        lead = settings.state.flush_interval.total_seconds() + 1.0
        self.view = SharedView(service.store, connection, settings.state.index, timeout, lead)
        # After a check moves, its previous owner may write it until its own next round (a
        # heartbeat later at most, plus a flush): the new owner writes every run until then.
        flush = settings.state.flush_interval.total_seconds()
        self.settle = 2 * self.heartbeat + flush
        service.store.writes_only = frozenset()  # nothing until the first rebalance
        # An announced run shows elsewhere up to a flush and two heartbeats after it (three
        # with a heartbeat late), a written one a flush and a view round after: checks whose
        # allowed age cannot spare that (staleness_factor x interval, of which one interval
        # goes between runs) are written every run and read by version, as before.
        spare = min(1.0, settings.defaults.staleness_factor - 1.0)  # the factor is > 1
        service.store.write_on_change_from = (flush + 3 * self.heartbeat) / spare
        # A check read by version shows elsewhere up to a flush and a view round (and a
        # second of requests) after its owner: at shorter intervals its allowed age cannot
        # spare that, and a replica that does not own it may show it stale for a moment.
        lag = flush + self.view_refresh + 1.0
        self.shows_fresh_from = lag / (settings.defaults.staleness_factor - 1.0)
        self.owners: dict[str, str] = {}
        self.owned: set[str] = set()
        # a mark is as late as a flush: a run of a slot ends within it, as a rule (the
        # announce threshold above counts a flush before an announced run shows)
        self.mark_lag = flush
        self.runs: Counter[str] = Counter()  # evaluations done by this process, per check
        self.rebalances = 0
        self.last_rebalance: float | None = None
        self._members: list[str] = []
        self._checkset: object = None  # the check set the owners were computed for
        self._started = time.monotonic()
        self._waited_first = False  # the members read again before the first ownership
        self._unrestored_since: float | None = None  # takeover reads failing since (monotonic)
        self._retry = False  # checks gained but not taken yet: rebalance again next round
        self._moved: set[str] = set()  # checks whose owner changed at the last rebalance
        self._short_foreign: list[str] = []  # owned elsewhere, at intervals read by version
        self._moved_until = 0.0  # (monotonic) until when they are also read by version
        self._lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        # CPU of the coordination tasks, all in: requests, decoding and applying, whatever
        # runs between their awaits (the counters of membership and view time only the last)
        self.task_clock = TaskClock()
        service.result_listeners.append(self._count_run)

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        loop, clock = asyncio.get_running_loop(), self.task_clock
        if self.view_refresh == self.heartbeat:  # one wake-up per heartbeat, not two
            self._tasks = [loop.create_task(clock.run(self._every(self.heartbeat, self._both)))]
            return
        self._tasks = [
            loop.create_task(clock.run(self._every(self.heartbeat, self.round))),
            loop.create_task(clock.run(self._every(self.view_refresh, self.refresh_view))),
        ]

    async def _both(self) -> None:
        await self.round()
        await self.refresh_view()

    async def stop(self) -> None:
        """Stop heartbeating and delete this replica's document: the others take over now."""
        await cancel_all(self._tasks)
        await self.membership.leave()

    async def _every(self, period: float, step: Callable[[], Awaitable[None]]) -> None:
        while True:
            started = time.monotonic()
            try:
                await step()
            except Exception:  # never let coordination die; the next round retries
                log.exception("cluster round failed unexpectedly")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def round(self) -> None:
        """One heartbeat: membership, then ownership when the live set changed."""
        live = await self.membership.beat()
        # Until the members were read once, this replica would think it is alone and take
        # every check; it waits, up to one lease (then it is alone as far as it can tell).
        formed = self.membership.formed
        if not formed and time.monotonic() - self._started <= self.lease:
            return
        # Before its first ownership this replica reads the members twice, and waits while a
        # document read for the first time may still move (membership.py: live only once
        # its counter moves). Alone at its first read: another replica started at about the
        # same moment may have read the members before this one's heartbeat was written, as
        # this one did before the other's: each alone, each would own every check for a
        # round. Not alone: a live replica whose counter has not moved yet between two close
        # reads would be counted out, and its checks run and written here for a round.
        first = formed and self.last_rebalance is None
        if first and (not self._waited_first or self.membership.pending()):
            if not self._waited_first and live == [self.replica_id]:
                log.info("ownership: alone at the first read; reading the members again first")
            self._waited_first = True
            return
        await self.rebalance(live, force=self._retry or self.membership.returning)
        if self.membership.owning_since is None:
            self.membership.owning_since = self.membership.view
        if self.membership.views_changed():
            # Another replica counted this one out for a moment while it owned checks: it
            # may have written checks this one owns (membership.py). Write them again, past
            # the time that replica may still be writing them (its next round and a flush).
            self.service.store.write_again(self.owned, self.settle)
        await self.follow(live)

    def _announcing(self, live: list[str]) -> dict[str, Announcement]:
        """What each live peer's last heartbeat announced, by peer (see sharedview.py)."""
        members = self.membership.members
        return {
            m: announced
            for m in live
            if m in members and (announced := members[m].announced) is not None
        }

    async def follow(self, live: list[str]) -> None:
        """Bring the checks owned elsewhere forward to the runs their owners announced, and
        read the documents of those that changed. While every peer announces, this
        replica's runs that repeat a written answer are not written again."""
        store = self.service.store
        if self.last_rebalance is None or not self.membership.confirmed():
            store.write_on_change = False
            return
        announcing = self._announcing(live)
        store.write_on_change = len(announcing) == len(live) - 1
        await self.view.follow(announcing, self.owners, self.membership.announced_all)

    def _announcement(self) -> dict[str, Any]:
        """What this replica's heartbeat announces of the checks it owns: a mark while every
        peer follows marks (a version before does not), else every run (sharedview.py)."""
        store = self.service.store
        if self.last_rebalance is not None and self.membership.all_follow_marks():
            return store.announce_marked(self.owned, time.time() - self.mark_lag)
        store.unmark()
        fresh, every = store.announce(self.owned)
        return {"progress": fresh, "progress_all": every}

    async def refresh_view(self) -> None:
        """Read what the other replicas wrote for the checks they own, of those whose owner
        does not announce its runs (a version before that; see sharedview.py), of those at
        intervals too short to wait for an announcement, and, for a moment after they moved,
        of those whose owner changed."""
        if self.last_rebalance is None:
            return
        live = self.membership.live()
        announcing = self._announcing(live)
        moved = self._moved if time.monotonic() < self._moved_until else ()
        if not moved and len(announcing) == len(live) - 1:  # the usual round: only the short
            await self.view.refresh(self._short_foreign)  # intervals are read by version
            return
        short, owned = set(self._short_foreign), self.owned
        others = [
            n
            for n, who in self.owners.items()
            if n not in owned and (n in short or n in moved or who not in announcing)
        ]
        await self.view.refresh(others)

    # -- ownership -----------------------------------------------------------------------

    async def rebalance(self, live: list[str] | None = None, force: bool = False) -> None:
        """Recompute the owners when the members or the checks changed; reschedule."""
        async with self._lock:
            members = list(live if live is not None else self.membership.live())
            checkset = self.service.checkset  # a reload replaces it, definitions and all
            if not force and members == self._members and checkset is self._checkset:
                return
            self._retry = False
            checks = dict(checkset.checks)
            names = frozenset(checks)
            owners = assign(names, members)
            owned = {n for n, who in owners.items() if who == self.replica_id}
            gained = owned - self.owned
            # Confirmed again after a time alone (a partition): it owned every check then, so
            # its share now gains nothing, but while unconfirmed another replica may have
            # owned and written them, and what this one recorded (UNKNOWN, as a rule) was
            # never written. Its owned checks are restored like any takeover; until then it
            # is not confirmed, so no run finishing meanwhile is written either.
            returning = self.membership.returning
            taken = gained | (owned & self.owned) if returning else gained
            if taken and not await self._restored(taken):
                owned -= taken  # not yet: the next round reads and takes them
                gained, taken = set(), set()
            elif returning:
                if owned & self.owned:
                    log.info("ownership: confirmed again: restored %d checks", len(taken))
                self.membership.release()
            lost = self.owned - owned
            # whoever owns them now writes them: what this replica wrote says nothing of it
            store = self.service.store
            store.forget_written(lost)
            store.forget_written(taken, settle=self.settle)
            if returning:  # a run in flight from the time alone is not recorded over them
                store.mark_restored(taken)
            store.writes_only = owned
            if owners != self.owners:
                # read by version for a moment: a new owner's first writes are seen at the
                # next view round, not only once its heartbeat announces them
                previous = self.owners
                self._moved = {n for n, who in owners.items() if previous.get(n) != who}
                self._moved_until = time.monotonic() + self.settle
            if owners != self.owners or checkset is not self._checkset or returning:
                # a new owner (or interval) writes on its own schedule; after a time alone,
                # what this replica recorded for checks owned elsewhere gives way at once
                self.view.ask_all()
            self.owners, self.owned = owners, owned
            self._short_foreign = [
                n
                for n, check in checks.items()
                if n not in owned
                and self.service.scheduler.interval_of(check) < store.write_on_change_from
            ]
            if checkset is not self._checkset:
                self._warn_too_short(checks)
            self._members, self._checkset = members, checkset
            self.rebalances += 1
            self.last_rebalance = time.time()
            self._schedule(checks, taken)
            if gained or lost:
                log.info(
                    "ownership: %d members, this replica owns %d checks (+%d, -%d)",
                    len(members),
                    len(owned),
                    len(gained),
                    len(lost),
                )

    def _warn_too_short(self, checks: dict[str, CheckDefinition]) -> None:
        """Say, once per check set, which checks run too often for the shared view to show
        them fresh on every replica, and what to change."""
        interval_of = self.service.scheduler.interval_of
        short = sorted(n for n, c in checks.items() if interval_of(c) < self.shows_fresh_from)
        if not short:
            return
        settings = self.service.settings
        log.warning(
            "cluster: %d checks run more often than every %.3g s (%s%s): a replica that "
            "does not own one may show it stale (UNKNOWN) for a moment, as its result "
            "reaches the others up to state.flush_interval + cluster.view_refresh "
            "(%.3g s + %.3g s) later; shorten those, or raise defaults.staleness_factor "
            "(%.3g), for these checks to read fresh on every replica (docs/scale-out.md, "
            '"How far behind")',
            len(short),
            self.shows_fresh_from,
            ", ".join(short[:5]),
            ", ..." if len(short) > 5 else "",
            settings.state.flush_interval.total_seconds(),
            self.view_refresh,
            settings.defaults.staleness_factor,
        )

    async def _restored(self, gained: set[str]) -> bool:
        """Read what the previous owner wrote of ``gained`` (real-time): since and history
        first, so a CRITICAL that stays CRITICAL keeps its since. False when the read failed:
        the checks are taken a round later, not from an older copy (a false transition and
        a lost since). After a lease of failed reads they are taken anyway: a check run
        without its history is better than one run by nobody."""
        if await self.view.load(sorted(gained), takeover=True) >= 0:
            self._unrestored_since = None
            return True
        now = time.monotonic()
        if self._unrestored_since is None:
            self._unrestored_since = now
        if now - self._unrestored_since < self.lease:
            log.warning(
                "ownership: not taking %d checks yet: cannot read their state (%s)",
                len(gained),
                self.view.last_error,
            )
            self._retry = True
            return False
        log.warning(
            "ownership: taking %d checks without their persisted state: the state index has "
            "not been readable for a lease (%s)",
            len(gained),
            self.view.last_error,
        )
        return True

    def _schedule(self, checks: dict[str, CheckDefinition], gained: set[str]) -> None:
        service = self.service
        mine = {n: c for n, c in checks.items() if n in self.owned}
        service.scheduler.set_checks(mine)  # gained checks without a fresh result run below
        if not service.scheduler.running:
            return
        now = time.time()
        overdue: dict[str, list[CheckDefinition]] = {}
        for name in sorted(gained):
            if service.scheduler.in_flight(name):  # still running from an earlier ownership
                continue
            entry = service.store.get(name)
            interval = service.scheduler.interval_of(checks[name])
            at = entry.evaluated_at if entry is not None else None
            if at is None or now - at >= interval:
                overdue.setdefault(checks[name].cluster, []).append(checks[name])
        for batch in overdue.values():  # taken over late: run now, not at the next slot
            service.scheduler.submit(batch)

    def owner_of(self, name: str) -> str | None:
        return self.owners.get(name)

    def url_of(self, replica: str | None) -> str | None:
        """The address a member wrote in its heartbeat (``host:port`` as it listens)."""
        for member in self.membership.describe():
            if member["id"] == replica:
                return member["url"]
        return None

    def _count_run(self, result: Result, transition: Transition | None) -> None:
        self.runs[result.check] += 1

    # -- visibility ----------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        view = self.view
        return (
            self.membership.formed
            and view.loaded
            and view.followed
            and self.last_rebalance is not None
        )

    def readiness(self) -> dict[str, Any]:
        return {
            "replica": self.replica_id,
            "formed": self.membership.formed,
            "members": len(self.membership.live()),
            "shared_view_loaded": self.view.loaded and self.view.followed,
            "error": self.membership.last_error or self.view.last_error,
        }

    def describe(self, runs: bool = False) -> dict[str, Any]:
        """``GET /api/v1/cluster``: members, heartbeats, checks owned, coordination cost."""
        body: dict[str, Any] = {
            "enabled": True,
            "replica": self.replica_id,
            "heartbeat_seconds": self.heartbeat,
            "lease_seconds": self.lease,
            "ready": self.ready,
            "live_members": self.membership.live(),
            "members": self.membership.describe(),
            "checks_owned": len(self.owned),
            "checks_total": len(self.service.checkset.checks),
            "rebalances": self.rebalances,
            "last_rebalance": self.last_rebalance,
            "error": self.membership.last_error or self.view.last_error,
            "shared_view": {
                "last_read": self.view.last_ok,
                "documents_read": self.view.documents_read,
                "heads_read": self.view.heads_read,
                "runs_followed": self.view.runs_followed,
                "marks_followed": self.view.marks_followed,
            },
            "coordination": {
                "requests": self.membership.requests + self.view.requests,
                "cpu_seconds": round(self.membership.cpu_seconds + self.view.cpu_seconds, 6),
                "task_cpu_seconds": round(self.task_clock.seconds, 6),
                "membership_cpu_seconds": round(self.membership.cpu_seconds, 6),
                "view_cpu_seconds": round(self.view.cpu_seconds, 6),
                "view_decode_cpu_seconds": round(self.view.decoding.cpu_seconds, 6),
            },
        }
        if runs:
            body["runs"] = dict(self.runs)
        return body

    def metrics(self) -> Iterator[Metric]:
        members = GaugeMetricFamily(
            "esbridge_cluster_members", "Live replicas as this replica sees them"
        )
        members.add_metric([], float(len(self.membership.live())))
        owned = GaugeMetricFamily("esbridge_checks_owned", "Checks this replica evaluates")
        owned.add_metric([], float(len(self.owned)))
        # What sharing costs this replica (to set against its CPU, e.g. the container's):
        # the counters time the work itself (parsing and applying), not the requests.
        cpu = CounterMetricFamily(
            "esbridge_cluster_coordination_cpu_seconds",
            "CPU this replica spent parsing and applying coordination answers, by part "
            "(the requests themselves not included)",
            labels=["part"],
        )
        cpu.add_metric(["membership"], self.membership.cpu_seconds)
        cpu.add_metric(["shared_view"], self.view.cpu_seconds)
        task = CounterMetricFamily(
            "esbridge_cluster_coordination_task_cpu_seconds",
            "CPU this replica's event loop spent running its coordination tasks (heartbeats, "
            "membership, the shared view), the requests included",
        )
        task.add_metric([], self.task_clock.seconds)
        requests = CounterMetricFamily(
            "esbridge_cluster_coordination_requests",
            "Requests to the state store for membership and the shared view, by part",
            labels=["part"],
        )
        requests.add_metric(["membership"], float(self.membership.requests))
        requests.add_metric(["shared_view"], float(self.view.requests))
        documents = CounterMetricFamily(
            "esbridge_shared_view_documents_read",
            "State documents of checks owned elsewhere read into this replica's store",
        )
        documents.add_metric([], float(self.view.documents_read))
        followed = CounterMetricFamily(
            "esbridge_shared_view_runs_followed",
            "Runs of checks owned elsewhere taken from their owners' heartbeats (the same "
            "answer again: no document read)",
        )
        followed.add_metric([], float(self.view.runs_followed))
        marks = CounterMetricFamily(
            "esbridge_shared_view_marks_followed",
            "Owners' marks taken from their heartbeats (each brings forward every check of "
            "that owner that repeats its written answer: no step per run)",
        )
        marks.add_metric([], float(self.view.marks_followed))
        yield from (members, owned, cpu, task, requests, documents, followed, marks)
