"""The result store: state, since, transitions, counters, staleness and persistence.

Unit tests pin the bookkeeping; the last tests write to and restore from a real
Elasticsearch index, the way a restart does.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from esbridge.config import ConnectionConfig
from esbridge.esclient import Connection
from esbridge.persistence import StatePersistence
from esbridge.result import GroupResult, Result, State
from esbridge.store import STATE_MAPPING, Mark, ResultStore
from esbridge_dev import httpcalls

T0 = 1_700_000_000.0


def result(state: State, at: float, summary: str = "", **kw: object) -> Result:
    return Result(check="c", state=state, summary=summary or state.name, evaluated_at=at, **kw)  # type: ignore[arg-type]


def store_with(name: str = "c", interval: float = 10.0, history: int = 50) -> ResultStore:
    store = ResultStore(history=history, staleness_factor=2.0)
    store.sync({name: interval})
    return store


def test_first_result_is_a_transition_from_pending() -> None:
    store = store_with()
    t = store.record(result(State.OK, T0))
    assert t is not None and t.from_state is None and t.to_state is State.OK
    entry = store.get("c")
    assert entry is not None and entry.since == T0 and entry.runs == 1


def test_same_state_keeps_since_and_adds_no_transition() -> None:
    store = store_with()
    store.record(result(State.CRITICAL, T0))
    assert store.record(result(State.CRITICAL, T0 + 10)) is None
    store.record(result(State.OK, T0 + 20))
    entry = store.get("c")
    assert entry is not None
    assert entry.since == T0 + 20 and entry.previous_state is State.CRITICAL
    assert [(t.from_state, t.to_state) for t in entry.transitions] == [
        (None, State.CRITICAL),
        (State.CRITICAL, State.OK),
    ]
    assert entry.runs == 3


def _persisted(state: State, since: float, at: float) -> dict[str, object]:
    """The document a previous process wrote: one transition into ``state`` at ``since``."""
    old = store_with()
    old.record(result(state, since))
    old.record(result(state, at))
    entry = old.get("c")
    assert entry is not None
    return old.to_document(entry)


def test_late_restore_with_unchanged_state_keeps_the_real_since() -> None:
    """The store was unreachable at start: the check ran first, the history came later."""
    doc = _persisted(State.CRITICAL, T0, T0 + 60)
    store = store_with()
    store.record(result(State.CRITICAL, T0 + 120))
    assert store.restore([doc]) == 1
    entry = store.get("c")
    assert entry is not None
    assert entry.since == T0, "the state did not change: since is when it began, not the restart"
    assert [(t.from_state, t.to_state) for t in entry.transitions] == [(None, State.CRITICAL)]
    assert entry.runs == 3
    assert entry.result is not None and entry.result.evaluated_at == T0 + 120


def test_late_restore_with_changed_state_records_the_real_transition() -> None:
    doc = _persisted(State.CRITICAL, T0, T0 + 60)
    store = store_with()
    store.record(result(State.OK, T0 + 120))
    store.restore([doc])
    entry = store.get("c")
    assert entry is not None
    assert [(t.from_state, t.to_state) for t in entry.transitions] == [
        (None, State.CRITICAL),
        (State.CRITICAL, State.OK),
    ]
    assert entry.since == T0 + 120 and entry.previous_state is State.CRITICAL


def test_failures_count_until_a_success() -> None:
    store = store_with()
    store.record(result(State.OK, T0))
    for i in range(3):
        store.record(result(State.UNKNOWN, T0 + i + 1, error_kind="timeout", error="t"))
    entry = store.get("c")
    assert entry is not None
    assert entry.consecutive_failures == 3 and entry.errors == {"timeout": 3}
    assert entry.last_success == T0
    store.record(result(State.WARNING, T0 + 10))
    assert entry.consecutive_failures == 0 and entry.last_success == T0 + 10


def test_history_keeps_the_last_n_transitions() -> None:
    store = store_with(history=3)
    for i in range(10):
        store.record(result(State.OK if i % 2 else State.CRITICAL, T0 + i))
    entry = store.get("c")
    assert entry is not None and [t.at for t in entry.transitions] == [T0 + 7, T0 + 8, T0 + 9]


def test_group_since_follows_each_group() -> None:
    store = store_with()

    def grouped(at: float, a: State, b: State | None) -> Result:
        groups = [GroupResult((("host", "a"),), a, 1.0, "a", ())]
        if b is not None:
            groups.append(GroupResult((("host", "b"),), b, 1.0, "b", ()))
        return result(State.worst(g.state for g in groups), at, groups=tuple(groups))

    store.record(grouped(T0, State.OK, State.OK))
    store.record(grouped(T0 + 10, State.OK, State.CRITICAL))
    entry = store.get("c")
    assert entry is not None
    assert entry.group_since == {
        "host=a": (int(State.OK), T0),
        "host=b": (int(State.CRITICAL), T0 + 10),
    }
    store.record(grouped(T0 + 20, State.OK, None))
    assert set(entry.group_since) == {"host=a"}


def test_old_result_reads_unknown_stale_never_a_stale_ok() -> None:
    store = store_with(interval=10.0)  # staleness factor 2 → 20 s
    store.record(result(State.OK, T0, "all good"))
    entry = store.get("c")
    assert entry is not None
    fresh = store.effective(entry, T0 + 20)
    assert fresh is not None and fresh.state is State.OK
    old = store.effective(entry, T0 + 21)
    assert old is not None and old.state is State.UNKNOWN
    assert old.summary.startswith("stale: last evaluated 21 s ago") and "all good" in old.summary
    assert store.is_stale(entry, T0 + 21) and not store.is_stale(entry, T0 + 19)
    assert store.is_stale(entry, T0 - 21)  # the clock stepped back beyond the allowed age


def test_a_stale_state_is_shown_since_it_went_stale() -> None:
    """CRITICAL then OK a day ago, no result for a while: UNKNOWN since it went stale (the
    recovery a day ago, ``since``, would point at the wrong incident)."""
    store = store_with(interval=10.0)  # stale 20 s after the last result
    store.record(result(State.CRITICAL, T0 - 86_400))
    store.record(result(State.OK, T0))
    entry = store.get("c")
    assert entry is not None
    assert store.stale_since(entry, T0 + 5) is None and entry.since == T0  # fresh
    assert store.stale_since(entry, T0 + 600) == T0 + 20


def test_sync_drops_removed_checks_and_keeps_the_rest() -> None:
    store = ResultStore()
    store.sync({"a": 10.0, "b": 10.0})
    store.record(Result("a", State.OK, "x", evaluated_at=T0))
    store.sync({"a": 30.0})
    entry = store.get("a")
    assert store.names() == ["a"] and entry is not None and entry.interval == 30.0
    assert entry.result is not None and store.record(Result("b", State.OK, "x")) is None


def test_restored_state_keeps_since_and_does_not_repeat_the_transition() -> None:
    """Restart without flapping: same since, same history, no false recovery."""
    before = store_with()
    before.record(result(State.OK, T0))
    before.record(result(State.CRITICAL, T0 + 10, "broken"))
    documents = [doc for _, doc in before.dirty_documents()]

    after = store_with()
    assert after.restore(documents) == 1
    entry = after.get("c")
    assert entry is not None and entry.since == T0 + 10 and entry.state is State.CRITICAL
    assert after.record(result(State.CRITICAL, T0 + 20, "broken")) is None
    assert len(entry.transitions) == 2 and entry.since == T0 + 10 and entry.runs == 3
    assert entry.previous_state is State.OK


def test_a_result_recorded_during_a_flush_stays_dirty() -> None:
    """The write of an older document must not mark a newer result as persisted."""
    store = store_with()
    store.record(result(State.OK, T0))
    documents = store.dirty_documents()  # the flush builds its bulk body ...
    store.record(result(State.CRITICAL, T0 + 10))  # ... a run finishes meanwhile ...
    store.mark_clean(documents)  # ... the bulk answer arrives
    assert store.dirty_count == 1
    assert store.dirty_documents()[0][1]["state"] == "CRITICAL"
    store.mark_clean(store.dirty_documents())
    assert store.dirty_count == 0


def test_a_result_not_to_persist_is_kept_but_never_written() -> None:
    """A replica that cannot confirm it still owns a check keeps its result in its own view,
    but writes nothing; what was pending before can be discarded as a whole."""
    store = store_with()
    store.record(result(State.OK, T0))
    transition = store.record(result(State.CRITICAL, T0 + 10), persist=False)
    assert transition is not None and store.get("c").state is State.CRITICAL  # type: ignore[union-attr]
    # The document is made from the entry as it is now, so the earlier write goes too.
    assert store.dirty_count == 0 and store.dirty_documents() == []
    store.record(result(State.CRITICAL, T0 + 20))
    store.sync({"c": 10.0, "d": 10.0})
    store.record(result(State.OK, T0 + 20).with_(check="d"))
    assert store.discard_dirty() == 2
    assert store.dirty_count == 0
    store.record(result(State.CRITICAL, T0 + 30))
    assert [doc["state"] for _, doc in store.dirty_documents()] == ["CRITICAL"]


def test_the_owners_document_replaces_a_provisional_result_whatever_its_age() -> None:
    """A result recorded while the replica could not confirm its share (persist=False) is its
    own view only: the owner's document replaces it even when older; a result recorded as
    the owner (persist=True) is replaced only by a newer one."""
    owner = store_with()
    owner.record(result(State.OK, T0, "fine"))
    document = owner.to_document(owner.get("c"))  # type: ignore[arg-type]
    mine = store_with()
    mine.record(result(State.UNKNOWN, T0 + 30, "unreachable"), persist=False)
    assert mine.provisional == {"c"}
    assert mine.adopt([document]) == 1
    entry = mine.get("c")
    assert entry is not None and entry.result is not None
    assert entry.state is State.OK and entry.result.evaluated_at == T0 and entry.since == T0
    assert [t.to_state for t in entry.transitions] == [State.OK]
    assert mine.provisional == set() and mine.dirty_count == 0
    assert mine.adopt([document]) == 0  # no longer provisional: same age, not newer
    mine.record(result(State.CRITICAL, T0 + 40, "bad"))  # as the owner
    assert mine.adopt([document]) == 0 and mine.get("c").state is State.CRITICAL  # type: ignore[union-attr]
    mine.record(result(State.UNKNOWN, T0 + 50), persist=False)
    mine.sync({"d": 10.0})  # a reload removed the check: nothing provisional is left of it
    assert mine.provisional == set()


def test_a_run_that_started_alone_is_known_once_its_check_is_restored() -> None:
    """Back from a time alone, a replica restores its checks from the owner's documents and
    marks them: the first result after the mark says whether its run started before (of the
    time alone: the service drops it); later results are never asked about again."""
    owner = store_with()
    owner.record(result(State.WARNING, T0, "warn"))
    owner.record(result(State.WARNING, T0 + 30, "warn"))
    document = owner.to_document(owner.get("c"))  # type: ignore[arg-type]
    mine = store_with()
    in_flight = result(State.UNKNOWN, T0 + 40, "unreachable", error_kind="unreachable")
    assert not mine.started_before_restore(in_flight)  # never marked: a run as any other
    mine.record(result(State.UNKNOWN, T0 + 20, "unreachable"), persist=False)  # alone
    assert mine.adopt([document]) == 1
    mine.mark_restored(["c"], at=T0 + 45)
    assert mine.started_before_restore(in_flight)
    assert not mine.started_before_restore(in_flight)  # asked once: the mark is gone
    mine.mark_restored(["c"], at=T0 + 45)
    assert not mine.started_before_restore(result(State.WARNING, T0 + 50, "warn"))
    mine.mark_restored(["c"], at=T0 + 45)
    mine.sync({"d": 10.0})  # removed by a reload: its mark goes with it
    mine.sync({"c": 10.0})
    assert not mine.started_before_restore(in_flight)


@pytest.mark.parametrize(
    "field, value",
    [
        ("errors", ["timeout"]),
        ("group_since", "web-01"),
        ("transitions", [{"at": "yesterday", "to": "OK"}]),
        ("result", {"state": "MAYBE", "summary": "x"}),
        ("result", ["CRITICAL"]),
    ],
)
def test_a_document_of_the_wrong_shape_is_skipped_not_fatal(field: str, value: object) -> None:
    """The shared view and the restore read whatever the state index holds: one bad document
    is left out with a warning naming its check; the others in the same read are applied."""
    owner = ResultStore()
    owner.sync({"bad": 10.0, "good": 10.0})
    for name in ("bad", "good"):
        owner.record(Result(check=name, state=State.CRITICAL, summary="x", evaluated_at=T0))
    docs = [owner.to_document(owner.get(n)) for n in ("bad", "good")]  # type: ignore[arg-type]
    docs[0][field] = value
    for read in ("adopt", "restore"):
        reader = ResultStore()
        reader.sync({"bad": 10.0, "good": 10.0})
        assert getattr(reader, read)(docs) == 1
        assert reader.get("bad").result is None  # type: ignore[union-attr]
        assert reader.get("good").state is State.CRITICAL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path, value",
    [
        ("since_ts", 1e20),  # beyond year 9999: every output formatting it failed (a 500)
        ("since_ts", "1796032844"),  # a string the index's double mapping coerces
        ("last_success_ts", -5.0),
        ("result.evaluated_at", "NaN"),  # NaN also made the result never stale
        ("result.evaluated_at", 1e300),
        ("result.value", "abc"),
        ("result.value", True),
        ("result.summary", {"text": "x"}),
        ("result.error", 5),
        ("result.long_output", ["fine", 3]),
        ("result.perfdata.0.value", [1]),
        ("result.groups.0.value", "3"),
        ("result.groups.0.summary", ["web-01"]),
        ("transitions.0.at", 1e20),
        ("group_since.host=web-01", [2, float("inf")]),
    ],
)
def test_a_field_of_the_wrong_type_or_range_skips_the_document(path: str, value: object) -> None:
    """Each field is checked as it is read: a value that only failed later, in every output
    that showed it (``/api/v1/checks`` answered 500 on every replica, until the owner's next
    write, or for ever for ``since``), now leaves the document out like any other bad shape."""
    from esbridge.result import Perfdatum

    owner = ResultStore()
    owner.sync({"bad": 10.0, "good": 10.0})
    for name in ("bad", "good"):
        group = GroupResult(
            (("host", "web-01"),), State.CRITICAL, 3.0, "web-01: 3", (Perfdatum("web-01", 3.0),)
        )
        owner.record(
            Result(
                check=name,
                state=State.CRITICAL,
                summary="x",
                value=3.0,
                long_output=("fine",),
                perfdata=(Perfdatum("count", 3.0),),
                groups=(group,),
                evaluated_at=T0,
            )
        )
    docs = [owner.to_document(owner.get(n)) for n in ("bad", "good")]  # type: ignore[arg-type]
    *parents, last = path.split(".")
    node: Any = docs[0]
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[int(last) if last.isdigit() else last] = value
    for read in ("adopt", "restore"):
        reader = ResultStore()
        reader.sync({"bad": 10.0, "good": 10.0})
        assert getattr(reader, read)(docs) == 1, (read, path)
        assert reader.get("bad").result is None  # type: ignore[union-attr]
        assert reader.get("good").state is State.CRITICAL  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "field, value",
    [
        ("style", "words"),
        ("prefix", 5),
        ("suffix", ["x"]),
        ("uom", None),  # present but null: a string or absent
        ("warn", "ten"),
        ("crit", 50),
        ("min", "0"),
        ("max", float("nan")),
        (None, "p95 of latency"),  # the wording itself not an object
    ],
)
def test_a_bad_group_wording_skips_the_document(field: str | None, value: object) -> None:
    """A grouped result's groups are worded from the wording its document stores once:
    a wording of the wrong shape leaves that document out, never fails an output later."""
    from esbridge.kinds.wording import Describe, GroupWording, WordedGroup
    from esbridge.ranges import Range

    wording = GroupWording(
        Describe("p95 of latency ", "value", "ms"), "ms", Range.parse("10"), Range.parse("50")
    )
    owner = ResultStore()
    owner.sync({"bad": 10.0, "good": 10.0})
    for name in ("bad", "good"):
        group = WordedGroup((("host", "web-01"),), State.CRITICAL, 60.0, wording)
        owner.record(
            Result(check=name, state=State.CRITICAL, summary="x", groups=(group,), evaluated_at=T0)
        )
    docs = [owner.to_document(owner.get(n)) for n in ("bad", "good")]  # type: ignore[arg-type]
    if field is None:
        docs[0]["result"]["group_wording"] = value
    else:
        docs[0]["result"]["group_wording"][field] = value
    for read in ("adopt", "restore"):
        reader = ResultStore()
        reader.sync({"bad": 10.0, "good": 10.0})
        assert getattr(reader, read)(docs) == 1, (read, field)
        assert reader.get("bad").result is None  # type: ignore[union-attr]
        good = reader.get("good").result  # type: ignore[union-attr]
        assert good is not None
        assert good.groups[0].summary == "web-01: p95 of latency 60 ms (critical > 50)"


def test_adopting_the_owners_documents_matches_a_full_read_at_every_step() -> None:
    """The shared view reuses the history it holds when a document brings the same one:
    after every document the entry equals a fresh decode of it, including when the newest
    transition changes while the (full) history keeps its length."""
    owner = store_with(history=3)
    reader = store_with(history=3)
    states = [
        State.OK,
        State.OK,
        State.CRITICAL,
        State.CRITICAL,
        State.OK,
        State.WARNING,
        State.WARNING,
        State.OK,
        State.CRITICAL,
        State.CRITICAL,
        State.CRITICAL,
    ]
    for i, state in enumerate(states):
        owner.record(result(state, T0 + 10 * i, f"{state.name} {i // 2}"))
        entry = owner.get("c")
        assert entry is not None
        doc = owner.to_document(entry)
        assert reader.adopt([doc]) == 1
        fresh = store_with(history=3)
        fresh.restore([doc])
        got, want = reader.get("c"), fresh.get("c")
        assert got is not None and want is not None
        assert list(got.transitions) == list(want.transitions) == list(entry.transitions)
        assert (got.result, got.since, got.previous_state, got.runs) == (
            want.result,
            want.since,
            want.previous_state,
            want.runs,
        )
    # a history rewritten under the same length and newest time is still read again
    doc = owner.to_document(entry)
    doc["transitions"][-1]["summary"] = "edited by an operator"
    doc["result"]["evaluated_at"] += 10
    reader.adopt([doc])
    got = reader.get("c")
    assert got is not None and got.transitions[-1].summary == "edited by an operator"


class _Decodes:
    """Counts full decodes of state documents (``_Restored.from_document``)."""

    def __init__(self, patch: pytest.MonkeyPatch) -> None:
        from esbridge.store import _Restored

        self.count, decode = 0, _Restored.from_document

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return decode(*args, **kwargs)

        patch.setattr(_Restored, "from_document", counted)


_CHANGES = ["again", "again", "again", "value", "state", "words", "error", "mine"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(_CHANGES), min_size=1, max_size=25))
def test_a_document_that_gives_the_same_answer_again_reads_as_a_full_read(
    changes: list[str],
) -> None:
    """A document that differs from the one before only in the run's times and counters is
    read from what the reader holds (the usual case: most checks answer the same run after
    run); after every document of any sequence the entry still equals a fresh read of it, also
    after a result of the reader's own (recorded while it could not confirm its membership)."""
    from esbridge.result import Perfdatum

    owner, reader = store_with(history=5), store_with(history=5)
    state, value, words, at, full = State.OK, 0.0, "0 errors", T0, 0
    with pytest.MonkeyPatch.context() as patch:
        decodes = _Decodes(patch)
        for i, change in enumerate(changes):
            at += 10
            error = None
            if change == "value":
                value += 1
            elif change == "state":
                state = State.CRITICAL if state is State.OK else State.OK
            elif change == "words":
                words = f"{int(value)} errors ({i})"
            elif change == "error":
                state, error = State.UNKNOWN, "timeout"
            elif change == "mine":
                reader.record(result(State.UNKNOWN, at - 5, "mine"), persist=False)
            owner.record(
                Result(
                    check="c",
                    state=state,
                    summary=words,
                    value=value,
                    perfdata=(Perfdatum("c", value),),
                    error=error,
                    error_kind="timeout" if error else None,  # type: ignore[arg-type]
                    evaluated_at=at,
                    duration=0.01 * i,
                )
            )
            doc = owner.to_document(owner.get("c"))  # type: ignore[arg-type]
            before = decodes.count
            assert reader.adopt([doc]) == 1
            full += decodes.count - before
            fresh = store_with(history=5)
            fresh.restore([doc])
            got, want = reader.get("c"), fresh.get("c")
            assert got is not None and want is not None and got.result is not None
            assert got.result == want.result
            assert (got.result.max_groups, got.result.stale_previous) == (None, None)
            fields = ("since", "previous_state", "last_success", "consecutive_failures", "runs")
            assert [getattr(got, f) for f in fields] == [getattr(want, f) for f in fields]
            assert (got.errors, got.group_since) == (want.errors, want.group_since)
            assert list(got.transitions) == list(want.transitions)
            assert reader.provisional == set()
    if changes == ["again"] * len(changes):
        assert full == min(2, len(changes))  # the first, and the first that could be compared


def test_the_same_answer_again_is_read_without_decoding_it_but_not_after_a_restore() -> None:
    """Which documents take the short way: the same answer again, after the second; a
    restore in between (which may change the history the entry holds) reads the next whole."""
    owner, reader = store_with(), store_with()
    with pytest.MonkeyPatch.context() as patch:
        decodes = _Decodes(patch)
        for i in range(5):
            owner.record(result(State.OK, T0 + 10 * i, "0 errors", value=0.0))
            reader.adopt([owner.to_document(owner.get("c"))])  # type: ignore[arg-type]
        assert decodes.count == 2
        got = reader.get("c")
        assert got is not None and got.result is not None
        assert (got.result.evaluated_at, got.runs, got.last_success) == (T0 + 40, 5, T0 + 40)
        owner.record(result(State.OK, T0 + 50, "0 errors, 1 warning", value=0.0))
        reader.adopt([owner.to_document(owner.get("c"))])  # type: ignore[arg-type]
        assert decodes.count == 3 and got.result.summary == "0 errors, 1 warning"
        # a restore rewrites the history under the same answer: the next read is whole
        doc = owner.to_document(owner.get("c"))  # type: ignore[arg-type]
        edited = {**doc, "transitions": [{**doc["transitions"][0], "summary": "edited"}]}
        reader.restore([edited])
        reader.mark_clean(["c"])
        count = decodes.count
        owner.record(result(State.OK, T0 + 60, "0 errors, 1 warning", value=0.0))
        reader.adopt([owner.to_document(owner.get("c"))])  # type: ignore[arg-type]
        assert decodes.count == count + 1
        assert got.transitions[0].summary == "0 errors"  # the owner's, not the edit


# -- persistence against a real Elasticsearch ------------------------------------------------


def _persistence(es_url: str, store: ResultStore, index: str) -> StatePersistence:
    connection = Connection("default", ConnectionConfig(urls=(es_url,)))
    return StatePersistence(store, connection, index, 10.0)


@pytest.mark.es
async def test_flush_and_restore_through_elasticsearch(es_url: str) -> None:
    index = f"esbridge-test-store-{uuid.uuid4().hex[:8]}"
    store = store_with()
    store.record(result(State.WARNING, T0, "slow"))
    store.record(result(State.WARNING, T0 + 5, "slow"))
    writer = _persistence(es_url, store, index)
    try:
        assert await writer.flush() == 1
        assert store.persistence_ok is True and store.dirty_count == 0
        mapping = httpcalls.get(f"{es_url}/{index}/_mapping", timeout=10).json()
        assert mapping[index]["mappings"]["dynamic"] == "strict"
        assert set(mapping[index]["mappings"]["properties"]) == set(STATE_MAPPING["properties"])
        httpcalls.post(f"{es_url}/{index}/_refresh", timeout=10)

        fresh = store_with()
        reader = _persistence(es_url, fresh, index)
        assert await reader.restore() == 1
        entry = fresh.get("c")
        assert entry is not None and entry.since == T0 and entry.runs == 2
        assert entry.result is not None and entry.result.summary == "slow"
        await writer.connection.close()
        await reader.connection.close()
    finally:
        httpcalls.delete(f"{es_url}/{index}", params={"ignore_unavailable": "true"}, timeout=10)


@pytest.mark.es
async def test_unwritable_store_keeps_results_dirty_and_reports(es_url: str) -> None:
    """A closed index rejects writes: the failure is reported, nothing is lost."""
    index = f"esbridge-test-store-{uuid.uuid4().hex[:8]}"
    store = store_with()
    store.record(result(State.OK, T0))
    writer = _persistence(es_url, store, index)
    try:
        await writer.ensure_index()
        httpcalls.post(f"{es_url}/{index}/_close", timeout=30).raise_for_status()
        assert await writer.flush() == 0
        assert store.persistence_ok is False and store.dirty_count == 1
        assert store.persistence_error is not None and index in store.persistence_error
        httpcalls.post(f"{es_url}/{index}/_open", timeout=30).raise_for_status()
        httpcalls.get(
            f"{es_url}/_cluster/health/{index}",
            params={"wait_for_status": "yellow", "timeout": "20s"},
            timeout=30,
        )
        for _ in range(50):
            if await writer.flush() == 1:
                break
            await asyncio.sleep(0.2)
        assert store.persistence_ok is True and store.dirty_count == 0
        await writer.connection.close()
    finally:
        httpcalls.delete(f"{es_url}/{index}", params={"ignore_unavailable": "true"}, timeout=10)


# -- write on change: the owner announces repeated answers, its peers follow ----------------

_RUNS = ["again", "again", "again", "value", "state", "error", "flush", "beat", "beat", "miss"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(_RUNS), min_size=1, max_size=30))
def test_a_follower_shows_only_runs_the_owner_made_and_catches_up(events: list[str]) -> None:
    """An owner writing on change (a run that repeats the written answer is announced, not
    written) and a peer following what it announces, reading a document only when the one
    announced is not the one it holds. Whatever the order of runs, flushes and heartbeats,
    the peer's result is always one the owner recorded, time and all (never an old answer
    dated by a later run), and after a flush and a heartbeat it is the owner's latest, with
    the owner's since, history and counters. The index sees a write only for a change.
    A heartbeat carries the news since the one before; a peer that missed one (``miss``)
    takes everything announced at the next."""
    owner, peer = store_with(), store_with()
    owner.write_on_change = True
    index: dict[str, dict[str, Any]] = {}
    recorded: dict[float, Result] = {}
    state, value, at, writes, changes = State.OK, 0.0, T0, 0, 0
    missed = True  # nothing read yet: the first heartbeat read is read in full

    def flush() -> None:
        nonlocal writes
        documents = owner.dirty_documents()
        for name, doc in documents:
            index[name] = {k: v for k, v in doc.items() if not k.startswith("_")}
        writes += len(documents)
        owner.mark_clean(documents)

    def beat(read: bool = True) -> None:
        nonlocal missed
        fresh, every = owner.announce({"c"})
        if not read:
            missed = True
            return
        announced = every if missed else fresh
        missed = False
        fetch, _ = peer.follow("owner", announced, {"c": "owner"})
        if fetch:  # as the shared view does: read them, then take their runs since
            peer.adopt([index[n] for n in fetch], newer_only=False)
            peer.follow("owner", {n: announced[n] for n in fetch}, {"c": "owner"})

    for i, event in enumerate(events):
        if event == "flush":
            flush()
        elif event in ("beat", "miss"):
            beat(read=event == "beat")
        else:
            at += 10
            error = None
            if event == "value":
                value += 1
            elif event == "state":
                state = State.CRITICAL if state is State.OK else State.OK
            if event == "error":  # a failure counts, so its document changes every run
                error = "timeout"
                run = result(State.UNKNOWN, at, "timeout", error=error, error_kind="timeout")
            else:
                run = result(state, at, f"{value} errors", value=value, duration=0.01 * i)
            before = owner.get("c").result  # type: ignore[union-attr]
            if before is None or error is not None or not before.same_answer(run):
                changes += 1
            owner.record(run)
            recorded[at] = run
        held = peer.get("c").result  # type: ignore[union-attr]
        if held is not None:
            assert recorded[held.evaluated_at] == held  # a run the owner made, as it made it
    flush()
    beat()
    mine, theirs = owner.get("c"), peer.get("c")
    assert mine is not None and theirs is not None
    if mine.result is not None:
        assert theirs.result == mine.result
        assert (theirs.since, theirs.runs, theirs.last_success) == (
            mine.since,
            mine.runs,
            mine.last_success,
        )
        assert list(theirs.transitions) == list(mine.transitions)
    assert writes <= changes  # a repeated answer is never written


def test_a_heartbeat_announces_the_news_since_the_one_before_and_everything() -> None:
    """``announce``: the checks set since the last call (runs repeated, writes made) and
    every check announced; a check that changed and is not written yet is in neither."""
    store = ResultStore(history=50, staleness_factor=2.0)
    store.sync({"a": 10.0, "b": 10.0})
    store.write_on_change = True

    def run(name: str, at: float, value: float) -> Result:
        return Result(check=name, state=State.OK, summary=f"{value}", value=value, evaluated_at=at)

    for name in ("a", "b"):
        store.record(run(name, T0, 0.0))
    store.mark_clean(store.dirty_documents())
    fresh, every = store.announce({"a", "b"})
    assert fresh == every == {"a": [T0, 0.0, 1, T0], "b": [T0, 0.0, 1, T0]}
    assert store.announce({"a", "b"}) == ({}, every)  # nothing since
    store.record(run("a", T0 + 10, 0.0))
    store.record(run("b", T0 + 10, 1.0))  # a change, not written yet
    fresh, every = store.announce({"a", "b"})
    assert fresh == every == {"a": [T0 + 10, 0.0, 2, T0]}
    store.record(run("a", T0 + 20, 0.0))
    assert store.announce({"b"}) == ({}, {})  # only the checks asked for (the owned ones)
    store.mark_clean(store.dirty_documents())  # b's change written: news
    assert store.announce({"a", "b"}) == (
        {"b": [T0 + 10, 0.0, 2, T0 + 10]},
        {"a": [T0 + 20, 0.0, 3, T0], "b": [T0 + 10, 0.0, 2, T0 + 10]},
    )


def test_the_rewrite_period_is_the_configured_one() -> None:
    """``state.rewrite_after`` (here 2 minutes): a repeated answer is announced until the
    written one is that old, then written again; the service gives the store its setting."""
    from esbridge.app import Service
    from esbridge.config import Settings
    from esbridge.loader import load_text

    store = store_with()
    store.write_on_change = True
    store.rewrite_after = 120.0
    store.record(result(State.OK, T0, "0 errors", value=0.0))
    store.mark_clean(store.dirty_documents())
    store.record(result(State.OK, T0 + 119, "0 errors", value=0.0))
    assert store.dirty_count == 0  # younger than the period: announced only
    store.record(result(State.OK, T0 + 120, "0 errors", value=0.0))
    assert store.dirty_count == 1  # as old as the period: written again

    settings = Settings.model_validate({"state": {"rewrite_after": "5m"}})
    checks = load_text("checks:\n  - {name: c, kind: count, index: logs, critical: '1:'}\n")
    assert Service(settings, checks).store.rewrite_after == 300.0
    assert Service(Settings(), checks).store.rewrite_after == 600.0  # the default


def test_a_repeated_answer_is_announced_not_written_until_it_is_old() -> None:
    """Write on change: the first result is written; runs that repeat it only move what the
    heartbeat announces; a change, a failure, or the rewrite period each write again."""
    from esbridge.store import REWRITE_AFTER

    store = store_with()
    store.write_on_change = True
    store.record(result(State.OK, T0, "0 errors", value=0.0))
    documents = store.dirty_documents()
    store.mark_clean(documents)
    assert store.progress({"c"}) == {"c": [T0, 0.0, 1, T0]}
    store.record(result(State.OK, T0 + 10, "0 errors", value=0.0, duration=0.5))
    assert store.dirty_count == 0
    assert store.progress({"c"}) == {"c": [T0 + 10, 0.5, 2, T0]}
    assert store.progress(set()) == {}  # only the checks asked for (the owned ones)
    assert store.write_repeats() == 1 and store.dirty_count == 1  # stopping: written
    store.mark_clean(store.dirty_documents())
    assert store.write_repeats() == 0
    store.record(result(State.OK, T0 + 20, "1 error", value=1.0))
    assert store.dirty_count == 1 and store.progress({"c"}) == {}  # a change: nothing said
    store.mark_clean(store.dirty_documents())
    store.record(result(State.OK, T0 + 20 + REWRITE_AFTER, "1 error", value=1.0))
    assert store.dirty_count == 1  # the same answer, but the document is old: rewritten
    store.mark_clean(store.dirty_documents())
    failing = result(State.UNKNOWN, T0 + 700, "timeout", error="timeout", error_kind="timeout")
    store.record(failing)
    store.mark_clean(store.dirty_documents())
    store.record(failing.timed(T0 + 710, 0.0))
    assert store.dirty_count == 1  # a failure counts: its document changes every run
    # without write on change (a peer that does not follow), every run is written
    store.write_on_change = False
    store.mark_clean(store.dirty_documents())
    store.record(failing.timed(T0 + 720, 0.0))
    assert store.dirty_count == 1
    # nor for a check at an interval too short to wait for a heartbeat (10 s here)
    ok = result(State.OK, T0 + 730, "1 error", value=1.0)
    store.write_on_change, store.write_on_change_from = True, 20.0
    for i in range(3):
        store.record(ok.timed(T0 + 730 + 10 * i, 0.0))
        assert store.dirty_count == 1
        store.mark_clean(store.dirty_documents())


def test_a_follower_reads_what_it_cannot_vouch_for() -> None:
    """What a peer announced moves an entry forward only while the entry holds that very
    document (whoever owns the check now: a new owner before its first run holds what the
    previous one announced); a result of the follower's own, or an announcement of the wrong
    shape, never re-dates what it holds, and only the owner's announcements are read."""
    owner, peer = store_with(), store_with()
    owner.write_on_change = True
    owner.record(result(State.CRITICAL, T0, "5 errors", value=5.0))
    documents = owner.dirty_documents()
    owner.mark_clean(documents)
    doc = {k: v for k, v in documents[0][1].items() if not k.startswith("_")}
    assert peer.follow("a", owner.progress({"c"}), {"c": "a"}) == (["c"], 0)  # nothing held
    assert peer.follow("a", owner.progress({"c"}), {"c": "b"}) == ([], 0)  # b's to announce
    peer.adopt([doc], newer_only=False)
    owner.record(result(State.CRITICAL, T0 + 10, "5 errors", value=5.0))
    said = owner.progress({"c"})
    assert peer.follow("a", {"c": "bad"}, {"c": "a"}) == ([], 0)
    assert peer.follow("a", {"c": [None, 0.0, 2, T0]}, {"c": "a"}) == ([], 0)
    for duration, runs in ((float("nan"), 2), (-1.0, 2), ("x", 2), (0.0, -1), (0.0, "x")):
        bad = {"c": [T0 + 10, duration, runs, T0]}
        assert peer.follow("a", bad, {"c": "a"}) == ([], 0), (duration, runs)
    assert peer.follow("a", said, {"c": "b"}) == ([], 1)  # a ran it so, owner or not
    entry = peer.get("c")
    assert entry is not None and entry.result is not None
    assert (entry.result.evaluated_at, entry.runs, entry.since) == (T0 + 10, 2, T0)
    assert peer.follow("a", said, {"c": "a"}) == ([], 0)  # nothing newer
    peer.record(result(State.UNKNOWN, T0 + 15, "mine"), persist=False)  # alone, a moment
    owner.record(result(State.CRITICAL, T0 + 20, "5 errors", value=5.0))
    assert peer.follow("a", owner.progress({"c"}), {"c": "a"}) == (["c"], 0)
    assert entry.result.summary == "mine"  # read from the index, not re-dated


def test_a_followed_run_is_built_when_read_and_staleness_judges_its_time() -> None:
    """Following a run sets the entry's time, not a new result: the result outputs read is
    built when first read (the held answer at the announced time and duration), the same
    object until the next run, and staleness judges the announced time, read or not."""
    owner, peer = store_with(), store_with()  # interval 10 s: stale after 20 s
    owner.write_on_change = True
    now = time.time()
    owner.record(result(State.CRITICAL, now - 60, "5 errors", value=5.0))
    documents = owner.dirty_documents()
    owner.mark_clean(documents)
    peer.adopt([{k: v for k, v in documents[0][1].items() if not k.startswith("_")}], False)
    entry = peer.get("c")
    assert entry is not None and entry.held is not None
    written = entry.held
    assert peer.is_stale(entry)  # the written run is a minute old
    owner.record(result(State.CRITICAL, now - 1, "5 errors", value=5.0, duration=0.25))
    assert peer.follow("a", owner.progress({"c"}), {"c": "a"}) == ([], 1)
    assert entry.held is written and entry.ran == (now - 1, 0.25)  # nothing built yet
    assert entry.evaluated_at == now - 1 and not peer.is_stale(entry)
    shown = entry.result
    assert shown is not None and shown is entry.result  # built once, on the first read
    assert (shown.evaluated_at, shown.duration) == (now - 1, 0.25)
    assert shown == written.timed(now - 1, 0.25)  # the written answer, at the run's time
    effective = peer.effective(entry)
    assert effective is not None and effective.state is State.CRITICAL
    owner.record(result(State.CRITICAL, now, "5 errors", value=5.0, duration=0.5))
    assert peer.follow("a", owner.progress({"c"}), {"c": "a"}) == ([], 1)
    assert entry.result is not shown and entry.result.evaluated_at == now  # type: ignore[union-attr]
    peer.record(result(State.UNKNOWN, now + 1, "mine"), persist=False)
    assert entry.ran is None and entry.result is entry.held  # a result of its own: as is


def test_a_gained_check_is_written_every_run_until_it_settles_and_a_lost_one_never() -> None:
    """After a check moves, the replica that owned it may still write it for a moment: the
    new owner writes every run (announcing each write) until a run past ``settle``, so its
    last write is the index's; a replica writes no check it does not own."""
    store = store_with()
    store.write_on_change = True
    store.writes_only = {"c"}
    store.forget_written(["c"], settle=3600.0)  # gained: settling for an hour from now
    now = time.time()
    for i in range(3):
        store.record(result(State.OK, now + i, "0 errors", value=0.0))
        documents = store.dirty_documents()
        assert [n for n, _ in documents] == ["c"]  # settling: every run is written
        store.mark_clean(documents)
        assert store.progress({"c"})["c"][3] == now + i  # and announced as written
    store.record(result(State.OK, now + 3600, "0 errors", value=0.0))
    store.mark_clean(store.dirty_documents())
    store.record(result(State.OK, now + 3610, "0 errors", value=0.0))
    assert store.dirty_count == 0  # settled: the repeat is announced, not written
    assert store.progress({"c"}) == {"c": [now + 3610, 0.0, 5, now + 3600]}
    store.writes_only = set()  # lost
    store.forget_written(["c"])
    store.record(result(State.CRITICAL, now + 3620, "9 errors", value=9.0))
    assert store.dirty_documents() == [] and store.dirty_count == 0
    assert store.progress({"c"}) == {}


def test_write_again_writes_the_next_runs_past_settle_and_keeps_the_announcement() -> None:
    """Another replica counted this one out for a moment and may have written a check this
    one owns: the owner writes it again at its next runs (every run until ``settle``, and
    one past it), so its last write is the index's; until the next run its heartbeat still
    announces the run it had (a peer holding its write follows it on)."""
    store = store_with()
    store.write_on_change = True
    store.writes_only = {"c"}
    now = time.time()
    store.record(result(State.OK, now, "0 errors", value=0.0))
    store.mark_clean(store.dirty_documents())
    store.record(result(State.OK, now + 1, "0 errors", value=0.0))
    assert store.dirty_count == 0  # a repeat: announced only
    store.write_again(["c"], settle=3600.0)
    assert store.progress({"c"}) == {"c": [now + 1, 0.0, 2, now]}  # still announced
    for i in range(2, 4):
        store.record(result(State.OK, now + i, "0 errors", value=0.0))
        documents = store.dirty_documents()
        assert [n for n, _ in documents] == ["c"]  # the same answer, written again
        store.mark_clean(documents)
        assert store.progress({"c"})["c"][3] == now + i
    store.record(result(State.OK, now + 3601, "0 errors", value=0.0))
    assert store.dirty_count == 1  # the run past settle: written, and the index's last
    store.mark_clean(store.dirty_documents())
    store.record(result(State.OK, now + 3610, "0 errors", value=0.0))
    assert store.dirty_count == 0
    assert store.progress({"c"}) == {"c": [now + 3610, 0.0, 6, now + 3601]}
    store.write_again(["c"], settle=0.0)  # a later, shorter one: no run before it settles
    store.record(result(State.OK, now + 3620, "0 errors", value=0.0))
    assert store.dirty_count == 1


def test_a_lost_check_is_not_set_back_to_this_replicas_own_older_write() -> None:
    """A replica that loses a check to a newcomer reads its document by version for a moment
    (sharedview.py). Written on change, that document is this replica's own older write; its
    later runs were only announced. Applied, it set the check back (a CI run: 49.7 s old,
    stale, right after a fourth replica joined) until the new owner's first write. The
    replica keeps its own runs over its own write, and takes the new owner's."""
    store = store_with()
    store.write_on_change = True
    store.writes_only = {"c"}
    now = time.time()
    store.record(result(State.OK, now, "0 errors", value=0.0))
    documents = store.dirty_documents()
    store.mark_clean(documents)
    own_write = {k: v for k, v in documents[0][1].items() if not k.startswith("_")}
    store.record(result(State.OK, now + 30, "0 errors", value=0.0))
    assert store.dirty_count == 0  # announced only
    store.writes_only = set()  # lost
    store.forget_written(["c"])
    assert store.adopt([own_write], newer_only=False) == 0
    entry = store.get("c")
    assert entry is not None and entry.result is not None
    assert entry.result.evaluated_at == now + 30
    # the new owner's write replaces it, whatever its time (its clock, not this one's)
    owner = store_with()
    owner.record(result(State.OK, now + 20, "0 errors", value=0.0))
    theirs = {k: v for k, v in owner.dirty_documents()[0][1].items() if not k.startswith("_")}
    assert store.adopt([theirs], newer_only=False) == 1
    assert entry.result.evaluated_at == now + 20


# -- marks: an owner's heartbeat says "every check of mine not behind ran up to here" -------

_MARKED = ["run", "run", "run", "late", "value", "error", "flush", "beat", "beat+", "miss", "move"]


@settings(max_examples=1000, deadline=None)
@given(st.lists(st.sampled_from(_MARKED), min_size=1, max_size=40))
def test_a_peer_following_marks_never_shows_an_answer_fresher_than_a_run_gave_it(
    events: list[str],
) -> None:
    """An owner announcing marks (``announce_marked``) and a peer following them as the
    shared view does. Runs happen on the check's slots, or not at all (``late``: a slot
    passes without one), and the check may move away from the owner and back (``move``: no
    run while away); heartbeats come on a slot or between two (``beat+``). Whatever the
    order of runs, flushes and heartbeats, whenever the peer shows an answer at a time, the
    owner did run the check with that answer at that time or later: a mark never dates an
    old answer forward, nor a slot nobody ran. After a run, a flush and a heartbeat, the
    peer shows the owner's answer at its run's time."""
    owner, peer = store_with(), store_with()  # interval 10 s
    owner.write_on_change = True
    owned, owners = {"c"}, {"c": "owner"}
    entry, mine = peer.get("c"), owner.get("c")
    assert entry is not None and mine is not None
    mark = Mark()
    index: dict[str, dict[str, Any]] = {}
    runs: list[Result] = []
    value, missed = 0.0, True
    slot = mine.slot + 10 * round(T0 / 10)  # the check's slots: slot + k x 10 s

    def flush() -> None:
        documents = owner.dirty_documents()
        for name, doc in documents:
            index[name] = {k: v for k, v in doc.items() if not k.startswith("_")}
        owner.mark_clean(documents)

    def beat(read: bool = True, after: float = 0.0) -> None:
        nonlocal missed
        said = owner.announce_marked(owned, slot + after)  # on the last slot, or after it
        if not read:
            missed = True
            return
        if missed:  # as the shared view: what follows the mark is what all of it says
            peer.unfollow(mark)
            news = orjson.loads(orjson.dumps(said["progress_all"]))
        else:
            news = said["progress"]
        missed = False
        fetch, _ = peer.follow("owner", news, owners, mark)
        if fetch:
            peer.adopt([index[n] for n in fetch], newer_only=False)
            peer.follow("owner", {n: news[n] for n in fetch}, owners, mark)
        peer.unfollow(mark, said["behind"])
        mark.at = max(mark.at, said["mark"])

    def check() -> None:
        held = entry.held
        if held is None:
            return
        at = entry.evaluated_at
        assert at is not None
        assert any(r.same_answer(held) and r.evaluated_at >= at for r in runs), (held, at)
        shown = entry.result
        assert shown is not None and shown.evaluated_at == at and shown.same_answer(held)

    for event in events:
        if event == "flush":
            flush()
        elif event in ("beat", "miss"):
            beat(read=event == "beat")
        elif event == "beat+":  # a heartbeat 3 s after the last slot, before the next
            beat(after=3.0)
        elif event == "move":  # as a rebalance does: the set owned is a new one each time
            owned = set() if owned else {"c"}
            owner.forget_written(["c"])
        else:
            slot += 10
            if event == "late" or not owned:
                check()
                continue  # the slot passes: no run (a stuck search, a late batch, moved)
            if event == "value":
                value += 1
            if event == "error":
                run = result(State.UNKNOWN, slot, "timeout", error="timeout", error_kind="timeout")
            else:
                run = result(State.OK, slot, f"{value} errors", value=value)
            owner.record(run)
            runs.append(run)
        check()
    if not owned:
        owned = {"c"}
        owner.forget_written(["c"])
    slot += 10
    last = result(State.OK, slot, f"{value} errors", value=value)
    owner.record(last)
    runs.append(last)
    flush()
    beat()
    check()
    assert entry.result == owner.get("c").result == last  # type: ignore[union-attr]


def test_an_owner_marks_its_steady_checks_and_lists_those_behind() -> None:
    """``announce_marked``: the first mark names every check in step; then a heartbeat
    names only what changed (a write, a check back in step), lists the checks behind (a
    change not written, no run of a slot up to the mark), and encodes what it all says
    again only when that changed."""
    store = ResultStore(history=50, staleness_factor=2.0)
    store.sync({"a": 30.0, "b": 30.0})
    store.write_on_change = True
    owned = {"a", "b"}
    slots = {n: store.get(n).slot for n in owned}  # type: ignore[union-attr]
    base = 30 * round(T0 / 30)

    def run(name: str, at: float, value: float = 0.0) -> None:
        store.record(
            Result(check=name, state=State.OK, summary=f"{value}", value=value, evaluated_at=at)
        )

    for name in owned:
        run(name, base + slots[name])
    store.mark_clean(store.dirty_documents())
    upto = base + 30 + 29  # a's and b's next slots passed
    for name in owned:
        run(name, base + 30 + slots[name])
    said = store.announce_marked(owned, upto)
    assert said["behind"] == [] and said["mark"] == upto
    assert set(said["progress"]) == {"a", "b"}  # first mark: every check in step
    everything = said["progress_all"]
    assert orjson.loads(orjson.dumps(everything)) == said["progress"]

    for name in owned:  # steady: one more slot each, nothing to say but the mark
        run(name, base + 60 + slots[name])
    said = store.announce_marked(owned, upto + 30)
    assert (said["progress"], said["behind"]) == ({}, [])
    assert said["progress_all"] is everything  # not encoded again

    run("a", base + 90 + slots["a"])  # b's slot passes without a run
    said = store.announce_marked(owned, upto + 60)
    assert (said["progress"], said["behind"]) == ({}, ["b"])
    said = store.announce_marked(owned, upto + 61)  # no slot since: b is still behind
    assert (said["progress"], said["behind"]) == ({}, ["b"])
    run("b", base + 90 + slots["b"] + 1.0)  # late, then back in step
    said = store.announce_marked(owned, upto + 60)
    assert list(said["progress"]) == ["b"] and said["behind"] == []

    run("a", base + 120 + slots["a"], value=5.0)  # a change: behind until written
    said = store.announce_marked(owned, base + 120 + slots["a"])
    assert said["progress"] == {} and said["behind"] == ["a"]
    store.mark_clean(store.dirty_documents())
    said = store.announce_marked(owned, base + 120 + slots["a"])
    assert said["progress"]["a"][3] == base + 120 + slots["a"]  # its new document
    assert said["behind"] == [] and said["progress_all"] is not everything
    store.unmark()  # a peer that does not follow marks: every check is news again
    upto = base + 120 + slots["a"]
    said = store.announce_marked(owned, upto)
    assert set(said["progress"]) == {"a", "b"}
    assert said["progress"]["a"][4] == said["progress"]["b"][4] == 30.0  # the interval
    store.sync({"a": 60.0, "b": 30.0})  # a reloaded at another interval: other slots
    said = store.announce_marked(owned, upto)
    assert said["behind"] == ["a"]  # what was said of it was of the slots before
    assert set(orjson.loads(orjson.dumps(said["progress_all"]))) == {"b"}
    a = store.get("a")
    assert a is not None
    run("a", upto + 60 - (upto - a.slot) % 60, value=5.0)  # its next slot on the new grid
    said = store.announce_marked(owned, upto + 60)
    assert said["progress"]["a"][4] == 60.0 and said["behind"] == ["b"]  # b: no run since


def test_a_check_that_follows_a_mark_reads_its_time_off_it() -> None:
    """An entry following its owner's mark (the document held, the same interval, whoever
    owns it by this replica's count: the owner vouches for what it announced): its time,
    runs and last success are its last slot up to the mark, read when asked; a mark frozen
    (the owner dead) lets it age into stale like any other; stopping to follow (the check
    behind, another document, a reload at another interval) keeps what the mark said."""
    owner, peer = store_with(), store_with()  # interval 10 s: stale after 20 s
    owner.write_on_change = True
    now = time.time()
    grid = peer.get("c").slot  # type: ignore[union-attr]
    last = now - (now - grid) % 10  # the last slot up to now
    owner.record(result(State.CRITICAL, last - 60, "5 errors", value=5.0))
    documents = owner.dirty_documents()
    owner.mark_clean(documents)
    peer.adopt([{k: v for k, v in documents[0][1].items() if not k.startswith("_")}], False)
    entry = peer.get("c")
    assert entry is not None and entry.held is not None and peer.is_stale(entry)
    mark = Mark(now - 1000)

    def said() -> dict[str, list[float]]:
        """What a's heartbeat says of c, with the interval it runs at."""
        return {"c": [*owner.progress({"c"})["c"], 10.0]}

    assert peer.follow("a", owner.progress({"c"}), {"c": "a"}, mark) == ([], 0)
    assert entry.mark is None  # no interval said: its slots are not known to be the same
    peer.follow("a", {"c": [*said()["c"][:4], 60.0]}, {"c": "a"}, mark)
    assert entry.mark is None  # another interval: other slots
    peer.follow("a", said(), {"c": "b"}, mark)
    assert entry.mark is mark and entry.evaluated_at == last - 60  # the mark is older
    mark.at = now
    assert entry.evaluated_at == last and not peer.is_stale(entry)
    assert (entry.runs, entry.last_success) == (1 + 6, last)  # six slots since its run
    shown = entry.result
    assert shown is not None and (shown.evaluated_at, shown.summary) == (last, "5 errors")
    assert entry.timing == (last, 0.0)
    assert peer.is_stale(entry, now + 30)  # the owner gone: the mark stays, the age grows
    peer.unfollow(mark, ["c"])
    mark.at = now + 100
    assert entry.mark is None and entry.evaluated_at == last and entry.runs == 7
    peer.follow("a", said(), {"c": "a"}, mark)
    assert entry.evaluated_at == now + 100 - (now + 100 - grid) % 10
    peer.sync({"c": 20.0})  # reloaded at another interval: what the mark said stands
    assert entry.mark is None and entry.evaluated_at == now + 100 - (now + 100 - grid) % 10
    peer.sync({"c": 10.0})
    peer.follow("a", said(), {"c": "a"}, mark)
    owner.record(result(State.OK, now, "0 errors", value=0.0))  # a change, written
    owner.mark_clean(owner.dirty_documents())
    at = entry.evaluated_at
    assert peer.follow("a", said(), {"c": "a"}, mark) == (["c"], 0)
    assert entry.mark is None and entry.evaluated_at == at  # another document: not followed
    peer.follow("a", {"c": [now + 1, 0.0, 9, last - 60, 10.0]}, {"c": "a"}, mark)
    peer.record(result(State.UNKNOWN, now + 2, "mine"), persist=False)
    assert entry.mark is None and entry.evaluated_at == now + 2  # its own run: as is
