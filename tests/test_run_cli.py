"""``esbridge run --checks FILE --es-url URL NAME`` as a real process: text and exit code.

This is what an operator (or Nagios, through the plugin's direct mode) runs by hand, so the
whole path counts: argument parsing, check loading, one cycle against Elasticsearch, the
rendered plugin text on stdout and the Nagios exit code.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.es


def esbridge_run(
    es_url: str, checks_file: Path, name: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ESBRIDGE_")}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "esbridge",
            "run",
            "--checks",
            str(checks_file),
            "--es-url",
            es_url,
            name,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env=env,
    )


@pytest.fixture
def checks_file(
    tmp_path: Path, make_index: Callable[..., str], seed: Callable[..., Any]
) -> tuple[Path, str]:
    """12 documents in the last 5 minutes; one check per Nagios state."""
    index = make_index("cli", mappings={"properties": {"host": {"type": "keyword"}}})
    seed(index, [{"host": "web-01", "ago": "1m"}] * 12)
    missing = f"esb-missing-{uuid.uuid4().hex[:8]}"
    checks = [
        {"name": "web-ok", "kind": "count", "warning": 20, "critical": 50},
        {"name": "web-warn", "kind": "count", "warning": 10, "critical": 50},
        {"name": "web-crit", "kind": "count", "warning": 5, "critical": 10},
        {"name": "web-gone", "kind": "count", "index": missing, "critical": 10},
    ]
    path = tmp_path / "checks.yaml"
    path.write_text(json.dumps({"defaults": {"index": index}, "checks": checks}))
    return path, index


@pytest.mark.parametrize(
    ("name", "code", "line"),
    [
        ("web-ok", 0, "OK - 12 matching documents in last 5m on {index} "
         "(warning > 20, critical > 50) | 'count'=12;20;50;0"),
        ("web-warn", 1, "WARNING - 12 matching documents in last 5m on {index} "
         "(warning > 10) | 'count'=12;10;50;0"),
        ("web-crit", 2, "CRITICAL - 12 matching documents in last 5m on {index} "
         "(critical > 10) | 'count'=12;5;10;0"),
    ],
)  # fmt: skip
def test_run_prints_plugin_output_and_exits_with_state(
    es_url: str, checks_file: tuple[Path, str], tmp_path: Path, name: str, code: int, line: str
) -> None:
    path, index = checks_file
    proc = esbridge_run(es_url, path, name, tmp_path)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == line.format(index=index) + "\n"


def test_run_missing_index_is_unknown(
    es_url: str, checks_file: tuple[Path, str], tmp_path: Path
) -> None:
    path, _ = checks_file
    proc = esbridge_run(es_url, path, "web-gone", tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("UNKNOWN - no such index [esb-missing-")
    assert proc.stdout.count("\n") == 1


def test_run_unknown_name_suggests(
    es_url: str, checks_file: tuple[Path, str], tmp_path: Path
) -> None:
    """A typo exits 3 (UNKNOWN, as Nagios needs) and names the close matches."""
    path, _ = checks_file
    proc = esbridge_run(es_url, path, "web-critt", tmp_path)
    assert proc.returncode == 3
    assert proc.stdout.startswith("UNKNOWN - no check named 'web-critt'")
    assert "did you mean: web-crit" in proc.stdout


def test_run_unreachable_elasticsearch_is_unknown(
    checks_file: tuple[Path, str], tmp_path: Path
) -> None:
    """Nothing listening at the URL: UNKNOWN with the reason, exit 3, no traceback."""
    path, _ = checks_file
    proc = esbridge_run("http://127.0.0.1:9", path, "web-ok", tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout.startswith("UNKNOWN - Elasticsearch unreachable")
    assert "Traceback" not in proc.stderr


def test_a_url_on_the_command_line_is_checked_like_one_in_the_file(
    checks_file: tuple[Path, str], tmp_path: Path
) -> None:
    """--es-url with a password in it would print the password wherever the URL is shown:
    refused as in the configuration file, with *** in its place; a URL without a scheme
    is refused at once, not at its first request."""
    path, _ = checks_file
    proc = esbridge_run("http://elastic:S3cretPW@127.0.0.1:9", path, "web-ok", tmp_path)
    assert proc.returncode == 3, proc
    assert "--es-url: 'http://***@127.0.0.1:9' has credentials in it" in proc.stdout + proc.stderr
    assert "S3cretPW" not in proc.stdout + proc.stderr
    proc = esbridge_run("127.0.0.1:9200", path, "web-ok", tmp_path)
    assert proc.returncode == 3 and "is not an http:// or https:// URL" in proc.stdout


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["run"], "the following arguments are required: CHECK_NAME"),
        (["run", "web-5xx", "--bogus"], "unrecognized arguments: --bogus"),
        (["run", "--at"], "argument --at: expected one argument"),
    ],
)
def test_bad_arguments_to_run_are_unknown_never_critical(argv, reason, capsys):
    """``esbridge run`` is also a Nagios plugin: argparse's exit 2 read CRITICAL there."""
    from esbridge.cli import main

    assert main(argv) == 3
    out = capsys.readouterr()
    assert out.out == f"UNKNOWN - esbridge run: {reason} (see esbridge run --help)\n"
    assert reason in out.err  # argparse's usage and message stay on stderr
