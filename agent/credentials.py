"""SNMP credentials, kept apart from the inventory.

The inventory only names a credentials entry; the secrets live in their own file, which must
be readable by its owner only whenever it holds a secret inline. Any secret may instead be
read from an environment variable (`<key>_env: VARIABLE`), e.g. from a systemd
`EnvironmentFile=` or a vault agent, so the file itself can stay world-readable.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Discriminator, Field, Tag

from agent import yamlfile
from agent.validation import validate
from agent.yamlfile import ConfigError, ConfigErrors, Document
from collectors.snmp.engine import SnmpAuth

AuthProtocol = Literal["MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512"]
PrivProtocol = Literal["DES", "3DES", "AES", "AES192", "AES256", "AES192C", "AES256C"]

SECRET_KEYS = ("community", "auth_password", "priv_password", "password")


class _Credential(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def secrets_inline(self) -> list[str]:
        """Names of secrets written in the file itself (not taken from the environment)."""
        return [k for k in SECRET_KEYS if getattr(self, k, None) is not None]


class CommunityCredential(_Credential):
    """SNMP v1 or v2c: a community string."""

    version: Annotated[Literal["1", "2c"], BeforeValidator(str)] = Field(
        ..., description="`1` or `2c`. v2c is needed for GETBULK; v1 walks with GETNEXT.")
    community: str | None = Field(None, min_length=1, description="The community string.")
    community_env: str | None = Field(
        None, description="Environment variable holding the community (instead of `community`).")


class UsmCredential(_Credential):
    """SNMP v3 (USM). authPriv with SHA-2 and AES is the recommended setting."""

    version: Annotated[Literal["3"], BeforeValidator(str)] = Field(..., description="`3`.")
    username: str = Field(..., min_length=1, description="USM user name.")
    auth_protocol: AuthProtocol | None = Field(
        None, description="Authentication: MD5, SHA, SHA224, SHA256, SHA384, SHA512. "
                          "Leave out for noAuthNoPriv.")
    auth_password: str | None = Field(None, min_length=8,
                                      description="Authentication passphrase (8+ characters).")
    auth_password_env: str | None = Field(
        None, description="Environment variable holding the authentication passphrase.")
    priv_protocol: PrivProtocol | None = Field(
        None, description="Privacy (encryption): DES, 3DES, AES (128), AES192, AES256, and the "
                          "Cisco/Blumenthal key-extension variants AES192C, AES256C. Needs "
                          "`auth_protocol`.")
    priv_password: str | None = Field(None, min_length=8,
                                      description="Privacy passphrase (8+ characters).")
    priv_password_env: str | None = Field(
        None, description="Environment variable holding the privacy passphrase.")
    context: str = Field("", description="SNMPv3 context name, if the agent needs one.")


class LoginCredential(_Credential):
    """A user name and password for a device's web services: ONVIF, RTSP, HTTP. (An entry
    without `version`.)"""

    username: str = Field(..., min_length=1, description="User name.")
    password: str | None = Field(None, min_length=1, description="Password.")
    password_env: str | None = Field(
        None, description="Environment variable holding the password (instead of `password`).")


@dataclass(frozen=True)
class Login:
    """Resolved ONVIF/RTSP/HTTP login. repr never shows the password."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"Login({self.username!r})"

    __str__ = __repr__


def _version_tag(value: Any) -> str | None:
    if isinstance(value, dict):
        if "version" not in value:
            return "login"
        version = str(value.get("version", ""))
        return "v3" if version == "3" else "community"
    return None


Credential = Annotated[
    Annotated[CommunityCredential, Tag("community")] | Annotated[UsmCredential, Tag("v3")]
    | Annotated[LoginCredential, Tag("login")],
    Discriminator(_version_tag),
]


class CredentialsFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    credentials: dict[str, Credential] = Field(
        ..., description="Named credentials; devices refer to them by name.")


def _secret(doc: Document, path: tuple, cred: BaseModel, key: str,
            errors: list[ConfigError], required: bool) -> str:
    inline = getattr(cred, key)
    env_name = getattr(cred, f"{key}_env")
    if inline is not None and env_name is not None:
        errors.append(doc.error((*path, key), f"give either '{key}' or '{key}_env', not both"))
        return ""
    if env_name is not None:
        value = os.environ.get(env_name)
        if not value:
            errors.append(doc.error((*path, f"{key}_env"),
                                    f"environment variable {env_name} is not set"))
            return ""
        return value
    if inline is None and required:
        errors.append(doc.error(path, f"'{key}' (or '{key}_env') is required"))
        return ""
    return inline or ""


def load_credentials(path: Path) -> dict[str, SnmpAuth | Login]:
    """Load, check the file mode and resolve every secret; all problems in one ConfigErrors."""
    doc = yamlfile.load(path)
    model = validate(CredentialsFile, doc)
    errors: list[ConfigError] = []
    out: dict[str, SnmpAuth | Login] = {}
    for name, cred in model.credentials.items():
        where = ("credentials", name)
        if isinstance(cred, LoginCredential):
            password = _secret(doc, where, cred, "password", errors, required=True)
            out[name] = Login(cred.username, password)
            continue
        if isinstance(cred, CommunityCredential):
            community = _secret(doc, where, cred, "community", errors, required=True)
            out[name] = SnmpAuth(version=cred.version, community=community)
            continue
        if cred.priv_protocol and not cred.auth_protocol:
            errors.append(doc.error((*where, "priv_protocol"),
                                    "privacy needs authentication: set auth_protocol too"))
        auth = _secret(doc, where, cred, "auth_password", errors, required=bool(cred.auth_protocol))
        priv = _secret(doc, where, cred, "priv_password", errors, required=bool(cred.priv_protocol))
        if not cred.auth_protocol and auth:
            errors.append(doc.error((*where, "auth_password"),
                                    "auth_password given without auth_protocol"))
        out[name] = SnmpAuth(
            version="3", username=cred.username, auth_protocol=cred.auth_protocol,
            auth_password=auth, priv_protocol=cred.priv_protocol, priv_password=priv,
            context=cred.context)
    if any(c.secrets_inline() for c in model.credentials.values()):
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            errors.append(ConfigError(
                path, None, "",
                f"holds secrets but its mode is {mode:04o} (readable by group/others); "
                f"run: chmod 600 {path}  (or move the secrets to *_env variables)"))
    if errors:
        raise ConfigErrors(errors)
    return out
