"""Alertmanager's webhook into Vigil's notification channels (the WeCom / DingTalk path).

POST /api/v1/alertmanager/webhook?channel=NAME[&channel=NAME2]
    body: Alertmanager's webhook payload (version 4); each alert becomes one message on the
    named channels of `notifications.channels` (agent.yaml): firing -> "opened", resolved ->
    "resolved", with the same templates, retries, rate limits, storm aggregation and dead
    letters as the ticket messages. Answers 200 {"queued": N}.

Why: Alertmanager has no WeCom group robot or DingTalk robot receiver (its `wechat_configs`
is the WeCom *application* API), while Vigil already speaks to both robots. So a centre's
Alertmanager routes an alert here (config/centre/alertmanager.yml, receiver `vigil-wecom`)
and the branch agent delivers it.

An alert's labels give the message: `level` (1-4; an alert without a valid one is sent as
level 3 — a centre's own rules may lack it), `site`, `device` (else `branch`, else the
instance), `fault_key` (else alertname:device) as the key receivers deduplicate on; its
annotations `summary` / `summary_en` (else `description`, else the alertname) say what is
wrong; `generatorURL` is the link.

Needs `Authorization: Bearer TOKEN` of an engineer (Alertmanager: `http_config.authorization.
credentials_file`): it makes the agent send messages. Errors as the other routes: 400 (body
not a webhook payload, unknown or no channel: nothing is sent), 401/403/429, 503 (no
notification channels: tickets are disabled).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from agent.auth import Authenticator
from agent.notify import Message, Notifier

log = logging.getLogger("vigil.alert_relay")

MAX_BODY = 1024 * 1024   # Alertmanager batches a group's alerts: a storm is a big body
DEFAULT_LEVEL = 3


class AmAlert(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    startsAt: datetime          # Alertmanager's field names
    generatorURL: str = ""


class AmWebhook(BaseModel):
    """Alertmanager's webhook payload; only what a message needs is read."""

    model_config = ConfigDict(extra="ignore")

    version: str
    alerts: list[AmAlert]


def message_of(alert: AmAlert) -> Message:
    """One Alertmanager alert as a Vigil notification."""
    labels, notes = alert.labels, alert.annotations
    name = labels.get("alertname", "alert")
    device = labels.get("device") or labels.get("branch") or labels.get("instance", "")
    level = labels.get("level", "")
    what = notes.get("summary") or notes.get("description") or name
    return Message(
        kind="opened" if alert.status == "firing" else "resolved",
        key=labels.get("fault_key") or f"{name}:{device}",
        site=labels.get("site", ""), device=device,
        level=int(level) if level in ("1", "2", "3", "4") else DEFAULT_LEVEL,
        what_zh=what, what_en=notes.get("summary_en", ""), since=alert.startsAt,
        link=alert.generatorURL)


def add_alert_relay_routes(app: web.Application, notifier: Callable[[], Notifier | None],
                           auth: Authenticator) -> None:
    @auth.require({"engineer"})
    async def webhook(request: web.Request) -> web.Response:
        relay = notifier()
        if relay is None:
            return _error(503, "no notification channels: tickets are disabled in agent.yaml")
        channels = request.query.getall("channel", [])
        if not channels:
            return _error(400, "channel: name one or more channels of notifications.channels "
                               "(?channel=NAME)")
        unknown = [c for c in channels if c not in relay.channels]
        if unknown:
            return _error(400, f"channel: unknown {', '.join(unknown)}; known: "
                               f"{', '.join(sorted(relay.channels))}")
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, f"body larger than {MAX_BODY} bytes")
        try:
            payload = AmWebhook.model_validate_json(await request.read())
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"]) or "body"
            return _error(400, f"not an Alertmanager webhook payload: {where}: {first['msg']}")
        messages = [message_of(a) for a in payload.alerts]
        for message in messages:
            relay.submit(message, channels)
        log.info("relaying %d alert(s) from Alertmanager to %s", len(messages),
                 ", ".join(channels))
        return web.json_response({"queued": len(messages)})

    app.router.add_post("/api/v1/alertmanager/webhook", webhook)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status, dumps=json.dumps)
