"""ONVIF camera health polling: polls per second, CPU per poll, memory, and the daemon with
2,000 cameras every 60 s. Run: `bench/run --suite cameras` (about 6 minutes; shorter:
`--sizes 200 --daemon-cameras 200 --intervals 1`). Figures: docs/cameras-benchmark.md.

1. Simulated cameras: agent/demo/onvif.py in its own process (so its CPU is not counted as
   the poller's, and is read separately), one camera per loopback address 127.78.X.Y, all on
   one port, vendors in turn (Hikvision, Dahua, Axis), every 4th a PTZ camera. One extra
   camera warms each client up (one-time library costs: WSDL parsing, imports).
2. Throughput, for each N in --sizes, contenders in their own processes (CPU = the client's
   getrusage, all threads; peak RSS its own), at most --concurrency polls in flight, rounds
   interleaved between contenders. One poll reads what OnvifCollector.poll reads: clock
   (GetSystemDateAndTime), identity (GetDeviceInformation), GetProfiles, GetStreamUri per
   profile, and PTZ GetStatus + GetPresets on PTZ cameras: 5 requests, 7 on a PTZ camera.
     baseline-aiohttp  the same SOAP requests written by hand (WS-Security digest per request)
                       over one aiohttp session, answers parsed with lxml: the floor of a
                       Python ONVIF poller, and the baseline the ratios are taken against.
     onvif-zeep-async  the same operations through the library Vigil builds on, alone.
     vigil-onvif       OnvifCollector.poll, the daemon's poll path (sessions, readings).
   "first poll" = a camera seen for the first time (session set-up: the clock, GetServices,
   per-service zeep clients); "steady" = later polls reusing the session. onvif-zeep-async
   closes idle connections after 4 s and the daemon polls every 60 s, so every steady poll
   opens new TCP connections; the baseline uses the same 4-s keep-alive and a camera's
   rounds are at least --gap s apart, so no contender reuses a connection across polls.
3. Reachability (collectors/reach), same cameras and rounds:
     baseline-connect  a bare asyncio TCP connect to the ONVIF port and close.
     vigil-reach-tcp   ReachCollector.poll, TCP connect only.
     vigil-reach       ReachCollector.poll as the daemon's default: 2 ICMP echoes 0.2 s apart
                       (raw or unprivileged socket, as the process may) + the TCP connect.
4. The daemon: agent.daemon.Agent with --daemon-cameras cameras (snmp: false, onvif + reach,
   events off unless --events), every --interval s, 64 polls in flight, in its own process.
   The first interval builds every session (reported apart); then --intervals whole intervals
   are measured: CPU cores, polls and failures per collector, poll lag (every value the
   scheduler observes into vigil_poll_lag_seconds), skipped polls, RSS, threads, open files,
   the cost of rendering /metrics. Target (issue 4): under one core.
Every process started here is stopped by its PID, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import json
import os
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import ClassVar

from bench.fleet import interrupt, proc_cpu_precise, proc_status_kb, say, stop_process
from bench.scheduled import LagRecorder, cpu_seconds, percentile

ROOT = Path(__file__).resolve().parent.parent
ADDRESS_PREFIX = "127.78"
USER, PASSWORD = "admin", "bench-cam-1"
VENDORS = ("hikvision", "dahua", "axis")
PTZ_EVERY = 4
ONVIF_CONTENDERS = ("baseline-aiohttp", "onvif-zeep-async", "vigil-onvif")
REACH_CONTENDERS = ("baseline-connect", "vigil-reach-tcp", "vigil-reach")
CONTENDERS = ONVIF_CONTENDERS + REACH_CONTENDERS
KEEPALIVE = 4.0  # onvif-zeep-async's KEEPALIVE_EXPIRY, seconds
TIMEOUT, DEADLINE = 5.0, 54.0  # the daemon's defaults: onvif.timeout, 0.9 x 60 s


def raise_nofile() -> None:
    """Open files up to the hard limit (2,000 cameras: a socket per camera and service)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def address(i: int) -> str:
    return f"{ADDRESS_PREFIX}.{i // 250}.{i % 250 + 1}"


def cameras(count: int, port: int) -> list[dict]:
    return [{"name": f"cam-{i:04d}", "address": address(i), "port": port,
             "vendor": VENDORS[i % len(VENDORS)], "ptz": i % PTZ_EVERY == 0, "index": i + 1}
            for i in range(count)]


def pick_port(wanted: int) -> int:
    """`wanted` if it can be bound on the cameras' addresses, else a free one."""
    for port in (wanted, 0):
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind((address(0), port))
                b.bind((address(1), a.getsockname()[1]))
                return a.getsockname()[1]
        except OSError:
            continue
    raise SystemExit("no free TCP port on 127.78.0.1")


def rss_mb(pid: int, key: str = "VmRSS") -> float:
    return proc_status_kb(pid, key) / 1024


# ---------------------------------------------------------------------------------------
# the simulator


class Simulator:
    """agent/demo/onvif.py serving every camera, in its own process."""

    def __init__(self, work: Path, cams: list[dict]):
        config = work / "cameras.json"
        config.write_text(json.dumps({"defaults": {"username": USER, "password": PASSWORD},
                                      "cameras": cams}))
        self.log = work / "simulator.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agent.demo.onvif", "--config", str(config)], cwd=ROOT,
                stdout=subprocess.PIPE, stderr=log, text=True, preexec_fn=raise_nofile,
                start_new_session=True)
        line = _readline(self.proc, 60)
        if not line or not json.loads(line).get("ready"):
            self.stop()
            raise SystemExit(f"ONVIF simulator did not start: {self.log.read_text()[-1500:]}")

    def cpu(self) -> float:
        return proc_cpu_precise(self.proc.pid)

    def peak_rss_mb(self) -> float:
        return rss_mb(self.proc.pid, "VmHWM")

    def stop(self) -> None:
        stop_process(self.proc)


def _readline(proc: subprocess.Popen, timeout: float) -> str:
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    try:
        if not selector.select(timeout):
            return ""
        return proc.stdout.readline()
    finally:
        selector.close()


# ---------------------------------------------------------------------------------------
# the contenders' clients (run in worker processes)


class RawOnvif:
    """The same SOAP requests written by hand: aiohttp + lxml, WS-Security digest."""

    SOAP = "http://www.w3.org/2003/05/soap-envelope"
    WSSE = ("http://docs.oasis-open.org/wss/2004/01/"
            "oasis-200401-wss-wssecurity-secext-1.0.xsd")
    WSU = ("http://docs.oasis-open.org/wss/2004/01/"
           "oasis-200401-wss-wssecurity-utility-1.0.xsd")
    NS: ClassVar[dict[str, str]] = {"tt": "http://www.onvif.org/ver10/schema",
          "tds": "http://www.onvif.org/ver10/device/wsdl",
          "trt": "http://www.onvif.org/ver10/media/wsdl",
          "tptz": "http://www.onvif.org/ver20/ptz/wsdl"}
    DIGEST = ("http://docs.oasis-open.org/wss/2004/01/"
              "oasis-200401-wss-username-token-profile-1.0#PasswordDigest")
    BASE64 = ("http://docs.oasis-open.org/wss/2004/01/"
              "oasis-200401-wss-soap-message-security-1.0#Base64Binary")

    def __init__(self, cams: list[dict]):
        from lxml import etree

        self.etree = etree
        self.parser = etree.XMLParser(resolve_entities=False, no_network=True)
        self.cams = cams
        self.state: dict[int, dict] = {}
        self.session = None
        decl = " ".join(f'xmlns:{k}="{v}"' for k, v in self.NS.items())
        self.open = (f'<?xml version="1.0" encoding="UTF-8"?><s:Envelope '
                     f'xmlns:s="{self.SOAP}" {decl}>')

    async def start(self) -> None:
        import aiohttp

        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE),
            timeout=aiohttp.ClientTimeout(total=TIMEOUT))

    async def close(self) -> None:
        await self.session.close()

    def _security(self, offset: float) -> str:
        nonce = os.urandom(16)
        created = (dt.datetime.fromtimestamp(time.time() + offset, dt.UTC)
                   .strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z")
        digest = base64.b64encode(hashlib.sha1(nonce + created.encode()
                                               + PASSWORD.encode()).digest()).decode()
        return (f'<s:Header><wsse:Security xmlns:wsse="{self.WSSE}" xmlns:wsu="{self.WSU}" '
                f's:mustUnderstand="true"><wsse:UsernameToken><wsse:Username>{USER}'
                f'</wsse:Username><wsse:Password Type="{self.DIGEST}">{digest}</wsse:Password>'
                f'<wsse:Nonce EncodingType="{self.BASE64}">'
                f'{base64.b64encode(nonce).decode()}</wsse:Nonce><wsu:Created>{created}'
                f'</wsu:Created></wsse:UsernameToken></wsse:Security></s:Header>')

    async def call(self, url: str, body: str, offset: float | None):
        header = self._security(offset) if offset is not None else ""
        data = f"{self.open}{header}<s:Body>{body}</s:Body></s:Envelope>".encode()
        async with self.session.post(url, data=data, headers={
                "Content-Type": "application/soap+xml; charset=utf-8"}) as response:
            raw = await response.read()
            status = response.status
        root = self.etree.fromstring(raw, self.parser)
        answer = root.find(f"{{{self.SOAP}}}Body")[0]
        if status != 200 or answer.tag == f"{{{self.SOAP}}}Fault":
            raise RuntimeError(f"HTTP {status}: {answer.findtext('.//{*}Text')}")
        return answer

    def _utc(self, answer) -> float:
        t = answer.find(".//tt:UTCDateTime", self.NS)
        get = lambda path: int(t.findtext(path, namespaces=self.NS))  # noqa: E731
        return dt.datetime(get("tt:Date/tt:Year"), get("tt:Date/tt:Month"),
                           get("tt:Date/tt:Day"), get("tt:Time/tt:Hour"),
                           get("tt:Time/tt:Minute"), get("tt:Time/tt:Second"),
                           tzinfo=dt.UTC).timestamp()

    async def first(self, i: int) -> tuple[bool, int, str]:
        cam = self.cams[i]
        device = f"http://{cam['address']}:{cam['port']}/onvif/device_service"
        before = time.time()
        answer = await self.call(device, "<tds:GetSystemDateAndTime/>", None)
        offset = self._utc(answer) + 0.5 - (before + time.time()) / 2
        services = await self.call(device, "<tds:GetServices><tds:IncludeCapability>false"
                                           "</tds:IncludeCapability></tds:GetServices>", offset)
        xaddrs = {s.findtext("tds:Namespace", namespaces=self.NS):
                  s.findtext("tds:XAddr", namespaces=self.NS)
                  for s in services.findall("tds:Service", self.NS)}
        self.state[i] = {"offset": offset, "device": device,
                         "media": xaddrs[self.NS["trt"]], "ptz": xaddrs.get(self.NS["tptz"])}
        ok, requests, detail = await self.poll(i)
        return ok, requests + 2, detail

    async def poll(self, i: int) -> tuple[bool, int, str]:
        cam, state = self.cams[i], self.state[i]
        ns, text = self.NS, lambda e, p: (e.findtext(p, namespaces=self.NS) or "").strip()
        before = time.time()
        answer = await self.call(state["device"], "<tds:GetSystemDateAndTime/>", None)
        after = time.time()
        reading = {"kind": text(answer, ".//tt:DateTimeType"),
                   "offset": self._utc(answer) + 0.5 - (before + after) / 2,
                   "round_trip": after - before}
        offset = state["offset"]
        info = await self.call(state["device"], "<tds:GetDeviceInformation/>", offset)
        reading["identity"] = {k: text(info, f"tds:{k}") for k in (
            "Manufacturer", "Model", "FirmwareVersion", "SerialNumber", "HardwareId")}
        profiles = await self.call(state["media"], "<trt:GetProfiles/>", offset)
        tokens, streams = [], []
        for profile in profiles.findall("trt:Profiles", ns):
            token = profile.get("token")
            encoder = profile.find("tt:VideoEncoderConfiguration", ns)
            tokens.append(token)
            uri = await self.call(state["media"], (
                "<trt:GetStreamUri><trt:StreamSetup><tt:Stream>RTP-Unicast</tt:Stream>"
                "<tt:Transport><tt:Protocol>RTSP</tt:Protocol></tt:Transport></trt:StreamSetup>"
                f"<trt:ProfileToken>{token}</trt:ProfileToken></trt:GetStreamUri>"), offset)
            streams.append((token, text(encoder, "tt:Encoding"),
                            text(encoder, "tt:Resolution/tt:Width"),
                            text(encoder, "tt:Resolution/tt:Height"), text(uri, ".//tt:Uri")))
        requests = 3 + len(tokens)
        if cam["ptz"] and state["ptz"] and tokens:
            status = await self.call(state["ptz"], "<tptz:GetStatus><tptz:ProfileToken>"
                                     f"{tokens[0]}</tptz:ProfileToken></tptz:GetStatus>", offset)
            reading["ptz"] = (text(status, ".//tt:MoveStatus/tt:PanTilt"),
                              text(status, ".//tt:MoveStatus/tt:Zoom"),
                              text(status, ".//tt:Error"))
            presets = await self.call(state["ptz"], "<tptz:GetPresets><tptz:ProfileToken>"
                                      f"{tokens[0]}</tptz:ProfileToken></tptz:GetPresets>", offset)
            reading["presets"] = len(presets.findall("tptz:Preset", ns))
            requests += 2
        reading["streams"] = streams
        ok = bool(reading["identity"]["Model"]) and len(streams) == len(tokens) > 0
        return ok, requests, "" if ok else f"incomplete answer: {reading}"


class ZeepOnvif:
    """The same operations through onvif-zeep-async alone (one ONVIFCamera per camera, made
    as Vigil makes it)."""

    STREAM: ClassVar[dict] = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}

    def __init__(self, cams: list[dict]):
        self.cams = cams
        self.devices: dict[int, object] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        for camera in self.devices.values():
            await camera.close()

    async def first(self, i: int) -> tuple[bool, int, str]:
        from onvif import ONVIFCamera

        cam = self.cams[i]
        camera = ONVIFCamera(cam["address"], cam["port"], USER, PASSWORD, adjust_time=True,
                             no_cache=True)
        self.devices[i] = camera
        await camera.update_xaddrs()
        ok, requests, detail = await self.poll(i)
        return ok, requests + 2, detail

    async def poll(self, i: int) -> tuple[bool, int, str]:
        camera = self.devices[i]
        devicemgmt = await camera.create_devicemgmt_service()
        clock = await devicemgmt.authless_GetSystemDateAndTime()
        info = await devicemgmt.GetDeviceInformation()
        media = await camera.create_media_service()
        profiles = await media.GetProfiles()
        uris = [await media.GetStreamUri({"StreamSetup": self.STREAM,
                                          "ProfileToken": p.token}) for p in profiles]
        requests = 3 + len(uris)
        if self.cams[i]["ptz"]:
            ptz = await camera.create_ptz_service()
            await ptz.GetStatus({"ProfileToken": profiles[0].token})
            await ptz.GetPresets({"ProfileToken": profiles[0].token})
            requests += 2
        ok = clock is not None and bool(info.Model) and all(u.Uri for u in uris)
        return ok, requests, "" if ok else "incomplete answer"


class VigilOnvif:
    """OnvifCollector.poll, the daemon's poll path."""

    def __init__(self, cams: list[dict]):
        from collectors.onvif.collector import OnvifCollector, OnvifJob

        self.jobs = [OnvifJob(c["name"], c["address"], c["port"], USER, PASSWORD, TIMEOUT,
                              c["ptz"], DEADLINE) for c in cams]
        self.collector_type = OnvifCollector
        self.collector = None

    async def start(self) -> None:
        self.collector = self.collector_type()

    async def close(self) -> None:
        await self.collector.close()

    async def poll(self, i: int) -> tuple[bool, int, str]:
        result = await self.collector.poll(self.jobs[i])
        return result.up, result.requests, "" if result.up else \
            f"{result.reason}: {result.detail}"

    first = poll


class Connect:
    """Baseline of the reachability check: a bare asyncio TCP connect and close."""

    def __init__(self, cams: list[dict]):
        self.cams = cams

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def poll(self, i: int) -> tuple[bool, int, str]:
        cam = self.cams[i]
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            try:
                async with asyncio.timeout(1.0):
                    await loop.sock_connect(sock, (cam["address"], cam["port"]))
            except (OSError, TimeoutError) as exc:
                return False, 1, f"{type(exc).__name__}: {exc}"
        return True, 1, ""

    first = poll


class Reach:
    """ReachCollector.poll with the daemon's defaults (2 echoes, 1 s timeout) or TCP only."""

    def __init__(self, cams: list[dict], icmp: bool):
        from collectors.reach.collector import ReachCollector, ReachJob

        self.jobs = [ReachJob(c["name"], c["address"], (c["port"],), icmp, 2, 1.0, DEADLINE)
                     for c in cams]
        self.collector = ReachCollector()
        self.icmp = icmp

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        await self.collector.close()

    def mode(self) -> str:
        return (self.collector.icmp_mode() or "unavailable") if self.icmp else "off"

    async def poll(self, i: int) -> tuple[bool, int, str]:
        result = await self.collector.poll(self.jobs[i])
        return result.up, result.requests, "" if result.up else \
            f"{result.reason}: {result.detail}"

    first = poll


def make_client(mode: str, cams: list[dict]):
    return {"baseline-aiohttp": lambda: RawOnvif(cams),
            "onvif-zeep-async": lambda: ZeepOnvif(cams),
            "vigil-onvif": lambda: VigilOnvif(cams),
            "baseline-connect": lambda: Connect(cams),
            "vigil-reach-tcp": lambda: Reach(cams, icmp=False),
            "vigil-reach": lambda: Reach(cams, icmp=True)}[mode]()


def _reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


async def _batch(client, op: str, indices: list[int], concurrency: int) -> dict:
    semaphore = asyncio.Semaphore(concurrency)
    call = client.first if op in ("first", "warm") else client.poll

    async def one(i: int) -> tuple[bool, int, str]:
        async with semaphore:
            try:
                return await call(i)
            except Exception as exc:  # noqa: BLE001 - a failed poll, counted and shown
                return False, 0, f"{type(exc).__name__}: {exc}"[:300]

    c0, w0 = cpu_seconds(), time.perf_counter()
    outcomes = await asyncio.gather(*(one(i) for i in indices))
    wall, cpu = time.perf_counter() - w0, cpu_seconds() - c0
    failures = [d for ok, _r, d in outcomes if not ok]
    return {"polls": len(indices), "cpu": cpu, "wall": wall, "failed": len(failures),
            "detail": failures[0] if failures else "",
            "requests": sum(r for _ok, r, _d in outcomes),
            "rss_kb": proc_status_kb(os.getpid(), "VmRSS"),
            "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "threads": threading.active_count()}


async def _worker(args: argparse.Namespace) -> None:
    cams = json.loads(Path(args.cameras).read_text())["cameras"]
    client = make_client(args.mode, cams)
    await client.start()
    loop = asyncio.get_running_loop()
    _reply({"ready": True, "rss_kb": proc_status_kb(os.getpid(), "VmRSS")})
    spare = len(cams) - 1
    while True:  # commands come on stdin; the loop keeps running (keep-alive timers fire)
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        op = command["op"]
        if op == "quit":
            await client.close()
            _reply({"maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss})
            break
        if op == "warm":  # the spare camera: a first poll and a steady one, costs paid once
            result = await _batch(client, "warm", [spare], 1)
            again = await _batch(client, "round", [spare], 1)
            result["failed"] += again["failed"]
            result["detail"] = result["detail"] or again["detail"]
            result["icmp"] = client.mode() if isinstance(client, Reach) else None
        else:
            result = await _batch(client, op, list(range(command["n"])), args.concurrency)
        _reply(result)


def worker_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.cameras --worker")
    parser.add_argument("--mode", choices=CONTENDERS, required=True)
    parser.add_argument("--cameras", required=True)
    parser.add_argument("--concurrency", type=int, default=64)
    args = parser.parse_args(argv)
    raise_nofile()
    asyncio.run(_worker(args))
    return 0


class Worker:
    """A contender's client process, driven line by line."""

    def __init__(self, name: str, cameras_file: Path, concurrency: int, log: Path):
        self.name = name
        self.log = log
        with open(log, "a") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bench.cameras", "--worker", "--mode", name,
                 "--cameras", str(cameras_file), "--concurrency", str(concurrency)],
                cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                text=True, start_new_session=True)
        self.ready = self._read(120)
        self.last = 0.0  # when its last round ended

    def _read(self, timeout: float) -> dict:
        line = _readline(self.proc, timeout)
        if not line:
            raise RuntimeError(f"{self.name}: no answer in {timeout:g}s "
                               f"({self.log.read_text()[-1500:]})")
        return json.loads(line)

    def send(self, command: dict, timeout: float = 900) -> dict:
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()
        return self._read(timeout)

    def quit(self) -> dict:
        try:
            bye = self.send({"op": "quit"}, 60)
            self.proc.wait(10)
            return bye
        finally:
            self.kill()

    def kill(self) -> None:
        stop_process(self.proc)


# ---------------------------------------------------------------------------------------
# throughput


def rounds_for(n: int, setting: str) -> int:
    return max(2, min(5, 6000 // max(1, n))) if setting == "auto" else int(setting)


def throughput(n: int, args: argparse.Namespace, work: Path, sim: Simulator,
               live: list) -> dict[str, dict]:
    rounds = rounds_for(n, args.rounds)
    say(f"\n== {n} cameras: {rounds} round(s) per contender, {args.concurrency} polls in "
        f"flight, a camera's rounds at least {args.gap:g} s apart")
    workers: dict[str, Worker] = {}
    out: dict[str, dict] = {}
    samples: dict[str, list[dict]] = {}
    try:
        for name in args.contenders:
            workers[name] = Worker(name, work / "cameras.json", args.concurrency,
                                   work / f"{name}-{n}.log")
            live.append(workers[name])
        for name, worker in workers.items():
            warm = worker.send({"op": "warm"})
            if warm["failed"]:
                raise RuntimeError(f"{name}: the warm-up camera failed: {warm['detail']}")
            out[name] = {"cameras": n, "warm_cpu": warm["cpu"],
                         "rss_warm_kb": warm["rss_kb"], "icmp": warm.get("icmp")}
            samples[name] = []
        for name in args.contenders:
            if name not in ONVIF_CONTENDERS:
                continue
            s0 = sim.cpu()
            first = workers[name].send({"op": "first", "n": n})
            workers[name].last = time.monotonic()
            out[name].update(first_cpu_ms=first["cpu"] / n * 1000,
                             first_per_second=n / first["wall"],
                             first_requests=first["requests"] / n,
                             first_sim_ms=(sim.cpu() - s0) / n * 1000,
                             first_failed=first["failed"])
            say(f"  first poll   {name:17s} {n / first['wall']:6.0f} polls/s "
                f"{first['cpu'] / n * 1000:7.2f} ms CPU/poll "
                f"({first['requests'] / n:.1f} requests; library warm-up "
                f"{out[name]['warm_cpu']:.2f} s CPU once)"
                + (f"  FAILED {first['failed']}: {first['detail'][:150]}"
                   if first["failed"] else ""))
        for r in range(rounds):
            for name, worker in workers.items():
                if name in ONVIF_CONTENDERS:
                    time.sleep(max(0.0, args.gap - (time.monotonic() - worker.last)))
                s0 = sim.cpu()
                result = worker.send({"op": "round", "n": n})
                worker.last = time.monotonic()
                result["sim_cpu"] = sim.cpu() - s0
                samples[name].append(result)
                say(f"  round {r + 1}/{rounds}  {name:17s} {n / result['wall']:6.0f} polls/s "
                    f"{result['cpu'] / n * 1000:7.2f} ms CPU/poll "
                    f"{result['wall']:6.1f} s wall, simulator "
                    f"{result['sim_cpu'] / n * 1000:.2f} ms/poll"
                    + (f"  FAILED {result['failed']}: {result['detail'][:150]}"
                       if result["failed"] else ""))
        for name, worker in workers.items():
            bye = worker.quit()
            rs = samples[name]
            out[name].update(
                rounds=len(rs),
                per_second=statistics.median(s["polls"] / s["wall"] for s in rs),
                cpu_ms=statistics.median(s["cpu"] / s["polls"] * 1000 for s in rs),
                cpu_ms_rounds=[s["cpu"] / s["polls"] * 1000 for s in rs],
                sim_ms=statistics.median(s["sim_cpu"] / s["polls"] * 1000 for s in rs),
                requests=statistics.median(s["requests"] / s["polls"] for s in rs),
                failed=sum(s["failed"] for s in rs) + out[name].get("first_failed", 0),
                peak_rss_kb=bye["maxrss_kb"],
                threads=max(s["threads"] for s in rs))
            out[name]["kb_per_camera"] = (bye["maxrss_kb"] - out[name]["rss_warm_kb"]) / n
    finally:
        for worker in workers.values():
            worker.kill()
    return out


# ---------------------------------------------------------------------------------------
# the daemon case (its own process)


def write_daemon_config(work: Path, cams: list[dict], args: argparse.Namespace) -> Path:
    import yaml

    work.mkdir(parents=True, exist_ok=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        listen = f"127.0.0.1:{sock.getsockname()[1]}"
    agent = {
        "agent": {"id": "bench-cameras"}, "listen": listen, "inventory": ["inventory.yaml"],
        "credentials": "credentials.yaml", "state_dir": str(work / "state"),
        "log_level": "warning",
        "schedule": {"default_interval": f"{args.interval:g}s",
                     "max_concurrent_polls": args.concurrency},
        "onvif": {"interval": f"{args.interval:g}s", "timeout": f"{TIMEOUT:g}s",
                  "events": args.events},
        "reachability": {"enabled": args.reach, "interval": f"{args.interval:g}s"},
    }
    (work / "agent.yaml").write_text(yaml.safe_dump(agent, sort_keys=False))
    credentials = work / "credentials.yaml"
    credentials.write_text(yaml.safe_dump(
        {"credentials": {"cams": {"username": USER, "password": PASSWORD}}}))
    os.chmod(credentials, 0o600)
    sites = [{"id": f"site-{k:02d}"} for k in range(max(1, -(-len(cams) // 250)))]
    devices = [{"id": c["name"], "kind": "ptz_camera" if c["ptz"] else "fixed_camera",
                "site": sites[i // 250]["id"], "address": c["address"], "snmp": False,
                "onvif": {"port": c["port"], "credentials": "cams", "ptz": c["ptz"]}}
               for i, c in enumerate(cams)]
    (work / "inventory.yaml").write_text(yaml.safe_dump(
        {"sites": sites, "devices": devices}, sort_keys=False))
    return work / "agent.yaml"


class GcRecorder:
    """Pauses of the garbage collector, per generation (gc.callbacks)."""

    def __init__(self):
        import gc

        self.pauses: list[tuple[float, int, float]] = []  # (when, generation, seconds)
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.pauses.append((time.time(), info["generation"],
                                time.perf_counter() - self._start))

    def summary(self, since: float) -> dict:
        pauses = [(g, d) for t, g, d in self.pauses if t >= since]
        full = [d for g, d in pauses if g == 2]
        return {"gc_collections": len(pauses), "gc_full": len(full),
                "gc_seconds": sum(d for _g, d in pauses),
                "gc_full_max": max(full, default=0.0)}


async def _stalls(out: list[tuple[float, float]], tick: float = 0.05) -> None:
    """How late the event loop wakes a 50-ms sleep: its stalls (slow callbacks, GC)."""
    while True:
        before = time.perf_counter()
        await asyncio.sleep(tick)
        out.append((time.time(), time.perf_counter() - before - tick))


def _by_label(metric, label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = sample.labels.get(label, "")
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _failures(metric) -> dict[str, float]:
    out: dict[str, float] = {}
    for family in metric.collect():
        for sample in family.samples:
            if sample.name.endswith("_total"):
                key = f"{sample.labels.get('collector')}/{sample.labels.get('reason')}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def _diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


async def _daemon(args: argparse.Namespace) -> dict:

    from agent.config import load_config
    from agent.daemon import Agent

    cams = json.loads(Path(args.cameras).read_text())["cameras"][:args.devices]
    path = write_daemon_config(Path(args.work), cams, args)
    log = lambda text: print("@@ " + text, file=sys.stderr, flush=True)  # noqa: E731
    config = load_config(path)
    agent = Agent(config)
    recorder = LagRecorder(agent.metrics.lag)
    agent.metrics.lag = recorder
    keep, seen = agent.scheduler.on_result, {}

    def on_result(result) -> None:  # what failed, as the agent would log it at debug level
        if not result.up:
            key = f"{result.collector} {result.reason}: {(result.detail or '')[:200]}"
            seen[key] = seen.get(key, 0) + 1
        if keep is not None:
            keep(result)

    agent.scheduler.on_result = on_result
    gc_recorder = GcRecorder()
    stalls: list[tuple[float, float]] = []
    c0, w0 = cpu_seconds(), time.perf_counter()
    await agent.start()
    stall_task = asyncio.create_task(_stalls(stalls))
    m = agent.metrics
    log(f"    agent started: {len(cams)} cameras ({', '.join(sorted(agent.collectors))}), "
        f"warm-up {args.warmup:g}s (every session is built in the first interval)")
    await asyncio.sleep(args.warmup)
    warm_cpu, warm_wall = cpu_seconds() - c0, time.perf_counter() - w0
    warm_polls = _by_label(m.polls, "collector")
    window = args.interval * args.intervals
    log("WINDOW start")
    c1, w1 = cpu_seconds(), time.perf_counter()
    p0, f0, s0 = _by_label(m.polls, "collector"), _failures(m.failures), sum(
        _by_label(m.skipped, "x").values())
    lag_from = time.time()
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    elapsed = 0.0
    while elapsed < window:
        await asyncio.sleep(min(max(5.0, window / 6), window - elapsed))
        elapsed = time.perf_counter() - w1
        polls = _diff(_by_label(m.polls, "collector"), p0)
        log(f"    {elapsed:5.0f}s of {window:g}s: {(cpu_seconds() - c1) / elapsed:.3f} CPU s/s, "
            f"polls "
            f"{json.dumps(polls)}, failed {sum(_diff(_failures(m.failures), f0).values()):.0f}")
    wall, cpu = time.perf_counter() - w1, cpu_seconds() - c1
    log("WINDOW end")
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    stall_task.cancel()
    late = [d for t, d in stalls if t >= lag_from]
    polls = _diff(_by_label(m.polls, "collector"), p0)
    failed = _diff(_failures(m.failures), f0)
    skipped = sum(_by_label(m.skipped, "x").values()) - s0
    lags = [v for t, v in recorder.values if t >= lag_from]
    rss_kb = proc_status_kb(os.getpid(), "VmRSS")
    fds = len(os.listdir("/proc/self/fd"))
    threads = threading.active_count()
    renders = []
    for _ in range(2):
        r0 = time.process_time()
        body = agent.metrics_page()
        renders.append(time.process_time() - r0)
    series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    onvif = agent.collectors.get("onvif")
    sessions = len(onvif.sessions) if onvif is not None else 0
    reach = agent.collectors.get("reach")
    icmp = (reach.icmp_mode() or "unavailable") if reach is not None else "off"
    await agent.stop()
    return {
        "cameras": len(cams), "interval": args.interval, "events": args.events,
        "reach": args.reach, "icmp": icmp, "warmup": warm_wall, "warm_cpu": warm_cpu,
        "warm_cores": warm_cpu / warm_wall, "warm_polls": warm_polls,
        "window": wall, "cpu": cpu, "cores": cpu / wall, "polls": polls,
        "polls_total": sum(polls.values()), "failed": failed,
        "failed_total": sum(failed.values()), "skipped": skipped,
        "lag_p50": percentile(lags, 0.5), "lag_p99": percentile(lags, 0.99),
        "lag_max": max(lags, default=float("nan")), "lag_samples": len(lags),
        "rss_kb": rss_kb, "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "fds": fds, "threads": threads, "sessions": sessions,
        "render_cpu": min(renders), "render_bytes": len(body), "render_series": series,
        "stall_p99": percentile(late, 0.99), "stall_max": max(late, default=float("nan")),
        "stalled_over_100ms": sum(d for d in late if d > 0.1),
        "failure_samples": sorted(seen.items(), key=lambda kv: -kv[1])[:5],
        **gc_recorder.summary(lag_from),
    }


def daemon_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench.cameras --daemon")
    parser.add_argument("--cameras", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--intervals", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=70.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--events", action="store_true")
    parser.add_argument("--no-reach", dest="reach", action="store_false")
    parser.add_argument("--profile", default=None)
    args = parser.parse_args(argv)
    raise_nofile()
    print(json.dumps(asyncio.run(_daemon(args))), flush=True)
    return 0


def daemon_case(args: argparse.Namespace, work: Path, sim: Simulator, live: list) -> dict:
    n = args.daemon_cameras
    collectors = "onvif + reach" if args.reach else "onvif"
    say(f"\n== the daemon (agent.daemon.Agent): {n} cameras, {collectors} every "
        f"{args.interval:g}s, events {'on' if args.events else 'off'}, {args.concurrency} polls "
        f"in flight: {args.warmup:g}s warm-up + {args.intervals:g} interval(s) measured")
    log = work / "daemon.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.cameras", "--daemon", "--cameras",
         str(work / "cameras.json"), "--work", str(work / "daemon"), "--devices", str(n),
         "--interval", str(args.interval), "--intervals", str(args.intervals),
         "--warmup", str(args.warmup), "--concurrency", str(args.concurrency),
         *(["--events"] if args.events else []), *([] if args.reach else ["--no-reach"]),
         *(["--profile", str(args.daemon_profile)] if args.daemon_profile else [])],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    live.append(proc)
    marks: dict[str, float] = {}
    with open(log, "w") as log_file:
        for line in proc.stderr:
            log_file.write(line)
            if line.startswith("@@ WINDOW "):
                marks[line.split()[2]] = sim.cpu()
            elif line.startswith("@@ "):
                say(line[3:].rstrip())
    out = proc.stdout.read()
    proc.wait()
    if proc.returncode != 0 or not out.strip():
        raise RuntimeError(f"daemon case failed: {log.read_text()[-2000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["sim_cores"] = (marks.get("end", 0.0) - marks.get("start", 0.0)) / result["window"]
    say(f"  {result['cores']:.3f} cores over {result['window']:.0f}s, polls "
        f"{json.dumps(result['polls'])}, failed {result['failed_total']:.0f}, lag p50 "
        f"{result['lag_p50'] * 1000:.0f} ms p99 {result['lag_p99'] * 1000:.0f} ms, "
        f"RSS {result['rss_kb'] / 1024:.0f} MB (peak {result['maxrss_kb'] / 1024:.0f} MB)")
    for detail, count in result["failure_samples"]:
        say(f"  failed {count}x (whole run): {detail}")
    say(f"  garbage collector: {result['gc_collections']} collections in the window, "
        f"{result['gc_full']} full ones (longest {result['gc_full_max'] * 1000:.0f} ms), "
        f"{result['gc_seconds']:.2f} s paused in all; event loop stalls p99 "
        f"{result['stall_p99'] * 1000:.0f} ms, max {result['stall_max'] * 1000:.0f} ms")
    return result


# ---------------------------------------------------------------------------------------
# report


def _ratio(value: float, ref: float | None) -> str:
    return f"{value / ref:.2f}×" if ref else "-"


def onvif_table(results: dict[int, dict[str, dict]]) -> list[str]:
    lines = ["| contender | cameras | polls/s | CPU ms/poll | ÷ baseline | ÷ zeep "
             "| first poll CPU ms | first ÷ baseline | requests/poll | simulator ms/poll "
             "| peak RSS MB | RSS KB/camera | failed |", "|" + "---|" * 13]
    for n, row in sorted(results.items()):
        base, zeep = row.get("baseline-aiohttp"), row.get("onvif-zeep-async")
        for name in ONVIF_CONTENDERS:
            r = row.get(name)
            if r is None:
                continue
            lines.append(
                f"| {name} | {n} | {r['per_second']:.0f} | {r['cpu_ms']:.2f} "
                f"| {_ratio(r['cpu_ms'], base and base['cpu_ms'])} "
                f"| {_ratio(r['cpu_ms'], zeep and zeep['cpu_ms'])} | {r['first_cpu_ms']:.2f} "
                f"| {_ratio(r['first_cpu_ms'], base and base['first_cpu_ms'])} "
                f"| {r['requests']:.2f} | {r['sim_ms']:.2f} | {r['peak_rss_kb'] / 1024:.0f} "
                f"| {r['kb_per_camera']:.0f} | {r['failed']} |")
    return lines


def reach_table(results: dict[int, dict[str, dict]]) -> list[str]:
    lines = ["| contender | cameras | ICMP | polls/s | CPU ms/poll | ÷ baseline "
             "| requests/poll | simulator ms/poll | peak RSS MB | failed |", "|" + "---|" * 10]
    for n, row in sorted(results.items()):
        base = row.get("baseline-connect")
        for name in REACH_CONTENDERS:
            r = row.get(name)
            if r is None:
                continue
            lines.append(
                f"| {name} | {n} | {r['icmp'] or '-'} | {r['per_second']:.0f} "
                f"| {r['cpu_ms']:.3f} | {_ratio(r['cpu_ms'], base and base['cpu_ms'])} "
                f"| {r['requests']:.1f} | {r['sim_ms']:.3f} | {r['peak_rss_kb'] / 1024:.0f} "
                f"| {r['failed']} |")
    return lines


def daemon_table(r: dict) -> list[str]:
    polls = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["polls"].items()))
    failed = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["failed"].items())) or "0"
    collectors = "onvif" + (f" + reach (ICMP {r['icmp']})" if r["reach"] else "") + \
        (" + events" if r["events"] else "")
    rows = [
        ("cameras, collectors, interval", f"{r['cameras']}, {collectors}, {r['interval']:g} s"),
        ("CPU, measured window", f"{r['cores']:.3f} cores ({r['cpu']:.1f} CPU s in "
                                 f"{r['window']:.0f} s)"),
        ("CPU, first interval (sessions built)", f"{r['warm_cores']:.3f} cores "
                                                 f"({r['warm_cpu']:.1f} CPU s in "
                                                 f"{r['warmup']:.0f} s)"),
        ("polls in the window", polls),
        ("failed / skipped", f"{failed} / {r['skipped']:.0f}"),
        ("poll lag p50 / p99 / max", f"{r['lag_p50'] * 1000:.0f} / {r['lag_p99'] * 1000:.0f} / "
                                     f"{r['lag_max'] * 1000:.0f} ms ({r['lag_samples']} polls)"),
        ("event loop stalls p99 / max", f"{r['stall_p99'] * 1000:.0f} / "
                                        f"{r['stall_max'] * 1000:.0f} ms"),
        ("garbage collector in the window", f"{r['gc_seconds']:.2f} s paused, "
                                            f"{r['gc_collections']} collections, "
                                            f"{r['gc_full']} full (longest "
                                            f"{r['gc_full_max'] * 1000:.0f} ms)"),
        ("RSS at the end (peak)", f"{r['rss_kb'] / 1024:.0f} MB ({r['maxrss_kb'] / 1024:.0f} MB)"),
        ("threads, open files, ONVIF sessions", f"{r['threads']}, {r['fds']}, {r['sessions']}"),
        ("simulator CPU in the window", f"{r['sim_cores']:.3f} cores"),
        ("one /metrics render", f"{r['render_cpu']:.2f} s CPU, {r['render_bytes'] / 1e6:.1f} "
                                f"MB, {r['render_series']} series"),
    ]
    return ["| daemon case | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]


def verdicts(results: dict[int, dict[str, dict]], daemon: dict | None,
             interval: float) -> list[str]:
    lines = []
    target = 2000
    for n, row in sorted(results.items()):
        vigil, reach = row.get("vigil-onvif"), row.get("vigil-reach")
        if vigil:
            cores = target / interval * vigil["cpu_ms"] / 1000
            extra = target / interval * reach["cpu_ms"] / 1000 if reach else 0.0
            lines.append(f"from the {n}-camera rounds: {target} cameras every {interval:g} s "
                         f"= {cores:.3f} core ONVIF"
                         + (f" + {extra:.3f} core reach" if reach else "")
                         + f" (+ {target * vigil['first_cpu_ms'] / 1000:.0f} CPU s once, "
                         f"building the sessions)")
    if daemon:
        ok = daemon["cores"] < 1 and not daemon["failed_total"]
        expected = daemon["cameras"] * daemon["window"] / daemon["interval"]
        done = daemon["polls"].get("onvif", 0)
        lines.append(
            f"daemon: {daemon['cameras']} cameras every {daemon['interval']:g} s: "
            f"{daemon['cores']:.3f} core ({1 / daemon['cores']:.1f}× headroom), "
            f"{done:.0f} of {expected:.0f} ONVIF polls done, {daemon['failed_total']:.0f} "
            f"failed -> target under one core {'MET' if ok else 'NOT met'}")
    return lines


# ---------------------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/run --suite cameras", description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--sizes", default="200,2000",
                        help="camera counts of the throughput runs (comma-separated)")
    parser.add_argument("--rounds", default="auto",
                        help="measured rounds per contender and size; auto: 6000/N, 2..5")
    parser.add_argument("--contenders", default=",".join(CONTENDERS),
                        help="which contenders to run (comma-separated)")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="polls in flight (the daemon's max_concurrent_polls default)")
    parser.add_argument("--gap", type=float, default=KEEPALIVE + 0.5,
                        help="least seconds between two rounds of one ONVIF contender (so "
                             "connections kept alive for 4 s have expired, as at 60 s)")
    parser.add_argument("--daemon-cameras", type=int, default=2000,
                        help="cameras in the daemon case; 0 skips it")
    parser.add_argument("--interval", type=float, default=60.0,
                        help="the daemon's ONVIF and reachability interval, s")
    parser.add_argument("--intervals", type=float, default=1.0,
                        help="whole intervals measured in the daemon case")
    parser.add_argument("--warmup", type=float, default=None,
                        help="seconds of the daemon case before measuring (default: one "
                             "interval + 10 s, so every session is built)")
    parser.add_argument("--events", action="store_true",
                        help="daemon case: ONVIF events (PullPoint subscriptions) on")
    parser.add_argument("--no-reach", dest="reach", action="store_false",
                        help="daemon case: ONVIF only, no reachability checks")
    parser.add_argument("--daemon-profile", type=Path, default=None,
                        help="cProfile the daemon's measured window into this file (adds "
                             "overhead: for finding where the CPU goes, not for the figures)")
    parser.add_argument("--port", type=int, default=17080,
                        help="TCP port of every simulated camera (on 127.78.X.Y)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write every figure to this JSON file")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args(argv)
    args.sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    args.contenders = [c for c in args.contenders.split(",") if c.strip()]
    unknown = set(args.contenders) - set(CONTENDERS)
    if unknown:
        parser.error(f"unknown contenders {sorted(unknown)}; choose from {', '.join(CONTENDERS)}")
    if args.warmup is None:
        args.warmup = args.interval + 10.0
    return args


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        return worker_main(argv[1:])
    if argv[:1] == ["--daemon"]:
        return daemon_main(argv[1:])
    args = parse(argv)
    raise_nofile()
    signal.signal(signal.SIGTERM, interrupt)
    started = time.time()
    work = Path(tempfile.mkdtemp(prefix="vigil-bench-cameras-"))
    total = max([*args.sizes, args.daemon_cameras]) + 1  # + the warm-up camera
    port = pick_port(args.port)
    cams = cameras(total, port)
    live: list = []
    results: dict[int, dict[str, dict]] = {}
    daemon: dict | None = None
    sim = None
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    try:
        say(f"Vigil camera benchmark: python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
            f"open files {nofile}, work dir {work}")
        sim = Simulator(work, cams)
        say(f"  simulator: pid {sim.proc.pid}, {total} cameras on {ADDRESS_PREFIX}.X.Y:{port} "
            f"({', '.join(VENDORS)} in turn, every {PTZ_EVERY}th PTZ; camera {total} warms "
            f"the clients up), RSS {rss_mb(sim.proc.pid):.0f} MB")
        for n in args.sizes:
            results[n] = throughput(n, args, work, sim, live)
            say("")
            for line in [*onvif_table({n: results[n]}), "", *reach_table({n: results[n]})]:
                say(line)
        if args.daemon_cameras:
            daemon = daemon_case(args, work, sim, live)
    except KeyboardInterrupt:
        say("\ninterrupted: stopping everything started")
        return 130
    finally:
        for thing in live:
            if isinstance(thing, subprocess.Popen):
                stop_process(thing, 10)
            elif isinstance(thing, Worker):
                thing.kill()
        sim_peak = sim.peak_rss_mb() if sim is not None and sim.proc.poll() is None else 0.0
        if sim is not None:
            sim.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    say("\n================ results ================")
    say(f"command: bench/run --suite cameras {' '.join(argv)}".rstrip())
    say(f"{args.concurrency} polls in flight; CPU = the client process's own CPU seconds (all "
        f"threads), medians over rounds; the simulator's CPU apart; simulator peak RSS "
        f"{sim_peak:.0f} MB")
    say("")
    say("ONVIF polls (5 requests, 7 on the PTZ quarter; baseline = the same SOAP by hand "
        "over aiohttp + lxml):")
    say("")
    for line in onvif_table(results):
        say(line)
    say("")
    say("Reachability (baseline = a bare asyncio TCP connect):")
    say("")
    for line in reach_table(results):
        say(line)
    if daemon:
        say("")
        for line in daemon_table(daemon):
            say(line)
    say("")
    for line in verdicts(results, daemon, args.interval):
        say(line)
    say(f"\ntotal time {time.time() - started:.0f}s")
    if args.json:
        args.json.write_text(json.dumps({"argv": argv, "throughput": results,
                                         "daemon": daemon, "simulator_peak_rss_mb": sim_peak},
                                        indent=1))
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
