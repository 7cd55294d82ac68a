#!/usr/bin/python3
"""RTSP test and demo server: generated camera pictures, healthy and faulty, over real RTSP.

GStreamer's gst-rtsp-server (through python3-gi) serves each *mount* from its own live
pipeline: a generated scene (videotestsrc), made faulty the way real cameras fail (frozen,
black, dark, washed out, out of focus, foggy, colour cast, covered lens, no frame at all),
encoded with H.264 (x264enc), H.265 (x265enc) or MJPEG (jpegenc) and sent over RTP. Only the
mounts a client is watching run a pipeline; an idle mount costs nothing. Clients of one mount
share one pipeline.

Run it with Debian's interpreter, where `gi` lives (it is not in the virtualenv):

    /usr/bin/python3 agent/demo/rtsp_server.py --port 8554 --all-kinds
    /usr/bin/python3 agent/demo/rtsp_server.py --port 8554 \
        --mount /cam1=good,pattern=smpte,width=640,height=360,fps=15 \
        --mount /cam2=frozen --user admin --password secret --auth digest
    /usr/bin/python3 agent/demo/rtsp_server.py --config cameras.json

Mount option keys (after `PATH=KIND,`): pattern (a videotestsrc pattern), width, height, fps,
codec (h264|h265|mjpeg), bitrate (kbit/s), gop (frames between keyframes), speed (pixels per
frame the scene scrolls), preset (x264 speed preset: ultrafast, the default, is cheapest to
serve; veryfast adds CABAC and 8x8 transforms like a camera's encoder). Kinds: see KINDS.

A JSON configuration serves many cameras from one process, on several loopback addresses:

    {"defaults": {"width": 640, "height": 360, "fps": 10},
     "endpoints": [
       {"address": "127.0.0.1", "port": 8554,
        "mounts": [{"path": "/cam1", "kind": "good"}, {"path": "/cam2", "kind": "black"}]},
       {"address": "127.0.1.7", "port": 554, "user": "admin", "password": "hik12345",
        "auth": "digest",
        "mounts": [{"path": "/Streaming/Channels/101", "kind": "good"}]}]}

An endpoint (address and port: one camera, or a whole open test server) with `user` and
`password` requires them on every request, as cameras do: without valid credentials it answers
401 with a Digest (`auth`: digest, the default), Basic (basic) or both (both) challenge.
Listening addresses must be loopback (127.0.0.0/8 or ::1).

Debian packages: python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly (x264enc);
gstreamer1.0-plugins-bad for x265enc (codec h265) only.

When every endpoint listens, one line `READY {json}` is printed on stdout. SIGTERM or SIGINT
stops the server.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import signal
import sys

KINDS = {
    "good": "a healthy camera: a test pattern scrolling sideways",
    "frozen": "one picture of the healthy scene, repeated: every frame is the same",
    "black": "a black picture (video loss on the encoder, lens cap)",
    "dark": "a scene far too dark to see (night, IR illuminator failed)",
    "overexposed": "a washed-out scene: most of the picture clipped to white",
    "white": "a plain white picture",
    "blurred": "the moving scene out of focus (downscaled 10x then upscaled)",
    "low_contrast": "the moving scene with its contrast crushed (fog, dirty dome)",
    "color_cast": "the moving scene, paler, under a strong green tint (white balance failure)",
    "occluded": "the moving scene mostly covered by a flat grey board (tampering)",
    "no_frames": "answers DESCRIBE, SETUP and PLAY, then sends only parameter sets, never "
                 "a picture (h264/h265)",
}

DEFAULTS = {"pattern": "smpte", "width": 320, "height": 240, "fps": 10, "codec": "h264",
            "bitrate": 512, "gop": 0, "speed": 2, "preset": "ultrafast"}
INTEGER_KEYS = ("width", "height", "fps", "bitrate", "gop", "speed")
CODECS = ("h264", "h265", "mjpeg")
PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium")


class MountError(ValueError):
    pass


def mount_spec(path: str, kind: str, options: dict, defaults: dict) -> dict:
    """One mount's full settings, checked: defaults < server defaults < mount options."""
    if kind not in KINDS:
        raise MountError(f"{path}: unknown kind '{kind}' (one of {', '.join(KINDS)})")
    if not path.startswith("/"):
        raise MountError(f"{path}: a mount path starts with '/'")
    spec = {**DEFAULTS, **defaults, **options, "path": path, "kind": kind}
    unknown = set(spec) - set(DEFAULTS) - {"path", "kind"}
    if unknown:
        raise MountError(f"{path}: unknown option(s) {', '.join(sorted(unknown))}")
    for key in INTEGER_KEYS:
        try:
            spec[key] = int(spec[key])
        except (TypeError, ValueError):
            raise MountError(f"{path}: {key} must be an integer, not {spec[key]!r}") from None
    if spec["preset"] not in PRESETS:
        raise MountError(f"{path}: preset must be one of {', '.join(PRESETS)}")
    if spec["codec"] not in CODECS:
        raise MountError(f"{path}: codec must be one of {', '.join(CODECS)}")
    if spec["width"] < 16 or spec["height"] < 16 or spec["fps"] < 1:
        raise MountError(f"{path}: width and height >= 16, fps >= 1")
    if spec["kind"] == "no_frames" and spec["codec"] == "mjpeg":
        raise MountError(f"{path}: no_frames needs codec h264 or h265")
    if spec["codec"] == "mjpeg" and (spec["width"] % 8 or spec["height"] % 8
                                     or max(spec["width"], spec["height"]) > 2040):
        raise MountError(f"{path}: RTP/JPEG needs width and height multiples of 8, <= 2040")
    return spec


def parse_mount_arg(text: str, defaults: dict) -> dict:
    """`/path=kind,key=value,...` (the kind alone is also accepted: `/frozen` -> frozen)."""
    path, _, rest = text.partition("=")
    parts = [p for p in rest.split(",") if p] if rest else [path.strip("/")]
    kind, options = parts[0], {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep:
            raise MountError(f"{text}: expected key=value, got '{part}'")
        options[key] = value
    return mount_spec(path, kind, options, defaults)


def scene(spec: dict, moving: bool = True) -> str:
    """The healthy picture: a test pattern, scrolling unless `moving` is False."""
    speed = spec["speed"] if moving else 0
    return (f"videotestsrc is-live=true pattern={spec['pattern']} horizontal-speed={speed} "
            f"! video/x-raw,width={spec['width']},height={spec['height']},"
            f"framerate={spec['fps']}/1")


def raw_source(spec: dict) -> str:
    """The generated raw video of a mount's kind, ending in I420 at the mount's size."""
    w, h, fps, kind = spec["width"], spec["height"], spec["fps"], spec["kind"]
    caps = f"video/x-raw,width={w},height={h},framerate={fps}/1"
    i420 = f"videoconvert ! video/x-raw,format=I420,width={w},height={h}"

    def solid(argb: int, width: int = w, height: int = h) -> str:
        return (f"videotestsrc is-live=true pattern=solid-color foreground-color={argb:#010x} "
                f"! video/x-raw,width={width},height={height},framerate={fps}/1")

    if kind in ("good", "no_frames"):
        return f"{scene(spec)} ! {i420}"
    if kind == "frozen":  # one picture of the scene, repeated: what a stuck encoder sends
        return (f"videotestsrc num-buffers=1 pattern={spec['pattern']} "
                f"! video/x-raw,width={w},height={h},framerate={fps}/1 "
                f"! imagefreeze is-live=true ! {caps} ! {i420}")
    if kind == "black":
        return f"videotestsrc is-live=true pattern=black ! {caps} ! {i420}"
    if kind == "white":
        return f"videotestsrc is-live=true pattern=white ! {caps} ! {i420}"
    if kind == "dark":
        return f"{scene(spec)} ! videobalance brightness=-0.8 contrast=0.3 saturation=0.3 ! {i420}"
    if kind == "overexposed":
        return f"{scene(spec)} ! videobalance brightness=0.75 contrast=1.2 ! {i420}"
    if kind == "low_contrast":
        return f"{scene(spec)} ! videobalance contrast=0.15 brightness=0.4 saturation=0.15 ! {i420}"
    if kind == "blurred":
        small = f"video/x-raw,width={max(w // 10, 4)},height={max(h // 10, 4)}"
        return (f"{scene(spec)} ! videoscale method=bilinear ! {small} "
                f"! videoscale method=bilinear ! video/x-raw,width={w},height={h} ! {i420}")
    if kind == "color_cast":
        return (f"{solid(0xFF10C010)} ! mix.sink_0 {scene(spec)} "
                f"! videobalance saturation=0.4 ! mix.sink_1 "
                f"compositor name=mix background=black sink_1::alpha=0.55 ! {i420}")
    if kind == "occluded":
        board_w, board_h = w * 9 // 10, h * 17 // 20
        return (f"{scene(spec)} ! mix.sink_0 {solid(0xFF505050, board_w, board_h)} "
                f"! mix.sink_1 compositor name=mix background=black ! {i420}")
    raise MountError(f"no pipeline for kind '{kind}'")


def launch_line(spec: dict) -> str:
    """gst-launch syntax of the whole mount: source, encoder, RTP payloader `pay0`."""
    gop = spec["gop"] or spec["fps"] * 2
    if spec["codec"] == "h264":
        encode = (f"x264enc tune=zerolatency speed-preset={spec['preset']} threads=1 "
                  f"key-int-max={gop} bitrate={spec['bitrate']} option-string=scenecut=0 "
                  f"! video/x-h264,profile=high "
                  f"! rtph264pay name=pay0 pt=96 config-interval=-1")
    elif spec["codec"] == "h265":
        encode = (f"x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} "
                  f"bitrate={spec['bitrate']} option-string=pools=1:frame-threads=1 "
                  f"! rtph265pay name=pay0 pt=96 config-interval=-1")
    else:
        encode = "jpegenc quality=75 ! rtpjpegpay name=pay0 pt=26"
    return f"( {raw_source(spec)} ! {encode} )"


def load_config(args: argparse.Namespace) -> dict:
    """Endpoints with their mounts, from --config and/or the command line."""
    config: dict = {"defaults": {}, "endpoints": []}
    if args.config:
        with open(args.config) as handle:
            config.update(json.load(handle))
    defaults = config.get("defaults", {})
    for key in ("width", "height", "fps", "codec", "bitrate", "gop", "speed", "pattern",
                "preset"):
        value = getattr(args, key)
        if value is not None:
            defaults[key] = value
    cli_mounts = [parse_mount_arg(text, defaults) for text in args.mount]
    if args.all_kinds:
        cli_mounts += [mount_spec(f"/{kind}", kind, {}, defaults) for kind in KINDS]
    raw = list(config.get("endpoints", []))
    if cli_mounts or not raw:
        raw.insert(0, {"address": args.address, "port": args.port, "user": args.user,
                       "password": args.password, "auth": args.auth, "mounts": []})
    endpoints = []
    for item in raw:
        endpoint = {"address": item.get("address", "127.0.0.1"), "port": int(item["port"]),
                    "user": item.get("user") or None, "password": item.get("password") or None,
                    "auth": item.get("auth") or "digest",
                    "mounts": [mount_spec(m["path"], m.get("kind", "good"),
                                          {k: v for k, v in m.items()
                                           if k not in ("path", "kind")}, defaults)
                               for m in item.get("mounts", [])]}
        where = f"{endpoint['address']}:{endpoint['port']}"
        if not ipaddress.ip_address(endpoint["address"]).is_loopback:
            raise MountError(f"{where}: only loopback addresses are served")
        if bool(endpoint["user"]) != bool(endpoint["password"]):
            raise MountError(f"{where}: give both user and password, or neither")
        if endpoint["auth"] not in ("digest", "basic", "both"):
            raise MountError(f"{where}: auth must be digest, basic or both")
        endpoints.append(endpoint)
    endpoints[0]["mounts"] += cli_mounts  # the command line's endpoint when there are any
    places = [(e["address"], e["port"]) for e in endpoints if e["port"]]
    if len(places) != len(set(places)):
        raise MountError("two endpoints listen on the same address and port")
    for endpoint in endpoints:
        paths = [m["path"] for m in endpoint["mounts"]]
        if len(paths) != len(set(paths)):
            raise MountError(f"{endpoint['address']}:{endpoint['port']}: a path is mounted twice")
    config["endpoints"] = endpoints
    return config


def serve(config: dict) -> int:
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtsp", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtsp, GstRtspServer

    Gst.init(None)
    for endpoint in config["endpoints"]:
        for spec in endpoint["mounts"]:
            missing = [e for e in _elements(spec) if Gst.ElementFactory.find(e) is None]
            if missing:
                print(f"{spec['path']}: GStreamer element(s) {', '.join(missing)} missing "
                      f"(codec {spec['codec']}: see the module doc for the Debian packages)",
                      file=sys.stderr)
                return 2

    methods = {"basic": GstRtsp.RTSPAuthMethod.BASIC,
               "digest": GstRtsp.RTSPAuthMethod.DIGEST,
               "both": GstRtsp.RTSPAuthMethod.BASIC | GstRtsp.RTSPAuthMethod.DIGEST}

    def make_auth(endpoint: dict) -> GstRtspServer.RTSPAuth:
        """No default token: a request without valid credentials gets 401 and a challenge."""
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "user")
        method = endpoint["auth"]
        if method in ("basic", "both"):
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(endpoint["user"],
                                                              endpoint["password"]), token)
        if method in ("digest", "both"):
            auth.add_digest(endpoint["user"], endpoint["password"], token)
        auth.set_supported_methods(methods[method])
        auth.set_realm("vigil-demo")
        return auth

    def on_configure(_factory, media) -> None:
        """no_frames: drop every RTP packet that carries a picture, from the start. The
        parameter sets (SPS/PPS, sent before each keyframe) still flow: gst-rtsp-server needs
        a packet to complete its preparation (DESCRIBE) and the seek of PLAY, and the client
        gets a stream that is set up and alive but never has a frame to decode."""
        pay = media.get_element().get_by_name("pay0")
        pay.get_static_pad("src").add_probe(
            Gst.PadProbeType.BUFFER | Gst.PadProbeType.BUFFER_LIST, drop_pictures)

    def parameter_set(buffer: Gst.Buffer) -> bool:
        ok, mapped = buffer.map(Gst.MapFlags.READ)
        if not ok:
            return False
        try:
            return _parameter_set(bytes(mapped.data))
        finally:
            buffer.unmap(mapped)

    def drop_pictures(pad, info) -> Gst.PadProbeReturn:
        if info.type & Gst.PadProbeType.BUFFER_LIST:
            packets = info.get_buffer_list()
            keep = [packets.get(i) for i in range(packets.length())]
            for buffer in [b for b in keep if parameter_set(b)]:
                pad.push(buffer.copy())  # comes back through this probe as a single buffer
            return Gst.PadProbeReturn.DROP
        return (Gst.PadProbeReturn.OK if parameter_set(info.get_buffer())
                else Gst.PadProbeReturn.DROP)

    servers = []
    for endpoint in config["endpoints"]:
        server = GstRtspServer.RTSPServer()
        server.set_address(endpoint["address"])
        server.set_service(str(endpoint["port"]))
        if endpoint["user"]:
            server.set_auth(make_auth(endpoint))
        mounts = server.get_mount_points()
        for spec in endpoint["mounts"]:
            factory = GstRtspServer.RTSPMediaFactory()
            factory.set_launch(launch_line(spec))
            factory.set_shared(False)  # one pipeline per client: no client stops another
            if spec["kind"] == "no_frames":
                factory.connect("media-configure", on_configure)
            if endpoint["user"]:
                factory.add_role_from_structure(Gst.Structure.new_from_string(
                    "user, media.factory.access=(boolean)true, "
                    "media.factory.construct=(boolean)true"))
            mounts.add_factory(spec["path"], factory)
        if not server.attach(None):
            print(f"cannot listen on {endpoint['address']}:{endpoint['port']} (in use, or "
                  f"the address is not on this host)", file=sys.stderr)
            return 2
        endpoint["port"] = server.get_bound_port()
        servers.append(server)

    loop = GLib.MainLoop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_HIGH, signum, lambda *_: loop.quit() or False)

    def cleanup_sessions() -> bool:
        for server in servers:
            server.get_session_pool().cleanup()
        return True

    GLib.timeout_add_seconds(2, cleanup_sessions)
    ready = [{"address": e["address"], "port": e["port"], "mounts": len(e["mounts"]),
              "auth": e["auth"] if e["user"] else None} for e in config["endpoints"]]
    print("READY " + json.dumps(ready), flush=True)
    loop.run()
    return 0


def _parameter_set(packet: bytes) -> bool:
    """Whether an H.264/H.265 RTP packet carries only parameter sets (no picture data)."""
    if len(packet) < 13:
        return False
    offset = 12 + 4 * (packet[0] & 0x0F)
    if packet[0] & 0x10 and len(packet) >= offset + 4:  # header extension
        offset += 4 + 4 * int.from_bytes(packet[offset + 2:offset + 4], "big")
    if len(packet) <= offset:
        return False
    h264 = packet[offset] & 0x1F
    h265 = (packet[offset] >> 1) & 0x3F
    if h264 in (7, 8) or h265 in (32, 33, 34):
        return True
    if h264 == 24:  # STAP-A: each aggregated unit must be a parameter set
        units, at = [], offset + 1
        while at + 2 < len(packet):
            size = int.from_bytes(packet[at:at + 2], "big")
            units.append(packet[at + 2] & 0x1F)
            at += 2 + size
        return bool(units) and all(unit in (7, 8) for unit in units)
    return False


def _elements(spec: dict) -> list[str]:
    encoder = {"h264": ["x264enc", "rtph264pay"], "h265": ["x265enc", "rtph265pay"],
               "mjpeg": ["jpegenc", "rtpjpegpay"]}[spec["codec"]]
    extra = {"color_cast": ["compositor"], "occluded": ["compositor"],
             "frozen": ["imagefreeze"],
             "dark": ["videobalance"], "overexposed": ["videobalance"],
             "low_contrast": ["videobalance"]}.get(spec["kind"], [])
    return ["videotestsrc", "videoconvert", "videoscale", *encoder, *extra]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="kinds:\n" + "\n".join(
                                         f"  {k:13} {v}" for k, v in KINDS.items()))
    parser.add_argument("--address", default="127.0.0.1", help="listen address (loopback)")
    parser.add_argument("--port", type=int, default=8554, help="listen port (0: any free)")
    parser.add_argument("--mount", action="append", default=[], metavar="PATH=KIND[,K=V...]")
    parser.add_argument("--all-kinds", action="store_true", help="serve /<kind> for each kind")
    parser.add_argument("--config", help="JSON file with endpoints and mounts")
    parser.add_argument("--user", help="require this user (and --password) on --port")
    parser.add_argument("--password")
    parser.add_argument("--auth", choices=("digest", "basic", "both"), default="digest",
                        help="challenge sent with 401 when --user is given (digest)")
    for key in ("width", "height", "fps", "bitrate", "gop", "speed"):
        parser.add_argument(f"--{key}", type=int, help=f"default {key} of every mount")
    parser.add_argument("--codec", choices=CODECS, help="default codec of every mount")
    parser.add_argument("--pattern", help="default videotestsrc pattern of the scene")
    parser.add_argument("--preset", help="default x264 speed preset (ultrafast)")
    parser.add_argument("--print-pipelines", action="store_true",
                        help="print each mount's pipeline and exit")
    args = parser.parse_args(argv)
    try:
        config = load_config(args)
    except (MountError, OSError, ValueError, KeyError) as exc:
        print(f"rtsp_server: {exc}", file=sys.stderr)
        return 2
    if args.print_pipelines:
        for endpoint in config["endpoints"]:
            for spec in endpoint["mounts"]:
                print(f"{endpoint['address']}:{endpoint['port']}{spec['path']}: "
                      f"{launch_line(spec)}")
        return 0
    return serve(config)


if __name__ == "__main__":
    sys.exit(main())
