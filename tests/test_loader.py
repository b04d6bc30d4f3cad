"""Loader: files, directories, defaults, line numbers, issue collection, samples."""

from __future__ import annotations

from pathlib import Path

import pytest

from esbridge.loader import CheckFileError, CheckSet, Issue, load_checks, load_text
from esbridge.models import CountCheck, MetricCheck

ROOT = Path(__file__).resolve().parent.parent


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


GOOD = """\
defaults:
  index: logs-web-*
  interval: 30s
  labels: {team: web, tier: front}
checks:
  - name: a
    kind: count
    critical: 5
    labels: {tier: edge}
  - name: b
    kind: metric
    field: latency_ms
    agg: avg
    interval: 15s
    warning: 100
"""


def test_load_file_with_defaults(tmp_path):
    path = write(tmp_path / "web.yaml", GOOD)
    checkset = load_checks([path])
    assert isinstance(checkset, CheckSet)
    assert checkset.names() == ["a", "b"]
    assert len(checkset) == 2 and "a" in checkset
    a, b = list(checkset)
    assert isinstance(a, CountCheck) and isinstance(b, MetricCheck)
    assert a.index == ("logs-web-*",)
    assert a.labels == {"team": "web", "tier": "edge"}  # labels merged
    assert b.labels == {"team": "web", "tier": "front"}
    assert a.interval.total_seconds() == 30 and b.interval.total_seconds() == 15  # overridden
    assert (a.source_file, a.source_line) == (str(path), 6)
    assert b.source_line == 10
    assert checkset.get("b") is b and checkset.get("zzz") is None
    assert checkset.files == (str(path),)
    assert type(a.labels) is dict  # plain values, not ruamel types


def test_directory_recursive_sorted(tmp_path):
    write(tmp_path / "b.yml", "checks:\n  - {name: b1, kind: cluster_health}\n")
    write(tmp_path / "a.yaml", "checks:\n  - {name: a1, kind: cluster_health}\n")
    write(tmp_path / "sub" / "c.yaml", "checks:\n  - {name: c1, kind: cluster_health}\n")
    write(tmp_path / "notes.txt", "ignored")
    checkset = load_checks([tmp_path])
    assert checkset.names() == ["a1", "b1", "c1"]
    assert [Path(f).name for f in checkset.files] == ["a.yaml", "b.yml", "c.yaml"]


def test_a_configmap_volume_is_read_once(tmp_path):
    """Kubernetes mounts a ConfigMap as ``..<timestamp>/web.yaml``, a ``..data`` link to it
    and a link per file: each check once, not a duplicate that stops the start."""
    volume = tmp_path / "checks"
    stamp = volume / "..2026_11_30_07_00_00.000000001"
    stamp.mkdir(parents=True)
    (stamp / "web.yaml").write_text(
        "checks:\n  - {name: web-5xx, kind: count, index: logs, critical: 5}\n"
    )
    (volume / "..data").symlink_to(stamp.name)
    (volume / "web.yaml").symlink_to("..data/web.yaml")
    (volume / ".hidden.yaml").write_text("checks: [oops\n")  # an editor's swap file, say
    checkset = load_checks([volume])
    assert list(checkset.checks) == ["web-5xx"]
    assert list(checkset.files) == [str(volume / "web.yaml")]


def test_single_path_and_empty_files(tmp_path):
    write(tmp_path / "empty.yaml", "")
    write(tmp_path / "none.yaml", "checks: []\n")
    assert len(load_checks(tmp_path)) == 0
    assert len(load_checks(str(tmp_path / "none.yaml"))) == 0


def test_all_issues_of_all_files_collected(tmp_path):
    write(tmp_path / "a.yaml", "checks:\n  - name: x\n    kind: count\n")
    write(tmp_path / "b.yaml", "checks:\n  - name: y\n    kind: count\n    index: i\n    warn: 1\n")
    with pytest.raises(CheckFileError) as info:
        load_checks([tmp_path])
    issues = info.value.issues
    assert {Path(i.file).name for i in issues} == {"a.yaml", "b.yaml"}
    assert len(str(info.value).splitlines()) == len(issues)
    assert any(i.field == "warn" and "did you mean 'warning'" in i.message for i in issues)


def test_file_with_error_rejected_whole(tmp_path):
    text = "checks:\n  - {name: ok, kind: cluster_health}\n  - {name: bad, kind: nodes}\n"
    with pytest.raises(CheckFileError) as info:
        load_checks([write(tmp_path / "c.yaml", text)])
    (issue,) = info.value.issues
    assert issue.check == "bad" and issue.field == "expected_nodes" and issue.line == 3
    assert issue.message == "missing required field"


def test_issue_str():
    issue = Issue("checks/web.yaml", "web-5xx", "critcal", 12, "unknown field")
    assert str(issue) == "checks/web.yaml:12: check 'web-5xx': field 'critcal': unknown field"
    assert str(Issue("f.yaml", None, None, None, "boom")) == "f.yaml: boom"


def test_unknown_field_of_other_kind_hint():
    with pytest.raises(CheckFileError, match="'expected_nodes' is a field of kind nodes"):
        load_text("checks:\n  - {name: a, kind: count, index: i, critical: 1, expected_nodes: 2}")


def test_missing_name_and_kind():
    with pytest.raises(CheckFileError) as info:
        load_text("checks:\n  - kind: cluster_health\n  - name: b\n")
    messages = [str(i) for i in info.value.issues]
    assert messages[0] == "<text>:2: field 'name': missing required field (check #1)"
    assert messages[1].startswith("<text>:3: check 'b': field 'kind': missing field; one of: count")


def test_structure_errors():
    cases = {
        "- a\n- b\n": "expected a mapping with 'checks:'",
        "checks: {name: a}\n": "must be a list of checks",
        "checks:\n  - just text\n": "check #1 must be a mapping",
        "defaults: [1]\nchecks: []\n": "field 'defaults': must be a mapping",
        "defaults: {name: x}\nchecks: []\n": "'name' cannot be a default",
        "defaults: {expected_nodes: 1}\nchecks: []\n": "a field of kind nodes",
        "defaults: {windw: 5m}\nchecks: []\n": "did you mean 'window'?",
    }
    for text, expected in cases.items():
        with pytest.raises(CheckFileError, match=expected):
            load_text(text)


def test_x_keys_and_anchors_allowed():
    text = (
        "x-base: &base {index: logs-web-*, critical: 5}\n"
        "checks:\n  - {<<: *base, name: a, kind: count}\n"
    )
    assert load_text(text).get("a").index == ("logs-web-*",)


def test_bad_default_reported_once_at_defaults_line():
    text = "defaults:\n  index: i\n  window: nope\nchecks:\n"
    text += "".join(f"  - {{name: c{n}, kind: count, critical: 1}}\n" for n in range(3))
    with pytest.raises(CheckFileError) as info:
        load_text(text)
    (issue,) = info.value.issues
    assert (issue.field, issue.line, issue.check) == ("defaults.window", 3, None)


def test_nested_line_numbers():
    text = "checks:\n  - name: a\n    kind: count\n    index: i\n    critical: 1\n"
    text += "    labels:\n      team: [not, a, string]\n"
    with pytest.raises(CheckFileError) as info:
        load_text(text)
    (issue,) = info.value.issues
    assert issue.field == "labels.team" and issue.line == 7
    assert "https://" not in issue.message and "type=" not in issue.message


def test_missing_path(tmp_path):
    with pytest.raises(CheckFileError, match="no such file or directory"):
        load_checks([tmp_path / "nope.yaml"])


def test_sample_checks_validate():
    checkset = load_checks([ROOT / "checks"])
    assert len(checkset.files) >= 3
    kinds = {check.kind for check in checkset}
    assert kinds == {
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
        "thread_pool",
    }
    for check in checkset:
        assert check.interval is not None
        assert 15 <= check.interval.total_seconds() <= 30, check.name
        assert check.source_file and check.source_line
