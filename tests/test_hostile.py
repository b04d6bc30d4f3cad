"""The hostile corpus (tests/hostile/): every file gives its expected clear error or UNKNOWN.

* ``checks/`` - check files an attacker or a careless operator writes: each is refused with
  an error naming file, check and field (or accepted with a warning), quickly and without
  a traceback.
* ``http/`` - raw requests sent to a running ``esbridge serve`` over loopback: first line
  ``# expect: <status> [close] [nobody]`` or ``# expect: closed`` (the server must close a
  connection that never completes its request).
* ``plugin/`` - raw answers a hostile server gives ``check_esbridge``: ``# expect:`` is a
  fragment of the single ``UNKNOWN - ...`` line, ``# args:`` extra plugin arguments,
  ``# drip: S`` sends one byte every S seconds, ``# hang: yes`` never answers.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from esbridge import limits
from esbridge.loader import CheckFileError, load_checks
from esbridge.yamldoc import parse_yaml
from esbridge_dev.service import EsbridgeProcess

CORPUS = Path(__file__).resolve().parent / "hostile"
ROOT = Path(__file__).resolve().parent.parent
PLUGIN_SRC = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"
PYTHON = os.path.realpath(getattr(sys, "_base_executable", sys.executable))
ESBRIDGE = [sys.executable, "-m", "esbridge"]

# --------------------------------------------------------------------------- check files

# file -> (check, field, fragments of the message); check None when the name is unknown
CHECK_CASES: dict[str, tuple[str | None, str | None, list[str]]] = {
    "huge_window.yaml": ("huge-window", "window", ["window 1000000w is too long", "366d"]),
    "huge_delay.yaml": ("huge-delay", "delay", ["delay 100000d is too long", "30d"]),
    "huge_threshold.yaml": ("huge-threshold", "critical", ["401 digits is too large"]),
    "huge_threshold_5000.yaml": ("huge-threshold-5000", "critical", ["5000 digits"]),
    "huge_threshold_text.yaml": (
        "huge-threshold-text",
        "critical",
        ["numbers must lie within ±1e+18"],
    ),
    "deep_query_dsl.yaml": ("deep-dsl", "query_dsl", ["nested deeper than 64 levels"]),
    "query_dsl_bigint.yaml": ("dsl-bigint", "query_dsl", ["too large for a long"]),
    "query_dsl_inf.yaml": ("dsl-inf", "query_dsl", ["only finite numbers"]),
    "alias_bomb.yaml": (None, "x-f.2", ["more than 200000 values once aliases"]),
    "name_newline.yaml": ("web\nOK: 999 checks in 1 file", "name", ["is not allowed"]),
    "name_slash.yaml": ("../../etc/passwd", "name", ["is not allowed", "lowercase letters"]),
    "name_too_long.yaml": ("a" * 101, "name", ["too long (at most 100 characters)"]),
    "label_collision.yaml": (
        "label-collision",
        "group_by",
        ["'a.b' and 'a_b' would both be the metric label 'a_b'"],
    ),
    "description_huge.yaml": ("big-description", "description", ["at most 4096 characters"]),
    "too_many_indices.yaml": ("many-indices", "index", ["too many items: at most 100, got 101"]),
    "expected_nodes_huge.yaml": ("nodes-huge", "expected_nodes", ["must be at most 100000"]),
}

# file -> [(check, field, fragment)] of the warnings of a file that loads
WARNING_CASES = {
    "never_fires.yaml": [
        ("never-fires", "critical", "range '~:' can never alert"),
        ("always-fires", "warning", "range '@~:' always alerts"),
    ],
}


def test_every_check_file_has_a_case() -> None:
    files = {p.name for p in (CORPUS / "checks").glob("*.yaml")}
    assert files == set(CHECK_CASES) | set(WARNING_CASES)


@pytest.mark.parametrize("name", sorted(CHECK_CASES))
def test_hostile_check_file(name: str) -> None:
    check, field, fragments = CHECK_CASES[name]
    path = CORPUS / "checks" / name
    started = time.monotonic()
    with pytest.raises(CheckFileError) as info:
        load_checks([path])
    assert time.monotonic() - started < 5, "a hostile file must be refused quickly"
    (issue,) = info.value.issues
    assert (issue.file, issue.check, issue.field) == (str(path), check, field)
    assert issue.line is not None
    for fragment in fragments:
        assert fragment in issue.message, issue.message
    text = str(info.value)
    assert "\n" not in text and "\r" not in text  # no forged lines in validate output / logs
    assert "Traceback" not in text and "pydantic" not in text


@pytest.mark.parametrize("name", sorted(CHECK_CASES))
def test_validate_command_prints_located_error(name: str) -> None:
    """The real command: exit 1, one located line per problem, no traceback."""
    path = CORPUS / "checks" / name
    proc = subprocess.run(
        [*ESBRIDGE, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1, proc
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{path}:"), proc.stdout
    assert "OK:" not in proc.stdout.replace("'web\\nOK: 999", "")


@pytest.mark.parametrize("name", sorted(WARNING_CASES))
def test_hostile_file_with_warnings(name: str) -> None:
    path = CORPUS / "checks" / name
    checkset = load_checks([path])
    got = {(w.check, w.field) for w in checkset.warnings}
    assert got == {(c, f) for c, f, _ in WARNING_CASES[name]}
    for check, field, fragment in WARNING_CASES[name]:
        (warning,) = [w for w in checkset.warnings if (w.check, w.field) == (check, field)]
        assert fragment in warning.message
    proc = subprocess.run(
        [*ESBRIDGE, "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc
    assert proc.stdout.count("warning: ") == len(WARNING_CASES[name])


def test_nesting_past_the_recursion_limit_is_refused_while_composing() -> None:
    """The shape limits run on each event as the composer takes it (one pass over the text):
    50,000 open brackets are refused at the 65th, before the recursive composer (or
    ``to_plain``) could exhaust the Python stack."""
    text = "checks:\n  - name: deep\n    query_dsl: " + "[" * 50_000 + "]" * 50_000 + "\n"
    document, issue = parse_yaml("deep.yaml", text)
    assert document is None and issue is not None
    assert (issue.file, issue.check, issue.field, issue.line) == (
        "deep.yaml",
        "deep",
        "query_dsl",
        3,
    )
    assert f"nested deeper than {limits.MAX_NESTING_DEPTH} levels" in issue.message


def test_oversized_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    padding = "# " + "x" * 1000 + "\n"
    path.write_text("checks: []\n" + padding * (limits.MAX_CHECK_FILE_BYTES // len(padding) + 1))
    with pytest.raises(CheckFileError) as info:
        load_checks([path])
    (issue,) = info.value.issues
    assert f"at most {limits.MAX_CHECK_FILE_BYTES} bytes per check file" in issue.message


def test_number_of_checks_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The limit itself is 50,000; lowered here so the test stays fast."""
    monkeypatch.setattr(limits, "MAX_CHECKS", 3)
    for k in range(2):
        (tmp_path / f"f{k}.yaml").write_text(
            "checks:\n"
            + "".join(f"  - {{name: c{k}-{i}, kind: cluster_health}}\n" for i in range(2))
        )
    with pytest.raises(CheckFileError, match="4 checks: at most 3 in all files together"):
        load_checks([tmp_path])


# --------------------------------------------------------------------------- HTTP requests

HTTP_FILES = sorted(p.name for p in (CORPUS / "http").glob("*.http"))


def _http_case(name: str) -> tuple[str, bytes]:
    text = (CORPUS / "http" / name).read_text()
    first, _, rest = text.partition("\n")
    assert first.startswith("# expect: "), name
    rest = re.sub(r"\{pad:(\d+)\}", lambda m: "a" * int(m.group(1)), rest)
    return first.removeprefix("# expect: ").strip(), rest.replace("\n", "\r\n").encode()


@pytest.fixture(scope="module")
def service(es_url: str, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile-checks")
    (folder / "c.yaml").write_text("checks:\n  - {name: health, kind: cluster_health}\n")
    with EsbridgeProcess(es_url, [folder]) as proc:
        proc.wait_for(lambda: proc.get("/readyz").status_code == 200)
        yield proc


def _read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    want = int(length.group(1)) if length else 0
    while len(body) < want:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except ConnectionResetError:
        return True
    return True


@pytest.mark.es
@pytest.mark.version_independent  # HTTP handling in front of the store: once, in main
@pytest.mark.parametrize("first", [0, 4_000, 20_000])
def test_a_request_line_too_large_is_431_however_it_arrives(
    service: EsbridgeProcess, first: int
) -> None:
    """The same answer whether the server reads the request at once or its first part alone
    (a loaded machine does): h11 refuses an unfinished request line past the header bound,
    which uvicorn would answer 400 (a short garbage line still is: garbage_request_line.http)."""
    _, request = _http_case("huge_query.http")
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        if first:
            sock.sendall(request[:first])
            time.sleep(0.5)  # read on its own: 20,000 bytes is past the bound, unfinished
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request[first:])  # refused already: the server may have closed
        response = _read_response(sock, 10)
    assert response.startswith(b"HTTP/1.1 431 "), (first, response[:300])
    head, _, body = response.partition(b"\r\n\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body) == {
        "error": f"request line and headers larger than {limits.MAX_HEADER_BYTES} bytes"
    }


@pytest.mark.es
@pytest.mark.version_independent  # HTTP handling in front of the store: once, in main
def test_a_garbage_head_is_400_whatever_follows_it(service: EsbridgeProcess) -> None:
    """A short head h11 refuses for what it says stays 400, even with more than the header
    bound of bytes behind it in the same read: only an unfinished head is too large."""
    request = b"NOT AN HTTP REQUEST\r\nHost: x\r\n\r\n" + b"a" * (2 * limits.MAX_HEADER_BYTES)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(request)
        response = _read_response(sock, 10)
    assert response.startswith(b"HTTP/1.1 400 "), response[:300]


@pytest.mark.es
@pytest.mark.version_independent  # HTTP handling in front of the store: once, in main
def test_every_http_case_has_an_expectation() -> None:
    for name in HTTP_FILES:
        expect, _ = _http_case(name)
        assert re.fullmatch(r"(\d{3}( close| nobody)*|closed)", expect), (name, expect)


@pytest.mark.es
@pytest.mark.version_independent  # HTTP handling in front of the store: once, in main
@pytest.mark.parametrize("name", HTTP_FILES)
def test_hostile_request(service: EsbridgeProcess, name: str) -> None:
    expect, request = _http_case(name)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as sock:
        if request:
            sock.sendall(request)
        if expect == "closed":
            assert _closed_within(sock, limits.HEADER_READ_TIMEOUT + 5), name
            return
        if "nobody" in expect:
            sock.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(65536)
                assert chunk, head
                head += chunk
            response = head
        else:
            response = _read_response(sock, 10)
        status = expect.split()[0]
        assert response.startswith(f"HTTP/1.1 {status} ".encode()), (name, response[:300])
        if "nobody" in expect:
            assert response.endswith(b"\r\n\r\n"), response  # headers only
            sock.settimeout(0.5)
            with pytest.raises(TimeoutError):
                sock.recv(1)  # no body follows, the connection stays open
        if "close" in expect:
            assert _closed_within(sock, 5), f"{name}: connection left open"
        assert b"\r\nx-injected" not in response.partition(b"\r\n\r\n")[0].lower()
    assert service.get("/healthz").status_code == 200


@pytest.mark.es
@pytest.mark.version_independent  # HTTP handling in front of the store: once, in main
def test_many_idle_connections_do_not_starve_healthz(service: EsbridgeProcess) -> None:
    """More half-sent connections than the bound: the oldest idle ones are closed, the
    service keeps answering, and the log is not flooded."""
    count = limits.MAX_CONNECTIONS + 100
    socks = []
    try:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=10)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
            socks.append(sock)
        started = time.monotonic()
        answer = service.get("/healthz")
        assert answer.status_code == 200
        assert time.monotonic() - started < 5
        closed = sum(_closed_within(s, 0.05) for s in socks[:100])
        assert closed >= 90, f"only {closed} of the oldest 100 idle connections were closed"
    finally:
        for sock in socks:
            sock.close()
    assert len(service.log().encode()) < 200_000
    assert "Too many open files" not in service.log()


# --------------------------------------------------------------------------- plugin answers

PLUGIN_FILES = sorted(p.name for p in (CORPUS / "plugin").glob("*.txt"))


class RawServer:
    """Answers every connection with the same raw bytes (optionally dripped, or never)."""

    def __init__(self, answer: bytes, drip: float = 0.0, hang: bool = False) -> None:
        self.answer, self.drip, self.hang = answer, drip, hang
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(5)
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                if self.hang:
                    self.stop.wait(30)
                    continue
                try:
                    if self.drip:
                        for byte in self.answer:
                            if self.stop.wait(self.drip):
                                break
                            conn.sendall(bytes([byte]))
                    else:
                        conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


def _plugin_case(name: str) -> tuple[dict[str, str], bytes]:
    options: dict[str, str] = {}
    lines = (CORPUS / "plugin" / name).read_text().split("\n")
    while lines and lines[0].startswith("# "):
        key, _, value = lines.pop(0)[2:].partition(": ")
        options[key] = value
    return options, "\r\n".join(lines).encode()


def test_every_plugin_case_has_an_expectation() -> None:
    for name in PLUGIN_FILES:
        options, _ = _plugin_case(name)
        assert options.get("expect"), name


@pytest.mark.parametrize("name", PLUGIN_FILES)
def test_plugin_against_hostile_server(name: str, tmp_path: Path) -> None:
    """The real plugin file, run as Nagios runs it, ends with one UNKNOWN line within -t."""
    options, answer = _plugin_case(name)
    plugin = tmp_path / "check_esbridge"
    plugin.write_bytes(PLUGIN_SRC.read_bytes())
    server = RawServer(answer, float(options.get("drip", 0)), options.get("hang") == "yes")
    args = options.get("args", "").split()
    budget = float(args[args.index("-t") + 1]) if "-t" in args else 10.0
    try:
        started = time.monotonic()
        url = f"http://127.0.0.1:{server.port}"
        proc = subprocess.run(
            [PYTHON, "-I", "-S", str(plugin), "-H", url, "-C", "x", *args],
            capture_output=True,
            timeout=budget + 20,
            cwd=tmp_path,
        )
        elapsed = time.monotonic() - started
    finally:
        server.close()
    out = proc.stdout.decode()
    assert proc.returncode == 3, (proc.returncode, out, proc.stderr)
    assert out.startswith("UNKNOWN - ") and out.count("\n") == 1, out
    assert options["expect"] in out, out
    assert elapsed < budget + 2, f"took {elapsed:.1f} s with -t {budget:g}"
