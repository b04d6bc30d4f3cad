"""The two products' clients behind one small interface, and which product answers.

:func:`make_backend` gives the ``elasticsearch`` or the ``opensearch-py`` client for a product,
both configured the same way (no client-side retries: :class:`~esbridge.esclient.Connection`
backs off itself; timeouts; TLS; credentials) and wrapped in :class:`Backend`, the few calls
esbridge makes. :func:`detect_flavor` asks the server which product it is, once per
connection. Only this module, :mod:`esbridge.esclient` and :mod:`esbridge.errormap` import
the clients.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

import orjson
from elasticsearch import AsyncElasticsearch
from elasticsearch.serializer import OrjsonSerializer

from esbridge.config import ConnectionConfig
from esbridge.errormap import RETRY_STATUSES, map_error
from esbridge.errors import ESError

if TYPE_CHECKING:
    from opensearchpy import AsyncOpenSearch

log = logging.getLogger(__name__)


# -- what decoding answers costs ---------------------------------------------------------------


class DecodeMeter:
    """CPU seconds the clients spent decoding answers to requests made under ``metered()``.

    Cluster mode reports its coordination cost (heartbeats, the shared view); most of a
    shared-view round is parsing the other replicas' documents, which happens inside the
    client, so the clients' serializers add their time to the meter of the calling task.
    """

    def __init__(self) -> None:
        self.cpu_seconds = 0.0

    @contextlib.contextmanager
    def metered(self) -> Iterator[None]:
        token = _METER.set(self)
        try:
            yield
        finally:
            _METER.reset(token)


_METER: ContextVar[DecodeMeter | None] = ContextVar("esbridge_decode_meter", default=None)


def _timed_loads(loads: Any, data: Any) -> Any:
    meter = _METER.get()
    if meter is None:
        return loads(data)
    started = time.process_time()
    try:
        return loads(data)
    finally:
        meter.cpu_seconds += time.process_time() - started


def metered_loads(data: bytes) -> Any:
    """orjson's parse, timed into the calling task's :class:`DecodeMeter` (if any)."""
    return _timed_loads(orjson.loads, data)


class _MeteredOrjsonSerializer(OrjsonSerializer):
    def loads(self, data: bytes) -> Any:
        return _timed_loads(super().loads, data)


def _client_kwargs(config: ConnectionConfig, urls: list[str]) -> dict[str, Any]:
    """Settings both clients share: retries only to another node, timeouts, TLS.

    A node that cannot be reached is tried no more: the request goes to the next one (a node
    restarting must not turn checks UNKNOWN while the others answer). Statuses and timeouts
    are never retried by the client: :meth:`Connection._call` backs off itself, bounded.
    """
    kwargs: dict[str, Any] = {
        "hosts": urls,
        "max_retries": len(urls) - 1,  # connection errors only, each to another node
        "retry_on_status": (),
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
    kwargs["serializer"] = _MeteredOrjsonSerializer()
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
    from opensearchpy.serializer import JSONSerializer

    class MeteredJSONSerializer(JSONSerializer):
        def loads(self, s: str) -> Any:
            return _timed_loads(super().loads, s)

    kwargs = _client_kwargs(config, urls)
    kwargs["serializer"] = MeteredJSONSerializer()
    kwargs["timeout"] = config.request_timeout.total_seconds()
    password = config.resolved_password()
    if config.username and password is not None:
        kwargs["http_auth"] = (config.username, password)
    if any(url.startswith("https://") for url in urls):
        kwargs["use_ssl"] = True
    return AsyncOpenSearch(**kwargs)


class Backend:
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


class _ElasticsearchBackend(Backend):
    def __init__(self, config: ConnectionConfig, urls: list[str]) -> None:
        self.client = _make_client(config, urls)
        self._timed: dict[float, AsyncElasticsearch] = {}

    # request_timeout through options(): as a per-call keyword it takes the client's
    # deprecation path, which walks inspect.stack() on every call. options() copies the
    # client (a few hundred microseconds), so each timeout's copy is kept: they share the
    # transport, and a connection has a handful of timeouts.
    def _with(self, timeout: float) -> AsyncElasticsearch:
        client = self._timed.get(timeout)
        if client is None:
            if len(self._timed) >= 32:  # reloads with ever new timeouts: start again
                self._timed.clear()
            client = self._timed[timeout] = self.client.options(request_timeout=timeout)
        return client

    async def msearch(self, lines: list[dict[str, Any]], timeout: float) -> Any:
        # Encoded here with orjson: the client forwards bytes lines as they are, while its
        # NDJSON serializer would run the standard library's json on every line.
        encoded = [ndjson_line(line) for line in lines]
        return await self._with(timeout).msearch(searches=encoded)

    async def health(self, index: str | None, timeout: float) -> Any:
        return await self._with(timeout).cluster.health(index=index)

    async def nodes_stats(self, timeout: float) -> Any:
        return await self._with(timeout).nodes.stats(metric="jvm,fs")

    async def master(self, timeout: float) -> Any:
        client = self._with(timeout)
        return await client.cat.master(format="json", local=True)

    async def request(self, method: str, path: str, body: Any, timeout: float) -> Any:
        response = await self._with(timeout).perform_request(
            method, path, headers=_headers(body), body=body
        )
        return response.body

    async def close(self) -> None:
        await self.client.close()


class _OpenSearchBackend(Backend):
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


def make_backend(flavor: str, config: ConnectionConfig, urls: list[str]) -> Backend:
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
    headers = {"accept": "application/json", **auth_headers(config)}
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


def auth_headers(config: ConnectionConfig) -> dict[str, str]:
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
