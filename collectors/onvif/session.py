"""One device's ONVIF client, kept across polls.

A session owns one `ONVIFCamera` of onvif-zeep-async. It is created once per device and
learns the device's service addresses once (GetSystemDateAndTime without credentials, to
sign later requests on the camera's own clock, then GetServices, or GetCapabilities on
devices without GetServices). Later polls only call the operations they read. The collector
drops a session when it can no longer be trusted (see collector.py) and the next poll builds
a new one.

Every request goes through `Session.call`: a per-request timeout, the HTTP trace that
errors.classify needs, and one classification of whatever went wrong into an OnvifFailure.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from onvif import ONVIFCamera
from onvif.client import ONVIFService

from collectors.onvif.errors import TRACE, HttpTrace, OnvifFailure, classify, instrument

log = logging.getLogger("vigil.onvif")

NAMESPACES = {
    "http://www.onvif.org/ver10/device/wsdl": "device",
    "http://www.onvif.org/ver10/media/wsdl": "media",
    "http://www.onvif.org/ver20/media/wsdl": "media2",
    "http://www.onvif.org/ver20/ptz/wsdl": "ptz",
    "http://www.onvif.org/ver10/events/wsdl": "events",
    "http://www.onvif.org/ver20/imaging/wsdl": "imaging",
    "http://www.onvif.org/ver20/analytics/wsdl": "analytics",
    "http://www.onvif.org/ver10/deviceIO/wsdl": "deviceio",
    "http://www.onvif.org/ver10/recording/wsdl": "recording",
}
"""Service namespace -> the `service` label of onvif_service_available."""


class _Camera(ONVIFCamera):
    """ONVIFCamera whose every service transport is instrumented (errors.instrument)."""

    async def create_onvif_service(self, name: str, port_type: str | None = None,
                                   read_timeout: int | None = None,
                                   write_timeout: int | None = None) -> ONVIFService:
        service = await super().create_onvif_service(name, port_type, read_timeout,
                                                     write_timeout)
        instrument(service)
        return service


class Session:
    """A device's ONVIF client: its camera object, the services it offers, its clock skew."""

    def __init__(self, address: str, port: int, username: str, password: str):
        self.key = (address, port, username, password)
        self.address = address
        self.port = port
        self.camera = _Camera(address, port, username or None, password or None,
                              adjust_time=True, no_cache=True)
        self.services: dict[str, str] = {}  # service label -> XAddr
        self.learnt = False
        self.learnt_at = 0.0
        self.time_needs_auth = False  # the device wants credentials for GetSystemDateAndTime
        self.identity: tuple[str, ...] | None = None
        self.lock = asyncio.Lock()
        self.closed = False
        self.loop = asyncio.get_running_loop()  # its HTTP sessions belong to this loop

    @property
    def skew(self) -> float:
        """The camera's clock minus ours, as learnt when the session was set up (the offset
        its WS-Security timestamps are signed with)."""
        diff = self.camera.dt_diff
        return diff.total_seconds() if diff is not None else 0.0

    def has(self, service: str) -> bool:
        return service in self.services

    async def learn(self, timeout: float) -> None:
        """Learn the device's clock skew and service addresses (once per session)."""
        await self.call("setup (GetSystemDateAndTime, GetServices)", self.camera.update_xaddrs,
                        timeout=timeout)
        self.services = {NAMESPACES[ns]: xaddr for ns, xaddr in self.camera.xaddrs.items()
                         if ns in NAMESPACES}
        self.services.setdefault("device", f"http://{self.address}:{self.port}"
                                           "/onvif/device_service")
        self.learnt = True
        self.learnt_at = time.time()

    async def service(self, name: str) -> ONVIFService:
        """The client of one service ('devicemgmt', 'media', 'ptz', 'events', ...)."""
        return await self.camera.create_onvif_service(name)

    async def call(self, operation: str, function: Callable[..., Awaitable[Any]],
                   params: Any = None, timeout: float = 5.0) -> Any:
        """Run one request (or the library's composite step), classifying any failure."""
        trace = HttpTrace()
        token = TRACE.set(trace)
        try:
            async with asyncio.timeout(max(timeout, 0.001)):
                return await (function(params) if params is not None else function())
        except OnvifFailure:
            raise
        except Exception as exc:
            found = classify(exc, trace)
            if found is None:
                raise
            reason, detail = found
            raise OnvifFailure(reason, f"{operation}: {detail}") from exc
        finally:
            TRACE.reset(token)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            await self.camera.close()
        except Exception:  # closing a broken session must not break the caller
            log.debug("closing the ONVIF session of %s:%s failed", self.address, self.port,
                      exc_info=True)
