"""Programs started in their own process group, and stopped with everything they forked.

Elasticsearch, Nagios 4 and Icinga 2 all fork helpers (JVM children, check workers) that
must not outlive a test or a bench run: they are started with ``start_new_session=True`` and
stopped by signalling the whole group. One implementation for devtools, tests and bench.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any


def group_alive(pgid: int) -> bool:
    """True while a process of group ``pgid`` runs; zombies of the group count as gone."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_group(pgid: int, grace: float = 20.0) -> None:
    """SIGTERM to the group, up to ``grace`` seconds to go, then SIGKILL (10 s more)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and group_alive(pgid):
        time.sleep(0.1)
    if group_alive(pgid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and group_alive(pgid):
            time.sleep(0.05)


def start_group(args: list[str], log: Path | None, **kw: Any) -> subprocess.Popen[bytes]:
    """Start ``args`` as the leader of a new process group, output appended to ``log``
    (or discarded when ``log`` is None)."""
    if log is None:
        return subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            **kw,
        )
    with log.open("ab") as fh:
        return subprocess.Popen(
            args, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, **kw
        )


def stop_group(proc: subprocess.Popen[bytes], grace: float = 20.0) -> bool:
    """Stop the group ``proc`` leads (see kill_group) and reap ``proc``.

    Returns whether the whole group is gone, so a test can assert that nothing survived.
    """
    pgid = proc.pid  # start_new_session: the group id is the leader's pid
    kill_group(pgid, grace)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(5)
    return proc.poll() is not None and not group_alive(pgid)
