"""The folder one search-server node runs from: config copy, its yml, JVM options, data,
logs, snapshots; owned by the unprivileged ``esbridge-es`` user when run as root.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from esbridge_dev.distribution import ELASTICSEARCH, ES_USER, Distribution, modules


def write_node_folder(
    dist: Distribution,
    home: Path,
    port: int,
    transport_port: int,
    settings: Mapping[str, object],
    heap: str,
    config_files: Mapping[str, str | bytes],
) -> Path:
    """A fresh temp folder for a single node on 127.0.0.1:``port``; ``settings`` override the
    defaults below (security, ML and geoip off where those modules exist, watermarks off)."""
    short = "es" if dist is ELASTICSEARCH else "os"
    workdir = Path(tempfile.mkdtemp(prefix=f"esbridge-{short}-{port}-"))
    workdir.chmod(0o755)
    conf = workdir / "config"
    shutil.copytree(home / "config", conf)
    for sub in ("data", "logs", "tmp", "snapshots"):
        (workdir / sub).mkdir()
    mods = set(modules(home))
    s: dict[str, object] = {
        "cluster.name": f"esbridge-{port}",
        "node.name": f"esbridge-{port}",
        "network.host": "127.0.0.1",
        "http.port": port,
        "transport.port": transport_port,
        "discovery.type": "single-node",
        "path.data": str(workdir / "data"),
        "path.logs": str(workdir / "logs"),
        # filesystem snapshot repositories may live under here (snapshot checks' tests)
        "path.repo": str(workdir / "snapshots"),
        "cluster.routing.allocation.disk.threshold_enabled": False,
        "action.destructive_requires_name": False,
    }
    if dist is not ELASTICSEARCH:
        mods = set()  # the settings below are Elasticsearch's
    if "x-pack-security" in mods:
        s["xpack.security.enabled"] = False
    if "ingest-geoip" in mods:
        s["ingest.geoip.downloader.enabled"] = False
    if "x-pack-ml" in mods:
        s["xpack.ml.enabled"] = False
    s.update(settings)
    (conf / f"{dist.name}.yml").write_text(
        "# written by esbridge_dev.elasticsearch\n"
        + "".join(f"{k}: {_yaml_scalar(v)}\n" for k, v in s.items() if v is not None)
    )
    # OpenSearch's launcher runs from its (read-only) home: point the relative GC log,
    # error file and heap dump paths of jvm.options at this instance's folders.
    options = conf / "jvm.options"
    if options.is_file():
        text = options.read_text()
        text = re.sub(r"(?<=[=:])logs/", f"{workdir}/logs/", text)
        text = text.replace("HeapDumpPath=data", f"HeapDumpPath={workdir}/data")
        options.write_text(text)
    (conf / "jvm.options.d").mkdir(exist_ok=True)
    (conf / "jvm.options.d" / "esbridge-heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")
    for rel, content in config_files.items():
        target = conf / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    if os.geteuid() == 0:
        uid, gid = ensure_es_user()
        _chown_tree(workdir, uid, gid)

    return workdir


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
