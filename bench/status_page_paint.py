"""Status page first paint with 1,000 checks, in headless Debian Chromium (Playwright).

Why: the on-call page must be usable at once on a large installation. This starts a real
``esbridge serve`` with N cheap count checks on one seeded index (mixed OK / WARNING /
CRITICAL / UNKNOWN), evaluates each once (interval 1h, then "run now" for every check so
nothing is PENDING), then loads ``/`` in a fresh browser context several times and reports:

- first-contentful-paint (``performance.getEntriesByType('paint')``);
- the time until the last row exists (``esbridgeFirstRender.ms``: performance.now() taken by
  app.js right after it rendered every row, which includes fetching /api/v1/checks).

    .venv/bin/python bench/status_page_paint.py [--es-url http://127.0.0.1:9200] \
        [--checks 1000] [--loads 5]

Without --es-url (and without $ESBRIDGE_BENCH_ES_URL) it starts its own Elasticsearch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from esbridge_dev.chromium import CHROMIUM, CHROMIUM_ARGS
from esbridge_dev.seeding import seed
from esbridge_dev.service import EsbridgeProcess


def check_yaml(n: int, index: str, missing: str) -> str:
    """N count checks; thresholds chosen so the states mix like a real installation."""
    lines = ["defaults:", f"  index: {index}", "  interval: 1h", "  window: 1h", "checks:"]
    teams = ["web", "api", "db", "search", "payments"]
    for i in range(n):
        kind = i % 20
        name = f"{teams[i % 5]}-check-{i:04d}"
        lines += [f"  - name: {name}", "    kind: count", f"    tags: [{teams[i % 5]}]"]
        if kind == 0:  # CRITICAL: 60 errors > 10
            lines += ['    query: "status:>=500"', "    critical: 10"]
        elif kind in (1, 2):  # WARNING
            lines += ['    query: "status:>=500"', "    warning: 20", "    critical: 100"]
        elif kind == 3:  # UNKNOWN: the index does not exist
            lines += [f"    index: {missing}", "    critical: 10"]
        else:  # OK
            lines += ['    query: "status:404"', "    warning: 500", "    critical: 1000"]
        lines.append(f"    description: Synthetic check {i} for the first-paint benchmark")
    return "\n".join(lines) + "\n"


def run_all(svc: EsbridgeProcess, names: list[str]) -> None:
    with httpx.Client(base_url=svc.url, timeout=60) as client:

        def run(name: str) -> int:
            return client.post(f"/api/v1/checks/{name}/run").status_code

        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(run, names))
    bad = [c for c in codes if c != 200]
    if bad:
        raise RuntimeError(f"{len(bad)} run-now requests failed: {bad[:5]}")


def measure(url: str, loads: int, expected_rows: int) -> list[tuple[float, float]]:
    from playwright.sync_api import sync_playwright

    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for _ in range(loads):
                context = browser.new_context(viewport={"width": 1280, "height": 800})
                page = context.new_page()
                page.goto(url + "/")
                page.wait_for_function("() => window.esbridgeFirstRender", timeout=60_000)
                fcp, rendered, rows = page.evaluate(
                    """() => [
                        (performance.getEntriesByType('paint')
                            .find(e => e.name === 'first-contentful-paint') || {}).startTime,
                        window.esbridgeFirstRender.ms,
                        document.querySelectorAll('#rows tr[data-name]').length,
                    ]"""
                )
                context.close()
                if rows != expected_rows:
                    raise RuntimeError(f"page rendered {rows} rows, expected {expected_rows}")
                out.append((float(fcp), float(rendered)))
        finally:
            browser.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--es-url", default=os.environ.get("ESBRIDGE_BENCH_ES_URL"))
    ap.add_argument("--checks", type=int, default=1000)
    ap.add_argument("--loads", type=int, default=5)
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        print(f"{CHROMIUM} is missing (apt-get install chromium)", file=sys.stderr)
        return 2

    server = None
    es_url = args.es_url
    if not es_url:
        from esbridge_dev.elasticsearch import ElasticsearchServer

        server = ElasticsearchServer()
        server.start()
        es_url = server.url
    suffix = uuid.uuid4().hex[:8]
    index, state_index = f"bench-paint-{suffix}", f"bench-paint-state-{suffix}"
    workdir = Path(tempfile.mkdtemp(prefix="bench-paint-"))
    svc = None
    try:
        docs = [{"status": 503, "ago": f"{i + 1}s"} for i in range(60)]
        docs += [{"status": 404, "ago": f"{i + 1}s"} for i in range(30)]
        docs += [{"status": 200, "ago": f"{i + 1}s"} for i in range(200)]
        seed(es_url, index, docs)
        checks = workdir / "checks.yaml"
        checks.write_text(check_yaml(args.checks, index, f"bench-paint-missing-{suffix}"))
        svc = EsbridgeProcess(
            es_url,
            [checks],
            state_index=state_index,
            env={"ESBRIDGE_API__ALLOW_UNAUTHENTICATED_WRITES": "true"},
        ).start(wait=120)
        names = [c["name"] for c in svc.get("/api/v1/checks").json()["checks"]]
        t0 = time.monotonic()
        run_all(svc, names)
        svc.wait_for(lambda: svc.get("/api/v1/checks").json()["counts"]["PENDING"] == 0, 120)
        listing = svc.get("/api/v1/checks")
        counts = listing.json()["counts"]
        print(
            f"{len(names)} checks evaluated in {time.monotonic() - t0:.1f} s; states {counts}; "
            f"/api/v1/checks is {len(listing.content) / 1024:.0f} KiB"
        )
        results = measure(svc.url, args.loads, len(names))
        for i, (fcp, rendered) in enumerate(results, 1):
            print(
                f"load {i}: first-contentful-paint {fcp:.0f} ms, "
                f"all rows rendered {rendered:.0f} ms"
            )
        fcp_med = statistics.median(r[0] for r in results)
        rows_med = statistics.median(r[1] for r in results)
        print(
            f"median of {len(results)} loads: first-contentful-paint {fcp_med:.0f} ms, "
            f"{len(names)}th row rendered {rows_med:.0f} ms"
        )
    finally:
        if svc is not None:
            svc.stop()
            svc.log_path.unlink(missing_ok=True)
        for name in (index, state_index):
            httpx.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)
        if server is not None:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
