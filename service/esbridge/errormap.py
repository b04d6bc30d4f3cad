"""Every failure talking to Elasticsearch or OpenSearch as one :class:`ESError`.

A client exception (either product's client) or an error object in an answer becomes an
``ESError`` whose kind picks the check's ``error_kind`` and whose message an operator can act
on: the root cause (refused, TLS, no such index, red index, overload, rejected query), never
a credential.
"""

from __future__ import annotations

import asyncio
import re
import sys
from typing import Any

import elasticsearch

from esbridge.errors import RETRY_STATUSES, ESError

__all__ = ["RETRY_STATUSES", "error_from_body", "map_error", "socket_error"]


def error_from_body(
    error: Any, status: int | None, index: str = "", product: str = "Elasticsearch"
) -> ESError:
    """Map an Elasticsearch/OpenSearch error object to an :class:`ESError` quoting its root
    cause (both products use the same error shape)."""
    if not isinstance(error, dict):
        return _not_an_error_object(error, status, product)
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


def _health_of_a_missing_index(body: dict[str, Any], status: int | None) -> bool:
    """``_cluster/health/<index>`` for an index that does not exist: the server waits for it
    up to ``timeout`` and answers 408 with a health document (never an error object)."""
    return status == 408 and body.get("timed_out") is True and "number_of_nodes" in body


def _no_such_health_index() -> ESError:
    return ESError(
        "no_such_index", "no such index: the cluster health names one that does not exist", 408
    )


def _not_an_error_object(text: Any, status: int | None, product: str) -> ESError:
    """An error answer that is not the product's error object: as a rule a proxy or load
    balancer's page in front of it (502/503/504 while a node restarts). Judged by status like
    any other answer, so the same statuses are retried; the page is quoted by its title."""
    page = _page_text(text)
    who = f"HTTP {status} from {product} or a proxy in front of it"
    if status == 401:
        return ESError("auth", f"authentication failed ({who}): check the credentials", status)
    if status == 403:
        return ESError("forbidden", f"forbidden ({who}): {page}", status)
    if status in RETRY_STATUSES:
        return ESError("throttled", f"overloaded or unavailable ({who}): {page}", status)
    if status is not None and 400 <= status < 500:
        return ESError("rejected", f"request rejected ({who}): {page}", status)
    return ESError("internal", f"{product} error ({who}): {page}", status)


def _page_text(text: Any, limit: int = 200) -> str:
    """An HTML page's title, else its text without tags, on one line and cut to ``limit``."""
    raw = str(text)
    title = re.search(r"<title[^>]*>(.*?)</title>", raw, re.I | re.S)
    plain = title.group(1) if title else re.sub(r"<[^>]+>", " ", raw)
    plain = " ".join(plain.split()) or "(empty answer)"
    return plain if len(plain) <= limit else plain[:limit] + "…"


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
    if isinstance(exc, elasticsearch.UnsupportedProductError):  # an ApiError: before it
        return ESError(
            "unsupported",
            "the server at this URL is not Elasticsearch: its answer has no "
            "X-Elastic-Product header (a maintenance page, or the URL points elsewhere)",
        )
    if isinstance(exc, elasticsearch.ApiError):
        body = exc.body if isinstance(exc.body, dict) else {}
        if _health_of_a_missing_index(body, exc.meta.status):
            return _no_such_health_index()
        return error_from_body(body.get("error", exc.message), exc.meta.status, "", product)
    if osp and isinstance(exc, osp.TransportError):
        body = exc.info if isinstance(exc.info, dict) else {}
        status = exc.status_code if isinstance(exc.status_code, int) else None
        if _health_of_a_missing_index(body, status):
            return _no_such_health_index()
        return error_from_body(body.get("error", exc.error), status, "", product)
    return ESError(
        "internal",
        f"unexpected error talking to {product}: {type(exc).__name__}: {_short(exc)}",
    )


def socket_error(
    exc: OSError | asyncio.IncompleteReadError, where: str, product: str = "Elasticsearch"
) -> ESError:
    """A node not reached at all by esbridge's own requests (:mod:`esbridge.lighthttp`),
    worded as :func:`map_error` words the clients' connection errors."""
    import ssl

    if isinstance(exc, ssl.SSLError):
        return ESError("unreachable", f"{product} TLS error: {_os_error_text(exc, where)}")
    if isinstance(exc, asyncio.IncompleteReadError):
        cause = f"the connection closed before the whole answer ({where})"
    else:
        cause = _os_error_text(exc, where) or f"{type(exc).__name__} ({where})"
    return ESError("unreachable", f"{product} unreachable: {cause}")


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
    if not isinstance(best, OSError):
        return None
    return _os_error_text(best, _where(exc, best))


def _os_error_text(error: OSError, where: str) -> str | None:
    """What an operator can act on in an OS or TLS error, with the node (``where``)."""
    import ssl

    if isinstance(error, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {error.verify_message}"
    if isinstance(error, ssl.SSLError):
        return f"TLS handshake failed: {error.reason or error}"
    if isinstance(error, ConnectionRefusedError):
        return f"connection refused ({where})"
    if isinstance(error, ConnectionResetError):
        return "connection reset by peer"
    text = error.strerror or str(error)
    return f"{text} ({where})" if text else None


def _where(exc: BaseException, cause: BaseException) -> str:
    """host:port of the failed connection when the transport says it."""
    for candidate in (cause, exc.__context__, exc):
        key = getattr(candidate, "conn_key", None) or getattr(candidate, "_conn_key", None)
        if key is not None and getattr(key, "host", None):
            return f"{key.host}:{key.port}"
    return "connect"
