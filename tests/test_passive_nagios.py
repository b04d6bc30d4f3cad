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
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from _require import require
from esbridge_dev import httpcalls
from esbridge_dev.nagios import NAGIOS4, Nagios, prepare
from esbridge_dev.service import EsbridgeProcess, free_port
from test_passive_icinga import grouped_checks, seeded_checks

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.clients, pytest.mark.slow, pytest.mark.version_independent]

OBJECTS = """
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


def passive_nagios(folder: Path, services: list[str], threshold: int, esbridge_url: str) -> Nagios:
    """Nagios with the shipped templates + passive.cfg, passive services that fall back to
    the (copied) plugin through fast freshness checks."""
    d = folder
    commands = (ROOT / "deploy/nagios/commands.cfg").read_text()
    (d / "commands.cfg").write_text(commands.replace("http://127.0.0.1:9108", esbridge_url))
    objects = OBJECTS + "".join(SERVICE.format(name=n, threshold=threshold) for n in services)
    cfg_files = [
        d / "commands.cfg",
        ROOT / "deploy/nagios/templates.cfg",
        ROOT / "deploy/nagios/passive.cfg",
    ]
    settings = [
        "status_update_interval=1",
        "check_external_commands=1",
        "accept_passive_service_checks=1",
        "log_passive_checks=1",
        "check_service_freshness=1",
        "service_freshness_check_interval=1",
        "additional_freshness_latency=0",
    ]
    # the plugin as Nagios runs it: the single file through its own shebang
    return prepare(d, objects, cfg_files, settings)


def services(nagios: Nagios) -> dict[str, dict[str, str]]:
    """servicestatus blocks of status.dat by service description (all on host esbridge)."""
    return {svc: fields for (_, svc), fields in nagios.status().items() if svc}


def poll(predicate, timeout: float, what: str | Callable[[], str]):  # type: ignore[no-untyped-def]
    """``what``: the failure message, or a callable that writes it when the time is up (so a
    log in it is the log at the failure, not at the start)."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(0.3)
    said = what() if callable(what) else what
    raise AssertionError(f"{said} within {timeout} s (last: {last!r})")


def test_nagios_takes_results_from_the_command_file_and_checks_freshness(
    es_url, make_index, seed, tmp_path
):
    require(os.access(NAGIOS4, os.X_OK), f"{NAGIOS4} is not installed (nagios4-core)")
    require(os.access("/usr/bin/python3", os.X_OK), "the plugin's shebang needs /usr/bin/python3")
    checks = seeded_checks(tmp_path, make_index, seed)
    folder = Path(tempfile.mkdtemp(prefix="esbridge-nagios-"))
    folder.chmod(0o755)
    port = free_port()
    names = ["p-ok", "p-warn", "p-crit"]
    # The threshold is above esbridge's start-up time on a loaded machine. Once in CI esbridge
    # took 9 s to deliver its first results, so Nagios forced a freshness check before them,
    # and after the stop the services did not go UNKNOWN within 45 s (probably: Nagios skips
    # a service it still counts as being freshened). This test is about the fallback after a
    # stop.
    nagios = passive_nagios(folder, names, threshold=20, esbridge_url=f"http://127.0.0.1:{port}")
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
                    (s := services(nagios))
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
                (s := services(nagios)) and all(s[n]["current_state"] == "3" for n in names) and s
            ),
            60,
            lambda: (
                "services UNKNOWN through freshness; services: "
                + repr(
                    {
                        n: (
                            f.get("current_state"),
                            f.get("plugin_output"),
                            f.get("last_check"),
                            f.get("next_check"),
                            f.get("check_options"),
                        )
                        for n, f in services(nagios).items()
                    }
                )
                + f"; esbridge stopped at {stopped:.0f}; Nagios log:\n"
                + nagios.log()[-4000:]
            ),
        )
        for name in names:
            assert status[name]["check_type"] == "0", status[name]  # active: the fallback ran
            assert float(status[name]["last_check"]) >= stopped - 1
            assert status[name]["plugin_output"].startswith("UNKNOWN - cannot reach esbridge")
    finally:
        nagios.stop()
        shutil.rmtree(folder, ignore_errors=True)
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)


GROUP_OBJECTS = """
define host {
    use                     esbridge-passive-host
    host_name               web-01
    address                 127.0.0.1
    active_checks_enabled   0
}

define host {
    use                     esbridge-passive-host
    host_name               web-02
    address                 127.0.0.1
    active_checks_enabled   0
}

define service {
    use                     esbridge-passive-service
    host_name               web-01,web-02
    service_description     p-group
    freshness_threshold     300
}
"""


def test_nagios_gets_one_service_per_group(es_url, make_index, seed, tmp_path):
    """groups: {host: '{group[host]}'}, send_overall: false → web-01;p-group, web-02;p-group."""
    require(os.access(NAGIOS4, os.X_OK), f"{NAGIOS4} is not installed (nagios4-core)")
    checks = grouped_checks(tmp_path, make_index, seed)
    folder = Path(tempfile.mkdtemp(prefix="esbridge-nagios-"))
    folder.chmod(0o755)
    port = free_port()
    commands = (ROOT / "deploy/nagios/commands.cfg").read_text()
    (folder / "commands.cfg").write_text(
        commands.replace("http://127.0.0.1:9108", f"http://127.0.0.1:{port}")
    )
    cfg_files = [
        folder / "commands.cfg",
        ROOT / "deploy/nagios/templates.cfg",
        ROOT / "deploy/nagios/passive.cfg",
    ]
    settings = [
        "status_update_interval=1",
        "check_external_commands=1",
        "accept_passive_service_checks=1",
        "log_passive_checks=1",
    ]
    nagios = prepare(folder, GROUP_OBJECTS, cfg_files, settings)
    config = tmp_path / "esbridge.yaml"
    config.write_text(
        "passive:\n"
        "  - name: nagios\n"
        "    type: nagios\n"
        f"    command_file: {nagios.command_file}\n"
        "    send_overall: false\n"
        "    groups: {host: '{group[host]}', service: '{check}'}\n"
        "    timeout: 2s\n"
    )
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    try:
        nagios.start()
        with EsbridgeProcess(
            es_url, [checks], config=config, port=port, state_index=state_index
        ) as svc:
            poll(
                lambda: all(
                    f"PASSIVE SERVICE CHECK: {h};p-group;{code};" in nagios.log()
                    for h, code in (("web-01", 2), ("web-02", 0))
                ),
                60,
                "per-group passive results in the Nagios log",
            )
            status = poll(
                lambda: (
                    (s := nagios.status())
                    and all(s.get((h, "p-group"), {}).get("check_type") == "1"
                            for h in ("web-01", "web-02"))
                    and s
                ),
                20,
                "per-group results in status.dat",
            )  # fmt: skip
            [target] = svc.get("/readyz").json()["passive"]
        web1, web2 = status[("web-01", "p-group")], status[("web-02", "p-group")]
        assert web1["current_state"] == "2" and web1["plugin_output"].startswith("CRITICAL - ")
        assert web2["current_state"] == "0" and web2["plugin_output"].startswith("OK - ")
        assert "web-01" in web1["performance_data"] and "web-02" not in web1["performance_data"]
        assert "web-02" in web2["performance_data"] and "web-01" not in web2["performance_data"]
        log = nagios.log()
        # no overall submission (Nagios would log it as a result for an unknown service)
        assert "PASSIVE SERVICE CHECK: esbridge;" not in log
        assert "p-group" not in [svc for (host, svc) in status if host not in ("web-01", "web-02")]
        assert target["up"] is True and target["failed"] == 0, target
    finally:
        nagios.stop()
        shutil.rmtree(folder, ignore_errors=True)
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)
