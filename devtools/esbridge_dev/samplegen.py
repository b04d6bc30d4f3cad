"""The sample documents themselves, pure (no I/O): web access logs and host metrics with
incidents on a schedule, and the index templates that map them.

``esbridge_dev.sampledata`` sends them to a cluster (backfill, follow, CLI); tests generate
documents from here directly to know what a check must find.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

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


def _template(prefix: str, **types: str) -> dict[str, Any]:
    """An index template for ``prefix*``: one shard, no replica, 1 s refresh, and only the
    listed fields mapped (``dynamic: false``, so a stray field never changes the mapping)."""
    return {
        "index_patterns": [f"{prefix}*"],
        "priority": 500,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"},
            "mappings": {
                "dynamic": False,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "host": {"type": "keyword"},
                    **{name: {"type": kind} for name, kind in types.items()},
                },
            },
        },
    }


LOGS_TEMPLATE = _template(
    LOGS_PREFIX,
    service="keyword",
    method="keyword",
    path="keyword",
    status="short",
    latency_ms="float",
    bytes="integer",
    level="keyword",
    message="text",
)
METRICS_TEMPLATE = _template(
    METRICS_PREFIX, cpu_pct="float", mem_pct="float", disk_pct="float", load="float"
)


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
