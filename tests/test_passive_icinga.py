"""Passive delivery to a real Icinga 2 over HTTPS (CA-verified), and Icinga's own staleness.

Icinga 2 runs in the foreground from a temp folder (every path overridden with ``-D``, as in
test_deploy_files.py), with a CA and server certificate made by ``openssl``, the shipped
deploy/icinga2/passive.conf templates, an ApiUser that may ONLY submit check results (the
shipped api-users.conf) and a separate read-only user the test itself reads with.
"""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import textwrap
import time
import uuid
from pathlib import Path

import httpx
import pytest

from _require import require
from esbridge_dev import httpcalls
from esbridge_dev.icinga import ICINGA2, Icinga2
from esbridge_dev.service import EsbridgeProcess, free_port
from realclients import open_dir

ROOT = Path(__file__).resolve().parents[1]

pytestmark = [pytest.mark.clients, pytest.mark.slow, pytest.mark.version_independent]

CHECKS = """\
defaults:
  index: {index}
  interval: 2s
  timeout: 2s
checks:
  - name: p-ok
    kind: count
    window: 1h
    warning: 10
    critical: 20
  - name: p-warn
    kind: count
    window: 1h
    warning: 2
    critical: 20
  - name: p-crit
    kind: count
    window: 1h
    warning: 1
    critical: 3
"""


def make_certs(folder: Path, cn: str = "localhost") -> Path:
    """A private CA and a server certificate for ``cn`` (+ 127.0.0.1); returns the CA file."""
    require(shutil.which("openssl") is not None, "openssl is not installed")
    folder.mkdir(parents=True, exist_ok=True)

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "2", "-subj", "/CN=esbridge-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{cn}.key", "-out", f"{cn}.csr",
        "-subj", f"/CN={cn}")  # fmt: skip
    (folder / "ext.cnf").write_text(
        f"subjectAltName=DNS:{cn},IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
    )
    openssl("x509", "-req", "-in", f"{cn}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", f"{cn}.crt", "-days", "2", "-extfile", "ext.cnf")  # fmt: skip
    return folder / "ca.crt"


class Icinga:
    """Icinga 2 in the foreground with only the api + checker features, in a temp folder."""

    def __init__(self, folder: Path, objects: str) -> None:
        self.folder = folder
        self.daemon = Icinga2(folder, node="localhost")
        self.state = self.daemon.state
        self.port = free_port()
        self.ca = make_certs(self.state / "certs")
        self.reader = ("test-reader", uuid.uuid4().hex)
        self.password = uuid.uuid4().hex
        api_users = (ROOT / "deploy/icinga2/api-users.conf").read_text()
        assert api_users.count("CHANGE-ME-esbridge-api-password") == 1
        api_users = api_users.replace("CHANGE-ME-esbridge-api-password", self.password)
        (folder / "icinga2.conf").write_text(
            "include <itl>\n"
            f'include "{ROOT}/deploy/icinga2/passive.conf"\n'
            f"{api_users}\n"
            + textwrap.dedent(f"""
            object Endpoint "localhost" {{ }}
            object Zone "master" {{ endpoints = [ "localhost" ] }}
            object ApiListener "api" {{
              bind_host = "127.0.0.1"
              bind_port = {self.port}
              accept_config = false
              accept_commands = false
            }}
            object CheckerComponent "checker" {{ }}
            object ApiUser "{self.reader[0]}" {{
              password = "{self.reader[1]}"
              permissions = [ "objects/query/Service" ]
            }}
            """)
            + objects
        )

    @property
    def url(self) -> str:
        return f"https://localhost:{self.port}"

    def start(self) -> Icinga:
        self.daemon.start(self.folder / "icinga2.conf", log_level="notice")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.daemon.running(), f"icinga2 exited:\n{self.log()[-3000:]}"
            try:
                if self.get("/v1/objects/services").status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise AssertionError(f"icinga2 API did not come up:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.daemon.log()

    def get(self, path: str, **kw: object) -> httpx.Response:
        return httpcalls.get(
            self.url + path,
            auth=self.reader,
            verify=ssl.create_default_context(cafile=str(self.ca)),
            headers={"Accept": "application/json"},
            timeout=10,
            **kw,  # type: ignore[arg-type]
        )

    def services(self) -> dict[str, dict]:
        r = self.get("/v1/objects/services")
        r.raise_for_status()
        return {o["name"]: o["attrs"] for o in r.json()["results"]}

    def stop(self) -> None:
        self.daemon.stop()


SERVICES = """
object Host "esbridge" {
  import "esbridge-passive-host"
}
apply Service for (check in [ "p-ok", "p-warn", "p-crit" ]) {
  import "esbridge-passive-service"
  name = check
  assign where host.name == "esbridge"
}
"""


@pytest.fixture
def icinga():
    require(os.access(ICINGA2, os.X_OK), f"{ICINGA2} is not installed (icinga2-bin)")
    with open_dir("esbridge-icinga-") as folder:
        server = Icinga(folder, SERVICES)
        try:
            yield server.start()
        finally:
            server.stop()


def esbridge_config(folder: Path, icinga: Icinga, **extra: str) -> Path:
    secret = folder / "icinga-password"
    secret.write_text(icinga.password + "\n")
    secret.chmod(0o600)
    lines = [
        "passive:",
        "  - name: icinga",
        "    type: icinga2",
        f"    url: {icinga.url}",
        "    username: esbridge",
        f"    password_file: {secret}",
        f"    ca_certs: {icinga.ca}",
        "    verify: true",
        "    host: esbridge",
        "    service: '{check}'",
        "    timeout: 2s",
        "    backoff: 200ms",
        "    backoff_max: 1s",
        *(f"    {k}: {v}" for k, v in extra.items()),
    ]
    path = folder / "esbridge.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def seeded_checks(folder: Path, make_index, seed) -> Path:
    index = make_index("passive")
    seed(index, [{"ago": "1m", "message": f"m{i}"} for i in range(5)])  # 5 documents
    checks = folder / "checks.yaml"
    checks.write_text(CHECKS.format(index=index))
    return checks


def test_icinga_takes_results_and_turns_stale_by_itself(
    icinga: Icinga, es_url, make_index, seed, tmp_path
):
    checks = seeded_checks(tmp_path, make_index, seed)
    config = esbridge_config(tmp_path, icinga)
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    expected = {"p-ok": 0, "p-warn": 1, "p-crit": 2}
    perfdata = {
        "p-ok": "'count'=5;10;20;0",
        "p-warn": "'count'=5;2;20;0",
        "p-crit": "'count'=5;1;3;0",
    }
    try:
        with EsbridgeProcess(es_url, [checks], config=config, state_index=state_index) as svc:

            def delivered() -> dict[str, dict] | None:
                services = icinga.services()
                got = {n.split("!")[1]: a for n, a in services.items()}
                for name, code in expected.items():
                    cr = got[name].get("last_check_result") or {}
                    if cr.get("check_source", "").split("@")[0] != "esbridge":
                        return None
                    if got[name]["state"] != code:
                        return None
                return got

            got = svc.wait_for(delivered, timeout=60)
            for name, code in expected.items():
                cr = got[name]["last_check_result"]
                state = ["OK", "WARNING", "CRITICAL"][code]
                assert cr["state"] == code  # (Icinga keeps exit_status 0 for API results)
                assert cr["output"].startswith(f"{state} - 5 "), cr["output"]
                assert "|" not in cr["output"]
                assert cr["performance_data"] == [perfdata[name]], cr
                assert cr["ttl"] == pytest.approx(2 * 2 + 2 + 2), cr  # 2 x interval + timeouts
                assert cr["execution_end"] >= cr["execution_start"] > 0
                assert got[name]["state_type"] == 1  # HARD at once: max_check_attempts = 1
            ready = svc.get("/readyz").json()
            [target] = ready["passive"]
            assert target["name"] == "icinga" and target["up"] is True and target["sent"] >= 3
            metrics = svc.get("/metrics").text
            assert 'esbridge_passive_sent_total{target="icinga"}' in metrics
            assert 'esbridge_passive_target_up{target="icinga"} 1.0' in metrics
            stopped_at = time.time()
        # esbridge is gone: Icinga's own freshness (the ttl) turns every service UNKNOWN
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            services = icinga.services()
            if all(a["state"] == 3 for a in services.values()):
                break
            time.sleep(0.5)
        else:
            raise AssertionError(f"services did not go stale: {services}")
        for attrs in services.values():
            cr = attrs["last_check_result"]
            assert "no result from esbridge" in cr["output"], cr
            assert cr["execution_start"] >= stopped_at - 1
    finally:
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)


def test_api_user_may_only_submit_results(icinga: Icinga):
    """The shipped ApiUser cannot read objects: a leaked esbridge secret exposes nothing."""
    r = httpcalls.get(
        icinga.url + "/v1/objects/services",
        auth=("esbridge", icinga.password),
        verify=ssl.create_default_context(cafile=str(icinga.ca)),
        headers={"Accept": "application/json"},
        timeout=10,
    )
    # Icinga answers "No objects found." (404) for objects a user may not see
    assert r.status_code in (403, 404), r.text
    assert len(icinga.services()) == 3  # ... while they are there for the reading user
    r = httpcalls.post(
        icinga.url + "/v1/actions/reschedule-check",
        auth=("esbridge", icinga.password),
        verify=ssl.create_default_context(cafile=str(icinga.ca)),
        headers={"Accept": "application/json"},
        json={"type": "Service", "service": "esbridge!p-ok"},
        timeout=10,
    )
    assert r.status_code in (403, 404), r.text


def test_wrong_password_is_visible_and_never_stalls(
    icinga: Icinga, es_url, make_index, seed, tmp_path
):
    checks = seeded_checks(tmp_path, make_index, seed)
    config = esbridge_config(tmp_path, icinga)
    (tmp_path / "icinga-password").write_text("not-the-password\n")
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    try:
        with EsbridgeProcess(es_url, [checks], config=config, state_index=state_index) as svc:

            def refused() -> dict | None:
                [target] = svc.get("/readyz").json()["passive"]
                return target if target["failed"] >= 3 else None

            target = svc.wait_for(refused, timeout=60)
            assert target["up"] is False and target["sent"] == 0, target
            assert target["last_error"].startswith("unauthorized: "), target
            assert "HTTP 401" in target["last_error"] and "not-the-password" not in str(target)
            assert target["queue_length"] <= 3
            metrics = svc.get("/metrics").text
            assert 'esbridge_passive_failed_total{reason="unauthorized",target="icinga"}' in metrics
            assert 'esbridge_passive_target_up{target="icinga"} 0.0' in metrics
            assert svc.get("/readyz").json()["ready"] is True
        for attrs in icinga.services().values():
            cr = attrs.get("last_check_result") or {}
            assert not cr.get("check_source", "").startswith("esbridge@")
    finally:
        httpcalls.delete(f"{es_url}/{state_index}", timeout=30)


GROUP_CHECKS = """\
defaults:
  index: {index}
  interval: 2s
  timeout: 2s
checks:
  - name: p-group
    kind: count
    window: 1h
    group_by: [host]
    warning: 2
    critical: 3
"""

GROUP_OBJECTS = """
object Host "web-01" { import "esbridge-passive-host" }
object Host "web-02" { import "esbridge-passive-host" }
apply Service "p-group" {
  import "esbridge-passive-service"
  assign where host.name in [ "web-01", "web-02" ]
}
"""


def grouped_checks(folder: Path, make_index, seed) -> Path:
    """web-01: 4 documents (CRITICAL above 3), web-02: 1 (OK)."""
    index = make_index("passive-groups", mappings={"properties": {"host": {"type": "keyword"}}})
    seed(index, [{"ago": "1m", "host": "web-01"}] * 4 + [{"ago": "1m", "host": "web-02"}])
    checks = folder / "checks.yaml"
    checks.write_text(GROUP_CHECKS.format(index=index))
    return checks


def test_icinga_gets_one_service_per_group(es_url, make_index, seed, tmp_path):
    """groups: {host: '{group[host]}'}, send_overall: false → web-01!p-group, web-02!p-group."""
    require(os.access(ICINGA2, os.X_OK), f"{ICINGA2} is not installed (icinga2-bin)")
    checks = grouped_checks(tmp_path, make_index, seed)
    state_index = f"esbridge-state-passive-{uuid.uuid4().hex[:8]}"
    with open_dir("esbridge-icinga-") as folder:
        icinga = Icinga(folder, GROUP_OBJECTS).start()
        try:
            config = esbridge_config(
                tmp_path,
                icinga,
                send_overall="false",
                groups="{host: '{group[host]}', service: '{check}'}",
            )
            with EsbridgeProcess(es_url, [checks], config=config, state_index=state_index) as svc:

                def delivered() -> dict[str, dict] | None:
                    got = icinga.services()
                    for name in ("web-01!p-group", "web-02!p-group"):
                        cr = got[name].get("last_check_result") or {}
                        if cr.get("check_source", "").split("@")[0] != "esbridge":
                            return None
                    return got

                got = svc.wait_for(delivered, timeout=60)
                [target] = svc.get("/readyz").json()["passive"]
            web1 = got["web-01!p-group"]["last_check_result"]
            web2 = got["web-02!p-group"]["last_check_result"]
            assert got["web-01!p-group"]["state"] == 2 and web1["state"] == 2, web1
            assert got["web-02!p-group"]["state"] == 0 and web2["state"] == 0, web2
            assert web1["output"].startswith("CRITICAL - ") and "4" in web1["output"], web1
            assert web2["output"].startswith("OK - ") and "1" in web2["output"], web2
            # each service carries its own group's perfdata only
            assert all("web-01" in p for p in web1["performance_data"]), web1
            assert all("web-02" in p for p in web2["performance_data"]), web2
            # nothing else was submitted (no overall service, which Icinga would refuse)
            assert target["up"] is True and target["failed"] == 0, target
        finally:
            icinga.stop()
            httpcalls.delete(f"{es_url}/{state_index}", timeout=30)
