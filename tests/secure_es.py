"""A secured single-node Elasticsearch for the security tests: TLS on HTTP, users, API keys.

Everything is made here, nothing is downloaded: a CA and a node certificate are generated
with ``cryptography`` (SAN 127.0.0.1/localhost), the ``elastic`` password is the keystore's
``bootstrap.password`` (made with the distribution's own ``elasticsearch-keystore`` in a
scratch config folder, then handed to :class:`ElasticsearchServer` as a config file).

Helpers talk to the cluster as ``elastic`` over HTTPS with the generated CA, so they prove
the CA bundle works before esbridge ever uses it.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from esbridge.devtools import elasticsearch as esdev


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
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
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


def make_keystore(version: str, bootstrap_password: str) -> bytes:
    """An ``elasticsearch.keystore`` holding ``bootstrap.password`` (made by ES's own tool)."""
    home = esdev.fetch(version)
    java = esdev.find_java(esdev.required_java_major(version))
    scratch = Path(tempfile.mkdtemp(prefix="esbridge-keystore-"))
    try:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "ES_JAVA_HOME": str(java),
            "ES_PATH_CONF": str(scratch),
            "HOME": str(scratch),
            "LANG": "C.UTF-8",
        }
        tool = str(home / "bin" / "elasticsearch-keystore")
        subprocess.run(
            [tool, "create"], env=env, check=True, capture_output=True, timeout=120
        )
        subprocess.run(
            [tool, "add", "-x", "-f", "bootstrap.password"],
            input=bootstrap_password.encode(),
            env=env,
            check=True,
            capture_output=True,
            timeout=120,
        )
        return (scratch / "elasticsearch.keystore").read_bytes()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@dataclass
class SecureES:
    """A running secured cluster plus what the tests need to talk to it."""

    server: esdev.ElasticsearchServer
    password: str
    ca_path: Path
    workdir: Path
    created: list[tuple[str, str]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.server.url

    def client(self, auth: tuple[str, str] | None = None, **kwargs: Any) -> httpx.Client:
        """An HTTPS client verifying against the generated CA (as ``elastic`` by default)."""
        return httpx.Client(
            base_url=self.url,
            auth=auth or ("elastic", self.password),
            verify=str(self.ca_path),
            timeout=30.0,
            **kwargs,
        )

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as c:
            return c.request(method, path, **kwargs)

    def put_role(self, name: str, body: dict[str, Any]) -> None:
        r = self.request("PUT", f"/_security/role/{name}", json=body)
        assert r.status_code == 200, r.text
        self.created.append(("role", name))

    def put_user(self, name: str, password: str, roles: list[str]) -> None:
        r = self.request(
            "PUT", f"/_security/user/{name}", json={"password": password, "roles": roles}
        )
        assert r.status_code == 200, r.text
        self.created.append(("user", name))

    def api_key(self, name: str, role_descriptors: dict[str, Any]) -> str:
        """Create an API key; return its ``encoded`` (base64 id:key) form."""
        r = self.request(
            "POST",
            "/_security/api_key",
            json={"name": name, "expiration": "1d", "role_descriptors": role_descriptors},
        )
        assert r.status_code == 200, r.text
        body = r.json()
        return body.get("encoded") or base64.b64encode(
            f"{body['id']}:{body['api_key']}".encode()
        ).decode()

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_secure_es(version: str | None = None) -> SecureES:
    """Start Elasticsearch with security + HTTPS on; the caller stops it."""
    version = esdev.resolve_version(version)
    password = "es-" + secrets.token_urlsafe(18)
    pki = make_pki()
    workdir = Path(tempfile.mkdtemp(prefix="esbridge-secure-"))
    workdir.chmod(0o755)
    ca_path = workdir / "ca.crt"
    ca_path.write_bytes(pki.ca_cert)
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
            "xpack.security.authc.api_key.enabled": True,
        },
        config_files={
            "certs/ca.crt": pki.ca_cert,
            "certs/node.crt": pki.node_cert,
            "certs/node.key": pki.node_key,
            "elasticsearch.keystore": make_keystore(version, password),
        },
    )
    try:
        server.start()
    except BaseException:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    secure = SecureES(server=server, password=password, ca_path=ca_path, workdir=workdir)
    # Yellow (not merely "answers 401") before tests create indices and keys.
    with secure.client() as c:
        r = c.get("/_cluster/health", params={"wait_for_status": "yellow", "timeout": "60s"})
        assert r.status_code == 200, r.text
    return secure
