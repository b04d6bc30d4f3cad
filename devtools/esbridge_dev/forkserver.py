"""Start ``esbridge`` processes by forking one that has already imported the service.

A test run starts ``esbridge serve`` hundreds of times, and each start spent about a second
of CPU importing FastAPI, the search clients and pydantic models before it read its first
argument: a fifth of the suite's CPU on a 2-core machine. The fork server imports all of that
once; each service is then a ``fork()`` of it that sets its arguments, environment, working
folder and log, and runs ``esbridge``'s own ``main()`` as ``python -m esbridge`` would (exit
code, ``SystemExit``, a traceback and exit 1 on an uncaught exception, ``atexit`` handlers).

It is still a separate process with its own pid, signals and exit code. What it does not
prove is the interpreter's start itself; the tests that run ``python -m esbridge`` directly
(refused files, the CLI, the demo) still do. The parent only sees a :class:`ForkedProcess`,
which answers the parts of :class:`subprocess.Popen` the harness uses.

Protocol, one line each way (the server's stdin and stdout): a request is JSON with ``id``,
``argv``, ``env``, ``cwd`` and ``log``; the server answers ``started <id> <pid>`` (or
``failed <id> <reason>``) and, whenever a child ends, ``exited <pid> <exit code>`` with the
code as :class:`subprocess.Popen` reports it (negative: the signal that ended it).
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path


class ForkedProcess:
    """A child of the fork server, seen through the parts of ``Popen`` the harness uses."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._ended = threading.Event()

    def _exited(self, code: int) -> None:
        self.returncode = code
        self._ended.set()

    def poll(self) -> int | None:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if not self._ended.wait(timeout):
            raise subprocess.TimeoutExpired(f"esbridge pid {self.pid}", timeout or 0.0)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            # ProcessLookupError: it ended; its exit is on its way from the server
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkServer:
    """The client side: one fork server process, its answers read by a thread."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "esbridge_dev.forkserver"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._lock = threading.Lock()
        self._ids = itertools.count()
        self._started: dict[int, threading.Event] = {}
        self._answers: dict[int, str] = {}
        self._children: dict[int, ForkedProcess] = {}
        self._early_exits: dict[int, int] = {}
        self._reader = threading.Thread(target=self._read, name="esbridge-forkserver", daemon=True)
        self._reader.start()

    def alive(self) -> bool:
        return self._proc.poll() is None

    def spawn(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str, log: Path
    ) -> ForkedProcess:
        """``python -m esbridge <argv>`` with exactly ``env``, in ``cwd``, output to ``log``."""
        request_id = next(self._ids)
        started = threading.Event()
        request = {"id": request_id, "argv": list(argv), "env": dict(env), "cwd": cwd}
        request["log"] = str(log)
        with self._lock:
            self._started[request_id] = started
            assert self._proc.stdin is not None
            try:
                self._proc.stdin.write(json.dumps(request).encode() + b"\n")
                self._proc.stdin.flush()
            except OSError as e:  # it is gone
                del self._started[request_id]
                raise RuntimeError(f"the esbridge fork server is gone: {e}") from e
        answered = started.wait(180)  # its first answer waits for its imports, on a busy machine
        with self._lock:
            del self._started[request_id]
        if not answered:
            raise RuntimeError("the esbridge fork server did not answer within 180 s")
        answer = self._answers.pop(request_id)
        if not answer.isdigit():
            raise RuntimeError(f"the esbridge fork server could not start esbridge: {answer}")
        pid = int(answer)
        with self._lock:
            child = self._children[pid] = ForkedProcess(pid)
            if pid in self._early_exits:
                child._exited(self._early_exits.pop(pid))
        return child

    def _read(self) -> None:
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            word, _, rest = raw.decode(errors="replace").rstrip("\n").partition(" ")
            key, _, value = rest.partition(" ")
            if word not in ("exited", "started", "failed") or not key.isdigit():
                continue  # not the protocol (a library printing at import): not ours to read
            if word == "exited":
                pid, code = int(key), int(value)
                with self._lock:
                    child = self._children.pop(pid, None)
                    if child is None:
                        self._early_exits[pid] = code  # ended before spawn() saw its pid
                if child is not None:
                    child._exited(code)
            else:  # started / failed
                self._answers[int(key)] = value if word == "started" else f"failed: {value}"
                self._started[int(key)].set()
        # The server is gone (its imports failed, or it was killed): a request still waiting
        # is answered, and its children were reparented, their exits never to be reported.
        # Say so rather than let a spawn() or wait() hang.
        code = self._proc.wait()
        with self._lock:
            orphans, self._children = self._children, {}
            for request_id, started in self._started.items():
                self._answers.setdefault(request_id, f"failed: the fork server exited ({code})")
                started.set()
        for child in orphans.values():
            child._exited(255)

    def close(self) -> None:
        if self._proc.poll() is None:
            assert self._proc.stdin is not None
            self._proc.stdin.close()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()


_SHARED: ForkServer | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> ForkServer:
    """This process's fork server, started on first use and closed at exit."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None or not _SHARED.alive():
            _SHARED = ForkServer()
            atexit.register(_SHARED.close)
        return _SHARED


# --------------------------------------------------------------------------- server side


def _run_child(request: dict, control: list[int]) -> None:
    """In the forked child: become ``python -m esbridge <argv>`` and never return."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    code = 1
    try:
        devnull = os.open(os.devnull, os.O_RDONLY)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(devnull, 0)
        os.dup2(log, 1)
        os.dup2(log, 2)
        for fd in {devnull, log, *control} - {0, 1, 2}:
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        from esbridge import cli

        sys.argv = [str(Path(cli.__file__).with_name("__main__.py")), *request["argv"]]
        try:
            code = _exit_code(cli.main())
        except SystemExit as exit_:
            code = _exit_code(exit_.code)
        except KeyboardInterrupt:
            traceback.print_exc()
            _flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        _flush()
        os._exit(code)


def _exit_code(value: object) -> int:
    """What the interpreter exits with for ``sys.exit(value)``."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()


def serve() -> None:
    """The fork server's loop: requests on stdin, answers on stdout; never threads (fork)."""
    # What every child would import: the reason this process exists.
    import esbridge.cli
    import esbridge.serve  # noqa: F401

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(0, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    pending = b""

    def say(line: str) -> None:
        os.write(1, line.encode() + b"\n")

    def reap() -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            say(f"exited {pid} {os.waitstatus_to_exitcode(status)}")

    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                os.read(wake_r, 4096)
                reap()
                continue
            chunk = os.read(0, 65536)
            if not chunk:  # the client is gone; running children go on, as Popen's would
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                request = json.loads(line)
                try:
                    pid = os.fork()
                except OSError as e:
                    say(f"failed {request['id']} {e}")
                    continue
                if pid == 0:
                    _run_child(request, [wake_r, wake_w, selector.fileno()])
                say(f"started {request['id']} {pid}")
        reap()


if __name__ == "__main__":
    serve()
