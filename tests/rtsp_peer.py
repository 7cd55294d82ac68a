"""The RTSP test peer: agent/demo/rtsp_server.py (GStreamer gst-rtsp-server) on loopback.

It runs with Debian's /usr/bin/python3, the interpreter that has python3-gi, as a child
process stopped by its PID (tests/peers.py). A missing GStreamer piece skips the test outside
CI and fails it under CI=true, naming the Debian packages.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests import peers

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = peers.ROOT / "agent" / "demo" / "rtsp_server.py"
DEBIAN = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp gstreamer1.0-plugins-base "
          "gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad")
_CHECKED: dict[str, str] = {}


def require(*elements: str) -> None:
    """Skip (fail under CI) unless GStreamer, gst-rtsp-server and `elements` are usable."""
    key = " ".join(elements)
    if key not in _CHECKED:
        script = ("import sys, gi; gi.require_version('Gst', '1.0'); "
                  "gi.require_version('GstRtspServer', '1.0'); "
                  "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
                  "missing = [e for e in sys.argv[1:] if not Gst.ElementFactory.find(e)]; "
                  "print(' '.join(missing))")
        try:
            done = subprocess.run([SYSTEM_PYTHON, "-c", script, "x264enc", "rtph264pay",
                                   "videotestsrc", *elements], capture_output=True, text=True,
                                  timeout=60)
            _CHECKED[key] = (done.stdout.strip() and f"GStreamer elements missing: "
                             f"{done.stdout.strip()}") if done.returncode == 0 else \
                done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed"
        except (OSError, subprocess.TimeoutExpired) as exc:
            _CHECKED[key] = f"{SYSTEM_PYTHON}: {exc}"
    if _CHECKED[key]:
        peers.missing(f"the RTSP test server cannot run ({_CHECKED[key]}): "
                      f"apt-get install {DEBIAN}")


def options_answered(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether an RTSP server on host:port answers an OPTIONS request."""
    request = (f"OPTIONS rtsp://{host}:{port}/ RTSP/1.0\r\nCSeq: 1\r\n\r\n").encode()
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(request)
            return sock.recv(64).startswith(b"RTSP/1.0")
    except OSError:
        return False


@contextmanager
def rtsp_server(work: Path, endpoints: list[dict], defaults: dict | None = None,
                timeout: float = 30.0) -> Iterator[list[dict]]:
    """Run the RTSP server with these endpoints ({"port": 0 for a free one, "mounts": [...],
    optional "user", "password", "auth"}); yields them with their ports, once each answers
    OPTIONS."""
    require(*{_element(m) for e in endpoints for m in e.get("mounts", []) if _element(m)})
    endpoints = [{"address": "127.0.0.1", **e} for e in endpoints]
    for endpoint in endpoints:
        if not endpoint.get("port"):
            endpoint["port"] = _free_port(endpoint["address"])
    config = work / "rtsp-server.json"
    config.write_text(json.dumps({"defaults": defaults or {}, "endpoints": endpoints}))
    log = work / "rtsp-server.log"
    with peers.child([SYSTEM_PYTHON, str(SERVER), "--config", str(config)], log) as proc:
        deadline = time.monotonic() + timeout
        waiting = list(endpoints)
        while waiting:
            if proc.poll() is not None:
                raise RuntimeError(f"the RTSP server exited with {proc.returncode}: "
                                   f"{log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the RTSP server did not answer within {timeout}s: "
                                   f"{log.read_text()[-2000:]}")
            waiting = [e for e in waiting if not options_answered(e["address"], e["port"])]
            if waiting:
                time.sleep(0.1)
        yield endpoints


def _free_port(address: str) -> int:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((address, 0))
        return sock.getsockname()[1]


def _element(mount: dict) -> str | None:
    return {"h265": "x265enc", "mjpeg": "jpegenc"}.get(mount.get("codec", ""))
