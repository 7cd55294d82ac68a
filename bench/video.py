"""RTSP probe and video quality diagnosis: CPU per probe, frames decoded per second, and the
RTSP test server's capacity. Run: `.venv/bin/python -m bench.video` (about 3-4 minutes).

1. The RTSP test server (agent/demo/rtsp_server.py, GStreamer) serves camera-like H.264 on
   127.0.0.1: main streams 1920x1080@25 (4 Mbit/s) and 1280x720@25 (2 Mbit/s), sub-streams
   704x576@25 (1 Mbit/s) and 640x360@15 (512 kbit/s), x264 `veryfast` (CABAC, 8x8 transform,
   P frames, keyframe every 2 s), as cameras' encoders make them.
2. CPU per probe: RtspCollector.poll (OPTIONS, DESCRIBE, decode --seconds of video, the
   quality diagnosis of --samples frames) run one at a time, CPU of this process (all its
   threads) per probe; frames decoded per CPU second. Also an OPTIONS/DESCRIBE-only probe.
3. The same decode by the `ffmpeg` program (Debian's, one thread, to /dev/null, CPU of the
   child), the alternative to PyAV: why the probe decodes in-process.
4. The verdict: every camera of a 172-camera site diagnosed at least once every 10 minutes on
   one core needs 172 probes per 600 CPU seconds, i.e. under 3.49 s of CPU per probe.
5. Server capacity: K clients at once, each on its own mount (640x360@10, the demo's size)
   read packets without decoding; the server's CPU and the frame rate each client gets, for
   growing K until the server saturates or a client falls under 90 % of the frame rate.
Every process started here is stopped by its PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.fleet import proc_cpu, proc_cpu_precise, say

ROOT = Path(__file__).resolve().parent.parent
SERVER = ROOT / "agent" / "demo" / "rtsp_server.py"
SITE_CAMERAS = 172
PERIOD = 600.0
BUDGET = PERIOD / SITE_CAMERAS  # CPU seconds per probe on one core
STREAMS = [("1080p25", 1920, 1080, 25, 4096), ("720p25", 1280, 720, 25, 2048),
           ("D1 25", 704, 576, 25, 1024), ("360p15", 640, 360, 15, 512)]
CAPACITY_SIZE = (640, 360, 10, 512)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    def __init__(self, work: Path, capacity_mounts: int):
        self.port = free_port()
        mounts = [{"path": f"/{name.split()[0]}", "width": w, "height": h, "fps": fps,
                   "bitrate": kbps, "preset": "veryfast"} for name, w, h, fps, kbps in STREAMS]
        w, h, fps, kbps = CAPACITY_SIZE
        mounts += [{"path": f"/cap/{i}", "width": w, "height": h, "fps": fps, "bitrate": kbps}
                   for i in range(capacity_mounts)]
        config = work / "server.json"
        config.write_text(json.dumps({"endpoints": [{"address": "127.0.0.1",
                                                     "port": self.port, "mounts": mounts}]}))
        self.log = open(work / "server.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["/usr/bin/python3", str(SERVER), "--config", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"RTSP server exited: {(work / 'server.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"OPTIONS rtsp://127.0.0.1/ RTSP/1.0\r\nCSeq: 1\r\n\r\n")
                    if sock.recv(16).startswith(b"RTSP/1.0"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("RTSP server did not answer")
            time.sleep(0.1)

    def url(self, path: str) -> str:
        return f"rtsp://127.0.0.1:{self.port}{path}"

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def _cpu_with_decoders() -> float:
    """CPU of this process and of the collector's decoder processes (its children)."""
    return time.process_time() + sum(proc_cpu_precise(child.pid)
                                     for child in multiprocessing.active_children())


def probe_cost(server: Server, path: str, seconds: float, probes: int, samples: int) -> dict:
    from collectors.rtsp.collector import RtspCollector, RtspJob
    from collectors.video.quality import QualityThresholds

    async def run() -> dict:
        collector = RtspCollector(QualityThresholds(samples=samples), max_decodes=1)
        cpu, frames, walls, flags = [], [], [], set()
        try:
            for _ in range(probes):
                job = RtspJob("bench", server.url(path), decode_seconds=seconds, timeout=5,
                              deadline=seconds + 20)
                before, wall = _cpu_with_decoders(), time.monotonic()
                result = await collector.poll(job)
                cpu.append(_cpu_with_decoders() - before)
                walls.append(time.monotonic() - wall)
                if not result.up:
                    raise SystemExit(f"probe of {path} failed: {result.reason} {result.detail}")
                values = {r.metric: r.value for r in result.readings}
                frames.append(values.get("rtsp_decoded_frames", 0))
                flags |= {r.metric for r in result.readings
                          if r.metric.startswith("video_") and r.text}
        finally:
            await collector.close()
        return {"cpu": statistics.median(cpu), "frames": statistics.median(frames),
                "wall": statistics.median(walls), "flags": sorted(flags)}

    return asyncio.run(run())


def diagnosis_cost(samples: int, rounds: int = 20) -> float:
    """CPU of diagnose() alone on `samples` camera-like frames (noise over a gradient)."""
    import numpy as np

    from collectors.video.quality import QualityThresholds, Sample, diagnose

    rng = np.random.default_rng(1)
    base = np.linspace(0, 255, 320)[None, :, None].repeat(180, 0).repeat(3, 2)
    frames = [Sample(i * 0.6, np.clip(base + rng.normal(0, 12, base.shape), 0, 255)
                     .astype(np.uint8)) for i in range(samples)]
    thresholds = QualityThresholds(samples=samples)
    before = time.process_time()
    for _ in range(rounds):
        diagnose(frames, thresholds)
    return (time.process_time() - before) / rounds


def ffmpeg_cost(server: Server, path: str, seconds: float) -> float | None:
    """CPU of Debian's ffmpeg decoding the same seconds (one thread, no output)."""
    binary = shutil.which("ffmpeg")
    if not binary:
        return None
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run([binary, "-nostdin", "-v", "error", "-threads", "1", "-rtsp_transport", "tcp",
                    "-i", server.url(path), "-t", str(seconds), "-an", "-f", "null", "-"],
                   check=True, timeout=seconds + 30)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def capacity_step(server: Server, clients: int, seconds: float) -> dict:
    """`clients` readers at once on distinct mounts: server CPU (cores) and frames each got."""
    import av

    counts = [0] * clients
    errors: list[str] = []
    stop = threading.Event()
    ready = threading.Semaphore(0)

    def reader(i: int) -> None:
        try:
            with av.open(server.url(f"/cap/{i}"), options={"rtsp_transport": "tcp",
                                                          "analyzeduration": "0",
                                                          "probesize": "32"},
                         timeout=(10, 10)) as container:
                first = True
                for packet in container.demux(video=0):
                    if stop.is_set():
                        return
                    if first:
                        ready.release()
                        first = False
                    if packet.size and packet.pts is not None and started.is_set():
                        counts[i] += 1
        except Exception as exc:  # noqa: BLE001 - reported as the step's failure
            errors.append(f"{type(exc).__name__}: {exc}")

    started = threading.Event()
    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30  # every client set up and receiving
    for _ in range(clients):
        if not ready.acquire(timeout=max(0.1, deadline - time.monotonic())):
            break
    time.sleep(1.0)
    cpu0, t0 = server.cpu(), time.monotonic()
    started.set()
    time.sleep(seconds)
    elapsed = time.monotonic() - t0
    cores = (server.cpu() - cpu0) / elapsed
    rss = server.rss_mb()
    got = [c / elapsed for c in counts]
    stop.set()
    for thread in threads:
        thread.join(15)
    return {"clients": clients, "server_cores": cores, "rss": rss, "fps_min": min(got),
            "fps_mean": statistics.mean(got), "errors": errors[:3]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="decoded seconds per probe")
    parser.add_argument("--probes", type=int, default=3, help="probes per stream (median)")
    parser.add_argument("--samples", type=int, default=8, help="frames diagnosed per probe")
    parser.add_argument("--capacity", default="16,32,64,96,128",
                        help="concurrent clients per capacity step ('' to skip)")
    parser.add_argument("--capacity-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    if not Path("/usr/bin/python3").exists() or not SERVER.exists():
        raise SystemExit("needs Debian's /usr/bin/python3 with python3-gi and GStreamer")
    steps = [int(x) for x in args.capacity.split(",") if x.strip()]
    say(f"Vigil video benchmark: {os.cpu_count()} cores, {args.seconds:g} s decoded and "
        f"{args.samples} frames diagnosed per probe, median of {args.probes} probes")
    with tempfile.TemporaryDirectory(prefix="vigil-bench-video-") as tmp:
        server = Server(Path(tmp), max(steps, default=0))
        try:
            return _run(server, args, steps)
        finally:
            server.stop()


def _run(server: Server, args: argparse.Namespace, steps: list[int]) -> int:
    say("\n1. CPU per probe (RtspCollector.poll, one at a time; this process' CPU)")
    describe = probe_cost(server, "/360p15", 0.0, 10, args.samples)
    say(f"   OPTIONS/DESCRIBE only: {describe['cpu'] * 1000:.1f} ms CPU per probe")
    say(f"   quality diagnosis alone ({args.samples} frames of 320x180): "
        f"{diagnosis_cost(args.samples) * 1000:.0f} ms CPU per probe")
    say(f"   {'stream':10} {'CPU/probe':>10} {'frames':>7} {'frames/CPU s':>13} "
        f"{'ffmpeg CLI':>11} {'budget ratio':>13} {'cameras/core/10 min':>20}")
    rows = []
    for name, _w, _h, _fps, _kbps in STREAMS:
        path = f"/{name.split()[0]}"
        cost = probe_cost(server, path, args.seconds, args.probes, args.samples)
        cli = ffmpeg_cost(server, path, args.seconds)
        per_cpu = cost["frames"] / cost["cpu"] if cost["cpu"] else float("inf")
        rows.append((name, cost, cli))
        cli_text = f"{cli:.2f} s" if cli is not None else "n/a"
        say(f"   {name:10} {cost['cpu']:9.2f}s {cost['frames']:7.0f} {per_cpu:13.0f} "
            f"{cli_text:>11} {BUDGET / cost['cpu']:12.1f}x {PERIOD / cost['cpu']:20.0f}"
            + (f"   (flags on a healthy stream: {cost['flags']})" if cost["flags"] else ""))
    worst = max(cost["cpu"] for _n, cost, _c in rows)
    say(f"\n2. Verdict: {SITE_CAMERAS} cameras every {PERIOD:g} s on one core needs under "
        f"{BUDGET:.2f} s of CPU per probe.")
    say(f"   Worst stream ({max(rows, key=lambda r: r[1]['cpu'])[0]}): {worst:.2f} s per "
        f"{args.seconds:g}-s probe -> {SITE_CAMERAS * worst / PERIOD * 100:.0f} % of one core "
        f"for the whole site: {'HOLDS' if worst < BUDGET else 'DOES NOT HOLD'} "
        f"({BUDGET / worst:.1f}x headroom).")
    if rows[0][2] is not None:
        ratio = statistics.mean(cli / cost["cpu"] for _n, cost, cli in rows if cli)
        say(f"   ffmpeg as a subprocess costs {ratio:.2f}x the in-process PyAV probe (which "
            f"also diagnoses), before piping any frame back.")
    if steps:
        w, h, fps, kbps = CAPACITY_SIZE
        say(f"\n3. RTSP server capacity: clients on distinct mounts, {w}x{h}@{fps} "
            f"{kbps} kbit/s ultrafast, {args.capacity_seconds:g} s per step")
        say(f"   idle: {len(STREAMS) + max(steps)} mounts, server RSS {server.rss_mb():.0f} MB "
            f"(a mount runs a pipeline only while a client watches it)")
        say(f"   {'clients':>7} {'server cores':>13} {'cores/stream':>13} {'RSS MB':>7} "
            f"{'fps min':>8} {'fps mean':>9}")
        best = 0
        for clients in steps:
            step = capacity_step(server, clients, args.capacity_seconds)
            ok = not step["errors"] and step["fps_min"] >= 0.9 * fps
            say(f"   {clients:7d} {step['server_cores']:13.2f} "
                f"{step['server_cores'] / clients:13.3f} {step['rss']:7.0f} {step['fps_min']:8.1f} "
                f"{step['fps_mean']:9.1f}" + ("" if ok else f"   saturated {step['errors']}"))
            if not ok:
                break
            best = clients
            per_stream = step["server_cores"] / clients
            if step["server_cores"] > 1.6:  # the clients need the rest of the 2 cores
                break
        if best:
            say(f"   one process served {best} concurrent streams at full frame rate; "
                f"~{1 / per_stream:.0f} streams per core of server CPU at this size")
    return 0


if __name__ == "__main__":
    sys.exit(main())
