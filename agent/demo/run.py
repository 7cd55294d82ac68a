"""`vigil demo`: the demo district, from nothing to a running agent and Prometheus.

1. Sets VIGIL_DEMO_COMMUNITY and VIGIL_DEMO_CAMERA_PASSWORD (the secrets config/demo/
   credentials.yaml refers to) if unset.
2. Writes `<workdir>/agent.yaml` (config/demo/agent.yaml with absolute paths back to the
   inventory and credentials, `--listen` and `--trap-port` applied) and checks the whole
   configuration.
3. Generates the simulated devices into `<workdir>/data` (agent/demo/generate.py) and the
   cameras' ONVIF and RTSP configurations (agent/demo/cameras.py).
4. Starts snmpsim (one process, one endpoint per device; agent/demo/responder.py) and waits
   until it answers; the ONVIF simulator (one process, one socket per camera) and the RTSP
   server (GStreamer, with Debian's python3; skipped with a warning when it cannot run), and
   waits for them; then the agent (`vigil run`) and waits for /-/ready; then Prometheus (the
   Debian binary) scraping the agent every 15 s, and waits for it.
5. Prints what runs, the URLs to open and the timeline; announces each event as it happens
   and performs the timeline's actions (traps sent, ONVIF faults switched on and off).
6. On Ctrl-C / SIGTERM (or after --duration) stops every child by PID: SIGTERM, SIGKILL after
   a grace period. A child that dies early is reported (with the end of its log) and
   everything stops. Children run in their own sessions and get SIGTERM from the kernel
   should this process die without cleaning up (PR_SET_PDEATHSIG).

`vigil demo --centre` runs three branch agents instead of one (agent/demo/centre.py writes
their configurations), a throwaway PostgreSQL as their shared ticket store
(agent/demo/postgres.py), and the centre's Prometheus and Alertmanager with config/centre's
files (docs/demo.md, "Centre mode").

Everything the demo writes is in the work directory: data, snmpsim index cache, the camera
configurations, logs (snmpsim.log, onvif.log, rtsp.log, agent.log, prometheus.log), the agent's
state (evidence frames), Prometheus' storage, and demo.json (the PIDs, URLs, roles and
timeline, for scripts and tests).
"""

from __future__ import annotations

import ctypes
import http.client
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from agent.config import load_config
from agent.demo import cameras, postgres
from agent.demo import centre as demo_centre
from agent.demo.generate import DemoError, Generated, check_addresses, generate
from agent.demo.scenario import Action, describe
from agent.demo.traps import send_trap
from agent.yamlfile import ConfigError, ConfigErrors

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_CONFIG_DIR = REPO / "config" / "demo"
COMMUNITY_ENV = "VIGIL_DEMO_COMMUNITY"
DEFAULT_COMMUNITY = "vigil-demo"
GRACE = 10.0
PROMETHEUS_PATHS = ("/usr/bin/prometheus", "/usr/local/bin/prometheus")
ALERTMANAGER_PATHS = ("/usr/bin/prometheus-alertmanager", "/usr/local/bin/alertmanager")
CENTRE_CONFIG_DIR = REPO / "config" / "centre"
SYSTEM_PYTHON = "/usr/bin/python3"     # Debian's: the one with python3-gi for GStreamer
RTSP_SERVER = REPO / "agent" / "demo" / "rtsp_server.py"
RTSP_DEBIAN = ("python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-rtsp "
               "gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly")

QUERIES = [
    ("devices up per site", "sum by (site) (vigil_device_up)", 0),
    ("devices down now", "vigil_device_up == 0", 1),
    ("why they are down", "vigil_device_down_reason == 1", 1),
    ("UPS on battery", "vigil_ups_on_battery", 0),
    ("UPS battery charge", "vigil_ups_battery_charge_ratio", 0),
    ("core switch traffic, bit/s",
     'sum by (interface) (rate(vigil_interface_received_bytes_total{device="sw-core"}[1m])) * 8',
     0),
    ("tripped SPDs", 'vigil_contact_alarm{contact=~"SPD[0-9]+( .*)?"} == 1', 1),
    ("lightning strikes counted (1 h)",
     'increase(vigil_input_pulses_total{input=~"SPD[0-9]+-CNT( .*)?"}[1h]) > 0', 1),
    ("PoE budget used", "vigil_poe_consumption_watts / vigil_poe_budget_watts", 0),
    ("open faults by level (the rules)", "sum by (level, alertname) (vigil_fault_active)", 1),
    ("camera clocks off by more than a minute", "abs(vigil_onvif_clock_offset_seconds) > 60", 1),
    ("picture faults", '{__name__=~"vigil_video_(frozen|dark|blurred|color_cast|occluded|'
                       'signal_lost|overexposed|low_contrast)"} == 1', 1),
    ("PTZ errors", "vigil_onvif_ptz_error == 1", 1),
    ("collectors down, and why", "vigil_device_down_reason == 1", 1),
    ("pushed events (traps, ONVIF)", "vigil_event", 1),
]


@dataclass
class DemoOptions:
    workdir: Path = Path(".demo")
    config_dir: Path = DEFAULT_CONFIG_DIR
    listen: str | None = None
    prometheus: bool = True
    prometheus_port: int = 9090
    trap_port: int | None = None
    duration: float | None = None
    scale: float = 1.0
    centre: bool = False            # three branch agents and a monitoring centre
    extra_inventory: list[Path] = field(default_factory=list)
    """Inventory files of devices simulated elsewhere: polled by the agent, not generated."""
    alertmanager_port: int = 9093


@dataclass
class Child:
    name: str
    proc: subprocess.Popen
    log: Path


@dataclass
class Demo:
    options: DemoOptions
    workdir: Path
    children: list[Child] = field(default_factory=list)
    stop_requested: str | None = None
    tty: bool = False
    shown: dict[str, int] = field(default_factory=dict)
    after_stop: list = field(default_factory=list)   # what is stopped after the children
    daemons: dict = field(default_factory=dict)      # name -> alive(): not our children

    # -- output -----------------------------------------------------------------------------
    def say(self, text: str = "") -> None:
        print(text, flush=True)

    def progress(self, label: str, done: int, total: int) -> None:
        """A counter updated in place on a terminal; one line at the end otherwise."""
        if self.shown.get(label) == done or self.shown.get(label, -1) >= total:
            return
        self.shown[label] = done
        if self.tty:
            end = "\n" if done >= total else ""
            print(f"\r  {label}: {done}/{total}", end=end, flush=True)
        elif done >= total:
            print(f"  {label}: {done}/{total}", flush=True)

    # -- children ---------------------------------------------------------------------------
    def start(self, name: str, args: list[str], log: Path, env: dict[str, str]) -> Child:
        with open(log, "ab") as handle:   # the child keeps its own copy of the descriptor
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=handle,
                                    stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                    preexec_fn=_child_setup(os.getpid()))
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def dead(self) -> Child | None:
        return next((c for c in self.children if c.proc.poll() is not None), None)

    def stop_all(self) -> None:
        """SIGTERM every child (last started first), SIGKILL what is left after the grace."""
        for child in reversed(self.children):
            if child.proc.poll() is None:
                try:
                    child.proc.send_signal(signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + GRACE
        for child in reversed(self.children):
            try:
                child.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.say(f"  {child.name} (pid {child.proc.pid}) did not stop within "
                         f"{GRACE:g}s: killing it")
                child.proc.kill()
                child.proc.wait()

    def report_death(self, child: Child) -> None:
        self.say(f"\n{child.name} (pid {child.proc.pid}) exited with status "
                 f"{child.proc.returncode}. The end of {child.log}:")
        for line in _tail(child.log, 15):
            self.say(f"    {line}")

    # -- waiting ----------------------------------------------------------------------------
    def wait_for(self, what: str, check, child: Child, timeout: float,
                 progress=None) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.stop_requested:
                raise KeyboardInterrupt
            if child.proc.poll() is not None:
                self.report_death(child)
                raise DemoError(f"{child.name} did not start")
            if progress:
                progress()
            if check():
                return
            if time.monotonic() > deadline:
                raise DemoError(f"{what} did not come up within {timeout:g}s (see {child.log})")
            time.sleep(0.25)


def _child_setup(parent: int):
    """Runs in the child before exec: own session (Ctrl-C in the terminal reaches only the
    demo, which stops the children in order), and SIGTERM when the demo process dies."""
    def setup() -> None:
        os.setsid()
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
        if os.getppid() != parent:          # the demo died before prctl took effect
            os._exit(1)
    return setup


def _tail(path: Path, lines: int) -> list[str]:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ["(no log)"]
    return [line for line in text.splitlines() if line.strip()][-lines:] or ["(empty)"]


def _port_free(host: str, port: int, kind: int = socket.SOCK_STREAM) -> bool:
    with socket.socket(socket.AF_INET, kind) as sock:
        if kind == socket.SOCK_STREAM:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError, http.client.HTTPException):   # not up yet
        return False


def _snmp_answers(address: str, port: int, community: str) -> bool:
    """One SNMPv2c GET of sysObjectID; True on any response."""
    from collectors.snmp.ber import BerCodec

    request = BerCodec().request("2c", community, "get", 1, ["1.3.6.1.2.1.1.2.0"], 0)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        try:
            sock.sendto(request, (address, port))
            sock.recvfrom(65535)
            return True
        except OSError:
            return False


def _graph_url(base: str, expr: str, tab: int) -> str:
    query = urllib.parse.urlencode({"g0.expr": expr, "g0.tab": tab, "g0.range_input": "15m"})
    return f"{base}/graph?{query}"


def find_prometheus() -> str | None:
    return shutil.which("prometheus") or next(
        (p for p in PROMETHEUS_PATHS if os.access(p, os.X_OK)), None)


def find_alertmanager() -> str | None:
    return (shutil.which("prometheus-alertmanager") or shutil.which("alertmanager") or
            next((p for p in ALERTMANAGER_PATHS if os.access(p, os.X_OK)), None))


def _agent_yaml(options: DemoOptions, workdir: Path,
                extra: list[Path] = ()) -> tuple[Path, str]:
    """The agent.yaml in the work directory: config/demo's, paths made absolute, the `extra`
    inventory files appended."""
    source = options.config_dir / "agent.yaml"
    if not source.exists():
        raise DemoError(f"no demo configuration at {source}: run vigil demo from a Vigil "
                        f"source checkout, or give --config-dir")
    try:
        settings = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DemoError(f"cannot read {source}: {exc}") from None
    base = options.config_dir.resolve()

    def absolute(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else base / p)

    settings["inventory"] = [absolute(p) for p in settings.get("inventory", ["inventory.yaml"])]
    settings["inventory"] += [str(p) for p in extra]
    settings["credentials"] = absolute(settings.get("credentials", "credentials.yaml"))
    settings["profiles"] = [absolute(p) for p in settings.get("profiles", [])]
    rules = settings.setdefault("rules", {})
    rules["files"] = [absolute(p) for p in rules.get("files", ["rules/*.yaml"])]
    if options.listen:
        settings["listen"] = options.listen
    listen = str(settings.get("listen", "127.0.0.1:9830"))
    traps = settings.get("traps") or {}
    if options.trap_port and traps.get("enabled"):
        traps["listen"] = f"{listen.rpartition(':')[0]}:{options.trap_port}"
    target = workdir / "agent.yaml"
    header = (f"# Written by `vigil demo` from {source}; rewritten at every start.\n")
    target.write_text(header + yaml.safe_dump(settings, allow_unicode=True, sort_keys=False),
                      encoding="utf-8")
    return target, listen


def _checked(demo: Demo, agent_yaml: Path, what: str):
    """The loaded configuration; its errors listed and the demo stopped when it has any."""
    try:
        return load_config(agent_yaml)
    except (ConfigError, ConfigErrors) as exc:
        for error in getattr(exc, "errors", [exc]):
            demo.say(f"  {error}")
        raise DemoError(f"{what} has problems (listed above)") from None


def _previous_run(workdir: Path) -> list[str]:
    """Children of an earlier demo in this work directory that are still running."""
    state = workdir / "demo.json"
    try:
        pids = json.loads(state.read_text())["pids"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    alive = []
    for name, pid in pids.items():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in cmdline:
            alive.append(f"{name} (pid {pid})")
    return alive


def run(options: DemoOptions) -> int:
    workdir = options.workdir.resolve()
    demo = Demo(options, workdir, tty=sys.stdout.isatty())

    def on_signal(signum: int, _frame) -> None:
        demo.stop_requested = signal.Signals(signum).name

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return _run(demo)
    except DemoError as exc:
        demo.say(f"vigil demo: {exc}")
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        if demo.children:
            demo.say(f"Stopping {', '.join(c.name for c in reversed(demo.children))} ...")
            demo.stop_all()
        for stop in demo.after_stop:
            stop()
        if demo.children or demo.after_stop:
            demo.say("All demo processes stopped.")
        for s, handler in previous.items():
            signal.signal(s, handler)


def _run(demo: Demo) -> int:
    options, workdir = demo.options, demo.workdir
    start = time.time()
    community = os.environ.setdefault(COMMUNITY_ENV, DEFAULT_COMMUNITY)
    cameras.password()   # sets VIGIL_DEMO_CAMERA_PASSWORD if unset
    workdir.mkdir(parents=True, exist_ok=True)
    leftovers = _previous_run(workdir)
    if leftovers:
        raise DemoError(f"an earlier demo in {workdir} is still running: "
                        f"{', '.join(leftovers)}; stop it first (Ctrl-C in its terminal)")
    for module, package in (("snmpsim", "snmpsim"), ("pysmi", "pysmi")):
        if importlib.util.find_spec(module) is None:
            raise DemoError(f"{package} is not installed in this Python: pip install "
                            f"'vigil[test]' (or run scripts/demo, which sets everything up)")
    demo.say(f"Vigil demo: the district network of config/demo, simulated on loopback "
             f"(work directory {workdir})")

    # configuration
    agent_yaml, listen = _agent_yaml(options, workdir)
    config = _checked(demo, agent_yaml, "the demo configuration")
    inventory = config.inventory
    if options.extra_inventory:
        if options.centre:
            raise DemoError("--extra-inventory does not go with --centre")
        agent_yaml, _ = _agent_yaml(options, workdir, options.extra_inventory)
        _checked(demo, agent_yaml, "the extra inventory")
    host, _, port = listen.rpartition(":")
    if not options.centre and not _port_free(host, int(port)):
        raise DemoError(f"{listen} (the agent's HTTP address) is in use: another demo or "
                        f"agent? Choose another with --listen 127.0.0.1:PORT")
    prometheus = find_prometheus() if options.prometheus else None
    if options.prometheus and prometheus is None:
        demo.say("  Prometheus is not installed: running without it. Install it with "
                 "`apt-get install prometheus` (Debian/Ubuntu), or see "
                 "https://prometheus.io/download/.")
    if prometheus and not _port_free("127.0.0.1", options.prometheus_port):
        raise DemoError(f"127.0.0.1:{options.prometheus_port} is in use: choose another "
                        f"with --prometheus-port, or run with --no-prometheus")
    centre = _centre_prepare(demo, agent_yaml, prometheus is not None) if options.centre \
        else None
    endpoints = check_addresses(inventory)
    if centre is None:
        trap_target = _trap_target(config)
        trap_targets = {d: trap_target for d in inventory.devices} if trap_target else {}
    else:
        trap_targets = {d: _trap_target(c) for c in centre.configs
                        for d in c.inventory.devices if _trap_target(c)}
    busy = [f"UDP {a}:{p}" for a, p in [*endpoints, *set(trap_targets.values())]
            if not _port_free(a, p, socket.SOCK_DGRAM)]
    busy += [f"TCP {a}:{p}" for a, p in cameras.endpoints(inventory) if not _port_free(a, p)]
    if busy:
        raise DemoError(f"{', '.join(busy[:3])}{' ...' if len(busy) > 3 else ''} in use: "
                        f"is another demo running?")

    # simulated devices
    kinds: dict[str, int] = {}
    for device in inventory.devices.values():
        kinds[device.kind] = kinds.get(device.kind, 0) + 1
    demo.say(f"Generating {len(inventory.devices)} simulated devices in {len(inventory.sites)} "
             f"sites ({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))}) "
             f"in {workdir / 'data'}")
    t0 = time.time() + 1.0   # snmpsim's clock starts about a second from now
    try:
        generated = generate(inventory, workdir, community, t0=t0, scale=options.scale,
                             progress=lambda d, n: demo.progress("devices", d, n))
    except (ValueError, RuntimeError, OSError) as exc:
        raise DemoError(str(exc)) from None
    cameras.add_to_plan(generated.plan, inventory)
    onvif_json, rtsp_json = cameras.write_configs(inventory, workdir)
    cache = workdir / "snmpsim-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, COMMUNITY_ENV: community}
    sim_env = dict(env)
    if os.geteuid() == 0:
        sim_env["SNMPSIM_ALLOW_ROOT"] = "true"   # snmpsim refuses root otherwise
    args = [sys.executable, "-m", "agent.demo.responder", f"--data-dir={generated.data_dir}",
            f"--cache-dir={cache}", f"--logging-method=file:{workdir / 'snmpsim.log'}",
            "--log-level=error", *(f"--agent-udpv4-endpoint={a}:{p}" for a, p in endpoints)]
    for log in ("snmpsim.log", "snmpsim.out", "onvif.log", "rtsp.log", "agent.log",
                "prometheus.log", "alertmanager.log",
                *(f"{p.id}.log" for p in (centre.plans if centre else []))):
        (workdir / log).unlink(missing_ok=True)
    demo.say(f"Starting snmpsim: {len(endpoints)} endpoints (UDP {endpoints[0][0]}:"
             f"{endpoints[0][1]} ...), building its index")
    sim = demo.start("snmpsim", args, workdir / "snmpsim.out", sim_env)
    files = generated.files + 1

    def indexed() -> None:
        stems = {p.name.split(".dbm")[0] for p in cache.glob("*.dbm*")} if cache.exists() else ()
        demo.progress("data files indexed", min(len(stems), files), files)

    first = endpoints[0]
    demo.wait_for("snmpsim", lambda: _snmp_answers(first[0], first[1], community), sim, 180,
                  progress=indexed)
    demo.progress("data files indexed", files, files)
    control = _start_cameras(demo, inventory, onvif_json, rtsp_json, env)
    if centre is not None:
        _start_centre(demo, centre, env, prometheus)
        _write_centre_state(demo, generated, centre, t0)
        _print_centre_summary(demo, generated, centre, start)
        perform = _performer(demo, inventory, control, trap_targets, community, t0)
        return _watch(demo, generated, start, perform)

    # the agent
    demo.say(f"Starting the agent: vigil run -c {agent_yaml}")
    agent = demo.start("agent", [sys.executable, "-m", "agent.cli", "run", "-c", str(agent_yaml)],
                       workdir / "agent.log", env)
    agent_url = f"http://{listen}"
    demo.wait_for("the agent", lambda: _http_ok(f"{agent_url}/-/ready"), agent, 60)

    # Prometheus
    prom_url = None
    if prometheus:
        prom_dir = workdir / "prometheus"
        shutil.rmtree(prom_dir / "data", ignore_errors=True)
        prom_dir.mkdir(parents=True, exist_ok=True)
        prom_config = prom_dir / "prometheus.yml"
        prom_config.write_text(_prometheus_config(listen), encoding="utf-8")
        prom_url = f"http://127.0.0.1:{options.prometheus_port}"
        demo.say(f"Starting Prometheus ({prometheus}) on {prom_url}")
        prom = demo.start("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{options.prometheus_port}",
            "--storage.tsdb.retention.time=2d", "--log.level=warn"],
            workdir / "prometheus.log", env)
        demo.wait_for("Prometheus", lambda: _http_ok(f"{prom_url}/-/ready"), prom, 60)

    _write_state(demo, generated, agent_url, prom_url, t0)
    _print_summary(demo, generated, agent_url, prom_url, start)
    perform = _performer(demo, inventory, control, trap_targets, community, t0)
    return _watch(demo, generated, start, perform)


def _prometheus_config(listen: str) -> str:
    return (
        "# Written by `vigil demo`: scrape the demo agent every 15 s.\n"
        "global:\n"
        "  scrape_interval: 15s\n"
        "  evaluation_interval: 15s\n"
        "scrape_configs:\n"
        "  - job_name: vigil\n"
        "    static_configs:\n"
        f"      - targets: ['{listen}']\n")


def _save_state(workdir: Path, state: dict) -> None:
    """demo.json, written whole or not at all: tests and scripts poll for it and read it."""
    tmp = workdir / ".demo.json.tmp"
    tmp.write_text(json.dumps(state, ensure_ascii=False, indent=2), encoding="utf-8")
    tmp.replace(workdir / "demo.json")


def _write_state(demo: Demo, generated: Generated, agent_url: str, prom_url: str | None,
                 t0: float) -> None:
    plan = generated.plan
    state = {
        "pids": {c.name: c.proc.pid for c in demo.children},
        "agent": agent_url, "prometheus": prom_url, "t0": t0, "scale": plan.scale,
        "devices": len(generated.devices), "roles": plan.roles,
        "timeline": [{"at": plan.at(e.at), "offset": e.at * plan.scale, "text": e.text}
                     for e in plan.events],
    }
    _save_state(demo.workdir, state)


def _print_summary(demo: Demo, generated: Generated, agent_url: str, prom_url: str | None,
                   start: float) -> None:
    say = demo.say
    say("")
    say(f"Running (ready in {time.time() - start:.0f}s):")
    for child in demo.children:
        say(f"  {child.name:<11} pid {child.proc.pid:<8} log {child.log}")
    say("")
    say("Open:")
    say(f"  agent metrics       {agent_url}/metrics")
    if prom_url:
        say(f"  Prometheus          {prom_url}/graph")
        for title, expr, tab in QUERIES:
            say(f"  {title}:")
            say(f"      {_graph_url(prom_url, expr, tab)}")
    secrets = (f"{COMMUNITY_ENV}={os.environ[COMMUNITY_ENV]} "
               f"{cameras.PASSWORD_ENV}={os.environ[cameras.PASSWORD_ENV]}")
    say(f"  one device, polled now: {secrets} vigil poll -c {demo.workdir / 'agent.yaml'} ups-dh")
    frozen = generated.plan.roles.get("camera_frozen")
    if frozen:
        say(f"  a camera, every collector: {secrets} vigil poll -c "
            f"{demo.workdir / 'agent.yaml'} {frozen} --evidence-dir {demo.workdir / 'frames'}")
    say(f"  evidence frames (JPEG) of picture faults: {agent_url}/evidence/{frozen or 'DEVICE'}")
    say(f"  faults the rules found (--all: also those caused by a root fault; a KEY: its scene "
        f"record): vigil faults --url {agent_url}")
    say("")
    scale = generated.plan.scale
    say("Timeline" + (f" (x{scale:g})" if scale != 1 else "") +
        " - the agent polls every device every 15 s; Prometheus shows a change within ~30 s:")
    for line in describe(generated.plan):
        say(line)
    say("")
    say("Ctrl-C stops everything." if demo.options.duration is None else
        f"Stopping by itself after {demo.options.duration:g}s (Ctrl-C stops earlier).")


def _watch(demo: Demo, generated: Generated, start: float, perform) -> int:
    plan = generated.plan
    pending = [e for e in plan.events if plan.at(e.at) > time.time()]
    actions = list(plan.actions)
    while True:
        if demo.stop_requested:
            demo.say(f"\n{demo.stop_requested}: stopping the demo")
            return 0
        dead = demo.dead()
        if dead is not None:
            demo.report_death(dead)
            return 1
        gone = next((name for name, alive in demo.daemons.items() if not alive()), None)
        if gone is not None:
            demo.say(f"\n{gone} stopped by itself: stopping the demo")
            return 1
        now = time.time()
        while pending and plan.at(pending[0].at) <= now:
            event = pending.pop(0)
            minutes, seconds = divmod(round(event.at * plan.scale), 60)
            demo.say(f"[{time.strftime('%H:%M:%S')}] +{minutes}:{seconds:02d} {event.text}")
        while actions and plan.at(actions[0].at) <= now:
            perform(actions.pop(0))
        if demo.options.duration is not None and now - start >= demo.options.duration:
            demo.say(f"\n{demo.options.duration:g}s are over: stopping the demo")
            return 0
        time.sleep(0.2)


def _trap_target(config) -> tuple[str, int] | None:
    """Where the simulated devices send traps: the agent's receiver, if it is enabled."""
    traps = config.settings.traps
    if not traps.enabled:
        return None
    host, _, port = traps.listen.rpartition(":")
    host = host.strip("[]")
    return ("127.0.0.1" if host in ("0.0.0.0", "") else "::1" if host == "::" else host,
            int(port))


def _rtsp_unavailable() -> str | None:
    """Why the GStreamer RTSP server cannot run here, or None."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    script = ("import gi; gi.require_version('Gst', '1.0'); "
              "gi.require_version('GstRtspServer', '1.0'); "
              "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
              "assert Gst.ElementFactory.find('x264enc'), 'x264enc missing'")
    done = subprocess.run([SYSTEM_PYTHON, "-c", script], capture_output=True, text=True,
                          timeout=60)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return lines[-1] if lines else f"exit status {done.returncode}"
    return None


def _start_cameras(demo: Demo, inventory, onvif_json: Path, rtsp_json: Path,
                   env: dict[str, str]) -> str | None:
    """The ONVIF simulator and the RTSP server; the control API's base URL (None: no
    cameras)."""
    served = cameras.cameras(inventory)
    if not served:
        return None
    port = _free_tcp_port(demo.options)
    control = f"http://127.0.0.1:{port}"
    demo.say(f"Starting the ONVIF simulator: {len(served)} cameras (TCP "
             f"{served[0].address}:{served[0].onvif.port} ...)")
    onvif = demo.start("onvif", [sys.executable, "-m", "agent.demo.onvif", "--config",
                                 str(onvif_json), "--control", f"127.0.0.1:{port}"],
                       demo.workdir / "onvif.log", env)
    demo.wait_for("the ONVIF simulator", lambda: _http_ok(f"{control}/cameras"), onvif, 60)
    streams = [d for d in served if d.rtsp is not None]
    if streams:
        why = _rtsp_unavailable()
        if why:
            demo.say(f"  The RTSP server cannot run ({why}): the cameras' streams are down. "
                     f"Install: apt-get install {RTSP_DEBIAN}")
        else:
            demo.say(f"Starting the RTSP server (GStreamer): {len(streams)} streams (TCP "
                     f"{streams[0].address}:{cameras.RTSP_PORT} ...)")
            log = demo.workdir / "rtsp.log"
            rtsp = demo.start("rtsp", [SYSTEM_PYTHON, str(RTSP_SERVER), "--config",
                                       str(rtsp_json)], log, env)
            demo.wait_for("the RTSP server", lambda: "READY" in log.read_text(errors="replace"),
                          rtsp, 60)
    return control


def _free_tcp_port(options: DemoOptions) -> int:
    """A free loopback port that is none of the ports the demo was told to use: the kernel may
    hand back a port just released by whoever chose those, and the two would then collide
    when both start listening."""
    taken = {options.prometheus_port, options.alertmanager_port, options.trap_port}
    if options.listen:
        taken.add(int(options.listen.rpartition(":")[2]))
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port not in taken:
            return port


def _performer(demo: Demo, inventory, control: str | None,
               trap_targets: dict[str, tuple[str, int]], community: str, t0: float):
    """The function that performs one timeline Action; a failure is said, never fatal."""
    def perform(action: Action) -> None:
        try:
            if action.kind == "onvif" and control:
                cameras.control(control, action)
            elif action.kind == "trap" and action.device in trap_targets:
                send_trap(inventory.devices[action.device].address,
                          trap_targets[action.device], community,
                          action.args["oid"], action.args.get("varbinds"), started=t0)
        except (OSError, ValueError, KeyError) as exc:
            demo.say(f"  (could not {action.kind} {action.device}: {exc})")
    return perform


# -- centre mode (vigil demo --centre) ---------------------------------------------------------

@dataclass
class Centre:
    """What --centre runs besides the devices: three branch agents, the shared ticket store,
    the centre's Alertmanager and Prometheus."""

    plans: list[demo_centre.BranchPlan]
    configs: list                       # each branch's loaded Config
    tickets_url: str
    pg_bin: Path | None                 # None: PostgreSQL is not installed, SQLite instead
    pg_port: int | None
    alertmanager: str | None            # the binary; None: not installed
    alertmanager_url: str | None
    tokens: dict[str, dict[str, str]]
    tokens_file: Path
    prometheus_url: str | None = None
    cluster: postgres.Cluster | None = None


def _centre_prepare(demo: Demo, agent_yaml: Path, with_prometheus: bool) -> Centre:
    """The branches' configurations written and checked, the centre's ports checked free."""
    options, workdir = demo.options, demo.workdir
    settings = yaml.safe_load(agent_yaml.read_text(encoding="utf-8"))
    inventories = settings.get("inventory", [])
    if len(inventories) != 1 or any(c in inventories[0] for c in "*?["):
        raise DemoError(f"{agent_yaml}: --centre splits one inventory file into branches; "
                        f"this configuration has {inventories}")
    alertmanager = find_alertmanager()
    am_url = None
    if alertmanager is None:
        demo.say("  Alertmanager is not installed: running without it (the agents forward "
                 "no alerts). Install it with `apt-get install prometheus-alertmanager`.")
    elif not _port_free("127.0.0.1", options.alertmanager_port):
        raise DemoError(f"127.0.0.1:{options.alertmanager_port} is in use: choose another "
                        f"with --alertmanager-port")
    else:
        am_url = f"http://127.0.0.1:{options.alertmanager_port}"
    pg_bin, pg_port = postgres.find_bin(), None
    if pg_bin is None:
        store = workdir / "tickets.db"
        for leftover in workdir.glob("tickets.db*"):
            leftover.unlink()
        tickets_url = f"sqlite+aiosqlite:///{store}"
        demo.say(f"  PostgreSQL is not installed: the three agents share one SQLite file "
                 f"instead ({store}). Install it with `apt-get install postgresql`.")
    else:
        pg_port = _free_tcp_port(options)
        tickets_url = postgres.url(pg_port)
    port = int(options.listen.rpartition(":")[2]) if options.listen else None
    plans = demo_centre.write_branches(
        Path(inventories[0]), settings, workdir, port=port, trap_port=options.trap_port,
        alertmanager_url=am_url, tickets_url=tickets_url)
    configs = []
    for plan in plans:
        try:
            configs.append(load_config(plan.config))
        except (ConfigError, ConfigErrors) as exc:
            for error in getattr(exc, "errors", [exc]):
                demo.say(f"  {error}")
            raise DemoError(f"{plan.config} has problems (listed above)") from None
    busy = [p.listen for p in plans if not _port_free(p.host, p.port)]
    if busy:
        raise DemoError(f"{', '.join(busy)} (branch agents' HTTP addresses) in use: another "
                        f"demo? Choose another port with --listen 127.0.0.1:PORT")
    tokens, tokens_file = demo_centre.make_tokens(plans, workdir)
    if with_prometheus:
        prometheus_url = f"http://127.0.0.1:{options.prometheus_port}"
    else:
        prometheus_url = None
    return Centre(plans, configs, tickets_url, pg_bin, pg_port, alertmanager, am_url, tokens,
                  tokens_file, prometheus_url)


def _start_centre(demo: Demo, centre: Centre, env: dict[str, str], prometheus: str | None) -> None:
    """PostgreSQL, Alertmanager, the three agents, then the centre's Prometheus."""
    options, workdir = demo.options, demo.workdir
    centre_dir = workdir / "centre"
    centre_dir.mkdir(parents=True, exist_ok=True)
    if centre.pg_bin is not None and centre.pg_port is not None:
        demo.say(f"Starting PostgreSQL ({centre.pg_bin}) on 127.0.0.1:{centre.pg_port}: the "
                 f"shared ticket store")
        try:
            centre.cluster = postgres.start(workdir, centre.pg_bin, centre.pg_port)
        except postgres.PostgresError as exc:
            raise DemoError(f"PostgreSQL did not start: {exc}") from None
        demo.after_stop.append(centre.cluster.stop)
        demo.daemons["postgres"] = centre.cluster.running
        if centre.cluster.temporary:
            demo.say(f"  (the postgres user cannot reach {workdir}: the cluster is in "
                     f"{centre.cluster.base}, removed at the end)")
    if centre.alertmanager and centre.alertmanager_url:
        am_dir = centre_dir / "alertmanager"
        shutil.rmtree(am_dir / "data", ignore_errors=True)
        am_dir.mkdir(parents=True, exist_ok=True)
        relay = centre.plans[0]
        am_config = demo_centre.write_alertmanager(am_dir, CENTRE_CONFIG_DIR, relay,
                                                   centre.tokens[relay.id]["engineer"])
        demo.say(f"Starting Alertmanager ({centre.alertmanager}) on {centre.alertmanager_url}")
        am = demo.start("alertmanager", [
            centre.alertmanager, f"--config.file={am_config}",
            f"--storage.path={am_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{options.alertmanager_port}",
            "--cluster.listen-address=", "--log.level=warn"],
            workdir / "alertmanager.log", env)
        demo.wait_for("Alertmanager", lambda: _http_ok(f"{centre.alertmanager_url}/-/ready"),
                      am, 60)
    agents = []
    for plan in centre.plans:
        demo.say(f"Starting {plan.id} ({', '.join(plan.sites)}): vigil run -c {plan.config}")
        agents.append(demo.start(plan.id, [sys.executable, "-m", "agent.cli", "run", "-c",
                                           str(plan.config)], workdir / f"{plan.id}.log", env))
    for plan, agent in zip(centre.plans, agents, strict=True):
        demo.wait_for(plan.id, lambda p=plan: _http_ok(f"{p.url}/-/ready"), agent, 90)
    if prometheus and centre.prometheus_url:
        prom_dir = centre_dir / "prometheus"
        shutil.rmtree(prom_dir / "data", ignore_errors=True)
        prom_dir.mkdir(parents=True, exist_ok=True)
        prom_config = demo_centre.write_prometheus(prom_dir, CENTRE_CONFIG_DIR, centre.plans,
                                                   options.prometheus_port,
                                                   options.alertmanager_port)
        demo.say(f"Starting the centre's Prometheus ({prometheus}) on {centre.prometheus_url}")
        prom = demo.start("prometheus", [
            prometheus, f"--config.file={prom_config}", f"--storage.tsdb.path={prom_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{options.prometheus_port}",
            "--storage.tsdb.retention.time=2d", "--log.level=warn"],
            workdir / "prometheus.log", env)
        demo.wait_for("Prometheus", lambda: _http_ok(f"{centre.prometheus_url}/-/ready"),
                      prom, 60)


def _write_centre_state(demo: Demo, generated: Generated, centre: Centre, t0: float) -> None:
    plan = generated.plan
    pids = {c.name: c.proc.pid for c in demo.children}
    postmaster = centre.cluster.postmaster_pid() if centre.cluster else None
    if postmaster:
        pids["postgres"] = postmaster
    state = {
        "pids": pids, "centre": True,
        "agent": centre.plans[0].url,
        "branches": {p.id: {"url": p.url, "sites": p.sites, "config": str(p.config)}
                     for p in centre.plans},
        "prometheus": centre.prometheus_url, "alertmanager": centre.alertmanager_url,
        "tickets_url": centre.tickets_url, "tokens": str(centre.tokens_file),
        "postgres_dir": str(centre.cluster.base) if centre.cluster else None,
        "t0": t0, "scale": plan.scale, "devices": len(generated.devices), "roles": plan.roles,
        "timeline": [{"at": plan.at(e.at), "offset": e.at * plan.scale, "text": e.text}
                     for e in plan.events],
    }
    _save_state(demo.workdir, state)


def _print_centre_summary(demo: Demo, generated: Generated, centre: Centre,
                          start: float) -> None:
    say = demo.say
    say("")
    say(f"Running (ready in {time.time() - start:.0f}s):")
    for child in demo.children:
        say(f"  {child.name:<13} pid {child.proc.pid:<8} log {child.log}")
    if centre.cluster:
        say(f"  {'postgres':<13} pid {centre.cluster.postmaster_pid() or '?':<8} "
            f"log {centre.cluster.log}")
    say("")
    say("Open:")
    for plan in centre.plans:
        say(f"  {plan.id} ({', '.join(plan.sites)}):")
        say(f"      metrics  {plan.url}/metrics")
        say(f"      web UI   {plan.url}/ui/")
        say(f"      API      {plan.url}/api/v1/tickets   (Authorization: Bearer TOKEN)")
        for role, token in centre.tokens[plan.id].items():
            say(f"      {role + ' token':<15} {token}")
    say(f"  (tokens also in {centre.tokens_file})")
    if centre.prometheus_url:
        say(f"  centre Prometheus   {centre.prometheus_url}/graph   "
            f"(targets: {centre.prometheus_url}/targets)")
        for title, expr in demo_centre.GRAPHS:
            say(f"  {title}:")
            say(f"      {_graph_url(centre.prometheus_url, expr, 0)}")
    if centre.alertmanager_url:
        say(f"  Alertmanager        {centre.alertmanager_url}/#/alerts")
    say(f"  ticket store        {centre.tickets_url}")
    say(f"  faults of a branch: vigil faults --url {centre.plans[0].url}")
    say("")
    scale = generated.plan.scale
    say("Timeline" + (f" (x{scale:g})" if scale != 1 else "") +
        " - each agent polls its devices every 15 s, the centre scrapes every 15 s:")
    for line in describe(generated.plan):
        say(line)
    say("")
    say("Ctrl-C stops everything." if demo.options.duration is None else
        f"Stopping by itself after {demo.options.duration:g}s (Ctrl-C stops earlier).")
