"""Limits on the HTTP side: idle and half-sent connections, connection count, request size.

uvicorn closes an idle keep-alive connection after ``timeout_keep_alive`` but never a
connection that has sent nothing or only part of a request: a thousand of those exhaust the
open-files limit and ``/healthz`` stops answering. :class:`GuardedH11Protocol` gives every
request :data:`~esbridge.limits.HEADER_READ_TIMEOUT` seconds to arrive completely and, past
:data:`~esbridge.limits.MAX_CONNECTIONS`, closes the connection that has waited longest
without a request instead of refusing the newcomer. :class:`RequestLimits` (ASGI) bounds the
request body and closes the connection after a request that is ambiguous on the wire.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from esbridge import limits

Scope = dict[str, Any]
Message = dict[str, Any]


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-read timeout and a connection bound."""

    _request_timer: asyncio.TimerHandle | None = None
    _idle_since: float | None = None  # waiting for a request since (None: serving one)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._hint = 400  # the status h11 suggests for its last refusal (send_400_response)
        next_event = self.conn.next_event

        def noting_refusals() -> Any:
            try:
                return next_event()
            except Exception as error:  # h11.RemoteProtocolError, which uvicorn answers 400
                self._hint = getattr(error, "error_status_hint", 400)
                raise

        self.conn.next_event = noting_refusals  # type: ignore[method-assign]
        self._idle_since = time.monotonic()
        self._arm()
        if len(self.connections) > limits.MAX_CONNECTIONS:
            self._evict_one()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        cycle = self.cycle
        serving = cycle is not None and not cycle.response_complete
        if serving and not cycle.more_body:
            self._disarm()  # the whole request is here; the app may take its time
            self._idle_since = None
        elif not self.transport.is_closing():
            self._arm()  # headers or body still arriving

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._idle_since = time.monotonic()  # idle keep-alive: uvicorn's timer closes it

    def send_400_response(self, msg: str) -> None:
        """uvicorn answers every request h11 refuses with 400, and h11 refuses a request line
        and headers still unfinished past ``h11_max_incomplete_event_size``
        (:data:`~esbridge.limits.MAX_HEADER_BYTES`), hinting 431. Whether a request that size
        got there or arrived whole, for :class:`RequestLimits` to answer 431, depended on how
        its bytes were split on the way (a loaded machine reads the first part alone): h11's
        hint is answered, so it is 431 either way."""
        if self._hint != 431:  # refused for what it says, not for its size
            super().send_400_response(msg)
            return
        body = _error_body(_TOO_LARGE)
        self.transport.write(  # as RequestLimits answers; the connection closes after it
            b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
            b"content-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n".encode()
            + b"connection: close\r\n\r\n"
            + body
        )
        self.transport.close()

    def _arm(self) -> None:
        if self._request_timer is None:
            self._request_timer = self.loop.call_later(
                limits.HEADER_READ_TIMEOUT, self._request_timeout
            )

    def _disarm(self) -> None:
        if self._request_timer is not None:
            self._request_timer.cancel()
            self._request_timer = None

    def _request_timeout(self) -> None:
        self._request_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete and not cycle.more_body:
            return  # complete request being served
        if not self.transport.is_closing():
            self.transport.close()

    def _evict_one(self) -> None:
        """Close the connection waiting longest for a request (this one if none waits)."""
        waiting = [
            c
            for c in self.connections
            if isinstance(c, GuardedH11Protocol)
            and c._idle_since is not None
            and not c.transport.is_closing()  # still listed until connection_lost runs
        ]
        victim = min(waiting, key=lambda c: c._idle_since or 0.0, default=self)
        victim.transport.close()


class RequestLimits:
    """ASGI middleware: header and body bounds, ``Connection: close`` after ambiguous framing.

    A request with both ``Transfer-Encoding`` and ``Content-Length`` is answered 400 and the
    connection closed (RFC 9112 section 6.3: the server must close after such a request; a
    proxy in front might have framed it differently - request smuggling).

    A body over ``max_body`` is a 413: refused from ``Content-Length`` before it is read, and
    a chunked one (no length) read here up to the bound before the app sees it.
    """

    def __init__(self, app: Any, max_body: int = limits.MAX_REQUEST_BODY_BYTES) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw = scope.get("headers", [])
        size = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        size += sum(len(k) + len(v) + 4 for k, v in raw)
        if size > limits.MAX_HEADER_BYTES:
            await _refuse(send, 431, _TOO_LARGE)
            return
        headers = {k.lower(): v for k, v in raw}
        if b"transfer-encoding" in headers and b"content-length" in headers:
            await _refuse(send, 400, "both Transfer-Encoding and Content-Length")
            return
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
            return
        if b"transfer-encoding" in headers:
            # A chunked body announces no size: read it here, up to the bound, before the app
            # runs. Raised inside the app, the overflow would reach FastAPI's body parsing,
            # which turns any error into its own 400 before this middleware could answer 413.
            messages = await _read_bounded(receive, self.max_body)
            if messages is None:
                await _refuse(send, 413, f"request body larger than {self.max_body} bytes")
                return
            receive = _replaying(messages, receive)
        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, bounded_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _refuse(send, 413, f"request body larger than {self.max_body} bytes")


class _TooLarge(Exception):
    pass


async def _read_bounded(receive: Any, max_body: int) -> list[Message] | None:
    """The request's messages with the body in one piece, or None past ``max_body``.

    Reading stops at the first chunk over the bound, so memory stays under ``max_body``
    plus one chunk. A client gone while sending leaves just its disconnect message."""
    parts: list[bytes] = []
    size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            return [message]  # http.disconnect: the app sees the client left
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > max_body:
            return None
        parts.append(chunk)
        if not message.get("more_body", False):
            return [{"type": "http.request", "body": b"".join(parts), "more_body": False}]


def _replaying(messages: list[Message], receive: Any) -> Any:
    """A ``receive`` that gives the app the messages read already, then the server's."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


_TOO_LARGE = f"request line and headers larger than {limits.MAX_HEADER_BYTES} bytes"


def _error_body(reason: str) -> bytes:
    return ('{"error": "' + reason + '"}').encode()


async def _refuse(send: Any, status: int, reason: str) -> None:
    body = _error_body(reason)
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
