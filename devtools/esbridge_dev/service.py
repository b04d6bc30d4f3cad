"""Run ``esbridge serve`` as a real subprocess: for tests, the demo and the benchmarks.

The tests talk to the service exactly as Nagios, Prometheus and people do: over HTTP to a
separate process that can be signalled (SIGHUP reload, SIGTERM stop) or killed (SIGKILL).
In the test suite that process is a fork of one that imported the service already
(``FORK_SERVER``, forkserver.py); elsewhere it is a new interpreter.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from esbridge_dev import forkserver, httpcalls
from esbridge_dev.ports import free_port

# Start services as forks of a process that has imported esbridge already (forkserver.py):
# about a second of CPU less per start. The test suite turns it on (tests/conftest.py); the
# demo and the benchmarks, which measure the processes they start, run the interpreter.
FORK_SERVER = False

_log_folder: Path | None = None


def _scratch_log() -> Path:
    """A log file in this harness process's own folder, removed when it exits: a test suite
    starts hundreds of services, and their logs (read by the tests while they run) had piled
    up by the thousand in /tmp. ``ESBRIDGE_KEEP_LOGS=1`` keeps the folder for a post-mortem."""
    global _log_folder
    if _log_folder is None:
        _log_folder = Path(tempfile.mkdtemp(prefix="esbridge-logs-"))
        if not os.environ.get("ESBRIDGE_KEEP_LOGS"):
            atexit.register(shutil.rmtree, _log_folder, ignore_errors=True)
    return Path(tempfile.mkstemp(prefix="esbridge-", suffix=".log", dir=_log_folder)[1])


def poll(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2) -> Any:
    """Bounded polling: the predicate's first truthy value, or AssertionError.

    HTTP errors and missing keys count as "not yet": the service may still be starting.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout} s (last: {last!r})")


def listens_on(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds the socket listening on TCP ``port`` (Linux /proc).

    Where /proc cannot tell (another system), the answer is yes: the check only guards
    against a port handed out twice.
    """
    if not Path("/proc/self/net/tcp").exists():
        return True
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
        tables = [Path(f"/proc/{pid}/net/{name}").read_text() for name in ("tcp", "tcp6")]
    except OSError:  # the process is gone
        return False
    sockets = set()
    for fd in fds:
        with contextlib.suppress(OSError):  # closed while we look
            sockets.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
    for table in tables:
        for line in table.splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            listening = state == "0A" and int(local.rsplit(":", 1)[1], 16) == port
            if listening and f"socket:[{inode}]" in sockets:
                return True
    return False


class EsbridgeProcess:
    """``esbridge serve`` on a free loopback port, with its log captured to a file."""

    def __init__(
        self,
        es_url: str | None,
        checks: Sequence[str | Path],
        config: str | Path | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
        state_index: str | None = None,
        keep_log: bool = False,
    ) -> None:
        """``keep_log``: the log outlives this harness process (the demo prints its path)."""
        self.es_url = es_url
        self.checks = [str(c) for c in checks]
        self.config = str(config) if config else None
        self._fixed_port = port is not None
        self.port = port or free_port()
        self.env = dict(env or {})
        if state_index:
            self.env.setdefault("ESBRIDGE_STATE__INDEX", state_index)
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | forkserver.ForkedProcess | None = None
        self.log_path = (
            Path(tempfile.mkstemp(prefix="esbridge-", suffix=".log")[1])
            if keep_log
            else _scratch_log()
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "esbridge",
            "serve",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
        ]
        if self.config:
            cmd += ["--config", self.config]
        if self.es_url:
            cmd += ["--es-url", self.es_url]
        for path in self.checks:
            cmd += ["--checks", path]
        return cmd + self.extra_args

    def start(self, wait: float = 90.0) -> EsbridgeProcess:
        """Start and wait for ``/healthz`` from *this* process.

        ``free_port`` can hand the same port to two harnesses running side by side (the test
        lanes do). The one that binds second exits with "address already in use"; with a port
        of our own choosing we pick another and start again. Until then another process's
        ``/healthz`` must not count as ours, so the listening socket's owner is checked.
        """
        attempts = 1 if self._fixed_port else 3
        deadline = time.monotonic() + wait
        for attempt in range(attempts):
            self.proc = self._spawn({**os.environ, **self.env})
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    up = httpcalls.get(self.url + "/healthz", timeout=1.0).status_code == 200
                except httpx.HTTPError:
                    up = False
                if up and listens_on(self.proc.pid, self.port):
                    return self
                time.sleep(0.1)
            else:
                self.stop()
                raise RuntimeError(
                    f"esbridge did not answer /healthz within {wait} s:\n{self.log()}"
                )
            lost_port = "address already in use" in self.log().lower()
            if not lost_port or attempt + 1 == attempts:
                break
            self.port = free_port()
        assert self.proc is not None
        raise RuntimeError(f"esbridge exited with {self.proc.returncode}:\n{self.log()}")

    def _spawn(self, env: dict[str, str]) -> subprocess.Popen[bytes] | forkserver.ForkedProcess:
        command = self.command()
        if FORK_SERVER and command[:3] == [sys.executable, "-m", "esbridge"]:
            return forkserver.shared().spawn(command[3:], env, os.getcwd(), self.log_path)
        with self.log_path.open("ab") as log:
            return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM, wait, SIGKILL if needed; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)

    def kill(self) -> None:
        """SIGKILL: no flush, no goodbye (crash tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def get(self, path: str, **kwargs: object) -> httpx.Response:
        return httpcalls.get(self.url + path, timeout=10.0, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> httpx.Response:
        return httpcalls.post(self.url + path, timeout=30.0, **kwargs)  # type: ignore[arg-type]

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.2
    ) -> Any:
        """Poll ``predicate()`` until it returns a truthy value; raise with the log on timeout."""
        try:
            return poll(predicate, timeout, interval)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n--- esbridge log ---\n{self.log()[-4000:]}") from None

    def __enter__(self) -> EsbridgeProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        self.log_path.unlink(missing_ok=True)
