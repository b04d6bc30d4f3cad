"""httpx calls that share one TLS context: the dev tooling's many short HTTP requests.

httpx builds a TLS context for every client it makes, loading the whole CA bundle (~30 ms of
CPU here), even for a client that only ever speaks plain HTTP on loopback. The tests poll
``esbridge serve`` and the search server thousands of times a run, each call a new client:
that was over half of a test process's CPU (py-spy of a CI run). These helpers are
``httpx.get`` and friends with ``verify`` defaulting to one context built once, which
verifies exactly as httpx's default does; each call still opens its own connection.
"""

from __future__ import annotations

import functools
import ssl
from typing import Any

import httpx


@functools.cache
def default_tls() -> ssl.SSLContext:
    """httpx's default verification (its CA bundle, ``SSL_CERT_FILE``), built once."""
    return httpx.create_ssl_context()


def _shared(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with the shared context, unless the call sets its own TLS (``verify``, a
    client certificate that would be loaded into the context, or no environment)."""
    if not {"verify", "cert", "trust_env"} & kwargs.keys():
        kwargs["verify"] = default_tls()
    return kwargs


def client(**kwargs: Any) -> httpx.Client:
    return httpx.Client(**_shared(kwargs))


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, url, **_shared(kwargs))


def get(url: str, **kwargs: Any) -> httpx.Response:
    return request("GET", url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    return request("POST", url, **kwargs)


def put(url: str, **kwargs: Any) -> httpx.Response:
    return request("PUT", url, **kwargs)


def delete(url: str, **kwargs: Any) -> httpx.Response:
    return request("DELETE", url, **kwargs)
