"""A real Elasticsearch on demand, for tests, the demo and benchmarks.

Elasticsearch is fetched from Maven Central as the ``integ-test-zip`` distribution (a minimal
build: server + ``transport-netty4``, ``x-pack-core``, ``x-pack-security``, ``apm``; no
painless, no ``aggregations`` module, no ingest-common, no ML, no geoip), unpacked once into a
cache folder and started as a single node on 127.0.0.1 with security off.

Python use::

    from esbridge_dev.elasticsearch import ElasticsearchServer, ES9
    with ElasticsearchServer(version=ES9) as es:
        print(es.url)           # http://127.0.0.1:<free port>
        es.kill(); es.restart() # fault helpers: SIGKILL keeping data, start again same port

The same code runs OpenSearch (``distribution="opensearch"``, see
:mod:`esbridge_dev.opensearch`): its ``integ-test-zip`` has only ``transport-netty4``
(no security plugin); 2.19.x runs on Java 17, 3.x needs Java 21+.

CLI (:mod:`esbridge_dev.harnesscli`)::

    python -m esbridge_dev.elasticsearch start [--version 8.19.21|9.5.4|8|9] [--port N]
        # detaches; prints: export ESBRIDGE_TEST_ES_URL=http://127.0.0.1:PORT
    python -m esbridge_dev.elasticsearch status|url|stop
    python -m esbridge_dev.elasticsearch fetch [--version V]   # download + unpack only

Where things live (:mod:`esbridge_dev.distribution` fetches and finds Java):

- cache (unpacked installs, state file of the CLI instance): ``$ESBRIDGE_CACHE_DIR``, else
  ``<project>/.cache/elasticsearch`` when every folder on that path is traversable by the
  user Elasticsearch runs as, else ``/var/tmp/esbridge-cache``.
- each instance: a temp folder (config copy = ``ES_PATH_CONF``, data, logs, tmp) removed by
  ``stop()``.
- Java: 8.x needs Java 17+, 9.x Java 21+; looked up in ``$ES_JAVA_HOME``, ``$JAVA_HOME``,
  ``/usr/lib/jvm/*`` and ``java`` on PATH; the lowest suitable major wins.
- as root, Elasticsearch runs as the system user ``esbridge-es`` (created when missing).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import httpx

from esbridge_dev import httpcalls
from esbridge_dev.distribution import (
    DEFAULT_VERSION,
    ELASTICSEARCH,
    ES8,
    ES9,
    VERSIONS,
    Distribution,
    ElasticsearchError,
    JavaNotFoundError,
    _traversable_by_others,
    cache_dir,
    fetch,
    find_java,
    log,
    modules,
    required_java_major,
    resolve_version,
)
from esbridge_dev.nodeconfig import ensure_es_user, write_node_folder
from esbridge_dev.ports import free_port
from esbridge_dev.procgroup import group_alive, kill_group

__all__ = [
    "DEFAULT_VERSION",
    "ELASTICSEARCH",
    "ES8",
    "ES9",
    "VERSIONS",
    "Distribution",
    "ElasticsearchError",
    "ElasticsearchServer",
    "JavaNotFoundError",
    "_traversable_by_others",
    "cache_dir",
    "fetch",
    "find_java",
    "free_port",
    "group_alive",
    "main",
    "modules",
    "required_java_major",
    "resolve_version",
]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


# The JIT's second tier (C2) costs most of a node's CPU in its first minutes and pays off only
# for long runs: a test cluster lives for minutes and mostly answers small requests, so the
# test suites run theirs on the first tier alone (about 40 % less CPU to boot and answer, as
# measured on a 2-core machine). Benchmarks and the demo keep the JVM as shipped.
QUICK_JIT: dict[str, str | bytes] = {
    "jvm.options.d/esbridge-quick-jit.options": "-XX:TieredStopAtLevel=1\n"
}


# --------------------------------------------------------------------------- server


class ElasticsearchServer:
    """One single-node Elasticsearch (or OpenSearch) on 127.0.0.1 (security off unless
    settings say so).

    ``settings`` are added to / override elasticsearch.yml (opensearch.yml); ``env`` is added
    to the process environment; ``config_files`` maps a path relative to the config folder to
    text or bytes (e.g. certificates, ``jvm.options.d/x.options``) written before start.
    """

    def __init__(
        self,
        version: str | None = None,
        port: int | None = None,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        config_files: Mapping[str, str | bytes] | None = None,
        heap: str = "512m",
        start_timeout: float = 180.0,
        scheme: str = "http",
        dist: Distribution = ELASTICSEARCH,
    ) -> None:
        self.dist = dist
        self.version = resolve_version(version, dist)
        self.port = port
        self.transport_port: int | None = None
        self.settings = dict(settings or {})
        self.env = dict(env or {})
        self.config_files = dict(config_files or {})
        self.heap = heap
        self.start_timeout = start_timeout
        self.scheme = scheme
        self.home: Path | None = None
        self.workdir: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.start_seconds: float | None = None
        self._console: Path | None = None
        self._atexit = False

    # -- properties
    @property
    def url(self) -> str:
        if self.port is None:
            raise ElasticsearchError("server not started")
        return f"{self.scheme}://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def data_dir(self) -> Path | None:
        return self.workdir / "data" if self.workdir else None

    # -- lifecycle
    def __enter__(self) -> ElasticsearchServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(
        self,
        settings: Mapping[str, object] | None = None,
        env: Mapping[str, str] | None = None,
        config_files: Mapping[str, str | bytes] | None = None,
    ) -> ElasticsearchServer:
        if settings:
            self.settings.update(settings)
        if env:
            self.env.update(env)
        if config_files:
            self.config_files.update(config_files)
        if self.proc is not None and self.proc.poll() is None:
            return self
        if not self._atexit:
            atexit.register(self.stop)
            self._atexit = True
        try:
            self._prepare()
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def _prepare(self) -> None:
        self.home = fetch(self.version, self.dist)
        java_home = find_java(required_java_major(self.version, self.dist))
        self.env.setdefault(f"{self.dist.env_prefix}_JAVA_HOME", str(java_home))
        if self.port is None:
            self.port = free_port()
        elif not _port_free(self.port):
            raise ElasticsearchError(f"port {self.port} on 127.0.0.1 is already in use")
        self.transport_port = free_port()
        while self.transport_port == self.port:
            self.transport_port = free_port()

        self.workdir = write_node_folder(
            self.dist,
            self.home,
            self.port,
            self.transport_port,
            self.settings,
            self.heap,
            self.config_files,
        )
        self._console = self.workdir / "logs" / "console.log"

    def _launch(self) -> None:
        assert self.home and self.workdir and self._console
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.workdir / "tmp"),
            f"{self.dist.env_prefix}_PATH_CONF": str(self.workdir / "config"),
            f"{self.dist.env_prefix}_TMPDIR": str(self.workdir / "tmp"),
            **self.env,
        }
        kwargs: dict[str, object] = {}
        if os.geteuid() == 0:
            uid, gid = ensure_es_user()
            kwargs.update(user=uid, group=gid, extra_groups=[])
        t0 = time.monotonic()
        with open(self._console, "ab") as out:
            self.proc = subprocess.Popen(
                [str(self.home / "bin" / self.dist.name)],
                cwd=str(self.workdir),
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **kwargs,  # type: ignore[arg-type]
            )
        self._wait_ready(t0)

    def _wait_ready(self, t0: float) -> None:
        assert self.proc
        deadline = t0 + self.start_timeout
        with httpcalls.client(timeout=5.0, verify=False) as client:
            while True:
                code = self.proc.poll()
                if code is not None:
                    raise ElasticsearchError(
                        f"{self.dist.product} {self.version} exited with code {code} during start "
                        f"(port {self.port}); last log lines:\n{self.log_tail()}"
                    )
                if time.monotonic() > deadline:
                    raise ElasticsearchError(
                        f"{self.dist.product} {self.version} not yellow within "
                        f"{self.start_timeout:.0f}s "
                        f"(port {self.port}); last log lines:\n{self.log_tail()}"
                    )
                try:
                    r = client.get(
                        f"{self.url}/_cluster/health",
                        params={"wait_for_status": "yellow", "timeout": "1s"},
                    )
                    if r.status_code == 200 and r.json().get("status") in ("yellow", "green"):
                        break
                    if r.status_code in (401, 403):  # security on: the node is up
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.25)
        self.start_seconds = time.monotonic() - t0
        log.info(
            "%s %s ready at %s in %.1fs (pid %s)",
            self.dist.product,
            self.version,
            self.url,
            self.start_seconds,
            self.pid,
        )

    def log_tail(self, lines: int = 40) -> str:
        files = []
        if self._console:
            files.append(self._console)
        if self.workdir:
            files.extend(sorted((self.workdir / "logs").glob("*.log")))
        for f in files:
            try:
                text = f.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                return "\n".join(text.splitlines()[-lines:])
        return "(no log output)"

    def kill(self) -> None:
        """SIGKILL the whole process group; keep data for restart()."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_alive(self.proc.pid):
            time.sleep(0.05)

    def terminate(self) -> None:
        """Graceful stop (SIGTERM, SIGKILL after 20 s) keeping data for restart()."""
        if self.proc is None:
            return
        kill_group(self.proc.pid)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)

    def restart(self) -> ElasticsearchServer:
        """Start again on the same port with the same data (after kill() or terminate())."""
        if self.workdir is None:
            return self.start()
        if self.proc is not None and self.proc.poll() is None:
            self.terminate()
        self._launch()
        return self

    def stop(self) -> None:
        """Stop the process group and remove the temp folder. Safe to call twice."""
        if self.proc is not None:
            if self.proc.poll() is None or group_alive(self.proc.pid):
                kill_group(self.proc.pid)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)
        if self.workdir is not None and self.workdir.exists():
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None
        if self._atexit:
            with contextlib.suppress(Exception):
                atexit.unregister(self.stop)
            self._atexit = False

    def detach(self) -> dict[str, object]:
        """Leave the server running after this process exits; return its state."""
        if self._atexit:
            atexit.unregister(self.stop)
            self._atexit = False
        state = {
            "pid": self.pid,
            "url": self.url,
            "version": self.version,
            "distribution": self.dist.name,
            "workdir": str(self.workdir),
            "data_dir": str(self.data_dir),
            "log": str(self._console),
        }
        self.proc = None  # never stopped by this object any more
        return state

    def info(self) -> dict[str, object]:
        return httpcalls.get(self.url, timeout=10).json()


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None, dist: Distribution = ELASTICSEARCH) -> int:
    """The command line (imported late: the CLI module imports this one)."""
    from esbridge_dev.harnesscli import main as cli_main

    return cli_main(argv, dist)


if __name__ == "__main__":
    sys.exit(main())
