"""Real-Elasticsearch fixtures shared by the whole suite.

- ``es_url``: ``$ESBRIDGE_TEST_ES_URL`` when set, else one Elasticsearch per session
  (``$ESBRIDGE_TEST_ES_VERSION``, default 8.19.21) started by esbridge_dev.elasticsearch.
  ``ESBRIDGE_TEST_BACKEND=opensearch`` runs the same suite on OpenSearch instead
  (``$ESBRIDGE_TEST_OS_VERSION``, default 2.19.6; ``make test-opensearch``); tests that need
  Elasticsearch's security features are marked ``es_security`` and deselected there.
- ``new_server(**kwargs)``: a not yet started server of the backend and version of the run
  (for tests that kill, restart or add a second cluster); ``BACKEND_NAME`` names it.
- ``es_version``: the version string the server reports; ``es`` / ``es_client``: sync client.
- ``make_index(prefix="t", mappings=None) -> name``: unique index, deleted after the test.
- ``seed(index, docs, now=None)``: bulk-load dicts (``"ago": "3m"`` → ``@timestamp``), refreshed.

Tests using ``es_url`` are marked ``es`` automatically (``make test-compat`` reruns them on 9.x).
``spare_es``: a second plain cluster for the session (fault tests kill and restart it).
Tests using ``secured`` (a TLS + auth cluster, ``secure_es.py``, started once per session at
the run's version) are marked ``es``, ``es_security`` (backends without a security plugin
deselect it) and ``secured_cluster`` (CI runs them in a phase of their own, with no plain server).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from esbridge_dev import httpcalls

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _require import require
from esbridge_dev import elasticsearch as esdev
from esbridge_dev import service as esbridge_service
from esbridge_dev.opensearch import OPENSEARCH
from esbridge_dev.seeding import seed as _seed

# ``esbridge serve`` as forks of one process that imported the service once (a second of CPU
# less per start; esbridge_dev/forkserver.py). ESBRIDGE_TEST_FORK_SERVER=0: the interpreter.
esbridge_service.FORK_SERVER = os.environ.get("ESBRIDGE_TEST_FORK_SERVER", "1") != "0"


class _StartCounter(logging.Handler):
    """Collects the harness's "Elasticsearch … ready at …" lines (starts and restarts in this
    pytest process; a subprocess's own, like the bench's, are not seen)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " ready at " in message:
            self.lines.append(message)


_STARTS = _StartCounter()


def pytest_configure(config: pytest.Config) -> None:
    harness_log = logging.getLogger(esdev.__name__)
    harness_log.addHandler(_STARTS)
    if not harness_log.isEnabledFor(logging.INFO):
        harness_log.setLevel(logging.INFO)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """How many search-server starts the session paid for: the costliest thing in a run."""
    if _STARTS.lines:
        terminalreporter.write_line(
            f"Elasticsearch starts in this session (restarts included): {len(_STARTS.lines)}"
        )
        for line in _STARTS.lines:
            terminalreporter.write_line(f"  {line}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Marks by fixture; and ``$ESBRIDGE_TEST_HEAVY_ORDER=first|last`` moves the ``heavy``
    tests to the start or the end of the run, so side-by-side phases reach them at different
    times instead of queueing for the heavy lock together (scripts/test-all.sh)."""
    order = os.environ.get("ESBRIDGE_TEST_HEAVY_ORDER", "")
    if order in ("first", "last"):
        heavy = [i for i in items if i.get_closest_marker("heavy") is not None]
        rest = [i for i in items if i.get_closest_marker("heavy") is None]
        items[:] = heavy + rest if order == "first" else rest + heavy
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        if "es_url" in fixtures and item.get_closest_marker("es") is None:
            item.add_marker(pytest.mark.es)
        # The secured cluster is Elasticsearch with x-pack security: not on OpenSearch. Its
        # tests are a CI phase of their own (`secured_cluster`, without the plain server).
        if "secured" in fixtures:
            item.add_marker(pytest.mark.secured_cluster)
            if item.get_closest_marker("es_security") is None:
                item.add_marker(pytest.mark.es_security)


HEAVY_LOCK = os.environ.get("ESBRIDGE_TEST_HEAVY_LOCK")
HEAVY_WAIT = 900.0  # s: the longest a heavy test waits for another phase's to end
HEAVY_SLOTS = 2  # lock files; a heavy test takes ``cores`` of them (1 or 2)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Tests marked ``heavy`` (several replicas for minutes, the bench) must not starve each
    other's timing. When phases run side by side (scripts/test-all.sh sets
    ``$ESBRIDGE_TEST_HEAVY_LOCK``) they take slots: two lock files, one per core; a test
    marked ``heavy(cores=2)`` (the bench, which loads both cores; the three-replica scenario,
    whose timing bounds allow for one such scenario at a time) takes both, in order, any
    other one of them. The wait is bounded, and shown in the test's report."""
    marker = item.get_closest_marker("heavy")
    if not HEAVY_LOCK or marker is None:
        return (yield)
    cores = int(marker.kwargs.get("cores", 1))
    assert 1 <= cores <= HEAVY_SLOTS, f"heavy(cores={cores}): 1 to {HEAVY_SLOTS}"
    with contextlib.ExitStack() as stack:
        slots = [stack.enter_context(open(f"{HEAVY_LOCK}.{n}", "a")) for n in range(HEAVY_SLOTS)]
        held: list[Any] = []
        started = time.monotonic()
        while len(held) < cores:
            for slot in slots:
                if slot in held:
                    continue
                try:
                    fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held.append(slot)
                    if len(held) == cores:
                        break
                except BlockingIOError:
                    if cores > 1:  # in order: two tests that take several never hold one each
                        break
            if len(held) == cores or time.monotonic() - started > HEAVY_WAIT:
                break  # past the bound, run anyway: a stuck phase must not stop this one
            time.sleep(1)
        waited = time.monotonic() - started
        item.add_report_section(
            "call", "heavy lock", f"waited {waited:.0f} s for {cores} of {HEAVY_SLOTS} slots"
        )
        try:
            return (yield)
        finally:
            for slot in held:
                fcntl.flock(slot, fcntl.LOCK_UN)


BACKEND = os.environ.get("ESBRIDGE_TEST_BACKEND", "elasticsearch").strip().lower()
if BACKEND not in ("elasticsearch", "opensearch"):
    raise pytest.UsageError(f"ESBRIDGE_TEST_BACKEND={BACKEND!r}: use elasticsearch or opensearch")
DIST = OPENSEARCH if BACKEND == "opensearch" else esdev.ELASTICSEARCH
BACKEND_NAME = DIST.product
VERSION_VAR = "ESBRIDGE_TEST_OS_VERSION" if BACKEND == "opensearch" else "ESBRIDGE_TEST_ES_VERSION"


def expected_es_version() -> str | None:
    """The version the run asks for (None when reusing an external URL without a version)."""
    v = os.environ.get(VERSION_VAR)
    if v:
        return esdev.resolve_version(v, DIST)
    return None if os.environ.get("ESBRIDGE_TEST_ES_URL") else DIST.default


def new_server(**kwargs: Any) -> esdev.ElasticsearchServer:
    """A server of this run's backend and version (not started). The start bound is generous
    (``$ESBRIDGE_TEST_START_TIMEOUT``, default 600 s): OpenSearch 3.x on a busy 2-core
    machine takes minutes; a quiet one starts it in under a minute."""
    kwargs.setdefault("start_timeout", float(os.environ.get("ESBRIDGE_TEST_START_TIMEOUT", "600")))
    kwargs["config_files"] = {**esdev.QUICK_JIT, **kwargs.get("config_files", {})}
    return esdev.ElasticsearchServer(
        version=kwargs.pop("version", None) or expected_es_version(), dist=DIST, **kwargs
    )


def server_product(url: str) -> str:
    """``elasticsearch`` or ``opensearch``, the way esbridge tells them apart."""
    r = httpcalls.get(url, timeout=10)
    if r.headers.get("x-elastic-product") == "Elasticsearch":
        return "elasticsearch"
    return str(r.json().get("version", {}).get("distribution", "?"))


def server_version(url: str) -> str:
    # integ-test-zip has no rest-root module: GET / is 405 there, so ask the nodes API.
    r = httpcalls.get(f"{url}/_nodes/_local/version", timeout=10)
    r.raise_for_status()
    return next(iter(r.json()["nodes"].values()))["version"]


@pytest.fixture(scope="session")
def es_url() -> Iterator[str]:
    external = os.environ.get("ESBRIDGE_TEST_ES_URL")
    if external:
        url = external.rstrip("/")
        try:
            version = server_version(url)
        except (httpx.HTTPError, ValueError, KeyError) as e:
            require(False, f"ESBRIDGE_TEST_ES_URL={url} is not reachable: {e!r}")
        product = server_product(url)
        require(
            product == BACKEND,
            f"ESBRIDGE_TEST_ES_URL={url} is {product}, but ESBRIDGE_TEST_BACKEND asks {BACKEND}",
        )
        want = expected_es_version()
        require(
            want is None or version.split(".")[0] == want.split(".")[0],
            f"ESBRIDGE_TEST_ES_URL={url} runs {version}, but {VERSION_VAR} asks {want}",
        )
        yield url
        return
    server = new_server()
    try:
        server.start()
    except Exception as e:
        server.stop()
        require(False, f"could not start {BACKEND_NAME} {server.version}: {e}")
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def spare_es() -> Iterator[esdev.ElasticsearchServer]:
    """A second plain single-node cluster at the run's version, started once per session by
    the first test that asks: ours to kill and restart (test_faults; it must be left running)
    or to disagree with the first (split brain in test_kinds_cluster)."""
    server = new_server()
    try:
        server.start()
    except Exception as e:
        server.stop()
        require(False, f"could not start a second {BACKEND_NAME} {server.version}: {e}")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def es_version(es_url: str) -> str:
    return server_version(es_url)


@pytest.fixture(scope="session")
def backend_name() -> str:
    """ "Elasticsearch" or "OpenSearch": the product name esbridge's messages use."""
    return BACKEND_NAME


@pytest.fixture(scope="session")
def es(es_url: str) -> Iterator[Any]:
    """The backend's official sync client."""
    if BACKEND == "opensearch":
        from opensearchpy import OpenSearch

        client: Any = OpenSearch(es_url, timeout=30)
    else:
        from elasticsearch import Elasticsearch

        client = Elasticsearch(es_url, request_timeout=30)
    yield client
    client.close()


@pytest.fixture(scope="session")
def es_client(es: Any) -> Any:
    return es


@contextlib.contextmanager
def index_maker(es_url: str) -> Iterator[Callable[..., str]]:
    """What ``make_index`` yields: indices made inside are deleted on leaving."""
    created: list[str] = []

    def make(prefix: str = "t", mappings: dict | None = None, settings: dict | None = None) -> str:
        name = f"{prefix.lower()}-{uuid.uuid4().hex[:8]}"
        body: dict[str, Any] = {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, **(settings or {})}
        }
        if mappings:
            body["mappings"] = mappings
        r = httpcalls.put(f"{es_url}/{name}", json=body, timeout=60)
        assert r.status_code == 200, f"create index {name}: {r.status_code} {r.text}"
        created.append(name)
        return name

    try:
        yield make
    finally:
        for name in created:
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)


@pytest.fixture
def make_index(es_url: str) -> Iterator[Callable[..., str]]:
    with index_maker(es_url) as make:
        yield make


@pytest.fixture
def seed(es_url: str) -> Callable[..., list[dict]]:
    def do(index: str, docs: Any, now: Any = None) -> list[dict]:
        return _seed(es_url, index, docs, now=now)

    return do


@pytest.fixture(scope="session")
def secured(request: pytest.FixtureRequest) -> Any:
    """The session's secured cluster (``secure_es.shared_secure_es``) at the run's version:
    the one it asks for, else the reused server's (only then is that server asked)."""
    from secure_es import shared_secure_es

    version = expected_es_version() or request.getfixturevalue("es_version")
    try:
        return shared_secure_es(request.config, version)
    except Exception as e:  # missing Java, keystore tool failing: fails under CI
        require(False, f"could not start a secured Elasticsearch {version}: {e}")
        raise


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium driven through Playwright, one per test module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as e:  # pragma: no cover - depends on the venv
        require(False, f"playwright (Python) is not installed: {e}")
    from esbridge_dev.chromium import CHROMIUM, CHROMIUM_ARGS

    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as p:
        try:
            b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        except Exception as e:  # the driver or the browser cannot start here
            require(False, f"cannot start {CHROMIUM} through Playwright: {e}")
        yield b
        b.close()
