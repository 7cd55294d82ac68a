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
import weakref
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


_PARSED: set[str] = set()   # WSDL files the library has parsed and cached in this process
_PARSING: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = \
    weakref.WeakKeyDictionary()


class _Camera(ONVIFCamera):
    """ONVIFCamera whose every service transport is instrumented (errors.instrument), and
    whose service creation survives the caller's timeout: the library opens a service's HTTP
    client before an await and registers the service only after it, so a poll cancelled in
    between would leave an HTTP client nobody closes. A creation runs shielded to its end,
    a second caller for the same service waits for the one in flight (two would register
    one over the other, unclosed), and `close` waits for creations still running."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._creating: dict[tuple[str, str | None], asyncio.Task] = {}

    async def create_onvif_service(self, name: str, port_type: str | None = None,
                                   read_timeout: int | None = None,
                                   write_timeout: int | None = None) -> ONVIFService:
        key = (name.lower(), port_type)
        task = self._creating.get(key)
        if task is None and key in self.services:  # made already: the usual case, no task
            service = await super().create_onvif_service(name, port_type, read_timeout,
                                                         write_timeout)
            instrument(service)
            return service
        if task is None:
            task = asyncio.ensure_future(self._create(name, port_type, read_timeout,
                                                      write_timeout))
            self._creating[key] = task
            task.add_done_callback(lambda done: self._created(key, done))
        service = await asyncio.shield(task)
        instrument(service)
        return service

    async def _create(self, name: str, port_type: str | None, read_timeout: int | None,
                      write_timeout: int | None) -> ONVIFService:
        """The library parses a WSDL the first time a service needs it and caches it, but
        without a lock: cameras set up at once would each parse it (measured: 20 first polls
        at once, +111 MB and 2.3 s of CPU instead of +19 MB and 0.35 s). The first creation
        per WSDL file in the process goes alone; later ones use the cached document."""
        wsdl = self.get_definition(name.lower(), port_type)[1]
        if wsdl in _PARSED:
            return await super().create_onvif_service(name, port_type, read_timeout,
                                                      write_timeout)
        locks = _PARSING.setdefault(asyncio.get_running_loop(), {})
        async with locks.setdefault(wsdl, asyncio.Lock()):
            service = await super().create_onvif_service(name, port_type, read_timeout,
                                                         write_timeout)
        _PARSED.add(wsdl)
        return service

    def _created(self, key: tuple[str, str | None], task: asyncio.Task) -> None:
        if self._creating.get(key) is task:
            del self._creating[key]
        if not task.cancelled():
            task.exception()  # retrieved: a caller that timed out has stopped waiting for it

    async def close(self) -> None:
        if self._creating:
            await asyncio.wait(set(self._creating.values()), timeout=30)
        await super().close()


class Session:
    """A device's ONVIF client: its camera object, the services it offers, its clock skew."""

    def __init__(self, address: str, port: int, username: str, password: str):
        self.key = (address, port, username, password)
        self.address = address
        self.port = port
        self.camera = self._new_camera()
        self._retired: set[asyncio.Task] = set()
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

    def _new_camera(self) -> _Camera:
        address, port, username, password = self.key
        return _Camera(address, port, username or None, password or None, adjust_time=True,
                       no_cache=True)

    async def learn(self, timeout: float) -> None:
        """Learn the device's clock skew and service addresses (once per session). A set-up
        cut short (timeout, failure) can leave the library's table of services half-updated,
        e.g. a service it had closed still registered: the next attempt starts from a fresh
        camera object, and the old one is closed in the background."""
        try:
            await self.call("setup (GetSystemDateAndTime, GetServices)",
                            self.camera.update_xaddrs, timeout=timeout)
        except BaseException:
            old, self.camera = self.camera, self._new_camera()
            task = self.loop.create_task(old.close())
            self._retired.add(task)
            task.add_done_callback(self._retired.discard)
            raise
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
        if self._retired:
            await asyncio.wait(set(self._retired), timeout=30)
        try:
            await self.camera.close()
        except Exception:  # closing a broken session must not break the caller
            log.debug("closing the ONVIF session of %s:%s failed", self.address, self.port,
                      exc_info=True)
