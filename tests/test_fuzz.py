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
import base64
import contextlib
import os
import re
import signal
from collections import Counter
from pathlib import Path

import pytest
import requests
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from lxml import etree

from agent import yamlfile

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


# --- YAML loaders ---------------------------------------------------------------------------

def _shipped(*patterns: str) -> list[Path]:
    return sorted(p for pattern in patterns for p in ROOT.glob(pattern))


def _words() -> tuple[list[str], list[object]]:
    """Every key and scalar of the shipped YAML files: the fuzzer's plausible vocabulary."""
    keys: set[str] = set()
    scalars: set[object] = set()

    def walk(node):
        if isinstance(node, dict):
            for k, v in node.items():
                keys.add(str(k))
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
        elif isinstance(node, str | int | float | bool) and not isinstance(node, bool):
            scalars.add(node)
    for path in _shipped("config/*.yaml", "config/rules/*.yaml", "collectors/profiles/*.yaml"):
        walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return sorted(keys), sorted(scalars, key=repr)


KEYS, SCALARS = _words()
scalars = st.one_of(st.sampled_from(SCALARS), st.none(), st.booleans(),
                    st.integers(-2**70, 2**70), st.floats(allow_nan=True), WEIRD_TEXT,
                    st.sampled_from(["30s", "0s", "-5m", "1h2", "2026-02-30", "12:60",
                                     "1.3.6.1.2.1.1.3.0", ".1.3", "{{ x }}", "$(x)", "127.0.0.1",
                                     "::1", "999.1.1.1", "sha512", "aes256", "v3", "2c"]))
plausible = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=5)),
    max_leaves=25)


@st.composite
def data_mutation(draw, data):
    """Remove, duplicate, retype, add or rename one node of a loaded document."""
    nodes = []

    def walk(node):
        if isinstance(node, dict | list):
            nodes.append(node)
            for v in (node.values() if isinstance(node, dict) else node):
                walk(v)
    walk(data)
    if not nodes:
        return draw(plausible)
    node = nodes[draw(st.integers(0, len(nodes) - 1))]
    kind = draw(st.sampled_from(["remove", "duplicate", "retype", "add", "rename"]))
    if isinstance(node, dict):
        keys = list(node)
        key = keys[draw(st.integers(0, len(keys) - 1))] if keys else None
        if key is None or kind == "add":
            node[draw(st.sampled_from(KEYS) | st.text(max_size=10))] = draw(plausible)
        elif kind == "remove":
            del node[key]
        elif kind == "rename":
            node[draw(st.sampled_from(KEYS))] = node.pop(key)
        elif kind == "duplicate":
            node[f"{key}"] = [node[key], node[key]]
        else:
            node[key] = draw(plausible)
    elif node:
        i = draw(st.integers(0, len(node) - 1))
        if kind == "remove":
            del node[i]
        elif kind == "duplicate":
            node.insert(i, node[i])
        else:
            node[i] = draw(plausible)
    else:
        node.append(draw(plausible))
    return data


YAML_SNIPPETS = ["&a x", "*a", "<<: *a", "<<: [1, 2]", "!!python/object:os.system x",
                 "!!binary AAAA", "? [a, b]\n: 1", "\t", "- - -", "{", "]", "key: 2026-02-30",
                 "key: 1970-13-01", "%YAML 1.1\n---", "---\n---", "...", "'unterminated",
                 "k: |\n  block", "k: !!int x", "k: !!float x", "k: !!timestamp x", "k: !!set {a}",
                 "k: !!omap [a]", "k: !!str", "&b [*b]", ": value", "k: v: w"]


@st.composite
def text_mutation(draw, text: str) -> bytes:
    """Line-level YAML edits (duplicate, drop, re-indent, insert a snippet) or byte edits."""
    lines = text.split("\n")
    kind = draw(st.sampled_from(["duplicate", "drop", "indent", "snippet", "bytes"]))
    i = draw(st.integers(0, max(0, len(lines) - 1)))
    if kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "drop":
        del lines[i]
    elif kind == "indent":
        lines[i] = " " * draw(st.integers(1, 6)) + lines[i] if draw(st.booleans()) \
            else lines[i].lstrip()
    elif kind == "snippet":
        indent = re.match(r"\s*", lines[i]).group(0)
        lines.insert(i, indent + draw(st.sampled_from(YAML_SNIPPETS)))
    else:
        return draw(byte_mutation(text.encode()))
    return "\n".join(lines).encode()


def yaml_documents(*patterns: str):
    """Bytes of a YAML file: a shipped one mutated (as data or as text), or a random one."""
    seeds = [p.read_text(encoding="utf-8") for p in _shipped(*patterns)]
    as_data = st.sampled_from(seeds).flatmap(
        lambda text: data_mutation(yaml.safe_load(text))).map(
        lambda data: yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode())
    as_text = st.sampled_from(seeds).flatmap(text_mutation)
    random_doc = plausible.map(
        lambda data: yaml.safe_dump(data, allow_unicode=True, sort_keys=False).encode())
    return st.one_of(as_data, as_text, random_doc)


def _check_config_error(exc: BaseException, path: Path, data: bytes) -> None:
    """A refusal names the file, and a line inside it when it gives one."""
    errors = exc.errors if isinstance(exc, yamlfile.ConfigErrors) else [exc]
    assert errors, "ConfigErrors without an error"
    lines = data.count(b"\n") + 2
    for error in errors:
        assert error.file == str(path), f"{error} names {error.file}, not {path}"
        assert str(path) in str(error)
        assert error.line is None or 1 <= error.line <= lines, f"line {error.line}: {error}"
        assert error.message


def _check_loader(name: str, load, path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
    TRIED[f"yaml_{name}"] += 1
    with bounded():
        try:
            load(path)
            OUTCOMES["yaml loaded"] += 1
        except (yamlfile.ConfigError, yamlfile.ConfigErrors) as exc:
            _check_config_error(exc, path, data)
            OUTCOMES["yaml refused"] += 1


@pytest.fixture(scope="module")
def yaml_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-yaml")


@pytest.fixture(scope="module")
def known():
    """Profiles, their metric catalogue and the shipped inventory, loaded once."""
    from agent.inventory import load_inventory
    from collectors.snmp.profile import load_profiles
    from rules.load import known_from

    profiles = load_profiles()
    inventory = load_inventory([yamlfile.load(ROOT / "config/inventory.yaml")], None, None)
    return profiles, known_from(profiles.catalogue, profiles), inventory


ENV = {"VIGIL_V3_AUTH": "auth-secret-1", "VIGIL_V3_PRIV": "priv-secret-1",
       "VIGIL_COMMUNITY": "public"}


@contextlib.contextmanager
def environment():
    saved = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _settings(path: Path) -> None:
    from agent.settings import Settings
    from agent.validation import validate
    validate(Settings, yamlfile.load(path))


def _credentials(path: Path) -> None:
    from agent.credentials import load_credentials
    with environment():
        load_credentials(path)


def _escalation(path: Path) -> None:
    from agent.escalation import load_policy
    load_policy(path)


@fuzz_settings(60)
@given(data=yaml_documents("config/agent.yaml", "config/centre/*.yaml", "config/demo/*.yaml"))
def test_agent_settings(yaml_dir, data):
    _check_loader("agent", _settings, yaml_dir / "agent.yaml", data)


@fuzz_settings(60)
@given(data=yaml_documents("config/credentials.yaml"))
@example(data=b"credentials:\n  room-v3: 2026-02-30\n")  # was a ValueError out of PyYAML
@example(data=b"credentials: !!timestamp x\n")  # was an AttributeError
@example(data=b"credentials: {a: !!bool q}\n")  # was a KeyError
def test_credentials(yaml_dir, data):
    _check_loader("credentials", _credentials, yaml_dir / "credentials.yaml", data)


@fuzz_settings(40)
@given(data=yaml_documents("config/escalation.yaml"))
@example(data=b"'[': []\n")  # was an IndexError: the key looked like a pydantic marker
def test_escalation_policy(yaml_dir, data):
    _check_loader("escalation", _escalation, yaml_dir / "escalation.yaml", data)


@fuzz_settings(60)
@given(data=yaml_documents("config/inventory.yaml"))
@example(data=b"sites:\n  - id: dh\n    since: 2026-02-30\n")  # was a ValueError
@example(data=b"devices:\n  - {id: a, kind: [ups]}\n")  # was a TypeError (unhashable)
def test_inventory(yaml_dir, known, data):
    from agent.inventory import load_inventory
    profiles = known[0]
    kinds = {"room-v3": "snmp", "cameras-v2c": "snmp", "camera-login": "login"}
    _check_loader("inventory", lambda p: load_inventory([yamlfile.load(p)], kinds,
                                                        profiles.names()),
                  yaml_dir / "inventory.yaml", data)


@fuzz_settings(60)
@given(data=yaml_documents("config/rules/*.yaml"))
def test_rule_files(yaml_dir, known, data):
    from rules.load import load_rules
    _, catalogue, inventory = known
    _check_loader("rules", lambda p: load_rules([p], catalogue, inventory),
                  yaml_dir / "rules.yaml", data)


@pytest.fixture(scope="module")
def profile_dirs(tmp_path_factory):
    """A small built-in directory (the profiles others include) and the fuzzed one."""
    builtin = tmp_path_factory.mktemp("builtin-profiles")
    for name in ("system", "if-mib", "entity-sensor", "host-resources", "ups-mib"):
        (builtin / f"{name}.yaml").write_bytes(
            (ROOT / "collectors/profiles" / f"{name}.yaml").read_bytes())
    return builtin, tmp_path_factory.mktemp("fuzz-profiles")


@fuzz_settings(60)
@given(data=yaml_documents("collectors/profiles/*.yaml"), name=st.sampled_from(
    [p.stem for p in _shipped("collectors/profiles/*.yaml")]))
def test_profiles(profile_dirs, data, name):
    from collectors.snmp import profile
    builtin, extra = profile_dirs
    for old in extra.glob("*.yaml"):
        old.unlink()
    saved, profile.BUILTIN_DIR = profile.BUILTIN_DIR, builtin
    try:
        _check_loader("profiles", lambda p: profile.load_profiles([extra]),
                      extra / f"{name}.yaml", data)
    finally:
        profile.BUILTIN_DIR = saved


# --- RTSP -----------------------------------------------------------------------------------

SPS_1080P = "Z2QAKKwbGoB4AiflQAAAAwBAAAAPI8YMqQ=="  # H.264 High, 1920x1080 (cropped)
SDP_SEEDS = [
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Media\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
    "a=rtpmap:96 H264/90000\r\n"
    f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={SPS_1080P},aO48sA==\r\n"
    "a=control:trackID=1\r\n",
    "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
    "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framesize:96 704-576\r\n",
    "v=0\r\ns=x\r\nm=video 0 RTP/AVP 97\r\na=rtpmap:97 H265/90000\r\n"
    "a=fmtp:97 sprop-vps=QAEMAf//AWAAAAMAAAMAAAMAAAMAlqwJ;sprop-sps=QgEBAWAAAAMAAAMAAAMAAAMAlqAB"
    "4CACHH+KrTuiS7/+AAQAA2oCAgIIAAADAAgAAAMBlQg=\r\na=x-dimensions:1280,720\r\n",
    "v=0\r\ns=x\r\nm=video 0 RTP/AVP 26\r\na=cliprect:0,0,576,704\r\n",
]
RTSP_SEEDS = [
    b"RTSP/1.0 200 OK\r\nCSeq: 1\r\nPublic: OPTIONS, DESCRIBE, SETUP, PLAY\r\n\r\n",
    b'RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest realm="IP Camera", '
    b'nonce="6c3b1f0a9d2e", qop="auth", algorithm=MD5, opaque="x"\r\n'
    b'WWW-Authenticate: Basic realm="IP Camera"\r\n\r\n',
    b'RTSP/1.0 401 Unauthorized\r\nCSeq: 1\r\nWWW-Authenticate: Digest realm="r", '
    b'nonce="n", algorithm=SHA-256-sess\r\nConnection: close\r\n\r\n',
    b"RTSP/1.0 404 Not Found\r\nCSeq: 1\r\n\r\n",
    *[f"RTSP/1.0 200 OK\r\nCSeq: 1\r\nContent-Type: application/sdp\r\nServer: cam\r\n"
      f"Content-Length: {len(s.encode())}\r\n\r\n{s}".encode() for s in SDP_SEEDS],
]
RTSP_SEEDS += [s.replace(b"CSeq: 1\r\n", b"") for s in RTSP_SEEDS]  # a CSeq-less camera


@st.composite
def rtsp_mutation(draw, data: bytes) -> bytes:
    """Header-aware edits of an RTSP answer (drop/duplicate/garble a line, wrong lengths,
    another CSeq, huge headers), or byte edits."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    kind = draw(st.sampled_from(["drop", "duplicate", "garble", "length", "cseq", "huge",
                                 "status", "bytes"]))
    i = draw(st.integers(0, len(lines) - 1))
    if kind == "drop":
        del lines[i]
    elif kind == "duplicate":
        lines.insert(i, lines[i])
    elif kind == "garble":
        lines[i] = draw(st.binary(max_size=80))
    elif kind == "length":
        lines.append(b"Content-Length: " + draw(st.sampled_from(
            [b"-1", b"999999999", b"x", b"", b"0", b"10", b"\xd9\xa3", b"\xb2", b"262145"])))
    elif kind == "cseq":
        lines.append(b"CSeq: " + draw(st.sampled_from([b"0", b"2", b"", b"x", b"1 1"])))
    elif kind == "huge":
        lines.append(b"X-Pad: " + b"a" * draw(st.integers(1000, 70000)))
    elif kind == "status":
        lines[0] = draw(st.sampled_from([b"RTSP/1.0 401", b"RTSP/1.0 999 X", b"HTTP/1.1 200 OK",
                                         b"RTSP/2.0 302 Moved", b"RTSP/1.0 200"]))
    else:
        return draw(byte_mutation(data))
    return b"\r\n".join(lines) + sep + body


class _Writer:
    def write(self, data: bytes) -> None:
        pass

    async def drain(self) -> None:
        pass

    def close(self) -> None:
        pass

    async def wait_closed(self) -> None:
        pass


class ScriptedClient:
    """An RtspClient whose connection answers with given bytes (a second connection, after a
    hang-up, answers with the rest of them)."""

    @staticmethod
    def make(answers: list[bytes]):
        from collectors.rtsp.client import MAX_HEADER, RtspClient

        class Client(RtspClient):
            async def connect(self) -> None:
                self.reader = asyncio.StreamReader(limit=MAX_HEADER)
                if answers:
                    self.reader.feed_data(answers.pop(0))
                self.reader.feed_eof()
                self.writer = _Writer()

        return Client("rtsp://127.0.0.1:9/stream", "admin", "secret", timeout=2.0)


async def _rtsp_describe(answers: list[bytes]):
    """OPTIONS then DESCRIBE, then the SDP, as the RTSP collector does."""
    from collectors.rtsp import sdp
    from collectors.rtsp.client import RtspError

    client = ScriptedClient.make(answers)
    async with client:
        try:
            await client.request("OPTIONS")
        except RtspError as exc:
            if exc.reason != "fault":
                raise
        client.cseq = 0  # the scripted answers all carry CSeq 1
        response = await client.request("DESCRIBE", {"Accept": "application/sdp"})
    try:
        return sdp.parse(response.body.decode("utf-8", "replace"))
    except sdp.SdpError as exc:
        raise RtspError("protocol", f"DESCRIBE answer is not an SDP: {exc}") from None


rtsp_answers = st.lists(st.sampled_from(RTSP_SEEDS).flatmap(
    lambda seed: st.one_of(st.just(seed), rtsp_mutation(seed))), min_size=1, max_size=4)


@fuzz_settings(200)
@given(answers=rtsp_answers, split=st.integers(0, 3))
@example(answers=[RTSP_SEEDS[0], RTSP_SEEDS[-4]], split=2)
def test_rtsp_answers(answers, split):
    from collectors.rtsp.client import RtspError

    script = [b"".join(answers[:split or 1]), b"".join(answers[split or 1:])]
    TRIED["rtsp_answers"] += 1
    with bounded():
        try:
            asyncio.run(_rtsp_describe(script))
            OUTCOMES["rtsp described"] += 1
        except RtspError as exc:
            assert exc.reason in ("protocol", "auth", "fault"), exc
            assert exc.detail
            OUTCOMES[f"rtsp {exc.reason}"] += 1


sdp_texts = st.one_of(
    st.sampled_from(SDP_SEEDS).flatmap(
        lambda s: text_mutation(s).map(lambda b: b.decode("utf-8", "replace"))),
    st.builds(lambda payload, key, sps: "v=0\r\nm=video 0 RTP/AVP 96\r\n"
              f"a=rtpmap:96 {payload}/90000\r\na=fmtp:96 {key}={sps}\r\n",
              st.sampled_from(["H264", "H265", "HEVC"]),
              st.sampled_from(["sprop-parameter-sets", "sprop-sps"]),
              st.one_of(st.binary(max_size=64).map(lambda b: base64.b64encode(b).decode()),
                        st.binary(max_size=40).map(
                            lambda b: base64.b64encode(base64.b64decode(SPS_1080P)[:4] + b)
                            .decode()),
                        st.text(max_size=20))),
    st.text(max_size=300).map(lambda t: "v=0\n" + t))


@fuzz_settings(300)
@given(text=sdp_texts)
def test_sdp(text):
    from collectors.rtsp import sdp

    TRIED["rtsp_sdp"] += 1
    with bounded():
        try:
            video = sdp.parse(text)
            OUTCOMES["sdp video" if video else "sdp no video"] += 1
            if video is not None:
                assert video.width >= 0 and video.height >= 0
        except sdp.SdpError:
            OUTCOMES["sdp refused"] += 1
