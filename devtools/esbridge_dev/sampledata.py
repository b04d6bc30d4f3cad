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

The documents come from :mod:`esbridge_dev.samplegen` (pure). Library:
``install_templates(url)``, ``backfill(url, minutes=, rate_per_s=, now=, hosts=, services=)``,
``run_forever(url, rate_per_s=, incident=, stop_event=)``.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime

import httpx

from esbridge_dev import httpcalls
from esbridge_dev.samplegen import (
    LOGS_PREFIX,
    LOGS_TEMPLATE,
    METRICS_PREFIX,
    METRICS_TEMPLATE,
    NO_INCIDENTS,
    Generator,
    IncidentSchedule,
    host_names,
    service_names,
)

__all__ = [
    "LOGS_PREFIX",
    "LOGS_TEMPLATE",
    "METRICS_PREFIX",
    "METRICS_TEMPLATE",
    "NO_INCIDENTS",
    "Generator",
    "IncidentSchedule",
    "backfill",
    "host_names",
    "install_templates",
    "main",
    "run_forever",
    "service_names",
]


# --------------------------------------------------------------------------- Elasticsearch


def install_templates(url: str, client: httpx.Client | None = None) -> None:
    c = client or httpcalls.client(timeout=30)
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
        self.client = httpcalls.client(timeout=120)
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
    with httpcalls.client(timeout=30) as client:
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
