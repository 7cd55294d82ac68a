"""ONVIF collector and events against the simulated cameras of agent/demo/onvif.py.

The simulator is a real HTTP SOAP 1.2 server on loopback (aiohttp, one socket per camera);
the production client (onvif-zeep-async) talks to it unchanged. Each test starts the cameras
it needs on free ports and stops them.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import aiohttp
import pytest

from agent.demo.onvif import CameraConfig, OnvifSimulator
from collectors.onvif.collector import OnvifCollector, OnvifJob, strip_credentials
from collectors.onvif.errors import OnvifFailure
from collectors.onvif.events import PULLPOINT_NS, OnvifEvents, topic_event
from collectors.onvif.session import Session
from collectors.reading import PollResult, Reading
from tests import peers

PASSWORD = "vigil-demo-1"
VENDORS = ("hikvision", "dahua", "axis")


def ports(n: int) -> list[int]:
    found: set[int] = set()
    while len(found) < n:
        found.add(peers.free_port(socket.SOCK_STREAM))
    return sorted(found)


def camera(name: str, port: int, **settings) -> CameraConfig:
    return CameraConfig(name=name, port=port, password=PASSWORD, **settings)


def job(cam: CameraConfig, password: str = PASSWORD, ptz: bool | None = None,
        timeout: float = 2.0, deadline: float = 10.0, device: str | None = None) -> OnvifJob:
    return OnvifJob(device or cam.name, cam.address, cam.port, "admin", password, timeout,
                    cam.ptz if ptz is None else ptz, deadline)


async def poll(*cams: CameraConfig, collector: OnvifCollector | None = None,
               **job_args) -> list[PollResult]:
    own = collector is None
    collector = collector or OnvifCollector()
    try:
        return list(await asyncio.gather(*(collector.poll(job(c, **job_args)) for c in cams)))
    finally:
        if own:
            await collector.close()


def readings(result: PollResult, metric: str) -> list[Reading]:
    return [r for r in result.readings if r.metric == metric]


def value(result: PollResult, metric: str, **labels: str) -> float:
    found = [r.value for r in readings(result, metric)
             if all(r.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{metric}{labels}: {len(found)} readings in {result.device} " \
                            f"(up={result.up} {result.reason} {result.detail})"
    return found[0]


# --- readings -------------------------------------------------------------------------------
EXPECTED_IDENTITY = {
    "hikvision": ("Hikvision", "DS-2DE4425IW-DE", "V5.7.3 build 220112", "88"),
    "dahua": ("Dahua", "DH-SD49425XB-HNR", "2.800.0000000.25.R, Build Date 2022-08-26", "1.00"),
    "axis": ("Axis", "Q6135-LE", "10.12.182", "7A1"),
}
EXPECTED_URI = {
    "hikvision": "rtsp://127.0.0.1:554/Streaming/Channels/101?transportmode=unicast"
                 "&profile=Profile_1",
    "dahua": "rtsp://127.0.0.1:554/cam/realmonitor?channel=1&subtype=0&unicast=true"
             "&proto=Onvif",
    "axis": "rtsp://127.0.0.1/onvif-media/media.amp?profile=profile_1_h264&sessiontimeout=60"
            "&streamtype=unicast",
}


@pytest.mark.parametrize("vendor", VENDORS)
async def test_every_reading_of_each_vendor_style(vendor):
    [port] = ports(1)
    cam = camera("cam", port, vendor=vendor, ptz=True, index=7)
    async with OnvifSimulator([cam]):
        [result] = await poll(cam)
    assert result.up, result.detail
    assert result.collector == "onvif"
    assert result.problems == []
    [info] = readings(result, "device_info")
    vendor_name, model, firmware, hardware = EXPECTED_IDENTITY[vendor]
    assert info.labels == {"vendor": vendor_name, "model": model, "firmware": firmware,
                           "serial": info.labels["serial"], "hardware": hardware}
    assert info.labels["serial"]
    assert abs(value(result, "onvif_clock_offset_seconds")) < 1.5
    assert value(result, "onvif_clock_ntp") == 1
    assert 0 < value(result, "onvif_round_trip_seconds") < 1
    for service in ("device", "media", "ptz", "events", "imaging"):
        assert value(result, "onvif_service_available", service=service) == 1
    assert value(result, "onvif_service_available", service="media2") == 0
    assert value(result, "onvif_service_available", service="analytics") == \
        (0 if vendor == "dahua" else 1)  # this Dahua style offers no analytics service
    assert value(result, "onvif_profiles") == 2
    streams = readings(result, "onvif_stream_info")
    assert len(streams) == 2
    assert streams[0].labels["uri"] == EXPECTED_URI[vendor]
    assert streams[0].labels["encoding"] == "H264"
    assert int(streams[0].labels["width"]) >= 1920 and int(streams[0].labels["height"]) >= 1080
    assert value(result, "onvif_operation_ok", operation="stream_uri") == 1
    assert value(result, "onvif_ptz_available") == 1
    assert value(result, "onvif_ptz_moving", axis="pan_tilt") == 0
    zoom = readings(result, "onvif_ptz_moving")
    assert len(zoom) == (1 if vendor == "dahua" else 2)  # Dahua leaves MoveStatus/Zoom out
    assert value(result, "onvif_ptz_error") == 0
    assert value(result, "onvif_ptz_presets") == 8
    assert value(result, "up") == 1


async def test_fixed_camera_has_no_ptz_readings():
    [port] = ports(1)
    cam = camera("fixed", port, vendor="hikvision")
    async with OnvifSimulator([cam]):
        [result] = await poll(cam)
    assert result.up
    assert not [r for r in result.readings if r.metric.startswith("onvif_ptz")]
    assert readings(result, "device_info")[0].labels["model"] == "DS-2CD2143G2-IS"


@pytest.mark.parametrize(("vendor", "offset", "ntp"), [("dahua", 10800, False),
                                                       ("hikvision", -10800, True),
                                                       ("axis", 10800, False)])
async def test_clock_hours_off_and_ntp_or_manual(vendor, offset, ntp):
    [port] = ports(1)
    cam = camera("drift", port, vendor=vendor, clock_offset=offset, ntp=ntp)
    async with OnvifSimulator([cam]):
        [result] = await poll(cam)
    assert result.up, result.detail  # the requests are signed on the camera's own clock
    assert value(result, "onvif_clock_offset_seconds") == pytest.approx(offset, abs=1.5)
    assert value(result, "onvif_clock_ntp") == (1 if ntp else 0)
    assert readings(result, "onvif_clock_ntp")[0].text == ("NTP" if ntp else "Manual")


async def test_ptz_error_moving_and_presets():
    a, b = ports(2)
    broken = camera("broken", a, vendor="axis", ptz=True, ptz_error="Pan motor stalled",
                    ptz_moving=True, presets=3)
    fine = camera("fine", b, vendor="axis", ptz=True)
    async with OnvifSimulator([broken, fine]):
        bad, good = await poll(broken, fine)
    assert bad.up
    assert value(bad, "onvif_ptz_error") == 1
    assert readings(bad, "onvif_ptz_error")[0].text == "Pan motor stalled"
    assert value(bad, "onvif_ptz_moving", axis="pan_tilt") == 1
    assert value(bad, "onvif_ptz_presets") == 3
    assert value(good, "onvif_ptz_error") == 0  # Axis style: an empty <tt:Error/>
    assert readings(good, "onvif_ptz_error")[0].text is None


async def test_ptz_camera_without_ptz_service_is_unsupported_not_down():
    [port] = ports(1)
    cam = camera("noptz", port, vendor="dahua", ptz=False)
    async with OnvifSimulator([cam]):
        [result] = await poll(cam, ptz=True)
    assert result.up and result.reason is None
    assert value(result, "onvif_ptz_available") == 0
    assert readings(result, "onvif_ptz_available")[0].text == "unsupported"
    assert value(result, "onvif_service_available", service="ptz") == 0
    assert not readings(result, "onvif_ptz_error")
    assert any("unsupported" in p for p in result.problems)


async def test_stream_uri_is_configurable_and_loses_its_credentials():
    [port] = ports(1)
    cam = camera("creds", port, vendor="dahua", stream_uri={
        "MediaProfile00000": "rtsp://admin:secret@{host}:8554/{name}/main?user=admin"
                             "&password=secret&channel=1",
        "MediaProfile00001": "rtsp://{host}:8554/{name}/sub"})
    async with OnvifSimulator([cam]):
        [result] = await poll(cam)
    uris = [r.labels["uri"] for r in readings(result, "onvif_stream_info")]
    assert uris == ["rtsp://127.0.0.1:8554/creds/main?channel=1",
                    "rtsp://127.0.0.1:8554/creds/sub"]


def test_strip_credentials():
    assert strip_credentials("rtsp://u:p@10.0.0.1:554/a?b=1") == "rtsp://10.0.0.1:554/a?b=1"
    assert strip_credentials("rtsp://h/user=admin&password=x&channel=1&stream=0.sdp") == \
        "rtsp://h/channel=1&stream=0.sdp"
    assert strip_credentials("rtsp://h:554/live") == "rtsp://h:554/live"


async def test_older_firmware_without_getservices_uses_getcapabilities():
    [port] = ports(1)
    cam = camera("old", port, vendor="dahua", ptz=True, get_services=False)
    async with OnvifSimulator([cam]) as sim:
        [result] = await poll(cam)
        counts = sim.camera("old").requests
    assert result.up, result.detail
    assert counts["GetServices"] == 1 and counts["GetCapabilities"] == 1
    assert value(result, "onvif_service_available", service="ptz") == 1
    assert value(result, "onvif_ptz_presets") == 8


async def test_camera_that_wants_credentials_for_its_clock():
    [port] = ports(1)
    cam = camera("strict", port, vendor="axis", preauth_time=False)
    collector = OnvifCollector()
    async with OnvifSimulator([cam]):
        first, second = [await collector.poll(job(cam)) for _ in range(2)]
    await collector.close()
    assert first.up and second.up, (first.detail, second.detail)
    assert abs(value(second, "onvif_clock_offset_seconds")) < 1.5


def test_password_is_not_in_the_job_repr():
    assert "s3cret" not in repr(OnvifJob("c", "127.0.0.1", 80, "admin", "s3cret", 1, False, 5))


# --- failure reasons ------------------------------------------------------------------------
@pytest.mark.parametrize("vendor", VENDORS)
async def test_wrong_password_is_auth(vendor):
    [port] = ports(1)
    cam = camera("cam", port, vendor=vendor)
    async with OnvifSimulator([cam]) as sim:
        [result] = await poll(cam, password="wrong")
        assert sim.camera("cam").requests["auth_failed"] >= 1
    assert not result.up
    assert result.reason == "auth", result.detail
    assert [r.metric for r in result.readings] == ["up"]
    assert result.readings[0].text == "auth"


FAULTS = [
    ({"GetDeviceInformation": "soap_fault"}, "fault", "SOAP fault"),
    ({"GetDeviceInformation": "http_500"}, "fault", "HTTP 500"),
    ({"*": "http_500"}, "fault", "HTTP 500"),
    ({"GetProfiles": "malformed"}, "protocol", "not well-formed"),
    ({"*": "malformed"}, "protocol", "not well-formed"),
    ({"GetDeviceInformation": "close"}, "protocol", "closed in the middle"),
    ({"GetDeviceInformation": "drop"}, "protocol", "closed the connection"),
    ({"*": "silent"}, "timeout", "no answer"),
    ({"GetProfiles": "slow"}, "timeout", "no answer"),
    ({"GetDeviceInformation": "unsupported"}, "unsupported", "ActionNotSupported"),
]


@pytest.mark.parametrize(("faults", "reason", "words"), FAULTS,
                         ids=[f"{next(iter(f.values()))}-{next(iter(f))}" for f, _r, _w
                              in FAULTS])
async def test_failure_reasons(faults, reason, words):
    [port] = ports(1)
    cam = camera("bad", port, vendor="hikvision", faults=faults, slow_seconds=3.0)
    async with OnvifSimulator([cam]):
        started = time.perf_counter()
        [result] = await poll(cam, timeout=0.5, deadline=5.0)
    assert not result.up
    assert (result.reason, words in result.detail) == (reason, True), result.detail
    assert time.perf_counter() - started < 4.0
    assert [r.metric for r in result.readings] == ["up"]


async def test_closed_port_is_refused():
    [port] = ports(1)
    [result] = await poll(camera("nobody", port))
    assert (result.up, result.reason) == (False, "refused"), result.detail


async def test_slow_camera_within_its_timeout_is_up():
    [port] = ports(1)
    cam = camera("slow", port, faults={"GetProfiles": "slow"}, slow_seconds=0.3)
    async with OnvifSimulator([cam]):
        [result] = await poll(cam, timeout=2.0)
    assert result.up, result.detail


async def test_failed_optional_requests_do_not_make_the_camera_down():
    a, b = ports(2)
    ptz_fault = camera("ptzfault", a, ptz=True, faults={"GetStatus": "soap_fault",
                                                        "GetPresets": "http_500"})
    uri_fault = camera("urifault", b, vendor="axis", faults={"GetStreamUri": "soap_fault"})
    async with OnvifSimulator([ptz_fault, uri_fault]):
        ptz, uri = await poll(ptz_fault, uri_fault)
    assert ptz.up and uri.up
    assert value(ptz, "onvif_operation_ok", operation="ptz_status") == 0
    assert readings(ptz, "onvif_operation_ok")[1].text == "fault"
    assert value(ptz, "onvif_operation_ok", operation="ptz_presets") == 0
    assert value(ptz, "onvif_ptz_available") == 1
    assert not readings(ptz, "onvif_ptz_error")
    assert len(ptz.problems) == 2
    assert value(uri, "onvif_operation_ok", operation="stream_uri") == 0
    assert not readings(uri, "onvif_stream_info")
    assert value(uri, "onvif_profiles") == 2


@pytest.mark.faults
async def test_one_bad_camera_does_not_affect_the_others():
    p = ports(6)
    good = [camera(f"good-{i}", p[i], vendor=VENDORS[i], ptz=True) for i in range(3)]
    bad = [camera("silent", p[3], faults={"*": "silent"}),
           camera("garbage", p[4], faults={"*": "malformed"})]
    nobody = camera("nobody", p[5])
    async with OnvifSimulator(good + bad):
        collector = OnvifCollector()
        results = await asyncio.gather(*(collector.poll(job(c, timeout=1.0, deadline=4.0))
                                         for c in [*bad, nobody, *good]))
        warm = await asyncio.gather(*(collector.poll(job(c, timeout=1.0, deadline=4.0))
                                      for c in [*bad, nobody, *good]))
        await collector.close()
    by_name = {r.device: r for r in warm}
    assert [by_name[c.name].reason for c in bad] == ["timeout", "protocol"]
    assert by_name["nobody"].reason == "refused"
    for cam in good:
        first = next(r for r in results if r.device == cam.name)
        assert first.up and by_name[cam.name].up
        assert by_name[cam.name].duration < 0.8  # not held up by the silent camera


# --- sessions -------------------------------------------------------------------------------
async def test_session_is_reused_across_polls():
    [port] = ports(1)
    cam = camera("cam", port, vendor="hikvision", ptz=True)
    collector = OnvifCollector()
    async with OnvifSimulator([cam]) as sim:
        counts = sim.camera("cam").requests
        first = await collector.poll(job(cam))
        learnt = counts["GetServices"] + counts["GetCapabilities"]
        session = collector.sessions["cam"]
        before = dict(counts)
        second = await collector.poll(job(cam))
        third = await collector.poll(job(cam))
        after = dict(counts)
    await collector.close()
    assert first.up and second.up and third.up
    assert learnt == 1
    assert collector.sessions == {}  # closed
    delta = {op: after[op] - before.get(op, 0) for op in after if after[op] != before.get(op)}
    assert delta == {"GetSystemDateAndTime": 2, "GetDeviceInformation": 2, "GetProfiles": 2,
                     "GetStreamUri": 4, "GetStatus": 2, "GetPresets": 2, "total": 14}
    assert second.requests == 7
    assert session is not None


async def test_set_ups_cut_short_leave_nothing_broken_or_open(caplog):
    """Many cameras set up at once with a timeout too short for it (the agent under load at
    start-up), round after round, cut at every point of the library's set-up; then with a
    sane timeout every camera is up: no session keeps using a service the library closed
    ("Session is closed"), and no HTTP client is left unclosed."""
    import gc

    cams = [camera(f"cam{i}", port, vendor=("hikvision", "dahua", "axis")[i % 3])
            for i, port in enumerate(ports(30))]
    collector = OnvifCollector()
    details: list[str] = []
    async with OnvifSimulator(cams):
        for timeout in (0.05, 0.15, 0.3):
            results = await poll(*cams, collector=collector, timeout=timeout,
                                 deadline=timeout * 4)
            details += [r.detail or "" for r in results]
            gc.collect()
        results = await poll(*cams, collector=collector, timeout=5.0, deadline=30.0)
    await collector.close()
    gc.collect()
    await asyncio.sleep(0)
    assert not [d for d in details if "closed" in d]
    assert all(r.up for r in results), [r.detail for r in results if not r.up][:3]
    assert "Unclosed client session" not in caplog.text


async def test_auth_failure_drops_the_session_and_recovers():
    [port] = ports(1)
    cam = camera("cam", port)
    collector = OnvifCollector()
    async with OnvifSimulator([cam]):
        assert (await collector.poll(job(cam))).up
        failed = await collector.poll(job(cam, password="changed"))
        assert failed.reason == "auth"
        assert "cam" not in collector.sessions
        assert (await collector.poll(job(cam))).up
    await collector.close()


@pytest.mark.faults
async def test_camera_clock_jump_rebuilds_the_session():
    [port] = ports(1)
    cam = camera("cam", port, vendor="dahua")
    collector = OnvifCollector()
    async with OnvifSimulator([cam]) as sim:
        assert (await collector.poll(job(cam))).up
        first = collector.sessions["cam"]
        sim.update("cam", clock_offset=3 * 3600.0)  # someone set the clock by hand
        result = await collector.poll(job(cam))
        assert collector.sessions["cam"] is not first
    await collector.close()
    assert result.up, result.detail  # signed on the camera's new clock
    assert value(result, "onvif_clock_offset_seconds") == pytest.approx(10800, abs=1.5)


# --- the simulator's WS-Security --------------------------------------------------------------
def _envelope(body: str, username: str | None = None, password: str = PASSWORD,
              created: dt.datetime | None = None, nonce: bytes | None = None) -> bytes:
    header = ""
    if username is not None:
        nonce = nonce or os.urandom(16)
        stamp = (created or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        digest = base64.b64encode(hashlib.sha1(nonce + stamp.encode() + password.encode())
                                  .digest()).decode()
        header = (
            '<s:Header><wsse:Security xmlns:wsse="http://docs.oasis-open.org/wss/2004/01/'
            'oasis-200401-wss-wssecurity-secext-1.0.xsd" xmlns:wsu="http://docs.oasis-open.org/'
            'wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"><wsse:UsernameToken>'
            f"<wsse:Username>{username}</wsse:Username><wsse:Password Type=\"http://docs."
            "oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0#"
            f"PasswordDigest\">{digest}</wsse:Password><wsse:Nonce>"
            f"{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{stamp}"
            "</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>")
    return (f'<s:Envelope xmlns:s="http://www.w3.org/2003/05/soap-envelope" '
            f'xmlns:tds="http://www.onvif.org/ver10/device/wsdl">{header}<s:Body>{body}'
            f"</s:Body></s:Envelope>").encode()


async def test_simulator_checks_the_password_digest():
    [port] = ports(1)
    cam = camera("cam", port)
    url = f"http://127.0.0.1:{port}/onvif/device_service"
    info = "<tds:GetDeviceInformation/>"
    stale = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    nonce = os.urandom(16)
    async with OnvifSimulator([cam]), aiohttp.ClientSession() as http:
        async def status(payload: bytes) -> tuple[int, str]:
            async with http.post(url, data=payload, headers={
                    "Content-Type": "application/soap+xml; charset=utf-8"}) as response:
                return response.status, await response.text()

        code, text = await status(_envelope("<tds:GetSystemDateAndTime/>"))
        assert code == 200 and "UTCDateTime" in text  # PRE_AUTH: no credentials needed
        assert (await status(_envelope(info)))[0] == 401  # no token
        code, text = await status(_envelope(info, "admin", nonce=nonce))
        assert code == 200 and "HIKVISION" in text
        assert (await status(_envelope(info, "admin", nonce=nonce)))[0] == 401  # replayed
        assert (await status(_envelope(info, "admin", password="nope")))[0] == 401
        assert (await status(_envelope(info, "admin", created=stale)))[0] == 401  # stale
        assert (await status(_envelope(info, "root")))[0] == 401
        code, text = await status(b"<not-xml")
        assert code == 400 and "Fault" in text


async def test_simulator_honours_the_termination_time():
    [port] = ports(1)
    cam = camera("cam", port)
    session = Session(cam.address, port, "admin", PASSWORD)
    async with OnvifSimulator([cam]) as sim:
        await session.learn(5.0)
        events = await session.service("events")
        answer = await events.CreatePullPointSubscription({"InitialTerminationTime": "PT1S"})
        session.camera.xaddrs[PULLPOINT_NS] = answer.SubscriptionReference.Address._value_1
        pullpoint = await session.camera.create_pullpoint_service()
        pulled = await pullpoint.PullMessages({"Timeout": "PT1S", "MessageLimit": 10})
        assert len(pulled.NotificationMessage) == 3  # the initial state of each property
        await asyncio.sleep(1.2)
        with pytest.raises(OnvifFailure) as failure:
            await session.call("PullMessages", pullpoint.PullMessages,
                               {"Timeout": "PT1S", "MessageLimit": 10}, 5.0)
        assert failure.value.reason == "fault"
        assert "ResourceUnknownFault" in failure.value.detail
        assert sim.camera("cam").subscriptions == {}
    await session.close()


def test_simulator_serves_only_loopback():
    with pytest.raises(ValueError, match="loopback"):
        CameraConfig("outside", 8000, address="192.0.2.10")


# --- events ---------------------------------------------------------------------------------
class Sink:
    def __init__(self) -> None:
        self.readings: list[Reading] = []

    def __call__(self, reading: Reading) -> None:
        self.readings.append(reading)

    async def wait_for(self, device: str, name: str, value: float, timeout: float = 5.0,
                       after: int = 0) -> Reading:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for reading in self.readings[after:]:
                if (reading.device, reading.labels["event"], reading.value) == \
                        (device, name, value):
                    return reading
            await asyncio.sleep(0.05)
        raise AssertionError(f"no {name}={value} from {device} within {timeout}s: "
                             f"{self.readings[after:]}")


def test_topics_map_to_events():
    assert topic_event("tns1:VideoSource/GlobalSceneChange/ImagingService") == "tampering"
    assert topic_event("tns1:RuleEngine/TamperDetector/Tamper") == "tampering"
    assert topic_event("tns1:VideoSource/tnsaxis:Tampering") == "tampering"
    assert topic_event("tns1:VideoSource/SignalLoss") == "video_loss"
    assert topic_event("tns1:Device/tnsaxis:HardwareFailure/StorageFailure") == \
        "storage_failure"
    assert topic_event("tns1:RuleEngine/CellMotionDetector/Motion") == "onvif_other"


@pytest.mark.parametrize("vendor", VENDORS)
async def test_events_reach_the_sink_within_seconds(vendor):
    [port] = ports(1)
    cam = camera("cam", port, vendor=vendor, clock_offset=10800 if vendor == "dahua" else 0)
    sink = Sink()
    events = OnvifEvents(sink, max_subscriptions=10, pull_timeout=2, termination=30)
    async with OnvifSimulator([cam]) as sim:
        await events.watch([job(cam)])
        await sink.wait_for("cam", "tampering", 0)  # the state when subscribing
        mark = len(sink.readings)
        for kind in ("tampering", "video_loss", "storage_failure"):
            started = time.monotonic()
            sim.raise_event("cam", kind)
            reading = await sink.wait_for("cam", kind, 1, after=mark)
            assert time.monotonic() - started < 2.0
            assert reading.labels["source"] == "onvif" and reading.labels["token"]
            assert abs(reading.timestamp - time.time()) < 5  # our clock, not the camera's
        sim.raise_event("cam", "video_loss", False)
        await sink.wait_for("cam", "video_loss", 0, after=mark)
        sim.raise_event("cam", "motion")
        other = await sink.wait_for("cam", "onvif_other", 1, after=mark)
        assert other.labels["topic"] in ("RuleEngine/CellMotionDetector/Motion",
                                          "VideoSource/MotionAlarm")
        assert events.status()["cam"].state == "active"
        await events.close()
        assert sim.camera("cam").subscriptions == {}  # unsubscribed cleanly
        assert sim.camera("cam").requests["Unsubscribe"] == 1


async def test_renewal_keeps_the_subscription_alive_past_its_termination_time():
    a, b = ports(2)
    cams = [camera("cam", a), camera("drift", b, vendor="axis", clock_offset=-10800)]
    sink = Sink()
    events = OnvifEvents(sink, max_subscriptions=10, pull_timeout=1, termination=2)
    async with OnvifSimulator(cams) as sim:
        await events.watch([job(c) for c in cams])
        await asyncio.sleep(5.5)  # well past the 2 s termination time
        for cam in cams:
            sim.raise_event(cam.name, "tampering")
            await sink.wait_for(cam.name, "tampering", 1, timeout=3)
            assert sim.camera(cam.name).requests["CreatePullPointSubscription"] == 1
            assert sim.camera(cam.name).requests["Renew"] >= 3
            assert events.status()[cam.name].subscriptions == 1
        await events.close()


@pytest.mark.faults
async def test_subscription_is_created_again_after_a_reboot():
    [port] = ports(1)
    cam = camera("cam", port, vendor="dahua")
    sink = Sink()
    events = OnvifEvents(sink, max_subscriptions=10, pull_timeout=5, termination=60)
    async with OnvifSimulator([cam]) as sim:
        await events.watch([job(cam)])
        await sink.wait_for("cam", "tampering", 0)
        sim.reboot("cam")  # drops every subscription
        await asyncio.sleep(0.5)
        mark = len(sink.readings)
        sim.raise_event("cam", "storage_failure")
        await sink.wait_for("cam", "storage_failure", 1, after=mark)
        assert sim.camera("cam").requests["CreatePullPointSubscription"] == 2
        assert events.status()["cam"].subscriptions == 2
        assert events.status()["cam"].state == "active"
        await events.close()


async def test_bound_on_open_subscriptions_and_reload():
    p = ports(3)
    cams = [camera(f"cam-{i}", p[i], vendor=VENDORS[i]) for i in range(3)]
    sink = Sink()
    events = OnvifEvents(sink, max_subscriptions=2, pull_timeout=2, termination=30)
    async with OnvifSimulator(cams) as sim:
        await events.watch([job(c) for c in cams])
        await sink.wait_for("cam-1", "tampering", 0)
        await sink.wait_for("cam-0", "tampering", 0)
        open_now = {c.name: len(sim.camera(c.name).subscriptions) for c in cams}
        assert open_now == {"cam-0": 1, "cam-1": 1, "cam-2": 0}
        status = events.status()
        assert status["cam-2"].state == "over_limit"
        subscribed = {r.device: r.value for r in events.readings()}
        assert subscribed == {"cam-0": 1, "cam-1": 1, "cam-2": 0}
        # a reload: cam-0 leaves, cam-2 now fits under the bound
        await events.watch([job(cams[2]), job(cams[1])])
        await sink.wait_for("cam-2", "tampering", 0)
        open_now = {c.name: len(sim.camera(c.name).subscriptions) for c in cams}
        assert open_now == {"cam-0": 0, "cam-1": 1, "cam-2": 1}
        assert sim.camera("cam-0").requests["Unsubscribe"] == 1
        assert "cam-0" not in events.status()
        await events.close()
        assert sum(len(c.subscriptions) for c in sim.cameras.values()) == 0


async def test_events_of_an_unreachable_camera_are_retried_not_fatal():
    a, b = ports(2)
    good = camera("good", a)
    sink = Sink()
    events = OnvifEvents(sink, max_subscriptions=10, pull_timeout=2, retry_min=0.2)
    async with OnvifSimulator([good]):
        await events.watch([job(good), job(camera("gone", b), timeout=0.5)])
        await sink.wait_for("good", "tampering", 0)
        await asyncio.sleep(0.5)
        gone = events.status()["gone"]
        assert (gone.state, gone.reason) == ("retrying", "refused")
        await events.close()


# --- the simulator as a process, as the demo runs it ------------------------------------------
async def test_simulator_process_with_control_api(tmp_path):
    cam_port, control_port = ports(2)
    config = tmp_path / "cameras.json"
    config.write_text(json.dumps({"defaults": {"password": PASSWORD}, "cameras": [
        {"name": "cam-1", "port": cam_port, "vendor": "axis", "ptz": True}]}))
    proc = subprocess.Popen([sys.executable, "-m", "agent.demo.onvif", "--config",
                             str(config), "--control", f"127.0.0.1:{control_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), 30)
        assert json.loads(line)["ready"] is True
        cam = CameraConfig("cam-1", cam_port, ptz=True, password=PASSWORD)
        collector = OnvifCollector()
        assert (await collector.poll(job(cam))).up
        control = f"http://127.0.0.1:{control_port}/cameras"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{control}/cam-1/fault",
                                 json={"operation": "*", "mode": "http_500"}) as response:
                assert response.status == 200
            assert (await collector.poll(job(cam))).reason == "fault"
            async with http.post(f"{control}/cam-1/fault", json={"operation": "*"}):
                pass
            async with http.post(f"{control}/cam-1/set", json={"ptz_error": "stuck"}):
                pass
            result = await collector.poll(job(cam))
            assert value(result, "onvif_ptz_error") == 1
            async with http.get(control) as response:
                stats = await response.json()
            assert stats["cam-1"]["requests"]["GetDeviceInformation"] >= 2
        await collector.close()
    finally:
        peers.stop(proc)
    assert proc.returncode == 0


FIRST_POLLS = """
import asyncio, json, sys
from agent.demo.onvif import OnvifSimulator, generate
from collectors.onvif.collector import OnvifCollector, OnvifJob

def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

async def main(first_port):
    cams = generate(40, first_port, password="pw")
    async with OnvifSimulator(cams):
        collector = OnvifCollector()
        before = rss()
        results = await asyncio.gather(*(collector.poll(OnvifJob(
            c.name, c.address, c.port, "admin", "pw", 10.0, c.ptz, 60.0)) for c in cams))
        grown = rss() - before
        await collector.close()
    print(json.dumps({"up": sum(r.up for r in results), "grown": grown}))

asyncio.run(main(int(sys.argv[1])))
"""


def test_cameras_set_up_at_once_parse_each_wsdl_once():
    """40 cameras' first polls at once, in a fresh process (as when the agent starts): the
    WSDLs are parsed once, not once per camera - about +20 MB instead of +210 MB."""
    first = _consecutive_free_ports(40)
    out = subprocess.run([sys.executable, "-c", FIRST_POLLS, str(first)], capture_output=True,
                         text=True, timeout=120, cwd=peers.ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found["up"] == 40
    assert found["grown"] < 100e6, f"{found['grown'] / 1e6:.0f} MB for 40 first polls"


def _consecutive_free_ports(count: int) -> int:
    """The first of `count` consecutive free TCP ports on 127.0.0.1."""
    for _ in range(50):
        first = peers.free_port(socket.SOCK_STREAM)
        if first + count >= 65536:
            continue
        held = []
        try:
            for port in range(first, first + count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(sock)
                sock.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError(f"no {count} consecutive free ports")
