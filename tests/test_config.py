"""Service configuration: file + environment + overrides, errors, secrets, references; CLI."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from esbridge import __version__
from esbridge.cli import main
from esbridge.config import (
    ConfigError,
    ConnectionConfig,
    Settings,
    load_settings,
    validate_references,
)
from esbridge.loader import load_text

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    import os

    for key in list(os.environ):
        if key.startswith("ESBRIDGE_"):
            monkeypatch.delenv(key)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults():
    settings = load_settings(None)
    assert isinstance(settings, Settings)
    assert (settings.host, settings.port, settings.checks) == ("127.0.0.1", 9108, ("checks",))
    conn = settings.elasticsearch["default"]
    assert conn.urls == ("http://127.0.0.1:9200",)
    assert conn.request_timeout == timedelta(seconds=10)
    assert (conn.max_retries, conn.max_searches_per_request, conn.max_in_flight) == (2, 200, 4)
    assert settings.state.index == "esbridge-state" and settings.state.history == 50
    assert settings.defaults.interval == timedelta(seconds=60)
    assert settings.defaults.staleness_factor == 2.0
    assert settings.log.format == "text" and settings.passive == []


def test_sample_config_loads():
    settings = load_settings(ROOT / "config" / "esbridge.yaml")
    assert Path(settings.checks[0]).resolve() == (ROOT / "checks").resolve()


def test_precedence_file_env_overrides(tmp_path, monkeypatch):
    path = write(
        tmp_path / "c.yaml",
        "port: 9000\nhost: 0.0.0.0\nstate: {history: 5, index: st}\n"
        "elasticsearch:\n  default:\n    urls: [http://es:9200]\n",
    )
    monkeypatch.setenv("ESBRIDGE_PORT", "9001")
    monkeypatch.setenv("ESBRIDGE_STATE__HISTORY", "7")
    monkeypatch.setenv("ESBRIDGE_ELASTICSEARCH__DEFAULT__MAX_RETRIES", "5")
    settings = load_settings(path, host="10.0.0.1")
    assert settings.port == 9001  # env beats file
    assert settings.host == "10.0.0.1"  # override beats all
    assert (settings.state.history, settings.state.index) == (7, "st")  # nested merge
    conn = settings.elasticsearch["default"]
    assert conn.urls == ("http://es:9200",) and conn.max_retries == 5


def test_env_lists(monkeypatch):
    monkeypatch.setenv("ESBRIDGE_CHECKS", "a,b")
    monkeypatch.setenv("ESBRIDGE_ELASTICSEARCH__DEFAULT__URLS", '["https://x:9200"]')
    settings = load_settings(None)
    assert settings.checks == ("a", "b")
    assert settings.elasticsearch["default"].urls == ("https://x:9200",)


def test_relative_paths_resolve_against_config_folder(tmp_path):
    (tmp_path / "conf").mkdir()
    write(tmp_path / "conf" / "pw", "  s3cret\n")
    path = write(
        tmp_path / "conf" / "c.yaml",
        "checks: [../checks, /abs/checks]\n"
        "elasticsearch:\n  default:\n    username: u\n    password_file: pw\n",
    )
    settings = load_settings(path)
    assert settings.checks == (str(tmp_path / "conf" / "../checks"), "/abs/checks")
    assert settings.elasticsearch["default"].resolved_password() == "s3cret"


def test_secrets_never_print(tmp_path):
    settings = load_settings(
        None,
        elasticsearch={"default": {"username": "u", "password": "hunter2"}},
        api={"token": "tok-123"},
    )
    assert "hunter2" not in repr(settings) and "tok-123" not in repr(settings)
    assert "hunter2" not in settings.model_dump_json()
    assert settings.elasticsearch["default"].resolved_password() == "hunter2"
    assert settings.api.resolved_token() == "tok-123"


def test_secret_file_unreadable_names_file(tmp_path):
    conn = ConnectionConfig(api_key_file=tmp_path / "nope")
    with pytest.raises(ConfigError, match=f"cannot read api_key_file {tmp_path / 'nope'}"):
        conn.resolved_api_key()
    assert ConnectionConfig().resolved_password() is None


def test_errors_name_file_field_line(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        "port: 9108\nstate:\n  histroy: 3\nelasticsearch:\n  default:\n    urls: [ftp://x]\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    lines = str(info.value).splitlines()
    assert f"{path}:3: field 'state.histroy': unknown setting; did you mean 'history'?" in lines
    assert any(
        line.startswith(f"{path}:6: field 'elasticsearch.default.urls'") and "ftp://x" in line
        for line in lines
    )


def test_env_error_names_variable(monkeypatch):
    monkeypatch.setenv("ESBRIDGE_PORT", "abc")
    with pytest.raises(ConfigError, match="environment ESBRIDGE_PORT: field 'port'"):
        load_settings(None)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("port: [1\n", "invalid YAML"),
        ("- a\n", "expected a mapping"),
        ("state: {connection: other}\n", "state.connection 'other' is not a connection"),
        ("defaults: {interval: 10s, timeout: 20s}\n", "at most the interval"),
        ("defaults: {staleness_factor: 1}\n", "greater than 1"),
        ("log: {level: loud}\n", "unknown log level"),
        ("elasticsearch: {default: {password: x}}\n", "a password needs a username"),
        ("elasticsearch: {default: {api_key: a, api_key_file: b}}\n", "not both"),
        ("api: {require_token_for_reads: true}\n", "needs token or token_file"),
        ("cluster: {heartbeat: 5s, lease: 10s}\n", "more than twice cluster.heartbeat"),
        ("state: {rewrite_after: 30s}\n", "state.rewrite_after must be at least 1m"),
        ("cluster: {enabled: true}\nstate: {enabled: false}\n", "cluster.enabled needs state"),
    ],
)
def test_invalid_settings(tmp_path, text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        load_settings(write(tmp_path / "c.yaml", text))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "nope.yaml")


def test_validate_references():
    settings = load_settings(None)
    checks = load_text(
        "checks:\n  - {name: a, kind: cluster_health}\n"
        "  - {name: b, kind: cluster_health, cluster: logging}\n",
        "f.yaml",
    )
    (issue,) = validate_references(settings, checks)
    assert str(issue) == (
        "f.yaml:3: check 'b': field 'cluster': no elasticsearch connection named 'logging' "
        "in the configuration (have: default)"
    )


def test_a_master_check_never_sends_https_credentials_over_plain_http():
    secured = load_settings(
        None,
        elasticsearch={
            "default": {"urls": ["https://es1:9200"], "username": "u", "password": "pw"},
            "open": {"urls": ["https://es9:9200"]},
        },
    )
    checks = load_text(
        "checks:\n  - {name: m, kind: master, node_urls: ['https://es1:9200', 'http://es2:9200']}\n"
        "  - {name: n, kind: master, cluster: open, node_urls: ['http://es9:9200']}\n",
        "f.yaml",
    )
    (issue,) = validate_references(secured, checks)
    assert str(issue) == (
        "f.yaml:2: check 'm': field 'node_urls': 'http://es2:9200' is plain http, but "
        "connection 'default' sends credentials over https only: use https:// (the node is "
        "asked with those credentials)"
    )
    assert "pw" not in str(issue)
    plain = load_settings(None)  # http://localhost:9200, no credentials: nothing to protect
    assert validate_references(plain, [checks.get("m")]) == []


# --- CLI ------------------------------------------------------------------------------------


def test_cli_validate_samples(capsys):
    assert main(["validate", str(ROOT / "checks")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK: ") and "checks in 3 files" in out


def test_cli_validate_with_config(capsys):
    assert main(["validate", "--config", str(ROOT / "config" / "esbridge.yaml")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("OK: config") and out[1].startswith("OK: ")


def test_cli_validate_reference_error(tmp_path, capsys):
    write(tmp_path / "c.yaml", "checks: [checks.yaml]\n")
    write(tmp_path / "checks.yaml", "checks:\n  - {name: a, kind: master, cluster: nope}\n")
    assert main(["validate", "--config", str(tmp_path / "c.yaml")]) == 1
    assert "no elasticsearch connection named 'nope'" in capsys.readouterr().out


def test_cli_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert set(schema["properties"]) == {"defaults", "checks"}
    assert main(["schema", "--kind", "freshness"]) == 0
    one = json.loads(capsys.readouterr().out)
    assert one["properties"]["checks"]["items"]["title"] == "FreshnessCheck"


def test_cli_version_and_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"esbridge {__version__}"
    assert main([]) == 2


def test_python_dash_m():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "esbridge", "validate", str(ROOT / "checks")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("OK: ")


def test_wrong_type_errors_show_the_value_but_never_a_secret(tmp_path):
    """Config errors use the check files' sentences ("..., got <value>"), except for secrets."""
    path = write(
        tmp_path / "c.yaml",
        "port: abc\napi: {token: 987654321}\n"
        "elasticsearch: {default: {username: u, password: 123454321}}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}:1: field 'port': should be a valid integer" in text and "got 'abc'" in text
    assert f"{path}:2: field 'api.token': should be a valid string" in text
    assert f"{path}:3: field 'elasticsearch.default.password': should be a valid string" in text
    assert "987654321" not in text and "123454321" not in text


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("https://elastic:Sup3rS3cret@es1:9200", "'https://***@es1:9200' has credentials in it"),
        ("htps://elastic:Sup3rS3cret@es1:9200", "'htps://***@es1:9200' is not an http://"),
        ("http://es1", "names no port"),
        ("http://:9200", "names no host"),
        ("http://es1:92x0", "has an invalid port"),
    ],
)
def test_a_node_url_is_checked_and_never_shows_its_credentials(tmp_path, url, fragment):
    """A password in a URL would be printed wherever the URL is (errors, the master check's
    results): refused, and the refusal itself shows ``***`` in its place."""
    path = write(tmp_path / "c.yaml", f"elasticsearch:\n  default:\n    urls: ['{url}']\n")
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}:3: field 'elasticsearch.default.urls'" in text and fragment in text
    assert "Sup3rS3cret" not in text


def test_a_duplicate_key_names_the_key_never_its_values(tmp_path):
    path = write(
        tmp_path / "c.yaml",
        "elasticsearch:\n  default:\n    username: u\n"
        "    password: Hunter2-old\n    password: Hunter2-new\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f'{path}:5: invalid YAML: found duplicate key "password"' in text
    assert "Hunter2" not in text


def test_the_address_a_replica_gives_out_is_never_a_wildcard(monkeypatch):
    """owner_url ("run it there"): http://0.0.0.0:9108 would send the caller to itself."""
    import socket

    from esbridge.membership import default_advertise_url

    monkeypatch.setenv("POD_IP", "10.1.2.3")
    assert default_advertise_url("0.0.0.0", 9108) == "http://10.1.2.3:9108"
    assert default_advertise_url("::", 9108) == "http://10.1.2.3:9108"
    assert default_advertise_url("127.0.0.1", 9108) == "http://127.0.0.1:9108"
    assert default_advertise_url("fd00::5", 9108) == "http://[fd00::5]:9108"
    monkeypatch.delenv("POD_IP")
    assert default_advertise_url("0.0.0.0", 9108) == f"http://{socket.getfqdn()}:9108"
    settings = load_settings(None, cluster={"advertise_url": "http://esbridge-a.example.org:9108/"})
    assert settings.cluster.advertise_url == "http://esbridge-a.example.org:9108"
    with pytest.raises(ConfigError, match=r"cluster.advertise_url.*has credentials in it"):
        load_settings(None, cluster={"advertise_url": "http://u:pw@esbridge-a:9108"})


def test_a_passive_target_never_shows_its_password_and_its_problems_name_file_and_line(
    tmp_path, monkeypatch
):
    """An Icinga 2 URL with ``user:password@`` is refused (httpx printed it on every
    delivery); the password from the file or the environment is redacted from every log
    line; a target's problem names the file and line, not ``<config>``."""
    import logging

    from esbridge.logs import RedactSecrets
    from esbridge.serve import secrets_of

    path = write(
        tmp_path / "c.yaml",
        "passive:\n"
        "  - {name: i, type: icinga2, url: 'https://esb:IcingaPw-42@i:5665', username: esb,"
        " password_env: PW}\n",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(path)
    text = str(info.value)
    assert f"{path}:2: field 'passive.0.icinga2.url'" in text, text
    assert "has credentials in it" in text and "***@i:5665" in text
    assert "IcingaPw-42" not in text

    path = write(
        tmp_path / "c.yaml",
        "elasticsearch:\n  default:\n    urls: ['http://127.0.0.1:9200']\n"
        "passive:\n"
        "  - name: i\n    type: icinga2\n    url: 'https://i:5665'\n    username: esb\n"
        "    password_env: PW\n",
    )
    monkeypatch.delenv("PW", raising=False)
    settings = load_settings(path)
    checks = load_text("checks:\n  - {name: c, kind: count, index: x, critical: 1}\n")
    problems = [str(p) for p in validate_references(settings, checks)]
    assert problems == [
        f"{path}:9: field 'passive.0.password_env': passive target 'i': $PW is not set"
    ], problems
    monkeypatch.setenv("PW", "IcingaPw-42")
    record = logging.LogRecord("httpx", logging.WARNING, __file__, 1, "%s", ("x",), None)
    record.msg, record.args = "POST https://esb:%s@i:5665/v1/actions", ("IcingaPw-42",)
    assert RedactSecrets(secrets_of(settings)).filter(record)
    assert "IcingaPw-42" not in record.getMessage()
