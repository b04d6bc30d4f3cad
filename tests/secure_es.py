"""A secured single-node Elasticsearch for the security tests: TLS on HTTP, users, roles.

Everything is made here, nothing is downloaded: a CA and a node certificate are generated
with ``cryptography`` (SAN 127.0.0.1/localhost); the ``elastic`` password is the keystore's
``bootstrap.password`` and the other users live in the file realm, both made with the
distribution's own tools (``elasticsearch-keystore``, ``elasticsearch-users``) in a scratch
config folder and handed to :class:`ElasticsearchServer` as config files; roles come from
``roles.yml``.

Why not native users and API keys: the integ-test-zip distribution has no analysis-common
module, and the ``.security`` system index that stores native users, roles and API keys
cannot be created without it ("Unknown filter type [pattern_capture]"). ``try_api_key``
returns None there; a read-only API key is therefore not proven by this suite
(docs/security.md).

Helpers talk to the cluster as ``elastic`` over HTTPS with the generated CA, so they prove
the CA bundle works before esbridge ever uses it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import json
import os
import secrets
import shutil
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from esbridge_dev import elasticsearch as esdev
from esbridge_dev import httpcalls


@dataclass
class Pki:
    """PEM bytes of a throwaway CA and a node certificate signed by it."""

    ca_cert: bytes
    node_cert: bytes
    node_key: bytes


def make_pki(common_name: str = "esbridge-test-node") -> Pki:
    """CA + node certificate valid for 127.0.0.1 and localhost, for one day."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "esbridge test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    node_key = ec.generate_private_key(ec.SECP256R1())
    node_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_name)
        .public_key(node_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return Pki(
        ca_cert=ca_cert.public_bytes(pem),
        node_cert=node_cert.public_bytes(pem),
        node_key=node_key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def make_security_files(
    version: str, bootstrap_password: str, users: list[tuple[str, str, list[str]]]
) -> dict[str, bytes]:
    """``elasticsearch.keystore`` (``bootstrap.password``) and file-realm ``users`` /
    ``users_roles``, made by the distribution's own tools in a scratch config folder.

    The integ-test-zip lacks the analysis-common module that the ``.security`` system index
    needs, so native users, native roles and API keys cannot be stored on it: users come
    from the file realm, roles from ``roles.yml``.
    """
    home = esdev.fetch(version)
    java = esdev.find_java(esdev.required_java_major(version))
    scratch = Path(tempfile.mkdtemp(prefix="esbridge-secfiles-"))
    conf = scratch / "config"
    try:
        shutil.copytree(home / "config", conf)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": str(java),
            "ES_PATH_CONF": str(conf),
            "HOME": str(scratch),
            "LANG": "C.UTF-8",
        }

        def tool(name: str, *args: str, stdin: bytes | None = None) -> None:
            subprocess.run(
                [str(home / "bin" / name), *args],
                input=stdin,
                env=env,
                check=True,
                capture_output=True,
                timeout=120,
            )

        tool("elasticsearch-keystore", "create")
        tool(
            "elasticsearch-keystore",
            "add",
            "-x",
            "-f",
            "bootstrap.password",
            stdin=bootstrap_password.encode(),
        )
        for name, password, roles in users:
            tool("elasticsearch-users", "useradd", name, "-p", password, "-r", ",".join(roles))
        files = {"elasticsearch.keystore": (conf / "elasticsearch.keystore").read_bytes()}
        for name in ("users", "users_roles"):
            files[name] = (conf / name).read_bytes() if users else b""
        return files
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class SecureES:
    """A running secured cluster plus what the tests need to talk to it."""

    server: esdev.ElasticsearchServer
    password: str
    ca_path: Path
    workdir: Path

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, auth: tuple[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTPS client verifying against the generated CA (as ``elastic`` by default)."""
        return httpcalls.client(
            base_url=self.url,
            auth=auth or ("elastic", self.password),
            verify=ssl.create_default_context(cafile=str(self.ca_path)),
            timeout=30.0,
            **kwargs,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.request(method, path, **kwargs)

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def roles_yaml(roles: dict[str, Any]) -> str:
    """``roles.yml`` text. Elasticsearch splits that file by top-level lines, so each role
    must be block YAML starting at column 0 (a JSON document is not accepted)."""
    out = []
    for name, role in roles.items():
        out.append(f"{name}:")
        out.append(f"  cluster: {json.dumps(role.get('cluster', []))}")
        indices = role.get("indices", [])
        if not indices:
            out.append("  indices: []")
        else:
            out.append("  indices:")
            for entry in indices:
                out.append(f"    - names: {json.dumps(entry['names'])}")
                out.append(f"      privileges: {json.dumps(entry['privileges'])}")
    return "\n".join(out) + "\n"


def start_secure_es(
    version: str | None = None,
    users: list[tuple[str, str, list[str]]] | None = None,
    roles: dict[str, Any] | None = None,
) -> SecureES:
    """Start Elasticsearch with security + HTTPS on; the caller stops it.

    ``users`` (name, password, roles) go to the file realm, ``roles`` to ``roles.yml``.
    """
    version = esdev.resolve_version(version)
    password = "es-" + secrets.token_urlsafe(18)
    pki = make_pki()
    workdir = Path(tempfile.mkdtemp(prefix="esbridge-secure-"))
    workdir.chmod(0o755)
    ca_path = workdir / "ca.crt"
    ca_path.write_bytes(pki.ca_cert)
    files: dict[str, str | bytes] = {
        "certs/ca.crt": pki.ca_cert,
        "certs/node.crt": pki.node_cert,
        "certs/node.key": pki.node_key,
        "roles.yml": roles_yaml(roles or {}),
        **make_security_files(version, password, users or []),
        **esdev.QUICK_JIT,
    }
    server = esdev.ElasticsearchServer(
        version=version,
        scheme="https",
        settings={
            "xpack.security.enabled": True,
            "xpack.security.http.ssl.enabled": True,
            "xpack.security.http.ssl.key": "certs/node.key",
            "xpack.security.http.ssl.certificate": "certs/node.crt",
            "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
            "xpack.security.transport.ssl.enabled": False,
        },
        config_files=files,
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    secure = SecureES(server=server, password=password, ca_path=ca_path, workdir=workdir)
    # Yellow (not merely "answers 401") before tests create indices.
    with secure.client() as c:
        r = c.get("/_cluster/health", params={"wait_for_status": "yellow", "timeout": "60s"})
        assert r.status_code == 200, r.text
    return secure


# --------------------------------------------------------------------------- shared fixture

# The minimal privileges esbridge needs, as documented in docs/security.md.
CHECKS_ROLE = {
    "cluster": ["monitor"],
    "indices": [{"names": ["logs-sec-*"], "privileges": ["read", "view_index_metadata"]}],
}
STATE_ROLE = {
    "cluster": ["monitor"],
    "indices": [
        {"names": ["esbridge-state*"], "privileges": ["create_index", "write", "read"]},
    ],
}
MONITOR_ONLY_ROLE = {"cluster": ["monitor"], "indices": []}
# What an API key for the checks would carry (role_descriptors of POST /_security/api_key).
LOGS_READ_KEY = {
    "esbridge_logs_read": {
        "cluster": [],
        "indices": [{"names": ["logs-sec-*"], "privileges": ["read", "view_index_metadata"]}],
    }
}


@dataclass
class Provisioned:
    """Users (file realm, roles.yml) and indices made once per session."""

    logs_index: str
    secret_index: str
    checks_user: str
    checks_password: str
    store_user: str
    store_password: str
    nostore_user: str
    nostore_password: str


_SHARED: tuple[SecureES, Provisioned] | None = None


def shared_secure_es(config: Any, version: str) -> tuple[SecureES, Provisioned]:
    """One secured cluster per test session (stopped at session end via ``config``), at
    ``version``: the run's, so the security tests run on every version the CI runs."""
    global _SHARED
    if _SHARED is not None:
        return _SHARED
    suffix = secrets.token_hex(4)
    prov = Provisioned(
        logs_index=f"logs-sec-{suffix}",
        secret_index=f"secret-{suffix}",
        checks_user="esb_checks",
        checks_password="chk-" + secrets.token_urlsafe(16),
        store_user="esb_store",
        store_password="sto-" + secrets.token_urlsafe(16),
        nostore_user="esb_nostore",
        nostore_password="nst-" + secrets.token_urlsafe(16),
    )
    sec = start_secure_es(
        version,
        users=[
            (prov.checks_user, prov.checks_password, ["esbridge_checks"]),
            (prov.store_user, prov.store_password, ["esbridge_state"]),
            (prov.nostore_user, prov.nostore_password, ["esbridge_monitor_only"]),
        ],
        roles={
            "esbridge_checks": CHECKS_ROLE,
            "esbridge_state": STATE_ROLE,
            "esbridge_monitor_only": MONITOR_ONLY_ROLE,
        },
    )
    config.add_cleanup(sec.stop)
    for index in (prov.logs_index, prov.secret_index):
        r = sec.request(
            "PUT",
            f"/{index}",
            json={"settings": {"number_of_shards": 1, "number_of_replicas": 0}},
        )
        assert r.status_code == 200, r.text
    now = dt.datetime.now(dt.UTC)
    lines = []
    for i in range(3):
        stamp = (now - dt.timedelta(minutes=i + 1)).isoformat().replace("+00:00", "Z")
        for index in (prov.logs_index, prov.secret_index):
            lines.append(f'{{"index": {{"_index": "{index}"}}}}')
            lines.append(f'{{"@timestamp": "{stamp}", "status": 200}}')
    r = sec.request(
        "POST",
        "/_bulk",
        params={"refresh": "true"},
        content="\n".join(lines) + "\n",
        headers={"content-type": "application/x-ndjson"},
    )
    assert r.status_code == 200 and not r.json()["errors"], r.text
    _SHARED = (sec, prov)
    return _SHARED


# The integ-test-zip has no analysis-common module; the .security index that stores API keys
# needs its pattern_capture filter, so creating a key fails with exactly this reason.
NO_API_KEYS = "Unknown filter type [pattern_capture]"


def try_api_key(sec: SecureES, role_descriptors: dict[str, Any]) -> str | None:
    """An encoded API key, or None when this distribution cannot store API keys.

    Any other refusal is a failure, so a broken setup never passes for the known limitation.
    """
    r = sec.request(
        "POST",
        "/_security/api_key",
        json={"name": "esbridge-test", "expiration": "1d", "role_descriptors": role_descriptors},
    )
    if r.status_code != 200:
        assert NO_API_KEYS in r.text, f"creating an API key failed: {r.status_code} {r.text}"
        return None
    body = r.json()
    return (
        body.get("encoded") or base64.b64encode(f"{body['id']}:{body['api_key']}".encode()).decode()
    )
