"""Sample data generator: pure parts, and a real backfill into Elasticsearch."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from esbridge_dev import httpcalls
from esbridge_dev import sampledata as sd

T0 = datetime(2024, 5, 1, 0, 0, 0, tzinfo=UTC).timestamp()  # multiple of the 360 s cycle


def test_host_and_service_names():
    assert sd.host_names(3) == ["web-01", "web-02", "web-03"]
    assert sd.host_names(120)[0] == "web-001"
    assert len(set(sd.service_names(20))) == 20
    assert sd.service_names(2) == ["checkout", "search"]


def test_incident_schedule_windows():
    inc = sd.IncidentSchedule()
    assert T0 % inc.cycle_s == 0
    assert not inc.error_burst(T0 + 30, "web-03")
    assert inc.error_burst(T0 + 90, "web-03")
    assert not inc.error_burst(T0 + 90, "web-04")
    assert inc.metrics_silent(T0 + 200, "web-05")
    assert not inc.metrics_silent(T0 + 100, "web-05")
    assert inc.disk_pct(T0 + 0, "web-07", 50) == pytest.approx(72)
    assert inc.disk_pct(T0 + 239, "web-07", 50) > 96
    assert inc.disk_pct(T0 + 300, "web-07", 50) == pytest.approx(72)
    assert inc.disk_pct(T0 + 100, "web-01", 50) == 50


def test_log_docs_are_valid_json_with_expected_fields_and_rate():
    gen = sd.Generator(hosts=8, services=5, seed=1)
    docs = list(gen.log_docs(T0, T0 + 60, 10))
    assert len(docs) == 600
    day, first = docs[0]
    assert day == "2024.05.01"
    d = json.loads(first)
    assert set(d) == {
        "@timestamp",
        "host",
        "service",
        "method",
        "path",
        "status",
        "latency_ms",
        "bytes",
        "level",
        "message",
    }
    assert d["@timestamp"].startswith("2024-05-01T00:00:") and d["@timestamp"].endswith("Z")
    stamps = [json.loads(x)["@timestamp"] for _, x in docs]
    assert stamps == sorted(stamps)


def test_error_burst_shows_in_generated_logs():
    gen = sd.Generator(hosts=8, services=5, seed=2)
    quiet = [json.loads(x) for _, x in gen.log_docs(T0, T0 + 60, 50)]
    burst = [json.loads(x) for _, x in gen.log_docs(T0 + 60, T0 + 120, 50)]

    def ratio(docs):
        mine = [d for d in docs if d["host"] == "web-03"]
        return sum(d["status"] >= 500 for d in mine) / len(mine)

    assert ratio(quiet) < 0.05
    assert 0.25 < ratio(burst) < 0.55


def test_metric_docs_grid_and_silence():
    gen = sd.Generator(hosts=8, seed=3)
    docs = [json.loads(x) for _, x in gen.metric_docs(T0, T0 + 60, 10)]
    assert len(docs) == 6 * 8
    silent = [json.loads(x) for _, x in gen.metric_docs(T0 + 180, T0 + 240, 10)]
    assert len(silent) == 6 * 7
    assert "web-05" not in {d["host"] for d in silent}
    assert all(0 <= d["cpu_pct"] <= 100 for d in docs)


def test_day_rollover_names_next_index():
    gen = sd.Generator(hosts=1, seed=4)
    days = {day for day, _ in gen.metric_docs(T0 - 30, T0 + 30, 10)}
    assert days == {"2024.04.30", "2024.05.01"}


@pytest.mark.es
def test_backfill_counts_and_mappings(es_url):
    now = datetime(2024, 5, 1, 0, 5, 0, tzinfo=UTC)
    try:
        res = sd.backfill(es_url, minutes=10, rate_per_s=10, now=now, hosts=8, services=5)
        assert res["logs"] == 6000
        # 10 minutes spans 23:55-00:05 (two daily indices)
        assert res["metrics"] > 0
        count = lambda p: httpcalls.get(f"{es_url}/{p}/_count", timeout=30).json()["count"]  # noqa: E731
        # Only this test's (2024) daily indices: other tests may hold today's sample data.
        assert count("logs-web-2024.*") == res["logs"]
        assert count("metrics-host-2024.*") == res["metrics"]
        assert count("logs-web-2024.05.01") + count("logs-web-2024.04.30") == 6000
        mapping = httpcalls.get(f"{es_url}/logs-web-2024.05.01/_mapping", timeout=30).json()
        props = mapping["logs-web-2024.05.01"]["mappings"]["properties"]
        assert props["host"]["type"] == "keyword"
        assert props["status"]["type"] == "short"
        assert props["latency_ms"]["type"] == "float"
        assert props["@timestamp"]["type"] == "date"
        m = httpcalls.get(f"{es_url}/metrics-host-2024.05.01/_mapping", timeout=30).json()
        assert m["metrics-host-2024.05.01"]["mappings"]["properties"]["disk_pct"]["type"] == "float"
        # the injected burst is queryable: web-03 5xx only between 00:01 and 00:03
        body = {
            "size": 0,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"host": "web-03"}},
                        {"range": {"status": {"gte": 500}}},
                    ]
                }
            },
            "aggs": {"t": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1m"}}},
        }
        # This test's indices only: another test's logs-web-* index may map fields otherwise.
        resp = httpcalls.post(f"{es_url}/logs-web-2024.*/_search", json=body, timeout=30)
        assert resp.status_code == 200, resp.text
        r = resp.json()
        per_min = {
            b["key_as_string"][11:16]: b["doc_count"] for b in r["aggregations"]["t"]["buckets"]
        }
        assert per_min.get("00:01", 0) + per_min.get("00:02", 0) > 20
    finally:
        httpcalls.delete(f"{es_url}/logs-web-2024.*,metrics-host-2024.*", timeout=60)
