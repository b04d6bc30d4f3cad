"""check_esbridge: the plugin file run as Nagios runs it.

The single file is COPIED to a temporary folder outside the project and run by the real
interpreter (not the venv shim) with ``-I -S``: that proves it is self-contained. The server
is a small stdlib fake of the HTTP contract in docs/architecture.md; it checks the plugin's
parsing only (the real service is exercised by the client tests).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from _require import require

ROOT = Path(__file__).resolve().parents[1]
PLUGIN_SRC = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))

BODY_CRIT = (
    "CRITICAL - 312 5xx responses in last 5m on logs-web-* (critical > 50) "
    "| 'errors'=312;10;50;0;\n"
    "web-01: 300 5xx responses ¦ naïve ünïcödé ✓\n"
    "web-02: 12 5xx responses | 'web-01'=300;10;50;0; 'web-02'=12;10;50;0;"
).encode()


class Fake:
    """Routes: request target -> response spec; records every request."""

    def __init__(self):
        self.routes: dict[str, dict] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []

    def route(self, target, body=b"", status=200, headers=None, delay=0.0, raw=None):
        self.routes[target] = {
            "body": body if isinstance(body, bytes) else body.encode(),
            "status": status,
            "headers": headers if headers is not None else {},
            "delay": delay,
            "raw": raw,
        }

    def nagios(self, name, body, code, evaluated_at=None, **kw):
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "X-Nagios-Exit-Code": str(code),
        }
        if evaluated_at is not None:
            headers["X-Esbridge-Evaluated-At"] = f"{evaluated_at:.3f}"
        headers.update(kw.pop("headers", {}))
        self.route(f"/api/v1/checks/{name}/nagios", body, headers=headers, **kw)


@pytest.fixture(scope="module")
def server():
    fake = Fake()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            fake.requests.append((self.path, dict(self.headers)))
            spec = fake.routes.get(self.path)
            if spec is None:
                self.send_response(599)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if spec["delay"]:
                time.sleep(spec["delay"])
            if spec["raw"] is not None:
                self.wfile.write(spec["raw"])
                self.wfile.flush()
                self.close_connection = True
                return
            self.send_response(spec["status"])
            for key, value in spec["headers"].items():
                self.send_header(key, value)
            if "Transfer-Encoding" not in spec["headers"]:
                self.send_header("Content-Length", str(len(spec["body"])))
            self.end_headers()
            self.wfile.write(spec["body"])
            self.close_connection = True

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    fake.port = httpd.server_address[1]
    yield fake
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """The plugin file copied alone into a folder outside the project."""
    folder = tmp_path_factory.mktemp("plugins")
    assert ROOT not in folder.parents
    target = folder / "check_esbridge"
    shutil.copy(PLUGIN_SRC, target)
    target.chmod(0o755)
    return target


def run(plugin, *args, env=None, timeout=30, pyflags=("-I", "-S")):
    full_env = {"PATH": "/usr/bin:/bin", "LC_ALL": "C"}
    full_env.update(env or {})
    return subprocess.run(
        [PYTHON, *pyflags, str(plugin), *args],
        capture_output=True,
        env=full_env,
        cwd=plugin.parent,
        timeout=timeout,
    )


def one_unknown_line(proc) -> str:
    assert proc.returncode == 3, proc
    out = proc.stdout.decode()
    assert out.startswith("UNKNOWN - "), out
    assert out.endswith("\n") and out.count("\n") == 1, out
    return out.rstrip("\n")


# --------------------------------------------------------------------------- states, bytes


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (0, b"OK - 0 5xx responses in last 5m | 'errors'=0;10;50;0;"),
        (1, b"WARNING - 12 5xx responses (warning > 10) | 'errors'=12;10;50;0;"),
        (2, BODY_CRIT),
        (3, b"UNKNOWN - Elasticsearch unreachable: connection refused"),
    ],
)
def test_state_exit_code_and_exact_bytes(server, plugin, code, body):
    server.nagios(f"s{code}", body, code, evaluated_at=time.time())
    proc = run(plugin, "-H", server.url, "-C", f"s{code}")
    assert proc.returncode == code
    assert proc.stdout == body + b"\n"  # byte-identical, plus exactly one newline
    assert proc.stderr == b""


def test_body_with_trailing_newline_gets_no_second_one(server, plugin):
    server.nagios("nl", b"OK - fine\n", 0)
    proc = run(plugin, "-H", server.url, "-C", "nl")
    assert (proc.returncode, proc.stdout) == (0, b"OK - fine\n")


def test_url_from_env_and_base_path_prefix(server, plugin):
    server.route(
        "/proxy/esbridge/api/v1/checks/p/nagios",
        b"OK - behind a proxy",
        headers={"X-Nagios-Exit-Code": "0"},
    )
    proc = run(plugin, "-C", "p", env={"ESBRIDGE_URL": server.url + "/proxy/esbridge/"})
    assert (proc.returncode, proc.stdout) == (0, b"OK - behind a proxy\n")


def test_group_and_name_are_percent_encoded(server, plugin):
    target = (
        "/api/v1/checks/web%20errors%2F5xx/nagios?group=host%3Dweb-01.example&group=dc%3Dz%C3%BC"
    )
    server.route(target, b"OK - group fine", headers={"X-Nagios-Exit-Code": "0"})
    proc = run(
        plugin, "--url=" + server.url, "--check", "web errors/5xx", "-g", "host=web-01.example",
        "--group=dc=zü",
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"OK - group fine\n")
    assert server.requests[-1][0] == target


def test_chunked_response(server, plugin):
    body = b"WARNING - chunked | 'v'=1;;"
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    server.route(
        "/api/v1/checks/chunky/nagios",
        chunked,
        headers={"X-Nagios-Exit-Code": "1", "Transfer-Encoding": "chunked"},
    )
    proc = run(plugin, "-H", server.url, "-C", "chunky")
    assert (proc.returncode, proc.stdout) == (1, body + b"\n")


# --------------------------------------------------------------------------- max-age


def test_max_age_fresh_passes_through(server, plugin):
    server.nagios("fresh", b"CRITICAL - bad", 2, evaluated_at=time.time() - 30)
    proc = run(plugin, "-H", server.url, "-C", "fresh", "--max-age", "600")
    assert (proc.returncode, proc.stdout) == (2, b"CRITICAL - bad\n")


def test_max_age_old_result_is_unknown(server, plugin):
    started = time.time()
    server.nagios("old", b"OK - all good | 'x'=1;;", 0, evaluated_at=started - 700)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "old", "--max-age", "600"))
    # 700 s old when asked; a second or more later on a loaded machine (a CI run: 701)
    age = re.match(r"UNKNOWN - result for old is (\d+) s old \(max-age 600 s\)", line)
    assert age is not None, line
    assert 700 <= int(age.group(1)) <= 700 + math.ceil(time.time() - started), line
    assert "last result: OK - all good" in line and "|" not in line


def test_max_age_without_evaluation_time_is_unknown(server, plugin):
    server.nagios("never", b"OK - odd", 0)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "never", "--max-age", "60"))
    assert "no evaluation time" in line


# --------------------------------------------------------------------------- failures


def test_timeout_is_unknown_within_the_bound(server, plugin):
    server.nagios("slow", b"OK - too late", 0, delay=5)
    start = time.monotonic()
    proc = run(plugin, "-H", server.url, "-C", "slow", "-t", "1")
    elapsed = time.monotonic() - start
    assert one_unknown_line(proc) == f"UNKNOWN - esbridge at {server.url} did not answer within 1 s"
    assert elapsed < 2.5


def test_connection_refused(plugin):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    line = one_unknown_line(run(plugin, "-H", url, "-C", "x"))
    assert line == f"UNKNOWN - cannot reach esbridge at {url}: connection refused"


def test_unresolvable_host(plugin):
    line = one_unknown_line(run(plugin, "-H", "http://no-such-host.invalid:9108", "-C", "x"))
    assert "cannot reach esbridge at http://no-such-host.invalid:9108" in line


def test_404_did_you_mean(server, plugin):
    server.route(
        "/api/v1/checks/web-erors/nagios",
        b'{"error": "no check named \'web-erors\'", "did_you_mean": ["web-errors", "web-5xx"]}',
        status=404,
        headers={"Content-Type": "application/json"},
    )
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "web-erors"))
    assert line == "UNKNOWN - no check named 'web-erors', did you mean: web-errors, web-5xx?"


def test_404_not_json(server, plugin):
    server.route("/api/v1/checks/nf/nagios", b"Not Found", status=404)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "nf"))
    assert line.startswith("UNKNOWN - esbridge answered HTTP 404 for check nf")


def test_500(server, plugin):
    server.route("/api/v1/checks/boom/nagios", b"Internal Server Error", status=500)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "boom"))
    assert line == "UNKNOWN - esbridge answered HTTP 500 for check boom"


def test_503_json_reason(server, plugin):
    server.route(
        "/api/v1/checks/busy/nagios",
        b'{"error": "starting up:\\nno results yet"}',
        status=503,
        headers={"Content-Type": "application/json"},
    )
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "busy"))
    assert (
        line == "UNKNOWN - esbridge answered HTTP 503 for check busy: starting up: no results yet"
    )


@pytest.mark.parametrize(
    ("name", "spec", "expected"),
    [
        (
            "html",
            {"body": b"<!doctype html><html><body>Welcome to nginx</body></html>",
             "headers": {"Content-Type": "text/html", "X-Nagios-Exit-Code": "0"}},
            "an HTML page",
        ),
        ("nohdr", {"body": b"OK - no header", "headers": {}}, "no X-Nagios-Exit-Code header"),
        ("badhdr", {"body": b"OK - x", "headers": {"X-Nagios-Exit-Code": "7"}},
         "X-Nagios-Exit-Code '7'"),
        ("empty", {"body": b"", "headers": {"X-Nagios-Exit-Code": "0"}}, "empty body"),
        ("latin1", {"body": b"OK - caf\xe9", "headers": {"X-Nagios-Exit-Code": "0"}},
         "not UTF-8"),
        ("trunc", {"raw": b"HTTP/1.1 200 OK\r\nX-Nagios-Exit-Code: 2\r\nContent-Length: 100\r\n"
                          b"\r\nCRITICAL - cut"},
         "body truncated (got 14 of 100 bytes)"),
        ("headcut", {"raw": b"HTTP/1.1 200 OK\r\nX-Nagios-Exit"}, "headers cut short"),
        ("nothttp", {"raw": b"SSH-2.0-OpenSSH_9.2\r\n\r\n"}, "not HTTP"),
        ("silent", {"raw": b""}, "closed without a response"),
    ],
)  # fmt: skip
def test_garbage_is_unknown(server, plugin, name, spec, expected):
    server.route(f"/api/v1/checks/{name}/nagios", **spec)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", name))
    assert line.startswith("UNKNOWN - unexpected answer from esbridge: "), line
    assert expected in line


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["-H", "http://127.0.0.1:9108"], "no check name: give -C/--check"),
        (["-C", "x"], "no esbridge URL: give -H/--url or set $ESBRIDGE_URL"),
        (["-H", "127.0.0.1:9108", "-C", "x"], "--url must start with http:// or https://"),
        (["-H", "http://h:99999", "-C", "x"], "bad port in --url"),
        (["-H", "http://u:p@h", "-C", "x"], "must not contain credentials"),
        (["-H", "http://h", "-C", "x", "-t", "soon"], "-t/--timeout must be a positive number"),
        (["-H", "http://h", "-C", "x", "-t", "0"], "-t/--timeout must be a positive number"),
        (["-H", "http://h", "-C", "x", "--max-age", "-5"], "--max-age must be a positive"),
        (["-H", "http://h", "-C", "x", "-g", "web-01"], "-g/--group must be KEY=VALUE"),
        (["-H", "http://h", "-C", "x", "--frobnicate"], "unknown option '--frobnicate'"),
        (["-H", "http://h", "-C", "x", "-C", "y"], "option '-C' given twice"),
        (["-H", "http://h", "-C"], "option '-C' needs a value"),
        (["-H", "http://h", "-C", "x", "stray"], "unexpected argument 'stray'"),
        (["-H", "http://h", "-C", "x", "--token", "s3cret"], "not accepted on the command line"),
        (["-H", "http://h", "-C", "x", "--checks", "c/"], "need --direct"),
        (["--direct", "-C", "x"], "--direct needs --checks PATH"),
    ],
)
def test_bad_arguments(plugin, args, expected):
    line = one_unknown_line(run(plugin, *args))
    assert line.endswith(" (see --help)"), line
    assert expected in line
    assert "s3cret" not in line


def test_arguments_that_are_not_utf8_give_one_unknown_line(server, plugin, tmp_path):
    """Nagios macros in a non-UTF-8 locale can pass such bytes: still one line and exit 3
    (an error message echoing them used to raise again: a traceback, exit 1)."""
    line = one_unknown_line(run(plugin, b"\xff"))
    assert line == "UNKNOWN - unexpected argument '\\udcff' (see --help)", line
    missing = os.fsdecode(bytes(tmp_path) + b"/gone\xff")
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "x", "--token-file", missing))
    assert line.startswith("UNKNOWN - cannot read --token-file ") and "gone\\udcff" in line
    server.nagios("web%FF", "OK - bytes", 0)
    proc = run(plugin, "-H", server.url, "-C", b"web\xff")  # sent as the bytes it came as
    assert (proc.returncode, proc.stdout) == (0, b"OK - bytes\n")


def test_help_and_version(plugin):
    proc = run(plugin, "-h")
    assert proc.returncode == 3
    assert b"Usage:" in proc.stdout and b"--max-age" in proc.stdout
    assert run(plugin, "--help").stdout == proc.stdout
    proc = run(plugin, "-V")
    assert (proc.returncode, proc.stdout) == (3, b"check_esbridge 0.1.0\n")


def test_version_matches_package():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert f'__version__ = "{version}"' in PLUGIN_SRC.read_text()


# --------------------------------------------------------------------------- token


TOKEN = "tok-3f9a1c7e55d0b2"


def test_token_from_env_is_sent_and_never_echoed(server, plugin):
    server.nagios("auth", b"OK - authorised", 0)
    proc = run(plugin, "-vv", "-H", server.url, "-C", "auth", env={"ESBRIDGE_TOKEN": TOKEN})
    assert (proc.returncode, proc.stdout) == (0, b"OK - authorised\n")
    assert server.requests[-1][1].get("Authorization") == f"Bearer {TOKEN}"
    assert TOKEN.encode() not in proc.stdout + proc.stderr
    assert b"token from $ESBRIDGE_TOKEN" in proc.stderr


def test_token_from_file_wins_and_is_never_echoed(server, plugin, tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    server.nagios("auth2", b"OK - authorised", 0)
    proc = run(
        plugin, "-v", "-H", server.url, "-C", "auth2", "--token-file", str(token_file),
        env={"ESBRIDGE_TOKEN": "other"},
    )  # fmt: skip
    assert proc.returncode == 0
    assert server.requests[-1][1].get("Authorization") == f"Bearer {TOKEN}"
    assert TOKEN.encode() not in proc.stdout + proc.stderr


def test_no_token_sends_no_authorization(server, plugin):
    server.nagios("anon", b"OK - anon", 0)
    assert run(plugin, "-H", server.url, "-C", "anon").returncode == 0
    assert "Authorization" not in server.requests[-1][1]


def test_rejected_token_hint(server, plugin, tmp_path):
    server.route("/api/v1/checks/locked/nagios", b'{"error": "bad token"}', status=401)
    line = one_unknown_line(run(plugin, "-H", server.url, "-C", "locked"))
    assert "requires a token (HTTP 401)" in line and "ESBRIDGE_TOKEN" in line
    server.route("/api/v1/checks/locked/nagios", b"", status=403)
    proc = run(plugin, "-vv", "-H", server.url, "-C", "locked", env={"ESBRIDGE_TOKEN": TOKEN})
    assert "refused the token (HTTP 403)" in one_unknown_line(proc)
    assert TOKEN.encode() not in proc.stdout + proc.stderr


def test_token_file_problems(plugin, tmp_path):
    line = one_unknown_line(
        run(plugin, "-H", "http://h", "-C", "x", "--token-file", str(tmp_path / "missing"))
    )
    assert "cannot read --token-file" in line
    empty = tmp_path / "empty"
    empty.write_text("\n")
    line = one_unknown_line(run(plugin, "-H", "http://h", "-C", "x", "--token-file", str(empty)))
    assert "is empty" in line


# --------------------------------------------------------------------------- start-up cost


def test_http_path_imports_only_what_it_needs(server, plugin):
    server.nagios("lean", b"OK - lean | 'v'=1;;", 0, evaluated_at=time.time())
    proc = run(
        plugin, "-H", server.url, "-C", "lean", "--max-age", "60",
        pyflags=("-X", "importtime", "-I", "-S"),
    )  # fmt: skip
    assert (proc.returncode, proc.stdout) == (0, b"OK - lean | 'v'=1;;\n")
    imported = {
        line.split("|")[-1].strip()
        for line in proc.stderr.decode().splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "_socket" in imported  # the parse did work
    top_level = {name.split(".")[0] for name in imported}
    heavy_modules = ("urllib", "email", "json", "ssl", "http", "socket", "argparse", "re", "enum")
    for heavy in (*heavy_modules, "os", "posixpath", "_collections_abc"):  # os: ~2 ms a run
        assert heavy not in top_level, f"{heavy} imported on the http success path"


# --------------------------------------------------------------------------- direct mode


def test_direct_mode_without_package(plugin, tmp_path):
    line = one_unknown_line(run(plugin, "--direct", "--checks", str(tmp_path), "-C", "x"))
    assert line == "UNKNOWN - direct mode needs the esbridge package installed"


def _fake_cli(monkeypatch, run_one):
    import types

    module = types.ModuleType("esbridge.cli")
    module.run_one = run_one
    monkeypatch.setitem(sys.modules, "esbridge.cli", module)


def test_direct_mode_calls_run_one(monkeypatch, capsysbinary):
    from esbridge.plugin.check_esbridge import main

    calls = []

    def run_one(checks_paths, name, es_url, config_path):
        calls.append((checks_paths, name, es_url, config_path))
        return "WARNING - 12 things | 'n'=12;10;20;0;", 1

    _fake_cli(monkeypatch, run_one)
    code = main(
        [
            "--direct",
            "--checks",
            "a.yaml",
            "--checks",
            "dir/",
            "-C",
            "n",
            "--es-url",
            "http://es:9200",
        ]
    )
    assert code == 1
    assert capsysbinary.readouterr().out == b"WARNING - 12 things | 'n'=12;10;20;0;\n"
    assert calls == [(["a.yaml", "dir/"], "n", "http://es:9200", None)]


def test_direct_mode_failure_and_timeout(monkeypatch, capsysbinary):
    from esbridge.plugin.check_esbridge import main

    def broken(*args):
        raise RuntimeError("index missing\nsecond line")

    _fake_cli(monkeypatch, broken)
    assert main(["--direct", "--checks", "c", "-C", "n"]) == 3
    out = capsysbinary.readouterr().out
    assert (
        out == b"UNKNOWN - direct evaluation of n failed: RuntimeError: index missing second line\n"
    )

    def slow(*args):
        time.sleep(5)
        return "OK - late", 0

    _fake_cli(monkeypatch, slow)
    start = time.monotonic()
    assert main(["--direct", "--checks", "c", "-C", "n", "-t", "0.5"]) == 3
    assert time.monotonic() - start < 2
    assert b"did not finish within 0.5 s" in capsysbinary.readouterr().out


LAUNCHER = ROOT / "scripts" / "check_esbridge"


def test_pip_installs_the_single_file_and_its_launcher():
    """No entry point (a wrapper that imports site-packages): the sh launcher as the script and
    the single file as data in <prefix>/share/esbridge, where the launcher looks for it."""
    import tomllib

    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    tool = pyproject["tool"]["setuptools"]
    assert tool["script-files"] == ["scripts/check_esbridge"]
    assert tool["data-files"] == {"share/esbridge": ["service/esbridge/plugin/check_esbridge.py"]}
    assert "check_esbridge" not in pyproject["project"]["scripts"]
    assert os.access(LAUNCHER, os.X_OK)
    assert '"$here/../share/esbridge"' in LAUNCHER.read_text()


def _installed_layout(root: Path, python: str) -> Path:
    """<prefix>/bin/{check_esbridge,python3} + <prefix>/share/esbridge/, as pip lays them out."""
    (root / "bin").mkdir(parents=True)
    (root / "share" / "esbridge").mkdir(parents=True)
    shutil.copy(LAUNCHER, root / "bin" / "check_esbridge")
    shutil.copy(PLUGIN_SRC, root / "share" / "esbridge" / "check_esbridge.py")
    (root / "bin" / "python3").symlink_to(python)
    return root / "bin" / "check_esbridge"


def test_installed_launcher_runs_the_file_with_isolated_no_site(server, tmp_path):
    require(shutil.which("sh") is not None, "no sh")
    server.nagios("launched", b"WARNING - via the launcher", 1)
    command = _installed_layout(tmp_path / "prefix", PYTHON)
    proc = subprocess.run(
        [str(command), "-H", server.url, "-C", "launched"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        timeout=30,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (1, b"WARNING - via the launcher\n", b"")
    # The flags the interpreter got: a stand-in python3 records its arguments.
    spy = tmp_path / "spy"
    command = _installed_layout(spy, PYTHON)
    (spy / "bin" / "python3").unlink()
    (spy / "bin" / "python3").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (spy / "bin" / "python3").chmod(0o755)
    args = subprocess.run([str(command), "-C", "x"], capture_output=True, check=True).stdout
    got = args.decode().splitlines()
    assert got[:3] == ["-I", "-S", "-c"]
    assert got[4:] == [f"{spy}/bin/../share/esbridge", "-C", "x"]
    assert "import check_esbridge" in got[3]


def _install_plugin(*args: str) -> subprocess.CompletedProcess[str]:
    """``esbridge install-plugin ARGS`` as an operator runs it (its own process)."""
    return subprocess.run(
        [sys.executable, "-m", "esbridge", "install-plugin", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_install_plugin_writes_an_isolated_script_that_imports_the_compiled_module(
    server, tmp_path
):
    """The documented Nagios install: no shell, no per-run compile, the same bytes out."""
    import importlib.util

    plugins = tmp_path / "plugins"
    plugins.mkdir()
    proc = _install_plugin(str(plugins), "--python", PYTHON)
    assert proc.returncode == 0, proc.stderr
    command = plugins / "check_esbridge"
    assert f"wrote {command}" in proc.stdout
    assert os.access(command, os.X_OK)
    lines = command.read_text().splitlines()
    assert lines[0] == f"#!{PYTHON} -IS"  # one word: "-I -S" would be ONE bad argument
    assert f"sys.path.insert(0, {str(PLUGIN_SRC.parent)!r})" in lines
    # compiled by that interpreter, so a user who cannot write the cache never compiles it
    assert Path(importlib.util.cache_from_source(str(PLUGIN_SRC))).is_file()
    assert [p.name for p in plugins.iterdir()] == ["check_esbridge"]  # no temporary left

    # Run by its shebang. -I: the PYTHON* variables are ignored (PYTHONVERBOSE would write
    # every import to stderr, PYTHONPATH could put a module in front of the plugin's).
    server.nagios("stubbed", b"CRITICAL - via install-plugin", 2)
    proc = subprocess.run(
        [str(command), "-H", server.url, "-C", "stubbed"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONVERBOSE": "1", "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        timeout=30,
    )
    expected = (2, b"CRITICAL - via install-plugin\n", b"")
    assert (proc.returncode, proc.stdout, proc.stderr) == expected

    # The interpreter gets "-IS" as one argument, then the script and the plugin's arguments.
    spy = tmp_path / "spy"
    spy.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    spy.chmod(0o755)
    spied = tmp_path / "spied"
    spied.mkdir()
    assert _install_plugin(str(spied), "--python", str(spy)).returncode == 0
    got = subprocess.run(
        [str(spied / "check_esbridge"), "-C", "x"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert got == ["-IS", str(spied / "check_esbridge"), "-C", "x"]


def test_install_plugin_replaces_only_its_own_script_unless_forced(tmp_path):
    plugins = tmp_path / "plugins"
    plugins.mkdir()
    foreign = plugins / "check_esbridge"
    foreign.write_text("#!/bin/sh\necho a copied plugin\n")
    proc = _install_plugin(str(plugins), "--python", PYTHON)
    assert proc.returncode == 2
    assert f"{foreign} exists and was not written by esbridge install-plugin" in proc.stderr
    assert "--force" in proc.stderr
    assert foreign.read_text() == "#!/bin/sh\necho a copied plugin\n"  # untouched

    assert _install_plugin(str(plugins), "--python", PYTHON, "--force").returncode == 0
    assert foreign.read_text().startswith(f"#!{PYTHON} -IS\n")
    again = _install_plugin(str(plugins), "--python", PYTHON)  # its own: no --force needed
    assert again.returncode == 0, again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--python", "python3"], "--python must be an absolute path, not 'python3'"),
        (["--python", "/opt/my python/bin/python3"], "cannot go on a '#!' line"),
        (["--python", "/opt/" + "p" * 130], "cannot go on a '#!' line"),
        (["--python", "/nonexistent/python3"], "--python /nonexistent/python3: not an executable"),
    ],
)
def test_install_plugin_refuses_an_interpreter_it_cannot_write(tmp_path, args, message):
    proc = _install_plugin(str(tmp_path), *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert not (tmp_path / "check_esbridge").exists()


def test_install_plugin_needs_an_existing_folder(tmp_path):
    proc = _install_plugin(str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert f"{tmp_path / 'missing'}: no such directory" in proc.stderr


def test_direct_mode_finds_esbridge_although_started_without_site(tmp_path):
    """-S keeps site-packages out of the HTTP path; --direct adds them back when it needs them."""
    # A prefix that is this virtual environment, as pip would install into it.
    venv = Path(sys.prefix)
    require((venv / "pyvenv.cfg").is_file(), "the tests must run from a virtual environment")
    prefix = tmp_path / "prefix"
    command = _installed_layout(prefix, sys.executable)
    shutil.copy(venv / "pyvenv.cfg", prefix / "pyvenv.cfg")
    (prefix / "lib").symlink_to(venv / "lib")
    proc = subprocess.run(
        [str(command), "--direct", "--checks", str(tmp_path / "missing"), "-C", "x"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert proc.returncode == 3
    text = proc.stdout.decode()
    assert "needs the esbridge package" not in text and "cannot load esbridge" not in text, text
    assert text.startswith("UNKNOWN")


def test_runs_through_its_shebang(server, plugin):
    """As Nagios runs it: exec the file itself; the shebang must give -I -S."""
    first = PLUGIN_SRC.read_text().splitlines()[0]
    assert first == "#!/usr/bin/python3 -IS"  # "-I -S" would reach python3 as ONE bad argument
    require(os.access("/usr/bin/python3", os.X_OK), "no /usr/bin/python3 on this machine")
    server.nagios("shebang", b"OK - via shebang", 0)
    proc = subprocess.run(
        [str(plugin), "-H", server.url, "-C", "shebang"],
        capture_output=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=30,
    )
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, b"OK - via shebang\n", b"")
