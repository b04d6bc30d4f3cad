"""Which product answers: ``flavor: auto`` detects it once, an explicit flavor is checked.

Runs against the run's real backend (Elasticsearch or OpenSearch, ``ESBRIDGE_TEST_BACKEND``);
the "neither" case uses a plain HTTP server, which is exactly what it is about.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import BACKEND, BACKEND_NAME
from esbridge.config import ConfigError, ConnectionConfig, load_settings
from esbridge.errors import ESError
from esbridge.esclient import Connection, Connections, DecodeMeter
from esbridge.loader import load_text
from esbridge.planner import ClusterFetch
from esbridge.result import State
from esbridge.runner import Runner
from esbridge_dev import httpcalls
from faultproxy import FaultProxy

OTHER = "elasticsearch" if BACKEND == "opensearch" else "opensearch"
COUNT = "checks:\n  - {name: c, kind: count, index: 'nothing-*', critical: 1}\n"


async def _one_result(config: ConnectionConfig):  # type: ignore[no-untyped-def]
    connections = Connections({"default": config})
    try:
        return (await Runner(connections).run(list(load_text(COUNT))))[0]
    finally:
        await connections.close()


@pytest.mark.es
async def test_auto_detects_the_backend_once_and_logs_it(
    es_url: str, es_version: str, caplog: pytest.LogCaptureFixture
) -> None:
    root = httpcalls.get(es_url, timeout=10)
    if BACKEND == "elasticsearch":
        # The test distribution has no root endpoint: detection must not depend on it.
        assert root.status_code == 405
        assert root.headers["x-elastic-product"] == "Elasticsearch"
    else:
        assert root.json()["version"]["distribution"] == "opensearch"
    connection = Connection("default", ConnectionConfig(urls=(es_url,)))
    assert connection.flavor is None
    caplog.set_level(logging.INFO, logger="esbridge.esclient")
    try:
        assert await connection.ping()
        assert await connection.ping()
    finally:
        await connection.close()
    assert (connection.flavor, connection.server_version) == (BACKEND, es_version)
    assert connection.product == BACKEND_NAME
    said = [r.getMessage() for r in caplog.records if r.name == "esbridge.esclient"]
    assert said == [f"connection default: {BACKEND_NAME} {es_version} (detected)"]


@pytest.mark.es
async def test_explicit_flavor_that_matches_works(es_url: str) -> None:
    result = await _one_result(ConnectionConfig(urls=(es_url,), flavor=BACKEND))
    assert result.state is State.UNKNOWN  # the index pattern matches nothing ...
    assert result.summary.startswith("no such index [nothing-*]")  # ... said by the server


@pytest.mark.es
async def test_explicit_flavor_that_does_not_match_is_a_clear_unknown(
    es_url: str, es_version: str
) -> None:
    result = await _one_result(ConnectionConfig(urls=(es_url,), flavor=OTHER))
    assert result.state is State.UNKNOWN
    assert result.error_kind == "unsupported"
    assert result.summary.startswith(
        f"connection 'default' is configured with flavor {OTHER} but the server is "
        f"{BACKEND_NAME} {es_version}: set flavor: {BACKEND} (or auto)"
    )


@pytest.fixture
def not_a_search_server() -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = json.dumps({"name": "something else", "version": {"number": "1.0"}}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_GET

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


async def test_neither_product_is_refused_with_the_reason(not_a_search_server: str) -> None:
    result = await _one_result(ConnectionConfig(urls=(not_a_search_server,)))
    assert result.state is State.UNKNOWN
    assert result.error_kind == "unsupported"
    assert result.summary.startswith(
        f"the server at {not_a_search_server} is neither Elasticsearch nor OpenSearch "
        "(GET / answered HTTP 200, no product 1.0, no X-Elastic-Product header)"
    )


def test_flavor_is_validated_in_the_configuration() -> None:
    with pytest.raises(ConfigError) as bad:
        load_settings(elasticsearch={"default": {"flavor": "solr"}})
    assert "flavor" in str(bad.value)
    with pytest.raises(ConfigError) as keyed:
        load_settings(elasticsearch={"default": {"flavor": "opensearch", "api_key": "aWQ6a2V5"}})
    assert "OpenSearch has no API keys" in str(keyed.value)
    assert load_settings().elasticsearch["default"].flavor == "auto"


@pytest.mark.es
async def test_basic_auth_is_sent_the_same_way_to_either_product(es_url: str) -> None:
    """username + password reach the server as one Basic header on every request, detection
    included, whichever client answers (the servers here run without security, so the
    proxy in front of them is what sees the header)."""
    password = uuid.uuid4().hex
    port = int(es_url.rsplit(":", 1)[1])
    with FaultProxy("127.0.0.1", port) as proxy:
        config = ConnectionConfig(urls=(proxy.url,), username="esbridge", password=password)
        result = await _one_result(config)
        connection = Connection("default", config)
        try:
            assert await connection.ping()
        finally:
            await connection.close()
    assert result.summary.startswith("no such index [nothing-*]")
    assert connection.flavor == BACKEND
    basic = base64.b64encode(f"esbridge:{password}".encode()).decode()
    assert sum(proxy.authorizations.values()) >= 4  # detection + request, twice
    assert set(proxy.authorizations) == {f"Basic {basic}"}, proxy.authorizations


@pytest.mark.es
async def test_decoding_is_metered_only_for_the_requests_that_ask(es_url: str) -> None:
    """Cluster mode counts the CPU its answers take to parse, inside either client."""
    index = f"esbridge-test-meter-{uuid.uuid4().hex[:8]}"
    docs = "".join(
        json.dumps({"index": {"_id": str(i)}}) + "\n" + json.dumps({"text": "x" * 200}) + "\n"
        for i in range(300)
    )
    httpcalls.post(
        f"{es_url}/{index}/_bulk?refresh=true",
        content=docs,
        headers={"content-type": "application/x-ndjson"},
        timeout=60,
    ).raise_for_status()
    connection = Connection("default", ConnectionConfig(urls=(es_url,)))
    meter = DecodeMeter()
    ids = {"ids": [str(i) for i in range(300)]}
    try:
        await connection.raw("POST", f"/{index}/_mget", ids, 10)
        assert meter.cpu_seconds == 0.0
        with meter.metered():
            answer = await connection.raw("POST", f"/{index}/_mget", ids, 10)
        assert len(answer["docs"]) == 300
        measured = meter.cpu_seconds
        assert measured > 0.0
        await connection.raw("POST", f"/{index}/_mget", ids, 10)
        assert meter.cpu_seconds == measured
    finally:
        await connection.close()
        httpcalls.delete(f"{es_url}/{index}", timeout=30)


async def test_requests_waiting_for_the_product_share_one_detection() -> None:
    """A black-holed server costs one timeout, not one per concurrent request in turn: a
    run's search, its ``_field_caps`` and a cluster check each waited their own detection
    behind the others', long enough for the run's results to be born stale."""
    with FaultProxy("127.0.0.1", 9) as proxy:
        proxy.blackhole = True
        connection = Connection("default", ConnectionConfig(urls=(proxy.url,)))
        try:
            got = await asyncio.gather(
                connection.raw("GET", "/logs/_field_caps?fields=t", None, 1.0),
                connection.cluster(ClusterFetch("/_cluster/health"), 1.0),
                connection.ping(1.0),
                return_exceptions=True,
            )
            assert proxy.paths["/"] == 1, proxy.paths  # one GET / for the three
            assert isinstance(got[0], ESError) and got[0].kind == "timeout", got[0]
            assert isinstance(got[1], ESError) and got[1].kind == "timeout", got[1]
            assert got[2] is False and connection.up is False
            # a failed detection is tried again by the next request
            assert await connection.ping(1.0) is False
            assert proxy.paths["/"] == 2, proxy.paths
            # each waits its own timeout: the longer one tries again when the shorter ends
            short, long = await asyncio.gather(
                connection.raw("GET", "/_cluster/health", None, 0.5),
                connection.raw("GET", "/_cluster/health", None, 1.5),
                return_exceptions=True,
            )
            assert str(short) == "Elasticsearch timed out after 0.5 s", short
            assert str(long) == "Elasticsearch timed out after 1.5 s", long
            assert proxy.paths["/"] == 4, proxy.paths
        finally:
            await connection.close()


async def test_a_request_cancelled_as_the_detection_ends_is_cancelled() -> None:
    """A cancellation that arrives in the same turn as the shared detection's answer must
    not be lost (``asyncio.wait_for`` in Python 3.11 returned the answer instead): the
    request's task went on, and the service's stop, awaiting it, hung (CI, OpenSearch 3)."""
    connection = Connection("default", ConnectionConfig(urls=("http://127.0.0.1:9",)))
    answered = asyncio.get_running_loop().create_future()
    backend = object()

    async def detect(timeout: float) -> object:
        await answered
        return backend

    connection._detect = detect  # type: ignore[method-assign]
    request = asyncio.get_running_loop().create_task(connection._ready(5.0))
    await asyncio.sleep(0)  # the request started the detection and waits for it
    detecting = connection._detecting
    assert detecting is not None
    # runs right after the detection's own callbacks: its answer is there, then the cancel
    detecting.add_done_callback(lambda _: request.cancel())
    answered.set_result(None)
    with pytest.raises(asyncio.CancelledError):
        await request
    assert request.cancelled()
