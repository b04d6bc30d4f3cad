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
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from realclients import (
    DEPLOY,
    SHIPPED_URL,
    STALE_RE,
    SYSTEM_PYTHON,
    TYPO_RE,
    Scenario,
    first_line_parts,
    install_plugin,
    open_dir,
    running_scenario,
    start_group,
    stop_group,
    tool,
    wait_until,
)

pytestmark = [pytest.mark.clients, pytest.mark.es]

SHIPPED = sorted((DEPLOY / "nagios").glob("*.cfg"))

OBJECTS = """\
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


def parse_status(text: str) -> dict[tuple[str, str], dict[str, str]]:
    """status.dat -> {(host, service): fields}; host blocks under (host, "")."""
    out: dict[tuple[str, str], dict[str, str]] = {}
    for kind, body in re.findall(r"^(servicestatus|hoststatus) \{\n(.*?)\n\t\}", text, re.M | re.S):
        fields = dict(line.strip().split("=", 1) for line in body.splitlines() if "=" in line)
        key = (fields["host_name"], fields.get("service_description", "") if kind[0] == "s" else "")
        out[key] = fields
    return out


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


def write_config(folder: Path, scenario: Scenario) -> Path:
    plugins = folder / "plugins"
    plugins.mkdir(mode=0o755)
    plugin = install_plugin(plugins)  # $USER1$/check_esbridge of the shipped commands
    (plugins / "check_http").symlink_to("/usr/lib/nagios/plugins/check_http")
    port = str(scenario.service.port)
    objects = folder / "objects"
    objects.mkdir(mode=0o755)
    files = []
    for src in SHIPPED:
        text = src.read_text()
        if src.name == "commands.cfg":  # "change it in these lines": the URL and port only
            text = text.replace(SHIPPED_URL, scenario.url).replace("-p 9108", f"-p {port}")
            assert scenario.url in text and "9108" not in text.split("define", 1)[1]
        files.append(objects / src.name)
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
    files.append(objects / "rc-test.cfg")
    files[-1].write_text(own)
    (folder / "resource.cfg").write_text(f"$USER1$={plugins}\n")
    for sub in ("checkresults", "tmp"):
        (folder / sub).mkdir(mode=0o755)
    d = folder
    main = [
        f"log_file={d}/nagios.log",
        *(f"cfg_file={f}" for f in files),
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
        "status_update_interval=1",
        "check_result_reaper_frequency=1",
        "max_check_result_reaper_time=5",
        "service_inter_check_delay_method=n",
        "host_inter_check_delay_method=n",
        "max_service_check_spread=1",
        "max_host_check_spread=1",
        "retain_state_information=0",
        "use_retained_program_state=0",
        "use_syslog=0",
        "enable_notifications=0",
        "enable_flap_detection=0",
        "check_external_commands=0",
        "enable_environment_macros=0",
        "illegal_macro_output_chars=`~$&|'\"<>",
    ]
    (d / "nagios.cfg").write_text("\n".join(main) + "\n")
    for path in [d, *d.rglob("*")]:
        if not path.is_symlink():
            path.chmod(0o755 if path.is_dir() or path == plugin else 0o644)
            shutil.chown(path, "nagios", "nagios")
    return d / "nagios.cfg"


def unmet(run_dir: Path) -> list[str]:
    """The expectations Nagios has not reached yet (all of them before its first status)."""
    status_file, log_file = run_dir / "status.dat", run_dir / "nagios.log"
    if not status_file.exists() or not log_file.exists():
        return ["status.dat and nagios.log not written yet"]
    status = parse_status(status_file.read_text(errors="replace"))
    log = log_file.read_text(errors="replace")
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
    nagios4 = tool("nagios4", "/usr/sbin/nagios4")
    tool("python3", SYSTEM_PYTHON)
    with (
        open_dir("esbridge-nagios-", owner="nagios") as folder,
        running_scenario(es_url, folder) as scenario,
    ):
        config = write_config(folder, scenario)
        verify = subprocess.run(
            [nagios4, "-v", str(config)], capture_output=True, text=True, timeout=60
        )
        assert verify.returncode == 0, verify.stdout + verify.stderr
        proc = start_group([nagios4, str(config)], folder / "nagios.stdout")
        try:

            def describe() -> str:
                log = (folder / "nagios.log").read_text(errors="replace")
                return "\n".join(["unmet:", *unmet(folder), "--- nagios.log ---", log[-8000:]])

            wait_until(lambda: proc.poll() is None and not unmet(folder), 90, describe)
            status = parse_status((folder / "status.dat").read_text())
            log = (folder / "nagios.log").read_text()
            yield NagiosRun(scenario, folder, verify, status, log)
        finally:
            stop_group(proc)


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
