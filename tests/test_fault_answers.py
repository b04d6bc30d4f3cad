"""Answers a healthy cluster never sends, from a real one behind a proxy.

A node that cannot be reached among several, a proxy's error page, searches rejected inside
a 200 ``_msearch`` (the usual shape of a busy cluster), an answer without hits, a server
that stops saying it is Elasticsearch. A check goes UNKNOWN only when it must, with a reason
that says what happened, and what is worth retrying is retried (bounded).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from typing import Any

import pytest

from conftest import BACKEND_NAME
from esbridge.config import ConnectionConfig
from esbridge.esclient import Connections
from esbridge.loader import load_text
from esbridge.nagios import render
from esbridge.result import Result, State
from esbridge.runner import Runner
from kinds_support import checks_yaml
from test_service_support import CountingProxy

pytestmark = pytest.mark.es

NGINX_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    b"</body>\r\n</html>\r\n"
)


@pytest.fixture
def three_docs(make_index: Callable[..., str], seed: Callable[..., Any]) -> str:
    index = make_index("faults")
    seed(index, [{"ago": "1m", "status": 500}] * 3)
    return index


def three_checks(index: str) -> str:
    return checks_yaml(
        index, [{"name": f"c{i}", "kind": "count", "critical": 100 + i} for i in range(3)]
    )


class Cycles:
    """Cycles of the runner over one set of connections, as the service runs them."""

    def __init__(self, urls: list[str], text: str, **settings: Any) -> None:
        config = ConnectionConfig(urls=tuple(urls), merge_searches=False, **settings)
        self.connections = Connections({"default": config})
        self.checks = list(load_text(text))
        self.connection = self.connections.get("default")

    async def run(self) -> dict[str, Result]:
        results = await Runner(self.connections).run(self.checks)
        return {r.check: r for r in results}

    async def close(self) -> None:
        await self.connections.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _item(position: int, replacement: dict[str, Any]) -> Callable[[bytes], bytes]:
    def change(body: bytes) -> bytes:
        answer = json.loads(body)
        answer["responses"][position] = replacement
        return json.dumps(answer).encode()

    return change


REJECTED = {
    "error": {
        "root_cause": [{"type": "es_rejected_execution_exception", "reason": "queue full"}],
        "type": "es_rejected_execution_exception",
        "reason": "rejected execution of TimedRunnable: queue capacity = 1000",
    },
    "status": 429,
}


async def test_a_node_that_cannot_be_reached_is_passed_over_for_another(
    es_url: str, three_docs: str
) -> None:
    """One node of two down (a rolling restart): every cycle is answered by the other, none
    turns UNKNOWN (each used to, whenever the client tried the dead node again)."""
    import asyncio

    cycles = Cycles([f"http://127.0.0.1:{_closed_port()}", es_url], three_checks(three_docs))
    try:
        for _ in range(8):  # across the client's dead-node timeouts (1 s, then 2 s)
            results = await cycles.run()
            assert {r.state for r in results.values()} == {State.OK}, results
            assert cycles.connection.up is True
            await asyncio.sleep(0.5)
    finally:
        await cycles.close()


async def test_a_proxy_error_page_is_retried_then_named(es_url: str, three_docs: str) -> None:
    with CountingProxy(es_url) as proxy:
        cycles = Cycles([proxy.url], three_checks(three_docs), max_retries=2)
        try:
            await cycles.run()  # the product is known
            proxy.page(r"_msearch", 502, NGINX_502)
            results = await cycles.run()
            assert {r.state for r in results.values()} == {State.OK}, results
            assert cycles.connection.stats.retries == 1  # a 502 page is retried like a 502
            proxy.page(r"_msearch", 502, NGINX_502, times=3)
            results = await cycles.run()
            assert cycles.connection.stats.retries == 3
            for result in results.values():
                assert result.state is State.UNKNOWN and result.error_kind == "throttled"
                assert (
                    f"(HTTP 502 from {cycles.connection.product} or a proxy in front of it): "
                    "502 Bad Gateway"
                ) in result.summary, result.summary
                assert "<" not in result.summary
        finally:
            await cycles.close()


async def test_searches_rejected_inside_an_answer_are_sent_again(
    es_url: str, three_docs: str
) -> None:
    """A busy cluster rejects single searches inside a 200 ``_msearch``: only those are sent
    again, after a backoff, as often as a whole request would be."""
    with CountingProxy(es_url) as proxy:
        cycles = Cycles([proxy.url], three_checks(three_docs), max_retries=2)
        try:
            await cycles.run()
            before = len(proxy.msearches())
            proxy.rewrite(r"_msearch", _item(1, REJECTED))
            results = await cycles.run()
            assert {r.state for r in results.values()} == {State.OK}, results
            assert [s.searches for s in proxy.msearches()[before:]] == [3, 1]
            assert cycles.connection.stats.retries == 1

            before = len(proxy.msearches())
            proxy.rewrite(r"_msearch", _item(0, REJECTED), times=3)  # every try of c1
            results = await cycles.run()
            assert [s.searches for s in proxy.msearches()[before:]] == [3, 1, 1]
            assert results["c0"].state is State.UNKNOWN
            assert results["c0"].error_kind == "throttled"
            assert "queue full" in results["c0"].summary
            assert results["c1"].state is State.OK and results["c2"].state is State.OK
        finally:
            await cycles.close()


async def test_a_search_answer_without_hits_is_never_read_as_zero(
    es_url: str, three_docs: str
) -> None:
    with CountingProxy(es_url) as proxy:
        cycles = Cycles([proxy.url], three_checks(three_docs))
        try:
            proxy.rewrite(r"_msearch", _item(2, {"status": 500, "took": 1}))
            results = await cycles.run()
            assert results["c2"].state is State.UNKNOWN and results["c2"].error_kind == "internal"
            assert "answered a search without its hits (status 500)" in results["c2"].summary
            assert results["c0"].value == 3 and results["c1"].value == 3
        finally:
            await cycles.close()


async def test_a_server_that_is_not_the_product_or_stops_answering_like_it(
    es_url: str, three_docs: str
) -> None:
    """A 200 answer that is not the product's (a maintenance page, the URL pointing
    elsewhere): UNKNOWN with the reason, never a count. Elasticsearch's client checks the
    product header until one answer had it; after that, and for OpenSearch, the answer's
    shape is what gives it away."""
    maintenance = b'{"status": "maintenance"}'
    with CountingProxy(es_url) as proxy:
        cycles = Cycles([proxy.url], three_checks(three_docs))
        try:
            proxy.page(r"_msearch", 200, maintenance, "application/json")
            if BACKEND_NAME == "Elasticsearch":
                # The time-field lookup goes out beside the first search: it gets the page
                # too, or its real answer, when it comes first (a loaded machine), verifies
                # the product before the search's answer is read.
                proxy.page(r"_field_caps", 200, maintenance, "application/json")
            first = await cycles.run()  # the search client's first answers
            for result in first.values():
                assert result.state is State.UNKNOWN, result
                if BACKEND_NAME == "Elasticsearch":
                    assert result.error_kind == "unsupported"
                    assert "no X-Elastic-Product header" in result.summary
                else:
                    assert result.error_kind == "internal"
                    assert "_msearch answered no items for 3" in result.summary
            assert {r.state for r in (await cycles.run()).values()} == {State.OK}
            proxy.page(r"_msearch", 200, maintenance, "application/json")
            later = await cycles.run()
            for result in later.values():
                assert (result.state, result.error_kind) == (State.UNKNOWN, "internal")
                assert "_msearch answered no items for 3" in result.summary
        finally:
            await cycles.close()


async def test_a_cluster_answer_that_is_not_the_apis_reads_unknown_never_a_default(
    es_url: str,
) -> None:
    """A 200 ``{}`` where a cluster API's answer should be (a proxy, another server; the
    OpenSearch client checks no product header) read "0 unassigned shards", OK, and "no
    elected master", CRITICAL: values made of defaults. Each is UNKNOWN naming the answer."""
    text = (
        "checks:\n"
        "  - {name: health, kind: cluster_health}\n"
        "  - {name: unassigned, kind: unassigned_shards, critical: 100}\n"
        "  - {name: nodes, kind: nodes, expected_nodes: 1}\n"
        "  - {name: heap, kind: jvm_heap}\n"
        f"  - {{name: master, kind: master, node_urls: ['{es_url}']}}\n"
    )
    with CountingProxy(es_url) as proxy:
        cycles = Cycles([proxy.url], text.replace(es_url, proxy.url))
        try:
            assert {r.state for r in (await cycles.run()).values()} <= {
                State.OK,
                State.WARNING,  # a one-node test cluster may be yellow
            }
            proxy.rewrite(r"_cluster/health", lambda _body: b"{}", times=5)
            proxy.rewrite(r"_nodes/stats", lambda _body: b"{}", times=5)
            proxy.rewrite(r"_cat/(master|cluster_manager)", lambda _body: b"{}", times=5)
            results = await cycles.run()
            for name in ("health", "unassigned", "nodes", "heap"):
                result = results[name]
                assert (result.state, result.error_kind) == (State.UNKNOWN, "internal"), result
                assert result.summary.startswith("unexpected answer from the cluster API (no ")
            master = results["master"]
            assert master.state is State.UNKNOWN, master.summary
            assert "no elected master" not in master.summary
            assert "an unexpected answer to _cat/master" in render(master)
        finally:
            await cycles.close()
