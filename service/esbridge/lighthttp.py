"""Plain JSON requests on kept-alive sockets: esbridge's own small, frequent requests.

Heartbeats, the members read, state documents and the shared view's ``_mget`` are small JSON
requests that a replica makes every few seconds. Through the product's client (elasticsearch-py
or opensearch-py, over aiohttp) each cost about 1.5 ms of CPU when it is the only request in a
while: the layers of two libraries, woken up cold. On a socket kept open they cost about
0.55 ms (bench/README.md, "Replicas"); in cluster mode they were the biggest part of what
coordinating replicas cost. Searches (``_msearch``) and cluster APIs keep the clients.

What it speaks is what Elasticsearch and OpenSearch (and the proxies in front of them) answer:
HTTP/1.1 with a ``Content-Length`` or chunked body, or a body up to the connection's close,
gzip or deflate if a proxy compresses it unasked.
TLS and credentials are the connection's (``ca_certs``, ``verify_certs``, basic or API key).
A node that cannot be reached is left for the next URL, like the clients do; a kept socket
the server closed meanwhile is opened again once, before anything was answered on it.
Every failure is an :class:`~esbridge.errors.ESError`, worded like the clients' ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from esbridge.errormap import error_from_body, socket_error
from esbridge.errors import ESError

MAX_IDLE = 4  # kept sockets per node: the state store sees a handful of requests at once
_HEAD_LIMIT = 1 << 16  # a response's status line and headers


@dataclass(slots=True)
class _Socket:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


@dataclass(slots=True)
class _Node:
    host: str
    port: int
    tls: bool
    prefix: str  # a path the URL names before esbridge's own (a proxy's mount point)
    idle: list[_Socket] = field(default_factory=list)

    @property
    def where(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host  # an IPv6 address
        return f"{host}:{self.port}"


class _Lost(Exception):
    """A kept socket was closed by the server before anything was answered on it."""


class LightHttp:
    """Keep-alive HTTP/1.1 JSON requests to the nodes of one connection."""

    def __init__(
        self,
        urls: list[str],
        headers: dict[str, str],
        context: ssl.SSLContext | None,
        product: Callable[[], str],
        loads: Callable[[bytes], Any] = orjson.loads,
    ) -> None:
        self._nodes = [_node(url) for url in urls]
        self._headers = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._context = context
        self._product = product
        self._loads = loads
        self._current = 0  # the node that answered last: asked first

    async def request(self, method: str, path: str, body: Any, timeout: float) -> Any:
        """The parsed answer (JSON, else text); an error answer or failure as ESError."""
        payload, kind = _encode(body)
        failure: ESError | None = None
        count = len(self._nodes)
        for step in range(count):
            index = (self._current + step) % count
            node = self._nodes[index]
            try:
                async with asyncio.timeout(timeout):
                    status, kind_in, data = await self._exchange(node, method, path, payload, kind)
            except TimeoutError:
                expired = f"{self._product()} timed out after {timeout:g} s"
                raise ESError("timeout", expired) from None
            except (OSError, asyncio.IncompleteReadError) as exc:
                failure = socket_error(exc, node.where, self._product())
                continue  # the next node, as the clients do for a connection error
            except (ValueError, asyncio.LimitOverrunError):
                raise ESError(
                    "internal",
                    f"{self._product()} error: the answer from {node.where} is not HTTP/1.1",
                ) from None
            self._current = index
            return self._answer(status, kind_in, data)
        assert failure is not None  # at least one node was tried
        raise failure

    async def close(self) -> None:
        for node in self._nodes:
            for sock in node.idle:
                sock.close()
            node.idle.clear()

    # -- one exchange --------------------------------------------------------------------

    async def _exchange(
        self, node: _Node, method: str, path: str, payload: bytes | None, kind: str
    ) -> tuple[int, str, bytes]:
        head = (
            f"{method} {node.prefix}{path} HTTP/1.1\r\nHost: {node.where}\r\n"
            f"Accept: application/json\r\n{self._headers}"
        )
        if payload is not None:
            head += f"Content-Type: {kind}\r\nContent-Length: {len(payload)}\r\n"
        message = (head + "\r\n").encode("latin-1") + (payload or b"")
        while node.idle:  # a kept socket first; one the server closed is opened anew
            sock = node.idle.pop()
            try:
                return await self._send(node, sock, message, method)
            except _Lost:
                continue
        return await self._send(node, await self._open(node), message, method, fresh=True)

    async def _open(self, node: _Node) -> _Socket:
        reader, writer = await asyncio.open_connection(
            node.host,
            node.port,
            ssl=self._context if node.tls else None,
            server_hostname=node.host if node.tls else None,
            limit=_HEAD_LIMIT,
        )
        return _Socket(reader, writer)

    async def _send(
        self, node: _Node, sock: _Socket, message: bytes, method: str, fresh: bool = False
    ) -> tuple[int, str, bytes]:
        done = False
        try:
            sock.writer.write(message)
            try:
                head = await sock.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                if not fresh and not getattr(exc, "partial", b""):
                    raise _Lost from exc  # closed while idle: nothing was done with it
                raise
            status, kind, length, chunked, keep, encoding = _parse_head(head)
            reader = sock.reader
            if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
                data = b""
            elif chunked:
                data = await _read_chunked(reader)
            elif length is not None:
                data = await reader.readexactly(length)
            else:
                data, keep = await reader.read(), False  # up to the close
            done = keep
            if encoding in ("gzip", "deflate"):  # a proxy that compresses unasked
                data = zlib.decompress(data, 47)  # either header, as aiohttp reads them
            return status, kind, data
        finally:
            if done and len(node.idle) < MAX_IDLE:
                node.idle.append(sock)
            else:  # an error, a timeout or a cancellation midway: the socket's state is lost
                sock.close()

    def _answer(self, status: int, kind: str, data: bytes) -> Any:
        body: Any = None
        if "json" in kind and data:
            with contextlib.suppress(orjson.JSONDecodeError):
                body = self._loads(data)
        if status < 300:
            return body if body is not None else data.decode("utf-8", "replace")
        # the product's error object, else the answer as it came (a proxy's page, a document
        # not found), quoted as the clients' errors quote it
        error = body.get("error") if isinstance(body, dict) else None
        text = error if error is not None else data.decode("utf-8", "replace")
        raise error_from_body(text, status, "", self._product())


def _encode(body: Any) -> tuple[bytes | None, str]:
    """A request body as bytes, and its content type (NDJSON for lines)."""
    if body is None:
        return None, ""
    if isinstance(body, bytes):
        return body, "application/json"
    if isinstance(body, str):
        ndjson = body.endswith("\n")
        return body.encode(), "application/x-ndjson" if ndjson else "application/json"
    if isinstance(body, list | tuple):
        return b"".join(_dumps(line) + b"\n" for line in body), "application/x-ndjson"
    return _dumps(body), "application/json"


def _dumps(body: Any) -> bytes:
    """JSON bytes; orjson refuses integers beyond 64 bits, which the standard library takes."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body).encode()


def _node(url: str) -> _Node:
    parts = urlsplit(url)
    tls = parts.scheme == "https"
    host = parts.hostname or "127.0.0.1"
    return _Node(host, parts.port or (443 if tls else 80), tls, parts.path.rstrip("/"))


def _parse_head(head: bytes) -> tuple[int, str, int | None, bool, bool, str]:
    """(status, content type, content length, chunked, keep-alive, content encoding) of a
    response head."""
    lines = head[:-4].decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {lines[0][:40]!r}")
    status = int(rest[:3])
    kind, length, chunked, encoding = "", None, False, ""
    keep = version == "HTTP/1.1"
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name, value = name.strip().lower(), value.strip()
        if name == "content-type":
            kind = value.lower()
        elif name == "content-length":
            length = int(value)
        elif name == "content-encoding":
            encoding = value.lower()
        elif name == "transfer-encoding":
            chunked = "chunked" in value.lower()
        elif name == "connection":
            keep = value.lower() == "keep-alive" or (keep and value.lower() != "close")
    return status, kind, length, chunked, keep, encoding


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while await reader.readuntil(b"\r\n") != b"\r\n":  # trailers, if any
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])


def ssl_context(ca_certs: str | None, verify: bool) -> ssl.SSLContext:
    """The TLS settings of a connection, as the clients apply them."""
    context = ssl.create_default_context(cafile=ca_certs)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
