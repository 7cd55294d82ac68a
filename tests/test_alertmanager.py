"""AlertmanagerSender against the real Alertmanager (Debian prometheus-alertmanager), and
against a small aiohttp server on loopback where the number of requests matters."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import aiohttp
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from agent.alertmanager import AlertmanagerSender, alert_time
from tests import peers

needs_alertmanager = pytest.mark.peer("alertmanager")


@pytest.fixture(scope="module")
def am(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with peers.alertmanager(tmp_path_factory.mktemp("alertmanager")) as url:
        yield url


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@asynccontextmanager
async def sender(urls: list[str], registry: CollectorRegistry,
                 timeout: float = 5.0) -> AsyncIterator[AlertmanagerSender]:
    am_sender = AlertmanagerSender(urls, timeout, registry)
    try:
        yield am_sender
    finally:
        await am_sender.close()


def fault(device: str, site: str, start: float, end: float | None = None,
          level: str = "critical") -> dict:
    alert = {"labels": {"alertname": "VigilDeviceDown", "level": level, "site": site,
                        "device": device},
             "annotations": {"summary": f"{device} does not answer", "reason": "timeout"},
             "startsAt": alert_time(start),
             "generatorURL": f"http://127.0.0.1:9781/devices/{device}"}
    if end is not None:
        alert["endsAt"] = alert_time(end)
    return alert


async def listed(url: str, site: str, **flags: bool) -> list[dict]:
    """Alertmanager's alerts of one site (each test uses its own), sorted by device."""
    params = [("filter", f'site="{site}"'), *((k, str(v).lower()) for k, v in flags.items())]
    async with aiohttp.ClientSession() as session, \
            session.get(f"{url}/api/v2/alerts", params=params) as response:
        assert response.status == 200, await response.text()
        alerts = await response.json()
    return sorted(alerts, key=lambda a: a["labels"].get("device", ""))


def metric(registry: CollectorRegistry, name: str, url: str) -> float | None:
    return registry.get_sample_value(name, {"url": url})


class Recorder:
    """An HTTP server on 127.0.0.1 that answers every POST /api/v2/alerts with `status` and
    `answer`, and records the alerts of each request."""

    def __init__(self, status: int, answer: str) -> None:
        self.status = status
        self.answer = answer
        self.received: list[list] = []
        self.url = ""

    async def alerts(self, request: web.Request) -> web.Response:
        self.received.append(await request.json())
        return web.json_response(self.answer, status=self.status)


@asynccontextmanager
async def recorder(status: int, answer: str = "") -> AsyncIterator[Recorder]:
    server = Recorder(status, answer)
    app = web.Application()
    app.router.add_post("/api/v2/alerts", server.alerts)
    runner = web.AppRunner(app)
    await runner.setup()
    port = peers.free_port(socket.SOCK_STREAM)
    await web.TCPSite(runner, "127.0.0.1", port).start()
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        await runner.cleanup()


@needs_alertmanager
async def test_firing_alerts_are_listed(am: str, registry: CollectorRegistry) -> None:
    start = time.time() - 30
    sent = [fault("cam-1", "firing", start), fault("ups-1", "firing", start, level="warning")]
    async with sender([am], registry) as am_sender:
        await am_sender.send(sent)

    alerts = await listed(am, "firing")
    assert [a["labels"] for a in alerts] == [s["labels"] for s in sent]
    assert [a["annotations"] for a in alerts] == [s["annotations"] for s in sent]
    assert [a["startsAt"] for a in alerts] == [alert_time(start)] * 2
    assert [a["generatorURL"] for a in alerts] == [s["generatorURL"] for s in sent]
    assert metric(registry, "vigil_alertmanager_alerts_sent_total", am) == 2
    assert metric(registry, "vigil_alertmanager_errors_total", am) == 0
    assert metric(registry, "vigil_alertmanager_up", am) == 1


@needs_alertmanager
async def test_resolved_alert_is_no_longer_active(am: str, registry: CollectorRegistry) -> None:
    start = time.time() - 60
    async with sender([am], registry) as am_sender:
        await am_sender.send([fault("cam-2", "resolved", start)])
        assert [a["labels"]["device"] for a in await listed(am, "resolved", active=True)] \
            == ["cam-2"]
        await am_sender.send([fault("cam-2", "resolved", start, end=time.time() - 1)])

    assert await listed(am, "resolved", active=True) == []
    # Alertmanager 0.25's API lists no resolved alert at all, whatever the filters.
    assert await listed(am, "resolved", active=False) == []
    assert metric(registry, "vigil_alertmanager_alerts_sent_total", am) == 2


@pytest.mark.faults
@needs_alertmanager
async def test_dead_url_does_not_stop_delivery(am: str, registry: CollectorRegistry,
                                               caplog: pytest.LogCaptureFixture) -> None:
    dead = f"http://127.0.0.1:{peers.free_port(socket.SOCK_STREAM)}"  # nothing listens
    caplog.set_level(logging.INFO, "vigil.alertmanager")
    async with sender([dead, am], registry, timeout=2) as am_sender:
        await am_sender.send([fault("cam-3", "dead", time.time())])
        await am_sender.send([fault("cam-4", "dead", time.time())])

    assert [a["labels"]["device"] for a in await listed(am, "dead")] == ["cam-3", "cam-4"]
    assert metric(registry, "vigil_alertmanager_errors_total", dead) == 2
    assert metric(registry, "vigil_alertmanager_alerts_sent_total", dead) == 0
    assert metric(registry, "vigil_alertmanager_up", dead) == 0
    assert metric(registry, "vigil_alertmanager_up", am) == 1
    assert metric(registry, "vigil_alertmanager_alerts_sent_total", am) == 2
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and dead in warnings[0].getMessage()


@needs_alertmanager
async def test_rejected_alerts_are_not_retried(am: str, registry: CollectorRegistry,
                                               caplog: pytest.LogCaptureFixture) -> None:
    bad = fault("cam-5", "rejected", time.time())
    bad["labels"]["1bad"] = "x"
    async with recorder(400, "invalid label set") as server, \
            sender([server.url, am], registry) as am_sender:
        await am_sender.send([bad, fault("cam-6", "rejected", time.time())])

    assert len(server.received) == 1
    for rejected in (server.url, am):
        assert metric(registry, "vigil_alertmanager_errors_total", rejected) == 1
        assert metric(registry, "vigil_alertmanager_alerts_sent_total", rejected) == 0
        assert metric(registry, "vigil_alertmanager_up", rejected) == 1
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert any(am in m and 'invalid name \\"1bad\\"' in m for m in errors), errors
    # Alertmanager answers 400 for the batch but keeps its valid alerts.
    assert [a["labels"]["device"] for a in await listed(am, "rejected")] == ["cam-6"]


@pytest.mark.faults
async def test_server_errors_are_retried_and_recovery_logged(
        registry: CollectorRegistry, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "vigil.alertmanager")
    async with recorder(503, "unavailable") as server, \
            sender([server.url], registry) as am_sender:
        await am_sender.send([fault("cam-7", "retry", time.time())])
        await am_sender.send([fault("cam-7", "retry", time.time())])
        assert len(server.received) == 6  # 3 attempts each
        assert metric(registry, "vigil_alertmanager_up", server.url) == 0
        assert metric(registry, "vigil_alertmanager_errors_total", server.url) == 2
        server.status = 200
        await am_sender.send([fault("cam-7", "retry", time.time())])
        assert len(server.received) == 7
        assert metric(registry, "vigil_alertmanager_up", server.url) == 1
        assert metric(registry, "vigil_alertmanager_alerts_sent_total", server.url) == 1

    logged = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert [level for level, _ in logged] == [logging.WARNING, logging.INFO], logged
    assert "HTTP 503" in logged[0][1] and "works again" in logged[1][1]


async def test_big_lists_go_in_batches(registry: CollectorRegistry) -> None:
    alerts = [fault(f"cam-{i}", "batch", time.time()) for i in range(2500)]
    async with recorder(200) as server, sender([server.url], registry) as am_sender:
        await am_sender.send(alerts)
    assert [len(r) for r in server.received] == [1000, 1000, 500]
    assert [a["labels"]["device"] for r in server.received for a in r] == \
        [a["labels"]["device"] for a in alerts]
    assert metric(registry, "vigil_alertmanager_alerts_sent_total", server.url) == 2500
    assert metric(registry, "vigil_alertmanager_up", server.url) == 1


def test_alert_time() -> None:
    assert alert_time(0) == "1970-01-01T00:00:00.000Z"
    assert alert_time(1764000000.25) == "2025-11-24T16:00:00.250Z"

