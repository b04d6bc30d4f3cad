"""Passive delivery: push every result to Icinga 2 (REST API) or Nagios (external command file).

With passive delivery the monitoring core runs no plugin at all: esbridge already holds each
result the moment it is evaluated, so it submits it itself. Design rules:

* **Evaluation never waits for a target.** :meth:`PassiveHub.on_result` (a
  ``Service.result_listeners`` entry, called synchronously after a result is recorded) only
  renders the submission and puts it in the target's queue; worker tasks deliver.
* **Memory is bounded by the number of services.** A target's queue holds at most one
  submission per (host, service): a newer result replaces the queued one (counted as
  dropped), so a target that is down for hours holds one entry per service, not hours of
  results. ``queue_size`` bounds it further (the oldest entry goes first).
* **Failures are retried with exponential backoff** (``backoff`` … ``backoff_max``), at most
  ``retries`` times per submission; a newer result for the same service replaces a failing
  one. With ``when: change`` the "last delivered" state only moves on success, so a change
  that could not be delivered is sent again with the next evaluation.
* **Staleness is the core's job when esbridge goes quiet**: Icinga 2 submissions carry a
  ``ttl`` (``ttl_factor * period + timeouts``) after which Icinga runs the service's own
  check command (the ``passive`` dummy: UNKNOWN); Nagios uses ``check_freshness`` with a
  ``freshness_threshold`` computed the same way (deploy/nagios/passive.cfg).

Counters are exported by :meth:`PassiveHub.metrics` (``esbridge_passive_*``) and the state of
each target by :meth:`PassiveHub.status` (``/readyz`` detail, ``GET /api/v1/status``).
A failing target does **not** make esbridge unready: its HTTP outputs still work, and taking
esbridge out of a load balancer would not bring Icinga back (docs/passive.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fnmatch
import logging
import os
import select
import socket
import ssl
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from esbridge.config import ConfigError, Icinga2PassiveConfig, NagiosPassiveConfig
from esbridge.nagios import MAX_OUTPUT_BYTES, format_perfdata, render
from esbridge.result import GroupResult, Result, State

if TYPE_CHECKING:
    from esbridge.app import Service
    from esbridge.store import Transition

log = logging.getLogger("esbridge.passive")

NAGIOS_MAX_COMMAND = 8192
"""Nagios 4 ``MAX_EXTERNAL_COMMAND_LENGTH``: one command line, newline included."""

TargetConfig = Icinga2PassiveConfig | NagiosPassiveConfig


@dataclass
class Submission:
    """One check result ready to deliver to one service of one target."""

    host: str
    service: str
    check: str
    state: State
    output: str  # status line + long output, no perfdata
    perfdata: list[str]
    nagios_text: str  # the exact plugin text (render), for the Nagios command line
    execution_start: float
    execution_end: float
    ttl: float
    attempts: int = 0
    result: Result | None = field(default=None, repr=False, compare=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.host, self.service)


class DeliveryError(Exception):
    """A submission was not accepted; ``reason`` is the metric label."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


# --------------------------------------------------------------------------- rendering


def split_perfdata(result: Result) -> tuple[str, list[str]]:
    """(plugin output without perfdata, perfdata items) for APIs that take them apart.

    The text is :func:`esbridge.nagios.render` of the result with its perfdata removed, so it
    is sanitised (no ``|``) and bounded exactly like the plugin's output.
    """
    perfdata = format_perfdata([*result.perfdata, *(p for g in result.groups for p in g.perfdata)])
    bare = result.with_(
        perfdata=(),
        groups=tuple(GroupResult(g.key, g.state, g.value, g.summary, ()) for g in result.groups),
    )
    return render(bare), perfdata


def nagios_command(sub: Submission, now: float | None = None) -> str:
    """``[ts] PROCESS_SERVICE_CHECK_RESULT;host;service;code;output`` + ``\\n``, ≤ 8192 bytes.

    ``output`` is the plugin text (perfdata after ``|`` exactly as a plugin prints it) with
    backslashes doubled and line breaks written as ``\\n``: Nagios 4 unescapes both.
    """
    ts = int(now if now is not None else time.time())
    head = f"[{ts}] PROCESS_SERVICE_CHECK_RESULT;{sub.host};{sub.service};{int(sub.state)};"
    text = sub.nagios_text
    room = NAGIOS_MAX_COMMAND - len(head.encode()) - 1
    budget = min(room, MAX_OUTPUT_BYTES)
    while True:
        escaped = text.replace("\\", "\\\\").replace("\n", "\\n")
        if len(escaped.encode()) <= room:
            return head + escaped + "\n"
        budget -= len(escaped.encode()) - room
        text = _rerender_bounded(sub, budget)


def _rerender_bounded(sub: Submission, budget: int) -> str:
    result = sub.result
    if result is None or budget < 64:
        return sub.nagios_text.encode()[: max(budget, 0)].decode(errors="ignore")
    return render(result, max_bytes=budget)


def _names(text: str) -> str:
    """A host/service name safe for both cores: no ``;``, ``!`` stays, no line breaks."""
    return text.replace(";", "_").replace("\n", " ").replace("\r", " ").strip()


# --------------------------------------------------------------------------- queue


class LatestQueue:
    """FIFO of submissions holding at most one per (host, service) and ``maxsize`` in all."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict[tuple[str, str], Submission] = OrderedDict()
        self._ready = asyncio.Event()

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def put(self, sub: Submission, front: bool = False) -> int:
        """Queue ``sub``; returns how many submissions were dropped by doing so.

        ``front`` is for a retry: it goes first, unless a newer result for the same service
        is already waiting (then the retry itself is the one dropped).
        """
        dropped = 0
        if sub.key in self._items:
            if front:  # a retry never replaces a newer result
                return 1
            self._items[sub.key] = sub  # newest wins, keeps its place in line
            return 1
        while len(self._items) >= self.maxsize:
            self._items.popitem(last=False)
            dropped += 1
        self._items[sub.key] = sub
        if front:
            self._items.move_to_end(sub.key, last=False)
        self._ready.set()
        return dropped

    async def get_many(self, limit: int) -> list[Submission]:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        out = []
        while self._items and len(out) < limit:
            out.append(self._items.popitem(last=False)[1])
        return out


# --------------------------------------------------------------------------- targets


@dataclass
class TargetStats:
    sent: int = 0
    dropped: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    up: bool | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    consecutive_failures: int = 0


class Target:
    """One configured destination: queue, workers, counters. Subclasses implement delivery."""

    batch = 1

    def __init__(self, config: TargetConfig, service: Service | None = None) -> None:
        self.config = config
        self.name = config.name
        self.service = service
        self.queue = LatestQueue(config.queue_size)
        self.stats = TargetStats()
        self.delivered: dict[tuple[str, str], tuple[State, float]] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self._backoff_until = 0.0

    # -- intake (runs inside evaluation: must stay cheap and never raise) ---------------------

    def wants(self, check: str) -> bool:
        c = self.config
        return any(fnmatch.fnmatchcase(check, p) for p in c.checks) and not any(
            fnmatch.fnmatchcase(check, p) for p in c.exclude
        )

    def submissions(
        self, result: Result, interval: float, labels: dict[str, str], check_timeout: float = 0.0
    ) -> list[Submission]:
        """The submissions one result makes (overall and/or one per group)."""
        c = self.config
        period = interval if c.when == "every" else max(interval, c.heartbeat.total_seconds())
        # when the next result is due at the latest: the period (with slack), plus the time
        # the evaluation and the delivery may take
        ttl = c.ttl_factor * period + check_timeout + c.timeout.total_seconds()
        end = result.evaluated_at or time.time()
        start = end - max(result.duration, 0.0)
        out: list[Submission] = []
        base = {"check": result.check, "labels": labels}
        if c.send_overall:
            host = c.host.format(**base)
            svc = c.service.format(**base)
            out.append(self._submission(result, host, svc, start, end, ttl))
        if c.groups is not None:
            for group in result.groups:
                fields = {
                    **base,
                    "group": dict(group.key),
                    "group_label": group.label,
                    "group_key": group.key_text,
                }
                try:
                    host = c.groups.host.format(**fields)
                    svc = c.groups.service.format(**fields)
                except (KeyError, IndexError, AttributeError) as exc:
                    self._fail("template", f"{result.check}: group {group.key_text}: {exc!r}")
                    continue
                single = result.for_group(group)
                out.append(self._submission(single, host, svc, start, end, ttl))
        return out

    def _submission(
        self, result: Result, host: str, service: str, start: float, end: float, ttl: float
    ) -> Submission:
        output, perfdata = split_perfdata(result)
        sub = Submission(
            host=_names(host),
            service=_names(service),
            check=result.check,
            state=result.state,
            output=output,
            perfdata=perfdata,
            nagios_text=render(result),
            execution_start=start,
            execution_end=end,
            ttl=round(ttl, 3),
            result=result,
        )
        return sub

    def offer(self, sub: Submission, now: float) -> None:
        """Queue ``sub`` unless ``when: change`` says the core already knows this state."""
        if self.config.when == "change":
            last = self.delivered.get(sub.key)
            fresh = last is not None and now - last[1] < self.config.heartbeat.total_seconds()
            if last is not None and last[0] == sub.state and fresh and sub.key not in self.queue:
                return
        self.stats.dropped += self.queue.put(sub)

    # -- delivery ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.tasks:
            return
        for i in range(self.config.concurrency):
            self.tasks.append(asyncio.create_task(self._worker(), name=f"passive-{self.name}-{i}"))

    async def _worker(self) -> None:
        while True:
            wait = self._backoff_until - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            subs = await self.queue.get_many(self.batch)
            try:
                failures = await self.deliver(subs)
            except asyncio.CancelledError:
                raise
            except DeliveryError as exc:
                failures = [(s, exc) for s in subs]
            except Exception as exc:  # never let a worker die
                log.exception("passive target %s: unexpected error", self.name)
                failures = [(s, DeliveryError("internal", repr(exc))) for s in subs]
            failed_keys = {id(s) for s, _ in failures}
            now = time.time()
            for sub in subs:
                if id(sub) not in failed_keys:
                    self.stats.sent += 1
                    self.delivered[sub.key] = (sub.state, now)
            if len(failures) < len(subs):
                self._succeeded(now)
            for sub, exc in failures:
                self._fail(exc.reason, str(exc))
                sub.attempts += 1
                if sub.attempts <= self.config.retries:
                    self.stats.dropped += self.queue.put(sub, front=True)
                else:
                    self.stats.dropped += 1
                    self.delivered.pop(sub.key, None)  # "change" mode: send it again next time
            if failures and len(failures) == len(subs):
                c = self.config
                step = c.backoff.total_seconds() * 2 ** min(self.stats.consecutive_failures - 1, 20)
                delay = min(step, c.backoff_max.total_seconds())
                self._backoff_until = time.monotonic() + delay

    def _succeeded(self, now: float) -> None:
        if self.stats.up is False:
            log.info("passive target %s: delivering again", self.name)
        self.stats.up = True
        self.stats.last_success = now
        self.stats.consecutive_failures = 0
        self._backoff_until = 0.0

    def _fail(self, reason: str, message: str) -> None:
        s = self.stats
        s.failed[reason] = s.failed.get(reason, 0) + 1
        if s.up is not False:
            log.warning("passive target %s: delivery failed (%s): %s", self.name, reason, message)
        s.up = False
        s.last_error = f"{reason}: {message}"
        s.last_error_at = time.time()
        s.consecutive_failures += 1

    async def deliver(self, subs: list[Submission]) -> list[tuple[Submission, DeliveryError]]:
        """Deliver; return the submissions that failed (raise DeliveryError if all did)."""
        raise NotImplementedError

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self.tasks.clear()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "name": self.name,
            "type": self.config.type,
            "up": s.up,
            "queue_length": len(self.queue),
            "sent": s.sent,
            "failed": sum(s.failed.values()),
            "dropped": s.dropped,
            "last_success": s.last_success,
            "last_error": s.last_error if s.up is False else None,
            "last_error_at": s.last_error_at,
        }


class Icinga2Target(Target):
    """``POST /v1/actions/process-check-result``, one request per service."""

    def __init__(self, config: Icinga2PassiveConfig, service: Service | None = None) -> None:
        super().__init__(config, service)
        self.icinga = config
        self.check_source = config.check_source or f"esbridge@{socket.gethostname()}"
        self._client: httpx.AsyncClient | None = None

    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            c = self.icinga
            verify: ssl.SSLContext | bool = c.verify
            if c.verify and c.ca_certs is not None:
                verify = ssl.create_default_context(cafile=str(c.ca_certs))
            self._client = httpx.AsyncClient(
                base_url=c.url,
                auth=(c.username, c.resolved_password()),
                verify=verify,
                timeout=c.timeout.total_seconds(),
                headers={"Accept": "application/json"},
                limits=httpx.Limits(max_connections=c.concurrency),
            )
        return self._client

    def body(self, sub: Submission) -> dict[str, Any]:
        return {
            "type": "Service",
            "service": f"{sub.host}!{sub.service}",
            "exit_status": int(sub.state),
            "plugin_output": sub.output,
            "performance_data": sub.perfdata,
            "check_source": self.check_source,
            "execution_start": sub.execution_start,
            "execution_end": sub.execution_end,
            "ttl": sub.ttl,
        }

    async def deliver(self, subs: list[Submission]) -> list[tuple[Submission, DeliveryError]]:
        sub = subs[0]
        try:
            client = self.client()
        except ConfigError as exc:  # password file gone or unreadable since validation
            raise DeliveryError("config", str(exc)) from exc
        try:
            response = await client.post("/v1/actions/process-check-result", json=self.body(sub))
        except httpx.TimeoutException as exc:
            raise DeliveryError("timeout", f"no answer within {self.icinga.timeout}") from exc
        except httpx.ConnectError as exc:
            reason = "tls" if "SSL" in str(exc) or "certificate" in str(exc) else "connect"
            raise DeliveryError(reason, str(exc) or type(exc).__name__) from exc
        except httpx.HTTPError as exc:
            raise DeliveryError("http", str(exc) or type(exc).__name__) from exc
        if response.status_code == 200:
            return []
        reasons = {401: "unauthorized", 403: "forbidden", 404: "not_found"}
        reason = reasons.get(response.status_code, f"http_{response.status_code // 100}xx")
        detail = response.text[:300].replace("\n", " ")
        raise DeliveryError(
            reason, f"{sub.host}!{sub.service}: HTTP {response.status_code} {detail}"
        )

    async def close(self) -> None:
        await super().close()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


class NagiosTarget(Target):
    """External command file: a FIFO opened non-blocking, written within ``timeout``."""

    batch = 256

    def __init__(self, config: NagiosPassiveConfig, service: Service | None = None) -> None:
        super().__init__(config, service)
        self.path = str(config.command_file)

    async def deliver(self, subs: list[Submission]) -> list[tuple[Submission, DeliveryError]]:
        lines = [nagios_command(s).encode() for s in subs]
        written = await asyncio.to_thread(
            write_commands, self.path, lines, self.config.timeout.total_seconds()
        )
        if isinstance(written, DeliveryError):
            raise written
        count, error = written
        return [(s, error) for s in subs[count:]] if error is not None else []


def write_commands(
    path: str, lines: list[bytes], timeout: float
) -> tuple[int, DeliveryError | None] | DeliveryError:
    """Write whole lines to the command file; never blocks longer than ``timeout``.

    Returns (lines written, error for the rest) or a DeliveryError when nothing was written.
    ENXIO (a FIFO nobody reads: Nagios is not running) and a full pipe (Nagios not reading)
    are failures to retry later, not reasons to wait.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_APPEND)
    except OSError as exc:
        reason = {errno.ENXIO: "no_reader", errno.ENOENT: "no_command_file"}.get(
            exc.errno or 0, "io"
        )
        return DeliveryError(reason, f"{path}: {exc.strerror}")
    deadline = time.monotonic() + timeout
    done = 0
    try:
        for line in lines:
            view = memoryview(line)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    error = DeliveryError("blocked", f"{path}: not read within {timeout:g} s")
                    return error if done == 0 else (done, error)
                try:
                    n = os.write(fd, view)
                except BlockingIOError:
                    select.select([], [fd], [], min(remaining, 0.5))
                    continue
                except OSError as exc:
                    reason = "no_reader" if exc.errno == errno.EPIPE else "io"
                    error = DeliveryError(reason, f"{path}: {exc.strerror}")
                    return error if done == 0 else (done, error)
                view = view[n:]
            done += 1
    finally:
        os.close(fd)
    return (done, None)


# --------------------------------------------------------------------------- hub


class PassiveHub:
    """All targets of one service: the result listener, the metrics, the status."""

    def __init__(self, service: Service | None, targets: list[Target]) -> None:
        self.service = service
        self.targets = targets

    def on_result(self, result: Result, transition: Transition | None = None) -> None:
        now = time.time()
        interval, timeout = 60.0, 10.0
        labels: dict[str, str] = {}
        if self.service is not None:
            timeout = self.service.settings.defaults.timeout.total_seconds()
            entry = self.service.store.get(result.check)
            if entry is not None:
                interval = entry.interval
            check = self.service.checkset.checks.get(result.check)
            if check is not None:
                labels = dict(getattr(check, "labels", {}) or {})
                if getattr(check, "timeout", None) is not None:
                    timeout = check.timeout.total_seconds()
        for target in self.targets:
            if not target.wants(result.check):
                continue
            target.start()
            try:
                for sub in target.submissions(result, interval, labels, timeout):
                    target.offer(sub, now)
            except Exception as exc:
                target._fail("internal", f"{result.check}: {exc!r}")

    def status(self) -> list[dict[str, Any]]:
        return [t.status() for t in self.targets]

    def metrics(self) -> Iterator[Metric]:
        sent = CounterMetricFamily(
            "esbridge_passive_sent", "Results accepted by the passive target", labels=["target"]
        )
        failed = CounterMetricFamily(
            "esbridge_passive_failed",
            "Failed delivery attempts by reason",
            labels=["target", "reason"],
        )
        dropped = CounterMetricFamily(
            "esbridge_passive_dropped",
            "Results never delivered: replaced by a newer one, queue full or retries used up",
            labels=["target"],
        )
        queue = GaugeMetricFamily(
            "esbridge_passive_queue_length", "Results waiting for delivery", labels=["target"]
        )
        up = GaugeMetricFamily(
            "esbridge_passive_target_up",
            "1 when the last delivery attempt succeeded (or none was made yet)",
            labels=["target"],
        )
        for t in self.targets:
            sent.add_metric([t.name], float(t.stats.sent))
            for reason, count in sorted(t.stats.failed.items()):
                failed.add_metric([t.name, reason], float(count))
            dropped.add_metric([t.name], float(t.stats.dropped))
            queue.add_metric([t.name], float(len(t.queue)))
            up.add_metric([t.name], 0.0 if t.stats.up is False else 1.0)
        yield from (sent, failed, dropped, queue, up)

    async def close(self) -> None:
        for target in self.targets:
            await target.close()


def make_target(config: TargetConfig, service: Service | None = None) -> Target:
    if isinstance(config, Icinga2PassiveConfig):
        return Icinga2Target(config, service)
    return NagiosTarget(config, service)


def attach_passive(service: Service) -> PassiveHub | None:
    """Hook passive delivery into ``service`` (called by ``esbridge serve``)."""
    configs = [c for c in service.settings.passive if c.enabled]
    if not configs:
        return None
    hub = PassiveHub(service, [make_target(c, service) for c in configs])
    service.passive_senders = [hub]  # type: ignore[attr-defined]
    service.result_listeners.append(hub.on_result)
    original_stop = service.stop

    async def stop(grace: float = 10.0) -> None:
        await original_stop(grace)
        await hub.close()

    service.stop = stop  # type: ignore[method-assign]
    log.info("passive delivery to %s", ", ".join(f"{c.name} ({c.type})" for c in configs))
    return hub
