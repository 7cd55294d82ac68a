"""Weak SNMP credentials are warned about by `vigil check`, naming file and line; the agent
still accepts them (agent/credential_audit.py). The shipped example recommends v3 authPriv
with SHA-2 and AES."""

from __future__ import annotations

from pathlib import Path

import yaml
from click.testing import CliRunner

from agent.cli import main
from agent.credential_audit import weak_credentials

ROOT = Path(__file__).resolve().parent.parent

CREDENTIALS = """credentials:
  good:
    version: 3
    username: a
    auth_protocol: SHA256
    auth_password_env: VIGIL_T_PASS
    priv_protocol: AES
    priv_password_env: VIGIL_T_PASS
  cams:
    version: 2c
    community_env: VIGIL_T_PASS
  old-ups:
    version: 3
    username: b
    auth_protocol: MD5
    auth_password_env: VIGIL_T_PASS
  legacy:
    version: 3
    username: c
    auth_protocol: SHA
    auth_password_env: VIGIL_T_PASS
    priv_protocol: DES
    priv_password_env: VIGIL_T_PASS
  open:
    version: 3
    username: d
  login:
    username: admin
    password_env: VIGIL_T_PASS
"""


def _write(work: Path) -> Path:
    (work / "credentials.yaml").write_text(CREDENTIALS)
    (work / "inventory.yaml").write_text(
        "sites:\n  - {id: lab, name: 实验室}\ndevices:\n"
        "  - {id: ups-1, kind: ups, site: lab, address: 127.0.0.1, credentials: old-ups}\n")
    (work / "agent.yaml").write_text("agent: {id: test}\nstate_dir: state\n")
    return work / "agent.yaml"


def test_each_weak_setting_is_named_with_its_line(tmp_path):
    _write(tmp_path)
    found = [str(w).replace(str(tmp_path) + "/", "") for w in
             weak_credentials(tmp_path / "credentials.yaml")]
    assert [w.split(": ", 1)[0] for w in found] == [
        "credentials.yaml:10 credentials.cams.version",
        "credentials.yaml:15 credentials.old-ups.auth_protocol",
        "credentials.yaml:15 credentials.old-ups.auth_protocol",
        "credentials.yaml:20 credentials.legacy.auth_protocol",
        "credentials.yaml:22 credentials.legacy.priv_protocol",
        "credentials.yaml:24 credentials.open"], found
    assert "SNMP v2c: the community travels in clear text" in found[0]
    assert "authNoPriv" in found[1] and "MD5 is broken" in found[2]
    assert "SHA-1 is deprecated" in found[3] and "DES is broken" in found[4]
    assert "noAuthNoPriv" in found[5]


def test_check_warns_but_passes(tmp_path, monkeypatch):
    monkeypatch.setenv("VIGIL_T_PASS", "a-long-passphrase")
    config = _write(tmp_path)
    run = CliRunner().invoke(main, ["check", "-c", str(config)])
    assert run.exit_code == 0, run.output
    warnings = [line for line in run.output.splitlines() if line.startswith("  warning:")]
    assert len(warnings) == 6, run.output
    assert f"warning: {tmp_path / 'credentials.yaml'}:10 credentials.cams.version" in run.output


def test_shipped_example_recommends_v3_authpriv_sha2_aes():
    path = ROOT / "config" / "credentials.yaml"
    first = next(iter(yaml.safe_load(path.read_text())["credentials"].values()))
    assert (first["version"], first["auth_protocol"], first["priv_protocol"]) == \
        (3, "SHA256", "AES")
    assert [w.key for w in weak_credentials(path)] == ["credentials.cameras-v2c.version"]
