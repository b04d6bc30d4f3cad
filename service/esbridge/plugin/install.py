"""``esbridge install-plugin DIR``: put a ``check_esbridge`` into a Nagios/Icinga plugin folder
that starts as cheaply as Python can.

What it writes is a five-line Python script whose shebang runs the interpreter isolated and
without ``site`` (``#!<python> -IS``) and which imports the plugin module that came with the
package, compiled (Python never caches a script's bytecode: the copied single file is compiled
on every run, a quarter of its time). It needs no shell either: ``pip`` writes every script's
first line as the bare interpreter and drops its flags, which is why the ``check_esbridge``
that ``pip install`` puts on ``PATH`` has to be an ``sh`` launcher, one more program to start
on every check. Figures: bench/README.md, "Plugin as installed".
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import esbridge
from esbridge import __version__

NAME = "check_esbridge"
MARK = "# written by `esbridge install-plugin`"
MODULE = Path(esbridge.__file__).resolve().parent / "plugin" / "check_esbridge.py"
# Linux reads at most 127 bytes of a "#!" line before 5.1 (255 since) and cuts the rest silently.
SHEBANG_MAX = 127


class InstallError(Exception):
    """The plugin cannot be installed there; the message says what to change."""


def stub_text(python: str, plugin_dir: Path) -> str:
    """The script: the shebang, then import the compiled module and run it."""
    return (
        f"#!{python} -IS\n"
        f"{MARK} (esbridge {__version__}): the plugin module\n"
        "# installed with the package, compiled, run isolated and without site-packages.\n"
        "# Write it again (esbridge install-plugin) after moving or upgrading esbridge.\n"
        "import sys\n"
        f"sys.path.insert(0, {str(plugin_dir)!r})\n"
        "import check_esbridge\n"
        "sys.exit(check_esbridge.main())\n"
    )


def _check_python(python: str) -> None:
    if not os.path.isabs(python):
        raise InstallError(f"--python must be an absolute path, not {python!r}")
    if any(ch.isspace() for ch in python) or len(python) + 6 > SHEBANG_MAX:
        raise InstallError(
            f"the interpreter path {python!r} cannot go on a '#!' line (no spaces, at most "
            f"{SHEBANG_MAX - 6} characters): give --python a shorter path, e.g. a symlink"
        )
    if not os.access(python, os.X_OK):
        raise InstallError(f"--python {python}: not an executable file")


def _compile(python: str, module: Path) -> None:
    """Compile the module with the interpreter that will run it (its own cache tag), as the
    one installing: the plugin usually runs as a user that cannot write the cache."""
    proc = subprocess.run(
        [python, "-I", "-S", "-m", "py_compile", str(module)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise InstallError(f"{python} cannot compile {module}: {detail}")


def install(directory: Path, python: str | None = None, force: bool = False) -> Path:
    """Write ``directory/check_esbridge`` (mode 755, atomically); return its path."""
    python = python or sys.executable
    _check_python(python)
    if not directory.is_dir():
        raise InstallError(f"{directory}: no such directory (the plugin folder must exist)")
    target = directory / NAME
    if target.exists() and not force:
        try:
            ours = MARK in target.read_text(encoding="utf-8", errors="replace")[:512]
        except OSError as exc:
            raise InstallError(f"{target}: cannot read it: {exc.strerror or exc}") from None
        if not ours:
            raise InstallError(
                f"{target} exists and was not written by esbridge install-plugin "
                "(a copied plugin file or the pip launcher?): remove it or use --force"
            )
    _compile(python, MODULE)
    fd, tmp = tempfile.mkstemp(prefix=f".{NAME}.", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(stub_text(python, MODULE.parent))
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
