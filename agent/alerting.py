"""The rules stage of the daemon: runs the engine on a timer, keeps its faults on disk, and
forwards them to Alertmanager.

State -> Engine -> faults. Faults and silences are saved to `state_dir/faults.json` after
every cycle that changed something (atomically: a crash leaves the previous file), and read
back at start, so a restart neither forgets a fault nor opens it a second time. A fault that
opens nothing of its own (caused by a root fault, silenced, inhibited) is not forwarded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from agent.alertmanager import AlertmanagerSender, alert_time
from agent.config import Config
from agent.inventory import Device
from agent.state import State
from rules.engine import Engine
from rules.faults import Fault, HistoryFile, load_json, save_json

log = logging.getLogger("vigil.alerting")


class RulesRunner:
    def __init__(self, config: Config, state: State, registry: CollectorRegistry,
                 interval: Callable[[str, str], float | None],
                 clock: Callable[[], float] = time.time):
        self.state = state
        self.interval = interval
        self.clock = clock
        self.path = Path(config.settings.state_dir) / "faults.json"
        self.history_file = HistoryFile(self.path.with_name("faults-history.jsonl"),
                                        config.settings.rules.history)
        self.engine = Engine(config.rules, config.settings.rules)
        saved = load_json(self.path)
        if saved:
            self.engine.restore(saved)
            log.info("restored %d active faults and %d silences from %s",
                     len(self.engine.active), len(self.engine.silences), self.path)
        history = self.history_file.load()
        if not history and isinstance(saved, dict) and saved.get("history"):
            history = list(reversed(saved["history"]))   # a faults.json of before 0.9
            try:
                self.history_file.rewrite(history)
            except OSError as exc:
                log.error("cannot write %s: %s", self.history_file.path, exc)
        self.engine.restore_history(history)
        self._history_out: list[bytes] = []   # resolved faults (JSON) still to append
        self.engine.sync(config.inventory, clock())
        self.config = config
        self.registry = registry
        self.sender: AlertmanagerSender | None = None
        self.sender_urls: list[str] = []
        self._sender_for(config)
        self.cycle_seconds = Histogram(
            "vigil_rule_evaluation_seconds", "CPU time of one evaluation of every rule.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1, 2.5),
            registry=registry)
        self.evaluations = Counter("vigil_rule_evaluations", "Expression evaluations (a "
                                                             "reused result counts too).",
                                   registry=registry)
        self.no_data = Gauge("vigil_rule_no_data", "Devices (series, groups) the rule could "
                                                   "not judge in the latest cycle: a metric it "
                                                   "reads has no fresh reading.", ["rule"],
                             registry=registry)
        self.errors = Counter("vigil_rule_errors", "Evaluations that failed (see the log).",
                              ["rule"], registry=registry)
        self.last = Gauge("vigil_rule_last_evaluation_timestamp_seconds",
                          "Unix time of the latest rule evaluation.", registry=registry)
        self._task: asyncio.Task | None = None
        self._saving: asyncio.Task | None = None
        self._unsaved = False  # the last save failed (said once until one works)
        self._last_resend = 0.0
        # Called after every cycle with (faults changed in it, active faults): the ticket stage.
        self.after_cycle: list[Callable[[list[Fault], list[Fault]], Awaitable[None]]] = []

    def _sender_for(self, config: Config) -> None:
        urls = config.settings.alertmanager.urls
        if self.sender is not None and self.sender_urls == urls:
            return
        old = self.sender
        self.sender = AlertmanagerSender(urls, config.settings.alertmanager.timeout,
                                         self.registry) if urls else None
        self.sender_urls = urls
        if old is not None:
            self._closing = asyncio.get_running_loop().create_task(old.close())

    def adopt(self, config: Config) -> None:
        """A reloaded configuration: new rules and inventory, faults kept."""
        now = self.clock()
        self.config = config
        self.engine.adopt(config.rules, config.settings.rules, now)
        self.engine.sync(config.inventory, now)
        self._sender_for(config)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            try:
                await self.cycle()
            except Exception:  # the loop must survive a bug in one cycle
                log.exception("rule evaluation failed")
            await asyncio.sleep(self.config.settings.rules.interval)

    async def cycle(self) -> None:
        """One evaluation, then saving and forwarding what changed."""
        now = self.clock()
        stats = self.engine.evaluate(self.state, now, self.interval)
        self.cycle_seconds.observe(stats.seconds)
        self.evaluations.inc(stats.evaluations)
        self.last.set(now)
        self.no_data.clear()
        for rule, count in stats.no_data.items():
            self.no_data.labels(rule).set(count)
        for rule, count in stats.errors.items():
            self.errors.labels(rule).inc(count)
        self._history_out += self.engine.resolved_json
        if self.engine.dirty or self._history_out:
            self.save()
        if self.sender is not None:
            await self._forward(now)
        for callback in self.after_cycle:
            try:
                await callback(list(self.engine.changed), list(self.engine.active.values()))
            except Exception:  # one stage's bug must not stop the rules
                log.exception("after-cycle callback failed")

    def clock_jumped(self, jump: float) -> None:
        """The wall clock stepped (agent/clock.py): the engine keeps its durations."""
        self.engine.clock_jumped(jump)
        self._last_resend += jump

    def save(self) -> None:
        """Write faults.json (active faults, silences) and append the faults resolved since
        to faults-history.jsonl, on a worker thread; a save still running is not started
        twice (the next cycle saves again: the engine stays dirty, the history waits)."""
        if self._saving is not None and not self._saving.done():
            return
        self.engine.dirty = False
        snapshot = self.engine.snapshot()
        history, self._history_out = self._history_out, []

        async def write() -> None:
            try:
                if history:
                    await asyncio.to_thread(self.history_file.append, history)
                    history.clear()
                await asyncio.to_thread(save_json, self.path, snapshot)
            except OSError as exc:
                self.engine.dirty = True
                self._history_out[:0] = history     # what was not appended
                if not self._unsaved:     # said once until a save works again
                    log.error("cannot save faults to %s: %s (kept in memory, retried every "
                              "cycle)", self.path.parent, exc)
                self._unsaved = True
            else:
                if self._unsaved:
                    log.info("faults saved to %s again", self.path.parent)
                self._unsaved = False

        self._saving = asyncio.get_running_loop().create_task(write())

    async def _forward(self, now: float) -> None:
        assert self.sender is not None
        resend = self.config.settings.alertmanager.resend_interval
        changed = {f.key: f for f in self.engine.changed}
        if now - self._last_resend >= resend:
            self._last_resend = now
            faults = [f for f in self.engine.active.values() if f.state == "firing"]
            faults += [f for f in changed.values() if f.state == "resolved"]
        else:
            faults = [f for f in changed.values() if f.state in ("firing", "resolved")]
        settings = self.config.settings
        devices = self.config.inventory.devices
        alerts = [alert(f, now, resend, settings.agent.id, f"http://{settings.listen}",
                        topology_labels(devices.get(f.device) if f.device else None))
                  for f in faults if f.suppressed is None or f.state == "resolved"]
        if alerts:
            await self.sender.send(alerts)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._saving is not None:
            await asyncio.gather(self._saving, return_exceptions=True)
        if self.engine.dirty or self._history_out:
            self.history_file.append(self._history_out)
            save_json(self.path, self.engine.snapshot())
        if self.sender is not None:
            await self.sender.close()


def topology_labels(device: Device | None) -> dict[str, str]:
    """`switch` and `ups` for Alertmanager's inhibit rules (config/centre/alertmanager.yml):
    the switch or UPS a device hangs off, or, on a switch or UPS, its own id, so a
    SwitchUnreachable alert and its cameras' alerts share `switch`. One hop only: the agent's
    own topology (rules/topology.py) already resolves the chain and sends only the root."""
    if device is None:
        return {}
    out = {}
    if device.kind == "switch":
        out["switch"] = device.id
    elif device.uplink is not None:
        out["switch"] = device.uplink.switch
    if device.kind == "ups":
        out["ups"] = device.id
    elif device.powered_by is not None and device.powered_by.ups:
        out["ups"] = device.powered_by.ups
    return out


def alert(fault: Fault, now: float, resend: float, agent: str, base_url: str,
          topology: dict[str, str] | None = None) -> dict[str, Any]:
    """A fault as an Alertmanager v2 alert: labels for routing (level, site, device, and the
    device's `topology_labels`), texts as annotations; a firing one expires after four
    resend intervals unless sent again."""
    labels = {**(topology or {}), **fault.alert_labels(), "agent": agent,
              "fault_key": fault.key}
    annotations = {}
    for key, langs in fault.texts.items():
        annotations[key] = langs.get("zh", "")
        if langs.get("en"):
            annotations[f"{key}_en"] = langs["en"]
    if fault.flapping:
        annotations["flapping"] = "true"
    if fault.caused:
        annotations["caused"] = str(len(fault.caused))
    started = fault.fired_at or fault.pending_since
    ends = fault.resolved_at if fault.state == "resolved" and fault.resolved_at else \
        now + 4 * resend
    return {"labels": {k: v for k, v in labels.items() if v != ""},
            "annotations": annotations, "startsAt": alert_time(started),
            "endsAt": alert_time(max(ends, started + 0.001)),
            "generatorURL": f"{base_url}/api/v1/faults/{quote(fault.key, safe='')}"}
