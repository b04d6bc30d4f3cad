"""Passive destinations: a queue, worker tasks, retries with backoff, counters per target.

:class:`Icinga2Target` posts to the Icinga 2 REST API; :class:`NagiosTarget` writes the
external command file. Evaluation never waits for either: it only queues.
"""

from __future__ import annotations

import asyncio
import errno
import fnmatch
import logging
import os
import select
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from esbridge.config import ConfigError, Icinga2PassiveConfig, NagiosPassiveConfig
from esbridge.nagios import render
from esbridge.passive.submission import (
    PIPE_BUF,
    DeliveryError,
    LatestQueue,
    Submission,
    nagios_command,
    names,
    split_perfdata,
)
from esbridge.result import Result, State
from esbridge.tasks import cancel_all

log = logging.getLogger("esbridge.passive")

TargetConfig = Icinga2PassiveConfig | NagiosPassiveConfig


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

    def __init__(self, config: TargetConfig) -> None:
        self.config = config
        self.name = config.name
        self.queue = LatestQueue(config.queue_size)
        self.stats = TargetStats()
        # ``when: change`` only: what the core last got per (host, service), and when
        self.delivered: dict[tuple[str, str], tuple[State, float]] = {}
        self._pruned = 0.0
        self.tasks: list[asyncio.Task[None]] = []
        # (host, service) being delivered right now: never two results for one service in
        # flight, so a slow or failing older one cannot be overtaken by a newer one and then
        # retried after it. At most concurrency x batch entries.
        self.in_flight: set[tuple[str, str]] = set()
        self._backoff_until = 0.0
        self._backoff_level = 0  # backoff steps since the last success

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
                    self.fail("template", f"{result.check}: group {group.key_text}: {exc!r}")
                    continue
                single = result.for_group(group)
                out.append(self._submission(single, host, svc, start, end, ttl))
        return out

    def _submission(
        self, result: Result, host: str, service: str, start: float, end: float, ttl: float
    ) -> Submission:
        output, perfdata = split_perfdata(result)
        sub = Submission(
            host=names(host),
            service=names(service),
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
            subs = await self._take()
            keys = {s.key for s in subs}
            self.in_flight |= keys
            try:
                failures = await self._attempt(subs)
                self._settle(subs, failures)
            finally:
                # released together with the retries' re-queueing (no await in between): a
                # newer result queued meanwhile has already made the retry give way to it
                self.in_flight -= keys
                self.queue.wake()

    async def _pause(self) -> None:
        """Wait out the current backoff (it may be extended while we sleep)."""
        while (wait := self._backoff_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)

    async def _take(self) -> list[Submission]:
        """The next submissions to attempt, never during a backoff, never a service that is
        in flight in another worker.

        Workers idle in ``get_many`` are woken by a failed attempt's retry put back at the
        front, i.e. just after a backoff began: what they took goes back, untried, and they
        wait out the backoff too. Whatever the concurrency, attempts stay that far apart.
        """
        while True:
            await self._pause()
            subs = await self.queue.get_many(self.batch, skip=self.in_flight)
            if time.monotonic() >= self._backoff_until:
                return subs
            for sub in reversed(subs):  # back in their places, in their order
                self.stats.dropped += self.queue.put(sub, front=True)

    async def _attempt(self, subs: list[Submission]) -> list[tuple[Submission, DeliveryError]]:
        """Deliver; every failure as (submission, error), never an exception but cancellation."""
        try:
            return await self.deliver(subs)
        except asyncio.CancelledError:
            raise
        except DeliveryError as exc:
            return [(s, exc) for s in subs]
        except Exception as exc:  # never let a worker die
            log.exception("passive target %s: unexpected error", self.name)
            return [(s, DeliveryError("internal", repr(exc))) for s in subs]

    def _settle(
        self, subs: list[Submission], failures: list[tuple[Submission, DeliveryError]]
    ) -> None:
        """Count an attempt, queue its retries (in their original order) and set the backoff."""
        failed_keys = {id(s) for s, _ in failures}
        now = time.time()
        remember = self.config.when == "change"
        for sub in subs:
            if id(sub) not in failed_keys:
                self.stats.sent += 1
                if remember:
                    self.delivered[sub.key] = (sub.state, now)
        self._forget_old(now)
        if len(failures) < len(subs):
            self._succeeded(now)
        for _sub, exc in failures:
            self.fail(exc.reason, str(exc))
        # each put goes to the very front: put the last first so the first stays first
        for sub, _exc in reversed(failures):
            sub.attempts += 1
            if sub.attempts <= self.config.retries:
                self.stats.dropped += self.queue.put(sub, front=True)
            else:
                self.stats.dropped += 1
                self.delivered.pop(sub.key, None)  # "change" mode: send it again next time
        if failures and len(failures) == len(subs) and time.monotonic() >= self._backoff_until:
            # One step per failed round, not per failed attempt: attempts that were already
            # in flight when the backoff began (concurrency > 1) fail into the same wait.
            c = self.config
            step = c.backoff.total_seconds() * 2 ** min(self._backoff_level, 20)
            self._backoff_level += 1
            self._backoff_until = time.monotonic() + min(step, c.backoff_max.total_seconds())

    def _forget_old(self, now: float) -> None:
        """Drop what was delivered longer than a heartbeat ago, once per heartbeat: ``offer``
        sends such a state again anyway, and groups come and go (pods, autoscaled hosts), so
        keeping every (host, service) ever seen would grow without end."""
        beat = self.config.heartbeat.total_seconds()
        if now - self._pruned < beat:
            return
        self._pruned = now
        self.delivered = {k: v for k, v in self.delivered.items() if now - v[1] < beat}

    def _succeeded(self, now: float) -> None:
        if self.stats.up is False:
            log.info("passive target %s: delivering again", self.name)
        self.stats.up = True
        self.stats.last_success = now
        self.stats.consecutive_failures = 0
        self._backoff_until = 0.0
        self._backoff_level = 0

    def fail(self, reason: str, message: str) -> None:
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
        await cancel_all(self.tasks)
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

    def __init__(self, config: Icinga2PassiveConfig) -> None:
        super().__init__(config)
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

    def __init__(self, config: NagiosPassiveConfig) -> None:
        super().__init__(config)
        self.path = str(config.command_file)

    async def deliver(self, subs: list[Submission]) -> list[tuple[Submission, DeliveryError]]:
        lines: list[bytes] = []
        ready: list[Submission] = []
        unfit: list[tuple[Submission, DeliveryError]] = []
        for sub in subs:
            try:
                lines.append(nagios_command(sub).encode())
                ready.append(sub)
            except ValueError as exc:  # names alone longer than a command may be
                unfit.append((sub, DeliveryError("template", f"{sub.host};{sub.service}: {exc}")))
        if not ready:
            raise unfit[0][1]
        written = await asyncio.to_thread(
            write_commands, self.path, lines, self.config.timeout.total_seconds()
        )
        if isinstance(written, DeliveryError):
            return [(s, written) for s in ready] + unfit
        count, error = written
        rest = [(s, error) for s in ready[count:]] if error is not None else []
        return rest + unfit


def write_commands(
    path: str, lines: list[bytes], timeout: float
) -> tuple[int, DeliveryError | None] | DeliveryError:
    """Write whole lines to the command file; never blocks longer than ``timeout``.

    Returns (lines written, error for the rest) or a DeliveryError when nothing was written.
    ENXIO (a FIFO nobody reads: Nagios is not running) and a full pipe (Nagios not reading)
    are failures to retry later, not reasons to wait.

    Every line must be at most PIPE_BUF bytes (ValueError otherwise): a non-blocking write
    of such a line to a pipe is all or nothing, so a full pipe never holds part of a line
    that a later write (of the retry, or of another service) would be glued onto. Should a
    write still be partial (not a pipe), the line counts as written: sending it again would
    put it in twice.
    """
    too_long = [len(line) for line in lines if len(line) > PIPE_BUF]
    if too_long:
        raise ValueError(f"command lines of {too_long} bytes: at most {PIPE_BUF} are atomic")
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
                error: DeliveryError | None = None
                if remaining <= 0:
                    error = DeliveryError("blocked", f"{path}: not read within {timeout:g} s")
                else:
                    try:
                        n = os.write(fd, view)
                    except BlockingIOError:
                        select.select([], [fd], [], min(remaining, 0.5))
                        continue
                    except OSError as exc:
                        reason = "no_reader" if exc.errno == errno.EPIPE else "io"
                        error = DeliveryError(reason, f"{path}: {exc.strerror}")
                    else:
                        view = view[n:]
                        continue
                if len(view) < len(line):
                    done += 1  # partly out: it must not be reported as unwritten
                return error if done == 0 else (done, error)
            done += 1
    finally:
        os.close(fd)
    return (done, None)


def make_target(config: TargetConfig) -> Target:
    if isinstance(config, Icinga2PassiveConfig):
        return Icinga2Target(config)
    return NagiosTarget(config)
