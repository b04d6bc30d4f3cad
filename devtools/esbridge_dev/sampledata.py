"""Realistic web access logs and host metrics, with incidents injected on a schedule.

Indices (date-named, UTC): ``logs-web-YYYY.MM.DD`` and ``metrics-host-YYYY.MM.DD``; index
templates (priority 500, 1 shard, 0 replicas) give explicit mappings.

Incidents (``IncidentSchedule``, default cycle of 6 minutes aligned to the wall clock, so a
backfill and ``--follow`` agree):

- 60 s-180 s: ``web-03`` answers 40 % 5xx, 10x slower;
- 180 s-360 s: ``web-05`` sends no metrics;
- 0 s-240 s: disk of ``web-07`` climbs from 72 % to 97 %, then is cleaned back to 72 %.

CLI::

    python -m esbridge_dev.sampledata --es-url http://127.0.0.1:9200 \\
        [--backfill-minutes 60] [--rate 20] [--hosts 8] [--services 5] [--follow]

Library: ``install_templates(url)``, ``backfill(url, minutes=, rate_per_s=, now=, hosts=,
services=)``, ``run_forever(url, rate_per_s=, incident=, stop_event=)``.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

LOGS_PREFIX = "logs-web-"
METRICS_PREFIX = "metrics-host-"
SERVICE_NAMES = ["checkout", "search", "catalog", "auth", "cart", "payments", "profile", "orders"]
PATHS = {
    "checkout": ["/checkout", "/checkout/confirm", "/checkout/shipping"],
    "search": ["/search", "/search/suggest"],
    "catalog": ["/products", "/products/42", "/categories"],
    "auth": ["/login", "/logout", "/token/refresh"],
    "cart": ["/cart", "/cart/items"],
}
METHODS = ["GET"] * 7 + ["POST"] * 2 + ["PUT"]

LOGS_TEMPLATE = {
    "index_patterns": [f"{LOGS_PREFIX}*"],
    "priority": 500,
    "template": {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
        "mappings": {
            "dynamic": False,
            "properties": {
                "@timestamp": {"type": "date"},
                "host": {"type": "keyword"},
                "service": {"type": "keyword"},
                "method": {"type": "keyword"},
                "path": {"type": "keyword"},
                "status": {"type": "short"},
                "latency_ms": {"type": "float"},
                "bytes": {"type": "integer"},
                "level": {"type": "keyword"},
                "message": {"type": "text"},
            },
        },
    },
}
METRICS_TEMPLATE = {
    "index_patterns": [f"{METRICS_PREFIX}*"],
    "priority": 500,
    "template": {
        "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
        "mappings": {
            "dynamic": False,
            "properties": {
                "@timestamp": {"type": "date"},
                "host": {"type": "keyword"},
                "cpu_pct": {"type": "float"},
                "mem_pct": {"type": "float"},
                "disk_pct": {"type": "float"},
                "load": {"type": "float"},
            },
        },
    },
}


# --------------------------------------------------------------------------- pure parts


def host_names(n: int) -> list[str]:
    width = max(2, len(str(n)))
    return [f"web-{i:0{width}d}" for i in range(1, n + 1)]


def service_names(n: int) -> list[str]:
    names = SERVICE_NAMES[:n]
    names += [f"svc-{i:02d}" for i in range(len(names) + 1, n + 1)]
    return names


@dataclass(frozen=True)
class IncidentSchedule:
    """Where in each cycle (seconds since epoch modulo cycle_s) incidents happen."""

    cycle_s: float = 360.0
    error_host: str | None = "web-03"
    error_window: tuple[float, float] = (60.0, 180.0)
    error_rate: float = 0.4
    slow_factor: float = 10.0
    silent_host: str | None = "web-05"
    silent_window: tuple[float, float] = (180.0, 360.0)
    disk_host: str | None = "web-07"
    disk_window: tuple[float, float] = (0.0, 240.0)
    disk_from: float = 72.0
    disk_to: float = 97.0

    def phase(self, t: float) -> float:
        return t % self.cycle_s

    def _in(self, t: float, window: tuple[float, float]) -> bool:
        p = self.phase(t)
        return window[0] <= p < window[1]

    def error_burst(self, t: float, host: str) -> bool:
        return host == self.error_host and self._in(t, self.error_window)

    def metrics_silent(self, t: float, host: str) -> bool:
        return host == self.silent_host and self._in(t, self.silent_window)

    def disk_pct(self, t: float, host: str, base: float) -> float:
        if host != self.disk_host:
            return base
        a, b = self.disk_window
        p = self.phase(t)
        if not a <= p < b:
            return self.disk_from
        return self.disk_from + (self.disk_to - self.disk_from) * (p - a) / (b - a)


NO_INCIDENTS = IncidentSchedule(error_host=None, silent_host=None, disk_host=None)


class _TsCache:
    """Fast ISO 8601 UTC with ms; the per-second prefix is cached."""

    def __init__(self) -> None:
        self.sec = -1
        self.prefix = ""
        self.day = ""

    def fmt(self, t: float) -> tuple[str, str]:
        sec = int(t)
        if sec != self.sec:
            tm = time.gmtime(sec)
            self.sec = sec
            self.prefix = time.strftime("%Y-%m-%dT%H:%M:%S", tm)
            self.day = time.strftime("%Y.%m.%d", tm)
        return f"{self.prefix}.{int((t - sec) * 1000):03d}Z", self.day


@dataclass
class Generator:
    hosts: int = 8
    services: int = 5
    incident: IncidentSchedule = field(default_factory=IncidentSchedule)
    seed: int = 42

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.host_list = host_names(self.hosts)
        self.service_list = service_names(self.services)
        r = random.Random(self.seed + 1)
        self.base = {
            h: (r.uniform(10, 40), r.uniform(35, 65), r.uniform(30, 60)) for h in self.host_list
        }
        self._ts = _TsCache()
        self._carry = 0.0

    def log_docs(self, start: float, end: float, rate_per_s: float) -> Iterator[tuple[str, str]]:
        """(day, json) log lines for [start, end) at rate_per_s (spread evenly + jitter)."""
        exact = (end - start) * rate_per_s + self._carry
        n = int(exact)
        self._carry = exact - n
        if n <= 0:
            return
        rnd = self.rng.random
        hosts, services, inc, ts = self.host_list, self.service_list, self.incident, self._ts
        step = (end - start) / n
        for i in range(n):
            t = start + (i + rnd()) * step
            host = hosts[int(rnd() * len(hosts))]
            svc = services[int(rnd() * len(services))]
            paths = PATHS.get(svc) or [f"/{svc}", f"/{svc}/items"]
            path = paths[int(rnd() * len(paths))]
            method = METHODS[int(rnd() * len(METHODS))]
            latency = self.rng.lognormvariate(3.4, 0.6)
            x = rnd()
            if inc.error_burst(t, host):
                latency *= inc.slow_factor
                status = (500, 502, 503, 504)[int(rnd() * 4)] if x < inc.error_rate else 200
            elif x < 0.005:
                status = (500, 502, 503)[int(rnd() * 3)]
            elif x < 0.035:
                status = (400, 401, 403, 404, 404, 404)[int(rnd() * 6)]
            elif x < 0.075:
                status = (301, 302, 304)[int(rnd() * 3)]
            else:
                status = 200
            level = (
                "ERROR" if status >= 500 else "WARN" if status >= 400 or latency > 1000 else "INFO"
            )
            size = 0 if status == 304 else int(200 + rnd() * 20000)
            stamp, day = ts.fmt(t)
            yield (
                day,
                f'{{"@timestamp":"{stamp}","host":"{host}","service":"{svc}",'
                f'"method":"{method}","path":"{path}","status":{status},'
                f'"latency_ms":{latency:.1f},"bytes":{size},"level":"{level}",'
                f'"message":"{method} {path} {status} {latency:.0f}ms"}}',
            )

    def metric_docs(self, start: float, end: float, interval_s: float) -> Iterator[tuple[str, str]]:
        """(day, json) metrics for every host at each multiple of interval_s in [start, end)."""
        t = math.ceil(start / interval_s) * interval_s
        rnd, inc, ts = self.rng.random, self.incident, self._ts
        while t < end:
            stamp, day = ts.fmt(t)
            for h in self.host_list:
                if inc.metrics_silent(t, h):
                    continue
                cpu0, mem0, disk0 = self.base[h]
                cpu = min(100.0, cpu0 + rnd() * 15 + (45 if inc.error_burst(t, h) else 0))
                mem = min(100.0, mem0 + rnd() * 5)
                disk = inc.disk_pct(t, h, disk0) + rnd() * 0.3
                load = cpu / 25 + rnd()
                yield (
                    day,
                    f'{{"@timestamp":"{stamp}","host":"{h}","cpu_pct":{cpu:.1f},'
                    f'"mem_pct":{mem:.1f},"disk_pct":{disk:.2f},"load":{load:.2f}}}',
                )
            t += interval_s


# --------------------------------------------------------------------------- Elasticsearch


def install_templates(url: str, client: httpx.Client | None = None) -> None:
    c = client or httpx.Client(timeout=30)
    try:
        for name, body in (
            ("esbridge-logs-web", LOGS_TEMPLATE),
            ("esbridge-metrics-host", METRICS_TEMPLATE),
        ):
            r = c.put(f"{url}/_index_template/{name}", json=body)
            if r.status_code >= 300:
                raise RuntimeError(f"index template {name}: HTTP {r.status_code}: {r.text[:500]}")
    finally:
        if client is None:
            c.close()


class _BulkSender:
    def __init__(self, url: str, batch: int = 5000, concurrency: int = 2) -> None:
        self.url = url
        self.batch = batch
        self.client = httpx.Client(timeout=120)
        self.pool = ThreadPoolExecutor(max_workers=concurrency)
        self.pending: list[Future[None]] = []
        self.max_pending = concurrency * 2
        self.buf: list[str] = []
        self.count = 0
        self.actions: dict[str, str] = {}

    def add(self, prefix: str, day: str, doc: str) -> None:
        index = prefix + day
        action = self.actions.get(index)
        if action is None:
            action = self.actions[index] = f'{{"index":{{"_index":"{index}"}}}}\n'
        self.buf.append(action)
        self.buf.append(doc + "\n")
        if len(self.buf) >= 2 * self.batch:
            self.flush()

    def _send(self, body: str) -> None:
        r = self.client.post(
            f"{self.url}/_bulk?filter_path=errors,items.*.error",
            content=body.encode(),
            headers={"Content-Type": "application/x-ndjson"},
        )
        if r.status_code >= 300 or r.json().get("errors"):
            raise RuntimeError(f"bulk failed: HTTP {r.status_code}: {r.text[:1000]}")

    def flush(self) -> None:
        if self.buf:
            body = "".join(self.buf)
            self.count += len(self.buf) // 2
            self.buf = []
            self.pending.append(self.pool.submit(self._send, body))
        while len(self.pending) >= self.max_pending:
            self.pending.pop(0).result()

    def close(self, refresh: bool = True) -> None:
        self.flush()
        for f in self.pending:
            f.result()
        self.pending = []
        self.pool.shutdown()
        if refresh:
            self.client.post(f"{self.url}/{LOGS_PREFIX}*,{METRICS_PREFIX}*/_refresh")
        self.client.close()


def backfill(
    url: str,
    minutes: float = 60,
    rate_per_s: float = 20,
    now: datetime | float | None = None,
    hosts: int = 8,
    services: int = 5,
    incident: IncidentSchedule | None = None,
    metrics_interval_s: float = 10,
    seed: int = 42,
    batch: int = 5000,
    concurrency: int = 2,
    templates: bool = True,
) -> dict[str, int]:
    """Load `minutes` of history ending at `now`; return {"logs": n, "metrics": m, "seconds": s}."""
    t0 = time.monotonic()
    end = _epoch(now)
    start = end - minutes * 60
    if templates:
        install_templates(url)
    gen = Generator(
        hosts=hosts, services=services, incident=incident or IncidentSchedule(), seed=seed
    )
    sender = _BulkSender(url, batch=batch, concurrency=concurrency)
    try:
        logs = metrics = 0
        # chunks of 10 minutes keep logs and metrics interleaved and memory flat
        chunk = 600.0
        a = start
        while a < end:
            b = min(end, a + chunk)
            for day, doc in gen.log_docs(a, b, rate_per_s):
                sender.add(LOGS_PREFIX, day, doc)
                logs += 1
            for day, doc in gen.metric_docs(a, b, metrics_interval_s):
                sender.add(METRICS_PREFIX, day, doc)
                metrics += 1
            a = b
    finally:
        sender.close()
    return {"logs": logs, "metrics": metrics, "seconds": round(time.monotonic() - t0, 2)}


def run_forever(
    url: str,
    rate_per_s: float = 20,
    incident: IncidentSchedule | None = None,
    stop_event: threading.Event | None = None,
    hosts: int = 8,
    services: int = 5,
    metrics_interval_s: float = 10,
    tick_s: float = 1.0,
    seed: int = 43,
    start: float | None = None,
) -> dict[str, int]:
    """Append live data every tick until stop_event is set; return counts."""
    stop_event = stop_event or threading.Event()
    gen = Generator(
        hosts=hosts, services=services, incident=incident or IncidentSchedule(), seed=seed
    )
    counts = {"logs": 0, "metrics": 0}
    last = start if start is not None else time.time()
    with httpx.Client(timeout=30) as client:
        while not stop_event.is_set():
            stop_event.wait(max(0.0, last + tick_s - time.time()))
            now = time.time()
            lines: list[str] = []
            for prefix, key, docs in (
                (LOGS_PREFIX, "logs", gen.log_docs(last, now, rate_per_s)),
                (METRICS_PREFIX, "metrics", gen.metric_docs(last, now, metrics_interval_s)),
            ):
                for day, doc in docs:
                    lines.append(f'{{"index":{{"_index":"{prefix}{day}"}}}}\n{doc}\n')
                    counts[key] += 1
            last = now
            if lines:
                try:
                    r = client.post(
                        f"{url}/_bulk?filter_path=errors,items.*.error",
                        content="".join(lines).encode(),
                        headers={"Content-Type": "application/x-ndjson"},
                    )
                    if r.status_code >= 300 or r.json().get("errors"):
                        print(f"sampledata: bulk failed: {r.text[:300]}", file=sys.stderr)
                except httpx.HTTPError as e:  # ES down (fault tests, demo): keep going
                    print(f"sampledata: {e!r}", file=sys.stderr)
    return counts


def _epoch(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return now.timestamp()
    return float(now)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m esbridge_dev.sampledata")
    p.add_argument("--es-url", required=True)
    p.add_argument("--backfill-minutes", type=float, default=60)
    p.add_argument("--rate", type=float, default=20, help="log lines per second")
    p.add_argument("--hosts", type=int, default=8)
    p.add_argument("--services", type=int, default=5)
    p.add_argument("--no-incidents", action="store_true")
    p.add_argument("--follow", action="store_true", help="keep appending live data")
    a = p.parse_args(argv)
    incident = NO_INCIDENTS if a.no_incidents else IncidentSchedule()
    now = time.time()
    if a.backfill_minutes > 0:
        res = backfill(
            a.es_url,
            a.backfill_minutes,
            a.rate,
            now=now,
            hosts=a.hosts,
            services=a.services,
            incident=incident,
        )
        print(
            f"backfilled {res['logs']} log lines and {res['metrics']} metrics in {res['seconds']}s"
        )
    else:
        install_templates(a.es_url)
    if a.follow:
        print(f"following at {a.rate}/s; Ctrl-C stops", file=sys.stderr)
        stop = threading.Event()
        try:
            run_forever(
                a.es_url,
                a.rate,
                incident=incident,
                stop_event=stop,
                hosts=a.hosts,
                services=a.services,
                start=now,
            )
        except KeyboardInterrupt:
            stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main())
