"""Weak SNMP credentials, as warnings of `vigil check` (they never stop the agent: many
cameras and small UPS cards only speak v2c or MD5/DES, and watching them beats not).

What is weak, in order of how much it gives away:
- v1/v2c: the community travels in clear text and lets anyone who sees it read (or write)
  the device;
- v3 noAuthNoPriv: nothing is authenticated or encrypted;
- v3 authNoPriv: readings travel in clear text;
- MD5 or SHA-1 authentication, DES or 3DES privacy: broken or deprecated (RFC 7860 adds
  SHA-2 to USM, RFC 3826 AES).
The recommended setting is authPriv with SHA256 (or stronger) and AES (config/credentials.yaml).
"""

from __future__ import annotations

from pathlib import Path

from agent import yamlfile
from agent.yamlfile import ConfigError

WEAK_AUTH = {"MD5": "MD5 is broken", "SHA": "SHA-1 is deprecated"}
WEAK_PRIV = {"DES": "DES is broken (56-bit keys)", "3DES": "3DES is deprecated"}
ADVICE = "prefer SNMPv3 authPriv with SHA256 and AES where the device supports it"


def weak_credentials(path: Path) -> list[ConfigError]:
    """One warning per weak setting of the credentials file, naming its line and key (an
    unreadable or invalid file gives none: `load_config` reports that as an error)."""
    try:
        doc = yamlfile.load(path)
    except (ConfigError, OSError):
        return []
    entries = doc.data.get("credentials") if isinstance(doc.data, dict) else None
    out: list[ConfigError] = []
    for name, cred in (entries or {}).items():
        if not isinstance(cred, dict) or "version" not in cred:
            continue  # a login (ONVIF/RTSP/HTTP) entry
        where = ("credentials", name)
        version = str(cred.get("version"))
        auth, priv = cred.get("auth_protocol"), cred.get("priv_protocol")
        if version in ("1", "2c"):
            out.append(doc.error((*where, "version"), f"SNMP v{version}: the community "
                                 f"travels in clear text; {ADVICE}"))
        elif version == "3" and not auth:
            out.append(doc.error(where, f"SNMPv3 noAuthNoPriv: nothing is authenticated or "
                                        f"encrypted; {ADVICE}"))
        elif version == "3" and not priv:
            out.append(doc.error((*where, "auth_protocol"), f"SNMPv3 authNoPriv: readings "
                                 f"travel in clear text; {ADVICE}"))
        if version == "3" and auth in WEAK_AUTH:
            out.append(doc.error((*where, "auth_protocol"), f"{WEAK_AUTH[auth]}; {ADVICE}"))
        if version == "3" and priv in WEAK_PRIV:
            out.append(doc.error((*where, "priv_protocol"), f"{WEAK_PRIV[priv]}; {ADVICE}"))
    return out
