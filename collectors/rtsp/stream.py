"""Read a few seconds of a camera's stream and decode it: PyAV (FFmpeg's libraries in-process).

Blocking by nature (FFmpeg's RTSP demuxer and decoders): the collector runs `sample_stream` in
a decoder process, a bounded number at a time, so neither FFmpeg nor the diagnosis competes
with the agent's event loop for the GIL. Every frame is decoded (inter-coded
frames need their predecessors); only `samples` of them, spread over the window, are
converted (downscaled, RGB) for the quality diagnosis.

FFmpeg does its own OPTIONS/DESCRIBE/SETUP/PLAY and authentication (Basic and Digest) from
credentials in the URL; the URL with credentials lives only in this call and never reaches a
message: errors are reported by FFmpeg's error kind, never its text.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from collectors.video.quality import Sample

# FFmpeg's RTSP demuxer would read up to 5 s of packets to learn each stream's parameters
# before handing out the first; the SDP tells the codec and the decoder learns the rest from
# the first keyframe, so probing is cut to the first packet: time to first frame is then the
# camera's (set-up and wait for a keyframe), not FFmpeg's.
PROBE_OPTIONS = {"analyzeduration": "0", "probesize": "32"}


class StopFlag(Protocol):
    """Set when the agent stops (a multiprocessing or threading Event)."""

    def is_set(self) -> bool: ...


@dataclass
class StreamStats:
    """What reading the stream measured. `reason` set: the read failed (see `detail`)."""

    opened_seconds: float | None = None  # av.open: FFmpeg's OPTIONS..PLAY and first packets
    first_frame_seconds: float | None = None  # from the start of the read to a decoded frame
    frames: int = 0
    packets: int = 0
    bytes: int = 0
    keyframes: int = 0
    media_seconds: float = 0.0  # stream time covered by the decoded frames
    frames_per_second: float | None = None
    bytes_per_second: float | None = None
    keyframe_interval: float | None = None
    codec: str = ""
    width: int = 0
    height: int = 0
    decode_errors: int = 0
    timed_frames: int = 0  # frames with a timestamp, first and last timestamp
    timed_first: float = 0.0
    timed_last: float = 0.0
    keyframe_times: list[float] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    reason: str | None = None
    detail: str = ""
    notes: list[str] = field(default_factory=list)


def credential_url(url: str, username: str, password: str) -> str:
    """The URL FFmpeg needs: credentials percent-encoded into its authority."""
    if not username:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(username, safe='')}:{quote(password, safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def sample_stream(url: str, username: str, password: str, transport: str, timeout: float,
                  seconds: float, samples: int, analysis_width: int, until: float,
                  stop: StopFlag) -> StreamStats:
    """Open the stream, decode `seconds` of it (stream time) and sample `samples` frames.

    Gives up with reason `no_frames` when no frame is decoded within `timeout` of the
    stream being opened, and stops early (keeping what it has) at the monotonic time
    `until` or when `stop` is set."""
    import av

    stats = StreamStats()
    start = time.monotonic()
    read_timeout = max(0.5, min(timeout, until - start))
    options = {"rtsp_transport": transport, "timeout": str(int(read_timeout * 1e6)),
               **PROBE_OPTIONS}
    try:
        # reads time out at half the timeout: the open waits for a first packet, then the
        # first read waits again, so a silent stream ends within about `timeout`
        container = av.open(credential_url(url, username, password), options=options,
                            timeout=(read_timeout, max(0.5, read_timeout / 2)))
    except Exception as exc:  # noqa: BLE001 - every FFmpeg failure is mapped to a reason
        stats.reason, stats.detail = _classify(exc, opening=True)
        if time.monotonic() - start >= 0.9 * read_timeout and stats.reason != "auth":
            stats.reason = "timeout"  # FFmpeg reports an unanswered SETUP/PLAY as bad data
            stats.detail = (f"the stream's set-up (SETUP/PLAY) got no answer within "
                            f"{read_timeout:g}s")
        return stats
    try:
        stats.opened_seconds = time.monotonic() - start
        if not container.streams.video:
            stats.reason, stats.detail = "unsupported", "the stream has no video track"
            return stats
        _read(container, stats, timeout, seconds, samples, analysis_width, start, until, stop)
    except Exception as exc:  # noqa: BLE001
        reason, detail = _classify(exc, opening=False)
        if stats.frames == 0:
            stats.reason, stats.detail = reason, detail
        else:
            stats.notes.append(f"stream stopped after {stats.frames} frames: {detail}")
    finally:
        try:
            container.close()
        except Exception:  # noqa: BLE001 - closing a broken stream may fail too
            pass
    _rates(stats)
    return stats


def _read(container, stats: StreamStats, timeout: float, seconds: float, samples: int,
          analysis_width: int, start: float, until: float, stop: StopFlag) -> None:
    """Decode until `seconds` of stream time are covered. Stream time is the frames'
    timestamps (RTP time); a frame without one (FFmpeg gives none before the first RTCP
    sender report) is placed by the wall clock instead."""
    import av

    stream = container.streams.video[0]
    context = stream.codec_context
    context.thread_count = 1  # one core per decode: the collector bounds concurrent decodes
    stats.codec = context.name or ""
    interval = seconds / max(samples - 1, 1)
    first_wall = first_pts = None
    timed = 0  # frames with a timestamp
    next_sample = 0.0
    for packet in container.demux(stream):
        now = time.monotonic()
        if stop.is_set():
            stats.notes.append("stopped: the agent is shutting down")
            return
        if now >= until:
            stats.notes.append("stopped at the poll's deadline")
            return
        if packet.size:
            stats.packets += 1
            stats.bytes += packet.size
        try:
            frames = context.decode(packet)
        except av.error.InvalidDataError:
            stats.decode_errors += 1
            frames = []
        for frame in frames:
            if first_wall is None:
                first_wall = now
                stats.first_frame_seconds = now - start
                stats.width, stats.height = frame.width, frame.height
            stamp = frame.time
            if stamp is not None:
                if first_pts is None:
                    first_pts = stamp - (now - first_wall)
                timed += 1
                stats.media_seconds = max(stats.media_seconds, stamp - first_pts)
                if timed == 1:
                    stats.timed_first = stamp
                stats.timed_last = stamp
                stats.timed_frames = timed
            elapsed = stamp - first_pts if stamp is not None else now - first_wall
            stats.frames += 1
            if frame.key_frame:
                stats.keyframes += 1
                stats.keyframe_times.append(elapsed)
            if len(stats.samples) < samples and elapsed >= next_sample - 1e-3:
                stats.samples.append(Sample(elapsed, _small(frame, analysis_width)))
                next_sample = max(next_sample + interval, elapsed + interval / 2)
        if first_wall is None:
            if now - start > timeout:
                stats.reason = "no_frames"
                stats.detail = (f"stream set up, {stats.packets} packets but no decodable "
                                f"frame within {timeout:g}s of opening it")
                return
            continue
        covered = max(stats.media_seconds, 0.0) if timed else now - first_wall
        if covered >= seconds - 1e-3 and len(stats.samples) >= samples:
            return
        if covered >= seconds + 1.0 or now - first_wall > seconds + timeout:
            return
    if stats.frames == 0:
        stats.reason, stats.detail = "no_frames", "the stream ended before any frame"
    else:
        stats.notes.append("the stream ended early")


def _small(frame, width: int):
    """The frame downscaled to `width` (never up), RGB, as a numpy array."""
    width = min(width, frame.width)
    height = max(2, round(frame.height * width / frame.width / 2) * 2)
    return frame.to_ndarray(width=width, height=height, format="rgb24", interpolation="AREA")


def _rates(stats: StreamStats) -> None:
    span = stats.timed_last - stats.timed_first
    if stats.timed_frames >= 2 and span > 0:
        stats.frames_per_second = (stats.timed_frames - 1) / span
        stats.bytes_per_second = stats.bytes / (stats.media_seconds
                                                + 1.0 / stats.frames_per_second)
    keys = stats.keyframe_times
    if len(keys) >= 2 and keys[-1] > keys[0]:
        stats.keyframe_interval = (keys[-1] - keys[0]) / (len(keys) - 1)


def _classify(exc: BaseException, opening: bool) -> tuple[str, str]:
    """(reason, detail) of an FFmpeg failure, without FFmpeg's text (it may hold the URL)."""
    import av

    kind = type(exc).__name__
    errors = av.error
    if isinstance(exc, errors.HTTPUnauthorizedError):
        return "auth", "the camera refused the credentials when the stream was opened (401)"
    if isinstance(exc, errors.HTTPForbiddenError | errors.HTTPNotFoundError
                  | errors.HTTPBadRequestError | errors.HTTPOtherClientError
                  | errors.HTTPServerError | errors.HTTPClientError):
        return "fault", f"the camera answered the stream set-up with an error ({kind})"
    if isinstance(exc, errors.ConnectionRefusedError):
        return "refused", "the camera refused the connection when the stream was opened"
    if isinstance(exc, errors.ExitError | errors.TimeoutError | TimeoutError):
        if opening:
            return "no_frames", ("the stream was described but not a frame came while it was "
                                 "set up and probed (SETUP/PLAY or data timed out)")
        return "no_frames", ("the stream was set up but sent no decodable frame within the "
                             "timeout")
    if isinstance(exc, errors.InvalidDataError | errors.EOFError):
        return "protocol", f"the stream could not be read as RTSP/RTP ({kind})"
    if isinstance(exc, errors.FFmpegError | OSError):
        return "protocol", f"FFmpeg could not read the stream ({kind})"
    return "error", f"{kind} while reading the stream"
