"""A throwaway Icinga 2 in a temp folder, for the tests.

Next to devtools/nagios.py so both monitoring programs are driven the same way. Every path
Icinga 2 would use under /var or /etc is overridden with a ``-D`` constant pointing into
``<folder>/state``, and ``RunAsUser``/``RunAsGroup`` stay root (as root it would otherwise
switch to the package's user). The daemon runs in its own process group: its check workers
go with it on stop().
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from esbridge_dev.procgroup import start_group, stop_group

ICINGA2 = "/usr/sbin/icinga2"


class Icinga2:
    """``icinga2`` with every path under ``folder/state``; ``node`` sets NodeName (+ ZoneName
    ``master``) for configs with an Endpoint/ApiListener."""

    def __init__(self, folder: Path, binary: str = ICINGA2, node: str | None = None) -> None:
        self.folder = folder
        self.binary = binary
        self.state = folder / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.log_path = folder / "icinga2.out"
        self.node = node
        self.proc: subprocess.Popen[bytes] | None = None

    def defines(self) -> list[str]:
        s = self.state
        values: dict[str, object] = {
            "RunAsUser": "root",
            "RunAsGroup": "root",
            "DataDir": s,
            "CacheDir": s,
            "LogDir": s,
            "SpoolDir": s,
            "InitRunDir": s,
            "StatePath": s / "icinga2.state",
            "ObjectsPath": s / "icinga2.debug",
            "VarsPath": s / "icinga2.vars",
            "PidPath": s / "icinga2.pid",
        }
        if self.node:
            values |= {"NodeName": self.node, "ZoneName": "master"}
        return [f"-D{key}={value}" for key, value in values.items()]

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """``icinga2 <args> <-D constants>``, output captured."""
        return subprocess.run(
            [self.binary, *args, *self.defines()], capture_output=True, text=True, timeout=timeout
        )

    def validate(
        self, config: Path, log_level: str = "warning"
    ) -> subprocess.CompletedProcess[str]:
        """``icinga2 daemon -C``: load and validate the configuration, without starting."""
        return self.run("daemon", "-C", "-x", log_level, "-c", str(config))

    def start(self, config: Path, log_level: str = "information") -> Icinga2:
        """Start the daemon in the foreground (output to ``log_path``); does not wait."""
        args = [self.binary, "daemon", "-x", log_level, "-c", str(config), *self.defines()]
        self.proc = start_group(args, self.log_path)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, grace: float = 30.0) -> bool:
        """Stop the daemon and its workers; True when nothing of its process group is left."""
        if self.proc is None:
            return True
        return stop_group(self.proc, grace)
