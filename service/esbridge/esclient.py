"""Elasticsearch access: the only module that imports the client.

One :class:`Connection` per named cluster in the configuration. It sends due searches in
``_msearch`` batches, bounds the requests in flight, retries throttling answers (429/502/503/504)
with backoff a bounded number of times, and maps every failure to one :class:`ESError` whose
message an operator can act on and which never contains a credential.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import elasticsearch
from elasticsearch import AsyncElasticsearch

from esbridge.config import ConnectionConfig
from esbridge.planner import ClusterFetch, SearchRequest

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class ESError(Exception):
    """A failure to get an answer, classified for the operator.

    ``kind`` is one of: unreachable, timeout, throttled, rejected, forbidden, auth,
    no_such_index, unavailable (closed index, no primary shard), partial, internal.
    """

    def __init__(self, kind: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.status = status

    def __str__(self) -> str:
        return self.message


@dataclass
class ConnectionStats:
    """Counters the tests, the benchmark and ``/metrics`` read."""

    requests: int = 0
    msearch_requests: int = 0
    searches: int = 0
    retries: int = 0
    failures: int = 0
    in_flight: int = 0
    max_in_flight_seen: int = 0
    last_ok: float = 0.0
    last_error: str | None = None
    last_error_at: float = 0.0
    errors_by_kind: dict[str, int] = field(default_factory=dict)


class Connection:
    """A named Elasticsearch connection with batching, bounds and error mapping."""

    def __init__(self, name: str, config: ConnectionConfig) -> None:
        self.name = name
        self.config = config
        self.stats = ConnectionStats()
        self.up: bool | None = None  # None until the first request tells
        self._semaphore = asyncio.Semaphore(max(1, config.max_in_flight))
        self._client = _make_client(config, list(config.urls))
        self._node_clients: dict[str, AsyncElasticsearch] = {}

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.config.urls)

    async def close(self) -> None:
        await self._client.close()
        for client in self._node_clients.values():
            await client.close()

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
        lines: list[dict[str, Any]] = []
        for search in batch:
            lines.append(search.header())
            lines.append(search.body)
        try:
            response = await self._call(
                lambda client: client.msearch(searches=lines, request_timeout=timeout),
                timeout,
                searches=len(batch),
            )
        except ESError as error:
            return [error] * len(batch)
        items = response.get("responses", [])
        if len(items) != len(batch):
            error = ESError("internal", f"_msearch answered {len(items)} items for {len(batch)}")
            return [error] * len(batch)
        return [_item_result(item, search) for item, search in zip(items, batch, strict=True)]

    # -- cluster APIs ---------------------------------------------------------------------

    async def cluster(self, fetch: ClusterFetch, timeout: float) -> dict[str, Any] | ESError:
        """One shared call to the cluster APIs for the cluster kinds."""
        try:
            if fetch.what == "health":
                index = fetch.index or None
                return await self._call(
                    lambda c: c.cluster.health(index=index, request_timeout=timeout), timeout
                )
            if fetch.what == "nodes_stats":
                return await self._call(
                    lambda c: c.nodes.stats(metric="jvm,fs", request_timeout=timeout), timeout
                )
            if fetch.what == "master":
                return await self._masters(fetch.node_urls or self.urls, timeout)
        except ESError as error:
            return error
        return ESError("internal", f"unknown cluster fetch {fetch.what!r}")

    async def _masters(self, urls: Sequence[str], timeout: float) -> dict[str, Any]:
        """Ask every node, locally, which node it thinks is the elected master."""

        async def ask(url: str) -> tuple[str, str | ESError]:
            client = self._node_clients.get(url)
            if client is None:
                client = _make_client(self.config, [url])
                self._node_clients[url] = client
            try:
                answer = await self._call(
                    lambda _c: client.cat.master(
                        format="json", local=True, request_timeout=timeout
                    ),
                    timeout,
                )
            except ESError as error:
                return url, error
            rows = answer if isinstance(answer, list) else []
            return url, (rows[0].get("node") or rows[0].get("id") or "?") if rows else "none"

        pairs = await asyncio.gather(*(ask(url) for url in urls))
        return {"masters": dict(pairs)}

    async def ping(self, timeout: float = 5.0) -> bool:
        """True when the cluster answers; updates :attr:`up`."""
        try:
            await self._call(lambda c: c.cluster.health(request_timeout=timeout), timeout)
        except ESError:
            return False
        return True

    async def raw(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> Any:
        """A plain request (state store, admin helpers), with the same error mapping."""

        async def call(client: AsyncElasticsearch) -> Any:
            headers = {"accept": "application/json"}
            if body is not None:
                headers["content-type"] = (
                    "application/x-ndjson" if isinstance(body, list | tuple) else "application/json"
                )
            response = await client.options(request_timeout=timeout).perform_request(
                method, path, headers=headers, body=body
            )
            return response.body

        return await self._call(call, timeout)

    # -- the one place requests go through ------------------------------------------------

    async def _call(self, request: Any, timeout: float, searches: int = 0) -> Any:
        attempt = 0
        deadline = time.monotonic() + timeout * (self.config.max_retries + 1) + 5
        while True:
            async with self._semaphore:
                self.stats.in_flight += 1
                self.stats.max_in_flight_seen = max(
                    self.stats.max_in_flight_seen, self.stats.in_flight
                )
                self.stats.requests += 1
                if searches:
                    self.stats.msearch_requests += 1
                    self.stats.searches += searches
                try:
                    response = await request(self._client)
                    self._mark_ok()
                    return response.body if hasattr(response, "body") else response
                except Exception as exc:  # mapped below, never leaks raw
                    error = map_error(exc, timeout)
                finally:
                    self.stats.in_flight -= 1
            retryable = error.status in RETRY_STATUSES and error.kind == "throttled"
            if retryable and attempt < self.config.max_retries and time.monotonic() < deadline:
                attempt += 1
                self.stats.retries += 1
                # Exponential backoff with jitter: 0.5 s, 1 s, 2 s ... so a struggling
                # cluster is not hammered by every check at once.
                await asyncio.sleep(
                    min(8.0, 0.5 * 2 ** (attempt - 1)) * (0.5 + random.random() / 2)
                )
                continue
            self._mark_error(error)
            raise error

    def _mark_ok(self) -> None:
        self.up = True
        self.stats.last_ok = time.time()

    def _mark_error(self, error: ESError) -> None:
        self.stats.failures += 1
        self.stats.errors_by_kind[error.kind] = self.stats.errors_by_kind.get(error.kind, 0) + 1
        self.stats.last_error = error.message
        self.stats.last_error_at = time.time()
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


def _make_client(config: ConnectionConfig, urls: list[str]) -> AsyncElasticsearch:
    kwargs: dict[str, Any] = {
        "hosts": urls,
        "max_retries": 0,  # our own bounded retry with backoff, see Connection._call
        "retry_on_timeout": False,
        "request_timeout": config.request_timeout.total_seconds(),
        "verify_certs": config.verify_certs,
    }
    password = config.resolved_password()
    api_key = config.resolved_api_key()
    if config.username and password is not None:
        kwargs["basic_auth"] = (config.username, password)
    if api_key:
        kwargs["api_key"] = api_key
    if config.ca_certs:
        kwargs["ca_certs"] = str(config.ca_certs)
    if not config.verify_certs:
        kwargs["ssl_show_warn"] = False
        log.warning(
            "TLS certificate verification is OFF for an Elasticsearch connection (%s)", urls
        )
    return AsyncElasticsearch(**kwargs)


def _item_result(item: dict[str, Any], search: SearchRequest) -> dict[str, Any] | ESError:
    if "error" in item:
        return error_from_body(item.get("error"), item.get("status"), search.index)
    return item


def error_from_body(error: Any, status: int | None, index: str = "") -> ESError:
    """Map an Elasticsearch error object to an :class:`ESError` quoting its root cause."""
    if not isinstance(error, dict):
        return ESError("internal", f"Elasticsearch error (HTTP {status}): {error}", status)
    causes = error.get("root_cause") or [error]
    cause = causes[0] if isinstance(causes, list) and causes else error
    etype = str(cause.get("type") or error.get("type") or "error")
    reason = str(cause.get("reason") or error.get("reason") or etype)
    if etype == "index_not_found_exception":
        missing = cause.get("index") or cause.get("resource.id") or index
        return ESError("no_such_index", f"no such index [{missing}]", status)
    if etype == "index_closed_exception":
        closed = cause.get("index") or index
        return ESError("unavailable", f"index [{closed}] is closed: nothing can be counted", status)
    if etype == "no_shard_available_action_exception" or _all_shards_unassigned(error):
        where = ", ".join(
            f"[{f.get('index', '?')}][{f.get('shard', '?')}]"
            for f in (error.get("failed_shards") or [])[:3]
            if isinstance(f, dict)
        )
        return ESError(
            "unavailable",
            f"no primary shard available{' for ' + where if where else ''} "
            "(the index is red): nothing can be counted",
            status,
        )
    if status == 403 or (etype == "security_exception" and status != 401):
        return ESError("forbidden", f"forbidden: {reason}", status)
    if status == 401:
        return ESError("auth", "authentication failed (HTTP 401): check the credentials", status)
    if status in RETRY_STATUSES or etype in {
        "es_rejected_execution_exception",
        "circuit_breaking_exception",
    }:
        return ESError(
            "throttled", f"Elasticsearch is overloaded (HTTP {status}): {reason}", status or 429
        )
    if status is not None and 400 <= status < 500:
        return ESError("rejected", f"query rejected by Elasticsearch: {etype}: {reason}", status)
    return ESError("internal", f"Elasticsearch error (HTTP {status}): {etype}: {reason}", status)


def _all_shards_unassigned(error: dict[str, Any]) -> bool:
    """A search whose every failed shard had no copy to run on (red index)."""
    failed = error.get("failed_shards") or []
    return bool(failed) and all(
        isinstance(f, dict)
        and (f.get("reason") or {}).get("type") == "no_shard_available_action_exception"
        for f in failed
    )


def map_error(exc: BaseException, timeout: float) -> ESError:
    """Classify a client exception; the message names the cause, never credentials."""
    if isinstance(exc, ESError):
        return exc
    if isinstance(exc, elasticsearch.ConnectionTimeout | asyncio.TimeoutError | TimeoutError):
        return ESError("timeout", f"Elasticsearch timed out after {timeout:g} s")
    if isinstance(exc, elasticsearch.SSLError):
        return ESError("unreachable", f"Elasticsearch TLS error: {_short(exc)}")
    if isinstance(exc, elasticsearch.ConnectionError):
        return ESError("unreachable", f"Elasticsearch unreachable: {_short(exc)}")
    if isinstance(exc, elasticsearch.ApiError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return error_from_body(body.get("error", exc.message), exc.meta.status)
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return ESError("internal", "the server at this URL is not Elasticsearch")
    return ESError(
        "internal",
        f"unexpected error talking to Elasticsearch: {type(exc).__name__}: {_short(exc)}",
    )


def _short(exc: BaseException) -> str:
    text = _root_cause(exc) or str(exc) or type(exc).__name__
    # The transport wraps the cause in long reprs; keep the first meaningful part.
    text = text.replace("\n", " ")
    return text[:300]


def _root_cause(exc: BaseException) -> str | None:
    """The OS/TLS error under the transport's generic "Connection error" / "TLS error".

    elastic_transport raises its own exception *while handling* the aiohttp/urllib3 one, so
    the cause an operator can act on (refused, reset, certificate verify failed, name not
    resolved) is in ``__context__``/``__cause__``/``errors``. It names hosts and ports only,
    never credentials (the clients keep those out of their connection keys).
    """
    import ssl

    seen: set[int] = set()
    best: BaseException | None = None
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current is not exc:
            best = current  # the deepest OS/TLS error wins
        for nested in (current.__cause__, current.__context__, *getattr(current, "errors", ())):
            if isinstance(nested, BaseException):
                stack.append(nested)
        # aiohttp's ClientConnectorError keeps the OS error as os_error
        inner = getattr(current, "os_error", None)
        if isinstance(inner, BaseException):
            stack.append(inner)
    if best is None:
        return None
    if isinstance(best, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {best.verify_message}"
    if isinstance(best, ssl.SSLError):
        return f"TLS handshake failed: {best.reason or best}"
    if isinstance(best, ConnectionRefusedError):
        return f"connection refused ({_where(exc, best)})"
    if isinstance(best, ConnectionResetError):
        return "connection reset by peer"
    text = best.strerror or str(best)
    return f"{text} ({_where(exc, best)})" if text else None


def _where(exc: BaseException, cause: BaseException) -> str:
    """host:port of the failed connection when the transport says it."""
    for candidate in (cause, exc.__context__, exc):
        key = getattr(candidate, "conn_key", None) or getattr(candidate, "_conn_key", None)
        if key is not None and getattr(key, "host", None):
            return f"{key.host}:{key.port}"
    return "connect"
