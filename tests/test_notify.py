"""The notification stage against real receivers on loopback: an SMTP server (aiosmtpd), an
aiohttp webhook receiver standing in for webhooks and the WeCom/DingTalk robot APIs. Time is
a fake clock advanced by the injected sleeper: no test sleeps."""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import json
import socket
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from aiohttp import web
from aiosmtpd.controller import Controller

from agent.notify import (
    DingTalkChannel,
    EmailChannel,
    JsonlDeadLetters,
    MemoryDeadLetters,
    Message,
    Notifier,
    Renderer,
    WebhookChannel,
    WeComChannel,
    dingtalk_sign,
)
from tests.peers import free_port

CST = timezone(timedelta(hours=8))
T0 = 1_740_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def message(i: int = 1, kind: str = "opened", level: int = 3) -> Message:
    return Message(kind=kind, key=f"dh/cam-{i:03d}/camera_offline", ticket=f"T-{i}",
                   site="dh", site_name="东湖社区", device=f"cam-{i:03d}",
                   device_name=f"东门枪机{i}号", level=level, what_zh="摄像机离线",
                   what_en="camera offline",
                   since=datetime(2025, 3, 1, 8, 0, tzinfo=CST),
                   deadline=datetime(2025, 3, 1, 10, 0, tzinfo=CST),
                   link=f"http://127.0.0.1:8080/tickets/T-{i}")


@dataclass
class Receiver:
    """Records every POST; answers from `script` per path (status, body), then 200."""

    clock: FakeClock
    url: str = ""
    requests: list[dict] = field(default_factory=list)
    script: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    default_body: str = '{"errcode": 0, "errmsg": "ok"}'

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.requests.append({"path": request.path, "query": request.query_string,
                              "json": json.loads(raw), "at": self.clock(),
                              "content_type": request.headers.get("Content-Type", "")})
        steps = self.script.get(request.path)
        status, body = steps.pop(0) if steps else (200, self.default_body)
        return web.Response(status=status, text=body, content_type="application/json")

    def on(self, path: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == path]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def receiver(clock: FakeClock) -> AsyncIterator[Receiver]:
    rec = Receiver(clock)
    app = web.Application()
    app.router.add_post("/{tail:.*}", rec.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rec.url = f"http://127.0.0.1:{port}"
    try:
        yield rec
    finally:
        await runner.cleanup()


@pytest.fixture
def smtp() -> Iterator[tuple[int, list]]:
    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope)
            return "250 OK"

    port = free_port(socket.SOCK_STREAM)
    controller = Controller(Handler(), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, received
    finally:
        controller.stop()


def webhook(rec: Receiver, name: str = "hook", path: str = "/hook", **kw) -> WebhookChannel:
    return WebhookChannel(type="webhook", name=name, url=rec.url + path,
                          **{"storm_window": 0, **kw})


async def test_email_in_chinese_reaches_smtp_server(smtp, clock: FakeClock) -> None:
    port, received = smtp
    channel = EmailChannel(type="email", name="mail", host="127.0.0.1", port=port,
                           security="none", sender="vigil@example.org",
                           to=["tech@example.org"], storm_window=0)
    notifier = Notifier([channel], clock=clock, sleep=clock.sleep,
                        renderer=Renderer(tz=CST))
    await notifier.notify(message(7))
    await notifier.close()
    assert len(received) == 1
    envelope = received[0]
    assert envelope.mail_from == "vigil@example.org"
    assert envelope.rcpt_tos == ["tech@example.org"]
    mail = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
    assert mail["Subject"] == "【三级】东湖社区（dh） 东门枪机7号（cam-007）：摄像机离线"
    part = mail.get_body(("plain",)) if mail.is_multipart() else mail
    body = part.get_content()
    for text in ("站点：东湖社区（dh）", "设备：东门枪机7号（cam-007）", "级别：3级",
                 "故障：摄像机离线", "发生时间：2025-03-01 08:00",
                 "处理时限：2025-03-01 10:00", "详情：http://127.0.0.1:8080/tickets/T-7"):
        assert text in body, body
    assert "\n设备：" in body  # one fact per line
    assert not notifier.dead_letters


async def test_webhook_json_and_alertmanager_payload(receiver: Receiver,
                                                     clock: FakeClock) -> None:
    channels = [webhook(receiver, "hook", "/hook"),
                webhook(receiver, "am", "/am", format="alertmanager", language="en")]
    notifier = Notifier(channels, clock=clock, sleep=clock.sleep, renderer=Renderer(tz=CST))
    await notifier.notify(message(3, level=2))
    await notifier.close()

    [plain] = [r["json"] for r in receiver.on("/hook")]
    assert plain["kind"] == "opened" and plain["count"] == 1
    assert plain["subject"].startswith("【二级】东湖社区")
    fact = plain["messages"][0]
    assert (fact["key"], fact["site"], fact["device"], fact["level"]) == \
        ("dh/cam-003/camera_offline", "dh", "cam-003", 2)
    assert fact["since"] == "2025-03-01T08:00:00+08:00"
    assert receiver.on("/hook")[0]["content_type"].startswith("application/json")

    [am] = [r["json"] for r in receiver.on("/am")]
    assert am["version"] == "4" and am["status"] == "firing" and am["receiver"] == "am"
    alert = am["alerts"][0]
    assert alert["labels"] == {"alertname": "VigilFault", "fault_key": "dh/cam-003/camera_offline",
                               "site": "dh", "device": "cam-003", "level": "2"}
    assert alert["startsAt"] == "2025-03-01T00:00:00.000Z"
    assert alert["endsAt"] == "0001-01-01T00:00:00Z"
    assert alert["generatorURL"] == "http://127.0.0.1:8080/tickets/T-3"
    assert am["commonAnnotations"]["summary"].startswith("[Level 2] 东湖社区 (dh)")
    assert "Time limit: 2025-03-01 10:00" in am["commonAnnotations"]["description"]


async def test_retries_with_backoff_deliver_once(receiver: Receiver, clock: FakeClock) -> None:
    receiver.script["/flaky"] = [(500, "down"), (503, "still down")]
    dead = MemoryDeadLetters()
    notifier = Notifier([webhook(receiver, "flaky", "/flaky", backoff=2)], clock=clock,
                        sleep=clock.sleep, dead_letters=dead)
    await notifier.notify(message())
    await notifier.close()
    assert len(receiver.on("/flaky")) == 3  # two failures, then the one delivery
    assert clock.sleeps == [2.0, 4.0]  # exponential backoff, no real sleeping
    assert not dead


async def test_never_delivered_goes_to_dead_letters(receiver: Receiver, clock: FakeClock,
                                                     tmp_path) -> None:
    receiver.script["/down"] = [(502, "bad gateway")] * 10
    receiver.script["/reject"] = [(400, "malformed")]
    sink = JsonlDeadLetters(tmp_path / "dead")
    notifier = Notifier([webhook(receiver, "down", "/down", attempts=4),
                         webhook(receiver, "reject", "/reject")],
                        clock=clock, sleep=clock.sleep, dead_letters=sink)
    await notifier.notify(message(5))
    await notifier.close()
    assert len(receiver.on("/down")) == 4
    assert len(receiver.on("/reject")) == 1  # a 4xx is not retried
    letters = {letter.channel: letter for letter in sink.read()}
    assert set(letters) == {"down", "reject"}
    assert letters["down"].attempts == 4 and "HTTP 502" in letters["down"].error
    assert letters["reject"].attempts == 1 and "HTTP 400" in letters["reject"].error
    assert letters["down"].messages[0]["key"] == "dh/cam-005/camera_offline"
    assert "摄像机离线" in letters["down"].subject


async def test_storm_becomes_one_message_per_channel(receiver: Receiver, monkeypatch,
                                                     clock: FakeClock) -> None:
    monkeypatch.setenv("VIGIL_TEST_WECOM_KEY", "wecom-key-1")
    common = {"storm_window": 10, "storm_threshold": 5, "storm_list": 10}
    channels = [webhook(receiver, "hook", "/hook", **common),
                WeComChannel(type="wecom", name="wecom", key_env="VIGIL_TEST_WECOM_KEY",
                             api_base=receiver.url, **common),
                DingTalkChannel(type="dingtalk", name="ding", access_token="tok1",
                                secret="SECabc", api_base=receiver.url, **common)]
    notifier = Notifier(channels, clock=clock, sleep=clock.sleep, renderer=Renderer(tz=CST))
    for i in range(50):
        notifier.submit(message(i))
        clock.now += 0.1
    await notifier.flush()  # 5 s after the first: still inside the window
    assert receiver.requests == []
    clock.now = T0 + 10
    await notifier.flush()
    await notifier.close()
    assert len(receiver.on("/hook")) == 1
    assert len(receiver.on("/cgi-bin/webhook/send")) == 1
    assert len(receiver.on("/robot/send")) == 1
    hook = receiver.on("/hook")[0]["json"]
    assert hook["kind"] == "storm" and hook["count"] == 50 and len(hook["messages"]) == 50
    assert hook["subject"] == "【故障风暴】东湖社区（dh）50个新故障"
    wecom = receiver.on("/cgi-bin/webhook/send")[0]
    assert wecom["query"] == "key=wecom-key-1"
    text = wecom["json"]["text"]["content"]
    assert text.count("\n- 3级") + text.startswith("- 3级") == 10  # the first 10 listed
    assert "另有40个故障未列出" in text
    assert len(text.encode()) <= 2048
    assert notifier.pending() == 0


async def test_rate_limit_per_channel(receiver: Receiver, clock: FakeClock) -> None:
    channel = webhook(receiver, "slow", "/slow", rate_per_minute=6, burst=2)
    notifier = Notifier([channel, webhook(receiver, "fast", "/fast")], clock=clock,
                        sleep=clock.sleep)
    for i in range(8):
        notifier.submit(message(i))
    await notifier.flush()
    await notifier.close()
    times = [r["at"] - T0 for r in receiver.on("/slow")]
    assert times == [0, 0, 10, 20, 30, 40, 50, 60]  # burst of 2, then one per 10 s
    for start in times:  # never more than burst + rate in any minute
        assert sum(start <= t < start + 60 for t in times) <= 2 + 6
    # the other channel has its own bucket: its 8 went with no wait of their own
    assert len(receiver.on("/fast")) == 8


def test_dingtalk_signature_fixed_vector() -> None:
    secret, timestamp = "SECtest0123456789abcdef", 1700000000000
    # computed independently: printf '1700000000000\nSECtest0123456789abcdef' |
    #   openssl dgst -sha256 -hmac SECtest0123456789abcdef -binary | base64
    expected_b64 = "/lfnxUUu80FwVTsIlv2F1cMGBb+PxEKAwYh/bsRxXcc="
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    assert base64.b64encode(digest.digest()).decode() == expected_b64
    assert dingtalk_sign(secret, timestamp) == \
        "%2FlfnxUUu80FwVTsIlv2F1cMGBb%2BPxEKAwYh%2FbsRxXcc%3D"


async def test_dingtalk_request_signed_once_and_errcode_checked(receiver: Receiver,
                                                                clock: FakeClock) -> None:
    secret = "SECtest0123456789abcdef"
    receiver.script["/robot/send"] = [(200, '{"errcode": 130101, "errmsg": "send too fast"}'),
                                      (200, '{"errcode": 0, "errmsg": "ok"}'),
                                      (200, '{"errcode": 310000, "errmsg": "sign not match"}')]
    channel = DingTalkChannel(type="dingtalk", name="ding", access_token="tok1",
                              secret=secret, api_base=receiver.url, storm_window=0)
    dead = MemoryDeadLetters()
    notifier = Notifier([channel], clock=clock, sleep=clock.sleep, dead_letters=dead)
    await notifier.notify(message(1))
    first = receiver.on("/robot/send")
    assert len(first) == 2 and not dead  # "too fast" is retried
    query = urllib.parse.parse_qs(first[1]["query"])  # decoded once, as DingTalk does
    assert query["access_token"] == ["tok1"]
    timestamp = int(query["timestamp"][0])
    assert timestamp == int(clock() * 1000)
    digest = hmac.new(secret.encode(), f"{timestamp}\n{secret}".encode(), hashlib.sha256)
    assert query["sign"] == [base64.b64encode(digest.digest()).decode()]
    assert first[1]["json"]["msgtype"] == "text"
    assert "摄像机离线" in first[1]["json"]["text"]["content"]

    await notifier.notify(message(2))  # a sign mismatch is not retried: dead letter
    await notifier.close()
    assert len(receiver.on("/robot/send")) == 3
    assert len(dead) == 1 and "310000" in dead[0].error


def test_english_templates_for_every_kind() -> None:
    renderer = Renderer(tz=UTC)
    for kind in ("opened", "escalated", "resolved"):
        zh = renderer.message(message(1, kind=kind), "zh")
        en = renderer.message(message(1, kind=kind), "en")
        assert "东湖社区" in zh.subject and "摄像机离线" in zh.subject
        assert "camera offline" in en.subject and "Time limit: 2025-03-01 02:00" in en.body
    storm = renderer.storm("escalated", [message(i) for i in range(3)], "en", 2)
    assert storm.subject == "[Fault storm] 3 escalated faults at 东湖社区 (dh)"
    assert "... and 1 more not listed" in storm.body
