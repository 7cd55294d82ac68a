"""The RTSP probe and the video quality diagnosis against a real RTSP server on loopback.

Peers: GStreamer's gst-rtsp-server (agent/demo/rtsp_server.py) serving generated healthy and
faulty camera pictures over real RTSP/RTP; small asyncio TCP servers that answer garbage,
nothing, or close at once; a port nobody listens on.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
import os
import signal
import socket
import time

import pytest
from PIL import Image

from collectors.reading import PollResult
from collectors.rtsp import sdp
from collectors.rtsp.collector import RtspCollector, RtspJob
from collectors.video.quality import DIAGNOSES, QualityThresholds
from tests import peers
from tests.rtsp_peer import rtsp_server

FPS = 10
GOOD_PATTERNS = ["smpte", "smpte75", "pinwheel", "circular", "colors", "spokes"]
FAULTS = {"frozen": "frozen", "black": "dark", "dark": "dark", "white": "overexposed",
          "overexposed": "overexposed", "blurred": "blurred", "low_contrast": "low_contrast",
          "color_cast": "color_cast", "occluded": "occluded"}
USER, PASSWORD = "admin", "p@ss:w/rd%1"  # URL-special characters on purpose
THRESHOLDS = QualityThresholds(samples=6)
DECODE = 3.0

pytestmark = pytest.mark.peer("rtsp")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    mounts = [{"path": f"/{kind}", "kind": kind} for kind in FAULTS]
    mounts += [{"path": f"/good/{p}", "kind": "good", "pattern": p} for p in GOOD_PATTERNS]
    mounts += [{"path": "/no_frames", "kind": "no_frames"},
               {"path": "/wide", "kind": "good", "width": 640, "height": 360},
               {"path": "/hevc", "kind": "good", "codec": "h265"},
               {"path": "/mjpeg", "kind": "good", "codec": "mjpeg", "width": 320,
                "height": 176}]
    endpoints = [{"port": 0, "mounts": mounts},
                 {"port": 0, "user": USER, "password": PASSWORD, "auth": "digest",
                  "mounts": [{"path": "/good", "kind": "good"}]},
                 {"port": 0, "user": USER, "password": PASSWORD, "auth": "basic",
                  "mounts": [{"path": "/good", "kind": "good"}]},
                 {"address": "::1", "port": 0, "user": USER, "password": PASSWORD,
                  "mounts": [{"path": "/good", "kind": "good"}]}]
    with rtsp_server(tmp_path_factory.mktemp("rtsp"), endpoints,
                     {"width": 320, "height": 240, "fps": FPS}) as running:
        yield {"open": f"rtsp://127.0.0.1:{running[0]['port']}",
               "digest": f"rtsp://127.0.0.1:{running[1]['port']}",
               "basic": f"rtsp://127.0.0.1:{running[2]['port']}",
               "ipv6": f"rtsp://[::1]:{running[3]['port']}"}


def job(url: str, decode: float = DECODE, timeout: float = 4.0, **kw) -> RtspJob:
    return RtspJob(device=kw.pop("device", url.rsplit("/", 1)[-1]), url=url,
                   decode_seconds=decode, timeout=timeout, deadline=kw.pop("deadline", 20.0),
                   **kw)


async def probe(*jobs: RtspJob, max_decodes: int = 6,
                thresholds: QualityThresholds = THRESHOLDS) -> list[PollResult]:
    collector = RtspCollector(thresholds, max_decodes)
    try:
        return await asyncio.gather(*(collector.poll(j) for j in jobs))
    finally:
        await collector.close()


def readings(result: PollResult) -> dict[str, float]:
    return {r.metric: r.value for r in result.readings}


def reading(result: PollResult, metric: str):
    found = [r for r in result.readings if r.metric == metric]
    assert len(found) == 1, f"{metric}: {len(found)} in {result.device} ({result.reason} " \
                            f"{result.detail})"
    return found[0]


def flagged(result: PollResult) -> set[str]:
    return {name for name in DIAGNOSES if readings(result).get(f"video_{name}") == 1.0}


def explain(result: PollResult) -> str:
    return (f"{result.device}: up={result.up} {result.reason} {result.detail} "
            f"{result.problems} {readings(result)}")


# --- OPTIONS / DESCRIBE ---------------------------------------------------------------------

async def test_describe_codec_and_size_from_sdp(server):
    """decode_seconds=0: OPTIONS and DESCRIBE only; codec and size from the SDP's SPS."""
    results = await probe(job(f"{server['open']}/good/smpte", decode=0),
                          job(f"{server['open']}/wide", decode=0),
                          job(f"{server['open']}/hevc", decode=0))
    expected = [("h264", "320", "240"), ("h264", "640", "360"), ("h265", "320", "240")]
    for result, (codec, width, height) in zip(results, expected, strict=True):
        assert result.up, explain(result)
        assert result.collector == "rtsp"
        info = reading(result, "rtsp_stream_info")
        assert info.labels == {"codec": codec, "width": width, "height": height}
        assert 0 < reading(result, "rtsp_describe_seconds").value < 2
        assert "rtsp_first_frame_seconds" not in readings(result)
        assert not any(m.startswith("video_") for m in readings(result))
        assert reading(result, "up").value == 1.0


async def test_mjpeg_size_comes_from_frames(server):
    (result,) = await probe(job(f"{server['open']}/mjpeg", decode=1.0))
    assert result.up, explain(result)
    assert reading(result, "rtsp_stream_info").labels == {"codec": "mjpeg", "width": "320",
                                                          "height": "176"}


def test_sps_parsing_and_size_attributes():
    text = ("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=cam\r\nt=0 0\r\nm=audio 0 RTP/AVP 0\r\n"
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=framesize:96 704-576\r\n")
    info = sdp.parse(text)
    assert (info.codec, info.width, info.height, info.size_source) == ("h264", 704, 576,
                                                                       "attribute")
    assert sdp.parse("v=0\r\nm=audio 0 RTP/AVP 0\r\n") is None
    with pytest.raises(sdp.SdpError):
        sdp.parse("<html>not an sdp</html>")


# --- healthy streams: measured, and no false positive ----------------------------------------

async def test_good_streams_measured_and_not_flagged(server):
    results = await probe(*(job(f"{server['open']}/good/{p}", device=p)
                            for p in GOOD_PATTERNS))
    for result in results:
        assert result.up, explain(result)
        values = readings(result)
        assert values["video_signal_lost"] == 0
        assert abs(values["rtsp_frames_per_second"] - FPS) < 1.0, explain(result)
        assert values["rtsp_bitrate_bytes_per_second"] > 0
        assert 0 < values["rtsp_first_frame_seconds"] < 3.0
        assert values["rtsp_decoded_frames"] >= DECODE * FPS - 2
        assert values["video_analysed_frames"] == THRESHOLDS.samples
        assert values["video_motion_ratio"] > 0.05, explain(result)
        assert flagged(result) == set(), explain(result)
        for name in DIAGNOSES:  # every diagnosis judged, and 0
            assert values[f"video_{name}"] == 0.0
        assert result.evidence == []
        assert reading(result, "rtsp_stream_info").labels["width"] == "320"


async def test_udp_transport(server):
    (result,) = await probe(job(f"{server['open']}/good/smpte", decode=2.0, transport="udp"))
    assert result.up, explain(result)
    assert abs(readings(result)["rtsp_frames_per_second"] - FPS) < 1.0


# --- each fault found, with its evidence --------------------------------------------------

async def test_each_fault_detected_with_evidence(server):
    results = await probe(*(job(f"{server['open']}/{kind}", device=kind) for kind in FAULTS))
    for result in results:
        expected = FAULTS[result.device]
        assert result.up, explain(result)
        assert flagged(result) == {expected}, explain(result)
        diagnosis = reading(result, f"video_{expected}")
        assert diagnosis.text == expected  # the reading names its evidence
        (evidence,) = result.evidence
        assert (evidence.name, evidence.content_type) == (expected, "image/jpeg")
        assert len(evidence.data) < 30_000
        image = Image.open(io.BytesIO(evidence.data))
        image.load()
        assert image.format == "JPEG" and image.width <= 320 and image.height > 0


async def test_frozen_only_when_frozen(server):
    frozen, moving = await probe(job(f"{server['open']}/frozen"),
                                 job(f"{server['open']}/good/smpte"))
    assert readings(frozen)["video_frozen"] == 1.0
    assert readings(frozen)["video_motion_ratio"] < THRESHOLDS.frozen_motion_ratio
    assert readings(moving)["video_frozen"] == 0.0
    # a sample too short to judge frozen: no verdict rather than a guess
    (short,) = await probe(job(f"{server['open']}/frozen", decode=1.0))
    assert "video_frozen" not in readings(short)
    assert any("frozen not judged" in p for p in short.problems)


# --- failures: one reason each ------------------------------------------------------------

async def test_auth_reasons(server):
    for scheme in ("digest", "basic"):
        url = f"{server[scheme]}/good"
        none, wrong, right = await probe(
            job(url, decode=0, device="none"),
            job(url, decode=0, device="wrong", username=USER, password="wrong"),
            job(url, decode=1.5, device="right", username=USER, password=PASSWORD))
        assert (none.up, none.reason) == (False, "auth"), explain(none)
        assert "no credentials" in none.detail
        assert (wrong.up, wrong.reason) == (False, "auth"), explain(wrong)
        assert right.up, explain(right)
        assert readings(right)["rtsp_decoded_frames"] > 0  # FFmpeg authenticated too
        assert PASSWORD not in repr(job(url, username=USER, password=PASSWORD))
        for result in (none, wrong, right):
            assert PASSWORD not in result.detail + " ".join(result.problems)


async def test_ipv6_loopback_with_credentials(server):
    (result,) = await probe(job(f"{server['ipv6']}/good", decode=1.0, username=USER,
                                password=PASSWORD))
    assert result.up, explain(result)
    assert readings(result)["rtsp_decoded_frames"] > 0


async def test_no_frames(server):
    started = time.monotonic()
    (result,) = await probe(job(f"{server['open']}/no_frames", timeout=2.0))
    assert (result.up, result.reason) == (False, "no_frames"), explain(result)
    assert readings(result)["video_signal_lost"] == 1.0
    assert reading(result, "up").text == "no_frames"
    assert time.monotonic() - started < 6


async def test_unknown_path_is_fault(server):
    (result,) = await probe(job(f"{server['open']}/nothing-here", decode=0))
    assert (result.up, result.reason) == (False, "fault"), explain(result)
    assert "404" in result.detail


async def test_closed_port_refused():
    port = peers.free_port(socket.SOCK_STREAM)
    (result,) = await probe(job(f"rtsp://127.0.0.1:{port}/x"))
    assert (result.up, result.reason) == (False, "refused"), explain(result)
    assert result.readings[-1].metric == "up" and len(result.readings) == 1


async def _tcp_peer(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


@pytest.mark.faults
async def test_garbage_silence_and_hangup():
    async def garbage(reader, writer):
        await reader.read(100)
        writer.write(b"\x16\x03\x01 this is not RTSP at all\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(5)
        writer.close()

    async def http(reader, writer):
        await reader.read(100)
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    async def silent(reader, writer):
        await asyncio.sleep(5)
        writer.close()

    async def hangup(reader, writer):
        writer.close()

    async def bad_sdp(reader, writer):
        while (head := await reader.readuntil(b"\r\n\r\n")):
            cseq = next(line for line in head.split(b"\r\n") if line.startswith(b"CSeq"))
            body = b"" if head.startswith(b"OPTIONS") else b"<html>hello</html>"
            writer.write(b"RTSP/1.0 200 OK\r\n" + cseq + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()

    sdp_body = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=s\r\nt=0 0\r\nm=video 0 RTP/AVP 96\r\n"
                b"a=rtpmap:96 H264/90000\r\na=control:trackID=1\r\n")

    async def no_setup_answer(reader, writer):
        """Answers OPTIONS and DESCRIBE, then never answers FFmpeg's SETUP."""
        while (head := await reader.readuntil(b"\r\n\r\n")):
            cseq = next(line for line in head.split(b"\r\n") if line.startswith(b"CSeq"))
            if head.startswith(b"SETUP"):
                await asyncio.sleep(5)
                break
            body = sdp_body if head.startswith(b"DESCRIBE") else b""
            writer.write(b"RTSP/1.0 200 OK\r\n" + cseq + b"\r\nContent-Length: "
                         + str(len(body)).encode() + b"\r\n\r\n" + body)
            await writer.drain()
        writer.close()

    peers_ = {name: await _tcp_peer(handler) for name, handler in
              [("garbage", garbage), ("http", http), ("silent", silent), ("hangup", hangup),
               ("bad_sdp", bad_sdp), ("no_setup_answer", no_setup_answer)]}
    try:
        results = await probe(*(job(f"rtsp://127.0.0.1:{port}/cam", timeout=1.5, device=name)
                                for name, (_server, port) in peers_.items()))
    finally:
        for server, _port in peers_.values():
            server.close()
    reasons = {r.device: r.reason for r in results}
    assert reasons == {"garbage": "protocol", "http": "protocol", "silent": "timeout",
                       "hangup": "protocol", "bad_sdp": "protocol",
                       "no_setup_answer": "timeout"}, [explain(r) for r in results]


async def test_digest_with_qop_from_a_camera_that_hangs_up_after_401():
    """A camera-like peer: Digest with qop=auth, checked here; it closes the connection after
    each 401, as some cameras do. The SDP has no size attribute, an SPS with cropping."""
    import hashlib
    import re

    realm, nonce = "IP Camera(C1234)", "6c3b1f0a9d2e"
    sps = "Z2QAKKwbGoB4AiflQAAAAwBAAAAPI8YMqQ=="  # 1920x1080 High, 1088 cropped to 1080
    body = ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=Media\r\nt=0 0\r\n"
            "m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n"
            f"a=fmtp:96 packetization-mode=1;sprop-parameter-sets={sps},aO48sA==\r\n").encode()
    seen = []

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    async def camera(reader, writer):
        while True:
            try:
                head = (await reader.readuntil(b"\r\n\r\n")).decode()
            except asyncio.IncompleteReadError:
                break
            method, uri = head.split()[:2]
            cseq = re.search(r"CSeq: *(\d+)", head)[1]
            auth = dict(re.findall(r'(\w+)="?([^",]*)"?', head.split("Authorization:", 1)[1])) \
                if "Authorization:" in head else None
            ok = auth is not None and auth["response"] == md5(
                f"{md5(f'{USER}:{realm}:{PASSWORD}')}:{nonce}:{auth['nc']}:{auth['cnonce']}:"
                f"auth:{md5(f'{method}:{uri}')}")
            seen.append((method, auth is not None, ok))
            if not ok:
                writer.write(f"RTSP/1.0 401 Unauthorized\r\nCSeq: {cseq}\r\n"
                             f'WWW-Authenticate: Digest realm="{realm}", nonce="{nonce}", '
                             f'qop="auth", algorithm=MD5\r\nConnection: close\r\n\r\n'
                             .encode())
                await writer.drain()
                break
            extra = (f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n"
                     .encode() + body) if method == "DESCRIBE" else b"\r\n"
            writer.write(f"RTSP/1.0 200 OK\r\nCSeq: {cseq}\r\n".encode() + extra)
            await writer.drain()
        writer.close()

    server, port = await _tcp_peer(camera)
    try:
        right, wrong = await probe(
            job(f"rtsp://127.0.0.1:{port}/Streaming/Channels/101", decode=0,
                username=USER, password=PASSWORD, device="right"),
            job(f"rtsp://127.0.0.1:{port}/Streaming/Channels/101", decode=0,
                username=USER, password="nope", device="wrong"))
    finally:
        server.close()
    assert right.up, explain(right)
    assert reading(right, "rtsp_stream_info").labels == {"codec": "h264", "width": "1920",
                                                         "height": "1080"}
    assert (wrong.reason, wrong.up) == ("auth", False)
    assert ("OPTIONS", True, True) in seen and ("DESCRIBE", True, True) in seen


# --- isolation, bounds, lifecycle ---------------------------------------------------------

async def test_concurrent_probes_do_not_affect_each_other(server):
    """A good, a frozen, a stream without frames and a dead port at once, two decode slots."""
    port = peers.free_port(socket.SOCK_STREAM)
    good, frozen, silent, dead = await probe(
        job(f"{server['open']}/good/pinwheel", device="good"),
        job(f"{server['open']}/frozen", device="frozen"),
        job(f"{server['open']}/no_frames", device="silent", timeout=2.0),
        job(f"rtsp://127.0.0.1:{port}/x", device="dead"), max_decodes=2)
    assert good.up and flagged(good) == set(), explain(good)
    assert abs(readings(good)["rtsp_frames_per_second"] - FPS) < 1.0
    assert frozen.up and flagged(frozen) == {"frozen"}, explain(frozen)
    assert silent.reason == "no_frames" and dead.reason == "refused"


async def test_decode_slots_bound_and_deadline(server):
    """One slot, two probes, a deadline too short for both: the second one is not blamed on
    the camera (up, decode skipped)."""
    first, second = await probe(job(f"{server['open']}/good/smpte", decode=2.0, deadline=4.0),
                                job(f"{server['open']}/good/colors", decode=2.0, deadline=4.0),
                                max_decodes=1)
    decoded = [r for r in (first, second) if "rtsp_decoded_frames" in readings(r)]
    skipped = [r for r in (first, second) if any("decode skipped" in p for p in r.problems)]
    assert len(decoded) == 1 and len(skipped) == 1, [explain(first), explain(second)]
    assert skipped[0].up and "rtsp_describe_seconds" in readings(skipped[0])


async def test_close_stops_running_decodes(server):
    collector = RtspCollector(THRESHOLDS, 1)
    task = asyncio.create_task(collector.poll(job(f"{server['open']}/good/smpte", decode=30,
                                                  deadline=60)))
    await asyncio.sleep(1.0)
    started = time.monotonic()
    await collector.close()
    result = await asyncio.wait_for(task, 5)
    assert time.monotonic() - started < 3
    assert any("shutting down" in p for p in result.problems), explain(result)


async def test_killed_decoder_costs_one_probe(server):
    """A decoder process that dies (FFmpeg crashing on a stream, the OOM killer) fails that
    probe with reason error; the next probe gets a new decoder and works."""
    collector = RtspCollector(THRESHOLDS, 1)
    try:
        task = asyncio.create_task(collector.poll(job(f"{server['open']}/good/smpte",
                                                      decode=30, deadline=60)))
        deadline = time.monotonic() + 20
        while not multiprocessing.active_children():
            assert time.monotonic() < deadline, "no decoder process started"
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        for child in multiprocessing.active_children():
            os.kill(child.pid, signal.SIGKILL)
        killed = await asyncio.wait_for(task, 10)
        assert (killed.up, killed.reason) == (False, "error"), explain(killed)
        assert "decoder process died" in killed.detail
        again = await collector.poll(job(f"{server['open']}/good/smpte"))
        assert again.up and "rtsp_decoded_frames" in readings(again), explain(again)
    finally:
        await collector.close()
    assert not multiprocessing.active_children()


def test_job_and_thresholds_validation():
    with pytest.raises(ValueError):
        RtspJob("d", "rtsp://127.0.0.1/x", transport="http")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RtspJob("d", "rtsp://admin:secret@127.0.0.1/x")
    with pytest.raises(ValueError):
        RtspJob("d", "http://127.0.0.1/x")
    with pytest.raises(ValueError):
        QualityThresholds(dark_brightness=2)
    with pytest.raises(ValueError):
        QualityThresholds(samples=0)
    assert "password" not in repr(RtspJob("d", "rtsp://127.0.0.1/x", "u", "secret"))
