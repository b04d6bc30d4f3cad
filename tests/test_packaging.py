"""The service's wheel (what `pip install .` and the Docker image install) ships the service
and the plugin, and none of the development tooling (esbridge_dev: test clusters, sample data,
demo), which lives in its own package under devtools/.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SERVICE = ROOT / "service" / "esbridge"


def _build_context(dest: Path) -> Path:
    """The files the Dockerfile's builder stage copies (its .dockerignore lets nothing else in)."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "service", dest / "service", ignore=ignore)
    (dest / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "check_esbridge", dest / "scripts" / "check_esbridge")
    return dest


def test_wheel_has_the_service_and_plugin_but_no_dev_tooling(tmp_path):
    context = _build_context(tmp_path / "src")
    out = tmp_path / "wheels"
    # As the Dockerfile builds it (`pip wheel .`), without fetching the build backend again.
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    proc = subprocess.run(
        [*pip, "--no-cache-dir", "--wheel-dir", str(out), str(context)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (wheel,) = out.glob("esbridge-*.whl")
    names = zipfile.ZipFile(wheel).namelist()

    dev = [n for n in names if "esbridge_dev" in n or "devtools" in n]
    assert dev == [], dev
    assert not any(n.split("/")[-1] in {"sampledata.py", "demo.py", "seeding.py"} for n in names)
    # the service, its status page, the plugin (as a module and as data for the sh launcher)
    assert "esbridge/cli.py" in names and "esbridge/py.typed" in names
    assert any(n.startswith("esbridge/web/") for n in names)
    assert "esbridge/plugin/check_esbridge.py" in names
    data = [n for n in names if ".data/" in n]
    assert any(n.endswith(".data/data/share/esbridge/check_esbridge.py") for n in data), data
    assert any(n.endswith(".data/scripts/check_esbridge") for n in data), data


def test_the_service_never_imports_the_dev_tooling():
    """The wheel works without esbridge_dev: no module of the service imports it, lazily or not."""
    offenders = []
    for path in sorted(SERVICE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [
                f"{path.relative_to(ROOT)}:{node.lineno}: {name}"
                for name in names
                if name.split(".")[0] == "esbridge_dev" or name.startswith("esbridge.devtools")
            ]
    assert offenders == []
    assert not (SERVICE / "devtools").exists()
