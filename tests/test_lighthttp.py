"""esbridge's own plain requests on kept-alive sockets (esbridge.lighthttp).

The wire cases (chunked bodies, a close instead of a length, a kept socket the server closed,
a node refusing, a server that never answers, an answer that is not HTTP) come from a small
scripted server on loopback; what Elasticsearch itself answers comes from the real one.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from conftest import BACKEND_NAME
from esbridge.config import ConnectionConfig
from esbridge.errors import ESError
from esbridge.esclient import Connection
from esbridge.lighthttp import LightHttp

Answer = Callable[[bytes], bytes | None]  # request head -> raw answer (None: say nothing)


class Scripted:
    """A loopback server answering each request with ``answer(head)``; counts sockets."""

    def __init__(self, answer: Answer, close_after: bool = False) -> None:
        self.answer = answer
        self.close_after = close_after  # close every socket after its first answer
        self.sockets = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sockets += 1
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                raw = self.answer(head)
                if raw is None:
                    await asyncio.sleep(3600)  # a black hole
                writer.write(raw)
                await writer.drain()
                if self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def drop_all(self) -> None:
        """Close every socket from the server's side (a restart, an idle timeout)."""
        for writer in self.writers:
            writer.close()


@pytest.fixture
async def scripted() -> AsyncIterator[Callable[..., Any]]:
    servers: list[Scripted] = []

    async def start(answer: Answer, close_after: bool = False) -> Scripted:
        server = Scripted(answer, close_after)
        server.server = await asyncio.start_server(server.serve, "127.0.0.1", 0)
        servers.append(server)
        return server

    yield start
    for server in servers:
        assert server.server is not None
        server.server.close()
        server.drop_all()


def json_answer(body: bytes = b'{"ok":true}', status: str = "200 OK", extra: bytes = b"") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n".encode()
        + extra
        + f"content-length: {len(body)}\r\n\r\n".encode()
        + body
    )


def client(*urls: str) -> LightHttp:
    return LightHttp(list(urls), {"authorization": "Basic dTpw"}, None, lambda: "Elasticsearch")


def refused_url() -> str:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


@pytest.mark.version_independent
async def test_requests_share_one_kept_socket_and_carry_credentials_and_body(
    scripted: Callable[..., Any],
) -> None:
    server = await scripted(lambda head: json_answer())
    light = client(server.url)
    for _ in range(3):
        assert await light.request("PUT", "/members/_doc/a", {"counter": 1}, 5.0) == {"ok": True}
    assert server.sockets == 1
    first = server.requests[0]
    assert first.startswith(b"PUT /members/_doc/a HTTP/1.1\r\n")
    assert b"authorization: Basic dTpw\r\n" in first
    assert b"Content-Type: application/json\r\n" in first
    assert first.endswith(b'{"counter":1}')
    await light.close()


@pytest.mark.version_independent
async def test_bodies_go_as_ndjson_and_numbers_beyond_64_bits_are_kept(
    scripted: Callable[..., Any],
) -> None:
    server = await scripted(lambda head: json_answer())
    light = client(server.url)
    await light.request("POST", "/_bulk", [{"index": {}}, {"n": 1}], 5.0)
    await light.request("POST", "/x/_search", {"query": {"term": {"n": 2**70}}}, 5.0)
    assert server.requests[0].endswith(b'{"index":{}}\n{"n":1}\n')
    assert b"Content-Type: application/x-ndjson" in server.requests[0]
    assert server.requests[1].endswith(str(2**70).encode() + b"}}}")
    await light.close()


@pytest.mark.version_independent
async def test_chunked_and_closing_answers_are_read_whole(scripted: Callable[..., Any]) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=UTF-8\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n6;ext=1\r\n:[1,2]\r\n1\r\n}\r\n0\r\nx-trailer: 1\r\n\r\n'
    )
    server = await scripted(lambda head: chunked)
    light = client(server.url)
    assert await light.request("GET", "/", None, 5.0) == {"a": [1, 2]}
    assert await light.request("GET", "/", None, 5.0) == {"a": [1, 2]}
    assert server.sockets == 1  # chunked and kept

    closing = await scripted(
        lambda head: b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"b":2}',
        close_after=True,
    )
    light = client(closing.url)
    assert await light.request("GET", "/", None, 5.0) == {"b": 2}
    assert await light.request("GET", "/", None, 5.0) == {"b": 2}
    assert closing.sockets == 2  # read up to the close, never kept
    await light.close()


@pytest.mark.version_independent
def test_an_ipv6_node_is_named_in_brackets() -> None:
    assert [node.where for node in client("http://[::1]:9200", "https://es.example")._nodes] == [
        "[::1]:9200",
        "es.example:443",
    ]


@pytest.mark.version_independent
async def test_an_answer_compressed_unasked_is_read(scripted: Callable[..., Any]) -> None:
    packed = gzip.compress(b'{"c":3}')
    server = await scripted(lambda head: json_answer(packed, extra=b"content-encoding: gzip\r\n"))
    light = client(server.url)
    assert await light.request("GET", "/", None, 5.0) == {"c": 3}
    assert b"accept-encoding" not in server.requests[0].lower()  # never asked for
    await light.close()


@pytest.mark.version_independent
async def test_a_kept_socket_closed_by_the_server_is_opened_again_once(
    scripted: Callable[..., Any],
) -> None:
    server = await scripted(lambda head: json_answer())
    light = client(server.url)
    await light.request("GET", "/a", None, 5.0)
    server.drop_all()  # an idle timeout, a restart behind a proxy
    await asyncio.sleep(0.05)
    assert await light.request("GET", "/b", None, 5.0) == {"ok": True}
    assert server.sockets == 2
    assert [r.split(b" ")[1] for r in server.requests] == [b"/a", b"/b"]  # sent once each
    await light.close()


@pytest.mark.version_independent
async def test_a_node_that_refuses_is_left_for_the_next_one(scripted: Callable[..., Any]) -> None:
    server = await scripted(lambda head: json_answer())
    dead = refused_url()
    light = client(dead, server.url)
    assert await light.request("GET", "/", None, 5.0) == {"ok": True}
    assert await light.request("GET", "/", None, 5.0) == {"ok": True}
    assert len(server.requests) == 2  # the node that answered is asked first from then on

    with pytest.raises(ESError) as caught:
        await client(dead).request("GET", "/", None, 5.0)
    port = dead.rsplit(":", 1)[1]
    assert caught.value.kind == "unreachable"
    assert str(caught.value) == f"Elasticsearch unreachable: connection refused (127.0.0.1:{port})"
    await light.close()


@pytest.mark.version_independent
async def test_silence_is_a_timeout_and_garbage_is_named(scripted: Callable[..., Any]) -> None:
    silent = await scripted(lambda head: None)
    started = time.monotonic()
    with pytest.raises(ESError) as caught:
        await client(silent.url).request("GET", "/", None, 0.3)
    assert caught.value.kind == "timeout"
    assert str(caught.value) == "Elasticsearch timed out after 0.3 s"
    assert time.monotonic() - started < 10.0  # not the black hole's hour

    garbage = await scripted(lambda head: b"SSH-2.0-OpenSSH_9.2\r\n\r\n")
    with pytest.raises(ESError) as caught:
        await client(garbage.url).request("GET", "/", None, 5.0)
    assert caught.value.kind == "internal"
    assert "is not HTTP/1.1" in str(caught.value)


@pytest.mark.version_independent
async def test_error_answers_are_mapped_like_the_clients_do(scripted: Callable[..., Any]) -> None:
    busy = json_answer(
        b'{"error":{"root_cause":[{"type":"es_rejected_execution_exception","reason":"queue '
        b'full"}],"type":"es_rejected_execution_exception","reason":"queue full"},"status":429}',
        "429 Too Many Requests",
    )
    html = b"<html><title>502 Bad Gateway</title></html>\r\n"
    page = (
        b"HTTP/1.1 502 Bad Gateway\r\ncontent-type: text/html\r\n"
        + f"content-length: {len(html)}\r\n\r\n".encode()
        + html
    )
    missing = json_answer(b'{"_index":"x","_id":"a","found":false}', "404 Not Found")
    answers = iter([busy, page, missing])
    server = await scripted(lambda head: next(answers))
    light = client(server.url)
    errors = []
    for _ in range(3):
        with pytest.raises(ESError) as caught:
            await light.request("GET", "/x/_doc/a", None, 5.0)
        errors.append(caught.value)
    assert (errors[0].kind, errors[0].status) == ("throttled", 429)
    assert "queue full" in str(errors[0])
    assert (errors[1].kind, errors[1].status) == ("throttled", 502)
    assert "502 Bad Gateway" in str(errors[1])
    assert (errors[2].kind, errors[2].status) == ("rejected", 404)
    assert '{"_index":"x","_id":"a","found":false}' in str(errors[2])  # the answer, quoted
    assert server.sockets == 1  # an error answer leaves the socket usable
    await light.close()


@pytest.mark.es
async def test_plain_requests_to_the_real_server_keep_one_socket(es_url: str) -> None:
    connection = Connection("state", ConnectionConfig(urls=[es_url]))
    index = f"esbridge-light-{time.time_ns()}"
    try:
        await connection.create_index(index, {"dynamic": False}, 30.0)
        await connection.raw("PUT", f"/{index}/_doc/a?refresh=true", {"n": 1})
        lines = f'{{"index":{{"_index":"{index}","_id":"b"}}}}\n{{"n":2}}\n'
        bulk = await connection.raw("POST", "/_bulk?refresh=true", lines)
        assert bulk["errors"] is False
        found = await connection.raw("POST", f"/{index}/_mget", {"ids": ["a", "b", "c"]})
        assert [d["found"] for d in found["docs"]] == [True, True, False]
        with pytest.raises(ESError) as caught:
            await connection.raw("GET", f"/{index}-missing/_doc/a")
        assert caught.value.kind == "no_such_index"
        assert caught.value.status == 404
        light = connection._light
        assert light is not None
        assert len(light._nodes[0].idle) == 1  # one after the other: one socket, kept
        assert connection.product == BACKEND_NAME
    finally:
        await connection.raw("DELETE", f"/{index}")
        await connection.close()
