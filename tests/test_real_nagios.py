"""Real Nagios 4 runs check_esbridge against the real service and reaches the expected states.

Nagios runs in the foreground (as root it drops to the ``nagios`` user, so everything lives in
a 0755 folder under /tmp owned by nagios). It loads ALL the shipped ``deploy/nagios/*.cfg`` with
only what commands.cfg says to change (the URL/port) changed, and ``$USER1$`` pointing at a
folder holding the copied plugin; plus test services that call the plugin as
``/usr/bin/python3 -I -S <plugin>`` with ``interval_length=1``, 2 s intervals and
``max_check_attempts 1``. Assertions come from Nagios's own log (``SERVICE ALERT: ...;HARD``)
and ``status.dat``.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from esbridge_dev.nagios import NAGIOS4, Nagios, prepare
from realclients import (
    DEPLOY,
    SHIPPED_URL,
    STALE_RE,
    SYSTEM_PYTHON,
    TYPO_RE,
    Scenario,
    first_line_parts,
    open_dir,
    running_scenario,
    tool,
    wait_until,
)

pytestmark = [pytest.mark.clients, pytest.mark.es, pytest.mark.version_independent]

SHIPPED = sorted((DEPLOY / "nagios").glob("*.cfg"))

OBJECTS = """
# The plugin as the brief of this test wants it run: system interpreter, isolated, no site.
define command {
    command_name            esbridge_py
    command_line            @PYTHON@ -I -S @PLUGIN@ -H @URL@ -C '$ARG1$' $ARG2$
}

define service {
    name                    rc-fast
    use                     esbridge-service
    check_interval          2
    retry_interval          1
    max_check_attempts      1
    register                0
}
"""

# (service_description, check_command) on the shipped host "esbridge"
TEST_SERVICES = [
    ("rc ok", "esbridge_py!rc-ok"),
    ("rc warning", "esbridge_py!rc-warning"),
    ("rc critical", "esbridge_py!rc-critical"),
    ("rc unknown", "esbridge_py!rc-unknown"),
    ("rc stale", "esbridge_py!rc-stale!--max-age 1"),
    ("rc typo", "esbridge_py!rc-critcal"),
    ("rc group web-02", "esbridge_py!web-5xx-errors!-g host=web-02"),
    # the shipped command: the plugin by its shebang (#!/usr/bin/python3 -IS)
    ("rc critical shebang", "check_esbridge!rc-critical"),
]


def as_nagios_shows(text: str) -> str:
    """Nagios 4 replaces ';' by ':' in plugin output (';' separates the fields of its log and
    external commands). esbridge never puts ';' in output text, so Nagios shows the text
    exactly as the service sends it: identity, kept as a named step for the assertions."""
    assert ";" not in text.split("|")[0], f"';' in plugin output text: {text!r}"
    return text


def nagios_re(pattern: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(as_nagios_shows(pattern.pattern))


@dataclass(frozen=True)
class Expect:
    """One Nagios service's expected HARD state.

    Nagios logs a SERVICE ALERT only on a state change. The test services start as UNKNOWN
    (``initial_state u``; ``o`` for those expected UNKNOWN) so their first result is one;
    the shipped services start OK, and an OK there is proven by status.dat alone.
    """

    host: str
    service: str
    state: str
    check: str | None = None  # compare output/perfdata with the service's /nagios answer
    group: str | None = None
    output_re: re.Pattern[str] | None = None
    alert: bool = True


EXPECT = [
    Expect("esbridge", "rc ok", "OK", "rc-ok"),
    Expect("esbridge", "rc warning", "WARNING", "rc-warning"),
    Expect("esbridge", "rc critical", "CRITICAL", "rc-critical"),
    Expect("esbridge", "rc unknown", "UNKNOWN", "rc-unknown"),
    Expect("esbridge", "rc stale", "UNKNOWN", output_re=nagios_re(STALE_RE)),
    Expect("esbridge", "rc typo", "UNKNOWN", output_re=nagios_re(TYPO_RE)),
    Expect("esbridge", "rc group web-02", "OK", "web-5xx-errors", "host=web-02"),
    Expect("esbridge", "rc critical shebang", "CRITICAL", "rc-critical"),
    # the shipped services.cfg, unchanged
    Expect("esbridge", "web 5xx errors", "WARNING", "web-5xx-errors"),
    Expect("esbridge", "checkout latency p95", "OK", "checkout-latency-p95", alert=False),
    Expect("web-01", "5xx errors", "WARNING", "web-5xx-errors", "host=web-01"),
    Expect("web-02", "5xx errors", "OK", "web-5xx-errors", "host=web-02", alert=False),
]
STATES = {"OK": 0, "WARNING": 1, "CRITICAL": 2, "UNKNOWN": 3}


def alert_re(e: Expect) -> re.Pattern[str]:
    return re.compile(
        rf"SERVICE ALERT: {re.escape(e.host)};{re.escape(e.service)};{e.state};HARD;\d+;(.*)$",
        re.M,
    )


@dataclass
class NagiosRun:
    scenario: Scenario
    folder: Path
    verify: subprocess.CompletedProcess[str]
    status: dict[tuple[str, str], dict[str, str]]
    log: str


def write_config(folder: Path, scenario: Scenario, binary: str) -> Nagios:
    plugin = folder / "plugins" / "check_esbridge"  # $USER1$/check_esbridge (prepare())
    port = str(scenario.service.port)
    shipped = folder / "shipped"
    shipped.mkdir(mode=0o755)
    files = []
    for src in SHIPPED:
        text = src.read_text()
        if src.name == "commands.cfg":  # "change it in these lines": the URL and port only
            text = text.replace(SHIPPED_URL, scenario.url).replace("-p 9108", f"-p {port}")
            assert scenario.url in text and "9108" not in text.split("define", 1)[1]
        files.append(shipped / src.name)
        files[-1].write_text(text)
    own = (
        OBJECTS.replace("@PYTHON@", SYSTEM_PYTHON)
        .replace("@PLUGIN@", str(plugin))
        .replace("@URL@", scenario.url)
    )
    expected = {e.service: e.state for e in EXPECT if e.host == "esbridge"}
    for description, command in TEST_SERVICES:
        initial = "o" if expected[description] == "UNKNOWN" else "u"
        own += (
            "\ndefine service {\n    use                     rc-fast\n"
            "    host_name               esbridge\n"
            f"    service_description     {description}\n"
            f"    check_command           {command}\n"
            f"    initial_state           {initial}\n}}\n"
        )
    settings = [
        "status_update_interval=1",
        "check_result_reaper_frequency=1",
        "max_check_result_reaper_time=5",
        "service_inter_check_delay_method=n",
        "host_inter_check_delay_method=n",
        "max_service_check_spread=1",
        "max_host_check_spread=1",
        "use_retained_program_state=0",
        "enable_flap_detection=0",
        "check_external_commands=0",
        "enable_environment_macros=0",
    ]
    nagios = prepare(folder, own, files, settings, binary)
    assert plugin.is_file()
    (plugin.parent / "check_http").symlink_to("/usr/lib/nagios/plugins/check_http")
    return nagios


def unmet(nagios: Nagios) -> list[str]:
    """The expectations Nagios has not reached yet (all of them before its first status)."""
    status, log = nagios.status(), nagios.log()
    if not status or not log:
        return ["status.dat and nagios.log not written yet"]
    missing = []
    for e in EXPECT:
        fields = status.get((e.host, e.service), {})
        if fields.get("current_state") != str(STATES[e.state]) or fields.get("state_type") != "1":
            missing.append(
                f"{e.host};{e.service}: status {fields.get('current_state')}"
                f"/{fields.get('state_type')}: {fields.get('plugin_output')}"
            )
        elif fields.get("has_been_checked") != "1" or fields.get("last_check", "0") == "0":
            missing.append(f"{e.host};{e.service}: not checked yet")
        elif e.alert and not alert_re(e).search(log):
            missing.append(f"{e.host};{e.service}: no HARD {e.state} alert in the log")
    return missing


@pytest.fixture(scope="module")
def nagios(es_url: str) -> Iterator[NagiosRun]:
    nagios4 = tool("nagios4", NAGIOS4)
    tool("python3", SYSTEM_PYTHON)
    with (
        open_dir("esbridge-nagios-", owner="nagios") as folder,
        running_scenario(es_url, folder) as scenario,
    ):
        server = write_config(folder, scenario, nagios4)
        verify = server.verify()
        assert verify.returncode == 0, verify.stdout + verify.stderr
        server.start(wait=0)
        try:

            def describe() -> str:
                log = server.log()[-8000:]
                return "\n".join(["unmet:", *unmet(server), "--- nagios.log ---", log])

            wait_until(lambda: server.running() and not unmet(server), 90, describe)
            yield NagiosRun(scenario, folder, verify, server.status(), server.log())
        finally:
            assert server.stop(), f"processes of nagios group {server.proc} survived SIGKILL"


def test_nagios_verifies_the_shipped_files_with_the_test_objects(nagios: NagiosRun) -> None:
    out = nagios.verify.stdout
    assert "Total Warnings: 0" in out, out
    assert "Total Errors:   0" in out, out
    # shipped: 3 services on "esbridge" + 2 group services; ours: len(TEST_SERVICES)
    assert f"Checked {5 + len(TEST_SERVICES)} services." in out, out
    assert "Checked 3 hosts." in out, out


@pytest.mark.parametrize("e", EXPECT, ids=lambda e: f"{e.host}/{e.service}")
def test_service_state_output_and_perfdata(nagios: NagiosRun, e: Expect) -> None:
    fields = nagios.status[(e.host, e.service)]
    assert fields["current_state"] == str(STATES[e.state]), fields
    assert fields["state_type"] == "1", fields  # HARD
    assert fields["has_been_checked"] == "1" and int(fields["last_check"]) > 0, fields
    alert = alert_re(e).search(nagios.log)
    assert alert or not e.alert, nagios.log[-3000:]
    if e.output_re is not None:
        assert e.output_re.fullmatch(fields["plugin_output"]), fields["plugin_output"]
        assert fields["performance_data"] == ""
        assert alert and e.output_re.fullmatch(alert.group(1)), alert
        return
    assert e.check is not None
    body = nagios.scenario.body(e.check, e.group)
    text, perf = first_line_parts(body)
    assert fields["plugin_output"] == as_nagios_shows(text)
    long_lines = body.split("\n")[1:]
    if long_lines:  # grouped: long output, the group perfdata after its last '|'
        last_text, _, group_perf = long_lines[-1].partition("|")
        expected_long = as_nagios_shows("\\n".join([*long_lines[:-1], last_text.rstrip()]))
        assert fields["long_plugin_output"] == expected_long
        assert fields["performance_data"] == " ".join(p for p in (perf, group_perf.strip()) if p)
        assert "'web-01'=15c;10;50;0 'web-02'=5c;10;50;0" in fields["performance_data"]
    else:
        assert fields["long_plugin_output"] == ""
        assert fields["performance_data"] == perf
        if STATES[e.state] != 3:
            assert perf, "a counted check carries perfdata"


def test_hosts_are_up_through_the_shipped_host_checks(nagios: NagiosRun) -> None:
    """esbridge: check_http on /healthz; web-01/02: check_esbridge!host-heartbeat!-g host=..."""
    for host in ("esbridge", "web-01", "web-02"):
        fields = nagios.status[(host, "")]
        assert fields["has_been_checked"] == "1" and fields["current_state"] == "0", fields
    heartbeat = nagios.status[("web-01", "")]["plugin_output"]
    assert heartbeat.startswith("OK - web-01: "), heartbeat


def test_nagios_ran_the_plugin_as_the_nagios_user(nagios: NagiosRun) -> None:
    """Started as root, Nagios dropped to ``nagios``: the files it writes belong to nagios
    (root would create them as root), and its workers run the plugin with that identity."""
    for name in ("status.dat", "nagios.log", "objects.cache"):
        assert (nagios.folder / name).owner() == "nagios", name
