"""Real Icinga 2 runs the SHIPPED CheckCommand "esbridge" against the real service.

``icinga2 daemon`` runs in the foreground with every path under a temp folder (``-D``
constants, as tests/test_deploy_files.py validates it) and includes
``deploy/icinga2/commands.conf`` unchanged. Hosts and services follow the shipped
``services.conf`` (a host dictionary of checks + ``apply Service for``, and a per-host group
``apply Service`` over a host group), with ``check_interval = 2s``. ``PluginDir`` is a folder
holding the copied plugin, run by its shebang as the CheckCommand does.

The service requires a token for reads here, so the shipped ``env`` passing of
``esbridge_token`` is proven too. Results are read through Icinga's REST API
(ApiListener on loopback with a self-signed certificate from ``icinga2 pki new-cert``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from esbridge_dev import httpcalls
from esbridge_dev.icinga import ICINGA2, Icinga2
from esbridge_dev.nagios import install_plugin
from esbridge_dev.service import free_port
from realclients import (
    DEPLOY,
    STALE_RE,
    TYPO_RE,
    Scenario,
    first_line_parts,
    open_dir,
    running_scenario,
    tool,
    wait_until,
)

pytestmark = [pytest.mark.clients, pytest.mark.es, pytest.mark.version_independent]

NODE = "esbridge-icinga-test"

CONFIG = """\
include <itl>
const PluginDir = "@PLUGINDIR@"
include "@COMMANDS@"

object CheckerComponent "checker" { }

object Endpoint NodeName { }
object Zone ZoneName { endpoints = [ NodeName ] }

object ApiListener "api" {
  bind_host = "127.0.0.1"
  bind_port = @APIPORT@
  accept_config = false
  accept_commands = false
}

object ApiUser "rc" {
  password = "@APIPASSWORD@"
  permissions = [ "objects/query/*" ]
}

template Service "esbridge-service" {
  check_command = "esbridge"
  check_interval = 2s
  retry_interval = 1s
  max_check_attempts = 1
}

object Host "esbridge" {
  check_command = "dummy"
  address = "127.0.0.1"
  vars.esbridge_url = "@URL@"
  vars.esbridge_token = "@TOKEN@"
  vars.esbridge_checks = {
    "rc-ok" = {}
    "rc-warning" = {}
    "rc-critical" = {}
    "rc-unknown" = {}
    "rc-stale" = { esbridge_max_age = 1 }
    "rc-critcal" = {}
    "web-5xx-errors" = {}
  }
}

apply Service for (check_name => config in host.vars.esbridge_checks) {
  import "esbridge-service"
  display_name = check_name
  vars += config
  vars.esbridge_check = check_name
  assign where typeof(host.vars.esbridge_checks) == Dictionary
}

object HostGroup "web-servers" {
  assign where host.vars.role == "web"
}

object Host "web-01" {
  check_command = "dummy"
  vars.role = "web"
  vars.esbridge_url = "@URL@"
  vars.esbridge_token = "@TOKEN@"
}

object Host "web-02" {
  check_command = "dummy"
  vars.role = "web"
  vars.esbridge_url = "@URL@"
  vars.esbridge_token = "@TOKEN@"
}

apply Service "web-5xx-errors" {
  import "esbridge-service"
  vars.esbridge_check = "web-5xx-errors"
  vars.esbridge_group = "host=" + host.name
  assign where "web-servers" in host.groups
}
"""


@dataclass(frozen=True)
class Expect:
    host: str
    service: str
    state: int
    check: str | None = None
    group: str | None = None
    output_re: re.Pattern[str] | None = None


EXPECT = [
    Expect("esbridge", "rc-ok", 0, "rc-ok"),
    Expect("esbridge", "rc-warning", 1, "rc-warning"),
    Expect("esbridge", "rc-critical", 2, "rc-critical"),
    Expect("esbridge", "rc-unknown", 3, "rc-unknown"),
    Expect("esbridge", "rc-stale", 3, output_re=STALE_RE),
    Expect("esbridge", "rc-critcal", 3, output_re=TYPO_RE),
    Expect("esbridge", "web-5xx-errors", 1, "web-5xx-errors"),
    Expect("web-01", "web-5xx-errors", 1, "web-5xx-errors", "host=web-01"),
    Expect("web-02", "web-5xx-errors", 0, "web-5xx-errors", "host=web-02"),
]


def icinga_form(perfdata: str) -> list[str]:
    """Icinga 2 stores perfdata as a list and drops the quotes a label without spaces has."""
    return [re.sub(r"^'([^' =]+)'=", r"\1=", item) for item in perfdata.split()]


@dataclass
class IcingaRun:
    scenario: Scenario
    services: dict[tuple[str, str], dict[str, Any]]


def write_config(folder: Path, scenario: Scenario, api_port: int, password: str) -> Path:
    plugins = folder / "plugins"
    plugins.mkdir(mode=0o755)
    install_plugin(plugins)
    assert scenario.token
    text = (
        CONFIG.replace("@PLUGINDIR@", str(plugins))
        .replace("@COMMANDS@", str(DEPLOY / "icinga2" / "commands.conf"))
        .replace("@APIPORT@", str(api_port))
        .replace("@APIPASSWORD@", password)
        .replace("@URL@", scenario.url)
        .replace("@TOKEN@", scenario.token)
    )
    config = folder / "icinga2.conf"
    config.write_text(text)
    return config


def fetch_services(api: str, password: str) -> dict[tuple[str, str], dict[str, Any]]:
    r = httpcalls.get(
        f"{api}/v1/objects/services",
        params=[("attrs", a) for a in ("host_name", "name", "state", "state_type")]
        + [("attrs", "last_check_result")],
        auth=("rc", password),
        verify=False,
        timeout=10,
    )
    r.raise_for_status()
    return {
        (item["attrs"]["host_name"], item["attrs"]["name"]): item["attrs"]
        for item in r.json()["results"]
    }


def unmet(services: dict[tuple[str, str], dict[str, Any]]) -> list[str]:
    missing = []
    for e in EXPECT:
        attrs = services.get((e.host, e.service))
        if attrs is None:
            missing.append(f"{e.host}!{e.service}: no such service")
        elif attrs["last_check_result"] is None:
            missing.append(f"{e.host}!{e.service}: not checked yet")
        elif attrs["state"] != e.state or attrs["state_type"] != 1:
            output = attrs["last_check_result"]["output"]
            missing.append(f"{e.host}!{e.service}: {attrs['state']}/{attrs['state_type']} {output}")
    return missing


@pytest.fixture(scope="module")
def icinga(es_url: str) -> Iterator[IcingaRun]:
    binary = tool("icinga2", ICINGA2)
    token = "rc-" + os.urandom(8).hex()
    password = os.urandom(8).hex()
    with (
        open_dir("esbridge-icinga-") as folder,
        running_scenario(es_url, folder, token=token) as scenario,
    ):
        icinga2 = Icinga2(folder, binary, node=NODE)
        certs = icinga2.state / "certs"
        certs.mkdir()
        pki = icinga2.run(
            *("pki", "new-cert", "--cn", NODE),
            *("--key", str(certs / f"{NODE}.key"), "--cert", str(certs / f"{NODE}.crt")),
            timeout=60,
        )
        assert pki.returncode == 0, pki.stdout + pki.stderr
        (certs / "ca.crt").write_bytes((certs / f"{NODE}.crt").read_bytes())  # self-signed
        api_port = free_port()
        config = write_config(folder, scenario, api_port, password)
        check = icinga2.validate(config)
        assert check.returncode == 0, check.stdout + check.stderr
        icinga2.start(config)
        api = f"https://127.0.0.1:{api_port}"
        last: dict[tuple[str, str], dict[str, Any]] = {}
        try:

            def poll() -> bool:
                nonlocal last
                assert icinga2.running(), icinga2.log()[-4000:]
                try:
                    last = fetch_services(api, password)
                except httpx.HTTPError:
                    return False
                return not unmet(last)

            def describe() -> str:
                text = icinga2.log()[-4000:]
                return "\n".join(["unmet:", *unmet(last), "--- icinga2 ---", text])

            wait_until(poll, 120, describe)
            yield IcingaRun(scenario, last)
        finally:
            assert icinga2.stop(), f"processes of icinga2 group {icinga2.proc} survived SIGKILL"


def test_icinga_created_the_services_from_the_apply_rules(icinga: IcingaRun) -> None:
    # 7 from the host dictionary on "esbridge" + the group service on web-01 and web-02
    assert sorted(icinga.services) == sorted((e.host, e.service) for e in EXPECT)


@pytest.mark.parametrize("e", EXPECT, ids=lambda e: f"{e.host}!{e.service}")
def test_service_state_output_and_perfdata(icinga: IcingaRun, e: Expect) -> None:
    attrs = icinga.services[(e.host, e.service)]
    result = attrs["last_check_result"]
    assert attrs["state"] == e.state and attrs["state_type"] == 1, attrs
    assert result["exit_status"] == e.state, result
    output: str = result["output"]
    perfdata: list[str] = result["performance_data"] or []
    if e.output_re is not None:
        assert e.output_re.fullmatch(output), output
        assert perfdata == []
        return
    assert e.check is not None
    body = icinga.scenario.body(e.check, e.group)
    _, perf = first_line_parts(body)
    lines = body.split("\n")
    # Icinga keeps the output up to the '|' as it is (the space before '|' included)
    text = lines[0].partition("|")[0]
    if len(lines) > 1:  # grouped: long output kept, group perfdata after the last '|'
        last_text, _, group_perf = lines[-1].partition("|")
        assert output == "\n".join([text, *lines[1:-1], last_text])
        assert perfdata == icinga_form(group_perf)
        assert perfdata == ["web-01=15c;10;50;0", "web-02=5c;10;50;0"]
    else:
        assert output == text
        assert perfdata == icinga_form(perf)
        if e.state != 3:
            assert perfdata, "a counted check carries perfdata"
