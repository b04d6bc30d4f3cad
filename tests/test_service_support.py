"""Shared helpers for the service tests: a counting proxy in front of Elasticsearch.

The proxy sits on loopback between ``esbridge serve`` and Elasticsearch so the tests can
count the requests really sent (``_msearch`` batching, shared cluster fetches, in-flight
bound) and make Elasticsearch misbehave on purpose (throttling answers, failing writes)
without touching the shared cluster. This module holds no tests itself.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from esbridge_dev import httpcalls
from esbridge_dev.service import poll  # noqa: F401  (re-exported for the service tests)

_HOP = {"host", "content-length", "connection", "transfer-encoding", "keep-alive"}
_HOP_OUT = _HOP | {"content-encoding"}


@dataclass(frozen=True)
class Seen:
    """One request that went through the proxy."""

    at: float
    method: str
    path: str
    searches: int  # number of searches in an _msearch body, else 0


class CountingProxy:
    """HTTP proxy to one Elasticsearch node that records every request.

    ``fail`` maps a regular expression (matched against ``METHOD /path``) to an HTTP status;
    matching requests get an Elasticsearch-shaped error instead of being forwarded.
    ``stall`` maps a regular expression to seconds the request is held before forwarding
    (a cluster that stops answering). ``page`` answers matching requests with a body of its
    own (a proxy's error page) and ``rewrite`` changes the real answer (items of an
    ``_msearch``), each for a number of requests.
    """

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.seen: list[Seen] = []
        self.fail: dict[str, int] = {}
        self.stall: dict[str, float] = {}
        self._pages: list[list[Any]] = []  # [pattern, status, content type, body, times left]
        self._rewrites: list[list[Any]] = []  # [pattern, function of the body, times left]
        self.in_flight = 0
        self.max_in_flight: dict[str, int] = {}
        self._lock = threading.Lock()
        self._client = httpcalls.client(timeout=60.0)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def _any(self) -> None:
                proxy._handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> CountingProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def page(
        self, pattern: str, status: int, body: bytes, content_type: str = "text/html", times=1
    ) -> None:
        """Answer the next ``times`` requests matching ``pattern`` with this page, no product
        header: what a proxy or load balancer in front of the cluster sends."""
        with self._lock:
            self._pages.append([pattern, status, content_type, body, times])

    def rewrite(self, pattern: str, change: Callable[[bytes], bytes], times: int = 1) -> None:
        """Pass the next ``times`` real answers to matching requests through ``change``."""
        with self._lock:
            self._rewrites.append([pattern, change, times])

    @staticmethod
    def _take(rules: list[list[Any]], key: str) -> list[Any] | None:
        for rule in rules:
            if rule[-1] > 0 and re.search(rule[0], key):
                rule[-1] -= 1
                return rule
        return None

    # -- what the tests read ---------------------------------------------------------------

    def requests(self, pattern: str, since: float = 0.0) -> list[Seen]:
        """Requests whose ``METHOD /path`` matches ``pattern``, seen at or after ``since``."""
        rx = re.compile(pattern)
        with self._lock:
            return [s for s in self.seen if s.at >= since and rx.search(f"{s.method} {s.path}")]

    def msearches(self, since: float = 0.0) -> list[Seen]:
        return self.requests(r"^POST /(?:[^ ]*/)?_msearch", since)

    # -- the proxying ----------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        length = int(handler.headers.get("content-length") or 0)
        body = handler.rfile.read(length) if length else b""
        path = handler.path.split("?", 1)[0]
        key = f"{handler.command} {path}"
        searches = 0
        if "_msearch" in path:
            searches = sum(1 for line in body.splitlines() if line.strip()) // 2
        with self._lock:
            self.seen.append(Seen(time.time(), handler.command, path, searches))
            self.in_flight += 1
            kind = "msearch" if searches else "other"
            self.max_in_flight[kind] = max(self.max_in_flight.get(kind, 0), self.in_flight)
            status = next((s for rx, s in self.fail.items() if re.search(rx, key)), None)
            hold = next((s for rx, s in self.stall.items() if re.search(rx, key)), 0.0)
            page = self._take(self._pages, key)
            rewrite = self._take(self._rewrites, key)
        try:
            if hold:
                time.sleep(hold)
            if status is not None:
                self._reply_error(handler, status)
                return
            if page is not None:
                _, page_status, content_type, page_body, _ = page
                handler.send_response(page_status)
                handler.send_header("content-type", content_type)
                handler.send_header("content-length", str(len(page_body)))
                handler.end_headers()
                handler.wfile.write(page_body)
                return
            headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP}
            try:
                answer = self._client.request(
                    handler.command,
                    self.upstream + handler.path,
                    content=body,
                    headers=headers,
                )
            except httpx.HTTPError:
                self._reply_error(handler, 502)
                return
            content = rewrite[1](answer.content) if rewrite is not None else answer.content
            handler.send_response(answer.status_code)
            for name, value in answer.headers.items():
                if name.lower() not in _HOP_OUT:
                    handler.send_header(name, value)
            handler.send_header("content-length", str(len(content)))
            handler.end_headers()
            if handler.command != "HEAD":
                handler.wfile.write(content)
        finally:
            with self._lock:
                self.in_flight -= 1

    @staticmethod
    def _reply_error(handler: BaseHTTPRequestHandler, status: int) -> None:
        kind = "es_rejected_execution_exception" if status in (429, 503) else "test_failure"
        error = {"type": kind, "reason": f"injected by the test proxy (HTTP {status})"}
        data = json.dumps({"error": {"root_cause": [error], **error}, "status": status}).encode()
        handler.send_response(status)
        handler.send_header("content-type", "application/json")
        handler.send_header("x-elastic-product", "Elasticsearch")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def cycles(seen: list[Seen], gap: float = 0.5) -> list[list[Seen]]:
    """Split requests into bursts separated by at least ``gap`` seconds (one per cycle)."""
    bursts: list[list[Seen]] = []
    for item in sorted(seen, key=lambda s: s.at):
        if bursts and item.at - bursts[-1][-1].at < gap:
            bursts[-1].append(item)
        else:
            bursts.append([item])
    return bursts


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def metric_samples(text: str, name: str) -> dict[str, float]:
    """``{label text: value}`` of one metric in Prometheus text output."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            labels, _, value = line[len(name) :].rpartition(" ")
            out[labels.strip()] = float(value)
    return out


def json_lines(log: str) -> Iterator[dict[str, Any]]:
    for line in log.splitlines():
        if line.startswith("{"):
            try:
                yield json.loads(line)
            except ValueError:
                continue


def delete_index(es_url: str, index: str) -> None:
    httpcalls.delete(f"{es_url}/{index}", params={"ignore_unavailable": "true"}, timeout=30)
