"""A small HTTP/1.1 proxy on loopback that misbehaves on purpose, for the fault tests.

It sits between esbridge and a real Elasticsearch and understands just enough HTTP to count
requests on keep-alive connections (Content-Length and chunked bodies). Faults apply to the
requests whose path contains ``match`` (default: every request):

- ``delay``: hold each request that long before forwarding it;
- ``inject(status, count)``: answer the next ``count`` requests with ``status`` and an
  Elasticsearch-shaped error body, without forwarding them;
- ``blackhole``: read the request, never answer.

It runs its own event loop in a daemon thread, so synchronous tests drive it directly::

    with FaultProxy("127.0.0.1", es_port) as proxy:
        proxy.delay = 3.0
        ... esbridge uses proxy.url ...
        assert proxy.max_concurrent <= 2
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections import Counter
from dataclasses import dataclass, field

_REASONS = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass
class _Head:
    first_line: bytes
    headers: list[tuple[str, str]] = field(default_factory=list)

    def get(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None


async def _read_head(reader: asyncio.StreamReader) -> _Head | None:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        return None
    lines = raw[:-4].split(b"\r\n")
    head = _Head(lines[0])
    for line in lines[1:]:
        key, _, value = line.decode("latin-1").partition(":")
        head.headers.append((key.strip(), value.strip()))
    return head


async def _read_body(reader: asyncio.StreamReader, head: _Head, no_body: bool = False) -> bytes:
    """The body as it was on the wire (chunked bodies are relayed chunked)."""
    if no_body:
        return b""
    if (head.get("transfer-encoding") or "").lower() == "chunked":
        out = bytearray()
        while True:
            size_line = await reader.readuntil(b"\r\n")
            out += size_line
            size = int(size_line.split(b";")[0].strip(), 16)
            if size == 0:
                out += await reader.readuntil(b"\r\n")
                return bytes(out)
            out += await reader.readexactly(size + 2)
    length = int(head.get("content-length") or 0)
    return await reader.readexactly(length) if length else b""


def _wire(head: _Head) -> bytes:
    lines = [head.first_line] + [f"{k}: {v}".encode("latin-1") for k, v in head.headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


class FaultProxy:
    """HTTP proxy to one upstream with switchable faults and request counters."""

    def __init__(self, upstream_host: str, upstream_port: int, match: str | None = None) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.match = match
        self.delay = 0.0
        self.blackhole = False
        self._inject_status = 0
        self._inject_left = 0
        # counters (read from the test thread; ints are updated atomically enough for reads)
        self.requests = 0
        self.matched = 0
        self.injected = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.paths: Counter[str] = Counter()
        self.authorizations: Counter[str] = Counter()  # Authorization header values seen
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.base_events.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: set[asyncio.Task[None]] = set()

    # -- control -----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def inject(self, status: int, count: int) -> None:
        """Answer the next ``count`` matching requests with ``status``."""
        self._inject_status, self._inject_left = status, count

    def clear(self) -> None:
        """No more faults (counters stay)."""
        self.delay = 0.0
        self.blackhole = False
        self._inject_left = 0

    def reset_counters(self) -> None:
        self.requests = self.matched = self.injected = 0
        self.max_concurrent = self.concurrent
        self.paths.clear()

    def start(self) -> FaultProxy:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the loop side -----------------------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._server.wait_closed(), 5)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            while True:
                head = await _read_head(reader)
                if head is None:
                    return
                body = await _read_body(reader, head)
                parts = head.first_line.decode("latin-1").split(" ")
                method, path = parts[0], parts[1] if len(parts) > 1 else "/"
                self.requests += 1
                self.paths[path.split("?")[0]] += 1
                self.authorizations[head.get("authorization") or ""] += 1
                hit = self.match is None or self.match in path
                self.concurrent += 1
                self.max_concurrent = max(self.max_concurrent, self.concurrent)
                try:
                    if hit:
                        self.matched += 1
                        if self.blackhole:
                            await reader.read()  # until the client gives up
                            return
                        if self._inject_left > 0:
                            self._inject_left -= 1
                            self.injected += 1
                            writer.write(self._error_response(self._inject_status))
                            await writer.drain()
                            continue
                        if self.delay:
                            await asyncio.sleep(self.delay)
                    if upstream is None:
                        upstream = await asyncio.open_connection(*self.upstream)
                    up_reader, up_writer = upstream
                    up_writer.write(_wire(head) + body)
                    await up_writer.drain()
                    answer = await _read_head(up_reader)
                    if answer is None:
                        return
                    status = int(answer.first_line.split(b" ")[1])
                    no_body = method == "HEAD" or status in (204, 304)
                    answer_body = await _read_body(up_reader, answer, no_body)
                    writer.write(_wire(answer) + answer_body)
                    await writer.drain()
                finally:
                    self.concurrent -= 1
        except (ConnectionError, asyncio.IncompleteReadError, OSError, asyncio.CancelledError):
            return
        finally:
            self._tasks.discard(task)  # type: ignore[arg-type]
            writer.close()
            if upstream is not None:
                upstream[1].close()

    def _error_response(self, status: int) -> bytes:
        etype = "es_rejected_execution_exception" if status == 429 else "unavailable_shards"
        reason = f"injected HTTP {status} by faultproxy"
        body = json.dumps(
            {
                "error": {
                    "root_cause": [{"type": etype, "reason": reason}],
                    "type": etype,
                    "reason": reason,
                },
                "status": status,
            }
        ).encode()
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            "content-type: application/json\r\n"
            "x-elastic-product: Elasticsearch\r\n"
            f"content-length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body
