"""A throwaway Nagios 4 in a temp folder, for the tests and the bench.

Lives in devtools (not tests/) because both ``tests/`` and ``bench/passive_vs_plugin.py``
drive a real Nagios, and both already import ``esbridge_dev``. It encodes what
/work/shared/pitfalls.md measured: started as root, Nagios drops to the ``nagios`` user, so
the folder and everything in it is 0755/0644 and owned by nagios; it gets its own
``lock_file``, ``check_result_path`` and ``query_socket``; ``interval_length=1`` makes every
interval seconds; object definitions close with ``}`` on its own line.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import esbridge
from esbridge_dev.procgroup import start_group, stop_group

NAGIOS4 = "/usr/sbin/nagios4"
# the installed service package's plugin (an editable install: the source tree's)
PLUGIN_SRC = Path(esbridge.__file__).resolve().parent / "plugin" / "check_esbridge.py"

# The objects the shipped templates lean on (24x7, the admins contact group), with
# notifications going nowhere.
MINIMAL_OBJECTS = """\
define timeperiod {
    timeperiod_name         24x7
    alias                   24x7
    sunday                  00:00-24:00
    monday                  00:00-24:00
    tuesday                 00:00-24:00
    wednesday               00:00-24:00
    thursday                00:00-24:00
    friday                  00:00-24:00
    saturday                00:00-24:00
}

define command {
    command_name            notify-by-nothing
    command_line            /bin/true
}

define contact {
    contact_name                    admin
    alias                           Admin
    host_notifications_enabled      0
    service_notifications_enabled   0
    host_notification_period        24x7
    service_notification_period     24x7
    host_notification_options       n
    service_notification_options    n
    host_notification_commands      notify-by-nothing
    service_notification_commands   notify-by-nothing
}

define contactgroup {
    contactgroup_name       admins
    alias                   Administrators
    members                 admin
}
"""


def install_plugin(folder: Path, name: str = "check_esbridge") -> Path:
    """Copy the single plugin file, as an operator would (install -m 0755)."""
    target = folder / name
    shutil.copyfile(PLUGIN_SRC, target)
    target.chmod(0o755)
    return target


def main_config(
    folder: Path,
    cfg_files: Iterable[Path],
    settings: Sequence[str] = (),
    resource: str = "/usr/lib/nagios/plugins",
) -> Path:
    """Write ``folder/nagios.cfg`` with every file Nagios writes inside ``folder``.

    ``$USER1$`` is ``resource``; ``settings`` (``key=value`` lines, none of the common keys)
    add what one use needs: passive checks, fast reaping, freshness.
    """
    d = folder
    for sub in ("checkresults", "tmp"):
        (d / sub).mkdir(mode=0o755, exist_ok=True)
    (d / "resource.cfg").write_text(f"$USER1$={resource}\n")
    lines = [
        f"log_file={d}/nagios.log",
        *(f"cfg_file={f}" for f in cfg_files),
        f"resource_file={d}/resource.cfg",
        f"object_cache_file={d}/objects.cache",
        f"precached_object_file={d}/objects.precache",
        f"status_file={d}/status.dat",
        f"state_retention_file={d}/retention.dat",
        f"temp_file={d}/nagios.tmp",
        f"temp_path={d}/tmp",
        f"check_result_path={d}/checkresults",
        f"lock_file={d}/nagios.lock",
        f"query_socket={d}/nagios.qh",
        f"command_file={d}/nagios.cmd",
        "nagios_user=nagios",
        "nagios_group=nagios",
        "interval_length=1",
        "retain_state_information=0",
        "use_syslog=0",
        "enable_notifications=0",
        "illegal_macro_output_chars=`~$&|'\"<>",
        *settings,
    ]
    (d / "nagios.cfg").write_text("\n".join(lines) + "\n")
    return d / "nagios.cfg"


def hand_over(folder: Path, executables: Iterable[Path] = ()) -> None:
    """Make ``folder`` and all in it the nagios user's: dirs and ``executables`` 0755, the
    rest 0644 (links are left alone)."""
    run = set(executables)
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path in run else 0o644)
            shutil.chown(path, "nagios", "nagios")


def parse_status(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """status.dat -> {(host, service): fields}; host blocks under (host, "")."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for kind, body in re.findall(r"^(servicestatus|hoststatus) \{\n(.*?)\n\t\}", text, re.M | re.S):
        fields = dict(line.strip().split("=", 1) for line in body.splitlines() if "=" in line)
        key = (fields["host_name"], fields.get("service_description", "") if kind[0] == "s" else "")
        out[key] = fields
    return out


def prepare(
    folder: Path,
    objects: str,
    cfg_files: Sequence[Path] = (),
    settings: Sequence[str] = (),
    binary: str = NAGIOS4,
) -> Nagios:
    """The whole folder for one Nagios: ``plugins/check_esbridge`` (``$USER1$``),
    ``objects.cfg`` (MINIMAL_OBJECTS + ``objects``), nagios.cfg loading it and ``cfg_files``
    (see main_config for ``settings``), all handed over to the nagios user."""
    plugins = folder / "plugins"
    plugins.mkdir(mode=0o755, exist_ok=True)
    plugin = install_plugin(plugins)
    (folder / "objects.cfg").write_text(MINIMAL_OBJECTS + objects)
    main_config(folder, [folder / "objects.cfg", *cfg_files], settings, resource=str(plugins))
    hand_over(folder, executables=[plugin])
    return Nagios(folder, binary)


class Nagios:
    """Nagios 4 in the foreground on a folder prepared by main_config() + hand_over()."""

    def __init__(self, folder: Path, binary: str = NAGIOS4) -> None:
        self.folder = folder
        self.binary = binary
        self.config = folder / "nagios.cfg"
        self.command_file = folder / "nagios.cmd"
        self.proc: subprocess.Popen[bytes] | None = None

    def verify(self) -> subprocess.CompletedProcess[str]:
        """``nagios4 -v``: the configuration check, without starting."""
        return subprocess.run(
            [self.binary, "-v", str(self.config)], capture_output=True, text=True, timeout=120
        )

    def start(self, wait: float = 30.0, log: bool = True) -> Nagios:
        """Start; with ``wait``, until status.dat exists (and the command file, when external
        commands are on), else stop it and raise with its output."""
        stdout = self.folder / "nagios.stdout" if log else None
        ready = [self.status_file]
        if "\ncheck_external_commands=1\n" in self.config.read_text():
            ready.append(self.command_file)
        self.proc = start_group([self.binary, str(self.config)], stdout)
        deadline = time.monotonic() + wait
        while wait and not all(path.exists() for path in ready):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"nagios did not start:\n{self.stdout()[-4000:]}")
            time.sleep(0.1)
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def status_file(self) -> Path:
        return self.folder / "status.dat"

    def stdout(self) -> str:
        path = self.folder / "nagios.stdout"
        return path.read_text(errors="replace") if path.exists() else ""

    def log(self) -> str:
        path = self.folder / "nagios.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self) -> dict[tuple[str, str], dict[str, str]]:
        """status.dat by (host, service); {} before Nagios wrote it."""
        if not self.status_file.exists():
            return {}
        return parse_status(self.status_file.read_text(errors="replace"))

    def stop(self) -> bool:
        """Stop Nagios and its workers; True when nothing of its process group is left."""
        if self.proc is None:
            return True
        return stop_group(self.proc)
