"""The SNMP trap receiver against net-snmp's snmptrap/snmpinform (Debian package snmp).

Real v1, v2c and v3 (authPriv) notifications go over loopback to the receiver, which
delivers event readings to a sink. Sources: 127.0.0.1 is the device "ups-1"; 127.0.0.2
(snmptrap --clientaddr) is no device of the inventory.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path

import pytest
from pydantic import Field

from agent.validation import validate
from agent.yamlfile import ConfigErrors
from agent.yamlfile import load as load_yaml
from collectors.reading import Reading
from collectors.snmp.engine import SnmpAuth
from collectors.snmp.profile import ProfileFile, load_profiles
from collectors.traps.mapping import TrapDef, load_mappings
from collectors.traps.receiver import TrapReceiver, TrapUser
from tests import peers

DEVICES = {"127.0.0.1": "ups-1", "::1": "ups-6"}
USER = TrapUser("vigiltrap", "SHA", "trap-auth-pass", "AES", "trap-priv-pass")
SENDER_ENGINE = "0x80001f8880aabbccdd01"
IF_INDEX, IF_DESCR, IF_OPER = "1.3.6.1.2.1.2.2.1.1", "1.3.6.1.2.1.2.2.1.2", "1.3.6.1.2.1.2.2.1.8"
IF_NAME = "1.3.6.1.2.1.31.1.1.1.1"
LINK_DOWN, LINK_UP = "1.3.6.1.6.3.1.1.5.3", "1.3.6.1.6.3.1.1.5.4"
UPS_ON_BATTERY = "1.3.6.1.2.1.33.2.1"
APC = "1.3.6.1.4.1.318"
APC_MESSAGE = "1.3.6.1.4.1.318.2.3.3.0"  # PowerNet-MIB mtrapargsString

VENDOR_PROFILE = f"""\
name: apc-smart-ups
description: "APC Smart-UPS network card (PowerNet-MIB), for the trap test."
kinds: [ups]
metrics: []
traps:
  - oid: {APC}.0.5
    name: upsOnBattery
    event: ups_on_battery
    value: 1
    text: {{varbind: {APC_MESSAGE[:-2]}}}
  - oid: {APC}.0.9
    name: powerRestored
    event: ups_on_battery
    value: 0
  - oid: {APC}.0.1
    name: communicationLost
    event: ups_communication_lost
    labels:
      card: management
"""


@pytest.fixture(scope="module")
def snmptrap() -> str:
    return peers.program("snmptrap")


@pytest.fixture(scope="module")
def vendor_profile(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profiles") / "apc-smart-ups.yaml"
    path.write_text(VENDOR_PROFILE)
    return path


class Harness:
    """A started receiver on a free loopback port, its sink, and senders."""

    def __init__(self, receiver: TrapReceiver, events: list[Reading], tool: str, work: Path):
        self.receiver = receiver
        self.events = events
        self.tool = tool
        self.work = work

    @property
    def port(self) -> int:
        return int(self.receiver.address.rsplit(":", 1)[1])

    async def send(self, *args: str, tool: str | None = None, source: str = "127.0.0.1") -> None:
        command = [tool or self.tool, f"--clientaddr={source}",
                   *(a.replace("{target}", f"127.0.0.1:{self.port}") for a in args)]
        env = net_snmp_env(self.work)
        process = await asyncio.create_subprocess_exec(
            *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await asyncio.wait_for(process.communicate(), 20)
        assert process.returncode == 0, f"{command}: {err.decode()}"

    async def wait_events(self, count: int, within: float = 1.0) -> list[Reading]:
        deadline = time.monotonic() + within
        while len(self.events) < count and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        return list(self.events)

    async def settle(self, counter: str, value: int, within: float = 1.0) -> None:
        deadline = time.monotonic() + within
        while getattr(self.receiver.counters, counter) < value and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        assert getattr(self.receiver.counters, counter) == value, self.receiver.counters


def net_snmp_env(work: Path) -> dict[str, str]:
    """net-snmp keeps its engine state in the test's folder and loads no MIB files."""
    (work / "net-snmp").mkdir(exist_ok=True)
    return {**os.environ, "SNMP_PERSISTENT_DIR": str(work / "net-snmp"),
            "SNMPCONFPATH": str(work / "net-snmp"), "MIBS": "", "MIBDIRS": "/dev/null"}


def v2c(community: str, oid: str, *varbinds: str) -> list[str]:
    return ["-v2c", "-c", community, "{target}", "", oid, *varbinds]


def v1(community: str, enterprise: str, generic: int, specific: int, *varbinds: str
       ) -> list[str]:
    return ["-v1", "-c", community, "{target}", enterprise, "127.0.0.1", str(generic),
            str(specific), "", *varbinds]


def v3(oid: str, *varbinds: str, auth_pass: str = USER.auth_key,
       engine: str | None = SENDER_ENGINE) -> list[str]:
    return ["-v3", *(["-e", engine] if engine else []), "-u", USER.username, "-l", "authPriv",
            "-a", "SHA", "-A", auth_pass, "-x", "AES", "-X", USER.priv_key, "{target}", "", oid,
            *varbinds]


def run(snmptrap: str, tmp_path: Path, body, *, users=(USER,), communities=("public",),
        mappings=None, deliver_unmapped: bool = True) -> None:
    """Run `body(harness)` against a started receiver; close it afterwards."""

    async def main() -> None:
        events: list[Reading] = []
        receiver = TrapReceiver("127.0.0.1:0", events.append, DEVICES.get, list(communities),
                                list(users), mappings, deliver_unmapped=deliver_unmapped)
        await receiver.start()
        try:
            await body(Harness(receiver, events, snmptrap, tmp_path))
        finally:
            await receiver.close()

    asyncio.run(main())


def only(events: list[Reading]) -> Reading:
    assert len(events) == 1, events
    return events[0]


# --- real traps -----------------------------------------------------------------------------


def test_v2c_link_down_and_up_reach_the_sink_within_a_second(snmptrap, tmp_path):
    async def body(h: Harness) -> None:
        start = time.monotonic()
        await h.send(*v2c("public", LINK_DOWN, f"{IF_INDEX}.7", "i", "7", f"{IF_OPER}.7", "i", "2",
                          f"{IF_NAME}.7", "s", "GigabitEthernet0/7"))
        down = only(await h.wait_events(1))
        assert time.monotonic() - start < 1.0
        assert (down.device, down.metric, down.value) == ("ups-1", "event", 1.0)
        assert down.labels == {"event": "link_down", "source": "trap", "if_index": "7",
                               "if_name": "GigabitEthernet0/7"}
        assert down.text == "linkDown" and abs(down.timestamp - time.time()) < 5
        await h.send(*v2c("public", LINK_UP, f"{IF_INDEX}.7", "i", "7", f"{IF_OPER}.7", "i", "1",
                          f"{IF_NAME}.7", "s", "GigabitEthernet0/7"))
        up = (await h.wait_events(2))[1]
        assert up.labels == down.labels and up.value == 0.0  # linkUp clears the same series
        assert h.receiver.counters.received == 2 and h.receiver.counters.delivered == 2

    run(snmptrap, tmp_path, body)


def test_v1_traps_generic_and_ups_mib(snmptrap, tmp_path):
    """SNMPv1: a generic linkDown (ifIndex from ifDescr.N's index) and the UPS-MIB on-battery
    trap, which v1 carries as enterprise 1.3.6.1.2.1.33.2 specific 1."""
    async def body(h: Harness) -> None:
        await h.send(*v1("public", "1.3.6.1.4.1.8072", 2, 0, f"{IF_DESCR}.3", "s", "eth3"))
        await h.send(*v1("public", "1.3.6.1.2.1.33.2", 6, 1, "1.3.6.1.2.1.33.1.2.3.0", "i", "42"))
        link, battery = await h.wait_events(2)
        assert link.labels == {"event": "link_down", "source": "trap", "if_index": "3",
                               "if_name": "eth3"}
        assert (battery.device, battery.labels, battery.value) == \
            ("ups-1", {"event": "ups_on_battery", "source": "trap"}, 1.0)

    run(snmptrap, tmp_path, body)


def test_v3_authpriv_with_a_learnt_and_a_configured_engine_id(snmptrap, tmp_path):
    async def body(h: Harness) -> None:
        await h.send(*v3(UPS_ON_BATTERY, "1.3.6.1.2.1.33.1.2.3.0", "i", "42"))
        event = only(await h.wait_events(1))
        assert (event.device, event.labels["event"], event.value) == \
            ("ups-1", "ups_on_battery", 1.0)
        assert h.receiver.counters.engine_ids_learnt == 1
        await h.send(*v3(UPS_ON_BATTERY))  # the learnt engine ID is kept
        await h.wait_events(2)
        assert h.receiver.counters.engine_ids_learnt == 1 and h.receiver.counters.received == 2

    run(snmptrap, tmp_path, body)

    configured = TrapUser(USER.username, "SHA", USER.auth_key, "AES", USER.priv_key,
                          engine_ids=(SENDER_ENGINE[2:],), learn_engine_ids=False)

    async def fixed(h: Harness) -> None:
        await h.send(*v3(UPS_ON_BATTERY))  # the configured engine ID: accepted
        await h.wait_events(1)
        await h.send(*v3(UPS_ON_BATTERY, engine="0x80001f8880aabbccdd99"))  # unknown engine
        await h.settle("rejected", 1)
        assert len(h.events) == 1 and h.receiver.counters.engine_ids_learnt == 0

    run(snmptrap, tmp_path, fixed, users=(configured,))


def test_informs_v2c_and_v3_are_acknowledged(snmptrap, tmp_path):
    snmpinform = peers.program("snmpinform")

    async def body(h: Harness) -> None:
        await h.send(*v2c("public", "1.3.6.1.6.3.1.1.5.1"), tool=snmpinform)  # exits 0 on ack
        await h.send(*v3("1.3.6.1.6.3.1.1.5.2", engine=None), tool=snmpinform)
        cold, warm = await h.wait_events(2)
        assert cold.labels["event"] == "cold_start" and warm.labels["event"] == "warm_start"

    run(snmptrap, tmp_path, body)


def test_vendor_trap_from_a_profile_mapping(snmptrap, tmp_path, vendor_profile):
    mappings = load_mappings([vendor_profile])

    async def body(h: Harness) -> None:
        message = "UPS: On battery power in response to an input power problem."
        await h.send(*v1("public", APC, 6, 5, APC_MESSAGE, "s", message))
        await h.send(*v2c("public", f"{APC}.0.9", APC_MESSAGE, "s", "UPS: Utility power restored."))
        await h.send(*v3(f"{APC}.0.1"))
        on, restored, lost = await h.wait_events(3)
        assert (on.labels, on.value, on.text) == \
            ({"event": "ups_on_battery", "source": "trap"}, 1.0, message)
        assert (restored.labels, restored.value) == (on.labels, 0.0)
        assert lost.labels == {"event": "ups_communication_lost", "source": "trap",
                               "card": "management"}
        assert {e.device for e in (on, restored, lost)} == {"ups-1"}

    run(snmptrap, tmp_path, body, mappings=mappings)


def test_ups_alarm_table_traps(snmptrap, tmp_path):
    alarm_descr, on_battery = "1.3.6.1.2.1.33.1.6.2.1.2", "1.3.6.1.2.1.33.1.6.3.2"

    async def body(h: Harness) -> None:
        await h.send(*v2c("public", "1.3.6.1.2.1.33.2.3", "1.3.6.1.2.1.33.1.6.2.1.1.4", "i",
                          "4", f"{alarm_descr}.4", "o", on_battery))
        added = only(await h.wait_events(1))
        assert (added.labels, added.value) == \
            ({"event": "ups_alarm", "source": "trap", "alarm": "on_battery"}, 1.0)
        await h.send(*v2c("public", "1.3.6.1.2.1.33.2.4", f"{alarm_descr}.4", "o", on_battery))
        removed, back_on_mains = (await h.wait_events(3))[1:]
        assert (removed.labels, removed.value) == (added.labels, 0.0)
        assert (back_on_mains.labels, back_on_mains.value) == \
            ({"event": "ups_on_battery", "source": "trap"}, 0.0)
        await h.send(*v2c("public", "1.3.6.1.2.1.33.2.2", "1.3.6.1.2.1.33.1.7.3.0", "i", "3",
                          "1.3.6.1.2.1.33.1.7.4.0", "s", "battery replacement needed"))
        test = (await h.wait_events(4))[3]
        assert test.labels == {"event": "ups_test_completed", "source": "trap",
                               "result": "done_error"}
        assert test.text == "battery replacement needed"

    run(snmptrap, tmp_path, body)


def test_ipv6_listener(snmptrap, tmp_path):
    async def main() -> None:
        events: list[Reading] = []
        receiver = TrapReceiver("[::1]:0", events.append, DEVICES.get, ["public"])
        await receiver.start()
        try:
            port = int(receiver.address.rsplit(":", 1)[1])
            process = await asyncio.create_subprocess_exec(
                snmptrap, "-v2c", "-c", "public", f"udp6:[::1]:{port}", "", LINK_DOWN,
                f"{IF_INDEX}.9", "i", "9", env=net_snmp_env(tmp_path))
            assert await process.wait() == 0
            deadline = time.monotonic() + 1
            while not events and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            assert only(events).device == "ups-6"
        finally:
            await receiver.close()

    asyncio.run(main())


def test_start_fails_clearly_when_the_port_is_taken():
    async def main() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
            taken.bind(("127.0.0.1", 0))
            receiver = TrapReceiver(f"127.0.0.1:{taken.getsockname()[1]}", print, DEVICES.get)
            with pytest.raises(OSError, match="in use"):
                await receiver.start()
            await receiver.close()

    asyncio.run(main())


# --- what is dropped, and counted -----------------------------------------------------------


def test_unknown_source_is_counted_not_delivered(snmptrap, tmp_path, caplog):
    async def body(h: Harness) -> None:
        for i in range(3):
            await h.send(*v2c("public", LINK_DOWN, f"{IF_INDEX}.1", "i", "1"), source="127.0.0.2")
            await h.settle("unknown_source", i + 1)
        lines = [r for r in caplog.records if "127.0.0.2" in r.getMessage()]
        assert len(lines) == 1 and "no device" in lines[0].getMessage()  # rate-limited
        await h.send(*v2c("public", LINK_DOWN, f"{IF_INDEX}.2", "i", "2"))  # still receiving
        assert only(await h.wait_events(1)).labels["if_index"] == "2"
        assert h.receiver.counters.received == 4 and h.receiver.counters.delivered == 1

    run(snmptrap, tmp_path, body)


def test_relayed_trap_resolves_by_its_agent_address(snmptrap, tmp_path):
    """A v1 trap sent from an unknown address (a relay) whose agent-addr is the device's."""
    async def body(h: Harness) -> None:
        await h.send(*v1("public", "1.3.6.1.2.1.33.2", 6, 1), source="127.0.0.2")
        assert only(await h.wait_events(1)).device == "ups-1"

    run(snmptrap, tmp_path, body)


def test_wrong_community_and_wrong_v3_keys_are_rejected(snmptrap, tmp_path):
    async def body(h: Harness) -> None:
        await h.send(*v2c("private", LINK_DOWN))
        await h.send(*v1("wrong", "1.3.6.1.2.1.33.2", 6, 1))
        await h.settle("rejected", 2)
        await h.send(*v3(UPS_ON_BATTERY, auth_pass="not-the-auth-pass"))
        await h.settle("rejected", 3)
        assert h.events == [] and h.receiver.counters.engine_ids_learnt == 0
        await h.send(*v3(UPS_ON_BATTERY))  # the engine ID wrongly tried first was not kept
        assert only(await h.wait_events(1)).labels["event"] == "ups_on_battery"

    run(snmptrap, tmp_path, body)


def test_v3_trap_outside_the_time_window_is_rejected(snmptrap, tmp_path):
    """USM timeliness: an engine's clock that goes back more than 150 s (a replay)."""
    async def body(h: Harness) -> None:
        await h.send("-Z", "7,5000", *v3(UPS_ON_BATTERY))
        await h.wait_events(1)
        await h.send("-Z", "7,100", *v3(UPS_ON_BATTERY))
        await h.settle("rejected", 1)
        await h.send("-Z", "8,10", *v3(UPS_ON_BATTERY))  # rebooted (boots + 1): accepted
        assert len(await h.wait_events(2)) == 2

    run(snmptrap, tmp_path, body)


def test_garbage_does_not_stop_the_receiver(snmptrap, tmp_path):
    async def body(h: Harness) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for junk in (b"", b"\x00", b"garbage", b"\x30\x03\x02\x01\x01",
                         b"\x30\x82\xff\xff" + os.urandom(64), os.urandom(1400)):
                sock.sendto(junk, ("127.0.0.1", h.port))
            # a well-formed v2c GET is SNMP, but no notification
            sock.sendto(bytes.fromhex("302602010104067075626c6963a0190204000000010201000201"
                                      "00300b300906052b060102010500"), ("127.0.0.1", h.port))
        await h.settle("undecodable", 7)
        await h.send(*v2c("public", LINK_DOWN, f"{IF_INDEX}.5", "i", "5"))
        assert only(await h.wait_events(1)).labels["if_index"] == "5"
        assert h.receiver.counters.datagrams == 8

    run(snmptrap, tmp_path, body)


def test_unmapped_trap_is_delivered_as_snmp_trap(snmptrap, tmp_path):
    async def body(h: Harness) -> None:
        await h.send(*v2c("public", "1.3.6.1.4.1.99999.0.42", "1.3.6.1.4.1.99999.1.1.0", "s",
                          "door open"))
        event = only(await h.wait_events(1))
        assert event.labels == {"event": "snmp_trap", "source": "trap",
                                "oid": "1.3.6.1.4.1.99999.0.42"}
        assert "door open" in (event.text or "")
        assert h.receiver.counters.unmapped == 1

    run(snmptrap, tmp_path, body)


def test_credentials_as_the_agent_passes_them(snmptrap, tmp_path):
    """SnmpAuth entries (credentials.yaml) mixed in one list: v2c communities and v3 users."""
    auths = [SnmpAuth("2c", community="site-community"),
             SnmpAuth("3", username=USER.username, auth_protocol="SHA",
                      auth_password=USER.auth_key, priv_protocol="AES",
                      priv_password=USER.priv_key)]

    async def body(h: Harness) -> None:
        await h.send(*v2c("site-community", UPS_ON_BATTERY))
        await h.send(*v3(UPS_ON_BATTERY))
        assert len(await h.wait_events(2)) == 2

    run(snmptrap, tmp_path, body, users=auths, communities=())


def test_receiver_throughput(snmptrap, tmp_path):
    """Replays real snmptrap datagrams (v2c linkDown, v3 authPriv) as fast as the receiver
    takes them; prints traps per second and CPU per trap."""
    captured: dict[str, bytes] = {}

    async def capture() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
            sink.bind(("127.0.0.1", 0))
            sink.setblocking(False)
            port = sink.getsockname()[1]
            loop = asyncio.get_running_loop()
            for name, args in (("v2c", v2c("public", LINK_DOWN, f"{IF_INDEX}.7", "i", "7")),
                               ("v3", v3(UPS_ON_BATTERY))):
                command = [a.replace("{target}", f"127.0.0.1:{port}") for a in args]
                process = await asyncio.create_subprocess_exec(
                    snmptrap, *command, env=net_snmp_env(tmp_path),
                    stderr=asyncio.subprocess.DEVNULL)
                await process.wait()
                captured[name] = (await asyncio.wait_for(loop.sock_recvfrom(sink, 4096), 5))[0]

    asyncio.run(capture())
    figures = []

    async def blast(h: Harness) -> None:
        for name, datagram in captured.items():
            before = h.receiver.counters.received
            n = 2000
            cpu, wall = time.process_time(), time.perf_counter()
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for i in range(n):
                    sock.sendto(datagram, ("127.0.0.1", h.port))
                    if i % 100 == 99:  # keep within the socket buffer: let the receiver run
                        await asyncio.sleep(0)
                        while h.receiver.counters.received - before < i - 200:
                            await asyncio.sleep(0.001)
            await h.settle("received", before + n, within=30)
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
            figures.append(f"{name}: {n / wall:.0f} traps/s, {cpu / n * 1e6:.0f} us CPU per trap")
        assert len(h.events) == 4000

    run(snmptrap, tmp_path, blast)
    print("\nreceiver throughput (sender in the same process): " + "; ".join(figures))


# --- the mapping schema ---------------------------------------------------------------------


def test_standard_mappings_and_profiles_load():
    standard = load_mappings()
    assert {LINK_DOWN, LINK_UP, UPS_ON_BATTERY, "1.3.6.1.2.1.33.2.3"} <= set(standard.by_oid)
    assert len(load_mappings(load_profiles())) == len(standard)  # built-ins add none yet


def test_profile_file_accepts_the_traps_section(vendor_profile):
    """What the agent wiring adds to ProfileFile: `traps: list[TrapDef]`. Checked here on a
    subclass, so the proposal is known to validate a real profile file."""
    class ProfileFileWithTraps(ProfileFile):
        traps: list[TrapDef] = Field(default_factory=list, description="SNMP traps.")

    doc = load_yaml(vendor_profile)
    model = validate(ProfileFileWithTraps, doc)
    assert [t.event for t in model.traps] == ["ups_on_battery", "ups_on_battery",
                                              "ups_communication_lost"]

    class ProfileSetLike:  # load_mappings reads the model's traps once ProfileFile has them
        def __init__(self) -> None:
            profile = type("P", (), {"name": "apc-smart-ups", "doc": doc, "model": model})()
            self.profiles = {"apc-smart-ups": profile}

    assert f"{APC}.0.5" in load_mappings(ProfileSetLike()).by_oid


@pytest.mark.parametrize(("entry", "message"), [
    ("{oid: 1.3.6.1.4.1.1.0.1, event: x, colour: red}", "colour"),
    ("{oid: not-an-oid, event: x}", "not a numeric OID"),
    ("{oid: 1.3.6.1.4.1.1.0.1, event: Bad-Name}", "not an event name"),
    ("{oid: 1.3.6.1.4.1.1.0.1, event: x, labels: {device: a}}", "reserved"),
    ("{oid: 1.3.6.1.4.1.1.0.1, event: x, value: 0, value_from: {varbind: 1.3.6.1, map: {}}}",
     "not both"),
    ("{oid: 1.3.6.1.4.1.1.0.1, event: x, labels: {a: {varbind: 1.3.6.1, form: hex}}}", "form"),
])
def test_mapping_mistakes_name_file_and_line(tmp_path, entry, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nmetrics: []\ntraps:\n  - {entry}\n")
    with pytest.raises(ConfigErrors) as caught:
        load_mappings([path])
    text = str(caught.value)
    assert message in text and "bad.yaml" in text and ":4" in text, text


def test_two_profiles_mapping_one_trap_differently_is_an_error(tmp_path, vendor_profile):
    other = tmp_path / "other-ups.yaml"
    other.write_text(VENDOR_PROFILE.replace("apc-smart-ups", "other-ups")
                     .replace("event: ups_communication_lost", "event: comms_lost"))
    with pytest.raises(ConfigErrors, match="mapped differently"):
        load_mappings([vendor_profile, other])
    same = tmp_path / "same-ups.yaml"
    same.write_text(VENDOR_PROFILE.replace("apc-smart-ups", "same-ups"))
    assert len(load_mappings([vendor_profile, same])) == len(load_mappings([vendor_profile]))


def test_a_profile_replaces_the_standard_mapping_of_an_oid(tmp_path):
    path = tmp_path / "quirky.yaml"
    path.write_text(f"name: quirky\nmetrics: []\ntraps:\n"
                    f"  - {{oid: {LINK_DOWN}, event: port_down, labels: {{port: {{varbind: "
                    f"{IF_INDEX}}}}}}}\n")
    mappings = load_mappings([path])
    [reading] = mappings.events("sw", LINK_DOWN, [(f"{IF_INDEX}.4", "4", None)], 0.0) or []
    assert reading.labels == {"event": "port_down", "source": "trap", "port": "4"}
