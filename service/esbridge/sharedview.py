"""The read side of the shared state index: results of checks that other replicas own.

Every replica reads the state documents of the checks it does not own into its own store,
so every output (API, ``/nagios``, status page, ``/metrics``, ``check_esbridge``) answers
for every check from any replica, reading the store as always; outputs never query
Elasticsearch.

**Following what the owners announce** (:meth:`SharedView.follow`). Most checks give the same
answer run after run, and a document per run that says so again was most of what sharing
cost. So an owner whose every peer follows writes a check's document only when its answer
changes (and at least every ``state.rewrite_after``), and each heartbeat announces, for every
check it owns whose latest answer is the one written, the time, duration and count of that
run and which write it repeats (the ``evaluated_at`` of the document's result); a heartbeat
carries only what changed since the one before it, and a peer that did not apply that one
reads everything the owner announced instead. A peer whose
entry holds that very document takes the run's time from the heartbeat; one that holds
anything else (a change written since, nothing yet, a result of its own) reads the document
(real-time ``_mget``), never assumes it. A change not yet written is not announced, so its
peers keep the last answer, with its age, until the write. The bound: a run is seen on every
replica one flush and two heartbeats after it ends at the latest (the owner's heartbeat,
then the peer's round that reads it); a write costs one ``_mget`` round after that
heartbeat. A replica of a version that announces nothing makes its peers fall back, for its
checks, to reading documents as below, and makes every owner write every run again.

**Following marks.** Most checks repeat their answer on every slot of the scheduler's grid,
which every replica knows (a hash of the name places a check's slots). So while every peer
follows marks, an owner's heartbeat carries a mark (its wall clock, a flush behind) and the
checks it owns that are behind, and vouches: every check it announced and does not list behind
ran on each of its slots up to the mark with the answer written. Its news then names only new
writes and checks back in step, each with its interval; an entry that holds the document named,
at that interval, follows the peer's mark (``store.Mark``), and its time is its last slot up to
the mark, worked out when read. A heartbeat then costs a reader its news, its checks behind and
one number, whatever the number of foreign checks (see ``ResultStore.announce_marked``).

**Reading documents by their version** (:meth:`SharedView.refresh`): the checks of an owner
that announces nothing, those at intervals too short to wait for a heartbeat (their owners
write every run), and, for a moment after a rebalance, those whose owner changed. ``_mget``
is done in two steps: first ``_seq_no`` only, then the full
documents of those that changed, so an unchanged check costs a few dozen bytes per round
instead of its whole document.

An owner rewrites a check's document once per interval, so the first step asks only for the
documents that are due. When a round sees a document changed since the round before, the
owner wrote it after that earlier round (on this replica's clock: the replicas' clocks never
meet), so the next write comes one interval later at the soonest, less what the next run may
save on the one just written (its duration) and the owner's flush jitter: the document is
asked for again from ``lead`` (the owner's flush and a second) plus that duration before
then, and every round after, so an on-time write is seen within one round, as before. The
earlier round already bounds the write from below: no further round of slack is needed
(one cost a head more per change, three instead of two, measured in bench/cluster.py).
A check at a 60 s interval costs about two heads per change instead of twelve. Until a change has
been seen that way (at start, after a rebalance or reload) a document is asked for every
round. A write that comes early because ownership moved is caught by
:meth:`SharedView.ask_all`, called on every rebalance: from then on a document is due-scheduled
only from the second change seen between rounds, because the first may be a new owner's
overdue run, off the grid of its later writes. One the view cannot foresee (a run by hand on
the owner) shows here at the next expected write at the latest.

A result this replica recorded while it could not confirm its membership (alone during a
partition, UNKNOWN as a rule; never written) is *provisional*: once the check is owned
elsewhere again, the owner's document replaces it at the next round, even unchanged and older
(:meth:`ResultStore.adopt`), so this replica does not go on showing (and exporting) its own
UNKNOWN until the owner's next write.

A document written since this replica last read it is applied whatever its ``evaluated_at``:
that is the owner's clock, and one document dated ahead (a clock ahead, a bad write) would
otherwise hide the owner's later writes until this clock passed it. Only a takeover's restore
compares it with a result of this replica's own (:meth:`SharedView.load`).

Staleness stays the store's rule: a result whose owner died ages and reads UNKNOWN "stale"
once older than its allowed age (``staleness_factor`` times the interval), never a stale OK.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from esbridge.errors import ESError
from esbridge.esclient import Connection, DecodeMeter, error_from_body
from esbridge.membership import Announcement
from esbridge.store import Mark, ResultStore

log = logging.getLogger(__name__)


class SharedView:
    """Keeps the store's entries of checks owned elsewhere in step with the state index."""

    def __init__(
        self,
        store: ResultStore,
        connection: Connection,
        index: str,
        timeout: float = 10.0,
        lead: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.connection = connection
        self.index = index
        self.timeout = timeout
        self.lead = lead
        self.clock = clock
        self._versions: dict[str, tuple[int, int]] = {}  # check -> (_seq_no, _primary_term)
        self._due: dict[str, float] = {}  # check -> when to ask for its _seq_no again (clock)
        self._asked: dict[str, float] = {}  # check -> when its _seq_no was last asked for
        # checks with a change seen between two rounds since the last ask_all: their owner's
        # grid is known from the next such change on (the first may be a takeover's run)
        self._settled: set[str] = set()
        # peer -> the heartbeat (incarnation, counter) whose announcement was applied last
        self._applied: dict[str, tuple[str, int]] = {}
        self._marks: dict[str, Mark] = {}  # peer -> its mark, as followed here
        self.loaded = False  # one complete read done (of the documents read by version)
        self.followed = False  # one round of following the announcing peers done
        self.last_ok: float | None = None
        self.last_error: str | None = None
        self.requests = 0
        self.documents_read = 0
        self.heads_read = 0
        self.runs_followed = 0  # entries brought forward to a run a peer announced
        self.marks_followed = 0  # peers' marks taken (each moves every check that follows it)
        self.decoding = DecodeMeter()  # parsing the answers, inside the client
        self._cpu = 0.0  # choosing and applying documents, here

    @property
    def cpu_seconds(self) -> float:
        """CPU this replica spent on the shared view: parsing answers and applying them."""
        return self._cpu + self.decoding.cpu_seconds

    def ask_all(self) -> None:
        """Ask for every document from the next round on: the owners changed, and so may when
        they write; a document is due-scheduled again once a change is seen between rounds."""
        self._due.clear()
        self._asked.clear()
        self._settled.clear()
        self._applied.clear()  # and what the owners announced is read in full again
        for mark in self._marks.values():  # and no mark is followed until then
            self.store.unfollow(mark)
        self._marks.clear()

    async def refresh(self, names: Iterable[str]) -> int:
        """Read the changed documents of the due ones of ``names``; return how many applied."""
        started = time.process_time()
        now, due = self.clock(), self._due
        wanted = [name for name in names if due.get(name, 0.0) <= now]
        self._cpu += time.process_time() - started
        if not wanted:
            self.loaded = True
            self.last_ok = time.time()
            return 0
        heads = await self._read(wanted, source=False)
        if heads is None:
            return -1
        started = time.process_time()
        self.heads_read += len(heads)
        versions, asked, provisional = self._versions, self._asked, self.store.provisional
        changed = []
        written_after: dict[str, float] = {}  # changed since the round at this time
        for doc in heads:
            if "_seq_no" not in doc:  # not written yet
                continue
            name = doc["_id"]
            old = versions.get(name)
            if old == _version(doc):
                if name in provisional:  # unchanged, but it replaces this replica's own
                    changed.append(name)
                else:
                    asked[name] = now
                continue
            changed.append(name)
            before = asked.get(name)
            if old is not None and before is not None:
                written_after[name] = before
        self._cpu += time.process_time() - started
        applied = await self.load(changed) if changed else 0
        if applied < 0:
            return 0
        started = time.process_time()
        store, lead, settled = self.store, self.lead, self._settled
        for name in changed:  # read: the next change is one after this round
            asked[name] = now
        for name, before in written_after.items():
            if name not in settled:
                # The first write seen since the owners changed may be a new owner's
                # overdue run, off the grid its later writes follow: anchor on the next one.
                settled.add(name)
                continue
            entry = store.get(name)
            if entry is None:
                continue
            # The next run may be quicker than the one just written by its whole duration.
            ahead = lead + (entry.result.duration if entry.result is not None else 0.0)
            if entry.interval > ahead:
                due[name] = before + entry.interval - ahead
        self._cpu += time.process_time() - started
        self.loaded = True
        self.last_ok = time.time()
        self.last_error = None
        return applied

    async def follow(
        self,
        announcing: Mapping[str, Announcement],
        owners: Mapping[str, str],
        announced_all: Callable[[list[str]], Awaitable[Mapping[str, Announcement] | None]],
    ) -> int:
        """Apply what the peers' heartbeats announced (``announcing``: peer -> its last
        heartbeat's announcement) to the checks each of them owns by ``owners``, and read the
        documents that changed; return how many were read (-1: a read failed).

        A heartbeat carries the news since the one before it: applied when this replica
        applied that one (or a later one) of the same incarnation. Otherwise (this replica
        missed a heartbeat, started, or the owners changed since) everything the peer
        announced is read with ``announced_all`` instead, one request for all such peers.

        A peer that announces a mark (see :class:`esbridge.membership.Announcement`): its
        news, then its checks behind, are applied first, so the entries that follow its mark
        are the checks it vouches for; then the mark moves, and with it their runs. What
        follows it after everything it announced was read is what that says, nothing else."""
        started = time.process_time()
        news: dict[str, Announcement] = {}
        missed: list[str] = []
        marks, store = self._marks, self.store
        for peer, said in announcing.items():
            mark = marks.get(peer)
            if said.mark is None:  # announces every run: nothing follows a mark of it
                if mark is not None:
                    store.unfollow(mark)
                    del marks[peer]
            elif mark is None:  # a mark to follow: what it says of each check, in full
                marks[peer] = Mark()
                self._applied.pop(peer, None)
            applied = self._applied.get(peer)
            if said.since is None:  # a version that announces everything every time
                news[peer] = said
            elif applied == said.beat:
                continue  # nothing since
            elif applied is not None and applied[0] == said.beat[0] and said.since <= applied[1]:
                news[peer] = said
            else:
                missed.append(peer)
        self._cpu += time.process_time() - started
        complete = True
        if missed:
            everything = await announced_all(missed)
            if everything is None:
                complete = False  # their checks wait a round
            else:
                for peer in missed:
                    said = everything.get(peer)
                    if said is None:
                        continue
                    mark = marks.get(peer)
                    if mark is not None:
                        store.unfollow(mark)  # what follows it now is what all of it says
                        if said.mark is None:
                            del marks[peer]  # announcing every run since the search
                    news[peer] = said
        started = time.process_time()
        fetch: dict[str, list[str]] = {}
        for peer, said in news.items():
            changed, moved = store.follow(peer, said.runs, owners, marks.get(peer))
            if changed:
                fetch[peer] = changed
            self.runs_followed += moved
        self._cpu += time.process_time() - started
        read = 0
        if fetch:
            read = await self.load([n for names in fetch.values() for n in names], changed=True)
            if read < 0:  # their news is not applied in full: read it all again next round
                for peer in fetch:
                    news.pop(peer)
                complete = False
            else:
                started = time.process_time()
                for peer, names in fetch.items():  # the documents just read: their runs since
                    runs = news[peer].runs
                    said_of = {n: runs[n] for n in names}
                    self.runs_followed += store.follow(peer, said_of, owners, marks.get(peer))[1]
                self._cpu += time.process_time() - started
        started = time.process_time()
        for peer, said in news.items():
            mark = marks.get(peer)
            if mark is not None and said.mark is not None:
                store.unfollow(mark, said.behind)
                if said.mark > mark.at:  # the checks that follow it ran up to here
                    self.marks_followed += 1
                    mark.at = said.mark
        self._cpu += time.process_time() - started
        self._applied.update((peer, said.beat) for peer, said in news.items())
        self.followed = self.followed or complete
        return read

    async def load(
        self, names: Iterable[str], takeover: bool = False, changed: bool = False
    ) -> int:
        """Read the full documents of ``names`` (real-time) and apply them.

        A round (``takeover=False``) applies every document written since it was last read,
        whatever its ``evaluated_at``: that is the owner's clock, and comparing it with this
        replica's would let one document dated ahead (a clock ahead, a bad write) hide the
        owner's later writes until this clock passes it; staleness judges what is applied.
        ``takeover=True``: a new owner before the first run of a check it takes over
        (restore ``since`` and the history: no false recovery); a result of its own that is
        newer is kept (see :meth:`ResultStore.adopt`). ``changed=True``: the owner said the
        document is not the one held, so it is applied even when this replica read that
        very write before (its entry moved on since: a run of its own when it owned it).
        """
        wanted = list(names)
        if not wanted:
            return 0
        docs = await self._read(wanted, source=True)
        if docs is None:
            return -1
        started = time.process_time()
        documents, found = [], 0
        versions, provisional = self._versions, self.store.provisional
        for doc in docs:
            if "_seq_no" in doc:  # found (filter_path leaves "found" out)
                found += 1
                name, version = doc["_id"], _version(doc)
                if takeover or changed or versions.get(name) != version or name in provisional:
                    documents.append(doc.get("_source") or {})
                versions[name] = version
        self.documents_read += found
        applied = self.store.adopt(documents, newer_only=takeover)
        self._cpu += time.process_time() - started
        self.last_ok = time.time()
        self.last_error = None
        return applied

    async def _read(self, names: list[str], source: bool) -> list[dict[str, Any]] | None:
        """The ``_mget`` answer, or None with the error recorded (and logged once)."""
        try:
            docs = await self._mget(names, source)
        except ESError as error:
            if self.last_error is None:
                log.warning("shared view: cannot read the state index %s: %s", self.index, error)
            self.last_error = f"state index {self.index}: {error}"
            return None
        return docs

    async def _mget(self, names: list[str], source: bool) -> list[dict[str, Any]]:
        self.requests += 1
        path = f"/{self.index}/_mget?{_DOCUMENTS if source else _HEADS}"
        try:
            with self.decoding.metered():
                answer = await self.connection.raw("POST", path, {"ids": names}, self.timeout)
        except ESError as error:
            if error.kind == "no_such_index":
                return []
            raise
        docs = answer.get("docs") or []
        for doc in docs:
            if "error" in doc:
                error = error_from_body(doc["error"], None, self.index)
                if error.kind == "no_such_index":
                    return []
                raise error
        return docs


# filter_path: the client parses only what is used (the heads round reads thousands).
_FIELDS = "docs._id,docs._seq_no,docs._primary_term,docs.error"
_HEADS = f"filter_path={_FIELDS}&_source=false"
_DOCUMENTS = f"filter_path={_FIELDS},docs._source"


def _version(doc: dict[str, Any]) -> tuple[int, int]:
    """What identifies one write of a found document: ``(_seq_no, _primary_term)``."""
    return doc["_seq_no"], doc.get("_primary_term", -1)
