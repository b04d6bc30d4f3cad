"""The bad-input corpus: every mistake an operator makes gets a precise, plain message."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from esbridge.cli import main
from esbridge.loader import CheckFileError, load_checks

CORPUS = Path(__file__).resolve().parent / "bad_input"

# file → (check, field, line, fragments of the message)
CASES = {
    "invalid_yaml.yaml": (None, None, 5, ["invalid YAML", "mapping values are not allowed"]),
    "unknown_kind.yaml": (
        "web-typo-kind",
        "kind",
        3,
        ["unknown kind 'cuont'", "did you mean 'count'?", "kinds: count"],
    ),
    "unknown_field.yaml": ("web-5xx", "critcal", 6, ["unknown field", "did you mean 'critical'?"]),
    "bad_range_order.yaml": (
        "web-range-order",
        "critical",
        5,
        ["invalid range '10:5'", "start 10 is greater than end 5"],
    ),
    "bad_range_text.yaml": ("web-range-text", "warning", 5, ["invalid range 'abc'", "[@][start:]"]),
    "bad_duration.yaml": ("web-window", "window", 5, ["invalid duration '5 minutes'", "5m"]),
    "query_and_dsl.yaml": (
        "web-both-queries",
        "query_dsl",
        6,
        ["set either query or query_dsl, not both"],
    ),
    "query_dsl_list.yaml": ("web-dsl-list", "query_dsl", 5, ["must be a JSON object", "a list"]),
    "max_groups_zero.yaml": ("web-groups", "max_groups", 6, ["must be at least 1, got 0"]),
    "interval_zero.yaml": (
        "web-interval-zero",
        "interval",
        5,
        ["absurd interval 0s", "between 1s and 7d"],
    ),
    "interval_huge.yaml": (
        "web-interval-huge",
        "interval",
        5,
        ["absurd interval 30d", "between 1s and 7d"],
    ),
    "percentile_missing.yaml": (
        "web-p99",
        "percentile",
        2,
        ["percentile is required when agg is percentile"],
    ),
    "no_thresholds.yaml": ("web-no-threshold", None, 2, ["set warning and/or critical"]),
    "unknown_top_level.yaml": (None, "default", 1, ["unknown top-level key", "'defaults'?"]),
    "bad_default.yaml": (None, "defaults.interval", 3, ["absurd interval 30d"]),
    "query_dsl_timestamp.yaml": (
        "web-since-cutover",
        "query_dsl",
        5,
        ["the YAML timestamp 2024-06-01 00:00:00 is not JSON", "quote it"],
    ),
    "query_dsl_tag.yaml": (
        "web-env-tag",
        "query_dsl",
        5,
        ["the tagged value !env SERVICE is not JSON", "quote it"],
    ),
    # an empty index in an _msearch header means every index: refused, never sent
    "empty_index.yaml": ("web-no-index", "index.1", 4, ["must not be empty"]),
    "empty_field.yaml": ("web-latency", "field", 5, ["must not be empty"]),
    "group_by_change.yaml": (
        "web-change-grouped",
        "group_by",
        5,
        ["not supported for kind 'change'"],
    ),
}


def test_every_corpus_file_has_a_case():
    files = {p.name for p in CORPUS.glob("*.yaml")}
    assert files == set(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input(name):
    check, field, line, fragments = CASES[name]
    path = CORPUS / name
    with pytest.raises(CheckFileError) as info:
        load_checks([path])
    (issue,) = info.value.issues
    assert issue.file == str(path)
    assert (issue.check, issue.field, issue.line) == (check, field, line)
    for fragment in fragments:
        assert fragment in issue.message
    text = str(info.value)
    assert text.startswith(f"{path}:{line}: ")
    assert "pydantic" not in text and "type=" not in text and "errors.pydantic.dev" not in text


def test_duplicate_names_across_files():
    folder = CORPUS / "duplicate"
    with pytest.raises(CheckFileError) as info:
        load_checks([folder])
    (issue,) = info.value.issues
    assert issue.file == str(folder / "b.yaml") and issue.line == 6
    assert issue.check == "web-dup" and issue.field == "name"
    assert issue.message == f"duplicate check name: also defined at {folder / 'a.yaml'}:2"


def test_duplicate_names_within_a_file():
    text = "checks:\n  - {name: a, kind: cluster_health}\n  - {name: a, kind: cluster_health}\n"
    from esbridge.loader import load_text

    with pytest.raises(CheckFileError, match=r"<text>:3: check 'a'.*also defined at <text>:2"):
        load_text(text)


def test_empty_directory(tmp_path):
    with pytest.raises(CheckFileError) as info:
        load_checks([tmp_path])
    assert str(info.value) == f"{tmp_path}: no check files (*.yaml, *.yml) in {tmp_path}"


def test_unreadable_file_broken_symlink(tmp_path):
    (tmp_path / "gone.yaml").symlink_to(tmp_path / "missing-target.yaml")
    with pytest.raises(CheckFileError) as info:
        load_checks([tmp_path])
    (issue,) = info.value.issues
    assert issue.file == str(tmp_path / "gone.yaml")
    assert issue.message.startswith("cannot read: ")


def test_unreadable_file_directory_named_yaml(tmp_path):
    """A directory named x.yaml given explicitly is walked, not read; found empty here."""
    (tmp_path / "x.yaml").mkdir()
    with pytest.raises(CheckFileError, match="no check files"):
        load_checks([tmp_path / "x.yaml"])


def test_unreadable_file_permissions(tmp_path, monkeypatch):
    path = tmp_path / "secret.yaml"
    path.write_text("checks: []\n")
    path.chmod(0)
    if os.geteuid() == 0:
        # Root reads a chmod 000 file anyway: give the loader the error any other user gets.
        real_read_text = Path.read_text

        def denied(self, *args, **kwargs):
            if self == path:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
            return real_read_text(self, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(CheckFileError, match="cannot read: Permission denied"):
        load_checks([path])


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"checks: []\n# caf\xe9\n")
    with pytest.raises(CheckFileError, match="not UTF-8 text"):
        load_checks([path])


def test_validate_cli_prints_every_issue(capsys):
    code = main(["validate", str(CORPUS)])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    # one line per issue: every corpus file plus the duplicate
    assert len(out) == len(CASES) + 1
    assert all(line.startswith(str(CORPUS)) for line in out)
