"""The preview chart of the status page, in headless Debian Chromium (Playwright).

Real Elasticsearch with documents at known times (a burst three hours ago, a smaller one an
hour ago, a few errors now), a real ``esbridge serve``, the page it serves. The chart must
exist, have one point per preview point, and its warning and critical bands must sit at the
threshold values on the chart's own scale.
"""

from __future__ import annotations

import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from esbridge_dev import httpcalls
from esbridge_dev.service import EsbridgeProcess

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
TIMEOUT_MS = 30_000

pytestmark = [pytest.mark.clients, pytest.mark.version_independent]

CHECKS = """\
    defaults:
      index: {index}
      interval: 2s
      timeout: 2s
    checks:
      - name: web-5xx
        kind: count
        description: Server errors (HTTP 5xx) served by the web tier
        query: "status:>=500"
        window: 5m
        warning: 10
        critical: 50
        unit: c
      - name: latency-low
        kind: metric
        description: The fastest request is not too slow
        field: latency_ms
        agg: min
        window: 30m
        warning: "~:300"
        critical: "@400:1000"
        unit: ms
    """


def docs() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    out += [{"status": 503, "latency_ms": 350.0, "ago": f"{3 * 3600 + i * 2}s"} for i in range(70)]
    out += [{"status": 500, "latency_ms": 250.0, "ago": f"{3600 + i * 5}s"} for i in range(25)]
    out += [{"status": 502, "latency_ms": 120.0, "ago": f"{20 + i * 3}s"} for i in range(12)]
    return out


@pytest.fixture(scope="module")
def svc(es_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EsbridgeProcess]:
    from esbridge_dev.seeding import seed

    suffix = uuid.uuid4().hex[:8]
    index, state_index = f"pvp-logs-{suffix}", f"pvp-state-{suffix}"
    r = httpcalls.put(
        f"{es_url}/{index}",
        json={
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "properties": {
                    "@timestamp": {"type": "date"},
                    "status": {"type": "integer"},
                    "latency_ms": {"type": "float"},
                }
            },
        },
        timeout=60,
    )
    assert r.status_code == 200, r.text
    seed(es_url, index, docs())
    path = tmp_path_factory.mktemp("preview-page") / "checks.yaml"
    path.write_text(textwrap.dedent(CHECKS).format(index=index))
    process = EsbridgeProcess(es_url, [path], state_index=state_index)
    try:
        process.start()
        process.wait_for(
            lambda: process.get("/api/v1/checks").json()["counts"]["PENDING"] == 0, timeout=60
        )
        yield process
    finally:
        process.stop()
        process.log_path.unlink(missing_ok=True)
        for name in (index, state_index):
            httpcalls.delete(f"{es_url}/{name}", params={"ignore_unavailable": "true"}, timeout=60)


def open_chart(browser: Any, svc: EsbridgeProcess, name: str) -> tuple[Any, Any]:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 800}, color_scheme="light")
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{svc.url}/?check={name}")
    section = page.locator("dialog#detail section#preview")
    expect(section).to_have_attribute("data-loaded", "true")
    return context, page


def scale(svg: dict[str, float], value: float) -> float:
    top, bottom = svg["plotTop"], svg["plotBottom"]
    return top + (svg["yMax"] - value) / (svg["yMax"] - svg["yMin"]) * (bottom - top)


SVG_FACTS = """svg => ({
  yMin: +svg.dataset.yMin, yMax: +svg.dataset.yMax,
  plotTop: +svg.dataset.plotTop, plotBottom: +svg.dataset.plotBottom,
  points: +svg.dataset.points,
  drawn: [...svg.querySelectorAll('polyline.series')]
    .map(p => p.getAttribute('points').trim().split(/\\s+/).length)
    .reduce((a, b) => a + b, 0),
  bands: [...svg.querySelectorAll('rect.band')].map(r => ({
    level: r.classList.contains('band-critical') ? 'critical' : 'warning',
    top: +r.getAttribute('y'), bottom: +r.getAttribute('y') + +r.getAttribute('height'),
    from: r.dataset.from, to: r.dataset.to })),
  lines: [...svg.querySelectorAll('line.threshold')].map(l => ({
    level: l.classList.contains('threshold-critical') ? 'critical' : 'warning',
    y: +l.getAttribute('y1'), value: +l.dataset.value })),
  transitions: svg.querySelectorAll('circle.transition').length,
  markers: svg.querySelectorAll('line.marker').length,
  current: svg.querySelector('text.current').textContent,
})"""


def test_chart_has_every_point_and_bands_at_the_thresholds(browser: Any, svc: EsbridgeProcess):
    api = svc.get("/api/v1/checks/web-5xx/preview", params={"since": "24h"}).json()
    assert len(api["points"]) == 288  # interval 2s is too fine for 24h: a 5m step
    context, page = open_chart(browser, svc, "web-5xx")
    try:
        svg = page.eval_on_selector("section#preview svg.preview-chart", SVG_FACTS)
        assert svg["points"] == len(api["points"])
        assert svg["drawn"] == len(api["points"])  # a count always has a value: no gaps
        # critical 50 alerts above 50: its band ends exactly at 50 on the chart's scale
        bands = {b["level"]: b for b in svg["bands"]}
        assert set(bands) == {"warning", "critical"}
        assert bands["critical"]["bottom"] == pytest.approx(scale(svg, 50), abs=0.01)
        assert bands["critical"]["top"] == pytest.approx(svg["plotTop"], abs=0.01)
        assert (bands["critical"]["from"], bands["critical"]["to"]) == ("50", "inf")
        assert bands["warning"]["bottom"] == pytest.approx(scale(svg, 10), abs=0.01)
        assert (bands["warning"]["from"], bands["warning"]["to"]) == ("10", "inf")
        lines = {(x["level"], x["value"]): x["y"] for x in svg["lines"]}
        assert lines[("critical", 50)] == pytest.approx(scale(svg, 50), abs=0.01)
        assert lines[("warning", 10)] == pytest.approx(scale(svg, 10), abs=0.01)
        # the 3-hours-ago burst (70) is critical: the chart's range covers it
        assert svg["yMax"] > 70
        assert svg["transitions"] == len(api["transitions"]) >= 2
        assert svg["markers"] == len(api["markers"]) == 0
        assert svg["current"] == f"{api['last']['value']:g}"
        facts = page.locator("section#preview .preview-facts").first.inner_text()
        assert f"would have paged {api['pages']} time" in facts
        page.locator("section#preview").scroll_into_view_if_needed()
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "status-preview.png"))
    finally:
        context.close()


def test_inside_range_and_upper_range_bands(browser: Any, svc: EsbridgeProcess):
    """warning ~:300 alerts above 300; critical @400:1000 alerts inside 400..1000."""
    context, page = open_chart(browser, svc, "latency-low")
    try:
        svg = page.eval_on_selector("section#preview svg.preview-chart", SVG_FACTS)
        bands = {b["level"]: b for b in svg["bands"]}
        assert bands["warning"]["bottom"] == pytest.approx(scale(svg, 300), abs=0.01)
        assert bands["critical"]["bottom"] == pytest.approx(scale(svg, 400), abs=0.01)
        assert bands["critical"]["top"] == pytest.approx(scale(svg, 1000), abs=0.01)
        assert svg["drawn"] < svg["points"]  # no data before the first document: gaps
    finally:
        context.close()


def test_range_buttons_reload_the_chart(browser: Any, svc: EsbridgeProcess):
    from playwright.sync_api import expect

    context, page = open_chart(browser, svc, "web-5xx")
    try:
        page.click('section#preview button[data-since="6h"]')
        expect(page.locator('section#preview button[data-since="6h"]')).to_have_attribute(
            "aria-pressed", "true"
        )
        expect(page.locator("section#preview")).to_have_attribute("data-since", "6h")
        expect(page.locator("section#preview")).to_have_attribute("data-loaded", "true")
        api = svc.get("/api/v1/checks/web-5xx/preview", params={"since": "6h"}).json()
        svg = page.eval_on_selector("section#preview svg.preview-chart", SVG_FACTS)
        assert svg["points"] == len(api["points"])
    finally:
        context.close()


def test_markers_are_drawn_at_their_time(browser: Any, svc: EsbridgeProcess):
    """The preview's ``markers`` (time + label, e.g. deploys) become vertical lines."""
    api = svc.get("/api/v1/checks/web-5xx/preview", params={"since": "6h"}).json()
    t0, t1 = api["points"][0]["at"], api["points"][-1]["at"]
    api["markers"] = [
        {"at": t0 + (t1 - t0) / 4, "label": "deploy 1.2.3"},
        {"at": t1 - 60, "label": "deploy 1.2.4"},
        {"at": t0 - 3600, "label": "before the period: not drawn"},
    ]
    context, page = open_chart(browser, svc, "web-5xx")
    try:
        drawn = page.evaluate(
            """data => {
                const svg = window.esbridgePreview.chart(data);
                return {
                  left: +svg.dataset.plotLeft, right: +svg.dataset.plotRight,
                  lines: [...svg.querySelectorAll('line.marker')].map(l => ({
                    x: +l.getAttribute('x1'), at: +l.dataset.at,
                    title: l.querySelector('title').textContent })),
                };
            }""",
            api,
        )
        assert [m["title"].split(": ", 1)[1] for m in drawn["lines"]] == [
            "deploy 1.2.3",
            "deploy 1.2.4",
        ]
        for line in drawn["lines"]:
            want = drawn["left"] + (line["at"] - t0) / (t1 - t0) * (drawn["right"] - drawn["left"])
            assert line["x"] == pytest.approx(want, abs=0.01)
    finally:
        context.close()


def test_docs_screenshot_exists() -> None:
    """docs/preview.md and the README show the chart: keep the screenshot (1280x800 PNG)."""
    data = (
        Path(__file__).resolve().parents[1] / "docs" / "img" / "status-preview.png"
    ).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1280, 800)
