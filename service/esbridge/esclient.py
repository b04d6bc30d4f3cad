"""Elasticsearch and OpenSearch access: connections, ``_msearch`` batching, error mapping.

One :class:`Connection` per named cluster in the configuration. The first request finds out
which product answers (``flavor: auto``) or checks the configured one, logs it, and from then
on talks through that product's official client (``elasticsearch`` or ``opensearch-py``,
:mod:`esbridge.esbackend`) behind one small interface, so nothing above this module knows
which one it is. It sends due searches in ``_msearch`` batches, bounds the requests in
flight, retries throttling answers (429/502/503/504) with backoff a bounded number of times,
and maps every failure to one :class:`ESError` (:mod:`esbridge.errormap`) whose message an
operator can act on and which never contains a credential.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from esbridge.config import ConnectionConfig
from esbridge.errormap import error_from_body, map_error
from esbridge.errors import ESError
from esbridge.esbackend import (
    Backend,
    DecodeMeter,
    auth_headers,
    detect_flavor,
    make_backend,
    metered_loads,
    ndjson_line,
)
from esbridge.lighthttp import LightHttp, ssl_context
from esbridge.planner import ClusterFetch, SearchRequest

# error_from_body, ndjson_line and DecodeMeter are re-exported: persistence, sharedview,
# membership and the tests import them from here.
__all__ = [
    "PRODUCTS",
    "Connection",
    "ConnectionStats",
    "Connections",
    "DecodeMeter",
    "error_from_body",
    "ndjson_line",
]

log = logging.getLogger(__name__)

PRODUCTS = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}


@dataclass
class ConnectionStats:
    """Counters ``/metrics`` (requests, searches, retries), ``/readyz`` (last_error), the
    tests and the benchmark (msearch_requests, searches) read."""

    requests: int = 0
    msearch_requests: int = 0
    searches: int = 0
    retries: int = 0
    last_error: str | None = None


class Connection:
    """A named Elasticsearch or OpenSearch connection with batching, bounds and error mapping."""

    def __init__(self, name: str, config: ConnectionConfig) -> None:
        self.name = name
        self.config = config
        self.stats = ConnectionStats()
        self.up: bool | None = None  # None until the first request tells
        # The product that answered; the configured one until then ("auto": unknown).
        self.flavor: str | None = None if config.flavor == "auto" else config.flavor
        self.server_version: str | None = None
        self._semaphore = asyncio.Semaphore(max(1, config.max_in_flight))
        self._detecting: asyncio.Task[Backend] | None = None
        self._backend: Backend | None = None
        self._node_backends: dict[str, Backend] = {}
        self._light: LightHttp | None = None  # plain requests (raw), made on first use

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.config.urls)

    @property
    def product(self) -> str:
        """The product's name for messages ("Elasticsearch" until anything answered)."""
        return PRODUCTS.get(self.flavor or "", "Elasticsearch")

    async def close(self) -> None:
        if self._detecting is not None and not self._detecting.done():
            self._detecting.cancel()
            await asyncio.wait([self._detecting])
        if self._backend is not None:
            await self._backend.close()
        for backend in self._node_backends.values():
            await backend.close()
        if self._light is not None:
            await self._light.close()

    # -- searches -------------------------------------------------------------------------

    async def msearch(
        self, searches: Sequence[SearchRequest], timeout: float
    ) -> list[dict[str, Any] | ESError]:
        """Answer every search, in order; batches run concurrently within the in-flight bound."""
        size = max(1, self.config.max_searches_per_request)
        batches = [list(searches[i : i + size]) for i in range(0, len(searches), size)]
        answers = await asyncio.gather(*(self._msearch_batch(b, timeout) for b in batches))
        return [item for batch in answers for item in batch]

    async def _msearch_batch(
        self, batch: list[SearchRequest], timeout: float
    ) -> list[dict[str, Any] | ESError]:
        """One ``_msearch``; its searches rejected for overload are sent again, alone.

        A busy cluster rejects single searches inside a 200 answer (``status: 429`` items,
        search thread pool full): the usual shape of throttling. Those are retried with the
        same backoff and bound as a whole request, so a short burst does not turn checks
        UNKNOWN; every other answer stands.
        """
        answers, sent = await self._msearch_once(batch, timeout)
        attempt = 0
        deadline = time.monotonic() + timeout * (self.config.max_retries + 1) + 5
        while sent and attempt < self.config.max_retries and time.monotonic() < deadline:
            again = [i for i, a in enumerate(answers) if isinstance(a, ESError) and a.throttled]
            if not again:
                break
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(backoff(attempt))
            retried, sent = await self._msearch_once([batch[i] for i in again], timeout)
            for i, answer in zip(again, retried, strict=True):
                answers[i] = answer
        return answers

    async def _msearch_once(
        self, batch: list[SearchRequest], timeout: float
    ) -> tuple[list[dict[str, Any] | ESError], bool]:
        """The answers, and whether the request itself was answered (its errors retried)."""
        lines = [part for search in batch for part in (search.header(), search.body)]
        try:
            response = await self._call(
                lambda backend: backend.msearch(lines, timeout),
                timeout,
                searches=len(batch),
            )
        except ESError as error:
            return [error] * len(batch), False
        items = response.get("responses") if isinstance(response, dict) else None
        if not isinstance(items, list) or len(items) != len(batch):
            count = len(items) if isinstance(items, list) else "no"
            error = ESError("internal", f"_msearch answered {count} items for {len(batch)}")
            return [error] * len(batch), True
        results = [
            _item_result(item, search, self.product)
            for item, search in zip(items, batch, strict=True)
        ]
        return results, True

    # -- cluster APIs ---------------------------------------------------------------------

    async def cluster(self, fetch: ClusterFetch, timeout: float) -> dict[str, Any] | ESError:
        """One shared ``GET`` of a cluster API (what the fetch names; no kind is known here)."""
        try:
            if fetch.masters:
                return await self._masters(fetch.node_urls or self.urls, timeout)
            answer = await self._call(lambda b: b.request("GET", fetch.url, None, timeout), timeout)
        except ESError as error:
            return error
        # Lists (the _cat APIs) travel under "rows" so every answer is a JSON object.
        return answer if isinstance(answer, dict) else {"rows": answer}

    async def _masters(self, urls: Sequence[str], timeout: float) -> dict[str, Any]:
        """Ask every node, locally, which node it thinks is the elected master.

        OpenSearch calls it the cluster manager (``_cat/cluster_manager``); the question and
        the split-brain rule are the same.
        """

        async def ask(url: str) -> tuple[str, str | ESError]:
            try:
                answer = await self._call(lambda _b: self._node(url).master(timeout), timeout)
            except ESError as error:
                return url, error
            if not isinstance(answer, list) or not all(isinstance(r, dict) for r in answer):
                # never "no elected master" from an answer that is not _cat/master's
                what = "an unexpected answer to _cat/master (a proxy?)"
                return url, ESError("internal", what)
            return url, (answer[0].get("node") or answer[0].get("id") or "?") if answer else "none"

        pairs = await asyncio.gather(*(ask(url) for url in urls))
        return {"masters": dict(pairs)}

    def _node(self, url: str) -> Backend:
        backend = self._node_backends.get(url)
        if backend is None:
            backend = make_backend(self.flavor or "elasticsearch", self.config, [url])
            self._node_backends[url] = backend
        return backend

    async def ping(self, timeout: float = 5.0) -> bool:
        """True when the cluster answers; updates :attr:`up`."""
        try:
            await self._call(lambda b: b.health(None, timeout), timeout)
        except ESError:
            return False
        return True

    async def raw(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """A plain JSON request (state store, cluster coordination, admin helpers), with the
        same bounds and error mapping as a search: on a kept-alive socket of its own
        (:mod:`esbridge.lighthttp`), a fraction of the CPU the clients spend on one."""
        light = self._light or self._open_light()
        # _call asks which product answers first, once per connection, as for any request
        return await self._call(lambda _: light.request(method, path, body, timeout), timeout)

    def _open_light(self) -> LightHttp:
        """The sockets of ``raw``, made on first use (a TLS context only for https nodes)."""
        config = self.config
        context = None
        if any(url.startswith("https://") for url in self.urls):
            context = ssl_context(
                str(config.ca_certs) if config.ca_certs else None, config.verify_certs
            )
        self._light = LightHttp(
            list(self.urls), auth_headers(config), context, lambda: self.product, metered_loads
        )
        return self._light

    async def create_index(
        self, index: str, mappings: dict[str, Any], timeout: float, **settings: Any
    ) -> None:
        """Create one of esbridge's own indices with its explicit mapping (one primary shard and
        one replica where the cluster has room, unless ``settings`` say otherwise); an index
        that already exists is left as it is."""
        body = {
            "settings": {"number_of_shards": 1, "auto_expand_replicas": "0-1", **settings},
            "mappings": mappings,
        }
        try:
            await self.raw("PUT", f"/{index}", body, timeout)
        except ESError as error:
            if "resource_already_exists_exception" not in error.message:
                raise

    # -- which product answers ------------------------------------------------------------

    async def _ready(self, timeout: float) -> Backend:
        """The client for the product that answers, found out once per connection.

        One detection at a time, its outcome shared by every request waiting for it: a
        black-holed server must cost one timeout, not one per concurrent request in turn
        (a run's search, its ``_field_caps`` and a cluster check waited three timeouts in a
        row, long enough for their results to be born stale). Each request still waits no
        longer than its own timeout, and one whose time is not up when a shorter detection
        timed out tries again. A failed detection is tried again by the next request.
        """
        if self._backend is not None:
            return self._backend
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        expired = f"{self.product} timed out after {timeout:g} s"
        while self._backend is None:
            left = deadline - loop.time()
            if left <= 0:
                raise ESError("timeout", expired)
            mine = self._detecting is None or self._detecting.done()  # none running: start one
            if mine:
                self._detecting = loop.create_task(self._detect(left))
                self._detecting.add_done_callback(_consume)
            detecting = self._detecting
            assert detecting is not None  # started above if none was running
            try:
                # shielded: a request cancelled by its run's bound leaves the others an answer;
                # asyncio.timeout, not wait_for: in 3.11 wait_for drops a cancellation that
                # arrives as the detection ends (a stop then waited for a task gone on)
                async with asyncio.timeout(left):
                    return await asyncio.shield(detecting)
            except TimeoutError:
                raise ESError("timeout", expired) from None
            except ESError as error:
                if error.kind != "timeout":
                    raise
                if mine:  # said in this request's own terms
                    raise ESError("timeout", expired) from None
                # another request's shorter detection timed out: try again in the time left
        return self._backend

    async def _detect(self, timeout: float) -> Backend:
        flavor, version = await detect_flavor(self.config, timeout, self.product)
        wanted = self.config.flavor
        if wanted != "auto" and wanted != flavor:
            raise ESError(
                "unsupported",
                f"connection {self.name!r} is configured with flavor {wanted} but "
                f"the server is {PRODUCTS[flavor]} {version}: set flavor: {flavor} (or auto)",
            )
        if flavor == "opensearch" and self.config.resolved_api_key():
            raise ESError(
                "unsupported",
                f"connection {self.name!r}: OpenSearch {version} has no API keys; "
                "use username and password",
            )
        self.flavor, self.server_version = flavor, version
        log.info(
            "connection %s: %s %s (%s)",
            self.name,
            PRODUCTS[flavor],
            version,
            "configured" if wanted != "auto" else "detected",
        )
        self._backend = make_backend(flavor, self.config, list(self.urls))
        return self._backend

    # -- the one place requests go through ------------------------------------------------

    async def _call(self, request: Any, timeout: float, searches: int = 0) -> Any:
        attempt = 0
        deadline = time.monotonic() + timeout * (self.config.max_retries + 1) + 5
        while True:
            async with self._semaphore:
                self.stats.requests += 1
                if searches:
                    self.stats.msearch_requests += 1
                    self.stats.searches += searches
                try:
                    response = await request(await self._ready(timeout))
                    self.up = True
                    return response.body if hasattr(response, "body") else response
                except Exception as exc:  # mapped below, never leaks raw
                    error = map_error(exc, timeout, self.product)
            if (
                error.throttled
                and attempt < self.config.max_retries
                and time.monotonic() < deadline
            ):
                attempt += 1
                self.stats.retries += 1
                await asyncio.sleep(backoff(attempt))
                continue
            self._mark_error(error)
            raise error

    def _mark_error(self, error: ESError) -> None:
        self.stats.last_error = error.message
        if error.kind in {"unreachable", "timeout", "auth"}:
            self.up = False
        elif error.kind != "throttled":
            self.up = True  # the cluster answered, even if with an error


class Connections:
    """All named connections of the running configuration."""

    def __init__(self, configs: dict[str, ConnectionConfig]) -> None:
        self._by_name = {name: Connection(name, cfg) for name, cfg in configs.items()}

    def get(self, name: str) -> Connection:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(sorted(self._by_name)) or "none"
            raise ESError(
                "internal", f"no Elasticsearch connection named {name!r} (known: {known})"
            ) from None

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._by_name.values())

    def names(self) -> list[str]:
        return list(self._by_name)

    async def close(self) -> None:
        for connection in self._by_name.values():
            await connection.close()


def _consume(task: asyncio.Task[Backend]) -> None:
    """Retrieve a detection's failure even when every request waiting for it was cancelled."""
    if not task.cancelled():
        task.exception()


def backoff(attempt: int) -> float:
    """Seconds before retry ``attempt`` (1, 2, ...): exponential with jitter, 0.5 s, 1 s,
    2 s ... up to 8 s, so a struggling cluster is not hammered by every check at once."""
    return min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)


def _item_result(
    item: Any, search: SearchRequest, product: str = "Elasticsearch"
) -> dict[str, Any] | ESError:
    if not isinstance(item, dict):
        return ESError("internal", f"{product} answered a search with {type(item).__name__}")
    if "error" in item:
        return error_from_body(item.get("error"), item.get("status"), search.index, product)
    status = item.get("status", 200)
    if not isinstance(item.get("hits"), dict) or not (isinstance(status, int) and status < 300):
        # never read as "0 documents": a search answer always says how many it found
        return ESError(
            "internal", f"{product} answered a search without its hits (status {status})"
        )
    return item
