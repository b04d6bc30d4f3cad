"""The passive sender's delivery rules, over real HTTP: retries, backoff, change mode,
concurrency and the queue bound.

The target is esbridge's own Icinga 2 sender (``Icinga2Target``) talking to a local HTTP
server that plays Icinga's ``process-check-result`` endpoint and can be told to fail, hang
or record arrival times. No search server is involved: these rules act on submissions only
(the real Icinga 2 and Nagios are in test_passive_icinga.py / test_passive_nagios.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from esbridge.config import load_settings
from esbridge.passive import Icinga2Target, Submission, make_target
from esbridge.result import State
from esbridge_dev.service import free_port

pytestmark = pytest.mark.version_independent


class FakeIcinga:
    """Answers ``POST /v1/actions/process-check-result``: 500 while ``failing``, else 200.

    Records (monotonic arrival time, service, exit status) of every request and the highest
    number of requests in flight at once (in all and for one service); ``hold`` (an Event)
    keeps answers back until set; ``script`` lists (delay, fail) for the next requests, one
    each, before ``delay``/``failing`` apply again.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.failing = False
        self.delay = 0.0
        self.hold: threading.Event | None = None
        self.script: list[tuple[float, bool]] = []
        self.requests: list[tuple[float, str, int, bool]] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.per_service: dict[str, int] = {}
        self.max_per_service = 0
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                service = body["service"]
                with fake.lock:
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                    fake.per_service[service] = fake.per_service.get(service, 0) + 1
                    fake.max_per_service = max(fake.max_per_service, fake.per_service[service])
                    delay, failing = fake.script.pop(0) if fake.script else (0.0, fake.failing)
                    fake.requests.append((time.monotonic(), service, body["exit_status"], failing))
                if fake.hold is not None:
                    fake.hold.wait(10)
                if delay or fake.delay:
                    time.sleep(delay or fake.delay)
                code, payload = (500, b'{"error":500}') if failing else (200, b'{"results":[]}')
                with fake.lock:
                    fake.in_flight -= 1
                    fake.per_service[service] -= 1
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        ThreadingHTTPServer.allow_reuse_address = True
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def services(self) -> list[str]:
        with self.lock:
            return [r[1] for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake() -> Iterator[FakeIcinga]:
    server = FakeIcinga()
    yield server
    server.close()


def target(tmp_path: Path, fake: FakeIcinga, **extra: str) -> Icinga2Target:
    lines = "".join(f"    {k}: {v}\n" for k, v in extra.items())
    path = tmp_path / "esbridge.yaml"
    path.write_text(
        "passive:\n  - name: icinga\n    type: icinga2\n"
        f"    url: http://127.0.0.1:{fake.port}\n    username: u\n    password: p\n{lines}"
    )
    made = make_target(load_settings(path).passive[0])
    assert isinstance(made, Icinga2Target)
    return made


def sub(service: str, state: State = State.OK) -> Submission:
    return Submission("h", service, service, state, "out", [], "", 0.0, 0.0, 60.0)


async def until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_retries_run_out_then_the_submission_is_dropped(tmp_path, fake):
    """retries: 2 → exactly 3 attempts, then dropped (counted), nothing left queued."""
    fake.failing = True
    t = target(tmp_path, fake, retries="2", backoff="20ms", backoff_max="40ms", concurrency="1")
    t.start()
    try:
        t.offer(sub("a", State.CRITICAL), now=time.time())
        await until(lambda: t.stats.dropped == 1)
        await asyncio.sleep(0.3)  # several backoff periods: no fourth attempt comes
        assert fake.services() == ["h!a"] * 3
        assert len(t.queue) == 0 and t.stats.sent == 0
        assert t.stats.failed == {"http_5xx": 3} and t.stats.up is False
        assert ("h", "a") not in t.delivered
    finally:
        await t.close()


async def test_backoff_doubles_up_to_backoff_max(tmp_path, fake):
    """The waits after failed attempts grow 100, 200, 400 ms, then stay at backoff_max
    (400 ms); the gaps between attempts are never shorter."""
    fake.failing = True
    t = target(tmp_path, fake, retries="7", backoff="100ms", backoff_max="400ms", concurrency="1")
    # each failed round's wait, as the target set it: its clock was read between these two
    # readings, so the wait lies between what is left after the round and what was before
    scheduled: list[tuple[float, float]] = []
    settle = t._settle

    def settle_and_note(*args: Any) -> None:
        before = time.monotonic()
        settle(*args)
        after = time.monotonic()
        scheduled.append((t._backoff_until - after, t._backoff_until - before))

    t._settle = settle_and_note  # type: ignore[method-assign]
    t.start()
    try:
        t.offer(sub("a"), now=time.time())
        await until(lambda: t.stats.dropped == 1, timeout=20)
    finally:
        await t.close()
    times = [r[0] for r in fake.requests]
    assert len(times) == 8
    gaps = [b - a for a, b in itertools.pairwise(times)]
    waits = [0.1, 0.2, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]  # uncapped: 0.8, 1.6, 3.2, 6.4 s on
    assert len(scheduled) == len(waits), scheduled
    for (least, most), want in zip(scheduled, waits, strict=True):
        assert least - 1e-6 <= want <= most + 1e-6, scheduled
    # A sleep never ends early: lower bounds hold under any load (a busy machine only
    # lengthens a gap, so the doubling is read from the waits set, not from the gaps).
    for gap, want in zip(gaps, waits[:-1], strict=True):
        assert gap >= want - 0.01, gaps
    assert max(gaps[3:]) < 3.0, gaps


async def test_change_mode_resends_after_a_dropped_submission(tmp_path, fake):
    """when: change: an unchanged state is not sent again, unless the last one was dropped."""
    t = target(tmp_path, fake, when="change", heartbeat="1h", retries="0", backoff="20ms",
               backoff_max="20ms", concurrency="1")  # fmt: skip
    t.start()
    try:
        t.offer(sub("a", State.OK), now=time.time())
        await until(lambda: t.stats.sent == 1)
        t.offer(sub("a", State.OK), now=time.time())  # the core knows: nothing to send
        await asyncio.sleep(0.2)
        assert fake.services() == ["h!a"] and len(t.queue) == 0

        fake.failing = True
        t.offer(sub("a", State.CRITICAL), now=time.time())  # a change: sent, fails, dropped
        await until(lambda: t.stats.dropped == 1)
        fake.failing = False
        await asyncio.sleep(0.05)  # the backoff after the failure is over
        # Back to OK, the state last delivered: only because the CRITICAL was lost is it
        # sent again (the core may hold either).
        t.offer(sub("a", State.OK), now=time.time())
        await until(lambda: t.stats.sent == 2)
        assert [(r[2], r[3]) for r in fake.requests] == [(0, False), (2, True), (0, False)]
        assert t.delivered[("h", "a")][0] is State.OK
    finally:
        await t.close()


async def test_concurrency_sends_that_many_at_once(tmp_path, fake):
    """concurrency: 3 → three requests in flight at once, never more."""
    fake.delay = 1.0
    t = target(tmp_path, fake, concurrency="3")
    t.start()
    try:
        for name in "abcdef":
            t.offer(sub(name), now=time.time())
        await until(lambda: t.stats.sent == 6)
    finally:
        await t.close()
    assert sorted(fake.services()) == [f"h!{n}" for n in "abcdef"]
    assert fake.max_in_flight == 3


async def test_concurrency_one_sends_one_at_a_time(tmp_path, fake):
    fake.delay = 0.1
    t = target(tmp_path, fake, concurrency="1")
    t.start()
    try:
        for name in "abcd":
            t.offer(sub(name), now=time.time())
        await until(lambda: t.stats.sent == 4)
    finally:
        await t.close()
    assert fake.services() == [f"h!{n}" for n in "abcd"]  # in order, one by one
    assert fake.max_in_flight == 1


async def test_queue_size_keeps_the_newest_and_counts_the_rest(tmp_path, fake):
    """queue_size: 2 while the one worker is busy: the oldest queued go, the newest are sent."""
    fake.hold = threading.Event()
    t = target(tmp_path, fake, queue_size="2", concurrency="1")
    t.start()
    try:
        t.offer(sub("first"), now=time.time())
        await until(lambda: fake.services() == ["h!first"])  # in flight, held
        for name in ("b", "c", "d", "e"):
            t.offer(sub(name), now=time.time())
        assert len(t.queue) == 2 and t.stats.dropped == 2
        assert t.status()["queue_length"] == 2
        fake.hold.set()
        await until(lambda: t.stats.sent == 3)
        await asyncio.sleep(0.2)
    finally:
        fake.hold.set()
        await t.close()
    assert fake.services() == ["h!first", "h!d", "h!e"]


async def test_backoff_holds_whatever_the_concurrency(tmp_path, fake):
    """concurrency 4 (the default): idle workers do not skip the wait. A failed attempt's
    retry wakes them at once; they must still wait 200, 400, 800 ms between attempts."""
    fake.failing = True
    t = target(tmp_path, fake, retries="3", backoff="200ms", backoff_max="10s")
    assert t.config.concurrency == 4
    t.start()
    try:
        await asyncio.sleep(0.1)  # all four workers idle, waiting for work
        t.offer(sub("a", State.CRITICAL), now=time.time())
        await until(lambda: t.stats.dropped == 1, timeout=20)
    finally:
        await t.close()
    times = [r[0] for r in fake.requests]
    assert len(times) == 4, times
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, want in zip(gaps, [0.2, 0.4, 0.8], strict=True):
        assert gap >= want - 0.01, gaps


async def test_one_backoff_step_per_failed_round(tmp_path, fake):
    """Four services failing at once (concurrency 4) are one failed round: the next round
    waits one backoff (300 ms), not four doubled steps (2.4 s)."""
    fake.failing = True
    t = target(tmp_path, fake, retries="1", backoff="300ms", backoff_max="10s")
    t.start()
    try:
        for name in "abcd":
            t.offer(sub(name), now=time.time())
        await until(lambda: t.stats.dropped == 4, timeout=20)
    finally:
        await t.close()
    times = sorted(r[0] for r in fake.requests)
    assert len(times) == 8, times
    first, second = times[:4], times[4:]
    # The backoff starts at the round's first failure, after its first request went out (the
    # last of the round may leave later on a loaded machine, and fail into the same wait).
    gap = min(second) - min(first)
    assert 0.29 <= gap < 1.5, (first, second)


async def test_a_retried_older_result_never_follows_a_newer_one(tmp_path, fake):
    """CRITICAL is in flight (slow, then 500) when OK is evaluated: OK must not overtake it
    and then be overwritten by the CRITICAL's retry. The newer result waits for the service
    to be free, the retry gives way to it, and Icinga's last word is OK."""
    fake.script = [(0.5, True)]  # the first request hangs, then fails
    t = target(tmp_path, fake, retries="3", backoff="50ms", backoff_max="50ms")
    t.start()
    try:
        t.offer(sub("a", State.CRITICAL), now=time.time())
        await until(lambda: len(fake.requests) == 1)
        t.offer(sub("a", State.OK), now=time.time())
        await until(lambda: t.stats.sent == 1)
        await asyncio.sleep(0.5)  # several backoffs: no retry of the CRITICAL comes
    finally:
        await t.close()
    assert [(r[1], r[2], r[3]) for r in fake.requests] == [("h!a", 2, True), ("h!a", 0, False)]
    assert fake.max_per_service == 1
    assert t.stats.dropped == 1 and len(t.queue) == 0 and not t.in_flight
