"""Topology cycles: a device cannot depend, through uplinks and power feeds, on itself."""

from __future__ import annotations

import time

import pytest

from agent import yamlfile
from agent.config import load_config
from agent.inventory import load_inventory
from agent.yamlfile import ConfigErrors
from tests.test_config import errors_of, write_site

HEAD = """\
sites:
  - {id: room}
defaults:
  credentials: lab
devices:
  - {id: ups-1, kind: ups, site: room, address: 10.0.0.1}
"""


def device(dev_id: str, kind: str = "switch", uplink: str | None = None,
           poe: str | None = None, ups: str | None = None) -> str:
    """One device as a single flow-mapping line, so its line number is easy to find."""
    extra = f", uplink: {{switch: {uplink}, port: 1}}" if uplink else ""
    if poe:
        extra += f", powered_by: {{switch: {poe}, port: 2}}"
    elif ups:
        extra += f", powered_by: {{ups: {ups}}}"
    return f"  - {{id: {dev_id}, kind: {kind}, site: room, address: {dev_id}.lan{extra}}}\n"


def line_of(text: str, dev_id: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if f"{{id: {dev_id}," in line)


def test_two_switches_uplinked_to_each_other(tmp_path):
    text = HEAD + device("sw-a", uplink="sw-b", ups="ups-1") + device("sw-b", uplink="sw-a")
    assert errors_of(write_site(tmp_path, text)) == [
        f"{tmp_path}/inventory.yaml:{line_of(text, 'sw-b')} devices[2].uplink.switch: "
        f"topology cycle: sw-b -> sw-a -> sw-b (uplink, uplink): a device cannot depend on "
        f"itself through others"]


def test_power_and_network_are_separate_graphs(tmp_path):
    """A UPS feeding the switch its own network card hangs off, or a PoE switch feeding the
    switch above it: a loop across network and power is a real machine room, not an error."""
    text = (HEAD + device("core", ups="ups-1", uplink=None) + device("ups-2", kind="ups",
                                                                     uplink="core")
            + device("sw-a", uplink="core", ups="ups-2") + device("sw-b", uplink="sw-a")
            + device("sw-c", uplink="sw-b", poe="sw-b"))
    text = text.replace("{id: ups-1, kind: ups, site: room, address: 10.0.0.1}",
                        "{id: ups-1, kind: ups, site: room, address: 10.0.0.1, "
                        "uplink: {switch: core, port: 9}}")
    load_config(write_site(tmp_path, text))  # no error


def test_ups_cycle_through_power_feeds(tmp_path):
    text = HEAD + device("ups-2", kind="ups", ups="ups-3") + device("ups-3", kind="ups",
                                                                   ups="ups-2")
    errors = errors_of(write_site(tmp_path, text))
    assert errors == [f"{tmp_path}/inventory.yaml:{line_of(text, 'ups-3')} "
                      f"devices[2].powered_by.ups: topology cycle: ups-3 -> ups-2 -> ups-3 "
                      f"(powered_by, powered_by): a device cannot depend on itself through "
                      f"others"]


def test_each_cycle_once_and_three_long(tmp_path):
    """A loop of uplinks and a loop of PoE feeds through the same pair are two errors; a
    three-switch ring is one error, not one per member."""
    text = (HEAD + device("sw-a", uplink="sw-b", poe="sw-b") + device("sw-b", uplink="sw-a",
                                                                       poe="sw-a")
            + device("r-1", uplink="r-3") + device("r-2", uplink="r-1")
            + device("r-3", uplink="r-2"))
    errors = errors_of(write_site(tmp_path, text))
    assert [e.split(": ", 1)[1] for e in errors] == [
        "topology cycle: sw-b -> sw-a -> sw-b (uplink, uplink): a device cannot depend on "
        "itself through others",
        "topology cycle: r-2 -> r-1 -> r-3 -> r-2 (uplink, uplink, uplink): a device cannot "
        "depend on itself through others",
        "topology cycle: sw-b -> sw-a -> sw-b (powered_by, powered_by): a device cannot "
        "depend on itself through others"]
    assert errors[1].startswith(f"{tmp_path}/inventory.yaml:{line_of(text, 'r-2')} "
                                f"devices[4].uplink.switch: ")
    assert errors[2].startswith(f"{tmp_path}/inventory.yaml:{line_of(text, 'sw-b')} "
                                f"devices[2].powered_by.switch: ")


def test_self_reference_is_reported_once(tmp_path):
    text = HEAD + device("sw-a", uplink="sw-a")
    assert errors_of(write_site(tmp_path, text)) == [
        f"{tmp_path}/inventory.yaml:{line_of(text, 'sw-a')} devices[1].uplink.switch: a device "
        f"cannot depend on itself ('sw-a')"]


def test_wrong_kind_edge_is_not_also_a_cycle(tmp_path):
    text = HEAD + device("sw-a", uplink="ups-2") + device("ups-2", kind="ups", poe="sw-a")
    errors = errors_of(write_site(tmp_path, text))
    assert len(errors) == 1 and "'ups-2' is a ups, not a switch" in errors[0]


def test_deep_chain_loads(tmp_path):
    """A core switch, 50 access switches daisy-chained behind it, a camera on each."""
    text = HEAD + device("core", ups="ups-1")
    for i in range(1, 51):
        text += device(f"acc-{i}", uplink=f"acc-{i - 1}" if i > 1 else "core", ups="ups-1")
        text += device(f"cam-{i}", kind="fixed_camera", uplink=f"acc-{i}", poe=f"acc-{i}")
    inventory = load_config(write_site(tmp_path, text)).inventory
    assert len(inventory.devices) == 102
    assert inventory.devices["cam-50"].uplink.switch == "acc-50"


def test_ten_thousand_switches_in_one_ring(tmp_path):
    """No recursion limit and no quadratic walk: a 10,000-deep chain closed into one ring."""
    count = 10_000
    text = HEAD + device("sw-0", uplink=f"sw-{count - 1}") + "".join(
        device(f"sw-{i}", uplink=f"sw-{i - 1}") for i in range(1, count))
    doc = yamlfile.load(tmp_path / "inventory.yaml", text)
    started = time.process_time()
    with pytest.raises(ConfigErrors) as info:
        load_inventory([doc], None, None)
    assert time.process_time() - started < 10
    [error] = info.value.errors
    assert error.line == line_of(text, "sw-1") and error.key == "devices[2].uplink.switch"
    assert error.message.startswith(f"topology cycle: sw-1 -> sw-0 -> sw-{count - 1} -> ")
    assert error.message.count(" -> ") == count
