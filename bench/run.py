"""esbridge benchmarks: cost per check against the physical limit, and the service at scale.

    .venv/bin/python bench/run.py            # full: writes bench/RESULTS.md + bench/results.json
    .venv/bin/python bench/run.py --smoke    # small and quick: writes bench/out/

The runner starts its own Elasticsearch (``ElasticsearchServer``; ``--es-url`` reuses one,
for debugging only: the data set is written into it; ``--backend opensearch`` starts
OpenSearch instead), seeds it with ``sampledata.backfill`` and measures, in one run:

1. cycle cost: ``Runner.run`` vs the limit (the same ``_msearch`` bodies sent raw) vs naive
   (one ``_search`` per check), wall time, requests, client CPU;
2. evaluation CPU per check, Elasticsearch excluded;
3. scheduler lateness and skipped runs of a real ``esbridge serve``;
4. plugin start-up cost (``check_esbridge`` vs bare python vs ``check_http``; ``esbridge run``);
5. ``/metrics`` scrape time and size with many series;
6. service memory with many checks;
7. the JSON API under concurrent load (``wrk``).

Every figure is reported as min/median/max over repeated runs. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import platform
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "service"))

import benchlib  # noqa: E402
import esbridge  # noqa: E402
from benchlib import Figures  # noqa: E402
from esbridge.config import ConnectionConfig  # noqa: E402
from esbridge.errors import ESError  # noqa: E402
from esbridge.esclient import Connections  # noqa: E402
from esbridge.evaluate import evaluate  # noqa: E402
from esbridge.models import CheckDefinition  # noqa: E402
from esbridge.planner import SearchRequest, plan  # noqa: E402
from esbridge.runner import Runner  # noqa: E402
from esbridge.searchmerge import merge  # noqa: E402
from esbridge.serve import tune_gc  # noqa: E402
from esbridge_dev import sampledata  # noqa: E402
from esbridge_dev.elasticsearch import ES8, ElasticsearchServer  # noqa: E402
from esbridge_dev.opensearch import OPENSEARCH  # noqa: E402
from esbridge_dev.service import EsbridgeProcess  # noqa: E402

LATENESS = "esbridge_scheduler_lateness_seconds"
SKIPPED = "esbridge_scheduler_skipped_runs_total"
SYSTEM_PYTHON = "/usr/bin/python3"
CHECK_HTTP = "/usr/lib/nagios/plugins/check_http"
PLUGIN = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"


@dataclass(frozen=True)
class Profile:
    """Sizes of one mode (full or smoke)."""

    name: str
    repeats: int
    heap: str
    backfill_minutes: float
    log_rate: float  # docs/s
    metrics_interval: float  # s
    hosts: int
    services: int
    cycle_sizes: tuple[tuple[str, int], ...]
    eval_loops: int
    sched_checks: int
    sched_interval: float
    sched_seconds: float
    memory_checks: int
    memory_interval: float
    memory_cycles: int
    scrape_checks: int
    scrape_groups: int
    scrapes: int
    cold_scrapes: int
    scrape_interval: int  # s, the checks' interval in the scrape phase (cold scrapes wait it)
    api_clients: int
    api_seconds: float
    plugin_runs: int
    esbridge_runs: int
    future_minutes: float  # data continues this far past the start: windows stay full


FULL = Profile(
    name="full",
    repeats=5,
    heap="2g",
    backfill_minutes=24 * 60,
    log_rate=1_000_000 / 86400 * 1.02,  # a bit over 1 M docs in 24 h
    metrics_interval=10,
    hosts=50,
    services=20,
    cycle_sizes=(("small", 100), ("medium", 1000), ("large", 5000)),
    eval_loops=20,
    sched_checks=1000,
    sched_interval=30,
    sched_seconds=180,
    memory_checks=5000,
    memory_interval=30,
    memory_cycles=3,
    scrape_checks=1000,
    scrape_groups=10,
    scrapes=200,
    cold_scrapes=7,
    scrape_interval=30,
    api_clients=50,
    api_seconds=30,
    plugin_runs=20,
    esbridge_runs=5,
    future_minutes=60,
)
SMOKE = Profile(
    name="smoke",
    repeats=1,
    heap="512m",
    backfill_minutes=60,
    log_rate=20_000 / 7200,
    metrics_interval=60,
    hosts=50,
    services=20,
    cycle_sizes=(("small", 20), ("medium", 100), ("large", 400)),
    eval_loops=20,
    sched_checks=100,
    sched_interval=5,
    sched_seconds=12,
    memory_checks=500,
    memory_interval=5,
    memory_cycles=2,
    scrape_checks=100,
    scrape_groups=10,
    scrapes=40,
    cold_scrapes=3,
    scrape_interval=5,
    api_clients=10,
    api_seconds=3,
    plugin_runs=10,
    esbridge_runs=2,
    future_minutes=15,
)

GOALS: list[tuple[str, str, str, float, str]] = [
    # (figure key, goal text, comparison, target, note)
    ("cycle.{big}.single_ratio_to_limit", "esbridge wall <= 1.2 x limit", "<=", 1.2, ""),
    ("cycle.medium.single_ratio_to_limit", "same at N=1000", "<=", 1.2, ""),
    ("cycle.medium.ratio_to_limit", "merged: faster than the limit (N=1000)", "<=", 1.0, ""),
    ("cycle.medium.es_cpu_to_naive", "merged: ES CPU <= 0.5 x naive (N=1000)", "<=", 0.5, ""),
    ("cycle.medium.speedup_vs_naive", ">= 3 x faster than naive (N=1000)", ">=", 3.0, ""),
    ("cycle.{big}.esbridge.checks_per_request", ">= 50 checks per request", ">=", 50.0, ""),
    ("cycle.{big}.esbridge.us_cpu_per_check", "client CPU <= 60 us per check", "<=", 60.0, ""),
    ("eval.ms_per_check", "evaluation <= 0.5 ms per check", "<=", 0.5, ""),
    ("scheduler.lateness_p99_s", "scheduler lateness p99 <= 250 ms", "<=", 0.25, ""),
    ("scheduler.skipped_runs", "skipped runs = 0", "<=", 0.0, ""),
    ("plugin.ratio_to_bare_python", "plugin (install-plugin) <= 1.3 x bare python", "<=", 1.3, ""),
    ("plugin.ratio_to_check_http", "plugin (install-plugin) <= 3 x check_http", "<=", 3.0, ""),
    ("scrape.p50_ms", "/metrics p50 <= 100 ms", "<=", 100.0, ""),
    ("scrape.cold_p50_ms", "/metrics p50 <= 100 ms, every entry changed", "<=", 100.0, ""),
    ("memory.rss_mb", "service RSS <= 250 MB", "<=", 250.0, ""),
    ("api.errors", "API under load: 0 errors", "<=", 0.0, ""),
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- environment


def machine() -> dict[str, Any]:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "memory_gb": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "loadavg_start": list(os.getloadavg()),
    }


def versions(es_url: str) -> dict[str, str]:
    import elasticsearch
    import opensearchpy

    try:
        r = httpx.get(f"{es_url}/_nodes/_local/version", timeout=10)
        es_version = next(iter(r.json()["nodes"].values()))["version"]
    except (httpx.HTTPError, ValueError, KeyError, StopIteration):
        es_version = "?"
    wrk = shutil.which("wrk")
    wrk_version = "-"
    if wrk:
        out = subprocess.run([wrk, "-v"], capture_output=True, text=True).stdout
        found = re.search(r"wrk (\S+)", out)
        wrk_version = found.group(1) if found else "?"
    return {
        "esbridge": esbridge.__version__,
        "elasticsearch": es_version,
        "python": platform.python_version(),
        "elasticsearch-py": elasticsearch.__versionstr__,
        "opensearch-py": opensearchpy.__versionstr__,
        "httpx": httpx.__version__,
        "wrk": wrk_version,
    }


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --------------------------------------------------------------------------- 1. cycle cost


def _ndjson(plans: list[SearchRequest]) -> bytes:
    parts = []
    for p in plans:
        parts.append(json.dumps(p.header(), separators=(",", ":")))
        parts.append(json.dumps(p.body, separators=(",", ":")))
    return ("\n".join(parts) + "\n").encode()


async def naive_client(connection: Any, plans: list[SearchRequest], timeout: float) -> int:
    """Naive: one ``_search`` per check through esbridge's own client, transport, in-flight
    bound and error mapping (``Connection.raw``), so the comparison with esbridge measures
    batching, not one HTTP library against another. Answers are parsed (the client does),
    not evaluated. Returns the number of failed searches."""
    params = "allow_no_indices=false&ignore_unavailable=false"

    async def one(p: SearchRequest) -> int:
        index = urllib.parse.quote(p.index, safe=",*")
        try:
            await connection.raw("POST", f"/{index}/_search?{params}", p.body, timeout)
        except ESError:
            return 1
        return 0

    return sum(await asyncio.gather(*(one(p) for p in plans)))


_NODE_PIDS: dict[str, list[int]] = {}


def _local_node_pids(es_url: str) -> list[int]:
    """The nodes' process ids when they run on this machine (a JVM with that pid), else []."""
    if es_url not in _NODE_PIDS:
        r = httpx.get(f"{es_url}/_nodes/process", timeout=30)
        r.raise_for_status()
        pids = []
        for node in r.json()["nodes"].values():
            pid = int(node["process"]["id"])
            cmdline = Path(f"/proc/{pid}/cmdline")
            with contextlib.suppress(OSError):
                if b"java" in cmdline.read_bytes():
                    pids.append(pid)
        _NODE_PIDS[es_url] = pids
    return _NODE_PIDS[es_url]


def es_cpu_ms(es_url: str) -> float:
    """Elasticsearch's CPU so far, in ms, summed over its nodes (the benchmark runs one).

    From ``/proc/<pid>/stat`` (10 ms ticks) when the node runs here: the node stats'
    ``process.cpu.total_in_millis`` is refreshed only once a second, so a cycle shorter than
    that read 0 there, or a whole second. Node stats only for a node elsewhere.
    """
    pids = _local_node_pids(es_url)
    if pids:
        return sum(benchlib.cpu_seconds(pid) for pid in pids) * 1000.0
    r = httpx.get(f"{es_url}/_nodes/stats/process", timeout=30)
    r.raise_for_status()
    return float(sum(n["process"]["cpu"]["total_in_millis"] for n in r.json()["nodes"].values()))


class RawSender:
    """The limit and the httpx naive way: a minimal httpx loop that ignores the answers."""

    def __init__(self, url: str, in_flight: int, batch: int) -> None:
        self.url = url
        self.in_flight = in_flight
        self.batch = batch
        self.client = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=in_flight))
        self.requests = 0
        self.errors = 0

    async def close(self) -> None:
        await self.client.aclose()

    async def msearch(self, plans: list[SearchRequest]) -> None:
        sem = asyncio.Semaphore(self.in_flight)

        async def one(chunk: list[SearchRequest]) -> None:
            body = _ndjson(chunk)
            async with sem:
                r = await self.client.post(
                    f"{self.url}/_msearch",
                    content=body,
                    headers={"content-type": "application/x-ndjson"},
                )
                _ = r.content
                self.requests += 1
                self.errors += r.status_code != 200

        chunks = [plans[i : i + self.batch] for i in range(0, len(plans), self.batch)]
        await asyncio.gather(*(one(c) for c in chunks))

    async def naive(self, plans: list[SearchRequest]) -> None:
        sem = asyncio.Semaphore(self.in_flight)

        async def one(p: SearchRequest) -> None:
            index = urllib.parse.quote(p.index, safe=",*")
            body = json.dumps(p.body, separators=(",", ":")).encode()
            async with sem:
                r = await self.client.post(
                    f"{self.url}/{index}/_search",
                    params={
                        "allow_no_indices": "false",
                        "ignore_unavailable": "false",
                        "expand_wildcards": "open,closed",
                    },
                    content=body,
                    headers={"content-type": "application/json"},
                )
                _ = r.content
                self.requests += 1
                self.errors += r.status_code != 200

        await asyncio.gather(*(one(p) for p in plans))


async def cycle_phase(
    es_url: str, checks: list[CheckDefinition], repeats: int, figs: Figures, role: str, n: int
) -> list[tuple[CheckDefinition, Any]]:
    """Warm-up + ``repeats`` timed cycles of each method; returns captured answers."""
    config = ConnectionConfig(urls=(es_url,))
    # esbridge as shipped merges searches (searchmerge); "esbridge_single" sends one search
    # per check, the same searches as the limit, so its ratio to the limit is the client's cost.
    connections = Connections(
        {"default": config, "single": ConnectionConfig(urls=(es_url,), merge_searches=False)}
    )
    connection = connections.get("default")
    runner = Runner(connections)
    single_checks = [c.model_copy(update={"cluster": "single"}) for c in checks]
    tune_gc()  # the collector settings `esbridge serve` runs with
    raw = RawSender(es_url, config.max_in_flight, config.max_searches_per_request)
    timeout = runner.default_timeout
    prefix = f"cycle.{role}"

    def plans_at(now: float) -> list[SearchRequest]:
        moment = dt.datetime.fromtimestamp(now, dt.UTC)
        out = [plan(c, moment, runner.timeout_of(c)) for c in checks]
        return [p for p in out if isinstance(p, SearchRequest)]

    def record_es_cpu(method: str, es0: float) -> None:
        # Elasticsearch's own CPU for the cycle (the node is idle otherwise; the stats
        # call itself is in the figure for every method alike, ~1 ms).
        es = es_cpu_ms(es_url) - es0
        figs.add(f"{prefix}.{method}.es_cpu_ms", es, "ms", "ES process CPU (/proc of its JVM)")
        figs.add(f"{prefix}.{method}.es_us_cpu_per_check", es / n * 1e3, "us")

    async def run_esbridge(now: float, record: bool, method: str = "esbridge") -> float:
        used = connections.get("single" if method == "esbridge_single" else "default")
        before, searches = used.stats.requests, used.stats.searches
        es0 = es_cpu_ms(es_url) if record else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = await runner.run(single_checks if method == "esbridge_single" else checks, now)
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        requests = used.stats.requests - before
        errors = sum(1 for r in results if r.error_kind in _FAILURES)
        if record:
            what = "merged searches" if method == "esbridge" else "one search per check"
            record_es_cpu(method, es0)
            figs.add(f"{prefix}.{method}.wall_s", wall, "s", f"Runner.run, {what}, N={n}")
            figs.add(f"{prefix}.{method}.cpu_s", cpu, "s", "esbridge process CPU")
            figs.add(f"{prefix}.{method}.requests", requests, "", "ES requests (stats)")
            figs.add(f"{prefix}.{method}.searches", used.stats.searches - searches, "")
            figs.add(f"{prefix}.{method}.checks_per_request", n / max(1, requests), "")
            figs.add(f"{prefix}.{method}.errors", errors, "", "results failed by ES")
            figs.add(f"{prefix}.{method}.us_cpu_per_check", cpu / n * 1e6, "us")
        return wall

    async def run_raw(method: str, now: float, record: bool) -> float:
        plans = plans_at(now)  # planning is not part of the limit
        if method == "limit_merged":  # the same checks, merged where they can be (searchmerge)
            plans = [search.request for search in merge(plans)]
        before = raw.requests
        es0 = es_cpu_ms(es_url) if record else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        await (raw.naive(plans) if method == "naive_httpx" else raw.msearch(plans))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if record:
            record_es_cpu(method, es0)
            figs.add(f"{prefix}.{method}.wall_s", wall, "s", f"raw httpx {method}, N={n}")
            figs.add(f"{prefix}.{method}.cpu_s", cpu, "s", "client CPU")
            figs.add(f"{prefix}.{method}.us_cpu_per_check", cpu / n * 1e6, "us")
            figs.add(f"{prefix}.{method}.requests", raw.requests - before, "")
        return wall

    async def run_naive(now: float, record: bool) -> float:
        plans = plans_at(now)
        before = connection.stats.requests
        es0 = es_cpu_ms(es_url) if record else 0.0
        cpu0, t0 = time.process_time(), time.perf_counter()
        failed = await naive_client(connection, plans, timeout.total_seconds())
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
        if record:
            record_es_cpu("naive", es0)
            figs.add(f"{prefix}.naive.wall_s", wall, "s", f"one search per check, N={n}")
            figs.add(f"{prefix}.naive.cpu_s", cpu, "s", "client CPU")
            figs.add(f"{prefix}.naive.us_cpu_per_check", cpu / n * 1e6, "us")
            figs.add(f"{prefix}.naive.requests", connection.stats.requests - before, "")
            figs.add(f"{prefix}.naive.errors", failed, "", "searches that failed")
        return wall

    base = time.time()
    tick = 0

    def next_now() -> float:
        # Every cycle of every method gets its own `now` (like consecutive production
        # cycles): the bodies differ, so the shard request cache never answers from a
        # previous method's identical request.
        nonlocal tick
        tick += 1
        return base + tick * 0.737 + random.random() * 0.01

    methods: list[tuple[str, Callable[[float, bool], Any]]] = [
        ("esbridge", run_esbridge),
        ("esbridge_single", lambda now, rec: run_esbridge(now, rec, "esbridge_single")),
        ("limit", lambda now, rec: run_raw("limit", now, rec)),
        ("limit_merged", lambda now, rec: run_raw("limit_merged", now, rec)),
        ("naive", run_naive),
        ("naive_httpx", lambda now, rec: run_raw("naive_httpx", now, rec)),
    ]
    try:
        for _, fn in methods:  # untimed warm-up of each method
            await fn(next_now(), False)
        for r in range(repeats):
            k = r % len(methods)
            order = methods[k:] + methods[:k]  # rotate: no method always first
            walls = {}
            for name, fn in order:
                walls[name] = await fn(next_now(), True)
            figs.add(f"{prefix}.ratio_to_limit", walls["esbridge"] / walls["limit"], "x")
            single = walls["esbridge_single"] / walls["limit"]
            figs.add(f"{prefix}.single_ratio_to_limit", single, "x", "same searches as the limit")
            merged = walls["esbridge"] / walls["limit_merged"]
            figs.add(f"{prefix}.merged_ratio_to_limit", merged, "x", "same searches, merged")
            figs.add(f"{prefix}.speedup_vs_naive", walls["naive"] / walls["esbridge"], "x")
            figs.add(
                f"{prefix}.speedup_vs_naive_httpx", walls["naive_httpx"] / walls["esbridge"], "x"
            )
        figs.add(f"{prefix}.raw_errors", raw.errors, "", "non-200 answers to the raw loops")
        es_naive = figs.median(f"{prefix}.naive.es_cpu_ms")
        for method in ("esbridge", "esbridge_single", "limit", "limit_merged"):
            es = figs.median(f"{prefix}.{method}.es_cpu_ms")
            if es is not None and es_naive:
                key = "es_cpu_to_naive" if method == "esbridge" else f"{method}.es_cpu_to_naive"
                figs.add(f"{prefix}.{key}", es / es_naive, "x", "ES CPU, medians")
        # Capture real answers once for the evaluation benchmark.
        now = next_now()
        searches = plans_at(now)
        answers = await connection.msearch(searches, timeout.total_seconds())
        by_name = {s.check: a for s, a in zip(searches, answers, strict=True)}
        return [(c, (by_name[c.name], now)) for c in checks if c.name in by_name]
    finally:
        await raw.close()
        await connections.close()


_FAILURES = {"unreachable", "timeout", "throttled", "rejected", "forbidden", "auth", "internal"}


def eval_phase(
    captured: list[tuple[CheckDefinition, Any]], repeats: int, loops: int, figs: Figures
) -> None:
    """CPU per ``evaluate()`` call over real answers, Elasticsearch excluded."""
    pairs = [(c, a, now) for c, (a, now) in captured]
    errors = sum(1 for _, a, _ in pairs if isinstance(a, ESError))
    for _ in range(repeats):
        cpu0 = time.process_time()
        for _ in range(loops):
            for check, answer, now in pairs:
                evaluate(check, answer, now)
        cpu = time.process_time() - cpu0
        figs.add("eval.ms_per_check", cpu / (loops * len(pairs)) * 1000, "ms", "evaluate() CPU")
    figs.add("eval.answers", len(pairs), "", "captured answers")
    figs.add("eval.answer_errors", errors, "", "captured answers that were errors")


# --------------------------------------------------------------------------- service phases


@contextlib.contextmanager
def service(
    es_url: str, mapping: dict[str, Any], workdir: Path, tag: str
) -> Iterator[EsbridgeProcess]:
    paths = benchlib.write(mapping, workdir, tag)
    index = f"esbridge-bench-state-{tag}-{uuid.uuid4().hex[:8]}"
    proc = EsbridgeProcess(
        es_url,
        checks=paths,
        state_index=index,
        env={"ESBRIDGE_LOG__LEVEL": "WARNING"},
    )
    proc.start(wait=120)
    try:
        yield proc
    finally:
        code = proc.stop()
        if code not in (0, None, -15):  # uvicorn re-raises SIGTERM after a clean stop
            log(f"service {tag} exited with {code}; log tail:\n{proc.log()[-2000:]}")
        proc.log_path.unlink(missing_ok=True)
        with contextlib.suppress(httpx.HTTPError):
            httpx.delete(f"{es_url}/{index}*", timeout=30)


def metric_value(text: str, name: str) -> float:
    vals = benchlib.samples(text, name)
    return vals[0][1] if vals else float("nan")


def wait_evaluated(proc: EsbridgeProcess, n: int, timeout: float) -> None:
    """Until every check has a result (the API's counts cover them all)."""

    def done() -> bool:
        text = proc.get("/metrics").text
        runs = benchlib.samples(text, "esbridge_check_runs_total")
        return sum(1 for _, v in runs if v >= 1) >= n

    proc.wait_for(done, timeout=timeout, interval=1.0)


def scheduler_phase(es_url: str, prof: Profile, workdir: Path, figs: Figures) -> None:
    hosts = sampledata.host_names(prof.hosts)
    services = sampledata.service_names(prof.services)
    interval = prof.sched_interval
    mapping = benchlib.check_mix(
        prof.sched_checks, hosts, services, interval=f"{interval:g}s", prefix="sched"
    )
    with service(es_url, mapping, workdir, "sched") as proc:
        wait_evaluated(proc, prof.sched_checks, timeout=interval * 3 + 60)
        windows = max(1, prof.repeats)
        span = prof.sched_seconds / windows
        prev = proc.get("/metrics").text
        first = prev
        for _ in range(windows):
            time.sleep(span)
            cur = proc.get("/metrics").text
            delta = benchlib.bucket_delta(
                benchlib.histogram(cur, LATENESS), benchlib.histogram(prev, LATENESS)
            )
            if delta and delta[-1][1] > 0:
                what = f"per {span:.0f} s window; {prof.sched_checks} checks / {interval:g} s"
                figs.add(
                    "scheduler.lateness_p50_s", benchlib.bucket_quantile(delta, 0.5), "s", what
                )
                figs.add("scheduler.lateness_p99_s", benchlib.bucket_quantile(delta, 0.99), "s")
                figs.add("scheduler.window_runs", delta[-1][1], "", "runs per window")
            prev = cur
        total = benchlib.bucket_delta(
            benchlib.histogram(prev, LATENESS), benchlib.histogram(first, LATENESS)
        )
        what = f"whole {prof.sched_seconds:g} s"
        figs.add("scheduler.total_lateness_p50_s", benchlib.bucket_quantile(total, 0.5), "s", what)
        figs.add("scheduler.total_lateness_p99_s", benchlib.bucket_quantile(total, 0.99), "s")
        figs.add("scheduler.runs", total[-1][1] if total else 0, "", "runs observed")
        figs.add("scheduler.skipped_runs", metric_value(prev, SKIPPED), "", "since start")
        figs.add("scheduler.rss_mb", rss_mb(proc.proc.pid), "MB")  # type: ignore[union-attr]


def memory_phase(es_url: str, prof: Profile, workdir: Path, figs: Figures) -> None:
    hosts = sampledata.host_names(prof.hosts)
    services = sampledata.service_names(prof.services)
    interval = prof.memory_interval
    mapping = benchlib.check_mix(
        prof.memory_checks, hosts, services, interval=f"{interval:g}s", prefix="mem"
    )
    with service(es_url, mapping, workdir, "mem") as proc:
        pid = proc.proc.pid  # type: ignore[union-attr]
        figs.add("memory.rss_loaded_mb", rss_mb(pid), "MB", "right after start")
        wait_evaluated(proc, prof.memory_checks, timeout=interval * 4 + 120)
        for _ in range(prof.memory_cycles):
            time.sleep(interval)
            figs.add("memory.rss_mb", rss_mb(pid), "MB", f"{prof.memory_checks} checks running")
        text = proc.get("/metrics").text
        figs.add("memory.skipped_runs", metric_value(text, SKIPPED), "", "coalesced runs")


def scrape_api_plugin_phase(
    es_url: str, prof: Profile, workdir: Path, figs: Figures, extra: dict[str, Any]
) -> None:
    hosts = sampledata.host_names(prof.hosts)
    mapping = benchlib.grouped_mix(
        prof.scrape_checks, hosts, prof.scrape_groups, f"{prof.scrape_interval}s"
    )
    names = [c["name"] for c in mapping["checks"]]
    with service(es_url, mapping, workdir, "scrape") as proc:
        wait_evaluated(proc, prof.scrape_checks, timeout=180)
        figs.add("scrape.rss_mb", rss_mb(proc.proc.pid), "MB")  # type: ignore[union-attr]
        scrape(proc, prof, figs)
        # the plugin's start-up before the API load: a process start is timed against bare
        # Python, and the load phase leaves the machine busy (load average ~5-17) for minutes
        log("plugin start-up")
        plugin(proc, prof, names[1], es_url, workdir, figs, extra)
        log("API load")
        api_load(proc, prof, names, workdir, figs, extra)


def scrape(proc: EsbridgeProcess, prof: Profile, figs: Figures) -> None:
    """``prof.scrapes`` sequential scrapes in total, split over the repeats (as Prometheus)."""
    per_repeat = max(10, prof.scrapes // prof.repeats)
    every: list[float] = []
    text = ""
    with httpx.Client(timeout=30) as client:
        client.get(proc.url + "/metrics")  # warm
        for _ in range(prof.repeats):
            times = []
            for _ in range(per_repeat):
                t0 = time.perf_counter()
                r = client.get(proc.url + "/metrics")
                times.append(time.perf_counter() - t0)
                text = r.text
            every += times
            what = f"{per_repeat} sequential scrapes per repeat"
            figs.add("scrape.p50_ms", benchlib.percentile(times, 50) * 1000, "ms", what)
            figs.add("scrape.p99_ms", benchlib.percentile(times, 99) * 1000, "ms")
            figs.add("scrape.bytes", len(r.content), "B", "body size")
    figs.add(
        "scrape.all_p50_ms",
        benchlib.percentile(every, 50) * 1000,
        "ms",
        f"over all {len(every)} scrapes",
    )
    figs.add("scrape.all_p99_ms", benchlib.percentile(every, 99) * 1000, "ms")
    cold_scrapes(proc, prof, text, figs)
    group_series = len(benchlib.samples(text, "esbridge_group_status_code"))
    figs.add("scrape.group_series", group_series, "", "esbridge_group_status_code series")
    lines = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
    figs.add("scrape.samples", lines, "", "sample lines")


def cold_scrapes(proc: EsbridgeProcess, prof: Profile, previous: str, figs: Figures) -> None:
    """Scrapes after every check ran again since the last one (the scrape interval >= the
    check interval, common in production): every store entry changed, no cached text.

    Waits one check interval (+10 %) before each scrape; the share of checks whose
    ``esbridge_check_runs_total`` grew since the previous scrape is reported (1.0 = cold).
    """
    interval = float(prof.scrape_interval)  # the checks' interval (scrape_api_plugin_phase)
    times: list[float] = []
    shares: list[float] = []
    with httpx.Client(timeout=60) as client:
        for _ in range(prof.cold_scrapes):
            time.sleep(interval * 1.1)
            t0 = time.perf_counter()
            r = client.get(proc.url + "/metrics")
            times.append(time.perf_counter() - t0)
            before = dict(benchlib.samples(previous, "esbridge_check_runs_total"))
            after = benchlib.samples(r.text, "esbridge_check_runs_total")
            grew = sum(1 for labels, v in after if v > before.get(labels, v))
            shares.append(grew / max(1, len(after)))
            previous = r.text
    what = f"{len(times)} scrapes, each after every check ran again"
    figs.add("scrape.cold_p50_ms", benchlib.percentile(times, 50) * 1000, "ms", what)
    figs.add("scrape.cold_max_ms", max(times) * 1000, "ms")
    figs.add("scrape.cold_changed_share", min(shares), "", "checks changed since last scrape")


WRK_LUA = """
local names = {%s}
local count = #names
math.randomseed(%d)
request = function()
  return wrk.format("GET", "/api/v1/checks/" .. names[math.random(count)])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {"requests":%%d,"duration_us":%%d,"connect":%%d,"read":%%d,"write":%%d,' ..
    '"status":%%d,"timeout":%%d,"p50_us":%%d,"p99_us":%%d,"max_us":%%d}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
end
"""


def api_load(
    proc: EsbridgeProcess,
    prof: Profile,
    names: list[str],
    workdir: Path,
    figs: Figures,
    extra: dict[str, Any],
) -> None:
    wrk = shutil.which("wrk")
    if wrk is None:
        extra.setdefault("notes", []).append("wrk missing: API load measured with httpx")
        return api_load_httpx(proc, prof, names, figs)
    script = workdir / "api.lua"
    script.write_text(WRK_LUA % (",".join(json.dumps(n) for n in names), 42))
    for _ in range(prof.repeats):
        out = subprocess.run(
            [
                wrk,
                "-t",
                "2",
                "-c",
                str(prof.api_clients),
                "-d",
                f"{prof.api_seconds:g}s",
                "--timeout",
                "10s",
                "-s",
                str(script),
                proc.url,
            ],
            capture_output=True,
            text=True,
            timeout=prof.api_seconds + 60,
        )
        got = benchlib.parse_wrk(out.stdout.splitlines())
        errors = got["connect"] + got["read"] + got["write"] + got["status"] + got["timeout"]
        figs.add(
            "api.rps",
            got["requests"] / (got["duration_us"] / 1e6),
            "req/s",
            f"wrk, {prof.api_clients} connections, {prof.api_seconds:g} s",
        )
        figs.add("api.p50_ms", got["p50_us"] / 1000, "ms")
        figs.add("api.p99_ms", got["p99_us"] / 1000, "ms")
        figs.add("api.errors", errors, "", "socket errors + non-2xx/3xx + timeouts")
        figs.add("api.requests", got["requests"], "")
    extra["api_tool"] = "wrk"


def api_load_httpx(proc: EsbridgeProcess, prof: Profile, names: list[str], figs: Figures) -> None:
    """Fallback without wrk: an httpx async loop in a separate process."""
    code = f"""
import asyncio, json, random, time, httpx
names = {names!r}
async def main():
    lat, errors, end = [], 0, time.perf_counter() + {prof.api_seconds}
    async with httpx.AsyncClient(base_url={proc.url!r}, timeout=10,
            limits=httpx.Limits(max_connections={prof.api_clients})) as c:
        async def worker():
            nonlocal errors
            while time.perf_counter() < end:
                t0 = time.perf_counter()
                try:
                    r = await c.get("/api/v1/checks/" + random.choice(names))
                    errors += r.status_code >= 400
                except httpx.HTTPError:
                    errors += 1
                lat.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range({prof.api_clients})))
        wall = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({{"requests": len(lat), "wall": wall, "errors": errors,
        "p50": lat[len(lat)//2], "p99": lat[int(len(lat)*0.99)]}}))
asyncio.run(main())
"""
    for _ in range(prof.repeats):
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=prof.api_seconds + 60,
        )
        got = json.loads(out.stdout.strip().splitlines()[-1])
        figs.add("api.rps", got["requests"] / got["wall"], "req/s", "httpx loop")
        figs.add("api.p50_ms", got["p50"] * 1000, "ms")
        figs.add("api.p99_ms", got["p99"] * 1000, "ms")
        figs.add("api.errors", got["errors"], "")
        figs.add("api.requests", got["requests"], "")


def timed_child(
    cmd: list[str], cwd: str, env: dict[str, str] | None = None
) -> tuple[float, float, int]:
    """(wall s, user+sys CPU s, exit code) of one child process, from wait4's rusage."""
    t0 = time.perf_counter()
    child = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - t0
    child.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_utime + usage.ru_stime, child.returncode


def plugin(
    proc: EsbridgeProcess,
    prof: Profile,
    name: str,
    es_url: str,
    workdir: Path,
    figs: Figures,
    extra: dict[str, Any],
) -> None:
    """Plugin start-up cost as Nagios pays it: absolute paths, run from outside the project."""
    port = urllib.parse.urlsplit(proc.url).port
    one = workdir / "one-check.yaml"
    one.write_text(
        benchlib.dump(
            benchlib.check_mix(
                1, sampledata.host_names(prof.hosts), sampledata.service_names(prof.services)
            )
        )
    )
    one_name = "bench-00000"
    esbridge_bin = str(Path(sys.executable).parent / "esbridge")
    # The plugin as the documented install lays it out (`esbridge install-plugin`: a
    # "#!/usr/bin/python3 -IS" script importing the compiled module), and the copied file.
    plugins = workdir / "plugins"
    plugins.mkdir(exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "esbridge", "install-plugin", "--python", SYSTEM_PYTHON, plugins],
        check=True,
        capture_output=True,
        timeout=120,
    )
    cmds = {
        "check_esbridge": [str(plugins / "check_esbridge"), "-H", proc.url, "-C", name],
        "check_esbridge_file": [SYSTEM_PYTHON, "-I", "-S", str(PLUGIN), "-H", proc.url, "-C", name],
        "bare_python": [SYSTEM_PYTHON, "-I", "-S", "-c", "pass"],
        "check_http": [CHECK_HTTP, "-H", "127.0.0.1", "-p", str(port), "-u", "/healthz"],
    }
    runs = {key: prof.plugin_runs for key in cmds}
    if Path(esbridge_bin).exists():
        cmds["esbridge_run"] = [
            esbridge_bin,
            "run",
            "--es-url",
            es_url,
            "--checks",
            str(one),
            one_name,
        ]
        runs["esbridge_run"] = prof.esbridge_runs
    available = {k: v for k, v in cmds.items() if Path(v[0]).exists()}
    codes: dict[str, set[int]] = {}
    cwd = tempfile.gettempdir()
    for _ in range(prof.repeats):
        medians = {}
        for key, cmd in available.items():
            walls, cpus = [], []
            for _ in range(runs[key]):
                wall, cpu, code = timed_child(cmd, cwd)
                walls.append(wall)
                cpus.append(cpu)
                codes.setdefault(key, set()).add(code)
            medians[key] = benchlib.percentile(walls, 50)
            figs.add(
                f"plugin.{key}_ms", medians[key] * 1000, "ms", f"median wall of {runs[key]} runs"
            )
            figs.add(
                f"plugin.{key}_cpu_ms",
                benchlib.percentile(cpus, 50) * 1000,
                "ms",
                "user+sys CPU (rusage)",
            )
        for figure, top, bottom, what in (
            (
                "ratio_to_bare_python",
                "check_esbridge",
                "bare_python",
                "esbridge install-plugin's script",
            ),
            (
                "file_ratio_to_bare_python",
                "check_esbridge_file",
                "bare_python",
                "the copied single file, compiled on every run",
            ),
            ("ratio_to_check_http", "check_esbridge", "check_http", ""),
        ):
            if top in medians and bottom in medians:
                figs.add(f"plugin.{figure}", medians[top] / medians[bottom], "x", what)
    extra["plugin_exit_codes"] = {k: sorted(v) for k, v in codes.items()}
    extra["plugin_missing"] = sorted(set(cmds) - set(available))
    colleague_scripts(proc, prof, name, es_url, figs, extra)


def colleague_scripts(
    proc: EsbridgeProcess,
    prof: Profile,
    name: str,
    es_url: str,
    figs: Figures,
    extra: dict[str, Any],
) -> None:
    """Run bench/plugin_latency.sh and bench/passive_vs_plugin.py when they exist."""
    env = {
        **os.environ,
        "ESBRIDGE_URL": proc.url,
        "ESBRIDGE_CHECK": name,
        "ESBRIDGE_ES_URL": es_url,
        "BENCH_MODE": prof.name,
        "ES_URL": es_url,  # plugin_latency.sh seeds and serves against $ES_URL: ours, never :9200
    }
    if prof.name == "smoke":
        env |= {"RUNS": "20", "WARMUP": "2"}
    jobs = []
    script = HERE / "plugin_latency.sh"
    if script.exists():
        jobs.append(("plugin_latency", ["bash", str(script)]))
    passive = HERE / "passive_vs_plugin.py"
    if passive.exists():
        small = ["--results", "100", "--services", "20"] if prof.name == "smoke" else []
        jobs.append(("passive_vs_plugin", [sys.executable, str(passive), *small]))
    for key, cmd in jobs:
        log(f"bench/{Path(cmd[1]).name}")
        try:
            out = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                env=env,
                timeout=600 if prof.name == "full" else 180,
            )
            extra[key] = {
                "exit": out.returncode,
                "stdout": out.stdout[-6000:],
                "stderr": out.stderr[-2000:],
            }
            source = f"from bench/{Path(cmd[1]).name}"
            for k, v in colleague_numbers(out.stdout).items():
                figs.add(f"{key}.{k}", v, "", source)
        except subprocess.TimeoutExpired:
            extra[key] = {"exit": "timeout"}


_PASSIVE_LINE = re.compile(
    r"^\s*(plugin runs|passive)\s+CPU\s+([\d.]+) s\s+\(\s*([\d.]+) ms/result\)\s+wall\s+([\d.]+) s"
)
_PASSIVE_RATIO = re.compile(r"plugin / passive CPU:\s*([\d.]+)x")


def _passive_numbers(stdout: str) -> dict[str, float]:
    """The figures bench/passive_vs_plugin.py prints as text."""
    out: dict[str, float] = {}
    for line in stdout.splitlines():
        m = _PASSIVE_LINE.match(line)
        if m:
            who = "plugin" if m.group(1) == "plugin runs" else "passive"
            out[f"{who}_nagios_cpu_s"] = float(m.group(2))
            out[f"{who}_nagios_cpu_ms_per_result"] = float(m.group(3))
            out[f"{who}_wall_s"] = float(m.group(4))
        m = _PASSIVE_RATIO.search(line)
        if m:
            out["plugin_to_passive_cpu"] = float(m.group(1))
    return out


_TABLE_ROW = re.compile(r"^(\S.*?)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$")


def _table_numbers(stdout: str) -> dict[str, float]:
    """Median column of bench/plugin_latency.sh's table (command, median, mean, min, stddev)."""
    out: dict[str, float] = {}
    for line in stdout.splitlines():
        m = _TABLE_ROW.match(line)
        if m:
            slug = re.sub(r"[^a-z0-9]+", "_", m.group(1).lower()).strip("_")
            out[f"{slug}_median_ms"] = float(m.group(2))
    return out


def colleague_numbers(stdout: str) -> dict[str, float]:
    return _numbers(stdout) | _passive_numbers(stdout) | _table_numbers(stdout)


def _numbers(stdout: str) -> dict[str, float]:
    """Numeric fields of the last JSON object a colleague's script printed, if any."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                data = json.loads(line)
                return {
                    k: float(v)
                    for k, v in _flatten(data).items()
                    if isinstance(v, int | float) and not isinstance(v, bool)
                }
    return {}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out |= _flatten(v, f"{prefix}{k}.")
        return out
    return {prefix.rstrip("."): data}


# --------------------------------------------------------------------------- report


class _Stored:
    """The figures of a results.json, as :func:`goal_rows` reads them (``--rerender``)."""

    def __init__(self, figures: dict[str, dict[str, Any]]) -> None:
        self.figures = figures

    def median(self, key: str) -> float | None:
        figure = self.figures.get(key)
        return None if figure is None else figure.get("median")


def goal_rows(figs: Figures | _Stored, prof: Profile) -> list[dict[str, Any]]:
    big = prof.cycle_sizes[-1][0]
    rows = []
    for key, text, op, target, _ in GOALS:
        key = key.format(big=big)
        value = figs.median(key)
        met = None
        if value is not None:
            met = value <= target if op == "<=" else value >= target
        rows.append(
            {"figure": key, "goal": text, "op": op, "target": target, "median": value, "met": met}
        )
    return rows


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    if v == int(v) and abs(v) >= 10:
        return f"{int(v)}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.2f}"
    return f"{v:.3g}"


def write_report(out_dir: Path, data: dict[str, Any]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(data, indent=1, default=str) + "\n")
    m, v = data["machine"], data["versions"]
    lines = [
        f"# esbridge benchmark results ({data['mode']})",
        "",
        f"Date: {data['date']}. Wall time of the run: {data['seconds']:.0f} s. "
        f"Repeats: {data['repeats']} (every figure: min / median / max over them).",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB RAM, "
        f"kernel {m['kernel']}; load average at start {m['loadavg_start'][0]:.2f}, "
        f"at end {m.get('loadavg_end', [0])[0]:.2f}.",
        "",
        "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".",
        "",
        f"Data set: {data['dataset']['logs']} log docs over {data['dataset']['minutes']:g} min "
        f"across {data['dataset']['hosts']} hosts and {data['dataset']['services']} services, "
        f"{data['dataset']['metrics']} host metric docs; Elasticsearch heap "
        f"{data['dataset']['heap']}.",
        "",
    ]
    if data.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in data["notes"]] + [""]
    lines += ["## Goals", "", "| goal | figure | median | target | met |", "|---|---|---|---|---|"]
    for g in data["goals"]:
        met = {True: "yes", False: "**no**", None: "not measured"}[g["met"]]
        lines.append(
            f"| {g['goal']} | `{g['figure']}` | {fmt(g['median'])} | "
            f"{g['op']} {fmt(g['target'])} | {met} |"
        )
    lines += [
        "",
        "## All figures",
        "",
        "| figure | min | median | max | unit | what |",
        "|---|---|---|---|---|---|",
    ]
    for key, s in data["figures"].items():
        lines.append(
            f"| `{key}` | {fmt(s['min'])} | {fmt(s['median'])} | {fmt(s['max'])} | "
            f"{s.get('unit', '')} | {s.get('what', '')} |"
        )
    for key in ("plugin_latency", "passive_vs_plugin"):
        if isinstance(data["extra"].get(key), dict) and data["extra"][key].get("stdout"):
            lines += [
                "",
                f"## Output of bench/{key}",
                "",
                "```text",
                data["extra"][key]["stdout"].rstrip()[-3000:],
                "```",
            ]
    lines += kept_sections(out_dir / "RESULTS.md")
    lines += ["", "How each figure is measured: see bench/README.md.", ""]
    (out_dir / "RESULTS.md").write_text("\n".join(lines))


KEPT_HEADINGS = ("## OpenSearch", "<!-- replicas", "## Replicas")


def kept_sections(results_md: Path) -> list[str]:
    """The sections of an existing report that other commands wrote: ``## OpenSearch ...``
    (``--backend opensearch``, written there by hand with that command) and ``## Replicas``
    (bench/cluster.py, between its markers, one section per kind of values), so a run on
    Elasticsearch keeps them."""
    if not results_md.is_file():
        return []
    kept: list[str] = []
    keeping = False
    for line in results_md.read_text().splitlines():
        if line.startswith(("## ", "<!-- replicas", "How each figure is measured")):
            keeping = line.startswith(KEPT_HEADINGS)
        if keeping:
            kept.append(line)
    while kept and not kept[-1].strip():
        kept.pop()
    return ["", *kept] if kept else []


# --------------------------------------------------------------------------- main


def seed(es_url: str, prof: Profile, start: float) -> dict[str, Any]:
    end = start + prof.future_minutes * 60
    got = sampledata.backfill(
        es_url,
        minutes=prof.backfill_minutes,
        rate_per_s=prof.log_rate,
        now=end,
        hosts=prof.hosts,
        services=prof.services,
        metrics_interval_s=prof.metrics_interval,
        incident=sampledata.IncidentSchedule(),
    )
    return {
        **got,
        "minutes": prof.backfill_minutes,
        "hosts": prof.hosts,
        "services": prof.services,
        "heap": prof.heap,
        "ends_at": end,
    }


PHASES = ("cycle", "sched", "memory", "scrape")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="small and quick (bench/out/)")
    parser.add_argument("--repeats", type=int, help="repeats per figure (default 5 / 1 smoke)")
    parser.add_argument("--out-dir", type=Path, help="where RESULTS.md and results.json go")
    parser.add_argument("--es-url", help="reuse this Elasticsearch (debugging; gets the data set)")
    parser.add_argument(
        "--backend",
        choices=("elasticsearch", "opensearch"),
        default=os.environ.get("ESBRIDGE_BENCH_BACKEND", "elasticsearch"),
        help="which search server to start",
    )
    parser.add_argument(
        "--es-version",
        default=os.environ.get("ESBRIDGE_BENCH_ES_VERSION"),
        help=f"version of the server to start (default {ES8}; OpenSearch {OPENSEARCH.default})",
    )
    parser.add_argument("--no-seed", action="store_true", help="with --es-url: data already there")
    parser.add_argument("--only", action="append", choices=PHASES, help="run only these phases")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="pyinstrument profiles of the largest cycle and of evaluate()",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override one size of the mode, e.g. --set scrape_checks=1000",
    )
    parser.add_argument("--note", action="append", default=[], help="a line for RESULTS.md")
    parser.add_argument(
        "--rerender",
        action="store_true",
        help="only rewrite RESULTS.md from results.json (with --note lines)",
    )
    args = parser.parse_args(argv)
    prof = SMOKE if args.smoke else FULL
    if args.rerender:
        return rerender(args.out_dir or (HERE / "out" if args.smoke else HERE), args.note)
    overrides: dict[str, Any] = {"repeats": args.repeats} if args.repeats else {}
    for item in args.set:
        field_, _, value = item.partition("=")
        kind = type(getattr(prof, field_))
        overrides[field_] = kind(value) if kind is not tuple else json.loads(value)
    if overrides:
        prof = Profile(**{**prof.__dict__, **overrides})
    out_dir = args.out_dir or (HERE / "out" if args.smoke else HERE)
    phases = set(args.only or PHASES)
    started = time.time()
    figs = Figures()
    extra: dict[str, Any] = {}
    notes: list[str] = []
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        # Every process started here (esbridge run, the services) would compile every module
        # it imports, each time: `esbridge run` took 2.1 s instead of 0.9 s that way.
        log("PYTHONDONTWRITEBYTECODE is set: process starts are measured without bytecode")
        notes.append(
            "PYTHONDONTWRITEBYTECODE was set: every process started here compiled its modules "
            "at start (esbridge run, service starts); not comparable with a run without it"
        )
    info = machine()
    server = None
    workdir = Path(tempfile.mkdtemp(prefix="esbridge-bench-"))
    try:
        if args.es_url:
            es_url = args.es_url.rstrip("/")
            notes.append(f"reused Elasticsearch at {es_url} (not started by the runner)")
        else:
            if args.backend == "opensearch":
                # OpenSearch 3.x takes minutes to start on a busy 2-core machine.
                server = ElasticsearchServer(
                    version=args.es_version, heap=prof.heap, dist=OPENSEARCH, start_timeout=600
                )
            else:
                server = ElasticsearchServer(version=args.es_version or ES8, heap=prof.heap)
            log(f"starting {server.dist.product} {server.version} (heap {prof.heap})")
            server.start()
            es_url = server.url
        if args.no_seed:
            dataset = {
                "logs": 0,
                "metrics": 0,
                "minutes": prof.backfill_minutes,
                "hosts": prof.hosts,
                "services": prof.services,
                "heap": prof.heap,
            }
        else:
            log("seeding the data set")
            dataset = seed(es_url, prof, started)
            log(
                f"seeded {dataset['logs']} logs + {dataset['metrics']} metrics "
                f"in {dataset['seconds']} s"
            )
        hosts = sampledata.host_names(prof.hosts)
        services = sampledata.service_names(prof.services)
        if "cycle" in phases:
            captured: list[tuple[CheckDefinition, Any]] = []
            for role, n in prof.cycle_sizes:
                checks = benchlib.load(benchlib.check_mix(n, hosts, services))
                log(f"cycle {role}: N={n}")
                captured = asyncio.run(cycle_phase(es_url, checks, prof.repeats, figs, role, n))
            log("evaluation CPU")
            eval_phase(captured, prof.repeats, prof.eval_loops, figs)
            if args.profile:
                profile_hotspots(es_url, captured, prof, out_dir, hosts, services)
        if "sched" in phases:
            log(f"scheduler: {prof.sched_checks} checks / {prof.sched_interval:g} s")
            scheduler_phase(es_url, prof, workdir, figs)
        if "memory" in phases:
            log(f"memory: {prof.memory_checks} checks")
            memory_phase(es_url, prof, workdir, figs)
        if "scrape" in phases:
            log("scrape, plugin, API load")
            scrape_api_plugin_phase(es_url, prof, workdir, figs, extra)
        ver = versions(es_url)
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    info["loadavg_end"] = list(os.getloadavg())
    notes += extra.pop("notes", []) + list(args.note)
    notes.append(
        "Request cache: left ON (the production default); every timed cycle of every method "
        "uses its own `now`, so bodies differ and no method is answered from another's cache, "
        "exactly like consecutive production cycles. Each method gets one untimed warm-up cycle."
    )
    data = {
        "mode": prof.name,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "seconds": time.time() - started,
        "repeats": prof.repeats,
        "machine": info,
        "versions": ver,
        "dataset": dataset,
        "sizes": {role: n for role, n in prof.cycle_sizes}
        | {
            "sched_checks": prof.sched_checks,
            "memory_checks": prof.memory_checks,
            "scrape_checks": prof.scrape_checks,
            "scrape_groups": prof.scrape_groups,
        },
        "figures": figs.as_dict(),
        "goals": goal_rows(figs, prof),
        "notes": notes,
        "extra": extra,
        "rusage_self_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    write_report(out_dir, data)
    log(f"wrote {out_dir / 'RESULTS.md'} and {out_dir / 'results.json'} in {data['seconds']:.0f} s")
    return 0


def rerender(out_dir: Path, notes: list[str]) -> int:
    """Rewrite RESULTS.md (and the colleague figures) from an existing results.json."""
    data = json.loads((out_dir / "results.json").read_text())
    for key in ("plugin_latency", "passive_vs_plugin"):
        got = data["extra"].get(key)
        if isinstance(got, dict) and got.get("stdout"):
            for k, v in colleague_numbers(got["stdout"]).items():
                known = data["figures"].get(f"{key}.{k}") or {}
                data["figures"][f"{key}.{k}"] = {
                    "min": v,
                    "median": v,
                    "max": v,
                    "n": 1,
                    "unit": "",
                    "what": known.get("what") or f"from bench/{key} (one run)",
                }
    data["notes"] = list(dict.fromkeys([*data.get("notes", []), *notes]))
    # the goals as they are now, over the stored figures (a goal added since is judged too)
    data["goals"] = goal_rows(
        _Stored(data["figures"]), SMOKE if data["mode"] == SMOKE.name else FULL
    )
    write_report(out_dir, data)
    return 0


def profile_hotspots(
    es_url: str,
    captured: list[tuple[CheckDefinition, Any]],
    prof: Profile,
    out_dir: Path,
    hosts: list[str],
    services: list[str],
) -> None:
    """pyinstrument text profiles of one large cycle and of evaluate() (for a missed goal)."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        log("pyinstrument is not installed: .venv/bin/pip install pyinstrument")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    n = prof.cycle_sizes[-1][1]
    checks = benchlib.load(benchlib.check_mix(n, hosts, services))

    async def cycle() -> None:
        connections = Connections({"default": ConnectionConfig(urls=(es_url,))})
        runner = Runner(connections)
        await runner.run(checks, time.time() + 3.3)  # warm
        profiler = Profiler(interval=0.0005, async_mode="enabled")
        with profiler:
            await runner.run(checks, time.time() + 7.7)
        await connections.close()
        (out_dir / "profile-cycle.txt").write_text(profiler.output_text(show_all=False))

    asyncio.run(cycle())
    profiler = Profiler(interval=0.0002)
    with profiler:
        for _ in range(prof.eval_loops):
            for check, (answer, now) in captured:
                evaluate(check, answer, now)
    (out_dir / "profile-eval.txt").write_text(profiler.output_text(show_all=False))
    log(f"profiles in {out_dir}/profile-*.txt")


if __name__ == "__main__":
    sys.exit(main())
