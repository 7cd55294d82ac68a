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
import logging
import signal
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, ProcessCollector, disable_created_metrics

from agent import systemd
from agent.config import Config, load_config
from agent.exporter import AgentMetrics, StateCollector
from agent.http import make_app
from agent.scheduler import PollScheduler
from agent.state import State
from agent.yamlfile import ConfigError, ConfigErrors
from collectors.snmp.collector import SnmpCollector
from collectors.snmp.engine import Engine, make_engine

log = logging.getLogger("vigil")


def _version() -> str:
    try:
        return version("vigil")
    except PackageNotFoundError:
        return "dev"


disable_created_metrics()  # `_created` series double every counter and nobody reads them


class Agent:
    def __init__(self, config: Config):
        self.config = config
        self.state = State()
        self.registry = CollectorRegistry()
        self.metrics = AgentMetrics(self.registry)
        ProcessCollector(registry=self.registry)
        self.registry.register(StateCollector(self.state, lambda: self.config.profiles.catalogue))
        self.engine: Engine = self._make_engine(config)
        self.collector = SnmpCollector(self.engine, config.profiles)
        self.scheduler = PollScheduler(self.state, self.metrics, self.collector)
        self.runner: web.AppRunner | None = None
        self.ready = False
        self._reload_lock = asyncio.Lock()
        self._background: set[asyncio.Task] = set()

    @staticmethod
    def _make_engine(config: Config) -> Engine:
        snmp = config.settings.snmp
        return make_engine(snmp.engine, snmp.engine_threads)

    def _adopt(self, config: Config) -> None:
        self.config = config
        self.state.sync(config.inventory)
        self.scheduler.apply(config, self.collector)
        self.metrics.reload_ok.set(1)
        self.metrics.reload_time.set(time.time())
        self.metrics.info.info({"agent": config.settings.agent.id, "version": _version(),
                                "engine": self.engine.name})

    async def start(self) -> None:
        host, _, port = self.config.settings.listen.rpartition(":")
        self.runner = web.AppRunner(make_app(self), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host.strip("[]"), int(port), reuse_address=True)
        await site.start()
        self._adopt(self.config)
        self.scheduler.start()
        self.ready = True
        devices = len(self.config.inventory.devices)
        log.info("listening on http://%s, polling %d devices with the %s engine",
                 self.config.settings.listen, devices, self.engine.name)

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
            if config.settings.snmp.engine != self.engine.name:
                retired, self.engine = self.engine, self._make_engine(config)
                self._retire(retired)
            collector = SnmpCollector(self.engine, config.profiles)
            if _same_profiles(self.config, config):  # keep what auto-detection found
                collector.detected = dict(self.collector.detected)
            self.collector = collector
            self._adopt(config)
            log.info("configuration reloaded: %d devices", len(config.inventory.devices))
            return []

    def _retire(self, engine: Engine) -> None:
        """Close a replaced engine once the polls it may still be serving have ended."""
        grace = max((p.job.deadline for p in self.scheduler.plans.values()), default=1.0)

        async def close_later() -> None:
            await asyncio.sleep(grace)
            await engine.close()

        task = asyncio.get_running_loop().create_task(close_later())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def stop(self) -> None:
        self.ready = False
        self.scheduler.shutdown()
        if self.runner is not None:
            await self.runner.cleanup()
        for task in list(self._background):
            task.cancel()
        await self.engine.close()


def _same_profiles(old: Config, new: Config) -> bool:
    a, b = old.profiles.profiles, new.profiles.profiles
    return a.keys() == b.keys() and all(a[k].model == b[k].model for k in a)


async def _watchdog(interval: float) -> None:
    while True:
        systemd.notify("WATCHDOG=1")
        await asyncio.sleep(interval)


async def serve(path: Path) -> int:
    """Run until SIGTERM/SIGINT. Exit status 0, or 2 if the config cannot be loaded."""
    try:
        config = load_config(path)
    except (ConfigError, ConfigErrors) as exc:
        for error in getattr(exc, "errors", [exc]):
            log.error("%s", error)
        log.error("not starting: fix the configuration (vigil check --config %s)", path)
        return 2
    agent = Agent(config)
    try:
        await agent.start()
    except OSError as exc:
        log.error("cannot listen on %s: %s", config.settings.listen, exc.strerror or exc)
        await agent.stop()
        return 2
    loop = asyncio.get_running_loop()
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
