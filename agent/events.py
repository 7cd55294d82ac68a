"""Events pushed by devices: the SNMP trap receiver and ONVIF PullPoint subscriptions.

Both deliver event readings to the state as they arrive, so a UPS going on battery or a
camera being tampered with is seen in seconds, not at the next poll. This module starts,
re-targets on reload, and stops them; the receivers themselves live in collectors/traps and
collectors/onvif.
"""

from __future__ import annotations

import logging
from typing import Any

from agent.config import Config
from agent.credentials import Login
from agent.exporter import AgentMetrics
from agent.state import State
from collectors.reading import Reading

log = logging.getLogger("vigil.events")


class Events:
    def __init__(self, state: State, metrics: AgentMetrics):
        self.state = state
        self.metrics = metrics
        self.traps: Any = None
        self.trap_settings: Any = None
        self.onvif: Any = None
        self.addresses: dict[str, str] = {}

    def deliver(self, reading: Reading) -> None:
        """The EventSink: keep the event; an event for an unknown device is only counted."""
        if not self.state.record_event(reading):
            log.debug("event for a device not in the inventory: %s", reading.device)

    def resolve(self, address: str) -> str | None:
        """The device a trap's source address belongs to."""
        return self.addresses.get(address)

    async def apply(self, config: Config) -> None:
        self.addresses = {}
        for device in config.inventory.devices.values():
            self.addresses.setdefault(device.address, device.id)
        await self._apply_traps(config)
        await self._apply_onvif(config)

    async def _apply_traps(self, config: Config) -> None:
        settings = config.settings.traps
        wanted = (settings.listen, settings.per_source_rate, settings.per_source_burst,
                  tuple(settings.credentials),
                  tuple(config.credentials.get(n) for n in settings.credentials))
        if self.traps is not None and (not settings.enabled or wanted != self.trap_settings):
            await self.traps.close()
            self.traps = None
        if settings.enabled and self.traps is None:
            from collectors.traps.ratelimit import SourceLimiter
            from collectors.traps.receiver import TrapReceiver

            auths = [config.credentials[name] for name in settings.credentials]
            receiver = TrapReceiver(settings.listen, self.deliver, self.resolve,
                                    [a for a in auths if not isinstance(a, Login)],
                                    mappings=config.trap_mappings,
                                    limiter=SourceLimiter(settings.per_source_rate,
                                                          settings.per_source_burst))
            try:
                await receiver.start()
            except OSError as exc:
                log.error("cannot receive SNMP traps on %s: %s (polling goes on without "
                          "traps; port 162 needs CAP_NET_BIND_SERVICE or a redirect)",
                          settings.listen, exc.strerror or exc)
            else:
                self.traps = receiver
                log.info("receiving SNMP traps on %s", receiver.address)
        if self.traps is not None:
            self.traps.mappings = config.trap_mappings  # profiles may have changed
        self.trap_settings = wanted

    async def _apply_onvif(self, config: Config) -> None:
        from agent.plans import plans

        jobs = [p.make_job() for p in plans(config, self.state) if p.collector == "onvif"
                and _events_wanted(config, p.device)]
        if not jobs:
            if self.onvif is not None:
                await self.onvif.close()
                self.onvif = None
            return
        if self.onvif is None:
            from collectors.onvif.events import OnvifEvents

            self.onvif = OnvifEvents(self.deliver, config.settings.onvif.max_subscriptions)
        await self.onvif.watch(jobs)

    def readings(self) -> list[Reading]:
        """Readings about the receivers themselves (ONVIF subscription states), per device."""
        return self.onvif.readings() if self.onvif is not None else []

    async def close(self) -> None:
        if self.traps is not None:
            await self.traps.close()
            self.traps = None
        if self.onvif is not None:
            await self.onvif.close()
            self.onvif = None


def trap_counters(events: Events) -> dict[str, int]:
    return events.traps.counters.as_dict() if events.traps is not None else {}


def _events_wanted(config: Config, device_id: str) -> bool:
    device = config.inventory.devices[device_id]
    assert device.onvif is not None
    return device.onvif.events if device.onvif.events is not None \
        else config.settings.onvif.events
