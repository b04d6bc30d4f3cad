"""Membership, the shared view and the sharded state index, each against a real Elasticsearch.

The clock of :class:`Membership` is injected, so lease expiry is tested without waiting.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from esbridge.config import ConnectionConfig
from esbridge.esclient import Connection
from esbridge.membership import Announcement, Membership
from esbridge.persistence import StatePersistence
from esbridge.result import State
from esbridge.sharedview import SharedView
from esbridge.store import ResultStore
from esbridge_dev import httpcalls
from test_service_support import CountingProxy
from test_store import T0, result, store_with

pytestmark = pytest.mark.es


@pytest.fixture
async def connection(es_url: str) -> AsyncIterator[Connection]:
    conn = Connection("default", ConnectionConfig(urls=(es_url,)))
    yield conn
    await conn.close()


@pytest.fixture
def index(es_url: str):  # type: ignore[no-untyped-def]
    name = f"esbridge-test-parts-{uuid.uuid4().hex[:8]}"
    yield name
    httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=30)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def meet(*members: Membership) -> None:
    """Two rounds each: every member is seen, then seen moving (live from then on)."""
    for _ in range(2):
        for member in members:
            await member.beat()


async def test_liveness_follows_the_counter_on_the_observers_clock(
    connection: Connection, index: str
) -> None:
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
    assert await a.beat() == ["a"]  # b has not written yet
    assert await b.beat() == ["b"]  # a's document, not seen moving yet
    assert await a.beat() == ["a"] and a.formed  # the same for b's
    assert await b.beat() == ["a", "b"]  # a moved
    assert await a.beat() == ["a", "b"]
    # b stops beating: a keeps it for the lease, measured on a's own clock, then drops it
    clock.now += 2.5
    assert await a.beat() == ["a", "b"]
    clock.now += 1.0
    assert await a.beat() == ["a"]
    # b's counter moves again: live at once
    await b.beat()
    assert await a.beat() == ["a", "b"]
    # a SIGTERM'd replica deletes its document: gone at the next read, no lease wait
    await b.leave()
    assert await a.beat() == ["a"]
    assert [m["id"] for m in a.describe()] == ["a"]


async def test_a_dead_members_document_is_never_live_to_a_new_replica(
    connection: Connection, index: str
) -> None:
    """A replica killed with ``kill -9`` leaves its document behind for many leases. A
    replica that starts meanwhile must not count it live for a lease (it would give it a
    share of the checks that nobody runs): a member is live once its counter moves."""
    clock = Clock()
    dead = Membership(connection, index, "dead", heartbeat=1, lease=3, clock=clock)
    await dead.beat()  # and never again
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    for _ in range(4):
        assert await a.beat() == ["a"]
        clock.now += 1.0
    assert [m["live"] for m in a.describe() if m["id"] == "dead"] == [False]


async def test_a_member_that_counted_this_one_out_while_owning_is_news(
    connection: Connection, index: str
) -> None:
    """A replica that counted another out while it owned checks may have written that one's
    checks meanwhile, which that one cannot see in its own live set. Its heartbeat says
    since which of its views it counts each member live, and from which view on it owns
    checks; a later "since", seen once, is news (``views_changed``), and so is a member gone
    while counting this one out. A join, a kill or a restart elsewhere is not."""
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
    await meet(a, b)
    assert await a.beat() == ["a", "b"] and b.live() == ["a", "b"]
    a.owning_since, b.owning_since = a.view, b.view  # their first ownership (Cluster.round)
    for _ in range(2):
        await b.beat()
        await a.beat()
    assert not a.views_changed() and not b.views_changed()  # each counted the other in
    # c starts while a's counter stands still: its first ownership counts a out
    c = Membership(connection, index, "c", heartbeat=1, lease=3, clock=clock)
    await c.beat()
    await b.beat()
    assert await c.beat() == ["b", "c"]
    c.owning_since = c.view
    await a.beat()
    await b.beat()
    assert await c.beat() == ["a", "b", "c"]
    await a.beat()
    assert not a.views_changed()  # c's heartbeat with a in it is not written yet
    await c.beat()
    await a.beat()
    assert a.views_changed()  # c counts a live only since it began to own checks
    assert not b.views_changed()  # b was in c's first ownership
    await c.beat()
    await a.beat()
    assert not a.views_changed()  # seen once
    # b loses sight of a for a lease (a late on a loaded machine), then sees it again
    await b.beat()  # a's last heartbeat seen
    clock.now += 3.5
    await c.beat()
    assert await b.beat() == ["b", "c"]  # a's counter did not move for a lease on b's clock
    await b.beat()  # written with this heartbeat
    await a.beat()
    assert not a.views_changed()  # b counts a out now: news once b stops doing so
    await a.beat()
    assert await b.beat() == ["a", "b", "c"]
    await b.beat()
    await a.beat()
    assert a.views_changed()
    # c is killed: a and b drop it after a lease; neither counted the other out meanwhile
    for _ in range(4):
        clock.now += 1.0
        await a.beat()
        await b.beat()
    assert a.live() == ["a", "b"] and b.live() == ["a", "b"]
    assert not a.views_changed() and not b.views_changed()
    await b.beat()  # b's last change of view, written
    await a.beat()
    rows = {m["id"]: m for m in a.describe()}
    assert rows["b"]["view"] == b.view and rows["a"]["view"] == a.view
    # b counts a out again, and is killed so: a writes again once b is dead in its view
    await b.beat()  # a's last heartbeat seen
    clock.now += 3.5
    assert await b.beat() == ["b"]
    await b.beat()  # written with this heartbeat, the last
    await a.beat()
    assert not a.views_changed()  # b counts a out now, and may be writing its checks
    for _ in range(4):
        clock.now += 1.0
        await a.beat()
    assert a.live() == ["a"] and a.views_changed()
    # a member of a version that does not say: news when first read, then not
    httpcalls.put(
        f"{connection.config.urls[0]}/{index}/_doc/old?refresh=true",
        json={"replica": "old", "incarnation": "i", "counter": 1},
        timeout=30,
    ).raise_for_status()
    await a.beat()
    assert a.views_changed()
    await a.beat()
    assert not a.views_changed()


async def test_a_changed_wall_clock_does_not_matter(connection: Connection, index: str) -> None:
    """Heartbeat documents carry the writer's wall time, but nobody compares it."""
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
    await meet(a, b)
    httpcalls.post(
        f"{connection.config.urls[0]}/{index}/_update/b?refresh=true",
        json={"doc": {"heartbeat_at": 0.0}},
        timeout=30,
    ).raise_for_status()
    assert await a.beat() == ["a", "b"]


async def test_a_member_document_of_the_wrong_shape_is_skipped_not_fatal(
    connection: Connection, index: str
) -> None:
    """One unreadable heartbeat (hand-made, another version) must not stop membership: it
    raised out of every replica's round, so the live sets froze everywhere."""
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
    await meet(a, b)
    url = connection.config.urls[0]
    for member, counter in (("x", "5.5"), ("y", [1, 2]), ("z", {"n": 1})):
        httpcalls.put(
            f"{url}/{index}/_doc/{member}?refresh=true",
            json={"replica": member, "incarnation": "i", "counter": counter},
            timeout=30,
        )  # counter is a long: the index may refuse some; what it keeps is read back
    assert await a.beat() == ["a", "b"]
    assert a.formed and a.last_error is None
    clock.now += 3.5  # b's lease ends on a's clock; the round still works
    assert await a.beat() == ["a"]


async def test_a_dead_member_whose_delete_fails_is_not_revived(
    connection: Connection, index: str
) -> None:
    """Forgetting a dead member when its delete failed made its document, read again, a
    newcomer: live for a whole lease, owning checks nobody ran."""
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock)
    b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
    await meet(a, b)
    assert await a.beat() == ["a", "b"]
    clock.now += 3 * 20 + 1  # b dead for more than FORGET_AFTER_LEASES leases
    url = connection.config.urls[0]
    block = {"index.blocks.write": True}
    httpcalls.put(f"{url}/{index}/_settings", json=block, timeout=30).raise_for_status()
    try:
        await a._forget_dead()  # the DELETE is refused (a real write block)
        assert "b" in a.members  # kept: tried again next round
    finally:
        block = {"index.blocks.write": None}
        httpcalls.put(f"{url}/{index}/_settings", json=block, timeout=30).raise_for_status()
    assert await a.beat() == ["a"]  # not live again: its counter never moved
    assert "b" not in a.members  # the next round's delete worked
    assert await a.beat() == ["a"]


async def test_a_replica_that_cannot_read_the_members_writes_no_heartbeat(
    es_url: str, connection: Connection, index: str
) -> None:
    """Read first: a replica that cannot read the members stops looking live to the others,
    who drop it after a lease and cover its checks; it stops confirming its own share."""
    clock = Clock()
    with CountingProxy(es_url) as proxy:
        cut = Connection("default", ConnectionConfig(urls=(proxy.url,)))
        try:
            a = Membership(cut, index, "a", heartbeat=1, lease=3, clock=clock)
            b = Membership(connection, index, "b", heartbeat=1, lease=3, clock=clock)
            await meet(a, b)
            assert await a.beat() == ["a", "b"] and a.confirmed()
            proxy.fail = {rf"POST /{index}/_search": 503}
            writes = len(proxy.requests(rf"PUT /{index}/_doc/a"))
            for _ in range(4):
                clock.now += 1.0
                await a.beat()
                await b.beat()
            assert a.last_error is not None
            assert len(proxy.requests(rf"PUT /{index}/_doc/a")) == writes  # no heartbeat
            # b saw a's last write at its first round after the cut; a lease later, a is gone
            clock.now += 1.0
            assert await b.beat() == ["b"]
            assert not a.confirmed()  # and a knows its share is no longer its own
            proxy.fail = {}
            await a.beat()
            assert a.confirmed() and await b.beat() == ["a", "b"]
        finally:
            await cut.close()


async def test_a_replica_confirmed_again_is_returning_until_released(
    connection: Connection, index: str
) -> None:
    """Back from a time alone, a replica does not count as confirmed (its runs are not
    written) until the cluster has restored the checks it owns and released it."""
    clock = Clock()
    a = Membership(connection, index, "a", heartbeat=1, lease=3, clock=clock, hold_on_return=True)
    plain = Membership(connection, index, "p", heartbeat=1, lease=3, clock=clock)
    await a.beat()
    await plain.beat()
    assert a.returning and not a.confirmed()  # the first time too: it may have run alone
    assert plain.confirmed() and not plain.returning  # without the hold: as before
    a.release()
    assert a.confirmed()
    await a.beat()
    assert a.confirmed() and not a.returning  # within the lease: nothing to restore
    clock.now += 3.5  # a lease without a good round: not confirmed
    assert not a.confirmed()
    await a.beat()
    assert a.returning and not a.confirmed()
    a.release()
    assert a.confirmed()


async def test_shared_view_reads_only_changed_documents(connection: Connection, index: str) -> None:
    owner = store_with()
    owner.record(result(State.CRITICAL, T0, "bad"))
    owner.record(result(State.CRITICAL, T0 + 10, "still bad"))
    writer = StatePersistence(owner, connection, index, 10.0)
    assert await writer.flush() == 1

    other = store_with()
    view = SharedView(other, connection, index, 10.0)
    assert await view.refresh(["c"]) == 1
    entry = other.get("c")
    assert entry is not None and entry.result is not None
    assert entry.state is State.CRITICAL and entry.since == T0 and entry.runs == 2
    assert entry.result.summary == "still bad"
    assert other.dirty_count == 0  # the owner writes, never the reader
    assert view.documents_read == 1 and view.loaded

    assert await view.refresh(["c"]) == 0  # unchanged: only _seq_no was read
    assert view.documents_read == 1

    owner.record(result(State.OK, T0 + 20, "fine"))
    await writer.flush()
    assert await view.refresh(["c"]) == 1
    assert entry.state is State.OK and entry.since == T0 + 20
    assert [t.to_state for t in entry.transitions] == [State.CRITICAL, State.OK]


async def test_shared_view_asks_for_a_document_when_its_next_write_is_due(
    connection: Connection, index: str
) -> None:
    """After a change seen between two rounds, the next write is one interval after the
    earlier round: the document is not asked for before ``lead`` seconds ahead of that."""
    owner = store_with(interval=30.0)
    writer = StatePersistence(owner, connection, index, 10.0)
    clock = Clock()
    other = store_with(interval=30.0)
    view = SharedView(other, connection, index, 10.0, lead=5.0, clock=clock)

    async def write(summary: str, duration: float = 0.0) -> None:
        at = T0 + owner.get("c").runs  # type: ignore[union-attr]
        owner.record(result(State.CRITICAL, at, summary, duration=duration))
        assert await writer.flush() == 1

    def shown() -> str:
        entry = other.get("c")
        assert entry is not None and entry.result is not None
        return entry.result.summary

    await write("one")
    assert await view.refresh(["c"]) == 1 and view.heads_read == 1  # written when? unknown
    clock.now += 1  # 1001: so it is asked for every round
    assert await view.refresh(["c"]) == 0 and view.heads_read == 2
    clock.now += 1  # 1002
    # The first change seen between two rounds may be a new owner's overdue run, off the
    # grid its later writes follow: it does not anchor the next write, the second one does.
    await write("zero")
    assert await view.refresh(["c"]) == 1 and shown() == "zero" and view.heads_read == 3
    clock.now += 1  # 1003: still asked for every round
    assert await view.refresh(["c"]) == 0 and view.heads_read == 4
    clock.now += 1  # 1004
    await write("two")  # seen written in (1003, 1004]: the next one after 1003 + 30
    assert await view.refresh(["c"]) == 1 and shown() == "two" and view.heads_read == 5
    await write("three")  # early (a run by hand): not asked for before 1003 + 30 - 5
    for now in (1005.0, 1015.0, 1027.9):
        clock.now = now
        assert await view.refresh(["c"]) == 0 and shown() == "two"
    assert view.heads_read == 5
    clock.now = 1028.0
    assert await view.refresh(["c"]) == 1 and shown() == "three" and view.heads_read == 6
    # written in (1004, 1028]: due from 1004 + 25 on, so asked for again at once
    clock.now += 1
    assert await view.refresh(["c"]) == 0 and view.heads_read == 7

    clock.now += 1  # 1030
    await write("five")
    assert await view.refresh(["c"]) == 1 and view.heads_read == 8  # due at 1029 + 25
    await write("six")
    clock.now += 1
    assert await view.refresh(["c"]) == 0 and shown() == "five" and view.heads_read == 8
    # ownership moved (a rebalance): a new owner writes on its own schedule
    view.ask_all()
    assert await view.refresh(["c"]) == 1 and shown() == "six" and view.heads_read == 9
    clock.now += 1  # 1032: the new owner's first write seen between rounds anchors nothing
    await write("six and a half")
    assert await view.refresh(["c"]) == 1 and view.heads_read == 10

    # a run that took 4 s: the next one may come 4 s sooner, so it is asked for 4 s sooner
    asked = clock.now
    clock.now += 1
    await write("seven", duration=4.0)  # seen at once: nothing was due-scheduled
    assert await view.refresh(["c"]) == 1 and shown() == "seven" and view.heads_read == 11
    await write("eight")
    clock.now = asked + 30 - 5 - 4 - 0.1
    assert await view.refresh(["c"]) == 0 and view.heads_read == 11
    clock.now = asked + 30 - 5 - 4
    assert await view.refresh(["c"]) == 1 and shown() == "eight" and view.heads_read == 12


async def test_shared_view_never_replaces_a_newer_local_result(
    connection: Connection, index: str
) -> None:
    old = store_with()
    old.record(result(State.CRITICAL, T0))
    await StatePersistence(old, connection, index, 10.0).flush()
    mine = store_with()
    mine.record(result(State.OK, T0 + 30))
    assert await SharedView(mine, connection, index, 10.0).load(["c"]) == 0
    assert mine.get("c").state is State.OK  # type: ignore[union-attr]


async def test_shared_view_replaces_a_result_this_replica_could_not_confirm(
    connection: Connection, index: str
) -> None:
    """After a partition: this replica's own UNKNOWN, recorded while it could not confirm its
    share (never written), gives way to the owner's document at the next round, although the
    document is older and unchanged since this replica last read it."""
    owner = store_with(interval=60.0)
    owner.record(result(State.CRITICAL, T0, "bad"))
    await StatePersistence(owner, connection, index, 10.0).flush()
    mine = store_with(interval=60.0)
    view = SharedView(mine, connection, index, 10.0)
    assert await view.refresh(["c"]) == 1 and view.documents_read == 1
    mine.record(result(State.UNKNOWN, T0 + 30, "unreachable"), persist=False)  # alone
    view.ask_all()  # membership re-formed: the check is owned elsewhere again
    assert await view.refresh(["c"]) == 1 and view.documents_read == 2
    entry = mine.get("c")
    assert entry is not None and entry.result is not None
    assert entry.state is State.CRITICAL and entry.result.summary == "bad" and entry.since == T0
    assert mine.provisional == set()
    view.ask_all()
    assert await view.refresh(["c"]) == 0 and view.documents_read == 2  # heads only again


@pytest.mark.parametrize("ahead", [9.0, 3600.0])
async def test_shared_view_applies_a_changed_document_whatever_its_evaluated_at(
    connection: Connection, index: str, ahead: float
) -> None:
    """The owner's clock is not this replica's: a document dated ahead (within the allowed
    age, or an hour: one bad write) must not hide the owner's later, real writes. Each
    document written since the last read is applied; staleness judges it."""
    now = time.time()
    owner = store_with(interval=5.0)  # allowed age 10 s
    writer = StatePersistence(owner, connection, index, 10.0)
    owner.record(result(State.OK, now + ahead, "dated ahead"))
    assert await writer.flush() == 1
    mine = store_with(interval=5.0)
    view = SharedView(mine, connection, index, 10.0)
    assert await view.refresh(["c"]) == 1
    entry = mine.get("c")
    assert entry is not None and entry.result is not None
    assert entry.result.summary == "dated ahead"
    assert mine.is_stale(entry) is (ahead > 10.0)
    owner.record(result(State.CRITICAL, now + 1, "bad, on time"))
    assert await writer.flush() == 1
    assert await view.refresh(["c"]) == 1
    assert entry.result is not None and entry.result.summary == "bad, on time"
    assert entry.state is State.CRITICAL and not mine.is_stale(entry)
    assert await view.refresh(["c"]) == 0  # unchanged since: heads only


async def test_takeover_replaces_a_held_result_from_the_future(
    connection: Connection, index: str
) -> None:
    """A takeover keeps a newer result of this replica's own, but not one dated beyond the
    allowed age ahead of this clock: it would never give way to the owner's state."""
    now = time.time()
    owner = store_with(interval=5.0)
    owner.record(result(State.CRITICAL, now - 60, "bad since"))
    owner.record(result(State.CRITICAL, now - 1, "still bad"))
    await StatePersistence(owner, connection, index, 10.0).flush()
    mine = store_with(interval=5.0)
    mine.record(result(State.OK, now + 3600, "dated an hour ahead"))
    mine.mark_clean(["c"])
    view = SharedView(mine, connection, index, 10.0)
    assert await view.load(["c"], takeover=True) == 1
    entry = mine.get("c")
    assert entry is not None and entry.result is not None
    assert entry.result.summary == "still bad" and entry.since == now - 60
    mine.record(result(State.OK, now + 9, "ahead, within the allowed age"))
    mine.mark_clean(["c"])
    assert await view.load(["c"], takeover=True) == 0  # newer, and may count: kept
    assert entry.result.summary == "ahead, within the allowed age"


async def test_state_index_shards(es_url: str, connection: Connection, index: str) -> None:
    store = store_with()
    store.record(result(State.OK, T0))
    assert await StatePersistence(store, connection, index, 10.0, shards=3).flush() == 1
    settings = httpcalls.get(f"{es_url}/{index}/_settings", timeout=30).json()
    assert settings[index]["settings"]["index"]["number_of_shards"] == "3"


def announcing_owner(
    connection: Connection, index: str, members: str, mark: Callable[[], float] | None = None
) -> tuple[ResultStore, StatePersistence, Clock, Membership]:
    """Replica "a": owns check "c", writes its state on change and announces it with each
    heartbeat (on an injected clock, shared with the peer the test builds): every run, or
    with ``mark`` (what gives each heartbeat's mark) a mark and the news of writes."""
    owner = store_with(interval=60.0)
    owner.write_on_change = True
    writer = StatePersistence(owner, connection, index, 10.0)
    clock, owned = Clock(), {"c"}

    def progress() -> dict[str, Any]:
        if mark is not None:
            return owner.announce_marked(owned, mark())
        return dict(zip(("progress", "progress_all"), owner.announce(owned), strict=True))

    a = Membership(connection, members, "a", heartbeat=1, lease=3, clock=clock, progress=progress)
    return owner, writer, clock, a


async def test_a_replica_follows_each_heartbeats_news_and_reads_everything_after_a_miss(
    es_url: str, connection: Connection, index: str
) -> None:
    """An owner writing on change announces, with each heartbeat, the runs since the one
    before; a peer that read that one applies them (no request of its own), one that missed
    it reads everything the owner announced in one ``_mget`` of the members index, and one
    that started reads everything first. A member of a version before these deltas (no
    ``progress_since``) announces everything every time."""
    members = f"{index}-members"
    owner, writer, clock, a = announcing_owner(connection, index, members)
    b = Membership(connection, members, "b", heartbeat=1, lease=3, clock=clock)
    peer = store_with(interval=60.0)
    view = SharedView(peer, connection, index, 10.0)
    owners = {"c": "a"}

    async def follow() -> int:
        """b's round: read the members (and write its heartbeat), then follow a."""
        await b.beat()
        before = b.requests
        announced = b.members["a"].announced
        assert announced is not None
        assert await view.follow({"a": announced}, owners, b.announced_all) >= 0
        return b.requests - before

    try:
        owner.record(result(State.OK, T0, "fine", value=0.0))
        assert await writer.flush() == 1
        await meet(a, b)
        assert await follow() == 1  # nothing applied yet: everything, one _mget
        entry = peer.get("c")
        assert entry is not None and entry.result is not None
        assert (entry.result.evaluated_at, entry.result.summary) == (T0, "fine")
        assert view.documents_read == 1 and view.followed

        for at in (T0 + 10, T0 + 20):  # the same answer: announced, not written
            owner.record(result(State.OK, at, "fine", value=0.0, duration=0.25))
            await a.beat()
            assert await follow() == 0  # the heartbeat's news: no request
            assert entry.result.evaluated_at == at and entry.result.duration == 0.25
            announced = b.members["a"].announced
            assert announced is not None and announced.since == a.counter - 1
            assert announced.runs == {"c": [at, 0.25, entry.runs, T0]}
        assert writer.store.dirty_count == 0 and view.documents_read == 1

        await a.beat()  # no run since: no news
        assert await follow() == 0 and b.members["a"].announced.runs == {}  # type: ignore[union-attr]
        # b misses the heartbeat that carried a run (the next one has no news): it reads
        # everything a announced
        owner.record(result(State.OK, T0 + 30, "fine", value=0.0))
        await a.beat()
        await a.beat()
        owner.record(result(State.OK, T0 + 40, "fine", value=0.0))  # not announced yet
        assert await follow() == 1
        assert entry.result.evaluated_at == T0 + 30 and entry.runs == 4
        assert await follow() == 0  # caught up: the next round reads no more
        # the members search leaves "everything" out: only a's own document holds it
        hits = (await b._read())["hits"]["hits"]
        assert hits and all("progress_all" not in hit["_source"] for hit in hits)
        held = httpcalls.get(f"{es_url}/{members}/_doc/a", timeout=30).json()["_source"]
        assert held["progress_all"] == {"c": [T0 + 30, 0.0, 4, T0]}

        # a change is written, then announced: the peer reads the document it names
        owner.record(result(State.CRITICAL, T0 + 60, "bad", value=9.0))
        await a.beat()
        assert await follow() == 0 and entry.result.evaluated_at == T0 + 30  # not written
        assert await writer.flush() == 1
        await a.beat()
        assert await follow() == 0
        assert (entry.state, entry.since, view.documents_read) == (State.CRITICAL, T0 + 60, 2)

        async def not_asked(ids: list[str]) -> None:
            raise AssertionError(f"everything read of {ids}")

        for at in (T0 + 70, T0 + 80):  # an older version's heartbeat: every check, each time
            said = Announcement(("old", int(at)), {"c": [at, 0.5, 9, T0 + 60]})
            assert await view.follow({"old": said}, {"c": "old"}, not_asked) == 0
            assert entry.result.evaluated_at == at and entry.runs == 9
    finally:
        httpcalls.delete(f"{es_url}/{members}", params={"ignore_unavailable": "true"}, timeout=30)


async def test_a_replica_follows_an_owners_mark_through_elasticsearch(
    es_url: str, connection: Connection, index: str
) -> None:
    """An owner whose peers follow marks: a steady check's runs cost a heartbeat no news
    and the peer no request and no step of its own (its time is its last slot up to the
    mark); a slot with no run lists it behind, so it ages; back in step it is news again;
    a peer that missed a heartbeat reads everything once; a check at another interval here
    (a reload done on one replica only) does not follow the owner's mark."""
    members = f"{index}-members"
    upto = [0.0]
    owner, writer, clock, a = announcing_owner(connection, index, members, lambda: upto[0])
    b = Membership(connection, members, "b", heartbeat=1, lease=3, clock=clock)
    peer = store_with(interval=60.0)
    view = SharedView(peer, connection, index, 10.0)
    entry = peer.get("c")
    assert entry is not None
    slot = entry.slot + 60 * round(T0 / 60)  # a slot of "c"

    async def follow() -> int:
        """b's round: read the members (and write its heartbeat), then follow a."""
        await b.beat()
        before = b.requests + view.requests
        announced = b.members["a"].announced
        assert announced is not None
        assert await view.follow({"a": announced}, {"c": "a"}, b.announced_all) >= 0
        return b.requests + view.requests - before

    try:
        owner.record(result(State.OK, slot, "fine", value=0.0))
        assert await writer.flush() == 1
        upto[0] = slot
        await meet(a, b)
        assert await follow() == 2  # everything a announced, then the document it names
        assert entry.mark is not None and entry.evaluated_at == slot
        assert b.members["a"].announced.behind == ()  # type: ignore[union-attr]

        for k in (1, 2):  # steady: no news, no request, the time off the mark
            owner.record(result(State.OK, slot + 60 * k + 0.5, "fine", value=0.0))
            upto[0] = slot + 60 * k + 1
            await a.beat()
            assert await follow() == 0 and b.members["a"].announced.runs == {}  # type: ignore[union-attr]
            assert entry.evaluated_at == slot + 60 * k and entry.runs == 1 + k
        assert view.runs_followed == 0 and view.marks_followed >= 2
        assert writer.store.dirty_count == 0 and view.documents_read == 1

        upto[0] = slot + 180 + 1  # the next slot passes without a run: behind
        await a.beat()
        assert await follow() == 0 and entry.mark is None
        assert entry.evaluated_at == slot + 120  # what the mark said before, no more
        owner.record(result(State.OK, slot + 185, "fine", value=0.0))  # late, back in step
        await a.beat()
        assert await follow() == 0 and entry.mark is not None
        assert entry.evaluated_at == slot + 185  # its own run's time, from the news

        owner.record(result(State.OK, slot + 240, "fine", value=0.0))
        upto[0] = slot + 241
        await a.beat()
        await a.beat()  # b misses one: it reads everything, once
        assert await follow() == 1 and entry.evaluated_at == slot + 240
        assert await follow() == 0

        owner.record(result(State.OK, slot + 300, "fine", value=0.0))
        upto[0] = slot + 301
        await a.beat()
        peer.sync({"c": 30.0})  # b reloads c at another interval: a's mark is not for it
        assert await follow() == 0
        assert entry.mark is None and entry.evaluated_at == slot + 240
    finally:
        httpcalls.delete(f"{es_url}/{members}", params={"ignore_unavailable": "true"}, timeout=30)


async def test_news_not_applied_in_full_is_read_in_full_at_the_next_round(
    es_url: str, connection: Connection, index: str
) -> None:
    """When reading everything a member announced fails, or reading a document its news
    names fails, nothing of it counts as applied: the next round reads everything again."""
    members = f"{index}-members"
    owner, writer, clock, a = announcing_owner(connection, index, members)
    with CountingProxy(es_url) as proxy:
        cut = Connection("default", ConnectionConfig(urls=(proxy.url,)))
        b = Membership(cut, members, "b", heartbeat=1, lease=3, clock=clock)
        peer = store_with(interval=60.0)
        view = SharedView(peer, cut, index, 10.0)

        async def follow() -> int:
            await b.beat()
            announced = b.members["a"].announced
            assert announced is not None
            return await view.follow({"a": announced}, {"c": "a"}, b.announced_all)

        try:
            owner.record(result(State.CRITICAL, T0, "bad", value=9.0))
            assert await writer.flush() == 1
            await meet(a, b)
            proxy.fail = {rf"POST /{members}/_mget": 503}
            assert await follow() == 0
            assert not view.followed and peer.get("c").result is None  # type: ignore[union-attr]
            proxy.fail = {rf"POST /{index}/_mget": 503}  # everything read, the document not
            assert await follow() == -1 and peer.get("c").result is None  # type: ignore[union-attr]
            proxy.fail = {}
            everything = len(proxy.requests(rf"POST /{members}/_mget"))
            assert await follow() == 1 and view.followed
            assert len(proxy.requests(rf"POST /{members}/_mget")) == everything + 1
            entry = peer.get("c")
            assert entry is not None and entry.result is not None
            assert (entry.state, entry.since, entry.result.evaluated_at) == (State.CRITICAL, T0, T0)
            owner.record(result(State.CRITICAL, T0 + 10, "bad", value=9.0))
            await a.beat()
            assert await follow() == 0 and entry.result.evaluated_at == T0 + 10  # news only
            assert len(proxy.requests(rf"POST /{members}/_mget")) == everything + 1
        finally:
            await cut.close()
            gone = {"ignore_unavailable": "true"}
            httpcalls.delete(f"{es_url}/{members}", params=gone, timeout=30)
