"""Check models: defaults, validation rules, helpers, schema, and the docs' examples."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from esbridge.loader import load_text
from esbridge.models import (
    CHECK_CLASSES,
    CLUSTER_KINDS,
    ChangeCheck,
    ClusterHealthCheck,
    CountCheck,
    DiskCheck,
    FreshnessCheck,
    JvmHeapCheck,
    MasterCheck,
    MetricCheck,
    NodesCheck,
    RatioCheck,
    check_adapter,
    check_file_schema,
)
from esbridge.ranges import Range
from esbridge.result import State

DOCS = Path(__file__).resolve().parent.parent / "docs" / "checks.md"


def count(**kw):
    return CountCheck(**{"name": "c", "index": "logs-web-*", "critical": 50, **kw})


def test_count_defaults():
    check = count()
    assert check.kind == "count"
    assert check.index == ("logs-web-*",)
    assert check.window == timedelta(minutes=5)
    assert check.delay == timedelta(0)
    assert check.interval is None and check.timeout is None
    assert check.critical == Range.parse(50)
    assert check.group_by == () and check.max_groups == 100
    assert check.cluster == "default" and check.timestamp_field == "@timestamp"
    assert check.effective_no_data is State.UNKNOWN
    assert not check.is_cluster_kind
    assert check.source_file is None and check.source_line is None


def test_frozen_and_extra_forbidden():
    check = count()
    with pytest.raises(ValidationError):
        check.name = "x"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs"):
        count(critcal=5)


def test_index_accepts_list_and_comma_string():
    assert count(index=["a", "b"]).index == ("a", "b")
    assert count(index="a, b").index == ("a", "b")
    with pytest.raises(ValidationError, match="at least one index"):
        count(index=[])
    with pytest.raises(ValidationError, match="index"):
        CountCheck(name="c", critical=1)


@pytest.mark.parametrize("name", ["Web", "-web", "web 5xx", "x" * 101, ""])
def test_bad_names(name):
    with pytest.raises(ValidationError):
        count(name=name)


def test_durations_parse_and_render():
    check = count(window="10m", delay=30, interval="15s", timeout="5s")
    assert check.window == timedelta(minutes=10)
    assert check.delay == timedelta(seconds=30)
    dumped = check.model_dump(mode="json")
    assert dumped["window"] == "10m" and dumped["interval"] == "15s" and dumped["delay"] == "30s"
    assert dumped["critical"] == "50"
    assert check.model_dump()["window"] == timedelta(minutes=10)


@pytest.mark.parametrize("interval", ["0s", "500ms", "8d", "30d"])
def test_absurd_interval(interval):
    with pytest.raises(ValidationError, match=r"absurd interval .*between 1s and 7d"):
        count(interval=interval)


def test_interval_bounds_inclusive():
    assert count(interval="1s").interval == timedelta(seconds=1)
    assert count(interval="7d").interval == timedelta(days=7)


def test_timeout_not_longer_than_interval():
    with pytest.raises(ValidationError, match="timeout 2m is longer than interval 1m"):
        count(interval="1m", timeout="2m")
    assert count(interval="1m", timeout="1m").timeout == timedelta(minutes=1)
    assert count(timeout="2m").timeout == timedelta(minutes=2)  # interval: service default


def test_window_must_be_positive():
    with pytest.raises(ValidationError, match="window must be longer than 0s"):
        count(window="0s")


def test_query_xor_query_dsl():
    with pytest.raises(ValidationError, match="set either query or query_dsl, not both"):
        count(query="a", query_dsl={"match_all": {}})
    with pytest.raises(ValidationError, match="must be a JSON object"):
        count(query_dsl=[{"term": {"a": 1}}])
    assert count(query_dsl={"match_all": {}}).query_dsl == {"match_all": {}}


def test_ranges_and_states():
    check = count(warning="10:", critical="@5:8", no_data="critical")
    assert check.warning == Range.parse("10:")
    assert check.critical.inside
    assert check.no_data is State.CRITICAL and check.effective_no_data is State.CRITICAL
    assert check.model_dump(mode="json")["no_data"] == "critical"
    with pytest.raises(ValidationError, match="invalid range '10:5'"):
        count(critical="10:5")
    with pytest.raises(ValidationError, match="invalid state"):
        count(no_data="bad")


def test_thresholds_required_for_data_kinds():
    with pytest.raises(ValidationError, match="set warning and/or critical"):
        CountCheck(name="c", index="x")
    assert count(critical=None, warning=3).thresholds_text == "warning 3"


def test_thresholds_text():
    assert count(warning=10).thresholds_text == "warning 10, critical 50"
    assert ClusterHealthCheck(name="h").thresholds_text == "no thresholds"


def test_group_by():
    assert count(group_by="host").group_by == ("host",)
    assert count(group_by=["service", "host"]).group_by == ("service", "host")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        count(group_by="host", max_groups=0)
    with pytest.raises(ValidationError):
        count(max_groups=10001)
    with pytest.raises(ValidationError, match="not supported for kind 'change'"):
        ChangeCheck(name="c", index="x", group_by="host", critical=1)
    with pytest.raises(ValidationError, match="not supported for kind 'nodes'"):
        NodesCheck(name="n", expected_nodes=1, group_by="host")


def test_metric_percentile_rules():
    base = {"name": "m", "index": "x", "field": "latency_ms", "critical": 1}
    assert MetricCheck(**base, agg="percentile", percentile=99.9).percentile == 99.9
    with pytest.raises(ValidationError, match="percentile is required"):
        MetricCheck(**base, agg="percentile")
    for bad in (0, 100, 150, -1):
        with pytest.raises(ValidationError, match="between 0 and 100"):
            MetricCheck(**base, agg="percentile", percentile=bad)
    with pytest.raises(ValidationError, match="only used with agg: percentile"):
        MetricCheck(**base, agg="avg", percentile=99)
    with pytest.raises(ValidationError):
        MetricCheck(**base, agg="median")


def test_ratio_defaults():
    check = RatioCheck(name="r", index="x", numerator="status:>=500", critical=5)
    assert check.unit == "%" and check.denominator is None
    dsl = RatioCheck(name="r", index="x", numerator={"term": {"s": 1}}, denominator="*", warning=1)
    assert dsl.numerator == {"term": {"s": 1}}
    with pytest.raises(ValidationError):
        RatioCheck(name="r", index="x", critical=5)


def test_change_field_and_agg_together():
    assert ChangeCheck(name="c", index="x", critical="~:100").field is None
    ok = ChangeCheck(name="c", index="x", field="bytes", agg="sum", critical="~:100")
    assert ok.agg == "sum" and ok.unit == "%"
    with pytest.raises(ValidationError, match="set both field and agg"):
        ChangeCheck(name="c", index="x", field="bytes", critical=1)
    with pytest.raises(ValidationError, match="set both field and agg"):
        ChangeCheck(name="c", index="x", agg="sum", critical=1)
    with pytest.raises(ValidationError, match="percentile is required"):
        ChangeCheck(name="c", index="x", field="f", agg="percentile", critical=1)


def test_freshness_defaults():
    check = FreshnessCheck(name="f", index="x", critical=300)
    assert check.window == timedelta(hours=24)
    assert check.unit == "s"
    assert check.effective_no_data is State.CRITICAL
    assert FreshnessCheck(name="f", index="x", critical=1, no_data="ok").effective_no_data is (
        State.OK
    )


def test_cluster_kinds():
    assert set(CLUSTER_KINDS) == {
        "cluster_health",
        "nodes",
        "unassigned_shards",
        "jvm_heap",
        "disk",
        "master",
        "snapshot",
        "thread_pool",
    }
    health = ClusterHealthCheck(name="h")
    assert health.is_cluster_kind and health.index == ()
    heap = JvmHeapCheck(name="j")
    assert (str(heap.warning), str(heap.critical), heap.unit) == ("85", "95", "%")
    disk = DiskCheck(name="d")
    assert (str(disk.warning), str(disk.critical), disk.unit) == ("80", "90", "%")
    assert MasterCheck(name="m").node_urls == ()
    assert MasterCheck(name="m", node_urls="http://a:9200").node_urls == ("http://a:9200",)
    with pytest.raises(ValidationError, match="expected_nodes"):
        NodesCheck(name="n")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        NodesCheck(name="n", expected_nodes=0)
    with pytest.raises(ValidationError, match="set warning and/or critical"):
        check_adapter.validate_python({"kind": "unassigned_shards", "name": "u"})


def test_discriminated_union():
    check = check_adapter.validate_python({"kind": "disk", "name": "d"})
    assert isinstance(check, DiskCheck)
    with pytest.raises(ValidationError):
        check_adapter.validate_python({"kind": "nope", "name": "d"})


def test_with_source_copies():
    check = count()
    located = check.with_source("checks/web.yaml", 12)
    assert (located.source_file, located.source_line) == ("checks/web.yaml", 12)
    assert check.source_file is None
    assert "source_file" not in located.model_dump()


def test_every_kind_has_a_class():
    assert list(CHECK_CLASSES) == [
        "count",
        "metric",
        "ratio",
        "change",
        "freshness",
        "cluster_health",
        "nodes",
        "unassigned_shards",
        "jvm_heap",
        "disk",
        "master",
        "snapshot",
        "thread_pool",
    ]


def test_schema():
    schema = check_file_schema()
    assert set(schema["properties"]) == {"defaults", "checks"}
    defaults = schema["properties"]["defaults"]["properties"]
    assert "name" not in defaults and "kind" not in defaults and "window" in defaults
    assert "source_file" not in str(schema) and "source_line" not in str(schema)
    count_schema = schema["$defs"]["CountCheck"]
    assert count_schema["additionalProperties"] is False
    assert {"kind", "name", "index"} <= set(count_schema["required"])
    assert count_schema["properties"]["window"]["type"] == "string"
    assert "pattern" in count_schema["properties"]["window"]
    one = check_file_schema("nodes")
    assert "expected_nodes" in one["properties"]["checks"]["items"]["properties"]
    with pytest.raises(ValueError, match="unknown kind"):
        check_file_schema("nope")


def _doc_blocks() -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```", DOCS.read_text(encoding="utf-8"), re.S | re.M)


def test_docs_have_examples_for_every_kind():
    kinds = set()
    for block in _doc_blocks():
        kinds |= {check.kind for check in load_text(block)}
    assert kinds == set(CHECK_CLASSES)


@pytest.mark.parametrize("index", range(len(_doc_blocks())))
def test_docs_yaml_examples_load(index):
    block = _doc_blocks()[index]
    checkset = load_text(block, f"docs/checks.md#yaml-{index}")
    assert len(checkset) >= 1


def test_query_dsl_dates_and_str_tags_are_text() -> None:
    """A YAML date in a query_dsl is sent as it was written; ``!!str 5`` is the text "5"."""
    from esbridge.esbackend import ndjson_line

    check = load_text(
        "checks:\n  - name: a\n    kind: count\n    index: logs\n    critical: 5\n"
        "    query_dsl: {range: {'@timestamp': {gte: 2024-06-01}}, _name: !!str 5}\n"
    ).get("a")
    assert check.query_dsl == {"range": {"@timestamp": {"gte": "2024-06-01"}}, "_name": "5"}
    assert b'"gte":"2024-06-01"' in ndjson_line(check.query_dsl)
    assert check.model_dump(mode="json")["query_dsl"] == check.query_dsl


@pytest.mark.parametrize(
    "kind, extra",
    [
        ("ratio", "numerator: 'status:500'"),
        ("change", "agg: avg\n    field: f\n    window: 5m"),
        ("freshness", ""),
        ("jvm_heap", ""),
        ("disk", ""),
        ("thread_pool", ""),
        ("snapshot", "repository: backups"),
    ],
)
def test_every_kind_bounds_its_unit(kind: str, extra: str) -> None:
    from esbridge.loader import CheckFileError

    index = "    index: logs\n" if kind in ("ratio", "change", "freshness") else ""
    text = (
        f"checks:\n  - name: a\n    kind: {kind}\n{index}    critical: 5\n"
        f"    {extra}\n    unit: {'x' * 257}\n"
    )
    with pytest.raises(CheckFileError, match="field 'unit': too long"):
        load_text(text)


def test_master_node_urls_are_checked_like_connection_urls() -> None:
    from esbridge.loader import CheckFileError

    with pytest.raises(CheckFileError) as info:
        load_text(
            "checks:\n  - name: m\n    kind: master\n"
            "    node_urls: ['http://es1:9200', 'es2:9200', 'https://u:pw-1234@es3']\n"
        )
    text = str(info.value)
    assert "field 'node_urls': 'es2:9200' is not an http:// or https:// URL" in text
    assert "pw-1234" not in text
    with pytest.raises(CheckFileError, match=r"'https://\*\*\*@es3' has credentials"):
        load_text(
            "checks:\n  - name: m\n    kind: master\n    node_urls: ['https://u:pw-1234@es3']\n"
        )
    check = load_text(
        "checks:\n  - name: m\n    kind: master\n    node_urls: 'http://es1:9200, https://es2'\n"
    ).get("m")
    assert check.node_urls == ("http://es1:9200", "https://es2")
