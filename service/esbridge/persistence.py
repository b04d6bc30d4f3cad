"""Writing the result store to Elasticsearch, and reading it back at start.

Elasticsearch is already the replicated store every user of esbridge operates, so the state
lives there: one document per check in an index with an explicit mapping, written with
``_bulk`` from the dirty set. Failures never stop evaluation; they are reported and retried.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field

from esbridge.errors import ESError
from esbridge.esclient import Connection, error_from_body
from esbridge.store import STATE_MAPPING, ResultStore, dumps

log = logging.getLogger(__name__)


@dataclass(eq=False, repr=False)  # identity semantics, and no repr of the connection
class StatePersistence:
    """Bulk-writes dirty store entries and restores them after a restart."""

    store: ResultStore
    connection: Connection
    index: str
    timeout: float = 10.0
    shards: int = 1
    _index_ready: bool = field(default=False, init=False)
    # Until the persisted state has been read, writing would overwrite it: flush waits.
    restored: bool = field(default=False, init=False)

    async def ensure_index(self) -> None:
        """Create the state index with its explicit mapping if it does not exist."""
        if self._index_ready:
            return
        await self.connection.create_index(
            self.index, STATE_MAPPING, self.timeout, number_of_shards=self.shards
        )
        self._index_ready = True

    async def prepare(self) -> None:
        """Create the state index at start, beside the restore, instead of at the first flush.

        Creating an index can take seconds on a loaded cluster; left to the first flush, a
        service stopped in its first seconds spent its shutdown grace there and exited
        without writing its first results. A failure here is the flush's to report and retry.
        """
        with contextlib.suppress(ESError):
            await self.ensure_index()

    async def verify_index(self) -> None:
        """Re-create the index with its explicit mapping when it has gone missing.

        Someone may delete the state index while esbridge runs. ``_bulk`` would then create
        it again with a dynamic mapping and a replica, later writes would be rejected (type
        conflicts) and ``/readyz`` would stay 503 until a restart. So every flush looks first
        (one ``_count``, covered by the ``read`` privilege of the documented role; reading
        the mapping would need more), and a missing index is made again with the explicit
        mapping and written in full from memory.
        """
        try:
            await self.connection.raw("GET", f"/{self.index}/_count", None, self.timeout)
            self._index_ready = True
            return
        except ESError as error:
            if error.kind != "no_such_index":
                raise
        was_ready = self._index_ready
        self._index_ready = False
        await self.ensure_index()
        if was_ready:  # it was deleted under us: what it held is written again
            log.warning("state index %s was deleted: re-created it", self.index)
            self.store.mark_all_dirty()

    async def restore(self) -> int:
        """Read persisted state for the loaded checks. A missing index restores nothing.

        ``_mget`` by check name is real-time: it sees a document written a moment ago by a
        process that just stopped, where a search would wait for the next refresh.
        """
        names = self.store.names()
        if not names:
            self.restored = True
            return 0
        try:
            answer = await self.connection.raw(
                "POST", f"/{self.index}/_mget", {"ids": names}, self.timeout
            )
        except ESError as error:
            if error.kind == "no_such_index":
                self.restored = True
                return 0
            self._fail(error)
            raise
        documents = []
        for doc in answer.get("docs") or []:
            if doc.get("found"):
                documents.append(doc.get("_source") or {})
            elif "error" in doc:
                error = error_from_body(doc["error"], None, self.index)
                if error.kind == "no_such_index":
                    self.restored = True
                    return 0
                self._fail(error)
                raise error
        restored = self.store.restore(documents)
        self._index_ready = True  # it answered: prepare() need not create it
        self.restored = True
        log.info("restored state of %d checks from index %s", restored, self.index)
        return restored

    async def flush(self) -> int:
        """Write every dirty entry; return how many were written. Never raises.

        If the persisted state could not be read at start, it is read (and merged) first:
        writing before that would overwrite the history with what this process saw.
        """
        if not self.restored:
            try:
                await self.restore()
            except ESError:
                return 0
        documents = self.store.dirty_documents()
        if not documents:
            if self.store.persistence_ok is None:
                await self._probe()
            return 0
        try:
            await self.verify_index()
            lines: list[str] = []
            for name, doc in documents:
                lines.append(dumps({"index": {"_index": self.index, "_id": name}}))
                lines.append(dumps({k: v for k, v in doc.items() if k[0] != "_"}))
            answer = await self.connection.raw(
                "POST", "/_bulk", "\n".join(lines) + "\n", self.timeout
            )
        except ESError as error:
            self._fail(error)
            return 0
        written = []
        failures = []
        for (name, doc), item in zip(documents, answer.get("items") or [], strict=False):
            outcome = item.get("index") or {}
            if outcome.get("error"):
                reason = outcome["error"].get("reason") or outcome["error"].get("type")
                failures.append(f"{name}: {reason}")
            else:
                written.append((name, doc))
        self.store.mark_clean(written)
        if failures:
            self._fail(
                ESError("rejected", f"state store rejected {len(failures)} writes: {failures[0]}")
            )
        else:
            self.store.persistence_ok = True
            self.store.persistence_error = None
            self.store.last_flush = time.time()
        return len(written)

    async def _probe(self) -> None:
        try:
            await self.ensure_index()
            self.store.persistence_ok = True
        except ESError as error:
            self._fail(error)

    def _fail(self, error: ESError) -> None:
        if self.store.persistence_ok is not False:
            log.warning(
                "state store %s not writable: %s (evaluation goes on in memory)", self.index, error
            )
        self.store.persistence_ok = False
        self.store.persistence_error = f"state store index {self.index}: {error}"
        self.store.flush_failures += 1
