"""Configuration validation: every mistake names the file, the line, the key and what is wrong."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from agent.config import load_config
from agent.yamlfile import ConfigError, ConfigErrors


def write_site(tmp: Path, inventory: str, credentials: str | None = None,
               agent: str = "agent: {id: test}\n") -> Path:
    (tmp / "agent.yaml").write_text(agent)
    (tmp / "inventory.yaml").write_text(textwrap.dedent(inventory))
    cred = tmp / "credentials.yaml"
    cred.write_text(textwrap.dedent(credentials or """\
        credentials:
          lab:
            version: 2c
            community: public
        """))
    cred.chmod(0o600)
    return tmp / "agent.yaml"


GOOD = """\
sites:
  - {id: room, name: 机房}
defaults:
  credentials: lab
devices:
  - id: ups-1
    kind: ups
    site: room
    address: 127.0.0.1
  - id: sw-1
    kind: switch
    site: room
    address: 127.0.0.2
    powered_by: {ups: ups-1}
  - id: cam-1
    kind: ptz_camera
    site: room
    address: 127.0.0.3
    uplink: {switch: sw-1, port: 3}
    powered_by: {switch: sw-1, port: 3}
"""


def errors_of(path: Path) -> list[str]:
    with pytest.raises((ConfigErrors, ConfigError)) as info:
        load_config(path)
    exc = info.value
    return [str(e) for e in getattr(exc, "errors", [exc])]


def test_good_config_loads_with_defaults_applied(tmp_path):
    config = load_config(write_site(tmp_path, GOOD))
    cam = config.inventory.devices["cam-1"]
    assert cam.credentials == "lab" and cam.port == 161
    assert cam.uplink.switch == "sw-1" and cam.powered_by.port == 3
    assert config.interval(cam) == 60


def test_dangling_uplink_names_file_line_and_key(tmp_path):
    bad = GOOD.replace("uplink: {switch: sw-1, port: 3}", "uplink: {switch: sw-07, port: 3}")
    errors = errors_of(write_site(tmp_path, bad))
    assert errors == [f"{tmp_path}/inventory.yaml:19 devices[2].uplink.switch: "
                      f"switch 'sw-07' is not in the inventory"]


def test_uplink_to_a_device_that_is_not_a_switch(tmp_path):
    bad = GOOD.replace("uplink: {switch: sw-1, port: 3}", "uplink: {switch: ups-1, port: 3}")
    assert "'ups-1' is a ups, not a switch" in errors_of(write_site(tmp_path, bad))[0]


def test_dangling_powered_by(tmp_path):
    bad = GOOD.replace("powered_by: {ups: ups-1}", "powered_by: {ups: ups-9}")
    assert errors_of(write_site(tmp_path, bad)) == [
        f"{tmp_path}/inventory.yaml:14 devices[1].powered_by.ups: ups 'ups-9' is not in the "
        f"inventory"]


def test_duplicate_device_id(tmp_path):
    bad = GOOD.replace("id: sw-1", "id: ups-1")
    errors = errors_of(write_site(tmp_path, bad))
    assert any(":10 devices[1].id: duplicate device id 'ups-1' (first at" in e for e in errors)


def test_unknown_kind_lists_allowed_values(tmp_path):
    bad = GOOD.replace("kind: ptz_camera", "kind: dome_camera")
    error = errors_of(write_site(tmp_path, bad))[0]
    assert error.startswith(f"{tmp_path}/inventory.yaml:16 devices[2].kind: 'dome_camera' is "
                            f"not allowed; expected")
    assert "'ptz_camera'" in error


def test_typo_in_key_suggests_the_right_one(tmp_path):
    bad = GOOD.replace("    address: 127.0.0.2", "    adress: 127.0.0.2")
    errors = errors_of(write_site(tmp_path, bad))
    assert f"{tmp_path}/inventory.yaml:13 devices[1].adress: unknown key 'adress' " \
           f"(did you mean 'address'?)" in errors[0] or any("did you mean 'address'" in e
                                                             for e in errors)
    assert any("devices[1].address: required key is missing" in e for e in errors)


@pytest.mark.parametrize("address, message", [
    ("192.168.1.300", "'192.168.1.300' is not a valid IP address"),
    ("not a host!", "neither an IP address nor a valid host name"),
    ("::1::2", "is not a valid IP address"),
])
def test_bad_addresses(tmp_path, address, message):
    bad = GOOD.replace("address: 127.0.0.1", f"address: '{address}'")
    error = errors_of(write_site(tmp_path, bad))[0]
    assert ":9 devices[0].address:" in error and message in error


def test_unknown_profile_and_credentials(tmp_path):
    bad = GOOD.replace("    address: 127.0.0.1\n",
                       "    address: 127.0.0.1\n    profile: no-such\n    credentials: nope\n")
    errors = errors_of(write_site(tmp_path, bad))
    assert any("devices[0].profile: unknown profile 'no-such'" in e for e in errors)
    assert any("devices[0].credentials: credentials 'nope' are not in the credentials file"
               in e for e in errors)


def test_unknown_site(tmp_path):
    bad = GOOD.replace("    site: room\n    address: 127.0.0.3",
                       "    site: hall\n    address: 127.0.0.3")
    assert "devices[2].site: site 'hall' is not in the inventory (known: room)" in \
        errors_of(write_site(tmp_path, bad))[0]


def test_malformed_yaml_names_the_line(tmp_path):
    bad = GOOD.replace("  - id: sw-1\n", "  - id: sw-1\n   kind: [switch\n")
    error = errors_of(write_site(tmp_path, bad))[0]
    assert error.startswith(f"{tmp_path}/inventory.yaml:") and "YAML syntax error" in error


def test_duplicate_yaml_key_is_an_error(tmp_path):
    bad = GOOD.replace("    kind: ups\n", "    kind: ups\n    kind: switch\n")
    assert errors_of(write_site(tmp_path, bad)) == [
        f"{tmp_path}/inventory.yaml:8 devices[0].kind: duplicate key 'kind' (first at line 7)"]


def test_all_problems_reported_at_once(tmp_path):
    bad = (GOOD.replace("kind: ptz_camera", "kind: dome")
           .replace("powered_by: {ups: ups-1}", "powered_by: {ups: ups-9}"))
    assert len(errors_of(write_site(tmp_path, bad))) == 2


def test_credentials_file_readable_by_others_is_refused(tmp_path):
    path = write_site(tmp_path, GOOD)
    (tmp_path / "credentials.yaml").chmod(0o644)
    error = errors_of(path)[0]
    assert "credentials.yaml: holds secrets but its mode is 0644" in error
    assert "chmod 600" in error


def test_credentials_from_environment(tmp_path, monkeypatch):
    creds = """\
        credentials:
          lab:
            version: 3
            username: vigil
            auth_protocol: SHA256
            auth_password_env: TEST_V3_AUTH
            priv_protocol: AES
            priv_password_env: TEST_V3_PRIV
        """
    path = write_site(tmp_path, GOOD, creds)
    (tmp_path / "credentials.yaml").chmod(0o644)  # no inline secret: may be world-readable
    errors = errors_of(path)
    assert any("auth_password_env: environment variable TEST_V3_AUTH is not set" in e
               for e in errors)
    monkeypatch.setenv("TEST_V3_AUTH", "authsecret1")
    monkeypatch.setenv("TEST_V3_PRIV", "privsecret1")
    auth = load_config(path).credentials["lab"]
    assert auth.auth_password == "authsecret1" and auth.priv_protocol == "AES"
    assert "authsecret1" not in repr(auth) and "privsecret1" not in str(auth)


def test_v3_priv_without_auth(tmp_path):
    creds = """\
        credentials:
          lab:
            version: 3
            username: vigil
            priv_protocol: AES
            priv_password: privsecret1
        """
    errors = errors_of(write_site(tmp_path, GOOD, creds))
    assert any("credentials.lab.priv_protocol: privacy needs authentication" in e
               for e in errors)


def test_agent_yaml_errors(tmp_path):
    path = write_site(tmp_path, GOOD, agent="agent: {id: test}\nlisten: localhost\n"
                                             "schedule: {default_interval: 5 minutes}\n")
    errors = errors_of(path)
    assert any("agent.yaml:2 listen: 'localhost' is not host:port" in e for e in errors)
    assert any("agent.yaml:3 schedule.default_interval: '5 minutes' is not a duration" in e
               for e in errors)


def test_missing_inventory_file(tmp_path):
    path = write_site(tmp_path, GOOD, agent="agent: {id: test}\ninventory: [sites/*.yaml]\n")
    assert any("inventory: no inventory file matches 'sites/*.yaml'" in e
               for e in errors_of(path))


def test_example_config_is_valid(monkeypatch):
    monkeypatch.setenv("VIGIL_V3_AUTH", "example-auth")
    monkeypatch.setenv("VIGIL_V3_PRIV", "example-priv")
    monkeypatch.setenv("VIGIL_COMMUNITY", "public")
    config = load_config(Path(__file__).parent.parent / "config" / "agent.yaml")
    assert len(config.inventory.devices) == 4


def test_profile_errors_name_the_profile_file(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my-ups.yaml").write_text(textwrap.dedent("""\
        name: my-ups
        metrics:
          - name: ups_battery_charge_ratio
            oid: 1.3.6.1.4.1.99999.1
            type: counter
          - name: my_thing
            oid: 1.3.6.1.4.1.99999.2
          - name: bad oid
            oid: 1.3.x
        """))
    path = write_site(tmp_path, GOOD, agent="agent: {id: test}\nprofiles: [profiles]\n")
    errors = errors_of(path)
    assert any("my-ups.yaml:3 metrics[0]: counter 'ups_battery_charge_ratio' must end in _total"
               in e for e in errors), errors
    assert any("my-ups.yaml:9 metrics[2].oid" in e for e in errors), errors


def test_profile_vocabulary_type_clash(tmp_path):
    profiles = tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "my-ups.yaml").write_text(textwrap.dedent("""\
        name: my-ups
        metrics:
          - name: ups_alarms_total
            oid: 1.3.6.1.4.1.99999.1
            type: counter
            help: alarms
          - name: my_thing
            oid: 1.3.6.1.4.1.99999.2
        """))
    agent = "agent: {id: test}\nprofiles: [profiles]\n"
    errors = errors_of(write_site(tmp_path, GOOD, agent=agent))
    assert any("metrics[1].name: 'my_thing' is not in the metric vocabulary: give it a 'help'"
               in e for e in errors), errors



def test_site_labels_reach_devices(tmp_path):
    inventory = GOOD.replace("  - {id: room, name: 机房}",
                             "  - {id: room, name: 机房, labels: {district: east, room: a}}")
    inventory = inventory.replace("    address: 127.0.0.2\n",
                                  "    address: 127.0.0.2\n    labels: {room: b}\n")
    config = load_config(write_site(tmp_path, inventory))
    assert config.inventory.devices["ups-1"].labels == {"district": "east", "room": "a"}
    assert config.inventory.devices["sw-1"].labels == {"district": "east", "room": "b"}


def test_reserved_label_names_are_refused(tmp_path):
    bad = GOOD.replace("    address: 127.0.0.2\n",
                       "    address: 127.0.0.2\n    labels: {site: x}\n")
    assert "label name 'site' is reserved" in errors_of(write_site(tmp_path, bad))[0]
