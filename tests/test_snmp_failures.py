"""Every way a device can fail gives up=0 with the right reason, from either engine.

Real peers on loopback: net-snmp snmpd (SNMPv3 authPriv), snmpsim, a UDP socket that answers
garbage, and a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import threading

import pytest

from collectors.reading import PollResult
from collectors.snmp import engine
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import SnmpAuth, Target, make_engine
from collectors.snmp.fetch import FetchLimits
from tests import peers
from tests.conftest import value

pytestmark = pytest.mark.faults

ENGINES = list(engine.ENGINES)
V3_USERS = [("vigil", "SHA-256", "authsecret-256", "AES", "privsecret-aes"),
            ("legacy", "SHA", "authsecret-sha", "AES", "privsecret-aes")]


def poll(port: int, auth: SnmpAuth, profiles, profile: str | None = "generic",
         engine: str = "pysnmp", timeout: float = 0.5, retries: int = 0,
         deadline: float = 10.0) -> PollResult:
    async def run() -> PollResult:
        snmp_engine = make_engine(engine)
        try:
            job = SnmpJob("dev", Target("127.0.0.1", port, auth, timeout, retries), profile,
                          FetchLimits(25, 32, 60, auth.version != "1"), deadline)
            return await SnmpCollector(snmp_engine, profiles).poll(job)
        finally:
            await snmp_engine.close()

    return asyncio.run(run())


@pytest.fixture(scope="module")
def snmpd_port(tmp_path_factory):
    with peers.snmpd(tmp_path_factory.mktemp("snmpd"), V3_USERS) as port:
        yield port


def v3(user="vigil", auth="SHA256", auth_pw="authsecret-256", priv="AES",
       priv_pw="privsecret-aes") -> SnmpAuth:
    return SnmpAuth("3", username=user, auth_protocol=auth, auth_password=auth_pw,
                    priv_protocol=priv, priv_password=priv_pw)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("auth", [v3(), v3("legacy", "SHA", "authsecret-sha")],
                         ids=["sha256-aes", "sha1-aes"])
def test_v3_authpriv_against_snmpd(snmpd_port, profiles, engine, auth):
    result = poll(snmpd_port, auth, profiles, engine=engine, timeout=2, retries=1)
    assert result.up, result.detail
    assert value(result, "device_uptime_seconds") > 0
    assert any(r.metric == "interface_oper_status" and r.labels["interface"] == "lo"
               for r in result.readings)


@pytest.mark.parametrize("engine", ENGINES)
def test_v3_wrong_password_is_auth(snmpd_port, profiles, engine):
    result = poll(snmpd_port, v3(auth_pw="wrong-password"), profiles, engine=engine, timeout=2)
    assert (result.up, result.reason) == (False, "auth")
    assert "vigil" in result.detail and "wrong-password" not in result.detail


@pytest.mark.parametrize("engine", ENGINES)
def test_v3_unknown_user_is_auth(snmpd_port, profiles, engine):
    result = poll(snmpd_port, v3(user="nobody"), profiles, engine=engine, timeout=2)
    assert (result.up, result.reason) == (False, "auth")


@pytest.mark.parametrize("engine", ENGINES)
def test_wrong_community_is_timeout(snmpd_port, profiles, engine):
    result = poll(snmpd_port, SnmpAuth("2c", community="not-the-community"), profiles,
                  engine=engine, timeout=0.3, retries=1)
    assert (result.up, result.reason) == (False, "timeout")
    assert "2 tries" in result.detail and "not-the-community" not in result.detail


@pytest.mark.parametrize("engine", ["pysnmp", "builtin"])
def test_closed_port_is_refused(profiles, engine):
    port = peers.free_port()  # nothing listens there: the kernel answers port-unreachable
    result = poll(port, SnmpAuth("2c", community="public"), profiles, timeout=1, engine=engine)
    assert (result.up, result.reason) == (False, "refused")


def test_closed_port_with_ezsnmp_times_out(profiles):
    # net-snmp does not report ICMP port-unreachable: the same dead port reads as a timeout
    result = poll(peers.free_port(), SnmpAuth("2c", community="public"), profiles,
                  engine="ezsnmp", timeout=0.3)
    assert (result.up, result.reason) == (False, "timeout")


@pytest.fixture
def garbage_port():
    """A UDP peer that answers every datagram with bytes that are not SNMP."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve():
        while not stop.is_set():
            try:
                _, peer = sock.recvfrom(65535)
            except OSError:
                continue
            sock.sendto(b"\x30\x82\xff\xffHELLO this is not BER", peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.mark.parametrize("engine", ENGINES)
def test_garbage_answer_is_protocol(garbage_port, profiles, engine):
    result = poll(garbage_port, SnmpAuth("2c", community="public"), profiles, engine=engine,
                  timeout=0.5)
    assert result.up is False
    # Vigil's socket sees the malformed datagram; net-snmp drops it silently and times out
    assert result.reason == ("timeout" if engine == "ezsnmp" else "protocol")
    if engine != "ezsnmp":
        assert "malformed response" in result.detail


@pytest.fixture(scope="module")
def sparse_sim(tmp_path_factory):
    """snmpsim serving a device that has only its system group, and one with nothing at all."""
    work = tmp_path_factory.mktemp("sparse")
    data = work / "data"
    data.mkdir()
    (data / "sysonly.snmprec").write_text(
        "1.3.6.1.2.1.1.1.0|4|Some appliance\n1.3.6.1.2.1.1.2.0|6|1.3.6.1.4.1.99999.1\n"
        "1.3.6.1.2.1.1.3.0|67|12345\n")
    (data / "empty.snmprec").write_text("1.3.6.1.4.1.99999.7.7.0|2|1\n")
    (data / "quirky.snmprec").write_text(
        "1.3.6.1.2.1.1.3.0|67|100\n"
        "1.3.6.1.2.1.33.1.2.1.0|4|not a number\n"
        "1.3.6.1.2.1.33.1.2.3.0|5|\n"
        "1.3.6.1.2.1.33.1.2.4.0|4x|3935\n"
        "1.3.6.1.2.1.33.1.4.4.1.5.1|66|40\n"
        "1.3.6.1.2.1.33.1.4.4.1.5.2.7|66|41\n")
    with peers.snmpsim(data, work) as port:
        yield port


@pytest.mark.parametrize("engine", ENGINES)
def test_no_such_object_everywhere_is_no_data(sparse_sim, profiles, engine):
    result = poll(sparse_sim, SnmpAuth("2c", community="empty"), profiles, profile="ups-mib",
                  engine=engine, timeout=2)
    assert (result.up, result.reason) == (False, "no_data")
    assert "ups-mib" in result.detail


def test_device_with_only_system_group_is_up_with_generic(sparse_sim, profiles):
    result = poll(sparse_sim, SnmpAuth("2c", community="sysonly"), profiles, profile=None,
                  timeout=2)
    assert result.up and result.profile == "generic"
    assert value(result, "device_uptime_seconds") == 123.45


def test_bad_values_are_reported_per_oid_not_fatal(sparse_sim, profiles):
    result = poll(sparse_sim, SnmpAuth("2c", community="quirky"), profiles, profile="ups-mib",
                  timeout=2)
    assert result.up, result.detail
    # "not a number" where UPS-MIB wants an integer: a problem naming metric and OID
    assert any("ups_battery_status 1.3.6.1.2.1.33.1.2.1" in p and "not a number" in p
               for p in result.problems), result.problems
    # a NULL is no reading, not a problem; a hex-string number ('95') is still a number
    assert not any("33.1.2.3" in p for p in result.problems)
    assert value(result, "ups_battery_charge_ratio") == 0.95
    # index '2.7' does not fit the one-number index: reported, the good row is kept
    assert value(result, "ups_output_load_ratio", line="1") == 0.40
    assert any("index '2.7'" in p for p in result.problems)


def test_dead_device_costs_only_its_own_deadline(snmpd_port, profiles):
    """Polls of a live and a dead device run side by side; the dead one ends at its deadline."""
    async def run():
        engine = make_engine("pysnmp")
        collector = SnmpCollector(engine, profiles)
        silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        dead = SnmpJob("dead", Target("127.0.0.1", silent.getsockname()[1],
                                      SnmpAuth("2c", community="x"), 5, 5),
                       "generic", FetchLimits(25, 32, 60, True), deadline=1.5)
        live = SnmpJob("live", Target("127.0.0.1", snmpd_port, SnmpAuth("2c", community="public"),
                                      2, 0), "generic", FetchLimits(25, 32, 60, True), 10)
        loop = asyncio.get_running_loop()
        started = loop.time()
        dead_task = asyncio.create_task(collector.poll(dead))
        live_result = await collector.poll(live)
        live_done = loop.time() - started
        dead_result = await dead_task
        dead_done = loop.time() - started
        silent.close()
        await engine.close()
        return live_result, live_done, dead_result, dead_done

    live, live_done, dead, dead_done = asyncio.run(run())
    assert live.up and live_done < 1.0
    assert (dead.up, dead.reason) == (False, "timeout") and "deadline of 1.5s" in dead.detail
    assert 1.4 < dead_done < 2.5


def test_snmp_tools_present_for_benchmarks():
    # the bench compares against net-snmp's snmpbulkget; CI installs it with the rest
    assert shutil.which("snmpbulkget") or peers.missing("snmpbulkget (apt-get install snmp)")


def test_vendor_profile_constants_do_not_make_a_silent_device_up(sparse_sim, profiles):
    # hikvision-camera gives device_info a constant vendor label; the device has no data
    result = poll(sparse_sim, SnmpAuth("2c", community="empty"), profiles,
                  profile="hikvision-camera", timeout=2)
    assert (result.up, result.reason) == (False, "no_data")


@pytest.fixture(scope="module")
def snmpd6_port(tmp_path_factory):
    with peers.snmpd(tmp_path_factory.mktemp("snmpd6"), V3_USERS, ipv6=True) as port:
        yield port


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("auth", [SnmpAuth("2c", community="public"), v3()], ids=["v2c", "v3"])
def test_ipv6_loopback_target(snmpd6_port, profiles, engine, auth):
    async def run() -> PollResult:
        snmp_engine = make_engine(engine)
        try:
            job = SnmpJob("dev6", Target("::1", snmpd6_port, auth, 2, 1), "generic",
                          FetchLimits(25, 32, 60, True), 10)
            return await SnmpCollector(snmp_engine, profiles).poll(job)
        finally:
            await snmp_engine.close()

    result = asyncio.run(run())
    assert result.up, result.detail
    assert value(result, "device_uptime_seconds") > 0


class SlowRelay:
    """A device that answers slowly: every datagram to and from snmpd held `delay` seconds
    (a congested radio link, a device busy with a firmware task)."""

    def __init__(self, upstream: int, delay: float) -> None:
        self.upstream, self.delay = ("127.0.0.1", upstream), delay
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.bind(("127.0.0.1", 0))
        self.client: tuple[str, int] | None = None
        self.closed = False
        for target in (self._down, self._back):
            threading.Thread(target=target, daemon=True).start()

    def _later(self, sock: socket.socket, data: bytes, to: tuple[str, int]) -> None:
        timer = threading.Timer(self.delay, lambda: self.closed or sock.sendto(data, to))
        timer.daemon = True
        timer.start()

    def _down(self) -> None:
        while not self.closed:
            try:
                data, self.client = self.sock.recvfrom(65535)
            except OSError:
                return
            self._later(self.up, data, self.upstream)

    def _back(self) -> None:
        while not self.closed:
            try:
                data, _ = self.up.recvfrom(65535)
            except OSError:
                return
            if self.client is not None:
                self._later(self.sock, data, self.client)

    def close(self) -> None:
        self.closed = True
        self.sock.close()
        self.up.close()


def test_slow_devices_answer_within_their_timeout_or_time_out_alone(snmpd_port, profiles):
    """Three devices polled side by side: one answers at once, one 0.6 s late (each way:
    inside its 2 s timeout), one 2 s late (outside its 1 s timeout). The slow one is up and
    read whole; the slower one is down with reason timeout at its own deadline; the fast one
    is neither held back by them nor changed."""
    slow, slower = SlowRelay(snmpd_port, 0.3), SlowRelay(snmpd_port, 1.0)
    community = SnmpAuth("2c", community="public")

    async def run():
        engine = make_engine("pysnmp")
        collector = SnmpCollector(engine, profiles)
        limits = FetchLimits(25, 32, 60, True)
        jobs = [SnmpJob("fast", Target("127.0.0.1", snmpd_port, community, 2, 0), "generic",
                        limits, 20),
                SnmpJob("slow", Target("127.0.0.1", slow.port, community, 2, 0), "generic",
                        limits, 20),
                SnmpJob("slower", Target("127.0.0.1", slower.port, community, 0.5, 1),
                        "generic", limits, 3)]
        loop = asyncio.get_running_loop()
        started = loop.time()

        async def timed(job):
            result = await collector.poll(job)
            return result, loop.time() - started

        try:
            return await asyncio.gather(*(timed(job) for job in jobs))
        finally:
            await engine.close()

    try:
        (fast, fast_s), (slow_r, slow_s), (slower_r, slower_s) = asyncio.run(run())
    finally:
        slow.close()
        slower.close()
    assert fast.up and fast_s < 1.5, (fast, fast_s)
    assert slow_r.up and slow_s >= 0.6, (slow_r.detail, slow_s)
    assert {r.metric for r in slow_r.readings} == {r.metric for r in fast.readings}
    assert (slower_r.up, slower_r.reason) == (False, "timeout"), slower_r.detail
    assert slower_s < 3.5
