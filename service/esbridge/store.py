"""The result store: the one source of truth for "what is the state now, and since when".

Keeps the latest result per check (groups included), the time of the last state change,
counters and the last N transitions. Every output reads it; nothing else keeps state.

It persists to an Elasticsearch index (one document per check, written in bulk) so that a
restart restores ``since`` and the transition history: no false recovery, no flapping. When
persistence fails, evaluation goes on in memory, the documents stay dirty and are written
when the index accepts writes again; the failure is visible in ``/readyz``, the API and
``esbridge_state_store_up``.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Set
from dataclasses import dataclass, field
from typing import Any, TypeVar

import orjson

from esbridge.result import Result, State
from esbridge.slots import first_offset, last_slot
from esbridge.staleness import stale, too_old
from esbridge.statedoc import (
    STATE_MAPPING,
    Transition,
    dumps,
    group_to_dict,
    perfdatum_from_dict,
    perfdatum_to_dict,
    result_from_dict,
    result_to_dict,
    result_to_document,
    stored_number,
    stored_time,
    transition_from_dict,
    transition_to_dict,
)

__all__ = [
    "STATE_MAPPING",
    "CheckState",
    "ResultStore",
    "Transition",
    "dumps",
    "group_to_dict",
    "perfdatum_from_dict",
    "perfdatum_to_dict",
    "result_from_dict",
    "result_to_dict",
    "transition_from_dict",
    "transition_to_dict",
]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# With write on change, a check that keeps giving the same answer has its document rewritten
# at least this often (seconds), so that ``runs`` and ``last_success_ts`` in the index, and
# the result a restart of every replica reads back, are never much older than that.
REWRITE_AFTER = 600.0  # state.rewrite_after's default
_LATEST_RUN = 253402300799.0  # 9999-12-31: a run time beyond is no time (see stored_time)


@dataclass(slots=True)
class Mark:
    """An owner's watermark, as a replica that follows its checks last applied it.

    ``at`` is the owner's wall clock: every check it vouched for (announced, and not listed
    behind since) ran on each of its slots up to ``at`` and gave the answer its document
    holds. The
    entries of those checks point at one shared ``Mark``, so a heartbeat moves every one of
    them forward by setting one number (see ``esbridge.sharedview``)."""

    at: float = 0.0


@dataclass(slots=True)
class CheckState:
    """Everything the store knows about one check.

    ``held`` is the result as recorded, restored or read from the owner's document; ``ran``
    the time and duration of a later run of that same answer that its owner announced (a
    replica following another's check, see :meth:`ResultStore.follow`), and ``mark`` the
    owner's watermark it follows, if any: its latest run is then the check's last slot up
    to the mark (``slot`` is its offset on the interval's grid, the scheduler's). Following
    builds nothing: staleness reads the time alone (:attr:`evaluated_at`), ``/metrics`` the
    held answer and :attr:`timing`, and the :class:`Result` the API shows (:attr:`result`)
    is built from them when it is read. ``held`` and ``ran`` are set through
    :attr:`result` and :meth:`rerun`, which keep the time.
    """

    name: str
    held: Result | None = None
    since: float | None = None
    previous_state: State | None = None
    consecutive_failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    transitions: deque[Transition] = field(default_factory=lambda: deque(maxlen=50))
    group_since: dict[str, tuple[int, float]] = field(default_factory=dict)
    interval: float = 60.0
    slot: float = 0.0
    lateness: float = 0.0
    ran: tuple[float, float] | None = None
    mark: Mark | None = None
    # when the latest result was evaluated (``ran``'s time, else ``held``'s), kept by the
    # setters below: staleness asks it of every check at every scrape
    at: float | None = field(default=None, init=False)
    count: int = field(default=0, init=False)  # runs, as counted or read (see runs)
    succeeded: float | None = field(default=None, init=False)  # see last_success
    _shown: Result | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.ran is not None:
            self.at = self.ran[0]
        elif self.held is not None:
            self.at = self.held.evaluated_at

    def _marked(self) -> float | None:
        """The check's last slot up to its owner's mark, when that is later than ``at``
        (None: no mark followed, or nothing it says yet)."""
        mark, at = self.mark, self.at
        if mark is None or at is None:
            return None
        slot = last_slot(mark.at, self.slot, self.interval)
        return slot if slot > at else None

    @property
    def evaluated_at(self) -> float | None:
        """When the latest result was evaluated: ``at``, or the slot the owner's mark says."""
        slot = self._marked()
        return self.at if slot is None else slot

    @property
    def runs(self) -> int:
        """Evaluations counted: by this replica, or by the owner as last read, plus the
        slots its mark passed since."""
        slot = self._marked()
        if slot is None:
            return self.count
        return self.count + int((slot - self.at) / self.interval + 0.5)  # type: ignore[operator]

    @runs.setter
    def runs(self, value: int) -> None:
        self.count = value

    @property
    def last_success(self) -> float | None:
        """When a run last succeeded (a run the mark says repeated the answer did)."""
        slot = self._marked()
        return self.succeeded if slot is None else slot

    @last_success.setter
    def last_success(self, value: float | None) -> None:
        self.succeeded = value

    @property
    def result(self) -> Result | None:
        """The latest result: ``held``, at the time of the latest run announced of it."""
        held = self.held
        if held is None:
            return None
        timing = self.timing
        if timing is None or timing[0] == held.evaluated_at:
            return held
        shown = self._shown
        if shown is None or shown.evaluated_at != timing[0]:  # built once per run, when read
            shown = self._shown = held.timed(timing[0], timing[1])
        return shown

    @result.setter
    def result(self, value: Result | None) -> None:
        self.held, self.ran, self.mark, self._shown = value, None, None, None
        self.at = value.evaluated_at if value is not None else None

    @property
    def timing(self) -> tuple[float, float] | None:
        """The latest result's ``(evaluated_at, duration)``, without building it."""
        ran = self.ran
        if self.mark is not None and (slot := self._marked()) is not None:
            return slot, ran[1] if ran is not None else self.held.duration  # type: ignore[union-attr]
        if ran is not None:
            return ran
        return (self.held.evaluated_at, self.held.duration) if self.held is not None else None

    def rerun(self, evaluated_at: float, duration: float) -> None:
        """``held``'s answer again, from a run at ``evaluated_at`` (announced by its owner)."""
        self.ran, self._shown, self.at = (evaluated_at, duration), None, evaluated_at

    def follow(self, mark: Mark | None) -> None:
        """Follow ``mark`` (None: stop), keeping what the mark followed so far said: the
        owner's claim held up to the mark as it is now, not beyond."""
        if self.mark is mark:
            return
        slot = self._marked()
        if slot is not None:
            self.count = self.runs
            self.succeeded = slot
            self.rerun(slot, self.ran[1] if self.ran is not None else self.held.duration)  # type: ignore[union-attr]
        self.mark = mark

    @property
    def state(self) -> State | None:
        return self.held.state if self.held else None


class ResultStore:
    """Latest results, transitions and counters; persistence is optional and never blocking."""

    def __init__(
        self, history: int = 50, staleness_factor: float = 2.0, rewrite_after: float = REWRITE_AFTER
    ) -> None:
        self.history = history
        self.staleness_factor = staleness_factor
        self._checks: dict[str, CheckState] = {}
        # name -> change number: a flush marks clean only what it wrote, so a result recorded
        # while the bulk request is in flight stays dirty (no lost update).
        self._dirty: dict[str, int] = {}
        self._changes = 0
        # checks whose latest result was recorded with persist=False: this replica's own view
        # only, which gives way to the owner's document whatever its age (see adopt)
        self._provisional: set[str] = set()
        self.persistence_ok: bool | None = None  # None: not configured / not tried yet
        self.persistence_error: str | None = None
        self.last_flush: float = 0.0
        self.flush_failures: int = 0
        # check -> (the result adopted last, the fingerprint of its document without the
        # run's times and counters, or None, and the evaluated_at of the document's result,
        # which names that write): see _read_shared and follow
        self._adopted: dict[str, tuple[Result, int | None, float]] = {}
        # Write on change (a replica whose every peer follows its progress): a run that
        # repeats the answer this process last wrote is not written again, only announced
        # in the heartbeat (see progress). check -> the result its state document holds.
        self.write_on_change = False
        # ... for checks at this interval or longer: announced runs reach the other replicas
        # a heartbeat or two later than written ones, which a short interval cannot spare
        self.write_on_change_from = 0.0
        # ... and at least this often all the same (state.rewrite_after)
        self.rewrite_after = rewrite_after
        self._written: dict[str, Result] = {}
        # check -> evaluated_at of the result in the last document this process wrote, kept
        # when the check moves away: the shared view must not set a check it just lost back
        # to that write of its own, older than its last runs (announced, not written)
        self._wrote: dict[str, float] = {}
        # check -> the wall time before which a write is not trusted to be the index's last
        # (the owner changed: the replica that owned it may still write for a moment)
        self._settling: dict[str, float] = {}
        # check -> the wall time this replica restored it, back from a time alone: a run that
        # started before is of that time (see started_before_restore)
        self._restored_at: dict[str, float] = {}
        # A replica writes only the checks it owns (None: every check, a single instance).
        self.writes_only: Set[str] | None = None
        # check -> [evaluated_at, duration, runs, evaluated_at of the document's result] for
        # every check whose latest result says what its written document says
        self._progress: dict[str, list[float]] = {}
        # checks whose entry in _progress was set since the last heartbeat's (announce)
        self._fresh: set[str] = set()
        # Marks (announce_marked): the last mark announced, what the heartbeats said of each
        # check in step since (and that, encoded once per change), the checks behind, and
        # the owned checks by interval and slot
        self._mark: float | None = None
        self._said: dict[str, list[float]] = {}
        self._said_doc: orjson.Fragment | None = None
        self._behind: set[str] = set()
        self._grid_for: Set[str] | None = None
        self._regrid: set[str] = set()  # checks whose interval (so slots) changed since
        # since the last mark: checks announced with another write than before, checks that
        # left _progress (a change, a failure, forgotten), or every check (cleared)
        self._rekeyed: set[str] = set()
        self._unsaid: set[str] = set()
        self._unsaid_all = False
        self._grid: list[tuple[float, list[float], list[str]]] = []

    # -- the set of checks ---------------------------------------------------------------

    def sync(self, intervals: dict[str, float]) -> None:
        """Follow the loaded checks: add new ones, drop removed ones, keep the rest."""
        for name in list(self._checks):
            if name not in intervals:
                del self._checks[name]
                self._adopted.pop(name, None)
                self._forget_written(name)
                self._wrote.pop(name, None)
                self._settling.pop(name, None)
                self._restored_at.pop(name, None)
                self._dirty.pop(name, None)
                self._provisional.discard(name)
        for name, interval in intervals.items():
            entry = self._checks.get(name)
            if entry is None:
                self._checks[name] = CheckState(
                    name,
                    transitions=deque(maxlen=self.history),
                    interval=interval,
                    slot=first_offset(name, interval),
                )
            elif entry.interval != interval:
                # what an owner's mark said was of the slots of the interval before
                entry.follow(None)
                self._regrid.add(name)
                entry.interval, entry.slot = interval, first_offset(name, interval)

    @property
    def provisional(self) -> Set[str]:
        """Checks whose latest result was recorded but not to be written (``persist=False``)."""
        return self._provisional

    def names(self) -> list[str]:
        return list(self._checks)

    def get(self, name: str) -> CheckState | None:
        return self._checks.get(name)

    def all(self) -> list[CheckState]:
        return list(self._checks.values())

    # -- recording -----------------------------------------------------------------------

    def record(
        self,
        result: Result,
        lateness: float = 0.0,
        after_deploy: dict[str, Any] | None = None,
        persist: bool = True,
    ) -> Transition | None:
        """Store a new result; return the transition when the state changed.

        ``after_deploy`` is attached to the transition, if there is one (a first result is
        no change, so it gets none). ``persist=False``: never written to the state index
        (a replica that cannot confirm it still owns the check), and *provisional*: the
        owner's document replaces it in :meth:`adopt` even when older.
        """
        entry = self._checks.get(result.check)
        if entry is None:  # removed by a reload while it ran: drop it
            return None
        entry.follow(None)  # its own run now: what an owner's mark said stands before it
        old = entry.state
        entry.runs += 1
        entry.lateness = lateness
        if result.error_kind and result.state is State.UNKNOWN:
            entry.consecutive_failures += 1
            entry.errors[result.error_kind] = entry.errors.get(result.error_kind, 0) + 1
        else:
            entry.consecutive_failures = 0
            entry.last_success = result.evaluated_at
        transition = None
        if old is not result.state:
            transition = Transition(
                result.evaluated_at,
                old,
                result.state,
                result.summary,
                after_deploy if old is not None else None,
            )
            entry.transitions.append(transition)
            entry.previous_state = old
            entry.since = result.evaluated_at
        undated = entry.since is None
        if undated and transition is None:  # restored without a since: count from now
            entry.since = result.evaluated_at
        for group in result.groups:
            known = entry.group_since.get(group.key_text)
            if known is None or known[0] != int(group.state):
                entry.group_since[group.key_text] = (int(group.state), result.evaluated_at)
        current = {g.key_text for g in result.groups}
        for key in [k for k in entry.group_since if k not in current]:
            del entry.group_since[key]
        entry.result = result
        name = result.check
        if not persist:  # a document is made from the entry as it is now: not even an earlier
            self._provisional.add(name)  # write; and what the index holds is no longer known
            self.mark_clean([name])
            self._forget_written(name)
        elif self._repeats(entry, result, transition is None and not undated):
            self._announce(name, result, entry.runs, self._written[name].evaluated_at)
        else:
            self._provisional.discard(name)
            self._unsay(name)
            self._mark_dirty(name)
        return transition

    def _repeats(self, entry: CheckState, result: Result, unchanged: bool) -> bool:
        """Whether ``result`` needs no write: write on change is on (for checks at this
        interval), the entry changed in nothing but the run's times and counters, and the
        answer is the one written, not long ago (a document is rewritten at least every
        ``rewrite_after``, so what the index holds after the replicas are gone is never much
        older than that)."""
        written = self._written.get(entry.name)
        return (
            self.write_on_change
            and unchanged
            and entry.interval >= self.write_on_change_from
            and written is not None
            and entry.name not in self._dirty
            and entry.name not in self._provisional
            and entry.consecutive_failures == 0
            and result.evaluated_at - written.evaluated_at < self.rewrite_after
            and written.same_answer(result)
        )

    def write_repeats(self) -> int:
        """Mark dirty every check whose latest run repeated the written answer (announced
        only): the last runs of a replica that stops. Return how many."""
        repeated = [name for name, item in self._progress.items() if item[0] != item[3]]
        for name in repeated:
            self._mark_dirty(name)
        return len(repeated)

    def _announce(self, name: str, run: Result, runs: int, key: float) -> None:
        """What the heartbeat says of ``name``: ``run`` repeats the write named ``key``."""
        progress = self._progress
        old = progress.get(name)
        progress[name] = [run.evaluated_at, run.duration, runs, key]
        self._fresh.add(name)
        if old is None or old[3] != key:
            self._rekeyed.add(name)

    def _forget_written(self, name: str) -> None:
        self._written.pop(name, None)
        self._unsay(name)
        self._fresh.discard(name)

    def _unsay(self, name: str) -> None:
        """``name``'s latest result is no longer the written answer: not announced."""
        if self._progress.pop(name, None) is not None:
            self._unsaid.add(name)

    def forget_written(self, names: Iterable[str], settle: float = 0.0) -> None:
        """Forget what this process wrote of ``names``: their owner changed, so another
        replica may have written them since (or will), and a run here that repeats this
        process's last write must not be taken as repeating what the index holds.

        ``settle`` (seconds; a gained check): the replica that owned it until now may go on
        writing it until its own next round, so this one's writes count as the index's last
        only from a run that far ahead; until then every run is written."""
        until = time.time() + settle
        for name in names:
            self._forget_written(name)
            if settle > 0:
                self._settling[name] = until

    def mark_restored(self, names: Iterable[str], at: float | None = None) -> None:
        """``names`` were restored at ``at`` (now) from the documents another replica wrote
        while this one was alone (a partition, every search failing as a rule): see
        :meth:`started_before_restore`."""
        at = time.time() if at is None else at
        for name in names:
            self._restored_at[name] = at

    def started_before_restore(self, result: Result) -> bool:
        """Whether ``result`` comes from a run that started before its check was restored
        (:meth:`mark_restored`; asked once per mark, by the first result after it). Such a
        run is of the time alone, and in flight across the heal it would land on the history
        just restored as a change (UNKNOWN, then a false recovery) and be written as the
        owner's: its result is dropped. A check regained while this replica was confirmed
        all along is never marked: a run in flight then is the owner's own."""
        at = self._restored_at.pop(result.check, None)
        return at is not None and result.evaluated_at < at

    def write_again(self, names: Iterable[str], settle: float) -> None:
        """Write ``names`` at their next runs again, until ``settle`` seconds from now and
        once after: another replica counted this one out for a moment and may have written
        them meanwhile (see esbridge.membership), so this process's last write may no longer
        be what the index holds. Unlike :meth:`forget_written`, what the heartbeat announces
        of them stands until their next run: a peer holding this process's write may still
        follow it; one holding the other's reads the next write."""
        until = time.time() + settle
        written, settling = self._written, self._settling
        for name in names:
            written.pop(name, None)
            settling[name] = max(until, settling.get(name, until))

    def progress(self, names: Set[str]) -> dict[str, list[float]]:
        """What a heartbeat announces of ``names``: for each check whose latest result says
        what its written document says, that run's time, duration and count, and the
        ``evaluated_at`` of the document's result. A peer holding that document takes the
        run's time from here; one holding another reads the document (see :meth:`follow`).
        A check whose change is not written yet is left out: its peers keep what they have
        (and its age shows) until the write."""
        progress = self._progress
        if progress.keys() <= names:  # as a rule (a lost check leaves it): a copy, 4x quicker
            return dict(progress)
        return {name: item for name, item in progress.items() if name in names}

    def announce(self, names: Set[str]) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
        """What one heartbeat announces of ``names``: what :meth:`progress` says of the
        checks whose entry was set since the heartbeat before (the runs since then, and the
        writes), and all of it. Peers that read the heartbeat before apply the first; one
        that missed it reads the second (see ``esbridge.sharedview``). A check left out of
        both is no news, as before: its peers keep what they hold."""
        every = self.progress(names)
        fresh, self._fresh = self._fresh, set()
        return {name: every[name] for name in fresh if name in every}, every

    def announce_marked(self, names: Set[str], upto: float) -> dict[str, Any]:
        """What one heartbeat announces of ``names`` when every peer follows marks: the
        *mark* ``upto`` (this process's wall clock), the checks it says nothing of
        (``behind``), and per check only what changed since the heartbeat before
        (``progress``: a new write, or back in step), beside all of that (``progress_all``).

        The mark says: every check announced and not behind ran on each of its slots up to
        ``upto`` (the scheduler's grid) and gave the answer its written document holds. A
        check is behind while its latest result is not that answer (a change not written
        yet, a failure) or its run of a slot up to ``upto`` has not ended yet (a late or
        stuck run), once when it is no longer owned, and once after a reload changed its
        interval (what was said of it was of other slots). So a steady check costs a
        heartbeat nothing, and its peers nothing either: they read its time off the mark
        (``CheckState.evaluated_at``)."""
        progress, said, checks = self._progress, self._said, self._checks
        self._fresh = set()  # every run since: what announce says, not this
        rekeyed, self._rekeyed = self._rekeyed, set()
        unsaid, self._unsaid = self._unsaid, set()
        previous, before = self._mark, self._behind
        gone: list[str] = []  # said before, not vouched for now: behind this once
        regrid = names is not self._grid_for or bool(self._regrid)
        if regrid:  # a rebalance, a reload
            self._grid_for, self._grid = names, _grid(checks, names)
            gone = [n for n in said if n not in names]
            for name in gone:
                del said[name]
            self._said_doc = None
        if regrid or previous is None or upto <= previous or self._unsaid_all:
            # every check (after a clock stepped back too)
            behind = {n for n in names if n not in progress}  # not the written answer now
            behind.update(n for n in self._regrid if n in said)  # said at the old interval
            self._regrid, self._unsaid_all = set(), False
            behind.update(self._late(names, upto))
            candidates: Set[str] = names
        else:  # the checks behind before, those that left the written answer since, and
            # those with a slot since the mark before whose run has not ended
            behind = {n for n in before | unsaid if n in names and n not in progress}
            behind.update(self._late(before, upto))
            for name, slot in _due(self._grid, previous, upto):
                item = progress.get(name)
                if item is not None and item[0] < slot:
                    behind.add(name)
            candidates = rekeyed | before
        news: dict[str, list[float]] = {}
        for name in candidates:
            if name in behind or name not in names or (item := progress.get(name)) is None:
                continue
            old = said.get(name)
            if old is None or old[3] != item[3] or name in before:
                # with the interval it runs at: a peer's slots are the owner's only then
                news[name] = said[name] = [*item, checks[name].interval]
        dropped = [name for name in behind if name in said]
        for name in dropped:
            del said[name]
        if news or dropped or self._said_doc is None:
            self._said_doc = orjson.Fragment(orjson.dumps(said))
        self._mark, self._behind = upto, behind
        return {
            "progress": news,
            "progress_all": self._said_doc,
            "mark": upto,
            "behind": sorted(behind.union(gone)),
        }

    def _late(self, names: Iterable[str], upto: float) -> Iterator[str]:
        """Those of ``names`` announced whose run of their last slot up to ``upto`` has not
        ended (a late or stuck run)."""
        progress, checks = self._progress, self._checks
        for name in names:
            item, entry = progress.get(name), checks.get(name)
            if (
                item is not None
                and entry is not None
                and item[0] < last_slot(upto, entry.slot, entry.interval)
            ):
                yield name

    def unmark(self) -> None:
        """Announce every run again (a peer does not follow marks): the next mark starts over."""
        self._mark, self._grid_for = None, None
        self._rekeyed.clear()
        self._unsaid.clear()
        self._said.clear()
        self._said_doc = None
        self._behind = set()

    def _mark_dirty(self, name: str) -> None:
        self._changes += 1
        self._dirty[name] = self._changes

    # -- reading (what every output sees) ------------------------------------------------

    def max_age(self, entry: CheckState) -> float:
        return self.staleness_factor * entry.interval

    def effective(self, entry: CheckState, now: float | None = None) -> Result | None:
        """The result as outputs must show it: UNKNOWN "stale" when too old. Never a stale OK."""
        if entry.result is None:
            return None
        return stale(entry.result, time.time() if now is None else now, self.max_age(entry))

    def is_stale(
        self, entry: CheckState, now: float | None = None, at: float | None = None
    ) -> bool:
        """What :meth:`effective` says: too old, or from the future beyond the allowed age.
        ``at``: the entry's ``evaluated_at``, when the caller worked it out already."""
        if at is None:
            at = entry.at if entry.mark is None else entry.evaluated_at  # per check, per scrape
        if at is None:
            return False
        now = time.time() if now is None else now
        return too_old(at, now, self.max_age(entry))

    def stale_since(self, entry: CheckState, now: float | None = None) -> float | None:
        """When a stale result went stale (None while it counts): the UNKNOWN outputs show
        began then, not at the check's last transition (``since``, a day ago, say)."""
        at = entry.evaluated_at
        if at is None or not self.is_stale(entry, now):
            return None
        went = at + self.max_age(entry)
        return min(went, time.time() if now is None else now)

    # -- persistence ---------------------------------------------------------------------

    def dirty_documents(self) -> list[tuple[str, dict[str, Any]]]:
        """Documents of the changed checks; pass the same list to :meth:`mark_clean`."""
        checks, only = self._checks, self.writes_only
        if only is not None:  # a check this replica no longer owns is its owner's to write
            for name in [n for n in self._dirty if n not in only]:
                del self._dirty[name]
        return [
            (name, {**self.to_document(entry), "_change": change, "_result": entry.result})
            for name, change in list(self._dirty.items())
            if (entry := checks.get(name)) is not None
        ]

    def mark_clean(self, written: Iterable[tuple[str, dict[str, Any]] | str]) -> None:
        """Forget written entries, unless they changed again after their document was made.

        A document (not a bare name) is one the index now holds: its result is what later
        runs are compared with (write on change), and while the entry still says the same,
        the heartbeat announces it (:meth:`progress`)."""
        for item in written:
            if isinstance(item, str):
                self._dirty.pop(item, None)
                continue
            name, doc = item
            clean = self._dirty.get(name) == doc.get("_change")
            if clean:
                del self._dirty[name]
            result, entry = doc.get("_result"), self._checks.get(name)
            if isinstance(result, Result):
                self._wrote[name] = result.evaluated_at
            adopted = self._adopted.get(name)
            if (
                entry is None
                or not isinstance(result, Result)
                or (adopted is not None and adopted[0] is entry.held)  # another's since
            ):
                continue
            settling = self._settling.get(name)
            if settling is not None and result.evaluated_at >= settling:
                del self._settling[name]
                settling = None
            if settling is None:  # else the previous owner may write after this one: the
                self._written[name] = result  # next run is written too (announced all the same)
            if clean:
                self._announce(name, result, int(doc.get("runs") or 0), result.evaluated_at)

    def discard_dirty(self) -> int:
        """Forget every pending write; return how many (see ``Service._may_write_state``)."""
        count = len(self._dirty)
        self._dirty.clear()
        self._written.clear()  # another replica may write them now: no run repeats them
        self._progress.clear()
        self._unsaid_all = True
        return count

    def mark_all_dirty(self) -> None:
        self._progress.clear()
        self._unsaid_all = True
        for name, entry in self._checks.items():
            if entry.held is not None:
                self._mark_dirty(name)

    @property
    def dirty_count(self) -> int:
        return len(self._dirty)

    def to_document(self, entry: CheckState) -> dict[str, Any]:
        """The entry as the state index keeps it; empty fields are left out (read as such)."""
        doc: dict[str, Any] = {
            "check": entry.name,
            "state": entry.result.state.name if entry.result else None,
            "since_ts": entry.since,
            "last_success_ts": entry.last_success,
            "consecutive_failures": entry.consecutive_failures,
            "runs": entry.runs,
            "result": result_to_document(entry.result) if entry.result else None,
            "transitions": [transition_to_dict(t) for t in entry.transitions],
            "updated_at": int(time.time() * 1000),
        }
        if entry.previous_state is not None:
            doc["previous_state"] = entry.previous_state.name
        if entry.errors:
            doc["errors"] = dict(entry.errors)
        if entry.group_since:
            doc["group_since"] = {k: [s, t] for k, (s, t) in entry.group_since.items()}
        return doc

    def _readable(
        self,
        documents: Iterable[dict[str, Any]],
        what: str,
        read: Callable[[CheckState, dict[str, Any]], _T],
    ) -> Iterator[tuple[CheckState, _T]]:
        """The documents of loaded checks that ``read`` parses, with their entry; the others
        are logged."""
        for doc in documents:
            entry = self._checks.get(str(doc.get("check")))
            if entry is None:
                continue
            try:
                restored = read(entry, doc)
            except (AttributeError, KeyError, TypeError, ValueError) as exc:
                # A document of the wrong shape (hand-edited, another version): this check
                # starts afresh or keeps what it holds, never every other check's round.
                log.warning("ignoring unreadable %s state for check %s: %s", what, entry.name, exc)
                continue
            yield entry, restored

    def restore(self, documents: Iterable[dict[str, Any]]) -> int:
        """Load persisted state for the checks that are loaded now; return how many.

        A check evaluated before the restore (the store was unreachable at start) keeps its
        fresh result; the persisted history goes in front of it, and when the state did not
        change in between, ``since`` goes back to when it really began: no false transition.
        """
        restored = 0

        def read(entry: CheckState, doc: dict[str, Any]) -> _Restored:
            return _Restored.from_document(doc, self.history)

        for entry, old in self._readable(documents, "persisted", read):
            self._adopted.pop(entry.name, None)
            self._forget_written(entry.name)
            if entry.held is None:
                old.apply(entry)
            else:
                old.merge_into(entry)
                self._mark_dirty(entry.name)
            restored += 1
        return restored

    def adopt(
        self,
        documents: Iterable[dict[str, Any]],
        newer_only: bool = True,
        now: float | None = None,
    ) -> int:
        """Take over another replica's state of checks it owns (shared view, takeover).

        Replaces the entry as a whole (result, since, history, counters). ``newer_only``
        (a takeover's restore): only when the document's result is newer than the one held,
        or the one held is from the future beyond the allowed age (a clock stepped back, a
        bad document: it would never give way). Otherwise (the shared view, documents written
        since it last read them) whatever their ``evaluated_at``, which is the owner's clock:
        compared with this one, a document dated ahead would hide the owner's later writes;
        only an entry with a write of its own pending keeps it (that write is the newer
        document), and one holding its own runs keeps them over the last document this
        process wrote (a check it just lost, written on change: its later runs were only
        announced, and the new owner's write is another document). Either way a provisional
        entry gives way: recorded while this replica could not confirm it owned the check
        (alone during a partition, UNKNOWN as a rule),
        so the owner's document is the shared truth, older or not (its age shows, and
        staleness applies). Never marks dirty: the owner writes, not this one.
        """
        adopted, provisional, dirty, seen = 0, self._provisional, self._dirty, self._adopted
        now = time.time() if now is None else now
        for entry, (other, fingerprint) in self._readable(documents, "shared", self._read_shared):
            if other.result is None:
                continue
            held, held_at = entry.held, entry.evaluated_at
            if held is not None and held_at is not None and entry.name not in provisional:
                if not newer_only:
                    if entry.name in dirty:
                        continue
                    last = seen.get(entry.name)
                    if (last is None or last[0] is not held) and self._wrote.get(
                        entry.name
                    ) == other.result.evaluated_at:
                        continue  # this process's own write, older than its own runs held
                elif other.result.evaluated_at <= held_at and held_at <= now + self.max_age(entry):
                    continue
            other.apply(entry)
            seen[entry.name] = (other.result, fingerprint, other.result.evaluated_at)
            provisional.discard(entry.name)
            self._forget_written(entry.name)
            adopted += 1
        return adopted

    def follow(
        self,
        peer: str,
        progress: dict[str, Any],
        owners: Mapping[str, str],
        mark: Mark | None = None,
    ) -> tuple[list[str], int]:
        """Take the run times ``peer`` announced (:meth:`progress` on its side); return the
        checks it owns by ``owners`` whose document must be read (another than the one held)
        and how many entries were brought forward.

        An entry is brought forward only while it holds the very document the peer names
        (``evaluated_at`` of the document's result): the peer ran the check then and got the
        answer that document says, whoever owns the check now (a replica that just took it
        over holds that document and the run times its previous owner announced, before its
        own first run). Anything else (a change written since, a result of this replica's
        own, nothing read yet) is read from the index instead, never assumed.

        ``mark``: the peer's mark (it announces marks). An entry of a check it owns that
        holds the document it names follows the mark from now on; one that holds another
        stops following it (:meth:`CheckState.follow`), until that document is read.
        """
        fetch: list[str] = []
        moved = 0
        checks, adopted, provisional = self._checks, self._adopted, self._provisional
        for name, item in progress.items():
            entry = checks.get(name)
            if entry is None:
                continue
            held, last = entry.held, adopted.get(name)
            try:
                at, duration, runs, key = item[:4]
                every = item[4] if len(item) > 4 else None  # the interval a mark is of
            except (TypeError, ValueError, KeyError):
                continue  # not what this version announces: the document's own time stands
            if (
                held is None
                or last is None
                or last[0] is not held
                or last[2] != key
                or name in provisional
            ):
                if mark is not None and entry.mark is mark:
                    entry.follow(None)
                if owners.get(name) == peer:
                    fetch.append(name)
                continue
            if mark is not None:  # its slots are the owner's when its interval is
                entry.follow(mark if every == entry.interval else None)
            latest = entry.evaluated_at  # of held, or of a run followed since
            if type(at) is float and latest is not None and latest < at <= _LATEST_RUN:
                try:
                    took, count = float(duration), int(runs)
                except (TypeError, ValueError, OverflowError):
                    continue
                if not 0.0 <= took <= _LATEST_RUN or count < 0:  # NaN too: not a run
                    continue
                entry.rerun(at, took)  # the result itself is built when read
                entry.runs = count
                entry.last_success = at  # a repeated answer is never a failure (see record)
                moved += 1
        return fetch, moved

    def unfollow(self, mark: Mark, names: Iterable[str] | None = None) -> None:
        """Stop following ``mark`` (of ``names``, default every check): what it said so far
        stands as the entries' last run, nothing after (see :meth:`CheckState.follow`)."""
        checks = self._checks
        entries = checks.values() if names is None else (checks.get(n) for n in names)
        for entry in entries:
            if entry is not None and entry.mark is mark:
                entry.follow(None)

    def _read_shared(
        self, entry: CheckState, doc: dict[str, Any]
    ) -> tuple[_Restored | _Rerun, int | None]:
        """A document another replica wrote, read back, with its fingerprint when taken.

        Most checks give the same answer run after run (no errors, the cluster green): their
        document changes only in the run's times and counters, and decoding it all again was
        most of what a replica spent on each foreign document. When the value is the one
        held (a cheap first test that a changed count fails) the rest of the document is
        compared by a fingerprint with the one this entry's result was read from; the same,
        only the run's fields are read. The result must still be the one adopted then (not a
        run of this replica's own, not restored since).
        """
        held, last, raw = entry.held, self._adopted.get(entry.name), doc.get("result")
        if (
            held is None
            or last is None
            or last[0] is not held
            or type(raw) is not dict
            or raw.get("value") != held.value
        ):
            return _Restored.from_document(doc, self.history, entry), None
        fingerprint = _fingerprint(doc, raw)
        if fingerprint is None or fingerprint != last[1]:
            return _Restored.from_document(doc, self.history, entry), fingerprint
        rerun = held.timed(
            stored_time(raw.get("evaluated_at"), "evaluated_at") or 0.0,
            stored_number(raw.get("duration"), "duration") or 0.0,
        )
        last_success = stored_time(doc.get("last_success_ts"), "last_success_ts")
        return _Rerun(rerun, last_success, int(doc.get("runs") or 0)), fingerprint


# What a state document changes when its check gives the same answer again.
_RUN_FIELDS = ("last_success_ts", "runs", "updated_at", "_change")
_RESULT_RUN_FIELDS = ("evaluated_at", "duration")


def _fingerprint(doc: dict[str, Any], result: dict[str, Any]) -> int | None:
    """A hash of ``doc`` without the run's times and counters (None: it cannot be encoded).

    Hashing the encoded document keeps a few bytes per check, not a copy of its document;
    Python's hash of bytes is keyed per process, so no writer can aim at a collision.
    """
    rest, answer = dict(doc), dict(result)
    for name in _RUN_FIELDS:
        rest.pop(name, None)
    for name in _RESULT_RUN_FIELDS:
        answer.pop(name, None)
    rest["result"] = answer
    try:
        return hash(orjson.dumps(rest))
    except orjson.JSONEncodeError:
        return None


_NAMES = {state: state.name for state in State}  # Enum.name is a property: slow per call


def _same_history(raw: list[Any], held: deque[Transition]) -> bool:
    """Whether a document's transitions are the ones ``held`` already (oldest first).

    History only grows at its end (the oldest fall off the front), so the same length and
    the same newest transition mean the same list.
    """
    if len(raw) != len(held):
        return False
    if not raw:
        return True
    newest, mine = raw[-1], held[-1]
    return (
        isinstance(newest, dict)
        and newest.get("at") == mine.at
        and newest.get("to") == _NAMES[mine.to_state]
        and newest.get("from") == (_NAMES[mine.from_state] if mine.from_state else None)
        and newest.get("summary", "") == mine.summary
        and newest.get("after_deploy") == mine.after_deploy
    )


@dataclass(slots=True)
class _Rerun:
    """A document that differs from the one its entry was read from only in the run's
    times and counters (see ``ResultStore._read_shared``)."""

    result: Result
    last_success: float | None
    runs: int

    def apply(self, entry: CheckState) -> None:
        entry.result = self.result
        entry.last_success = self.last_success
        entry.runs = self.runs


@dataclass
class _Restored:
    """One persisted document, read back."""

    result: Result | None
    since: float | None
    previous_state: State | None
    last_success: float | None
    consecutive_failures: int
    runs: int
    errors: dict[str, int]
    transitions: list[Transition] | deque[Transition]
    group_since: dict[str, tuple[int, float]]
    history: int

    @classmethod
    def from_document(
        cls, doc: dict[str, Any], history: int, held: CheckState | None = None
    ) -> _Restored:
        """``held``: the entry this document replaces; its history is reused when unchanged."""
        prev = doc.get("previous_state")
        raw = doc.get("transitions") or []
        errors, group_since = doc.get("errors"), doc.get("group_since")
        transitions: list[Transition] | deque[Transition]
        if held is not None and _same_history(raw, held.transitions):
            transitions = held.transitions  # the usual case: a new result, the same history
        else:
            transitions = [transition_from_dict(t) for t in raw]
        return cls(
            result=result_from_dict(doc["result"], doc["check"]) if doc.get("result") else None,
            since=stored_time(doc.get("since_ts"), "since_ts"),
            previous_state=State[prev] if prev else None,
            last_success=stored_time(doc.get("last_success_ts"), "last_success_ts"),
            consecutive_failures=int(doc.get("consecutive_failures") or 0),
            runs=int(doc.get("runs") or 0),
            errors={str(k): int(v) for k, v in errors.items()} if errors else {},
            transitions=transitions,
            group_since=(
                {
                    str(k): (int(v[0]), stored_time(v[1], "group_since") or 0.0)
                    for k, v in group_since.items()
                }
                if group_since
                else {}
            ),
            history=history,
        )

    def apply(self, entry: CheckState) -> None:
        entry.result = self.result
        entry.since = self.since
        entry.previous_state = self.previous_state
        entry.last_success = self.last_success
        entry.consecutive_failures = self.consecutive_failures
        entry.runs = self.runs
        entry.errors = self.errors
        if self.transitions is not entry.transitions:
            entry.transitions = deque(self.transitions, maxlen=self.history)
        entry.group_since = self.group_since

    def merge_into(self, entry: CheckState) -> None:
        current = entry.result
        assert current is not None
        fresh = [
            t for t in entry.transitions if self.result is None or t.at > self.result.evaluated_at
        ]
        old_state = self.result.state if self.result is not None else None
        if fresh and fresh[0].from_state is None:
            # The first run since start recorded PENDING -> state; against the persisted state
            # that is either no change at all, or a change from the persisted state.
            first = fresh.pop(0)
            if old_state is not first.to_state:
                fresh.insert(0, Transition(first.at, old_state, first.to_state, first.summary))
        entry.transitions = deque([*self.transitions, *fresh], maxlen=self.history)
        if not fresh and old_state is current.state:
            entry.since = self.since
            entry.previous_state = self.previous_state
        elif fresh:
            entry.previous_state = fresh[-1].from_state
        entry.runs += self.runs
        for reason, count in self.errors.items():
            entry.errors[reason] = entry.errors.get(reason, 0) + count
        if entry.last_success is None:
            entry.last_success = self.last_success
        for key, (state, at) in self.group_since.items():
            known = entry.group_since.get(key)
            if known is not None and known[0] == state:
                entry.group_since[key] = (state, min(at, known[1]))


def _grid(
    checks: Mapping[str, CheckState], names: Iterable[str]
) -> list[tuple[float, list[float], list[str]]]:
    """``names`` by interval, each sorted by its slot's offset: ``(interval, offsets, names)``."""
    by_interval: dict[float, list[tuple[float, str]]] = {}
    for name in names:
        entry = checks.get(name)
        if entry is not None:
            by_interval.setdefault(entry.interval, []).append((entry.slot, name))
    grid = []
    for interval, slots in by_interval.items():
        slots.sort()
        grid.append((interval, [o for o, _ in slots], [n for _, n in slots]))
    return grid


def _due(
    grid: list[tuple[float, list[float], list[str]]], after: float, upto: float
) -> Iterator[tuple[str, float]]:
    """The checks of ``grid`` with a slot in ``(after, upto]``, with that slot (the last)."""
    for interval, offsets, names in grid:
        if upto - after >= interval:
            ranges = [(0, len(names))]
        else:
            low, high = after % interval, upto % interval
            start, end = bisect_right(offsets, low), bisect_right(offsets, high)
            # offsets in (low, high], or wrapped: (low, interval) and [0, high]
            ranges = [(start, end)] if low <= high else [(start, len(names)), (0, end)]
        period = upto - upto % interval  # the slot of offset o: period + o, or one before
        for start, end in ranges:
            for offset, name in zip(offsets[start:end], names[start:end], strict=True):
                slot = period + offset
                yield name, slot if slot <= upto else slot - interval
