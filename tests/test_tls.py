"""HTTPS for the API and web UI: a real `vigil run` with `tls: {cert_file, key_file}` and a
self-signed certificate made here answers HTTPS on 127.0.0.1 (TLS 1.2+), gives plain HTTP
nothing, and the `vigil` commands reach it; unreadable or mismatched files are config
errors naming the key."""

from __future__ import annotations

import datetime
import http.client
import ipaddress
import os
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import peers
from tests.test_daemon import VIGIL, Daemon


def self_signed(directory: Path, name: str = "agent") -> tuple[Path, Path]:
    """A P-256 certificate for 127.0.0.1 (IP SAN), valid for a day; (cert, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / f"{name}.crt", directory / f"{name}.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return cert_file, key_file


def _config(work: Path, tls: str) -> tuple[Path, int]:
    (work / "credentials.yaml").write_text("credentials:\n  c:\n    version: 2c\n"
                                           "    community_env: VIGIL_T_TLS\n")
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: lab, name: 实验室}\ndevices:\n  - {id: sw-1, kind: switch, site: lab, "
        f"address: 127.0.0.1, port: {peers.free_port()}, credentials: c}}\n")
    port = peers.free_port(socket.SOCK_STREAM)
    (work / "agent.yaml").write_text(
        f"agent: {{id: test}}\nlisten: 127.0.0.1:{port}\nstate_dir: state\n"
        "reachability: {enabled: false}\nsnmp: {timeout: 1s, retries: 0}\n" + tls)
    return work / "agent.yaml", port


ENV = {"VIGIL_T_TLS": "public"}


@pytest.fixture(scope="module")
def https_agent(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    cert, _key = self_signed(work)
    config, port = _config(work, "tls: {cert_file: agent.crt, key_file: agent.key}\n")
    daemon = Daemon(config, env=ENV)
    url = f"https://127.0.0.1:{port}"
    trust = ssl.create_default_context(cafile=str(cert))
    try:
        daemon.wait_for(lambda: _status(url + "/-/ready", trust) == 200, what="HTTPS ready")
        yield daemon, url, trust, cert
    finally:
        daemon.stop()


def _status(url: str, context: ssl.SSLContext) -> int:
    with urllib.request.urlopen(url, timeout=5, context=context) as response:
        return response.status


def test_https_answers_with_tls_1_2_or_newer(https_agent):
    _daemon, url, trust, _cert = https_agent
    assert _status(url + "/-/healthy", trust) == 200
    assert _status(url + "/metrics", trust) == 200
    with socket.create_connection(("127.0.0.1", int(url.rsplit(":", 1)[1])), timeout=5) as raw, \
            trust.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
    old = ssl.create_default_context(cafile=str(_cert))
    old.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    with warnings.catch_warnings():  # deprecated: that is the point
        warnings.simplefilter("ignore", DeprecationWarning)
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        _status(url + "/-/healthy", old)


def test_plain_http_gets_no_answer(https_agent):
    _daemon, url, _trust, _cert = https_agent
    plain = url.replace("https://", "http://")
    with pytest.raises((urllib.error.URLError, http.client.HTTPException, ConnectionError)):
        urllib.request.urlopen(plain + "/-/healthy", timeout=5)


def test_untrusted_certificate_is_refused(https_agent):
    _daemon, url, _trust, _cert = https_agent
    with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
        _status(url + "/-/healthy", ssl.create_default_context())


def test_cli_reaches_the_https_agent(https_agent):
    daemon, url, _trust, cert = https_agent
    env = {**os.environ, **ENV}
    from_config = subprocess.run([*VIGIL, "silence", "list", "-c", str(daemon.config)],
                                 env=env, capture_output=True, text=True, timeout=60)
    assert from_config.returncode == 0 and "no silences" in from_config.stdout, \
        from_config.stderr
    other = daemon.config.parent / "elsewhere.yaml"  # --url, the CA from $VIGIL_CACERT
    by_url = subprocess.run([*VIGIL, "silence", "list", "-c", str(other), "--url", url],
                            env={**env, "VIGIL_CACERT": str(cert)}, capture_output=True,
                            text=True, timeout=60)
    assert by_url.returncode == 0 and "no silences" in by_url.stdout, by_url.stderr
    untrusted = subprocess.run([*VIGIL, "silence", "list", "-c", str(other), "--url", url],
                               env=env, capture_output=True, text=True, timeout=60)
    assert untrusted.returncode == 2 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr


def test_unreadable_or_mismatched_files_are_config_errors(tmp_path):
    self_signed(tmp_path, "one")
    self_signed(tmp_path, "two")
    config, _ = _config(tmp_path, "tls:\n  cert_file: one.crt\n  key_file: missing.key\n")
    env = {**os.environ, **ENV}
    run = subprocess.run([*VIGIL, "check", "-c", str(config)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1
    assert f"agent.yaml:8 tls.key_file: cannot read {tmp_path / 'missing.key'}" in run.stderr
    config.write_text(config.read_text().replace("missing.key", "two.key"))
    run = subprocess.run([*VIGIL, "check", "-c", str(config)], env=env, capture_output=True,
                         text=True, timeout=60)
    assert run.returncode == 1 and "agent.yaml:6 tls:" in run.stderr, run.stderr
    assert "one.crt and" in run.stderr and "two.key are not a PEM certificate" in run.stderr
