"""TLS for the agent's HTTP server (API, web UI, /metrics), and the CLI's side of it.

Off by default: the agent listens on 127.0.0.1 and a reverse proxy or the loopback keeps the
tokens private. When the API is reached over the network, `tls: {cert_file, key_file}` in
agent.yaml makes the agent speak HTTPS only (TLS 1.2 or newer; plain HTTP on that port gets
no answer). The files are PEM; the key must not be encrypted (the agent starts unattended).

The `vigil` commands then call https://<listen>. They trust the system's CAs plus, when
$VIGIL_CACERT names a PEM file, the CAs in it, and the configured certificate itself (a
self-signed certificate works without further setup on the agent's own host).
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path

from pydantic import Field

from agent.configbase import Strict
from agent.yamlfile import ConfigError, Document


class Tls(Strict):
    """HTTPS for the HTTP server: both files, or leave `tls` out for plain HTTP."""

    cert_file: str = Field(
        ..., description="PEM certificate (chain) the agent presents; relative to agent.yaml. "
                         "Its names must match the address clients use (e.g. an IP SAN).")
    key_file: str = Field(
        ..., description="PEM private key of the certificate, unencrypted; readable by the "
                         "agent's user only (chmod 600).")


def resolved(tls: Tls | None, base: Path) -> Tls | None:
    """`tls` with both paths made absolute (relative ones are relative to `base`)."""
    if tls is None:
        return None
    return tls.model_copy(update={k: str(base / getattr(tls, k)) for k in ("cert_file",
                                                                          "key_file")})


def server_context(tls: Tls) -> ssl.SSLContext:
    """The server's context: TLS 1.2+, the certificate and key loaded (raises OSError or
    ssl.SSLError when they cannot be read or do not match)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


def check(doc: Document, tls: Tls | None) -> list[ConfigError]:
    """Config errors naming the key and file that keep the server from using TLS."""
    if tls is None:
        return []
    errors = []
    for key in ("cert_file", "key_file"):
        path = Path(getattr(tls, key))
        try:
            path.read_bytes()
        except OSError as exc:
            errors.append(doc.error(("tls", key), f"cannot read {path}: {exc.strerror or exc}"))
    if not errors:
        try:
            server_context(tls)
        except (OSError, ssl.SSLError) as exc:
            errors.append(doc.error(("tls",), f"{tls.cert_file} and {tls.key_file} are not a "
                                              f"PEM certificate and its unencrypted key "
                                              f"({getattr(exc, 'reason', None) or exc})"))
    return errors


def client_context(tls: Tls | None) -> ssl.SSLContext:
    """What the CLI trusts: the system CAs, $VIGIL_CACERT and the configured certificate."""
    context = ssl.create_default_context()
    extra = os.environ.get("VIGIL_CACERT")
    for cafile in (extra, tls.cert_file if tls else None):
        if cafile and Path(cafile).is_file():
            context.load_verify_locations(cafile)
    return context
