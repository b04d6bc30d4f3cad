"""Wiring of the running service: configuration → checks → store → scheduler → outputs.

:class:`Service` owns the long-lived objects and the operations the API exposes (reload,
run now, readiness). Reload validates the new check files completely before swapping, so a
bad file never takes down what is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from esbridge.cluster import Cluster
from esbridge.config import Settings, validate_references
from esbridge.esclient import Connections
from esbridge.events import EventStore
from esbridge.listeners import ResultListener
from esbridge.loader import CheckFileError, CheckSet, load_checks
from esbridge.models import CheckDefinition
from esbridge.passive import passive_hub
from esbridge.persistence import StatePersistence
from esbridge.result import Result
from esbridge.runner import Runner
from esbridge.scheduler import Scheduler, same_definition
from esbridge.store import ResultStore, Transition
from esbridge.tasks import cancel_all
from esbridge.view import NotOwner, ReloadStatus, SchedulerFacts, ServiceView

__all__ = ["ReloadStatus", "Service", "log_warnings"]

log = logging.getLogger("esbridge")
state_log = logging.getLogger("esbridge.state")

HEALTH_INTERVAL = 5.0


def log_warnings(checkset: CheckSet) -> None:
    """Valid settings that cannot do what was meant (a range that never alerts)."""
    for warning in checkset.warnings:
        log.warning("%s", warning)


class Service:
    """The running esbridge: one per process."""

    def __init__(self, settings: Settings, checkset: CheckSet) -> None:
        self.settings = settings
        self.checkset = checkset
        self.started_at = time.time()
        self.connections = Connections(dict(settings.elasticsearch))
        self.runner = Runner(self.connections, settings.defaults.timeout, self._last_result)
        self.store = ResultStore(
            history=settings.state.history,
            staleness_factor=settings.defaults.staleness_factor,
            rewrite_after=settings.state.rewrite_after.total_seconds(),
        )
        self.scheduler = Scheduler(self._run_batch, settings.defaults.interval)
        self.persistence: StatePersistence | None = None
        if settings.state.enabled:
            self.persistence = StatePersistence(
                self.store,
                self.connections.get(settings.state.connection),
                settings.state.index,
                settings.defaults.timeout.total_seconds(),
                shards=settings.state.shards,
            )
        self.events: EventStore | None = None
        if settings.events.enabled:
            self.events = EventStore(
                settings.events,
                self.connections.get(settings.events_connection()),
                settings.defaults.timeout.total_seconds(),
            )
        self.reload_status = ReloadStatus()
        self._config_seen = _file_digest(settings.source)
        # in-process callbacks told of every recorded result (the cluster counts its runs)
        self.result_listeners: list[Callable[[Result, Transition | None], None]] = []
        self.cluster: Cluster | None = Cluster(self) if settings.cluster.enabled else None
        self._background: list[asyncio.Task[None]] = []
        self._reruns: set[asyncio.Task[Result | None]] = set()
        self._reload_lock = asyncio.Lock()
        self.stopping = False
        self.view = self._make_view()
        # declared outputs the service starts, feeds and stops (passive delivery)
        self.listeners: list[ResultListener] = []
        hub = passive_hub(settings.passive, self.view)
        if hub is not None:
            self.add_listener(hub)

    def _make_view(self) -> ServiceView:
        settings = self.settings
        events = self.events
        within = settings.events.within.total_seconds()
        return ServiceView(
            store=self.store,
            checkset=lambda: self.checkset,
            scheduler=SchedulerFacts(
                self.scheduler.lateness, lambda: self.scheduler.skipped, self.scheduler.next_run
            ),
            connections=lambda: self.connections,
            api=settings.api,
            default_interval=settings.defaults.interval.total_seconds(),
            default_timeout=settings.defaults.timeout.total_seconds(),
            started_at=self.started_at,
            reload_status=lambda: self.reload_status,
            readiness=self.readiness,
            stopping=lambda: self.stopping,
            listeners=lambda: self.listeners,
            cluster=self.cluster,
            deploys=(lambda tags, since: events.matching(tags, since - within))
            if events is not None
            else None,
        )

    def add_listener(self, listener: ResultListener) -> None:
        """Register an output: started and stopped with the service, told of every result."""
        self.listeners.append(listener)

    def _last_result(self, name: str) -> Result | None:
        """The stored result the runner hands to kinds that measure since the previous run."""
        entry = self.store.get(name)
        return entry.result if entry is not None else None

    # -- lifecycle -----------------------------------------------------------------------

    @classmethod
    def from_settings(cls, settings: Settings) -> Service:
        """Load the check files named in ``settings``; raises ``CheckFileError`` when bad."""
        return cls(settings, load_checks(list(settings.checks)))

    def intervals(self, checks: dict[str, CheckDefinition]) -> dict[str, float]:
        return {name: self.scheduler.interval_of(c) for name, c in checks.items()}

    async def start(self) -> None:
        self.store.sync(self.intervals(self.checkset.checks))
        if self.persistence is not None:
            try:
                await self.persistence.restore()
            except Exception as error:  # a missing store never prevents monitoring
                log.warning("could not restore state (%s); starting with empty state", error)
        if self.cluster is None:
            self.scheduler.set_checks(dict(self.checkset.checks), eager=self._overdue())
        self.scheduler.start()
        log_warnings(self.checkset)
        if self.cluster is not None:  # owned checks only, once the members are known
            self.cluster.start()
        for listener in self.listeners:
            await listener.start()
        self._background.append(asyncio.create_task(self._health_loop()))
        if self.persistence is not None:
            self._background.append(asyncio.create_task(self.persistence.prepare()))
            self._background.append(asyncio.create_task(self._flush_loop()))
        if self.events is not None:
            self._background.append(asyncio.create_task(self._events_loop()))
        log.info(
            "esbridge started: %d checks from %d files, %d connections",
            len(self.checkset.checks),
            len(self.checkset.files),
            len(self.connections.names()),
        )

    def _overdue(self) -> set[str]:
        """Checks that get an early first run: no result yet (new, nothing restored), or a
        restored one already older than its interval (esbridge was down a while): neither
        waits up to a whole interval (a day, for a daily check) showing PENDING or stale."""
        now = time.time()
        return {
            e.name
            for e in self.store.all()
            if (at := e.evaluated_at) is None or now - at >= e.interval
        }

    async def stop(self, grace: float = 10.0) -> None:
        """Stop scheduling, let in-flight runs finish within ``grace``, flush state."""
        self.stopping = True
        await cancel_all(list(self._reruns))
        await self.scheduler.stop(grace)
        await cancel_all(self._background)
        if self.persistence is not None:
            # runs that repeated a written answer were only announced: the last of each is
            # written now, so the next owner, and every replica, reads the latest run
            self.store.write_repeats()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._flush(), grace)
        if self.cluster is not None:  # after the flush: the next owner reads the last state
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.cluster.stop(), grace)
        for listener in self.listeners:  # after the last result was recorded
            try:
                await listener.stop(grace)
            except Exception:
                log.exception("stopping an output failed")
        await self.connections.close()
        log.info("esbridge stopped")

    # -- evaluation ----------------------------------------------------------------------

    async def _run_batch(
        self, checks: Sequence[CheckDefinition], lateness: dict[str, float]
    ) -> list[Result]:
        results = await self.runner.run(checks)
        ran = {check.name: check for check in checks}
        for result in results:
            self._record(result, lateness.get(result.check, 0.0), ran.get(result.check))
        return results

    def _rerun(self, check: CheckDefinition) -> None:
        """Run ``check`` again once the run now ending is done (it waits for it): its
        result was dropped, and the check's early run (at a reload, at a restore) found it
        still running."""
        if self.stopping or not self.scheduler.running:
            return
        if self.cluster is not None and check.name not in self.cluster.owned:
            return
        task = asyncio.get_running_loop().create_task(self.scheduler.run_now(check))
        self._reruns.add(task)  # the loop keeps only weak references
        task.add_done_callback(self._reruns.discard)

    def _record(
        self, result: Result, lateness: float = 0.0, ran: CheckDefinition | None = None
    ) -> None:
        """``ran``: the definition the result was evaluated with."""
        loaded = self.checkset.checks.get(result.check)
        if loaded is None:
            # removed by a reload while it ran: neither the store nor any output sees it
            log.debug("dropping the result of %s: no longer loaded", result.check)
            return
        if ran is not None and ran is not loaded and not same_definition(ran, loaded):
            # changed by a reload while it ran: judged by the old thresholds, so it is not
            # the check's state now; the changed check runs again at once (see reload)
            log.info("dropping the result of %s: its definition changed while it ran", ran.name)
            self._rerun(loaded)
            return
        if self.store.started_before_restore(result):
            log.info(
                "dropping the result of %s: its run started while this replica was alone, "
                "before it restored the check from the state index",
                result.check,
            )
            self._rerun(loaded)
            return
        entry = self.store.get(result.check)
        old = entry.state if entry else None
        deploy = None
        if self.events is not None and old is not None and old is not result.state:
            check = self.checkset.checks.get(result.check)
            found = self.events.after_deploy(check.tags if check else (), result.evaluated_at)
            deploy = found.model_dump() if found is not None else None
        transition = self.store.record(result, lateness, deploy, persist=self._may_write_state())
        if transition is not None:
            state_log.info(
                "%s: %s -> %s: %s%s",
                result.check,
                old.name if old is not None else "PENDING",
                result.state.name,
                result.summary,
                f" ({deploy['text']})" if deploy else "",
                extra={
                    "check": result.check,
                    "old_state": old.name if old is not None else None,
                    "new_state": result.state.name,
                    "summary": result.summary,
                    **({"after_deploy": deploy["text"]} if deploy else {}),
                },
            )
        for callback in self.result_listeners:
            try:
                callback(result, transition)
            except Exception:
                log.exception("a result callback failed")
        for listener in self.listeners:
            try:
                listener.on_result(result, transition)
            except Exception:
                log.exception("an output failed to take a result")

    async def run_now(self, name: str) -> Result | None:
        """Evaluate one check immediately (API "run now"); the result is stored as usual.

        It goes through the scheduler, so it never runs beside a scheduled run of the same
        check (it waits for one in flight). ``None`` when the run failed unexpectedly. In cluster
        mode only the owner runs it (:class:`NotOwner` elsewhere): one writer per check.
        """
        if self.cluster is not None:
            owner = self.cluster.owner_of(name)
            if owner != self.cluster.replica_id:
                raise NotOwner(name, owner, self.cluster.url_of(owner))
        return await self.scheduler.run_now(self.checkset.checks[name])

    # -- reload --------------------------------------------------------------------------

    async def reload(self) -> ReloadStatus:
        """Validate the check files, then swap atomically; on error keep the running set."""
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load_checks, list(self.settings.checks))
                # Passive targets were validated at start; a problem there (a password file
                # gone) is theirs to report and must not block reloading the check files.
                problems = validate_references(self.settings, new, passive=False)
                if problems:
                    raise CheckFileError(problems)
            except Exception as error:
                # Any failure (a located CheckFileError, or anything unforeseen) keeps the
                # running set and is reported: the API answers JSON, /metrics shows 0.
                text = str(error) if isinstance(error, CheckFileError) else f"{error!r}"
                self.reload_status = ReloadStatus(successful=False, error=text)
                log.error("reload rejected, the running checks stay as they are:\n%s", text)
                return self.reload_status
            log_warnings(new)
            old = self.checkset.checks
            added = [n for n in new.checks if n not in old]
            removed = [n for n in old if n not in new.checks]
            changed = [
                n for n in new.checks if n in old and not same_definition(old[n], new.checks[n])
            ]
            self.checkset = new
            self.store.sync(self.intervals(new.checks))
            if self.cluster is not None:
                await self.cluster.rebalance()
            else:
                # changed checks run again soon: their last result was judged by the old
                # definition (new thresholds must not wait a whole interval to show)
                self.scheduler.set_checks(dict(new.checks), eager=self._overdue() | set(changed))
            self.reload_status = ReloadStatus(True, time.time(), None, added, changed, removed)
            if _file_digest(self.settings.source) != self._config_seen:
                log.warning(
                    "the configuration file %s changed since esbridge started: a reload reads "
                    "the check files only, restart esbridge to apply it",
                    self.settings.source,
                )
            log.info(
                "reloaded %d checks: %d added, %d changed, %d removed",
                len(new.checks),
                len(added),
                len(changed),
                len(removed),
            )
            return self.reload_status

    # -- health --------------------------------------------------------------------------

    async def _health_loop(self) -> None:
        """Keep ``elasticsearch_up`` true to the moment, even between check runs."""
        while True:
            await asyncio.gather(*(c.ping(5.0) for c in self.connections), return_exceptions=True)
            await asyncio.sleep(HEALTH_INTERVAL)

    def _may_write_state(self) -> bool:
        """Single instance: always. A replica: only while its membership is confirmed.

        A replica that has not read the members for a lease may have been dropped by the
        others, who then own its checks: its results of that time (UNKNOWN "unreachable", as
        a rule) stay in its own view and are never written over the owners' documents,
        neither then nor once Elasticsearch answers again.
        """
        return self.cluster is None or self.cluster.membership.confirmed()

    async def _flush(self) -> None:
        assert self.persistence is not None
        if not self._may_write_state():
            if dropped := self.store.discard_dirty():
                log.warning(
                    "not writing the state of %d checks: this replica has not confirmed its "
                    "membership for a lease (their owners write them)",
                    dropped,
                )
            return
        await self.persistence.flush()

    async def _flush_loop(self) -> None:
        interval = self.settings.state.flush_interval.total_seconds()
        while True:
            await asyncio.sleep(interval)
            try:
                await self._flush()
            except Exception:
                log.exception("state flush failed unexpectedly")

    async def _events_loop(self) -> None:
        """Every replica reads the deploy events from Elasticsearch, so all see the same."""
        assert self.events is not None
        interval = self.settings.events.refresh_interval.total_seconds()
        while True:
            try:
                await self.events.refresh()
            except Exception:
                log.exception("reading deploy events failed unexpectedly")
            await asyncio.sleep(interval)

    def readiness(self) -> dict[str, Any]:
        """What ``/readyz`` reports: checks loaded, Elasticsearch reachable, store writable."""
        connections = {
            c.name: {"up": bool(c.up), "last_error": None if c.up else c.stats.last_error}
            for c in self.connections
        }
        checks_ok = len(self.checkset.checks) > 0
        es_ok = all(v["up"] for v in connections.values())
        store_ok = self.persistence is None or self.store.persistence_ok is not False
        cluster_ok = self.cluster is None or self.cluster.ready
        return {
            "ready": checks_ok and es_ok and store_ok and cluster_ok,
            "checks_loaded": len(self.checkset.checks),
            "elasticsearch": connections,
            "state_store": {
                "enabled": self.persistence is not None,
                "writable": self.store.persistence_ok,
                "error": self.store.persistence_error,
                "pending_writes": self.store.dirty_count,
            },
            "config": {
                "last_reload_successful": self.reload_status.successful,
                "error": self.reload_status.error,
            },
            **({"cluster": self.cluster.readiness()} if self.cluster is not None else {}),
            # outputs (passive targets): reported, never a reason to be unready
            "passive": [t for listener in self.listeners for t in listener.status()],
        }


def _file_digest(path: Path | None) -> bytes | None:
    """What the file holds now, as a digest (None: no file, or it cannot be read)."""
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).digest()
    except OSError:
        return None
