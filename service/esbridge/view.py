"""The read-only view the outputs take instead of the service.

Metrics, the API, the plugin text and passive delivery read what the service knows through
this one narrow surface: the loaded definitions, the results with staleness applied, and the
service's status. None of them can start a run, reload or change the store through it; the
two operations the API offers (run now, reload) go through :class:`Control`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from esbridge.result import Result, State

if TYPE_CHECKING:
    from prometheus_client.core import Metric

    from esbridge.config import ApiConfig, Settings
    from esbridge.esclient import Connection
    from esbridge.events import DeployEvent, EventStore
    from esbridge.listeners import ResultListener
    from esbridge.loader import CheckSet
    from esbridge.models import CheckDefinition
    from esbridge.scheduler import LatenessHistogram
    from esbridge.store import CheckState, ResultStore


@dataclass
class ReloadStatus:
    """Outcome of the last (re)load, shown by the API and ``/metrics``."""

    successful: bool = True
    at: float = field(default_factory=time.time)
    error: str | None = None
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


class NotOwner(Exception):
    """A replica asked to run a check that another replica owns (cluster mode).

    Only the owner evaluates, persists and pushes a check; a run elsewhere would be a second
    writer of its state. ``owner`` is None while the replicas have not formed yet.
    """

    def __init__(self, check: str, owner: str | None, url: str | None) -> None:
        self.check, self.owner, self.url = check, owner, url
        if owner is None:
            text = f"check {check!r} has no owner yet (the replicas are forming): try again"
        else:
            where = f" at {url}" if url else ""
            text = f"check {check!r} is evaluated by replica {owner!r}{where}: run it there"
        super().__init__(text)


class Control(Protocol):
    """What the API may ask of the service besides reading: its view, two operations, the
    deploy-event store it writes to, and the settings a preview opens its own client with."""

    view: ServiceView
    events: EventStore | None
    settings: Settings

    async def run_now(self, name: str) -> Result | None:
        """Evaluate ``name`` now; raises :class:`NotOwner` on a replica that does not own it."""
        ...

    async def reload(self) -> ReloadStatus: ...


class ClusterReader(Protocol):
    """The cluster coordinator as outputs see it (``esbridge.cluster.Cluster``)."""

    def owner_of(self, name: str) -> str | None: ...

    def describe(self, runs: bool = False) -> dict[str, Any]: ...

    def metrics(self) -> Iterator[Metric]: ...


@dataclass(frozen=True)
class SchedulerFacts:
    """Scheduler figures for ``/metrics`` and the API, read live."""

    lateness: LatenessHistogram
    skipped: Callable[[], int]
    next_run: Callable[[str], float | None]


class ServiceView:
    """Read-only access to one running service (built by :class:`esbridge.app.Service`)."""

    def __init__(
        self,
        store: ResultStore,
        *,
        checkset: Callable[[], CheckSet] | None = None,
        scheduler: SchedulerFacts | None = None,
        connections: Callable[[], Iterable[Connection]] = tuple,
        api: ApiConfig | None = None,
        default_interval: float = 60.0,
        default_timeout: float = 10.0,
        started_at: float = 0.0,
        reload_status: Callable[[], ReloadStatus] = ReloadStatus,
        readiness: Callable[[], dict[str, Any]] = dict,
        stopping: Callable[[], bool] = bool,
        listeners: Callable[[], Iterable[ResultListener]] = tuple,
        cluster: ClusterReader | None = None,
        deploys: Callable[[Iterable[str], float], list[DeployEvent]] | None = None,
    ) -> None:
        """A view of ``store``; every other part is optional (a view of a store alone shows
        its entries with no definitions, as the metrics tests use it)."""
        from esbridge.config import ApiConfig
        from esbridge.loader import CheckSet
        from esbridge.scheduler import LatenessHistogram

        empty = CheckSet()
        self._store = store
        self._checkset = checkset or (lambda: empty)
        self.scheduler = scheduler or SchedulerFacts(LatenessHistogram(), int, lambda _: None)
        self._connections = connections
        self.api = api or ApiConfig()
        self.default_interval = default_interval
        self.default_timeout = default_timeout
        self.started_at = started_at
        self._reload_status = reload_status
        self._readiness = readiness
        self._stopping = stopping
        self._listeners = listeners
        self.cluster = cluster
        self._deploys = deploys

    # -- definitions -------------------------------------------------------------------------

    @property
    def checks(self) -> Mapping[str, CheckDefinition]:
        """The loaded check definitions by name (the current set, after any reload)."""
        return self._checkset().checks

    @property
    def files(self) -> list[str]:
        return [str(f) for f in self._checkset().files]

    def close_names(self, name: str) -> list[str]:
        """Loaded check names close to ``name`` ("did you mean")."""
        return self._checkset().close_names(name)

    def interval(self, name: str) -> float:
        entry = self._store.get(name)
        return entry.interval if entry is not None else self.default_interval

    def timeout(self, name: str) -> float:
        check = self.checks.get(name)
        if check is not None and check.timeout is not None:
            return check.timeout.total_seconds()
        return self.default_timeout

    # -- results -----------------------------------------------------------------------------

    def entry(self, name: str) -> CheckState | None:
        """The store's entry of a loaded check (``None`` for any other name)."""
        return self._store.get(name) if name in self.checks else None

    def entries(self) -> list[CheckState]:
        """Every entry of the store, in store order (the shared view included)."""
        return self._store.all()

    def effective(self, entry: CheckState, now: float | None = None) -> Result | None:
        """The result as outputs must show it: UNKNOWN "stale" when too old."""
        return self._store.effective(entry, now)

    def is_stale(
        self, entry: CheckState, now: float | None = None, at: float | None = None
    ) -> bool:
        return self._store.is_stale(entry, now, at)

    def max_age(self, entry: CheckState) -> float:
        return self._store.max_age(entry)

    def stale_since(self, entry: CheckState, now: float | None = None) -> float | None:
        return self._store.stale_since(entry, now)

    def pending(self, name: str) -> Result:
        """What a check with no result yet shows: UNKNOWN "pending", with its first run."""
        from esbridge.errors import ErrorKind

        next_run = self.scheduler.next_run(name)
        when = f" (first run at {iso(next_run)})" if next_run else ""
        return Result(
            check=name,
            state=State.UNKNOWN,
            summary=f"pending: not evaluated yet{when}",
            error_kind=ErrorKind.PENDING,
            evaluated_at=0.0,
        )

    def deploys(self, tags: Iterable[str], since: float) -> list[DeployEvent]:
        """Deploys of a matching tag since ``since`` (none when events are off)."""
        return self._deploys(tags, since) if self._deploys is not None else []

    # -- service status ----------------------------------------------------------------------

    def connections(self) -> Iterable[Connection]:
        return self._connections()

    @property
    def reload_status(self) -> ReloadStatus:
        return self._reload_status()

    @property
    def persistence_ok(self) -> bool | None:
        return self._store.persistence_ok

    @property
    def pending_writes(self) -> int:
        return self._store.dirty_count

    @property
    def stopping(self) -> bool:
        return self._stopping()

    def readiness(self) -> dict[str, Any]:
        return self._readiness()

    def listeners(self) -> Iterable[ResultListener]:
        return self._listeners()


def iso(ts: float | None) -> str | None:
    """``2024-05-01T12:00:00Z`` (whole seconds, UTC) or ``None``."""
    from datetime import UTC, datetime

    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
