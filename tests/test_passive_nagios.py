"""Passive delivery to a real Nagios 4 through its external command file (a named pipe).

Nagios runs in the foreground from a temp folder it owns (it drops to the ``nagios`` user),
with the shipped deploy/nagios templates + passive.cfg, ``interval_length=1`` and fast
freshness checks. esbridge writes PROCESS_SERVICE_CHECK_RESULT lines; the test reads what
Nagios made of them from its log and ``status.dat``, then stops esbridge and watches Nagios's
own freshness check run the (copied) check_esbridge plugin, which finds esbridge gone.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import pytest

from _require import require
from esbridge.devtools.service import EsbridgeProcess, free_port
from test_passive_icinga import seeded_checks

ROOT = Path(__file__).resolve().parents[1]
NAGIOS = "/usr/sbin/nagios4"
PLUGIN_SRC = ROOT / "service" / "esbridge" / "plugin" / "check_esbridge.py"

pytestmark = [pytest.mark.clients, pytest.mark.slow]

MINIMAL = """\
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

define host {
    use                     esbridge-passive-host
    host_name               esbridge
    address                 127.0.0.1
    active_checks_enabled   0
}
"""

SERVICE = """
define service {{
    use                     esbridge-passive-service
    host_name               esbridge
    service_description     {name}
    freshness_threshold     {threshold}
}}
"""


class Nagios:
    """nagios4 in the foreground, everything in one temp folder owned by the nagios user."""

    def __init__(self, folder: Path, services: list[str], threshold: int, esbridge_url: str):
        self.folder = d = folder
        plugins = d / "plugins"
        plugins.mkdir()
        plugin = plugins / "check_esbridge"
        # the plugin as Nagios runs it: the single file through its own shebang
        shutil.copy(PLUGIN_SRC, plugin)
        plugin.chmod(0o755)
        commands = (ROOT / "deploy/nagios/commands.cfg").read_text()
        (d / "commands.cfg").write_text(commands.replace("http://127.0.0.1:9108", esbridge_url))
        objects = MINIMAL + "".join(SERVICE.format(name=n, threshold=threshold) for n in services)
        (d / "objects.cfg").write_text(objects)
        (d / "resource.cfg").write_text(f"$USER1$={plugins}\n")
        for sub in ("checkresults", "tmp"):
            (d / sub).mkdir()
        self.command_file = d / "nagios.cmd"
        cfg_files = [
            d / "objects.cfg",
            d / "commands.cfg",
            ROOT / "deploy/nagios/templates.cfg",
            ROOT / "deploy/nagios/passive.cfg",
        ]
        main = [
            f"log_file={d}/nagios.log",
            *(f"cfg_file={f}" for f in cfg_files),
            f"resource_file={d}/resource.cfg",
            f"object_cache_file={d}/objects.cache",
            f"precached_object_file={d}/objects.precache",
            f"status_file={d}/status.dat",
            "status_update_interval=1",
            f"state_retention_file={d}/retention.dat",
            "retain_state_information=0",
            f"temp_file={d}/nagios.tmp",
            f"temp_path={d}/tmp",
            f"check_result_path={d}/checkresults",
            f"lock_file={d}/nagios.lock",
            f"query_socket={d}/nagios.qh",
            f"command_file={self.command_file}",
            "check_external_commands=1",
            "accept_passive_service_checks=1",
            "log_passive_checks=1",
            "check_service_freshness=1",
            "service_freshness_check_interval=1",
            "additional_freshness_latency=0",
            "nagios_user=nagios",
            "nagios_group=nagios",
            "interval_length=1",
            "use_syslog=0",
            "enable_notifications=0",
            "illegal_macro_output_chars=`~$&|'\"<>",
        ]
        (d / "nagios.cfg").write_text("\n".join(main) + "\n")
        for path in [d, *d.rglob("*")]:
            shutil.chown(path, "nagios", "nagios")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Nagios:
        out = (self.folder / "stdout.log").open("ab")
        self.proc = subprocess.Popen(
            [NAGIOS, str(self.folder / "nagios.cfg")],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.stdout()
            if self.command_file.exists() and (self.folder / "status.dat").exists():
                return self
            time.sleep(0.2)
        raise AssertionError(f"nagios did not start:\n{self.stdout()}")

    def stdout(self) -> str:
        return (self.folder / "stdout.log").read_text(errors="replace")

    def log(self) -> str:
        path = self.folder / "nagios.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def status(self) -> dict[str, dict[str, str]]:
        """servicestatus blocks of status.dat by service description."""
        text = (self.folder / "status.dat").read_text(errors="replace")
        services = {}
        for block in re.findall(r"servicestatus \{\n(.*?)\n\s*\}", text, re.S):
            fields = dict(line.strip().split("=", 1) for line in block.splitlines() if "=" in line)
            services[fields["service_description"]] = fields
        return services

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def poll(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout} s (last: {last!r})")


def test_nagios_takes_results_from_the_command_file_and_checks_freshness(
    es_url, make_index, seed, tmp_path
):
    require(os.access(NAGIOS, os.X_OK), f"{NAGIOS} is not installed (nagios4-core)")
    require(os.access("/usr/bin/python3", os.X_OK), "the plugin's shebang needs /usr/bin/python3")
    checks = seeded_checks(tmp_path, make_index, seed)
    folder = Path(tempfile.mkdtemp(prefix="esbridge-nagios-"))
    folder.chmod(0o755)
    port = free_port()
    names = ["p-ok", "p-warn", "p-crit"]
    nagios = Nagios(folder, names, threshold=8, esbridge_url=f"http://127.0.0.1:{port}")
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        "passive:\n"
        "  - name: nagios\n"
        "    type: nagios\n"
        f"    command_file: {nagios.command_file}\n"
        "    host: esbridge\n"
        "    service: '{check}'\n"
        "    timeout: 2s\n"
    )
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    expected = {
        "p-ok": ("OK", "'count'=5;10;20;0"),
        "p-warn": ("WARNING", "'count'=5;2;20;0"),
        "p-crit": ("CRITICAL", "'count'=5;1;3;0"),
    }
    try:
        nagios.start()
        with EsbridgeProcess(
            es_url, [checks], config=config, port=port, state_index=state_index
        ) as svc:

            def submitted() -> bool:
                log = nagios.log()
                return all(
                    f"PASSIVE SERVICE CHECK: esbridge;{n};{'012'[i]};" in log
                    for i, n in enumerate(names)
                )

            poll(submitted, 60, "passive results in the Nagios log")
            log = nagios.log()
            for name, (state, _) in expected.items():
                if state != "OK":
                    assert re.search(rf"SERVICE ALERT: esbridge;{name};{state};HARD;1;", log), log
            status = poll(
                lambda: (
                    (s := nagios.status())
                    and all(s[n].get("check_type") == "1" for n in names)
                    and s
                ),
                20,
                "passive results in status.dat",
            )
            for i, (name, (state, perf)) in enumerate(expected.items()):
                st = status[name]
                assert st["current_state"] == str(i), st
                assert st["plugin_output"].startswith(f"{state} - 5 "), st
                assert st["performance_data"] == perf, st
                assert st["check_type"] == "1", st  # 1 = passive
            ready = svc.get("/readyz").json()
            [target] = ready["passive"]
            assert target["up"] is True and target["sent"] >= 3, target
        stopped = time.time()
        # esbridge is gone: the freshness check runs check_esbridge, which cannot reach it
        status = poll(
            lambda: (
                (s := nagios.status()) and all(s[n]["current_state"] == "3" for n in names) and s
            ),
            45,
            "services UNKNOWN through freshness; log:\n" + nagios.log()[-3000:],
        )
        for name in names:
            assert status[name]["check_type"] == "0", status[name]  # active: the fallback ran
            assert float(status[name]["last_check"]) >= stopped - 1
            assert status[name]["plugin_output"].startswith("UNKNOWN - cannot reach esbridge")
    finally:
        nagios.stop()
        shutil.rmtree(folder, ignore_errors=True)
        httpx.delete(f"{es_url}/{state_index}", timeout=30)
