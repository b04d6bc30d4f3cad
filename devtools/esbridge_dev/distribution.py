"""Which search server to run and where it comes from: versions, Java, download and unpack.

A ``Distribution`` says what differs between Elasticsearch and OpenSearch (Maven artifact,
folder and script names, env names, Java); ``fetch`` resolves the integ-test-zip from Maven
Central (through ``mvn``), unpacks it once into the cache folder and returns its home.
``esbridge_dev.elasticsearch`` starts servers from it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

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

# One logger for the whole harness: tests/conftest.py counts its lines.
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
