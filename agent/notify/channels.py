"""Delivery to one channel: WeCom and DingTalk robots, e-mail, webhook.

What apprise (2.2) covers and what is Vigil's own:

- E-mail goes through apprise (`NotifyEmail`: SMTP, STARTTLS or TLS, login), run in a
  worker thread because apprise is synchronous. apprise checks the server's certificate and
  host name against the system's CAs (`ssl.create_default_context()` in
  apprise/plugins/email/smtp.py) unless the channel sets `verify_tls: false`. It catches SMTP
  and TLS errors itself and logs the reason only at debug level, so `_AppriseReasons` keeps
  the exception for the dead letter.
- WeCom and DingTalk robots are Vigil's own small aiohttp posts, although apprise has
  `wecombot://` and `dingtalk://`. Measured on apprise 2.2: (1) both plugins count any HTTP
  200 as delivered, but these APIs answer 200 with `errcode` != 0 for a rejected message
  (bad key, sign mismatch, the 20-per-minute limit: WeCom 45009, DingTalk 130101), so lost
  messages would pass as sent; (2) the DingTalk plugin URL-quotes the signature and then
  hands it to requests as a query parameter, which quotes it again (`%252F` on the wire);
  DingTalk decodes once and answers `310000 sign not match`; (3) the API origin is a class
  constant, so neither can be pointed at a forwarding proxy or a loopback test receiver.
- The webhook (plain JSON of the message facts, or Alertmanager's webhook payload v4) is
  Vigil's own: apprise's `json://` posts its own fixed document, not the facts a receiver
  needs to route and deduplicate (fault key, site, device, level).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import sys
import time
import urllib.parse
from typing import Any

import aiohttp

from agent.alertmanager import alert_time
from agent.notify.model import (
    Channel,
    DingTalkChannel,
    EmailChannel,
    Kind,
    Message,
    WebhookChannel,
    WeComChannel,
    secret,
)
from agent.notify.render import Rendered

WECOM_MAX_BYTES = 2048
DINGTALK_MAX_BYTES = 20000
# Robot errcodes that mean "too fast, try again later".
RETRYABLE_ERRCODES = {45009, 130101}
# OpenSSL's X509_V_ERR_HOSTNAME_MISMATCH, _EMAIL_MISMATCH, _IP_ADDRESS_MISMATCH
X509_NAME_MISMATCH = {62, 63, 64}


class DeliveryError(Exception):
    """A delivery that failed; `retryable` if trying again later may help."""

    def __init__(self, detail: str, retryable: bool) -> None:
        super().__init__(detail)
        self.retryable = retryable


def dingtalk_sign(secret_key: str, timestamp_ms: int) -> str:
    """DingTalk's robot signature: base64(HMAC-SHA256(key=secret, "timestamp\\nsecret")),
    URL-encoded once, ready to put in the query string."""
    digest = hmac.new(secret_key.encode(), f"{timestamp_ms}\n{secret_key}".encode(),
                      hashlib.sha256).digest()
    return urllib.parse.quote_plus(base64.b64encode(digest).decode())


def _truncate(text: str, max_bytes: int) -> str:
    data = text.encode()
    if len(data) <= max_bytes:
        return text
    return data[:max_bytes - 3].decode(errors="ignore") + "..."


class Sender:
    """Delivers one rendered text (with the messages it stands for) to one channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def send(self, rendered: Rendered, kind: Kind, messages: list[Message]) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        pass


class _HttpSender(Sender):
    def __init__(self, channel: Channel, clock: Any = time.time) -> None:
        super().__init__(channel)
        self.clock = clock
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, url: str, payload: Any, headers: dict[str, str] | None = None
                    ) -> str:
        """POST JSON; the response text on 2xx, else DeliveryError (retryable for no answer,
        timeouts, 429 and 5xx)."""
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.channel.timeout))
        body = json.dumps(payload, ensure_ascii=False).encode()
        try:
            async with self._session.post(
                    url, data=body, headers={"Content-Type": "application/json; charset=utf-8",
                                             **(headers or {})}) as response:
                text = (await response.text())[:500]
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DeliveryError(str(exc) or type(exc).__name__, retryable=True) from exc
        if status >= 300:
            raise DeliveryError(f"HTTP {status}: {text}",
                                retryable=status >= 500 or status in (408, 429))
        return text


class _RobotSender(_HttpSender):
    async def _post_robot(self, url: str, payload: Any) -> None:
        text = await self._post(url, payload)
        try:
            answer = json.loads(text)
            code = int(answer.get("errcode", 0))
        except (ValueError, AttributeError, TypeError) as exc:
            raise DeliveryError(f"unexpected answer: {text}", retryable=True) from exc
        if code != 0:
            raise DeliveryError(f"errcode {code}: {answer.get('errmsg', '')}",
                                retryable=code in RETRYABLE_ERRCODES)


class WeComSender(_RobotSender):
    channel: WeComChannel

    async def send(self, rendered: Rendered, kind: Kind, messages: list[Message]) -> None:
        key = secret(self.channel.key, self.channel.key_env)
        url = f"{self.channel.api_base.rstrip('/')}/cgi-bin/webhook/send?" \
              f"key={urllib.parse.quote_plus(key or '')}"
        content = _truncate(f"{rendered.subject}\n{rendered.body}", WECOM_MAX_BYTES)
        await self._post_robot(url, {"msgtype": "text", "text": {"content": content}})


class DingTalkSender(_RobotSender):
    channel: DingTalkChannel

    async def send(self, rendered: Rendered, kind: Kind, messages: list[Message]) -> None:
        c = self.channel
        token = secret(c.access_token, c.access_token_env) or ""
        url = f"{c.api_base.rstrip('/')}/robot/send?" \
              f"access_token={urllib.parse.quote_plus(token)}"
        key = secret(c.secret, c.secret_env)
        if key:
            timestamp = int(self.clock() * 1000)
            url += f"&timestamp={timestamp}&sign={dingtalk_sign(key, timestamp)}"
        content = _truncate(f"{rendered.subject}\n{rendered.body}", DINGTALK_MAX_BYTES)
        await self._post_robot(url, {"msgtype": "text", "text": {"content": content}})


class WebhookSender(_HttpSender):
    channel: WebhookChannel

    async def send(self, rendered: Rendered, kind: Kind, messages: list[Message]) -> None:
        if self.channel.format == "alertmanager":
            payload = alertmanager_payload(self.channel.name, rendered, kind, messages)
        else:
            payload = {"version": "vigil/1", "channel": self.channel.name, "kind": kind,
                       "subject": rendered.subject, "text": rendered.body,
                       "count": len(messages),
                       "messages": [m.model_dump(mode="json") for m in messages]}
        await self._post(self.channel.url, payload, self.channel.headers)


def alertmanager_payload(receiver: str, rendered: Rendered, kind: Kind,
                         messages: list[Message]) -> dict[str, Any]:
    """Alertmanager's webhook payload (version 4), one alert per message; a storm is one
    payload with all its alerts, like one Alertmanager group."""
    resolved = kind == "resolved" or all(m.kind == "resolved" for m in messages)
    status = "resolved" if resolved else "firing"
    alerts = []
    for m in messages:
        labels = {"alertname": "VigilFault", "fault_key": m.key, "site": m.site,
                  "device": m.device, "level": str(m.level)}
        starts = m.since.timestamp()
        alerts.append({
            "status": "resolved" if m.kind == "resolved" else "firing",
            "labels": labels,
            "annotations": {"summary": m.what_zh, "summary_en": m.what_en,
                            "site_name": m.site_name, "device_name": m.device_name,
                            "deadline": m.deadline.isoformat() if m.deadline else "",
                            "vigil_event": m.kind, "vigil_seq": str(m.seq)},
            "startsAt": alert_time(starts),
            "endsAt": alert_time(max(m.at, starts)) if m.kind == "resolved"
            else "0001-01-01T00:00:00Z",
            "generatorURL": m.link,
            "fingerprint": hashlib.sha256(m.key.encode()).hexdigest()[:16]})
    common = {k: v for k, v in alerts[0]["labels"].items()
              if all(a["labels"].get(k) == v for a in alerts)}
    return {"version": "4", "receiver": receiver, "status": status,
            "groupKey": f"{receiver}:{kind}:{','.join(sorted({m.site for m in messages}))}",
            "truncatedAlerts": 0, "groupLabels": {"alertname": "VigilFault"},
            "commonLabels": common,
            "commonAnnotations": {"summary": rendered.subject, "description": rendered.body},
            "externalURL": "", "alerts": alerts}


class _AppriseReasons:
    """Stands in for apprise's logger on one `NotifyEmail` instance: passes every call on and
    keeps the exception apprise was handling when it logged (apprise catches SMTP and TLS
    errors inside `notify()`, returns False and writes the reason only to its debug log) and
    the warnings, so that the dead letter can say why."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger
        self.errors: list[BaseException] = []
        self.warnings: list[str] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)

    def _note(self) -> None:
        exc = sys.exc_info()[1]
        if exc is not None and exc not in self.errors:
            self.errors.append(exc)

    def debug(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._note()
        self._logger.debug(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def warning(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._note()
        self.warnings.append(str(msg) % args if args else str(msg))
        self._logger.warning(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)

    def error(self, msg: Any, *args: Any, **kwargs: Any) -> None:
        self._note()
        self.warnings.append(str(msg) % args if args else str(msg))
        self._logger.error(msg, *args, stacklevel=kwargs.pop("stacklevel", 1) + 1, **kwargs)


def smtp_failure(exc: BaseException) -> tuple[str, bool]:
    """A reader's reason for an SMTP or TLS error, and whether trying again may help
    (not for an untrusted certificate, a missing STARTTLS or a permanent 5xx answer such as
    535 for a wrong password)."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        if exc.verify_code in X509_NAME_MISMATCH:
            return (f"the server's certificate is not for this host ({exc.verify_message}): "
                    "set `host` to a name the certificate is for"), False
        return (f"the server's certificate is not trusted ({exc.verify_message}): add its "
                "CA to the system's trusted CAs, or set verify_tls: false"), False
    if isinstance(exc, smtplib.SMTPResponseException):
        text = exc.smtp_error.decode("utf-8", "replace") if isinstance(exc.smtp_error, bytes) \
            else str(exc.smtp_error)
        what = "login refused" if isinstance(exc, smtplib.SMTPAuthenticationError) \
            else "server answered"
        return f"{what}: {exc.smtp_code} {text}", not 500 <= exc.smtp_code < 600
    if isinstance(exc, smtplib.SMTPNotSupportedError):
        return f"{exc} (security: starttls needs a server that offers STARTTLS)", False
    return f"{type(exc).__name__}: {exc}", True


class EmailSender(Sender):
    channel: EmailChannel

    async def send(self, rendered: Rendered, kind: Kind, messages: list[Message]) -> None:
        await asyncio.to_thread(self._send, rendered)

    def _send(self, rendered: Rendered) -> None:
        from apprise import NotifyFormat
        from apprise.exception import AppriseException
        from apprise.plugins.email import NotifyEmail

        c = self.channel
        try:
            password = secret(None, c.password_env)
        except LookupError as exc:
            raise DeliveryError(str(exc), retryable=False) from exc
        if not ((password or "").isascii() and (c.user or "").isascii()):
            # smtplib encodes AUTH PLAIN/LOGIN as ASCII and apprise does not catch the error
            raise DeliveryError(f"the SMTP user or the password in {c.password_env} has "
                                "non-ASCII characters, which SMTP login cannot send",
                                retryable=False)
        mode = {"starttls": "starttls", "ssl": "ssl", "none": "insecure"}[c.security]
        try:
            plugin = NotifyEmail(
                host=c.host, port=c.port, user=c.user, password=password,
                secure=c.security != "none", smtp_host=c.host, from_addr=c.sender,
                targets=list(c.to), secure_mode=mode, format=NotifyFormat.TEXT,
                verify=c.verify_tls, cto=c.timeout, rto=c.timeout)
        except (AppriseException, TypeError, ValueError) as exc:
            raise DeliveryError(f"bad e-mail settings: {exc}", retryable=False) from exc
        reasons = _AppriseReasons(plugin.logger)
        plugin.logger = reasons
        if plugin.notify(title=rendered.subject, body=rendered.body,
                         body_format=NotifyFormat.TEXT):
            return
        if reasons.errors:
            reason, retryable = smtp_failure(reasons.errors[-1])
        else:
            reason = "; ".join(reasons.warnings) or "apprise gave no reason"
            retryable = True
        if password:
            reason = reason.replace(password, "***")
        raise DeliveryError(f"SMTP delivery to {c.host}:{c.port} failed: {reason}",
                            retryable=retryable)


def make_sender(channel: Channel, clock: Any = time.time) -> Sender:
    if isinstance(channel, WeComChannel):
        return WeComSender(channel, clock)
    if isinstance(channel, DingTalkChannel):
        return DingTalkSender(channel, clock)
    if isinstance(channel, WebhookChannel):
        return WebhookSender(channel, clock)
    return EmailSender(channel)
