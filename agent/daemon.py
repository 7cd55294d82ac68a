"""The daemon: wires config -> scheduler -> collector -> state -> exporter, and owns the lifecycle.

Start: load the config (refuse to start on any error), listen, schedule, tell systemd READY.
SIGHUP (or POST /-/reload): load the new config; if valid, adopt it without dropping state
(devices that stay keep their readings and their polling rhythm); if not, log every error
and keep running on the old one. SIGTERM/SIGINT: stop scheduling, cancel polls in flight,
close sockets, exit, within a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from agent import systemd
from agent.alerting import RulesRunner
from agent.clock import ClockWatch
from agent.config import Config, load_config
from agent.events import Events, trap_counters
from agent.evidence import EvidenceStore
from agent.exporter import AgentMetrics, StatePage, TrapCounters
from agent.fault_metrics import FaultCollector
from agent.grounding_stage import GroundingStage, Subjects
from agent.history import history_runner
from agent.http import make_app
from agent.inspection_sections import section_providers
from agent.inspection_subjects import InspectionReadings
from agent.inspections import InspectionMetrics, InspectionRunner, InspectionService
from agent.memory import Trimmer
from agent.notify import JsonlDeadLetters, Notifier
from agent.plans import rtsp_overload, video_thresholds
from agent.scheduler import PollScheduler
from agent.state import State
from agent.ticket_metrics import TicketMetrics
from agent.ticketing import TicketRunner
from agent.tickets.store import TicketStore
from agent.tls import server_context
from agent.ups_test import Follow, UpsTests, UpsTestStore
from agent.yamlfile import ConfigError, ConfigErrors
from collectors.snmp.collector import SnmpCollector
from collectors.snmp.engine import Engine, make_engine

log = logging.getLogger("vigil")
GC_YOUNG = 50_000
"""Allocations between young-generation collections (CPython's default: 700). A poll's
objects, cyclic ones included (futures, exceptions of timeouts), mostly die before that
many more are made, so they are freed young instead of being promoted and scanned again by
every full collection. At 700 the collector's work grew with the polls in flight until the
soak's agent saturated for good; at 50,000 the same run held 99.98 % of its polls within
2.5 s and used a fifth less CPU (docs/reliability.md)."""
STOP_STAGE = 10.0  # seconds each stage of a stop may take


def _version() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "dev"


disable_created_metrics()  # `_created` series double every counter and nobody reads them


class Agent:
    def __init__(self, config: Config, clock: Callable[[], float] = time.time):
        """`clock` drives the ticket stage's time limits (tests move it, not the wall)."""
        self.config = config
        self.state = State()
        self.registry = CollectorRegistry()
        self.metrics = AgentMetrics(self.registry)
        self.trimmer = Trimmer(config.settings.memory_trim_interval,
                               lambda released, _seconds: self.metrics.trimmed.inc(released))
        ProcessCollector(registry=self.registry)
        self.events = Events(self.state, self.metrics)
        self.state_page = StatePage(self.state, lambda: self.config.profiles.catalogue,
                                    self.events.readings)
        self.state.observers.append(self.state_page.observe)  # rendered as polls come in
        self.registry.register(TrapCounters(lambda: trap_counters(self.events)))
        self.evidence = EvidenceStore(Path(config.settings.state_dir) / "evidence",
                                      config.settings.evidence_per_device)
        self.engine: Engine = self._make_engine(config)
        self.collectors: dict[str, Any] = {}
        self.scheduler = PollScheduler(self.state, self.metrics, self.evidence.keep)
        self.state.sync(config.inventory)
        self.grounding = GroundingStage(config.inventory, config.settings.tickets.url, clock)
        self.registry.register(self.grounding.collector())
        self.inspection_readings = InspectionReadings(
            lambda: self.inspections.metrics.rows if self.inspections else [], clock)
        self.inspection_readings.sync(config.inventory)
        self.subjects = Subjects(self.state, self.grounding.state,  # + earthing points
                                 self.inspection_readings.state)  # + scheduled inspections
        self.rules = RulesRunner(config, self.subjects, self.registry,  # type: ignore[arg-type]
                                 self._poll_interval)
        self.registry.register(FaultCollector(lambda: list(self.rules.engine.active.values())))
        self.tickets = _ticket_runner(config, self.registry, clock)
        if self.tickets is not None:
            self.rules.after_cycle.append(self.tickets.on_cycle)
        self.ups_tests = _ups_tests(self, clock) if self.tickets is not None else None
        if self.ups_tests is not None:
            self.rules.after_cycle.append(self.ups_tests.on_cycle)
        self.inspections = _inspection_runner(self, clock)
        if self.inspections is not None:
            self.inspections.listeners.append(self.inspection_readings.publish)
            self.rules.after_cycle.append(self.inspection_readings.on_cycle)
        self.history = history_runner(config.settings, lambda: self.config.profiles.catalogue,
                                      self._poll_interval, lambda: self.state.devices, clock)
        if self.history is not None:
            self.state.observers.append(self.history.observe)
        self.runner: web.AppRunner | None = None
        self.clock_watch = ClockWatch(
            [self.scheduler.clock_jumped, self.rules.clock_jumped,
             *([self.tickets.clock_jumped] if self.tickets is not None else [])],
            self.metrics.clock_jumps)
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()

    def metrics_page(self) -> bytes:
        """GET /metrics: the devices (rendered per device, see StatePage), then the agent's
        registry. Runs on a worker thread."""
        return self.state_page.render() + generate_latest(self.registry)

    def _poll_interval(self, device: str, collector: str) -> float | None:
        plan = self.scheduler.plans.get(f"{device}/{collector}")
        return plan.interval if plan is not None else None

    @staticmethod
    def _make_engine(config: Config) -> Engine:
        snmp = config.settings.snmp
        return make_engine(snmp.engine, snmp.engine_threads)

    def _collectors(self, config: Config, snmp: SnmpCollector) -> dict[str, Any]:
        """The collectors this config needs; ones that keep sessions (ONVIF) live on."""
        devices = [d for d in config.inventory.devices.values() if d.enabled]
        wanted: dict[str, Any] = {"snmp": snmp}
        if any(d.onvif is not None for d in devices):
            from collectors.onvif.collector import OnvifCollector

            wanted["onvif"] = self.collectors.get("onvif") or OnvifCollector()
        if any(d.rtsp is not None for d in devices):
            from collectors.rtsp.collector import RtspCollector

            thresholds = video_thresholds(config.settings)
            old = self.collectors.get("rtsp")
            same = old is not None and old.thresholds == thresholds \
                and old.max_decodes == config.settings.rtsp.max_decodes
            wanted["rtsp"] = old if same else RtspCollector(
                thresholds, config.settings.rtsp.max_decodes)
            if config.settings.rtsp.decode_seconds > 0:
                wanted["rtsp"].start()
        if config.settings.reachability.enabled:
            from collectors.reach.collector import ReachCollector

            wanted["reach"] = self.collectors.get("reach") or ReachCollector()
        for name, collector in self.collectors.items():
            if wanted.get(name) is not collector and name != "snmp":
                self._close_later(collector.close())
        return wanted

    async def _adopt(self, config: Config, snmp: SnmpCollector) -> None:
        self.config = config
        self.state.sync(config.inventory)
        self.collectors = self._collectors(config, snmp)
        for plan in self.scheduler.apply(config, self.collectors):
            forget = getattr(self.collectors.get(plan.collector), "forget", None)
            if forget is not None:
                forget(plan.device)
        await self.events.apply(config)
        self.grounding.adopt(config.inventory)
        self.inspection_readings.sync(config.inventory)
        self.subjects.sync()
        self.rules.adopt(config)
        if self.tickets is not None:
            self.tickets.adopt(config)
        if self.history is not None:
            self.history.adopt(config.settings)
        if config.settings.tickets.enabled != (self.tickets is not None):
            log.warning("tickets.enabled changed: restart the agent to apply it")
        overload = rtsp_overload(config)
        if overload:
            log.warning("%s", overload)
        self.evidence.per_device = config.settings.evidence_per_device
        self.trimmer.adopt(config.settings.memory_trim_interval)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        self.metrics.info.info({"agent": config.settings.agent.id, "version": _version(),
                                "engine": self.engine.name})

    async def start(self) -> None:
        host, _, port = self.config.settings.listen.rpartition(":")
        self.runner = web.AppRunner(make_app(self), access_log=None)
        await self.runner.setup()
        tls = self.config.settings.tls
        site = web.TCPSite(self.runner, host.strip("[]"), int(port), reuse_address=True,
                           ssl_context=server_context(tls) if tls else None)
        await site.start()
        await self._adopt(self.config, SnmpCollector(self.engine, self.config.profiles))
        self.scheduler.start()
        watch = asyncio.get_running_loop().create_task(self.clock_watch.run())
        self._background.add(watch)
        watch.add_done_callback(self._background.discard)
        self.grounding.start()
        if self.tickets is not None:
            self.tickets.start()  # opens (migrates) the store at once, in the background
        if self.ups_tests is not None:
            task = asyncio.get_running_loop().create_task(self.ups_tests.open_retrying(
                lambda: self.tickets is not None and self.tickets.ready))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        if self.inspections is not None:
            self.inspections.start()
        self.rules.start()
        if self.history is not None:
            self.history.start()
        self.trimmer.start()
        self.ready = True
        # What exists now (modules, config, profiles, rules, ONVIF WSDLs) lives as long as
        # the agent: out of the cyclic collector's sight, each full collection scans only
        # what polling makes (full collections paused the event loop 0.5-0.7 s at 5,000
        # devices; docs/reliability.md). A reload gives it back (agent.reload).
        gc.freeze()
        gc.set_threshold(GC_YOUNG, *gc.get_threshold()[1:])
        devices = len(self.config.inventory.devices)
        log.info("listening on http%s://%s, polling %d devices (%s) with the %s SNMP engine",
                 "s" if tls else "", self.config.settings.listen, devices,
                 ", ".join(sorted(self.collectors)), self.engine.name)

    async def reload(self) -> list[str]:
        """Load the config again; return the errors (empty when adopted)."""
        async with self._reload_lock:
            try:
                config = await asyncio.to_thread(load_config, self.config.path)
            except (ConfigError, ConfigErrors) as exc:
                errors = [str(e) for e in getattr(exc, "errors", [exc])]
                self.metrics.reload_ok.set(0)
                for line in errors:
                    log.error("reload refused: %s", line)
                log.error("reload refused: the running configuration stays in force")
                return errors
            if config.settings.listen != self.config.settings.listen:
                log.warning("listen address changed: restart the agent to apply it")
            if config.settings.tls != self.config.settings.tls:
                log.warning("tls changed: restart the agent to apply it")
            if config.settings.snmp.engine != self.engine.name:
                retired, self.engine = self.engine, self._make_engine(config)
                self._close_later(retired.close())
            snmp = SnmpCollector(self.engine, config.profiles)
            old = self.collectors.get("snmp")
            if old is not None and _same_profiles(self.config, config):
                snmp.detected = dict(old.detected)  # keep what auto-detection found
            await self._adopt(config, snmp)
            gc.unfreeze()  # the replaced config and collectors may hold cycles: collectable
            log.info("configuration reloaded: %d devices", len(config.inventory.devices))
            return []

    def _close_later(self, closing: Any) -> None:
        """Close a replaced engine or collector once the polls it may serve have ended."""
        grace = max((p.interval for p in self.scheduler.plans.values()), default=1.0)

        async def close_later() -> None:
            await asyncio.sleep(grace)
            await closing

        task = asyncio.get_running_loop().create_task(close_later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        """Stop in stages, each bounded by STOP_STAGE seconds: a stage that hangs is logged
        with what is still running and the stop goes on (systemd would kill us anyway)."""
        self.ready = False
        self.scheduler.shutdown()
        for task in list(self._background):
            task.cancel()
        stages: list[tuple[str, Callable[[], Awaitable[Any]]]] = [("rules", self.rules.close)]
        if self.inspections is not None:
            stages.append(("inspections", self.inspections.close))
        if self.tickets is not None:
            stages.append(("tickets", self.tickets.close))
        if self.ups_tests is not None:
            stages.append(("ups tests", self.ups_tests.close))
        if self.history is not None:
            stages.append(("history", self.history.close))
        stages += [("grounding", self.grounding.close), ("events", self.events.close),
                   ("memory trim", self.trimmer.close)]
        if self.runner is not None:
            stages.append(("http", self.runner.cleanup))
        stages += [(f"collector {name}", collector.close)
                   for name, collector in self.collectors.items() if name != "snmp"]
        stages.append(("snmp engine", self.engine.close))
        for name, stage in stages:
            try:
                await asyncio.wait_for(stage(), STOP_STAGE)
            except TimeoutError:
                log.error("stopping: %s did not finish within %gs; going on. Still "
                          "running:\n%s", name, STOP_STAGE, _running_tasks())
            except Exception:
                log.exception("stopping: %s failed; going on", name)


def _running_tasks() -> str:
    """Where each task of the loop waits (for a stop that hangs)."""
    lines = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task():
            continue
        frames = task.get_stack(limit=4)
        where = " <- ".join(f"{f.f_code.co_name} ({Path(f.f_code.co_filename).name}:"
                            f"{f.f_lineno})" for f in reversed(frames))
        lines.append(f"  {task.get_name()}: {where or task.get_coro()!r}")
    return "\n".join(lines) or "  (no task)"


def _ticket_runner(config: Config, registry: CollectorRegistry,
                   clock: Callable[[], float]) -> TicketRunner | None:
    """The ticket stage, or None when `tickets.enabled` is false."""
    settings = config.settings
    if not settings.tickets.enabled:
        return None
    store = TicketStore(settings.tickets.url, settings.agent.id, clock,
                        reopen_window=settings.tickets.reopen_window)
    dead = JsonlDeadLetters(Path(settings.state_dir) / settings.notifications.dead_letters) \
        if settings.notifications.channels else None
    notifier = Notifier(list(settings.notifications.channels), dead_letters=dead, clock=clock,
                        registry=registry)
    return TicketRunner(config, store, notifier, clock, TicketMetrics(registry))


def _ups_tests(agent: Agent, clock: Callable[[], float]) -> UpsTests:
    """UPS battery tests, in the ticket store's database (docs/ups-test.md)."""
    settings = agent.config.settings
    follow = settings.ups_tests
    return UpsTests(lambda: agent.config, agent.state,
                    UpsTestStore(settings.tickets.url, settings.agent.id, clock, migrate=False),
                    Follow(follow.follow_interval, follow.start_grace, follow.max_duration), clock)
def _inspection_runner(agent: Agent, clock: Callable[[], float]) -> InspectionRunner | None:
    """Inspections live in the ticket store: none without it."""
    tickets = agent.tickets
    if tickets is None:
        return None
    settings = lambda: agent.config.settings.inspections  # noqa: E731  # follows reloads
    providers = section_providers(
        lambda: agent.config.inventory, clock, ups_tests=lambda: agent.ups_tests,
        grounding=lambda: agent.grounding,
        history=(lambda: agent.history) if agent.config.settings.history.enabled else None)
    service = InspectionService(tickets.store, settings, lambda: agent.state, providers)
    return InspectionRunner(service, settings, lambda: tickets.ready,
                            InspectionMetrics(agent.registry), clock)


def _same_profiles(old: Config, new: Config) -> bool:
    a, b = old.profiles.profiles, new.profiles.profiles
    return a.keys() == b.keys() and all(a[k].model == b[k].model for k in a)


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


TRACEMALLOC_ENV = "VIGIL_TRACEMALLOC"


def _trace_memory(loop: asyncio.AbstractEventLoop, state_dir: Path) -> None:
    """VIGIL_TRACEMALLOC=FRAMES (1 or more): trace the agent's Python allocations and, on each
    SIGUSR2, write them to state_dir/memory-<unix time>.tracemalloc, to find what grows
    (`bench/run --suite soak --tracemalloc` compares two; `tracemalloc.Snapshot.load` reads
    one). Tracing costs CPU and memory: it is for a diagnosis, not for service."""
    raw = os.environ.get(TRACEMALLOC_ENV, "")
    if not raw:
        return
    if not raw.isdigit() or int(raw) < 1:
        log.error("%s=%r: a number of frames (1 or more) expected; not tracing",
                  TRACEMALLOC_ENV, raw)
        return
    tracemalloc.start(int(raw))

    def dump() -> None:
        path = state_dir / f"memory-{time.time():.0f}.tracemalloc"
        tmp = path.with_name(path.name + ".tmp")
        try:
            state_dir.mkdir(parents=True, exist_ok=True)
            tracemalloc.take_snapshot().dump(str(tmp))
            os.replace(tmp, path)    # whole or absent: a reader polls for the name
        except OSError as exc:
            log.error("cannot write the memory snapshot %s: %s", path, exc)
            return
        log.warning("memory snapshot written to %s", path)

    loop.add_signal_handler(signal.SIGUSR2, dump)
    log.warning("tracing memory allocations (%s=%s, %d frame(s)): slower; SIGUSR2 writes a "
                "snapshot to %s", TRACEMALLOC_ENV, raw, int(raw), state_dir)


async def serve(path: Path) -> int:
    """Run until SIGTERM/SIGINT. Exit status 0, or 2 if the config cannot be loaded."""
    try:
        config = load_config(path)
    except (ConfigError, ConfigErrors) as exc:
        for error in getattr(exc, "errors", [exc]):
            log.error("%s", error)
        log.error("not starting: fix the configuration (vigil check --config %s)", path)
        return 2
    loop = asyncio.get_running_loop()
    _trace_memory(loop, Path(config.settings.state_dir))
    agent = Agent(config)
    try:
        await agent.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.settings.listen, exc.strerror or exc)
        await agent.stop()
        return 2
    stop = asyncio.Event()
    reloads: set[asyncio.Task] = set()

    def on_hup() -> None:
        task = loop.create_task(agent.reload())
        reloads.add(task)
        task.add_done_callback(reloads.discard)

    loop.add_signal_handler(signal.SIGHUP, on_hup)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    watchdog = None
    interval = systemd.watchdog_interval()
    if interval:
        watchdog = loop.create_task(_watchdog(interval))
    systemd.notify(f"READY=1\nSTATUS=polling {len(config.inventory.devices)} devices")
    await stop.wait()
    log.info("stopping")
    systemd.notify("STOPPING=1")
    if watchdog:
        watchdog.cancel()
    await agent.stop()
    for task in list(reloads):
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return 0
