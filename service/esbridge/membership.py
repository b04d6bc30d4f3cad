"""Which replicas are alive: a heartbeat document per replica in a members index.

Every replica reads every member's document every ``cluster.heartbeat``, then indexes its
own with a counter that it bumps each time (a full index of changed content, so ``_seq_no``
advances: an unchanged partial update would be a no-op under ``detect_noop``). Read first:
a replica that cannot read the members writes no heartbeat either, so the others drop it
after a lease instead of counting on a replica that will soon think it is alone. A member
document of the wrong shape is skipped (that member is not live), never the whole read.
A member is live while *this* replica has seen its (incarnation, counter) change within
``cluster.lease``, measured on this replica's own monotonic clock: liveness never compares
two machines' clocks (the gossip failure detector of van Renesse et al., 1998). A document
read for the first time is not live until its counter moves: a replica killed with
``kill -9`` leaves its document for many leases, and a replica that starts meanwhile would
otherwise count it live for a lease and give it a share of the checks that nobody runs.

Heartbeats are written with ``refresh=true`` on a tiny one-shard index, so every search sees
every member's latest heartbeat: a replica's view of the membership is at most one heartbeat
old. A replica that stops on SIGTERM deletes its document and leaves at once.
A replica that cannot reach Elasticsearch sees no counter move, so after a lease it is alone
and owns every check, like a single instance (each of them then reports UNKNOWN
"unreachable" honestly); when Elasticsearch returns, the members see each other's counters
move again within one heartbeat and ownership converges. With ``hold_on_return`` (a
cluster's replica) the round that confirms it again leaves it *returning*, not yet confirmed,
until the checks it owns are restored from the state index: what it recorded alone is never
written over what another replica wrote meanwhile.

A replica that counted another out for a moment while it owned checks (a newcomer that read
it before its counter moved, a lease that ran out on a loaded machine) owned some of that
one's checks meanwhile, and may have written their state documents, while that one never saw
any change of its own. So each heartbeat also says since which *view* (``view``: how many
times its live set changed) its replica counts each member live (``live_since``), and from
which view on it owns checks (``owning_since``). A member that counts this replica live only
since a view after it began to own checks, seen so for the first time, or one that counted
it out and is gone or dead, is news (:meth:`Membership.views_changed`): this replica then writes
what it owns again (``Cluster.round``), so the index holds its answer, not the other's. A
join, a leave or a kill elsewhere changes no one's view of this replica: no news. A member
of a version that does not say is news when first read.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from esbridge.errors import ESError
from esbridge.esclient import Connection, DecodeMeter
from esbridge.mappings import index_mapping

log = logging.getLogger(__name__)

MEMBERS_MAPPING = index_mapping(
    False,
    keyword=("replica", "incarnation", "url"),
    long=("counter",),
    double=("started_at", "heartbeat_at"),
    integer=("checks_owned",),
)
FORGET_AFTER_LEASES = 20  # a dead member's document is deleted after this many leases


def default_advertise_url(host: str, port: int) -> str:
    """``http://host:port`` as another machine reaches it: a wildcard listen address
    (``0.0.0.0``, ``::``) is no address to give out, so ``$POD_IP`` (Kubernetes) or this
    machine's name stands in for it."""
    if host in ("", "0.0.0.0", "::"):
        host = os.environ.get("POD_IP", "").strip() or socket.getfqdn()
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    return f"http://{host}:{port}"


def default_replica_id(port: int) -> str:
    """``$POD_NAME`` in Kubernetes, else host name plus listen port: unique, restart-stable."""
    pod = os.environ.get("POD_NAME", "").strip()
    if pod:
        return pod
    return f"{socket.gethostname()}:{port}"


@dataclass(frozen=True, slots=True)
class Announcement:
    """What a member's heartbeat said of the checks it owns (see esbridge.sharedview)."""

    beat: tuple[str, int]  # the heartbeat it came with: (incarnation, counter)
    # check -> [evaluated_at, duration, runs, key of the written document], and with a mark
    # the interval the check runs at (its slots are the owner's only at the same interval)
    runs: dict[str, Any]
    # ``runs`` holds only the checks set since heartbeat ``since`` of the same incarnation
    # (None: every check, as a version before deltas announced)
    since: int | None = None
    # a mark (the member's wall clock): every check it announced (in ``runs`` now or
    # before, with the interval it runs at) but those ``behind`` ran on each of its slots
    # up to it and gave the answer written (None: no mark, every run is in ``runs``)
    mark: float | None = None
    behind: tuple[str, ...] = ()


@dataclass
class Member:
    """One replica as this replica observes it."""

    id: str
    beat: tuple[str, int]  # (incarnation, counter): any change means "alive"
    seen_change: float  # this replica's monotonic clock when ``beat`` last changed
    heartbeat_at: float  # the member's own wall clock (information only, never compared)
    started_at: float
    url: str
    checks_owned: int
    seq_no: int | None = None
    primary_term: int | None = None
    # what its heartbeat announced of the checks it owns (None: a version that announces
    # nothing, whose every run is written and read as a document; see esbridge.sharedview)
    announced: Announcement | None = None
    # whether this replica has seen ``beat`` change at all: a document first read is only
    # a document (its replica may have died long ago, ``kill -9``); live once it moves
    moved: bool = False
    # how many times its live set had changed when it wrote this heartbeat, since which of
    # those views it counts each member live, and from which one on it owns checks (None: a
    # version that does not say, or owning nothing yet)
    view: int | None = None
    live_since: dict[str, int] | None = None
    owning_since: int | None = None
    # whether it follows marks (a version before does not: its peers announce every run)
    marks: bool = False


@dataclass(eq=False, repr=False)
class Membership:
    """Heartbeats this replica and tracks which replicas are live."""

    connection: Connection
    index: str
    id: str  # this replica's id
    heartbeat: float
    lease: float
    url: str = ""
    timeout: float = 10.0
    owned: Callable[[], int] = lambda: 0
    # what each heartbeat announces of the owned checks: ``progress``, the news since the
    # heartbeat before, ``progress_all``, all of it, and a mark (ResultStore.announce and
    # announce_marked; None: nothing announced)
    progress: Callable[[], dict[str, Any]] | None = None
    clock: Callable[[], float] = time.monotonic
    # A round that confirms this replica after it was not confirmed (or for the first time)
    # leaves it *returning* (not confirmed) until :meth:`release`: what it recorded alone is
    # restored first (see ``Cluster.rebalance``), so no run in between is written.
    hold_on_return: bool = False
    incarnation: str = field(init=False, default_factory=lambda: uuid.uuid4().hex[:12])
    started_at: float = field(init=False, default_factory=time.time)
    counter: int = field(init=False, default=0)
    view: int = field(init=False, default=0)  # how many times this replica's live set changed
    # the view from which on this replica owns checks (set by its first ownership)
    owning_since: int | None = field(init=False, default=None)
    members: dict[str, Member] = field(init=False, default_factory=dict)
    formed: bool = field(init=False, default=False)  # one heartbeat written, members read back
    returning: bool = field(init=False, default=False)  # confirmed again, not released yet
    last_ok: float | None = field(init=False, default=None)  # wall clock of the last good round
    last_error: str | None = field(init=False, default=None)
    requests: int = field(init=False, default=0)
    decoding: DecodeMeter = field(init=False, default_factory=DecodeMeter)  # in the client
    _cpu: float = field(init=False, default=0.0)  # judging liveness, here
    listeners: list[Callable[[list[str]], Any]] = field(init=False, default_factory=list)
    _index_ready: bool = field(init=False, default=False)
    _left: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        self._live: list[str] = [self.id]
        self._unreadable: set[str] = set()  # member documents already warned about
        self._confirmed_at: float | None = None  # start of the last round that succeeded
        self._entered: dict[str, int] = {}  # live member -> the view it entered in
        self._view_news = False  # a member counted this one out while owning checks
        self._marks: dict[str, tuple[str, int]] = {}  # member -> (incarnation, since) seen
        self._excluded_by: set[str] = set()  # members that count this one out now
        self._announced_unread = False  # the last announced_all failed (warned once)

    @property
    def cpu_seconds(self) -> float:
        """CPU this replica spent on membership: parsing answers and judging liveness."""
        return self._cpu + self.decoding.cpu_seconds

    # -- what the rest of the service reads ----------------------------------------------

    def live(self) -> list[str]:
        """Sorted ids of the live replicas; always includes this one."""
        return list(self._live)

    def confirmed(self) -> bool:
        """Whether this replica read the members and wrote its heartbeat within one lease.

        While it has, the others count it live and its share of the checks is its own; past
        that they may have dropped it and taken its checks, so it must not write their state.
        While *returning* it is not confirmed yet either: its results of the time it was not
        hold no persisted ``since`` or history until the owned checks are restored.
        """
        return self._within_lease() and not self.returning

    def release(self) -> None:
        """End *returning*: the checks this replica owns were restored from the state index."""
        self.returning = False

    def _within_lease(self) -> bool:
        at = self._confirmed_at
        return at is not None and self.clock() - at <= self.lease

    def views_changed(self) -> bool:
        """Whether, since the last call, a member was seen to have counted this replica out
        while it owned checks (it counts it live only since a later view, or is gone while
        counting it out): it may have owned, and written, checks that this one owns, without
        this one seeing any change of its own."""
        news, self._view_news = self._view_news, False
        return news

    def pending(self) -> bool:
        """Whether a member document first read within two heartbeats has not moved yet: a
        replica that just started may be live, and one that died long ago never moves."""
        now, within = self.clock(), 2 * self.heartbeat
        return any(not m.moved and now - m.seen_change <= within for m in self.members.values())

    def _compute_live(self) -> list[str]:
        now = self.clock()
        ids = {m.id for m in self.members.values() if m.moved and now - m.seen_change <= self.lease}
        ids.add(self.id)
        return sorted(ids)

    # -- one round -----------------------------------------------------------------------

    async def beat(self) -> list[str]:
        """Read all members, write this replica's heartbeat, update the live set."""
        asked_at = self.clock()
        try:
            with self.decoding.metered():
                # Read first: a replica that cannot read the members must not go on looking
                # live to the others (its counter would move while it took every check for
                # itself after a lease: every check twice). Without its heartbeat the others
                # drop it after a lease and cover its checks.
                await self._ensure_index()
                answer = await self._read()
                await self._write()
        except ESError as error:
            if self.last_error is None:
                log.warning("cluster membership: cannot reach the members index: %s", error)
            self.last_error = f"members index {self.index}: {error}"
            answer = None
        started = time.process_time()
        if answer is not None:
            self._observe(answer)
            if self.hold_on_return and not self._within_lease():
                self.returning = True  # set before confirming: no await in between
            self._confirmed_at = asked_at
            self.formed = True
            self.last_ok = time.time()
            if self.last_error is not None:
                log.info("cluster membership: members index reachable again")
            self.last_error = None
        live = self._compute_live()
        changed = live != self._live
        self._live = live
        if changed:
            self.view += 1  # written with the next heartbeat
            entered = self._entered
            for member_id in live:
                if member_id != self.id and member_id not in entered:
                    entered[member_id] = self.view
            for member_id in [m for m in entered if m not in live]:
                del entered[member_id]
            # one that counted this one out and is dead now (kill -9) writes no more: its
            # writes of this one's checks are to be replaced now
            for member_id in [m for m in self._excluded_by if m not in live]:
                member = self.members.get(member_id)
                if member is not None and member.moved:
                    self._excluded_by.discard(member_id)
                    self._view_news = True
        self._cpu += time.process_time() - started
        if changed:
            log.info("cluster membership changed: %d live: %s", len(live), ", ".join(live))
            for listener in self.listeners:
                try:
                    listener(live)
                except Exception:
                    log.exception("a membership listener failed")
        if answer is not None:
            await self._forget_dead()
        return live

    async def run(self) -> None:
        """Heartbeat until cancelled."""
        while not self._left:
            started = self.clock()
            await self.beat()
            await asyncio.sleep(max(0.0, self.heartbeat - (self.clock() - started)))

    async def leave(self) -> None:
        """Delete this replica's document (SIGTERM): the others drop it at their next read."""
        self._left = True
        self.requests += 1
        try:
            await self.connection.raw(
                "DELETE", f"/{self.index}/_doc/{_quote(self.id)}?refresh=true", None, self.timeout
            )
        except ESError as error:
            if error.kind != "no_such_index" and error.status != 404:
                log.warning("cluster membership: could not remove this replica: %s", error)

    # -- requests ------------------------------------------------------------------------

    async def _ensure_index(self) -> None:
        if self._index_ready:
            return
        self.requests += 1
        await self.connection.create_index(
            self.index, MEMBERS_MAPPING, max(self.timeout, 30.0), refresh_interval="1s"
        )
        self._index_ready = True

    async def _write(self) -> None:
        self.counter += 1
        doc = {
            "replica": self.id,
            "incarnation": self.incarnation,
            "counter": self.counter,
            "url": self.url,
            "started_at": self.started_at,
            "heartbeat_at": time.time(),
            "checks_owned": self.owned(),
            "view": self.view,
            "live_since": dict(self._entered),
            "owning_since": self.owning_since,
            "marks": True,
        }
        if self.progress is not None:
            # the news since the heartbeat before, which every member reads, and all of it,
            # which a member that missed that heartbeat reads (announced_all) and the
            # members search leaves out
            doc.update(self.progress(), progress_since=self.counter - 1)
        self.requests += 1
        try:
            await self.connection.raw(
                "PUT", f"/{self.index}/_doc/{_quote(self.id)}?refresh=true", doc, self.timeout
            )
        except ESError as error:
            if error.kind == "no_such_index":  # deleted under us: create it again next time
                self._index_ready = False
            raise

    async def _read(self) -> dict[str, Any]:
        self.requests += 1
        return await self.connection.raw(
            "POST",
            f"/{self.index}/_search",
            {
                "size": 10000,
                "seq_no_primary_term": True,
                "_source": {"excludes": ["progress_all"]},
                # not its own document: with what it announces, that is the biggest answer
                "query": {"bool": {"must_not": {"ids": {"values": [self.id]}}}},
            },
            self.timeout,
        )

    async def announced_all(self, ids: list[str]) -> dict[str, Announcement] | None:
        """Everything the members ``ids`` announced at their latest heartbeat (a real-time
        read of their documents), for a replica that missed the news of one of their
        heartbeats. None when the read failed: it is tried again at the next round."""
        self.requests += 1
        try:
            with self.decoding.metered():
                answer = await self.connection.raw(
                    "POST",
                    f"/{self.index}/_mget?_source_includes={_ALL_FIELDS}",
                    {"ids": ids},
                    self.timeout,
                )
        except ESError as error:
            if not self._announced_unread:  # once per outage, as the other reads
                log.warning("cluster membership: cannot read what the members announced: %s", error)
            self._announced_unread = True
            return None
        self._announced_unread = False
        found: dict[str, Announcement] = {}
        for doc in answer.get("docs") or []:
            source = doc.get("_source")
            if type(source) is not dict or type(runs := source.get("progress_all")) is not dict:
                continue  # gone since, or not a document this version writes
            try:
                beat = _beat(source)
            except (TypeError, ValueError):
                continue
            found[str(doc.get("_id"))] = Announcement(beat, runs, None, *_marked(source))
        return found

    def all_follow_marks(self) -> bool:
        """Whether every live member but this one follows marks (see Announcement)."""
        members = self.members
        return all(m == self.id or (m in members and members[m].marks) for m in self._live)

    def _observe(self, answer: dict[str, Any]) -> None:
        now = self.clock()
        present = set()
        for hit in (answer.get("hits") or {}).get("hits") or []:
            member_id = str(hit.get("_id"))
            if member_id == self.id:
                continue
            known = self.members.get(member_id)
            try:
                member = _member(member_id, hit, known, now)
            except (AttributeError, TypeError, ValueError) as exc:
                # Not a heartbeat this version writes (hand-made, another version): that
                # member is not live, but every other one still is, on every replica.
                if member_id not in self._unreadable:
                    log.warning(
                        "cluster membership: ignoring unreadable member document %s: %s",
                        member_id,
                        exc,
                    )
                    self._unreadable.add(member_id)
                continue
            self._unreadable.discard(member_id)
            present.add(member_id)
            self.members[member_id] = member
            self._note_view(member, known)
        for gone in [m for m in self.members if m not in present]:
            del self.members[gone]  # deleted on SIGTERM (or forgotten): left at once
            self._marks.pop(gone, None)
            if gone in self._excluded_by:  # it may have written this one's checks
                self._excluded_by.discard(gone)
                self._view_news = True

    def _note_view(self, member: Member, known: Member | None) -> None:
        """Take ``member``'s view of this replica: news once it counts it live only since
        a view after it began to own checks (it counted it out meanwhile)."""
        if member.live_since is None:  # a version that does not say: news when first read
            if known is None or known.beat[0] != member.beat[0]:
                self._view_news = True
            return
        if member.owning_since is None:  # owns nothing yet, so writes nothing
            return
        since = member.live_since.get(self.id)
        if since is None:
            self._excluded_by.add(member.id)
            return
        self._excluded_by.discard(member.id)
        mark = (member.beat[0], since)
        if since > member.owning_since and self._marks.get(member.id) != mark:
            self._view_news = True
        self._marks[member.id] = mark

    async def _forget_dead(self) -> None:
        """Delete documents of members dead for many leases, only if still unchanged."""
        now = self.clock()
        for member in list(self.members.values()):
            if now - member.seen_change <= self.lease * FORGET_AFTER_LEASES:
                continue
            if member.seq_no is None or member.primary_term is None:
                continue
            self.requests += 1
            try:
                await self.connection.raw(
                    "DELETE",
                    f"/{self.index}/_doc/{_quote(member.id)}"
                    f"?if_seq_no={member.seq_no}&if_primary_term={member.primary_term}"
                    "&refresh=true",  # else the next search still finds it: a newcomer
                    None,
                    self.timeout,
                )
                log.info("cluster membership: forgot replica %s (dead)", member.id)
            except ESError as error:
                if error.status != 404:
                    # It came back (409: its next read shows a moving counter) or the delete
                    # failed (try again next round). Forgetting it now would make its
                    # document, read again, a newcomer: live for a whole lease, a ghost
                    # owning checks nobody runs.
                    continue
            self.members.pop(member.id, None)

    # -- visibility ----------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Every known member for ``GET /api/v1/cluster`` (this replica first)."""
        now = self.clock()
        live = set(self._live)
        rows: list[dict[str, Any]] = [
            {
                "id": self.id,
                "self": True,
                "live": True,
                "url": self.url,
                "started_at": self.started_at,
                "last_heartbeat_age_seconds": None
                if self.last_ok is None
                else round(max(0.0, time.time() - self.last_ok), 3),
                "counter": self.counter,
                "view": self.view,
                "checks_owned": self.owned(),
            }
        ]
        for member in sorted(self.members.values(), key=lambda m: m.id):
            rows.append(
                {
                    "id": member.id,
                    "self": False,
                    "live": member.id in live,
                    "url": member.url,
                    "started_at": member.started_at,
                    # measured on this replica's clock: when its counter last moved
                    "last_heartbeat_age_seconds": round(now - member.seen_change, 3),
                    "counter": member.beat[1],
                    "view": member.view,
                    "checks_owned": member.checks_owned,
                }
            )
        return rows


def _member(member_id: str, hit: dict[str, Any], known: Member | None, now: float) -> Member:
    """One hit of the members index; raises on a document of the wrong shape."""
    source = hit.get("_source") or {}
    beat = _beat(source)
    return Member(
        id=member_id,
        beat=beat,
        seen_change=now if known is None or known.beat != beat else known.seen_change,
        moved=known is not None and (known.moved or known.beat != beat),
        heartbeat_at=float(source.get("heartbeat_at") or 0.0),
        started_at=float(source.get("started_at") or 0.0),
        url=str(source.get("url") or ""),
        checks_owned=int(source.get("checks_owned") or 0),
        seq_no=hit.get("_seq_no"),
        primary_term=hit.get("_primary_term"),
        announced=_announcement(beat, source),
        view=view if type(view := source.get("view")) is int else None,
        live_since=_views(source.get("live_since")),
        owning_since=owning if type(owning := source.get("owning_since")) is int else None,
        marks=source.get("marks") is True,
    )


def _beat(source: dict[str, Any]) -> tuple[str, int]:
    """A heartbeat's (incarnation, counter); raises on a counter that is not a number."""
    return str(source.get("incarnation", "")), int(source.get("counter") or 0)


def _views(raw: Any) -> dict[str, int] | None:
    """``live_since`` as written (member id -> view), or None when not that."""
    if type(raw) is not dict:
        return None
    return {str(k): v for k, v in raw.items() if type(v) is int}


def _announcement(beat: tuple[str, int], source: dict[str, Any]) -> Announcement | None:
    """What a heartbeat announced (None: nothing, a version before announcements)."""
    runs = source.get("progress")
    if type(runs) is not dict:
        return None
    since = source.get("progress_since")  # absent: every check, as a version before deltas
    return Announcement(beat, runs, since if type(since) is int else None, *_marked(source))


_ALL_FIELDS = "incarnation,counter,progress_all,mark,behind"


def _marked(source: dict[str, Any]) -> tuple[float | None, tuple[str, ...]]:
    """A heartbeat's mark and the checks behind it, or no mark (None) when either is not
    what this version writes."""
    mark, behind = source.get("mark"), source.get("behind")
    if (
        type(mark) not in (float, int)
        or not math.isfinite(mark)
        or type(behind) is not list
        or not all(type(name) is str for name in behind)
    ):
        return None, ()
    return float(mark), tuple(behind)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")
