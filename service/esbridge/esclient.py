"""Elasticsearch and OpenSearch access: the only module that imports their clients.

One :class:`Connection` per named cluster in the configuration. The first request finds out
which product answers (``flavor: auto``) or checks the configured one, logs it, and from then
on talks through that product's official client (``elasticsearch`` or ``opensearch-py``)
behind one small interface, so nothing above this module knows which one it is. It sends due
searches in
``_msearch`` batches, bounds the requests in flight, retries throttling answers (429/502/503/504)
with backoff a bounded number of times, and maps every failure to one :class:`ESError` whose
message an operator can act on and which never contains a credential.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import elasticsearch
import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

from esbridge.config import ConnectionConfig
from esbridge.errors import ESError
from esbridge.planner import ClusterFetch, SearchRequest

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 502, 503, 504})
PRODUCTS = {"elasticsearch": "Elasticsearch", "opensearch": "OpenSearch"}


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
        self._detect_lock = asyncio.Lock()
        self._backend: _Backend | None = None
        self._node_backends: dict[str, _Backend] = {}

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(self.config.urls)

    @property
    def product(self) -> str:
        """The product's name for messages ("Elasticsearch" until anything answered)."""
        return PRODUCTS.get(self.flavor or "", "Elasticsearch")

    async def close(self) -> None:
        if self._backend is not None:
            await self._backend.close()
        for backend in self._node_backends.values():
            await backend.close()

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
        lines = [part for search in batch for part in (search.header(), search.body)]
        try:
            response = await self._call(
                lambda backend: backend.msearch(lines, timeout),
                timeout,
                searches=len(batch),
            )
        except ESError as error:
            return [error] * len(batch)
        items = response.get("responses", [])
        if len(items) != len(batch):
            error = ESError("internal", f"_msearch answered {len(items)} items for {len(batch)}")
            return [error] * len(batch)
        return [
            _item_result(item, search, self.product)
            for item, search in zip(items, batch, strict=True)
        ]

    # -- cluster APIs ---------------------------------------------------------------------

    async def cluster(self, fetch: ClusterFetch, timeout: float) -> dict[str, Any] | ESError:
        """One shared call to the cluster APIs for the cluster kinds."""
        try:
            if fetch.what == "health":
                index = fetch.index or None
                return await self._call(lambda b: b.health(index, timeout), timeout)
            if fetch.what == "nodes_stats":
                return await self._call(lambda b: b.nodes_stats(timeout), timeout)
            if fetch.what == "master":
                return await self._masters(fetch.node_urls or self.urls, timeout)
        except ESError as error:
            return error
        return ESError("internal", f"unknown cluster fetch {fetch.what!r}")

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
            rows = answer if isinstance(answer, list) else []
            return url, (rows[0].get("node") or rows[0].get("id") or "?") if rows else "none"

        pairs = await asyncio.gather(*(ask(url) for url in urls))
        return {"masters": dict(pairs)}

    def _node(self, url: str) -> _Backend:
        backend = self._node_backends.get(url)
        if backend is None:
            backend = _make_backend(self.flavor or "elasticsearch", self.config, [url])
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
        """A plain request (state store, admin helpers), with the same error mapping."""
        return await self._call(lambda b: b.request(method, path, body, timeout), timeout)

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

    async def _ready(self, timeout: float) -> _Backend:
        """The client for the product that answers, found out once per connection."""
        if self._backend is not None:
            return self._backend
        async with self._detect_lock:
            if self._backend is None:
                flavor, version = await detect_flavor(self.config, timeout, self.product)
                wanted = self.config.flavor
                if wanted != "auto" and wanted != flavor:
                    raise ESError(
                        "unsupported",
                        f"connection {self.name!r} is configured with flavor {wanted} but "
                        f"the server is {PRODUCTS[flavor]} {version}: set flavor: {flavor} "
                        "(or auto)",
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
                self._backend = _make_backend(flavor, self.config, list(self.urls))
        return self._backend

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
                    response = await request(await self._ready(timeout))
                    self._mark_ok()
                    return response.body if hasattr(response, "body") else response
                except Exception as exc:  # mapped below, never leaks raw
                    error = map_error(exc, timeout, self.product)
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


def _client_kwargs(config: ConnectionConfig, urls: list[str]) -> dict[str, Any]:
    """Settings both clients share: no client-side retries (ours back off), timeouts, TLS."""
    kwargs: dict[str, Any] = {
        "hosts": urls,
        "max_retries": 0,  # our own bounded retry with backoff, see Connection._call
        "retry_on_timeout": False,
        "verify_certs": config.verify_certs,
    }
    if config.ca_certs:
        kwargs["ca_certs"] = str(config.ca_certs)
    if not config.verify_certs:
        kwargs["ssl_show_warn"] = False
        log.warning("TLS certificate verification is OFF for a search connection (%s)", urls)
    return kwargs


def _make_client(config: ConnectionConfig, urls: list[str]) -> AsyncElasticsearch:
    kwargs = _client_kwargs(config, urls)
    kwargs["request_timeout"] = config.request_timeout.total_seconds()
    # orjson parses the (large) _msearch answers several times faster than json.
    kwargs["serializer"] = OrjsonSerializer()
    password = config.resolved_password()
    api_key = config.resolved_api_key()
    if config.username and password is not None:
        kwargs["basic_auth"] = (config.username, password)
    if api_key:
        kwargs["api_key"] = api_key
    return AsyncElasticsearch(**kwargs)


def _make_opensearch_client(config: ConnectionConfig, urls: list[str]) -> AsyncOpenSearch:
    # Imported here: a heavy import (hundreds of API modules) that an Elasticsearch-only
    # service, `esbridge run` and the plugin's direct mode never need.
    from opensearchpy import AsyncOpenSearch

    kwargs = _client_kwargs(config, urls)
    kwargs["timeout"] = config.request_timeout.total_seconds()
    password = config.resolved_password()
    if config.username and password is not None:
        kwargs["http_auth"] = (config.username, password)
    if any(url.startswith("https://") for url in urls):
        kwargs["use_ssl"] = True
    return AsyncOpenSearch(**kwargs)


class _Backend:
    """The few calls esbridge makes, in one product's client."""

    async def msearch(self, lines: list[dict[str, Any]], timeout: float) -> Any:
        raise NotImplementedError

    async def health(self, index: str | None, timeout: float) -> Any:
        raise NotImplementedError

    async def nodes_stats(self, timeout: float) -> Any:
        raise NotImplementedError

    async def master(self, timeout: float) -> Any:
        """``_cat`` of the elected master as this node sees it (local)."""
        raise NotImplementedError

    async def request(self, method: str, path: str, body: Any, timeout: float) -> Any:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


def _headers(body: Any) -> dict[str, str]:
    headers = {"accept": "application/json"}
    if body is not None:
        ndjson = isinstance(body, list | tuple) or (isinstance(body, str) and body.endswith("\n"))
        headers["content-type"] = "application/x-ndjson" if ndjson else "application/json"
    return headers


class _ElasticsearchBackend(_Backend):
    def __init__(self, config: ConnectionConfig, urls: list[str]) -> None:
        self.client = _make_client(config, urls)

    # request_timeout through options(): as a per-call keyword it takes the client's
    # deprecation path, which walks inspect.stack() on every call.

    async def msearch(self, lines: list[dict[str, Any]], timeout: float) -> Any:
        # Encoded here with orjson: the client forwards bytes lines as they are, while its
        # NDJSON serializer would run the standard library's json on every line.
        encoded = [ndjson_line(line) for line in lines]
        return await self.client.options(request_timeout=timeout).msearch(searches=encoded)

    async def health(self, index: str | None, timeout: float) -> Any:
        return await self.client.options(request_timeout=timeout).cluster.health(index=index)

    async def nodes_stats(self, timeout: float) -> Any:
        return await self.client.options(request_timeout=timeout).nodes.stats(metric="jvm,fs")

    async def master(self, timeout: float) -> Any:
        client = self.client.options(request_timeout=timeout)
        return await client.cat.master(format="json", local=True)

    async def request(self, method: str, path: str, body: Any, timeout: float) -> Any:
        response = await self.client.options(request_timeout=timeout).perform_request(
            method, path, headers=_headers(body), body=body
        )
        return response.body

    async def close(self) -> None:
        await self.client.close()


class _OpenSearchBackend(_Backend):
    def __init__(self, config: ConnectionConfig, urls: list[str]) -> None:
        self.client = _make_opensearch_client(config, urls)

    async def msearch(self, lines: list[dict[str, Any]], timeout: float) -> Any:
        return await self.client.msearch(body=lines, request_timeout=timeout)

    async def health(self, index: str | None, timeout: float) -> Any:
        return await self.client.cluster.health(index=index, request_timeout=timeout)

    async def nodes_stats(self, timeout: float) -> Any:
        return await self.client.nodes.stats(metric="jvm,fs", request_timeout=timeout)

    async def master(self, timeout: float) -> Any:
        # "master" is deprecated in OpenSearch 2 and gone from newer APIs: same answer.
        return await self.client.cat.cluster_manager(
            format="json", local=True, request_timeout=timeout
        )

    async def request(self, method: str, path: str, body: Any, timeout: float) -> Any:
        if isinstance(body, list | tuple):
            body = "".join(json.dumps(line) + "\n" for line in body)
        return await self.client.transport.perform_request(
            method, path, headers=_headers(body), body=body, timeout=timeout
        )

    async def close(self) -> None:
        await self.client.close()


def _make_backend(flavor: str, config: ConnectionConfig, urls: list[str]) -> _Backend:
    if flavor == "opensearch":
        return _OpenSearchBackend(config, urls)
    return _ElasticsearchBackend(config, urls)


async def detect_flavor(
    config: ConnectionConfig, timeout: float, product: str = "Elasticsearch"
) -> tuple[str, str]:
    """(``elasticsearch`` | ``opensearch``, version) of the server behind ``config.urls``.

    Elasticsearch marks every answer, errors included, with ``X-Elastic-Product:
    Elasticsearch`` (its test distribution answers ``GET /`` with 405, but with the header);
    OpenSearch answers ``GET /`` with ``version.distribution: opensearch``. The request goes
    through Elasticsearch's transport without the client's product check, with the configured
    credentials and TLS settings. Raises :class:`ESError` (unsupported when it is neither).
    """
    client = _make_client(config, list(config.urls))
    headers = {"accept": "application/json", **_auth_headers(config)}
    try:
        try:
            response = await client.transport.perform_request(
                "GET", "/", headers=headers, request_timeout=timeout
            )
        except Exception as exc:
            raise map_error(exc, timeout, product) from None
        meta, body = response.meta, response.body
        info = body if isinstance(body, dict) else {}
        version = info.get("version") if isinstance(info.get("version"), dict) else {}
        if meta.headers.get("x-elastic-product") == "Elasticsearch":
            if not version.get("number"):
                version = await _es_version(client, headers, timeout)
            return "elasticsearch", str(version.get("number") or "?")
        if meta.status == 200 and version.get("distribution") == "opensearch":
            return "opensearch", str(version.get("number") or "?")
        if meta.status in (401, 403) and config.flavor != "auto":
            # Not allowed to ask: trust the configured flavor; the requests themselves
            # will say what is refused.
            return config.flavor, "?"
        if meta.status == 401:
            raise ESError(
                "auth", "authentication failed (HTTP 401): check the credentials", meta.status
            )
        if meta.status == 403:
            raise ESError(
                "forbidden",
                "forbidden: GET / (which product answers) needs the cluster monitor "
                "privilege (OpenSearch: cluster_monitor), or set the connection's flavor",
                meta.status,
            )
        if meta.status in RETRY_STATUSES:
            raise ESError("throttled", f"the search server answered HTTP {meta.status}", 503)
        what = f"{version.get('distribution') or 'no product'} {version.get('number') or ''}"
        raise ESError(
            "unsupported",
            f"the server at {', '.join(config.urls)} is neither Elasticsearch nor OpenSearch "
            f"(GET / answered HTTP {meta.status}, {what.strip()}, "
            "no X-Elastic-Product header)",
        )
    finally:
        await client.close()


def _auth_headers(config: ConnectionConfig) -> dict[str, str]:
    """The credentials as the clients send them (the bare transport does not add them)."""
    password = config.resolved_password()
    if config.username and password is not None:
        token = base64.b64encode(f"{config.username}:{password}".encode()).decode()
        return {"authorization": f"Basic {token}"}
    api_key = config.resolved_api_key()
    if api_key:
        return {"authorization": f"ApiKey {api_key}"}
    return {}


async def _es_version(
    client: AsyncElasticsearch, headers: dict[str, str], timeout: float
) -> dict[str, Any]:
    """The version where ``GET /`` is not served (the test distribution): the local node's."""
    try:
        response = await client.transport.perform_request(
            "GET",
            "/_nodes/_local/version",
            headers=headers,
            request_timeout=timeout,
        )
        nodes = (response.body or {}).get("nodes") or {}
        return {"number": next(iter(nodes.values()), {}).get("version")}
    except Exception:  # the version is for the log only
        return {}


def ndjson_line(part: dict[str, Any]) -> bytes:
    """One ``_msearch`` line, encoded once; the client sends bytes lines unchanged.

    orjson refuses integers beyond 64 bits, which a user's ``query_dsl`` may hold: those lines
    go through the standard library instead of failing the whole batch.
    """
    try:
        return orjson.dumps(part) + b"\n"
    except TypeError:
        return json.dumps(part, separators=(",", ":")).encode() + b"\n"


def _item_result(
    item: dict[str, Any], search: SearchRequest, product: str = "Elasticsearch"
) -> dict[str, Any] | ESError:
    if "error" in item:
        return error_from_body(item.get("error"), item.get("status"), search.index, product)
    return item


def error_from_body(
    error: Any, status: int | None, index: str = "", product: str = "Elasticsearch"
) -> ESError:
    """Map an Elasticsearch/OpenSearch error object to an :class:`ESError` quoting its root
    cause (both products use the same error shape)."""
    if not isinstance(error, dict):
        return ESError("internal", f"{product} error (HTTP {status}): {error}", status)
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
    if (
        etype == "no_shard_available_action_exception"
        or _all_shards_unassigned(error)
        or _no_shard_answered(error, etype, status)
    ):
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
        "rejected_execution_exception",
        "circuit_breaking_exception",
    }:
        return ESError(
            "throttled", f"{product} is overloaded (HTTP {status}): {reason}", status or 429
        )
    if status is not None and 400 <= status < 500:
        return ESError("rejected", f"query rejected by {product}: {etype}: {reason}", status)
    return ESError("internal", f"{product} error (HTTP {status}): {etype}: {reason}", status)


def _all_shards_unassigned(error: dict[str, Any]) -> bool:
    """A search whose every failed shard had no copy to run on (red index)."""
    failed = error.get("failed_shards") or []
    return bool(failed) and all(
        isinstance(f, dict)
        and (f.get("reason") or {}).get("type") == "no_shard_available_action_exception"
        for f in failed
    )


def _no_shard_answered(error: dict[str, Any], etype: str, status: int | None) -> bool:
    """OpenSearch's answer for a red index: HTTP 503 "all shards failed" that names no failed
    shard (Elasticsearch names each one as ``no_shard_available_action_exception``). An
    overload names its rejected shards, so it never looks like this."""
    return (
        status == 503
        and etype == "search_phase_execution_exception"
        and not error.get("failed_shards")
        and not error.get("root_cause")
    )


_TIMEOUTS = (elasticsearch.ConnectionTimeout, asyncio.TimeoutError, TimeoutError)


def map_error(exc: BaseException, timeout: float, product: str = "Elasticsearch") -> ESError:
    """Classify a client exception (either product's client); the message names the cause,
    never credentials."""
    if isinstance(exc, ESError):
        return exc
    # Only loaded once an OpenSearch client exists: before that none of its errors can occur.
    osp: Any = sys.modules.get("opensearchpy")
    if isinstance(exc, _TIMEOUTS) or (osp and isinstance(exc, osp.ConnectionTimeout)):
        return ESError("timeout", f"{product} timed out after {timeout:g} s")
    if isinstance(exc, elasticsearch.SSLError) or (osp and isinstance(exc, osp.SSLError)):
        return ESError("unreachable", f"{product} TLS error: {_short(exc)}")
    if isinstance(exc, elasticsearch.ConnectionError) or (
        osp and isinstance(exc, osp.ConnectionError)
    ):
        return ESError("unreachable", f"{product} unreachable: {_short(exc)}")
    if isinstance(exc, elasticsearch.ApiError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return error_from_body(body.get("error", exc.message), exc.meta.status, "", product)
    if osp and isinstance(exc, osp.TransportError):
        body = exc.info if isinstance(exc.info, dict) else {}
        status = exc.status_code if isinstance(exc.status_code, int) else None
        return error_from_body(body.get("error", exc.error), status, "", product)
    if isinstance(exc, elasticsearch.UnsupportedProductError):
        return ESError("unsupported", "the server at this URL is not Elasticsearch")
    return ESError(
        "internal",
        f"unexpected error talking to {product}: {type(exc).__name__}: {_short(exc)}",
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
        nested_errors = (*getattr(current, "errors", ()), getattr(current, "info", None))
        for nested in (current.__cause__, current.__context__, *nested_errors):
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
