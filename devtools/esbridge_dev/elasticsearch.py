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

CLI::

    python -m esbridge_dev.elasticsearch start [--version 8.19.21|9.5.4|8|9] [--port N]
        # detaches; prints: export ESBRIDGE_TEST_ES_URL=http://127.0.0.1:PORT
    python -m esbridge_dev.elasticsearch status|url|stop
    python -m esbridge_dev.elasticsearch fetch [--version V]   # download + unpack only

Where things live:

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

import argparse
import atexit
import contextlib
import fcntl
import json
import logging
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from esbridge_dev.procgroup import group_alive, kill_group

ES8 = "8.19.21"
ES9 = "9.5.4"
DEFAULT_VERSION = ES8
VERSIONS = {"8": ES8, "9": ES9, ES8: ES8, ES9: ES9}

ES_USER = "esbridge-es"
FALLBACK_CACHE = Path("/var/tmp/esbridge-cache")
JVM_DIRS = (Path("/usr/lib/jvm"),)
MAVEN_ARTIFACT = "org.elasticsearch.distribution.integ-test-zip:elasticsearch:{version}:zip"


@dataclass(frozen=True)
class Distribution:
    """What differs between Elasticsearch and OpenSearch for fetching and starting one."""

    name: str  # "elasticsearch" | "opensearch": artifact, folder, script and yml file name
    product: str  # for messages
    group: str  # Maven group of the integ-test-zip
    versions: Mapping[str, str]  # aliases ("8", "2") -> full version
    default: str
    java21_from: int  # first major version that needs Java 21
    env_prefix: str  # ES_PATH_CONF / OPENSEARCH_PATH_CONF ...

    @property
    def artifact(self) -> str:
        return f"{self.group}:{self.name}:{{version}}:zip"


ELASTICSEARCH = Distribution(
    "elasticsearch",
    "Elasticsearch",
    "org.elasticsearch.distribution.integ-test-zip",
    VERSIONS,
    DEFAULT_VERSION,
    9,
    "ES",
)

log = logging.getLogger("esbridge_dev.elasticsearch")


class ElasticsearchError(RuntimeError):
    """Elasticsearch could not be fetched or started (message says why)."""


class JavaNotFoundError(ElasticsearchError):
    pass


# --------------------------------------------------------------------------- versions, paths


def resolve_version(version: str | None, dist: Distribution = ELASTICSEARCH) -> str:
    v = (version or dist.default).strip()
    if v in dist.versions:
        return dist.versions[v]
    if re.fullmatch(r"\d+\.\d+\.\d+", v):
        return v
    known = ", ".join(dist.versions)
    raise ElasticsearchError(f"unknown {dist.product} version {v!r} (use one of {known})")


def required_java_major(version: str, dist: Distribution = ELASTICSEARCH) -> int:
    return 21 if int(version.split(".")[0]) >= dist.java21_from else 17


def _project_root() -> Path | None:
    root = Path(__file__).resolve().parents[2]
    return root if (root / "pyproject.toml").is_file() else None


def _traversable_by_others(path: Path) -> bool:
    """Every existing folder from / to path (inclusive) has o+x."""
    p = path
    while True:
        if p.exists() and not p.stat().st_mode & stat.S_IXOTH:
            return False
        if p.parent == p:
            return True
        p = p.parent


def cache_dir() -> Path:
    env = os.environ.get("ESBRIDGE_CACHE_DIR")
    if env:
        d = Path(env)
    else:
        root = _project_root()
        d = FALLBACK_CACHE
        if root is not None:
            cand = root / ".cache" / "elasticsearch"
            if os.geteuid() != 0 or _traversable_by_others(cand):
                d = cand
    d.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        d.chmod(0o755)
    return d


# --------------------------------------------------------------------------- java


def _java_major_of_home(home: Path) -> int | None:
    release = home / "release"
    if release.is_file():
        m = re.search(
            r'^JAVA_VERSION="(\d+)(?:\.(\d+))?', release.read_text(errors="replace"), re.M
        )
        if m:
            major = int(m.group(1))
            return int(m.group(2) or 0) if major == 1 else major
    java = home / "bin" / "java"
    if not os.access(java, os.X_OK):
        return None
    try:
        out = subprocess.run(
            [str(java), "-version"], capture_output=True, text=True, timeout=30
        ).stderr
    except (OSError, subprocess.SubprocessError):
        return None
    m = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not m:
        return None
    major = int(m.group(1))
    return int(m.group(2) or 0) if major == 1 else major


def _java_candidates(jvm_dirs: Iterable[Path]) -> list[Path]:
    homes: list[Path] = []
    for var in ("ES_JAVA_HOME", "JAVA_HOME"):
        if os.environ.get(var):
            homes.append(Path(os.environ[var]))
    for d in jvm_dirs:
        if d.is_dir():
            homes.extend(sorted(p for p in d.iterdir() if (p / "bin" / "java").exists()))
    on_path = shutil.which("java")
    if on_path:
        homes.append(Path(on_path).resolve().parent.parent)
    seen: set[Path] = set()
    unique = []
    for h in homes:
        r = h.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(r)
    return unique


def find_java(min_major: int, jvm_dirs: Iterable[Path] | None = None) -> Path:
    """JAVA home with the lowest major >= min_major; JavaNotFoundError says where it looked."""
    dirs = list(JVM_DIRS if jvm_dirs is None else jvm_dirs)
    found: list[tuple[int, Path]] = []
    looked: list[str] = []
    for home in _java_candidates(dirs) if jvm_dirs is None else _scan_only(dirs):
        major = _java_major_of_home(home)
        looked.append(f"{home} (Java {major if major is not None else '?'})")
        if major is not None and major >= min_major:
            found.append((major, home))
    if not found:
        where = ", ".join(str(d) for d in dirs) or "(no folders)"
        seen = "; ".join(looked) or "none found"
        raise JavaNotFoundError(
            f"Elasticsearch needs Java {min_major} or newer; looked in $ES_JAVA_HOME, "
            f"$JAVA_HOME, {where} and java on PATH; candidates: {seen}. Install e.g. "
            f"openjdk-{min_major}-jre-headless or a Temurin JDK under /usr/lib/jvm."
        )
    found.sort(key=lambda t: t[0])
    return found[0][1]


def _scan_only(dirs: list[Path]) -> list[Path]:
    out = []
    for d in dirs:
        if d.is_dir():
            out.extend(sorted(p.resolve() for p in d.iterdir() if (p / "bin" / "java").exists()))
    return out


# --------------------------------------------------------------------------- fetch


def _m2_zip(version: str, dist: Distribution = ELASTICSEARCH) -> Path:
    return (
        Path.home()
        / ".m2/repository"
        / dist.group.replace(".", "/")
        / dist.name
        / version
        / f"{dist.name}-{version}.zip"
    )


def _unzip(zip_path: Path, dest: Path) -> None:
    with zipfile.ZipFile(zip_path) as zf:
        for info in zf.infolist():
            target = zf.extract(info, dest)
            mode = (info.external_attr >> 16) & 0o777
            if info.is_dir():
                os.chmod(target, 0o755)
            else:
                os.chmod(target, 0o755 if mode & 0o111 else 0o644)


def fetch(version: str | None = None, dist: Distribution = ELASTICSEARCH) -> Path:
    """Download (via Maven, cached in ~/.m2) and unpack; return ES_HOME. Idempotent."""
    version = resolve_version(version, dist)
    base = cache_dir()
    home = base / f"{dist.name}-{version}"
    if (home / ".complete").exists():
        return home
    with open(base / f".fetch-{dist.name}-{version}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (home / ".complete").exists():
            return home
        t0 = time.monotonic()
        zip_path = _m2_zip(version, dist)
        with tempfile.TemporaryDirectory(dir=base, prefix=".fetch-") as tmp:
            if not zip_path.is_file():
                mvn = shutil.which("mvn")
                if not mvn:
                    raise ElasticsearchError(
                        f"Maven (mvn) is needed to download {dist.product} "
                        f"{version} from Maven Central: apt-get install maven "
                        "(or run scripts/install-test-deps.sh)"
                    )
                cmd = [
                    mvn,
                    "-q",
                    "-B",
                    "dependency:copy",
                    f"-Dartifact={dist.artifact.format(version=version)}",
                    f"-DoutputDirectory={tmp}",
                ]
                log.info("fetching %s %s: %s", dist.product, version, " ".join(cmd))
                proc = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
                zips = list(Path(tmp).glob("*.zip"))
                if proc.returncode != 0 or not zips:
                    raise ElasticsearchError(
                        f"mvn could not fetch {dist.product} {version} "
                        f"(exit {proc.returncode}):\n" + (proc.stdout + proc.stderr)[-3000:]
                    )
                zip_path = zips[0]
            unpack = Path(tmp) / "unpack"
            _unzip(zip_path, unpack)
            inner = unpack / f"{dist.name}-{version}"
            if not (inner / "bin" / dist.name).exists():
                raise ElasticsearchError(f"{zip_path} does not contain {dist.name}-{version}/")
            if home.exists():
                shutil.rmtree(home)
            inner.rename(home)
        home.chmod(0o755)
        (home / ".complete").write_text(version)
        log.info(
            "unpacked %s %s into %s in %.1fs", dist.product, version, home, time.monotonic() - t0
        )
    return home


def modules(home: Path) -> list[str]:
    return sorted(p.name for p in (home / "modules").iterdir() if p.is_dir())


# --------------------------------------------------------------------------- helpers


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def ensure_es_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(ES_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", ES_USER],
            capture_output=True,
            check=False,
        )
        pw = pwd.getpwnam(ES_USER)
    return pw.pw_uid, pw.pw_gid


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    os.chown(path, uid, gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), uid, gid)


def _yaml_scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_scalar(x) for x in v) + "]"
    return json.dumps(str(v))


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

        short = "es" if self.dist is ELASTICSEARCH else "os"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"esbridge-{short}-{self.port}-"))
        self.workdir.chmod(0o755)
        conf = self.workdir / "config"
        shutil.copytree(self.home / "config", conf)
        for sub in ("data", "logs", "tmp", "snapshots"):
            (self.workdir / sub).mkdir()
        mods = set(modules(self.home))
        s: dict[str, object] = {
            "cluster.name": f"esbridge-{self.port}",
            "node.name": f"esbridge-{self.port}",
            "network.host": "127.0.0.1",
            "http.port": self.port,
            "transport.port": self.transport_port,
            "discovery.type": "single-node",
            "path.data": str(self.workdir / "data"),
            "path.logs": str(self.workdir / "logs"),
            # filesystem snapshot repositories may live under here (snapshot checks' tests)
            "path.repo": str(self.workdir / "snapshots"),
            "cluster.routing.allocation.disk.threshold_enabled": False,
            "action.destructive_requires_name": False,
        }
        if self.dist is not ELASTICSEARCH:
            mods = set()  # the settings below are Elasticsearch's
        if "x-pack-security" in mods:
            s["xpack.security.enabled"] = False
        if "ingest-geoip" in mods:
            s["ingest.geoip.downloader.enabled"] = False
        if "x-pack-ml" in mods:
            s["xpack.ml.enabled"] = False
        s.update(self.settings)
        (conf / f"{self.dist.name}.yml").write_text(
            "# written by esbridge_dev.elasticsearch\n"
            + "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in s.items() if v is not None)
        )
        # OpenSearch's launcher runs from its (read-only) home: point the relative GC log,
        # error file and heap dump paths of jvm.options at this instance's folders.
        options = conf / "jvm.options"
        if options.is_file():
            text = options.read_text()
            text = re.sub(r"(?<=[=:])logs/", f"{self.workdir}/logs/", text)
            text = text.replace("HeapDumpPath=data", f"HeapDumpPath={self.workdir}/data")
            options.write_text(text)
        (conf / "jvm.options.d").mkdir(exist_ok=True)
        (conf / "jvm.options.d" / "esbridge-heap.options").write_text(
            f"-Xms{self.heap}\n-Xmx{self.heap}\n"
        )
        for rel, content in self.config_files.items():
            target = conf / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        self._console = self.workdir / "logs" / "console.log"
        if os.geteuid() == 0:
            uid, gid = ensure_es_user()
            _chown_tree(self.workdir, uid, gid)

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
        with httpx.Client(timeout=5.0, verify=False) as client:
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
        return httpx.get(self.url, timeout=10).json()


# --------------------------------------------------------------------------- CLI


def _state_file(dist: Distribution = ELASTICSEARCH) -> Path:
    name = "instance.json" if dist is ELASTICSEARCH else f"instance-{dist.name}.json"
    return cache_dir() / name


def _read_state(dist: Distribution = ELASTICSEARCH) -> dict[str, object] | None:
    f = _state_file(dist)
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except ValueError:
        return None


def _cmd_start(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if st and group_alive(int(st["pid"])):  # type: ignore[arg-type]
        print(f"already running: pid {st['pid']} at {st['url']}", file=sys.stderr)
        print(f"export ESBRIDGE_TEST_ES_URL={st['url']}")
        return 0
    srv = ElasticsearchServer(version=args.version, port=args.port, dist=dist)
    try:
        srv.start()
    except ElasticsearchError as e:
        print(str(e), file=sys.stderr)
        return 1
    state = srv.detach()
    state["start_seconds"] = round(srv.start_seconds or 0, 1)
    _state_file(dist).write_text(json.dumps(state, indent=2) + "\n")
    print(
        f"# {dist.product} {state['version']} pid {state['pid']} started in "
        f"{state['start_seconds']}s; log {state['log']}",
        file=sys.stderr,
    )
    print(f"export ESBRIDGE_TEST_ES_URL={state['url']}")
    return 0


def _cmd_stop(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if not st:
        print(f"no {dist.product} started by this tool", file=sys.stderr)
        return 0
    pid = int(st["pid"])  # type: ignore[arg-type]
    if group_alive(pid):
        kill_group(pid)
    shutil.rmtree(str(st["workdir"]), ignore_errors=True)
    _state_file(dist).unlink(missing_ok=True)
    print(f"stopped {dist.product} pid {pid} ({st['url']})", file=sys.stderr)
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    dist: Distribution = args.dist
    st = _read_state(dist)
    if not st:
        print("not running (no state file)")
        return 3
    alive = group_alive(int(st["pid"]))  # type: ignore[arg-type]
    health = "?"
    if alive:
        try:
            health = httpx.get(f"{st['url']}/_cluster/health", timeout=5).json()["status"]
        except (httpx.HTTPError, ValueError, KeyError) as e:
            health = f"unreachable ({e})"
    word = "running" if alive else "dead"
    print(f"{word}: {dist.product} {st['version']} pid {st['pid']} {st['url']} health={health}")
    return 0 if alive else 1


def _cmd_url(args: argparse.Namespace) -> int:
    st = _read_state(args.dist)
    if not st or not group_alive(int(st["pid"])):  # type: ignore[arg-type]
        print("not running", file=sys.stderr)
        return 1
    print(st["url"])
    return 0


def _cmd_fetch(args: argparse.Namespace) -> int:
    t0 = time.monotonic()
    try:
        home = fetch(args.version, args.dist)
    except ElasticsearchError as e:
        print(str(e), file=sys.stderr)
        return 1
    print(f"{home} ({time.monotonic() - t0:.1f}s; modules: {', '.join(modules(home))})")
    return 0


def main(argv: list[str] | None = None, dist: Distribution = ELASTICSEARCH) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    p = argparse.ArgumentParser(prog=f"python -m esbridge_dev.{dist.name}")
    p.set_defaults(dist=dist)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help=f"start a detached {dist.product}, print its URL")
    s.add_argument("--version", default=dist.default)
    s.add_argument("--port", type=int, default=None)
    s.set_defaults(fn=_cmd_start)
    sub.add_parser("stop", help=f"stop the detached {dist.product}").set_defaults(fn=_cmd_stop)
    sub.add_parser("status").set_defaults(fn=_cmd_status)
    sub.add_parser("url").set_defaults(fn=_cmd_url)
    f = sub.add_parser("fetch", help="download and unpack only")
    f.add_argument("--version", default=dist.default)
    f.set_defaults(fn=_cmd_fetch)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
