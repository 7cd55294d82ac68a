"""One RTSP probe of one camera stream: OPTIONS/DESCRIBE, then (optionally) a few decoded
seconds of video and their quality diagnosis.

1. OPTIONS and DESCRIBE over Vigil's own RTSP client (collectors/rtsp/client.py), with Basic or
   Digest authentication: is the RTSP service there, does it accept the credentials, which
   codec and picture size does it announce (collectors/rtsp/sdp.py)?
2. With `decode_seconds` > 0: FFmpeg (PyAV) sets the stream up and decodes that many seconds
   in a decoder process (collectors/rtsp/stream.py); at most `max_decodes` run at once, the
   rest wait for a slot. Time to first frame, frame rate, bitrate and keyframe interval are
   measured, and sampled frames go through the video quality diagnosis
   (collectors/video/quality.py); each fault found keeps its frame as a JPEG evidence.

   Why processes, not threads: decoding and the diagnosis are CPU work that holds the GIL
   for long stretches, and the event loop that polls thousands of SNMP devices then waits
   for the GIL at every wake-up (the soak measured 29-s poll lateness with decode threads;
   docs/reliability.md). A decoder process that FFmpeg crashes costs that one probe (reason
   `error`), not the agent; each process is replaced after `DECODES_PER_PROCESS` probes so
   nothing a decoder library leaks can grow for years.

Every failure ends as a PollResult with `up` False and one reason (collectors/reading.py):
refused, unreachable, timeout (no answer within the timeout, or the poll's deadline), auth
(401), fault (other RTSP 4xx/5xx), protocol (not RTSP, not an SDP), unsupported (no video
in the stream), no_frames (set up, but no frame decoded within the timeout). `poll` never
raises.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from collectors.reading import Evidence, PollResult, Reading
from collectors.rtsp import sdp
from collectors.rtsp.client import RtspClient, RtspError
from collectors.rtsp.stream import StreamStats, sample_stream
from collectors.video.quality import DIAGNOSES, Diagnosis, QualityThresholds, diagnose

log = logging.getLogger("vigil.rtsp")

# The decode stops this long before the poll's deadline, to report what it has measured.
DEADLINE_MARGIN = 0.5
DECODES_PER_PROCESS = 500
# spawn: a fresh interpreter, not a fork of the agent's threads and sockets
_CONTEXT = multiprocessing.get_context("spawn")

MEASURES = {"brightness": "video_brightness_ratio", "contrast": "video_contrast_ratio",
            "sharpness": "video_sharpness", "motion": "video_motion_ratio",
            "cast_factor": "video_color_cast_factor", "chroma_offset": "video_chroma_offset",
            "uniform_area": "video_uniform_area_ratio", "samples": "video_analysed_frames"}


@dataclass(frozen=True)
class RtspJob:
    """What the scheduler asks for: one camera stream, how to reach it, how long to watch."""

    device: str
    url: str  # rtsp://host[:port]/path, without credentials
    username: str = ""
    password: str = field(default="", repr=False)
    transport: Literal["tcp", "udp"] = "tcp"  # RTP over the RTSP connection, or over UDP
    timeout: float = 5.0  # per network step: connect, each answer, first frame
    decode_seconds: float = 5.0  # 0: only OPTIONS/DESCRIBE
    deadline: float = 30.0  # seconds for the whole poll, waiting for a decode slot included

    def __post_init__(self) -> None:
        if self.transport not in ("tcp", "udp"):
            raise ValueError(f"transport must be tcp or udp, not {self.transport!r}")
        if self.timeout <= 0 or self.deadline <= 0 or self.decode_seconds < 0:
            raise ValueError("timeout and deadline must be > 0, decode_seconds >= 0")
        parts = urlsplit(self.url)
        if parts.scheme.lower() not in ("rtsp", "rtsps") or not parts.hostname:
            raise ValueError(f"not an rtsp:// URL: {self.url!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("the URL must not carry credentials: give username and password")


class RtspCollector:
    def __init__(self, thresholds: QualityThresholds | None = None, max_decodes: int = 1):
        if max_decodes < 1:
            raise ValueError("max_decodes must be >= 1")
        self.thresholds = thresholds or QualityThresholds()
        self.max_decodes = max_decodes
        self._slots = asyncio.Semaphore(max_decodes)
        self._stopping = _CONTEXT.Event()  # seen by every decoder process at each packet
        self._pool: ProcessPoolExecutor | None = None
        self._closed = False

    def _decoders(self) -> ProcessPoolExecutor:
        """The decoder processes (again after a crash). Each is started and has FFmpeg loaded
        before its first stream (about 2 s): a probe's window is not spent starting one."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=self.max_decodes, mp_context=_CONTEXT,
                initializer=_decoder_started, initargs=(self._stopping,),
                max_tasks_per_child=DECODES_PER_PROCESS)
            for _ in range(self.max_decodes):
                self._pool.submit(_ready)
        return self._pool

    def start(self) -> None:
        """Start the decoder processes now rather than at the first probe."""
        self._decoders()

    async def close(self) -> None:
        """Stop the decodes in progress (each ends at its next packet or read timeout) and
        the decoder processes."""
        self._closed = True
        self._stopping.set()
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, True, cancel_futures=True)

    async def poll(self, job: RtspJob) -> PollResult:
        started = time.time()
        clock = time.perf_counter()
        result = PollResult(device=job.device, timestamp=started, duration=0.0, up=False,
                            collector="rtsp")
        try:
            async with asyncio.timeout(job.deadline):
                await self._run(job, result, time.monotonic() + job.deadline)
        except RtspError as exc:
            result.up, result.reason, result.detail = False, exc.reason, exc.detail
        except TimeoutError:
            result.up, result.reason = False, "timeout"
            result.detail = f"poll exceeded its deadline of {job.deadline:g}s"
        except Exception as exc:  # a bug in Vigil, not in the camera: keep polling the rest
            log.exception("RTSP poll of %s failed", job.device)
            result.up, result.reason = False, "error"
            result.detail = f"{type(exc).__name__}: {exc}"
        if not result.up and result.reason != "no_frames":
            result.readings = []
            result.evidence = []
        result.readings.append(Reading(job.device, "up", {}, 1.0 if result.up else 0.0,
                                       started, result.reason))
        result.duration = time.perf_counter() - clock
        return result

    async def _run(self, job: RtspJob, result: PollResult, deadline: float) -> None:
        begin = time.monotonic()
        async with RtspClient(job.url, job.username, job.password, job.timeout) as client:
            try:
                await client.request("OPTIONS")
            except RtspError as exc:
                if exc.reason != "fault":
                    raise
                result.problems.append(f"OPTIONS refused ({exc.detail}); DESCRIBE tried anyway")
            response = await client.request("DESCRIBE", {"Accept": "application/sdp"})
            result.requests = client.cseq
        describe_seconds = time.monotonic() - begin
        try:
            video = sdp.parse(response.body.decode("utf-8", "replace"))
        except sdp.SdpError as exc:
            raise RtspError("protocol", f"DESCRIBE answer is not an SDP: {exc}") from None
        if video is None:
            raise RtspError("unsupported", "the stream description has no video medium")
        add = self._adder(job, result)
        add("rtsp_describe_seconds", describe_seconds)
        if job.decode_seconds <= 0:
            _info(add, video, None, result)
            result.up = True
            return

        stats, diagnosis = await self._decode(job, deadline)
        _info(add, video, stats, result)
        if stats is None:
            result.problems.append("decode skipped: no decode slot came free before the "
                                   "poll's deadline (raise max_decodes or sample fewer "
                                   "cameras per minute)")
            result.up = True
            return
        result.problems.extend(stats.notes)
        if stats.reason is not None:
            if stats.reason == "no_frames":
                add("video_signal_lost", 1.0, "no_frames")
            raise RtspError(stats.reason, stats.detail)
        add("video_signal_lost", 0.0)
        add("rtsp_first_frame_seconds", stats.first_frame_seconds)
        add("rtsp_frames_per_second", stats.frames_per_second)
        add("rtsp_bitrate_bytes_per_second", stats.bytes_per_second)
        add("rtsp_keyframe_interval_seconds", stats.keyframe_interval)
        add("rtsp_decoded_frames", float(stats.frames))
        add("rtsp_decode_errors", float(stats.decode_errors))
        if diagnosis is not None:
            self._diagnosis(add, diagnosis, result)
        result.up = True

    def _diagnosis(self, add, diagnosis: Diagnosis, result: PollResult) -> None:
        for key, metric in MEASURES.items():
            if key in diagnosis.measures:
                add(metric, diagnosis.measures[key])
        for name in DIAGNOSES:
            if name not in diagnosis.found:
                continue
            hit = diagnosis.found[name]
            add(f"video_{name}", 1.0 if hit else 0.0, name if hit else None)
            if hit and name in diagnosis.evidence:
                result.evidence.append(Evidence(name, "image/jpeg", diagnosis.evidence[name]))
        result.problems.extend(diagnosis.notes)

    async def _decode(self, job: RtspJob, deadline: float
                      ) -> tuple[StreamStats | None, Diagnosis | None]:
        """Decode in a decoder process once a slot is free; (None, None) if none came free
        in time. The slot stays taken until the decode ends, even if this poll is cancelled
        (the decode stops by itself at the poll's deadline)."""
        if self._closed:
            raise RtspError("error", "the collector is closed")
        until = deadline - DEADLINE_MARGIN
        try:
            async with asyncio.timeout(max(0.0, until - time.monotonic() - job.timeout)):
                await self._slots.acquire()
        except TimeoutError:
            return None, None
        pool = self._decoders()
        try:
            future = asyncio.wrap_future(pool.submit(_decode, job, self.thresholds, until))
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _future: self._slots.release())
        try:
            return await asyncio.shield(future)
        except BrokenProcessPool:
            if self._pool is pool:
                self._pool = None  # the next decode starts new processes
                pool.shutdown(wait=False, cancel_futures=True)
            if self._closed:
                raise RtspError("error", "the collector is closed") from None
            log.warning("%s: the decoder process died while decoding the stream (FFmpeg "
                        "crashed on it, or the process was killed); decoder restarted",
                        job.device)
            raise RtspError("error", "the decoder process died while decoding the stream "
                                     "(FFmpeg crashed on it, or it was killed)") from None

    @staticmethod
    def _adder(job: RtspJob, result: PollResult):
        def add(metric: str, value: float | None, text: str | None = None,
                labels: dict[str, str] | None = None) -> None:
            if value is not None:
                result.readings.append(Reading(job.device, metric, labels or {}, float(value),
                                               result.timestamp, text))
        return add


def _decoder_started(stopping) -> None:
    """In a new decoder process: keep the agent's stop flag; Ctrl-C is for the agent, which
    stops its decoders itself."""
    global _stopping
    _stopping = stopping
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    import av  # noqa: F401 - loaded once here, not in a probe's time


def _ready() -> None:
    """A no-op task: makes the pool start a decoder process."""


_stopping = None  # in a decoder process: the agent's stop flag (multiprocessing Event)


def _decode(job: RtspJob, thresholds: QualityThresholds, until: float
            ) -> tuple[StreamStats, Diagnosis | None]:
    """In a decoder process: read the stream, diagnose its samples; only measures, findings
    and evidence JPEGs go back to the agent (not the frames)."""
    stats = sample_stream(job.url, job.username, job.password, job.transport, job.timeout,
                          job.decode_seconds, thresholds.samples, thresholds.analysis_width,
                          until, _stopping)
    found = diagnose(stats.samples, thresholds) if stats.samples else None
    stats.samples = []
    return stats, found


def _info(add, video: sdp.VideoInfo, stats: StreamStats | None, result: PollResult) -> None:
    """rtsp_stream_info: codec from the SDP; size from the decoded frames when there are
    any, else from the SDP (attribute or SPS), else unknown ("")."""
    width, height = video.width, video.height
    if stats is not None and stats.width:
        if width and (width, height) != (stats.width, stats.height):
            result.problems.append(f"SDP announces {width}x{height}, frames are "
                                   f"{stats.width}x{stats.height}")
        width, height = stats.width, stats.height
    add("rtsp_stream_info", 1.0, None, {"codec": video.codec,
                                        "width": str(width) if width else "",
                                        "height": str(height) if height else ""})
