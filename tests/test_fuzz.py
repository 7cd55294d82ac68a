"""Fuzzing of the parsers that read what devices and engineers send: no crash, no hang.

- ONVIF: SOAP answers (the demo simulator's own answers as seeds, mutated: elements removed,
  duplicated, retyped, renamed into a wrong namespace, truncated, blown up, or random bytes)
  go through the real client stack (zeep, Vigil's transport check) into the collector's
  readers: each ends in readings or an OnvifFailure, never another exception.
- YAML: agent.yaml, credentials, inventory, rule files and SNMP profiles, built from the
  shipped files by mutation and from plausible keys and values: each loads or raises
  ConfigError/ConfigErrors naming the file (and a line within it when there is one).
- RTSP: answers read by the RTSP client and SDP descriptions: a Response / VideoInfo, or an
  RtspError / SdpError.

Every example runs under a wall-clock bound (SIGALRM). The counts are small in the normal
suite; VIGIL_FUZZ_EXAMPLES=N runs N examples per test (docs/fuzzing.md), and the number of
inputs tried per test is printed at the end of the module.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections import Counter
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

pytestmark = pytest.mark.fuzz

ROOT = Path(__file__).resolve().parent.parent
LONG = int(os.environ.get("VIGIL_FUZZ_EXAMPLES", "0"))
PER_EXAMPLE_SECONDS = 5.0
TRIED: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()  # how the inputs ended: shows they reach the readers


def fuzz_settings(normal: int):
    """`normal` examples in the suite, VIGIL_FUZZ_EXAMPLES in a long run."""
    return settings(max_examples=LONG or normal, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


class Hang(BaseException):
    """An example ran past its bound (BaseException: no `except Exception` swallows it)."""


@contextlib.contextmanager
def bounded(seconds: float = PER_EXAMPLE_SECONDS):
    def alarm(_signum, _frame):
        raise Hang(f"no result within {seconds:g}s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@pytest.fixture(scope="module", autouse=True)
def summary(request):
    yield
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    line = "fuzz inputs tried: " + ", ".join(f"{k}={v}" for k, v in sorted(TRIED.items())) + \
        f" (total {sum(TRIED.values())}); outcomes: " + \
        ", ".join(f"{k}={v}" for k, v in sorted(OUTCOMES.items()))
    with capture.global_and_fixture_disabled() if capture else contextlib.nullcontext():
        print(f"\n{line}")
    out = os.environ.get("VIGIL_FUZZ_COUNTS")
    if out:
        Path(out).write_text(line + "\n", encoding="utf-8")


# --- generic mutations ----------------------------------------------------------------------

WEIRD_TEXT = st.one_of(
    st.sampled_from(["", " ", "-1", "0", "99999999999999999999999", "1e400", "NaN", "true",
                     "null", "~", "1970-01-01T00:00:00Z", "PT5S", "\u0000", "\ufffd", "é中文",
                     "<", "&amp;", "]]>", "x" * 5000]),
    st.text(max_size=40))


@st.composite
def byte_mutation(draw, data: bytes) -> bytes:
    """Truncate, cut out, insert, flip or repeat bytes of a document."""
    kind = draw(st.sampled_from(["truncate", "cut", "insert", "flip", "repeat", "random"]))
    n = len(data)
    if kind == "random":
        return draw(st.binary(max_size=2000))
    at = draw(st.integers(0, n))
    if kind == "truncate":
        return data[:at]
    if kind == "cut":
        return data[:at] + data[at + draw(st.integers(1, 200)):]
    if kind == "insert":
        return data[:at] + draw(st.binary(min_size=1, max_size=50)) + data[at:]
    if kind == "flip":
        if not n:
            return data
        i = min(at, n - 1)
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    end = min(n, at + draw(st.integers(1, 300)))
    return data[:at] + data[at:end] * draw(st.integers(2, 300)) + data[end:]


# --- ONVIF ----------------------------------------------------------------------------------

def _onvif_seeds() -> dict[str, list[bytes]]:
    """Valid answers of the demo simulator, per operation, for several vendor styles."""
    from agent.demo import onvif as sim

    seeds: dict[str, list[bytes]] = {}
    for i, vendor in enumerate(["hikvision", "axis", "dahua"]):
        config = sim.CameraConfig(name=f"c{i}", port=10000 + i, vendor=vendor, ptz=True,
                                  ptz_moving=bool(i % 2), ptz_error="" if i else "Motor fault")
        simulator = sim.OnvifSimulator([config])
        camera = simulator.camera(config.name)
        token = camera.profiles()[0]["token"]

        def request(ns: str, tag: str, token: str = token) -> etree._Element:
            element = etree.Element(f"{{{ns}}}{tag}")
            etree.SubElement(element, f"{{{ns}}}ProfileToken").text = token
            return element

        contents = {
            "GetSystemDateAndTime": sim.op_system_date_and_time(camera, None),
            "GetDeviceInformation": sim.op_device_information(camera, None),
            "GetProfiles": sim.op_profiles(camera, None),
            "GetStreamUri": sim.op_stream_uri(camera, request(sim.TRT, "GetStreamUri")),
            "GetStatus": sim.op_ptz_status(camera, request(sim.TPTZ, "GetStatus")),
            "GetPresets": sim.op_ptz_presets(camera, request(sim.TPTZ, "GetPresets")),
        }
        messages = "".join(camera.notification(kind, bool(j % 2), op)
                           for j, (kind, op) in enumerate(
                               [(k, o) for k in camera.style.topics
                                for o in ("Initialized", "Changed")]))
        contents["PullMessages"] = (
            f"<tev:PullMessagesResponse><tev:CurrentTime>{sim._iso(camera.now())}"
            f"</tev:CurrentTime><tev:TerminationTime>{sim._iso(camera.now() + 60)}"
            f"</tev:TerminationTime>{messages}</tev:PullMessagesResponse>")
        for op, content in contents.items():
            seeds.setdefault(op, []).append(simulator._envelope(camera, content).encode())
    return seeds


ONVIF_SEEDS = _onvif_seeds()
ONVIF_READERS = {  # which reader of a poll each fuzzed operation feeds
    "GetSystemDateAndTime": "clock", "GetDeviceInformation": "identity",
    "GetProfiles": "profiles", "GetStreamUri": "profiles", "GetStatus": "ptz",
    "GetPresets": "ptz", "PullMessages": "events",
}


@st.composite
def xml_mutation(draw, data: bytes) -> bytes:
    """Structural mutations of a SOAP answer, then maybe byte mutations on top."""
    root = etree.fromstring(data)
    for _ in range(draw(st.integers(1, 3))):
        elements = list(root.iter())
        target = elements[draw(st.integers(0, len(elements) - 1))]
        parent = target.getparent()
        kind = draw(st.sampled_from(["remove", "duplicate", "retype", "namespace", "rename",
                                     "huge", "children", "attribute"]))
        if kind == "remove" and parent is not None:
            parent.remove(target)
        elif kind == "duplicate" and parent is not None:
            for _ in range(draw(st.integers(1, 3))):
                parent.insert(parent.index(target), etree.fromstring(etree.tostring(target)))
        elif kind == "retype":
            for child in list(target):
                target.remove(child)
            target.text = draw(WEIRD_TEXT.filter(_xml_ok))
        elif kind == "namespace":
            local = etree.QName(target).localname
            ns = draw(st.sampled_from(["http://example.com/wrong", "urn:x",
                                       "http://www.onvif.org/ver10/schema",
                                       "http://www.w3.org/2003/05/soap-envelope"]))
            target.tag = f"{{{ns}}}{local}"
        elif kind == "rename":
            ns = etree.QName(target).namespace
            name = draw(st.from_regex(r"[A-Za-z][A-Za-z0-9]{0,12}", fullmatch=True))
            target.tag = f"{{{ns}}}{name}" if ns else name
        elif kind == "huge" and parent is not None:
            copies = draw(st.integers(50, 2000))
            for _ in range(copies):
                parent.append(etree.fromstring(etree.tostring(target)))
        elif kind == "children":
            target.append(etree.fromstring(etree.tostring(root)))
        elif kind == "attribute":
            name = draw(st.sampled_from(["Name", "Value", "token", "PropertyOperation",
                                         "UtcTime", "Dialect", "fixed"]))
            target.set(name, draw(WEIRD_TEXT.filter(_xml_ok)))
    out = etree.tostring(root, xml_declaration=True, encoding="UTF-8")
    if draw(st.booleans()):
        out = draw(byte_mutation(out))
    return out


def _xml_ok(text: str) -> bool:
    try:
        etree.Element("x").text = text
        return True
    except ValueError:
        return False


class FakeCamera:
    """Answers every request of the real client stack with bytes chosen by the test."""

    def __init__(self) -> None:
        self.answers: dict[str, bytes] = {}

    async def post_xml(self, address, envelope, headers):
        body = next(e for e in envelope.iter() if etree.QName(e).localname == "Body")
        operation = etree.QName(body[0]).localname
        response = requests.Response()
        response.status_code = 200
        response._content = self.answers.get(operation) or ONVIF_SEEDS[operation][0]
        response.headers["Content-Type"] = "application/soap+xml; charset=utf-8"
        response.encoding = "utf-8"
        return response


@pytest.fixture(scope="module")
def onvif_rig():
    """One session with devicemgmt, media, PTZ and pull-point clients on a fake transport."""
    from collectors.onvif import errors
    from collectors.onvif.events import PULLPOINT_NS
    from collectors.onvif.session import NAMESPACES, Session

    loop = asyncio.new_event_loop()
    fake = FakeCamera()

    async def build():
        session = Session("127.0.0.1", 9, "admin", "secret")
        session.learnt = True
        session.services = {label: f"http://127.0.0.1:9/onvif/{label}"
                            for label in NAMESPACES.values()}
        session.camera.xaddrs = {ns: f"http://127.0.0.1:9/onvif/{label}"
                                 for ns, label in NAMESPACES.items()}
        session.camera.xaddrs[PULLPOINT_NS] = "http://127.0.0.1:9/onvif/pullpoint"
        clients = {name: await session.service(name) for name in ("devicemgmt", "media", "ptz")}
        clients["pullpoint"] = await session.camera.create_pullpoint_service()
        for service in clients.values():
            service.transport._vigil_instrumented = False
            service.transport.post_xml = fake.post_xml
            errors.instrument(service)
        return session, clients

    session, clients = loop.run_until_complete(build())
    yield loop, fake, session, clients
    loop.run_until_complete(session.close())
    loop.close()


async def _onvif_read(session, clients, reader: str):
    """Run one reader of a poll (or one PullMessages) as the collector and events do."""
    from collectors.onvif.collector import OnvifCollector, OnvifJob, _get, _Poll
    from collectors.onvif.events import to_reading
    from collectors.reading import PollResult

    job = OnvifJob("cam", "127.0.0.1", 9, "admin", "secret", 2.0, True, 10.0)
    result = PollResult(device="cam", timestamp=0.0, duration=0.0, up=False, collector="onvif")
    poll = _Poll(OnvifCollector(), job, result, asyncio.get_running_loop().time())
    poll.remaining = lambda: 10.0
    if reader == "clock":
        session.time_needs_auth = False
        await poll.read_clock(session)
    elif reader == "identity":
        session.identity = None
        await poll.read_identity(session)
    elif reader == "profiles":
        await poll.read_profiles(session)
    elif reader == "ptz":
        profiles = await session.call("GetProfiles", clients["media"].GetProfiles)
        await poll.read_ptz(session, profiles or [])
    else:
        answer = await session.call("PullMessages", clients["pullpoint"].PullMessages,
                                    {"Timeout": "PT1S", "MessageLimit": 10})
        for notification in _get(answer, "NotificationMessage") or []:
            poll.readings.append(to_reading("cam", notification, 0.0))
    return poll.readings


onvif_cases = st.sampled_from(sorted(ONVIF_SEEDS)).flatmap(
    lambda op: st.tuples(st.just(op), st.sampled_from(ONVIF_SEEDS[op]).flatmap(
        lambda seed: st.one_of(xml_mutation(seed), byte_mutation(seed)))))


def _check_onvif(rig, operation: str, answer: bytes) -> None:
    from collectors.onvif.errors import OnvifFailure

    loop, fake, session, clients = rig
    fake.answers = {operation: answer}
    TRIED[f"onvif_{operation}"] += 1
    with bounded():
        try:
            loop.run_until_complete(_onvif_read(session, clients, ONVIF_READERS[operation]))
            OUTCOMES["onvif readings"] += 1
        except OnvifFailure as exc:
            assert exc.reason in ("protocol", "fault", "auth", "unsupported"), exc
            assert exc.detail
            OUTCOMES[f"onvif {exc.reason}"] += 1


@fuzz_settings(150)
@given(case=onvif_cases)
def test_onvif_answers(onvif_rig, case):
    _check_onvif(onvif_rig, *case)


def test_onvif_seeds_read_cleanly(onvif_rig):
    """The unmutated seeds give readings (the rig reaches the readers at all)."""
    loop, fake, session, clients = onvif_rig
    for operation, seeds in ONVIF_SEEDS.items():
        for seed in seeds:
            fake.answers = {operation: seed}
            readings = loop.run_until_complete(
                _onvif_read(session, clients, ONVIF_READERS[operation]))
            if operation != "PullMessages":
                assert readings, operation
