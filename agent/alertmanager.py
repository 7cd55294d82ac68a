"""Forwarding Vigil's faults to Alertmanager (API v2).

Centres that already route, group, silence and inhibit their alerts with Alertmanager keep
doing so: Vigil posts its faults there the way a Prometheus server does. Alertmanager's resend
semantics apply to whoever builds the alerts: a firing alert must be sent again before its
endsAt (or, without one, before Alertmanager's resolve_timeout), else Alertmanager resolves it
by itself; a resolved alert is sent once more with its original startsAt and endsAt = the time
it resolved (Alertmanager rejects an endsAt that is not after startsAt).
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge
from yarl import URL

log = logging.getLogger("vigil.alertmanager")

BATCH = 1000
"""Most alerts in one POST."""
ATTEMPTS = 3
BACKOFF = 0.5
"""Seconds before the second attempt, doubled before each further one."""


def alert_time(ts: float) -> str:
    """A unix time as RFC 3339 UTC with milliseconds and 'Z', the form Alertmanager answers
    with (so what was sent compares equal to what it lists)."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


class _Metrics:
    def __init__(self, registry: CollectorRegistry, urls: list[str]) -> None:
        self.sent = Counter("vigil_alertmanager_alerts_sent",
                            "Alerts Alertmanager accepted.", ["url"], registry=registry)
        self.errors = Counter("vigil_alertmanager_errors",
                              "POSTs to Alertmanager that failed after retries (unreachable, "
                              "timeout, 5xx) or were rejected (4xx).", ["url"],
                              registry=registry)
        self.up = Gauge("vigil_alertmanager_up",
                        "1 if Alertmanager answered the latest POST without a server error, "
                        "else 0.", ["url"], registry=registry)
        for url in urls:
            self.sent.labels(url)
            self.errors.labels(url)


class AlertmanagerSender:
    """Posts alerts to every configured Alertmanager; one that is down does not hold up the
    others, and nothing raises to the caller (failures are logged and counted)."""

    def __init__(self, urls: list[str], timeout: float,
                 registry: CollectorRegistry | None = None) -> None:
        self.urls = [url.rstrip("/") for url in urls]
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        # Labels and logs name a URL without its user and password.
        self._names = {url: str(URL(url).with_user(None)) for url in self.urls}
        self._metrics = _Metrics(registry, list(self._names.values())) if registry else None
        self._failing: set[str] = set()
        self._session: aiohttp.ClientSession | None = None

    async def send(self, alerts: list[dict]) -> None:
        """POST `alerts` to every URL at once, in batches of at most BATCH alerts."""
        if not alerts:
            return
        try:
            bodies = [(json.dumps(alerts[i:i + BATCH]).encode(), len(alerts[i:i + BATCH]))
                      for i in range(0, len(alerts), BATCH)]
        except (TypeError, ValueError) as exc:
            log.error("alerts not sent: they do not serialise to JSON: %s", exc)
            return
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        await asyncio.gather(*(self._deliver(url, bodies) for url in self.urls))

    async def close(self) -> None:
        """Close the HTTP session (a later send opens a new one)."""
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _deliver(self, url: str, bodies: list[tuple[bytes, int]]) -> None:
        name = self._names[url]
        for body, count in bodies:
            status, detail = await self._post(f"{url}/api/v2/alerts", body)
            answered = status is not None and status < 500
            accepted = status is not None and status < 300
            if self._metrics:
                self._metrics.up.labels(name).set(1 if answered else 0)
                if accepted:
                    self._metrics.sent.labels(name).inc(count)
                else:
                    self._metrics.errors.labels(name).inc()
            self._note(url, answered, detail)
            if not answered:
                return  # the remaining batches would fail the same way
            if not accepted:
                # Alertmanager 0.25 still keeps the valid alerts of a batch it answers 400 to.
                log.error("Alertmanager %s rejected %d alerts (HTTP %s): %s",
                          name, count, status, detail)

    def _note(self, url: str, answered: bool, detail: str) -> None:
        """Log when a URL starts failing and when it works again, not at every failure."""
        if answered and url in self._failing:
            self._failing.discard(url)
            log.info("Alertmanager %s works again", self._names[url])
        elif not answered and url not in self._failing:
            self._failing.add(url)
            log.warning("Alertmanager %s is failing (%d attempts): %s",
                        self._names[url], ATTEMPTS, detail)

    async def _post(self, endpoint: str, body: bytes) -> tuple[int | None, str]:
        """POST with retries for connection errors, timeouts and 5xx; returns the final HTTP
        status (None if there was no answer) and the response body or error."""
        assert self._session is not None
        status: int | None = None
        detail = ""
        for attempt in range(ATTEMPTS):
            if attempt:
                await asyncio.sleep(BACKOFF * 2 ** (attempt - 1))
            try:
                async with self._session.post(
                        endpoint, data=body,
                        headers={"Content-Type": "application/json"}) as response:
                    status, detail = response.status, (await response.text())[:500]
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, detail = None, str(exc) or type(exc).__name__
                continue
            if status < 500:
                break
            detail = f"HTTP {status}: {detail}"
        return status, detail
