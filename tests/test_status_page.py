"""The status page in a real browser (headless Debian Chromium driven by Playwright).

Everything is real: Elasticsearch with seeded documents, ``esbridge serve`` as a process, the
page served by it at ``/``. The checks cover every state (count OK/WARNING/CRITICAL, a missing
index → UNKNOWN, a grouped check with truncation) and run every 1-2 s, so the page sees real
refreshes. Screenshots land in ``test-artifacts/`` (the README copies live in ``docs/img/``).
"""

from __future__ import annotations

import re
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess

# Chromium renders what the API says: the search server's version plays no part.
pytestmark = [pytest.mark.clients, pytest.mark.version_independent]

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
RANK = {"CRITICAL": 0, "UNKNOWN": 1, "WARNING": 2, "PENDING": 3, "OK": 4}
SEVERITY = {"CRITICAL": 0, "UNKNOWN": 1, "WARNING": 2, "OK": 3}
TIMEOUT_MS = 20_000

# Fixed expectations (payments-errors is the one test_state_change_* flips to CRITICAL).
EXPECTED = {
    "web-5xx": "CRITICAL",
    "web-5xx-by-host": "CRITICAL",
    "orders-archive-freshness": "UNKNOWN",
    "web-4xx": "WARNING",
    "checkout-errors": "OK",
    "web-latency-p99": "OK",
    "web-traffic": "OK",
}
# 5xx per host: 3 worst hosts are evaluated (max_groups: 3), 5 are reported as omitted.
FIVE_XX = {"web-03": 30, "web-05": 12, "web-01": 8, "web-02": 4, "web-04": 3}
FIVE_XX |= {"web-06": 3, "web-07": 2, "web-08": 2}

MAPPINGS = {
    "properties": {
        "@timestamp": {"type": "date"},
        "host": {"type": "keyword"},
        "service": {"type": "keyword"},
        "level": {"type": "keyword"},
        "status": {"type": "integer"},
        "latency_ms": {"type": "float"},
    }
}


def check_file(index: str, missing: str) -> str:
    return textwrap.dedent(f"""\
        defaults:
          index: {index}
          interval: 2s
          timeout: 2s
          window: 30m
        checks:
          - name: web-5xx
            kind: count
            description: Server errors (HTTP 5xx) served by the web tier
            query: "status:>=500"
            warning: 10
            critical: 50
            tags: [web, page]
            runbook: https://wiki.example.org/runbooks/web-5xx
          - name: web-5xx-by-host
            kind: count
            description: Server errors per web host
            query: "status:>=500"
            group_by: host
            max_groups: 3
            warning: 5
            critical: 15
            tags: [web]
            runbook: Drain the host from the load balancer, then look at its app log.
          - name: web-4xx
            kind: count
            description: Client errors (HTTP 404)
            query: "status:404"
            warning: 20
            critical: 100
            tags: [web]
          - name: web-traffic
            kind: count
            description: Requests reach the web tier at all
            critical: "100:"
            tags: [web]
          - name: web-latency-p99
            kind: metric
            description: 99th percentile of response time
            field: latency_ms
            agg: percentile
            percentile: 99
            warning: 500
            critical: 1000
            unit: ms
            tags: [web]
          - name: checkout-errors
            kind: count
            description: Error log lines of the checkout service
            query: "service:checkout AND level:error"
            warning: 5
            critical: 20
            tags: [checkout]
          - name: payments-errors
            kind: count
            description: Failed payment requests
            query: "service:payments AND status:>=500"
            interval: 1s
            timeout: 1s
            warning: 5
            critical: 20
            tags: [payments, page]
          - name: orders-archive-freshness
            kind: count
            description: Nightly order archive is being written
            index: {missing}
            critical: "1:"
            tags: [orders]
        """)


def demo_docs() -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for host, n in FIVE_XX.items():
        docs += [
            {
                "host": host,
                "service": "search",
                "status": 503,
                "level": "error",
                "latency_ms": 310.0,
                "ago": f"{20 + i * 7}s",
            }
            for i in range(n)
        ]
    docs += [
        {
            "host": f"web-0{1 + i % 8}",
            "service": "catalog",
            "status": 404,
            "level": "info",
            "latency_ms": 35.0,
            "ago": f"{15 + i * 5}s",
        }
        for i in range(25)
    ]
    docs += [
        {
            "host": f"web-0{1 + i % 8}",
            "service": ["checkout", "search", "catalog"][i % 3],
            "status": 200,
            "level": "info",
            "latency_ms": 40.0 + (i % 50) * 4,
            "ago": f"{10 + i}s",
        }
        for i in range(240)
    ]
    return docs


# -- fixtures ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One seeded index and one esbridge for the module (each test only reads, or flips
    payments-errors, which no other test pins)."""
    from esbridge_dev.seeding import seed

    suffix = uuid.uuid4().hex[:8]
    index, missing, state_index = f"logs-web-{suffix}", f"orders-archive-{suffix}", f"sp-{suffix}"
    r = httpcalls.put(
        f"{es_url}/{index}",
        json={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": MAPPINGS},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    seed(es_url, index, demo_docs())
    path = tmp_path_factory.mktemp("status-page") / "checks.yaml"
    path.write_text(check_file(index, missing))
    svc = EsbridgeProcess(es_url, [path], state_index=state_index)
    try:
        svc.start()
        svc.wait_for(lambda: settled(svc), timeout=60)
        yield {"svc": svc, "index": index, "es_url": es_url}
    finally:
        svc.stop()
        svc.log_path.unlink(missing_ok=True)
        for name in (index, state_index):
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)


def settled(svc: EsbridgeProcess) -> bool:
    """Every check evaluated, and the grouped one has its groups."""
    checks = svc.get("/api/v1/checks").json()["checks"]
    if any(c["state"] == "PENDING" for c in checks):
        return False
    grouped = svc.get("/api/v1/checks/web-5xx-by-host").json()["result"]
    return bool(grouped and grouped["groups"])


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    yield pg
    context.close()


def screenshot(pg: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    out = ARTIFACTS / name
    pg.screenshot(path=str(out))
    return out


def row_states(pg: Any) -> list[tuple[str, str]]:
    rows = pg.eval_on_selector_all(
        "#rows tr[data-name]",
        "rows => rows.map(r => [r.dataset.name, r.querySelector('.badge').textContent])",
    )
    return [(name, state) for name, state in rows]


def wait_rows(pg: Any, n: int | Callable[[int], bool]) -> list[tuple[str, str]]:
    from playwright.sync_api import expect

    if isinstance(n, int):
        expect(pg.locator("#rows tr[data-name]")).to_have_count(n)
    else:
        pg.wait_for_function("() => document.querySelectorAll('#rows tr[data-name]').length > 0")
    return row_states(pg)


# -- tests ---------------------------------------------------------------------------------


def test_overview_lists_checks_worst_first(demo: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    svc = demo["svc"]
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    page.goto(svc.url + "/")
    rows = wait_rows(page, len(EXPECTED) + 1)

    states = dict(rows)
    for name, state in EXPECTED.items():
        assert states[name] == state, (name, rows)
    ranks = [(RANK[s], n) for n, s in rows]
    assert ranks == sorted(ranks), f"not worst first: {rows}"

    # The state is a word on a coloured badge, never colour alone.
    badge = page.locator('#rows tr[data-name="web-5xx"] .badge')
    expect(badge).to_have_text("CRITICAL")
    # Since: relative text, absolute time on hover; value with unit; tags.
    since = page.locator('#rows tr[data-name="web-5xx"] td.since time')
    assert re.fullmatch(r"just now|\d+ (s|min) ago", since.inner_text()), since.inner_text()
    assert re.match(
        r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC[+-]\d\d:\d\d$", since.get_attribute("title")
    )
    expect(page.locator('#rows tr[data-name="web-latency-p99"] td.num')).to_have_text(
        re.compile(r"^\d+(\.\d+)? ms$")
    )
    expect(page.locator('#rows tr[data-name="web-5xx"] .tag')).to_have_text(["web", "page"])

    # Counts at the top agree with the API, in an aria-live region; the banner is hidden.
    counts = svc.get("/api/v1/checks").json()["counts"]
    for state, n in counts.items():
        expect(page.locator(f'#counts button[data-state="{state}"] b')).to_have_text(str(n))
    assert page.get_attribute("#counts", "aria-live") == "polite"
    assert page.get_attribute("#banner", "role") == "status"
    expect(page.locator("#banner")).to_be_hidden()
    assert page.locator("table.checks thead th").count() == 7

    # Everything the page loads comes from esbridge itself: no CDN, no web fonts.
    foreign = [u for u in requests if not u.startswith(svc.url)]
    assert foreign == [], foreign
    screenshot(page, "status-overview.png")


def test_count_buttons_filter_by_state(demo: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(demo["svc"].url + "/")
    wait_rows(page, len(EXPECTED) + 1)
    page.click('#counts button[data-state="WARNING"]')
    assert wait_rows(page, 1) == [("web-4xx", "WARNING")]
    expect(page.locator('#counts button[data-state="WARNING"]')).to_have_attribute(
        "aria-pressed", "true"
    )
    expect(page).to_have_url(re.compile(re.escape("state=WARNING")))
    page.click('#counts button[data-state="WARNING"]')  # again: everything
    wait_rows(page, len(EXPECTED) + 1)
    expect(page).not_to_have_url(re.compile(re.escape("state=")))


def test_name_filter_narrows_and_lives_in_the_url(demo: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    page.goto(demo["svc"].url + "/")
    wait_rows(page, len(EXPECTED) + 1)
    page.locator("#q").press_sequentially("web-5", delay=30)
    assert [n for n, _ in wait_rows(page, 2)] == ["web-5xx", "web-5xx-by-host"]
    expect(page).to_have_url(re.compile(re.escape("q=web-5")))

    page.reload()  # the shared link restores the filter
    expect(page.locator("#q")).to_have_value("web-5")
    assert [n for n, _ in wait_rows(page, 2)] == ["web-5xx", "web-5xx-by-host"]

    # Tag filter from the select, combined with a state in a hand-written link.
    page.fill("#q", "")
    page.select_option("#tag", "checkout")
    assert wait_rows(page, 1) == [("checkout-errors", "OK")]
    expect(page).to_have_url(re.compile(re.escape("tag=checkout")))
    page.goto(demo["svc"].url + "/?state=CRITICAL,UNKNOWN&tag=web")
    assert wait_rows(page, 2) == [("web-5xx", "CRITICAL"), ("web-5xx-by-host", "CRITICAL")]
    expect(page.locator("#tag")).to_have_value("web")
    expect(page.locator('#counts button[data-state="UNKNOWN"]')).to_have_attribute(
        "aria-pressed", "true"
    )


def test_detail_shows_groups_history_and_plugin_command(demo: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    svc = demo["svc"]
    page.goto(svc.url + "/")
    wait_rows(page, len(EXPECTED) + 1)

    # Keyboard: tab to the check link and press Enter.
    link = page.locator('#rows tr[data-name="web-5xx-by-host"] a')
    link.focus()
    page.keyboard.press("Enter")
    dialog = page.locator("dialog#detail")
    expect(dialog).to_be_visible()
    expect(page).to_have_url(re.compile(re.escape("check=web-5xx-by-host")))
    expect(dialog.locator("table.groups tbody tr")).to_have_count(3)

    api = svc.get("/api/v1/checks/web-5xx-by-host").json()
    groups = dialog.locator("table.groups tbody tr")
    got = groups.evaluate_all(
        "rows => rows.map(r => [r.dataset.group, r.querySelector('.badge').textContent])"
    )
    assert got[0] == ["host=web-03", "CRITICAL"], got
    assert [SEVERITY[s] for _, s in got] == sorted(SEVERITY[s] for _, s in got)
    assert {g for g, _ in got} == {"host=web-03", "host=web-05", "host=web-01"}
    expect(dialog.locator(".omitted")).to_have_text(re.compile(r"^5 more groups not evaluated"))
    expect(dialog.locator("ol.history li")).to_have_count(len(api["transitions"]))
    expect(dialog.locator("ol.history li").first).to_contain_text("CRITICAL")
    expect(dialog.locator("#plugin-command")).to_have_text(api["plugin_command"])
    nagios = dialog.locator("#nagios-output").inner_text()
    assert nagios.startswith("CRITICAL - "), nagios
    assert nagios.strip() == api["nagios"]["text"].strip()
    expect(dialog.locator(".runbook")).to_contain_text("Drain the host")
    expect(dialog.locator("table.kv")).to_contain_text("group_by")
    expect(dialog.locator("table.kv")).to_contain_text("status:>=500")
    expect(dialog.locator("table.perf tbody tr").first).to_be_visible()
    screenshot(page, "status-detail.png")

    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(page).not_to_have_url(re.compile(r"[?&]check="))  # polled: set on the close event
    expect(link).to_be_focused()

    # A shared link to a check opens its detail; the last error is quoted there.
    page.goto(svc.url + "/?check=orders-archive-freshness")
    expect(dialog.locator("blockquote.error")).to_contain_text("no such index")
    expect(dialog.locator(".lead .badge")).to_have_text("UNKNOWN")


def test_state_change_appears_without_reload(demo: dict[str, Any], page: Any) -> None:
    from playwright.sync_api import expect

    from esbridge_dev.seeding import seed

    page.goto(demo["svc"].url + "/?q=payments")
    assert wait_rows(page, 1) == [("payments-errors", "OK")]
    page.evaluate("window.__sameDocument = 42")

    failed = [
        {"service": "payments", "status": 502, "level": "error", "ago": f"{i + 1}s"}
        for i in range(30)
    ]
    seed(demo["es_url"], demo["index"], failed)
    row = page.locator('#rows tr[data-name="payments-errors"]')
    expect(row).to_have_attribute("data-state", "CRITICAL", timeout=30_000)
    expect(row.locator(".badge")).to_have_text("CRITICAL")
    assert page.evaluate("window.__sameDocument") == 42, "the page reloaded"
    expect(page.locator("#q")).to_have_value("payments")
    assert wait_rows(page, 1) == [("payments-errors", "CRITICAL")]

    row.locator("a").click()
    history = page.locator("dialog#detail ol.history li").first
    expect(history).to_contain_text("OK")
    expect(history).to_contain_text("CRITICAL")


def test_phone_layout_and_dark_scheme(demo: dict[str, Any], browser: Any) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 800}, color_scheme="dark", is_mobile=True
    )
    try:
        pg = context.new_page()
        pg.set_default_timeout(TIMEOUT_MS)
        pg.goto(demo["svc"].url + "/")
        wait_rows(pg, lambda n: n > 0)
        assert pg.eval_on_selector("table.checks thead", "e => getComputedStyle(e).display") == (
            "none"
        )
        assert pg.eval_on_selector("#rows tr", "e => getComputedStyle(e).display") == "block"
        width = pg.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"horizontal scroll on a phone: {width}px"
        bg = pg.evaluate("getComputedStyle(document.body).backgroundColor")
        r, g, b = (int(x) for x in re.findall(r"\d+", bg)[:3])
        assert r + g + b < 150, f"dark scheme not applied: {bg}"

        # A refresh updates rows in place: same DOM nodes, same scroll position.
        pg.evaluate("window.scrollTo(0, 600)")
        pg.evaluate("document.querySelector('#rows tr:last-child').__kept = true")
        before = pg.get_attribute("body", "data-refreshed-at")
        scroll = pg.evaluate("window.scrollY")
        assert scroll > 0
        pg.wait_for_function(
            "b => document.body.dataset.refreshedAt !== b", arg=before, timeout=TIMEOUT_MS
        )
        assert pg.evaluate("document.querySelector('#rows tr:last-child').__kept === true")
        assert pg.evaluate("window.scrollY") == scroll
    finally:
        context.close()


def test_unreachable_service_shows_banner_and_greys_the_list(
    es_url: str, page: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    state_index = f"sp-down-{uuid.uuid4().hex[:8]}"
    path = tmp_path / "checks.yaml"
    path.write_text(
        "checks:\n  - name: cluster-reachable\n    kind: count\n    index: nothing-here-*\n"
        "    interval: 2s\n    critical: 5\n"
    )
    svc = EsbridgeProcess(es_url, [path], state_index=state_index)
    try:
        svc.start()
        svc.wait_for(lambda: svc.get("/api/v1/checks").json()["counts"]["PENDING"] == 0)
        page.goto(svc.url + "/")
        wait_rows(page, 1)
        banner = page.locator("#banner")
        expect(banner).to_be_hidden()

        svc.stop()
        expect(banner).to_be_visible(timeout=15_000)
        expect(banner).to_have_text(
            re.compile(
                r"^esbridge unreachable since \d\d:\d\d:\d\d — states below are from "
                r"\d\d:\d\d:\d\d and may be outdated"
            )
        )
        assert banner.get_attribute("role") == "status"
        expect(page.locator("#list")).to_have_class(re.compile(r"\boutdated\b"))
        assert page.title().startswith("⚠ unreachable")

        svc.start()  # same port: the page recovers by itself
        expect(banner).to_be_hidden(timeout=15_000)
        expect(page.locator("#list")).not_to_have_class(re.compile(r"\boutdated\b"))
    finally:
        svc.stop()
        svc.log_path.unlink(missing_ok=True)
        httpcalls.delete(
            f"{es_url}/{state_index}", params={"ignore_unavailable": "true"}, timeout=60
        )


def test_open_detail_keeps_refreshing_and_shows_an_outage(
    es_url: str, page: Any, tmp_path: Path
) -> None:
    """An open detail is no frozen snapshot: a state change reaches it in place (same dialog,
    scroll position and preview chart), its relative times tick, and when esbridge stops it is
    greyed with "as of ..., esbridge unreachable" while the banner appears."""
    from playwright.sync_api import expect

    from esbridge_dev.seeding import seed

    suffix = uuid.uuid4().hex[:8]
    index, state_index = f"sp-live-{suffix}", f"sp-live-state-{suffix}"
    r = httpcalls.put(
        f"{es_url}/{index}",
        json={"settings": {"number_of_shards": 1, "number_of_replicas": 0}, "mappings": MAPPINGS},
        timeout=60,
    )
    assert r.status_code == 200, r.text
    path = tmp_path / "checks.yaml"
    path.write_text(
        f"checks:\n  - name: live-errors\n    kind: count\n    index: {index}\n"
        "    window: 30m\n    interval: 1s\n    timeout: 1s\n    warning: 2\n    critical: 5\n"
    )
    svc = EsbridgeProcess(es_url, [path], state_index=state_index)
    try:
        svc.start()
        svc.wait_for(lambda: svc.get("/api/v1/checks/live-errors").json()["state"] == "OK")
        page.set_viewport_size({"width": 1280, "height": 420})  # the detail scrolls
        page.goto(svc.url + "/?check=live-errors")
        dialog = page.locator("dialog#detail")
        lead = dialog.locator(".lead .badge")
        expect(lead).to_have_text("OK")
        expect(dialog.locator("section#preview")).to_have_attribute("data-loaded", "true")
        page.evaluate("document.getElementById('preview').__kept = true")
        page.evaluate("document.getElementById('detail').scrollTop = 150")
        scroll = page.evaluate("document.getElementById('detail').scrollTop")
        assert scroll > 100, "the detail should scroll at this height"

        docs = [{"service": "payments", "status": 502, "ago": f"{i + 1}s"} for i in range(8)]
        seed(es_url, index, docs)
        expect(lead).to_have_text("CRITICAL", timeout=15_000)  # one refresh cycle, and a bit
        expect(dialog.locator(".lead")).to_contain_text("8")
        expect(dialog.locator("ol.history li").first).to_contain_text("CRITICAL")
        expect(dialog).to_be_visible()
        expect(page).to_have_url(re.compile(re.escape("check=live-errors")))
        assert page.evaluate("document.getElementById('preview').__kept === true"), (
            "the preview chart was rebuilt"
        )
        now = page.evaluate("document.getElementById('detail').scrollTop")
        assert abs(now - scroll) < 30, (scroll, now)

        svc.stop()
        note = page.locator("#detail-note")
        expect(note).to_be_visible(timeout=15_000)
        expect(note).to_be_in_viewport()  # in the sticky head: seen at any scroll position
        expect(note).to_have_text(re.compile(r"^as of \d\d:\d\d:\d\d, esbridge unreachable"))
        expect(page.locator("#banner")).to_have_text(re.compile(r"^esbridge unreachable since "))
        expect(page.locator("#detail-body")).to_have_class(re.compile(r"\boutdated\b"))
        expect(lead).to_have_text("CRITICAL")  # the last known state, greyed, still open
        expect(dialog).to_be_visible()
        # Relative times keep ticking while nothing answers: no "just now" forever.
        evaluated = dialog.locator(".facts time.rel").nth(1)
        expect(evaluated).to_have_text(re.compile(r"^\d+ s ago$"), timeout=15_000)
        screenshot(page, "status-detail-unreachable.png")

        svc.start()  # same port: the detail comes back to life by itself
        expect(note).to_be_hidden(timeout=15_000)
        expect(page.locator("#detail-body")).not_to_have_class(re.compile(r"\boutdated\b"))
        expect(dialog).to_be_visible()
    finally:
        svc.stop()
        svc.log_path.unlink(missing_ok=True)
        for name in (index, state_index):
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)


def test_docs_screenshots_exist() -> None:
    """The README shows the page: keep the committed screenshots in place (1280x800 PNG)."""
    docs = Path(__file__).resolve().parents[1] / "docs" / "img"
    for name in ("status-overview.png", "status-detail.png"):
        data = (docs / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n", name
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        assert (width, height) == (1280, 800), (name, width, height)
