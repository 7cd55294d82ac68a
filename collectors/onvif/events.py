"""ONVIF events: PullPoint subscriptions to a set of cameras, delivered as event readings.

For each watched camera a task keeps one PullPoint subscription open:

1. CreatePullPointSubscription on the camera's event service (learnt as the collector learns
   services: clock handshake, then GetServices / GetCapabilities);
2. a PullMessages loop (a long poll: the camera answers as soon as a message is there, or
   after `pull_timeout`);
3. Renew at half of the subscription's life, timed by the camera's own CurrentTime and
   TerminationTime so a camera whose clock is hours off is renewed in time;
4. when the camera answers a pull or a renewal with a fault (its subscription is gone: it
   rebooted, or the subscription expired) or cannot be reached, the subscription is created
   again, at once the first time and then with a growing delay (retry_min .. retry_max);
5. `close()` (and dropping a camera from the watch list) Unsubscribes cleanly.

At most `max_subscriptions` cameras are subscribed: the first ones of the list given to
`watch` (order it by priority); the rest are not subscribed, `status()` says so
(`over_limit`), `readings()` exports it (onvif_events_subscribed 0) and a warning is logged.
Each open subscription holds one long-poll HTTP request to its camera at all times.

Each notification becomes `collectors.reading.event(device, name, "onvif", value, timestamp,
text, **labels)`, given to the sink:

- tampering: VideoSource/GlobalSceneChange/..., RuleEngine/TamperDetector/...,
  VideoSource/Tampering (Axis);
- video_loss: VideoSource/SignalLoss;
- storage_failure: Device/HardwareFailure/StorageFailure;
- onvif_other, with the topic in label `topic`: anything else (namespace prefixes are
  ignored when matching).

value is 1 or 0 from the message's boolean data item (State, IsTamper, Failed, tampering,
disruption, ...), 1 when it has none; label `token` is the message's first Source item
(video source, disk); the timestamp is the agent's clock when the message arrived (a camera's
UtcTime may be hours off); text is the topic, the data item and the property operation
(Initialized: the state when the subscription started; Changed: a change).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from onvif.util import normalize_url

from collectors.onvif.collector import OnvifJob, _get, _str
from collectors.onvif.errors import OnvifFailure
from collectors.onvif.session import Session
from collectors.reading import EventSink, Reading, event

log = logging.getLogger("vigil.onvif.events")

PULLPOINT_NS = "http://www.onvif.org/ver10/events/wsdl/PullPointSubscription"
VALUE_ITEMS = ("State", "IsTamper", "Failed", "tampering", "disruption", "IsMotion",
               "LogicalState", "Value", "state", "active")
TRUE = frozenset({"true", "1", "on", "active", "yes"})
FALSE = frozenset({"false", "0", "off", "inactive", "no"})


@dataclass
class SubscriptionStatus:
    """Where one camera's subscription stands."""

    device: str
    state: str = "starting"  # starting, active, retrying, unsupported, over_limit
    reason: str | None = None  # the documented reason of the last failure
    detail: str = ""
    since: float = 0.0
    subscriptions: int = 0  # CreatePullPointSubscription that succeeded
    renewals: int = 0
    messages: int = 0


def topic_event(topic: str) -> str:
    """The event name for a topic: tampering, video_loss, storage_failure or onvif_other."""
    parts = [p.rpartition(":")[2] for p in topic.strip().split("/")]
    head = parts[:3]
    if head[:2] in (["VideoSource", "GlobalSceneChange"], ["RuleEngine", "TamperDetector"],
                    ["VideoSource", "Tampering"]):
        return "tampering"
    if head[:2] == ["VideoSource", "SignalLoss"]:
        return "video_loss"
    if head == ["Device", "HardwareFailure", "StorageFailure"]:
        return "storage_failure"
    return "onvif_other"


def plain_topic(topic: str) -> str:
    """The topic without namespace prefixes: VideoSource/Tampering."""
    return "/".join(p.rpartition(":")[2] for p in topic.strip().split("/"))


def _items(message: Any, part: str) -> list[tuple[str, str]]:
    """(Name, Value) of the SimpleItems of a tt:Message's Source or Data, whether zeep gave
    an object or an lxml element."""
    if message is None:
        return []
    if hasattr(message, "tag"):  # lxml element
        return [(item.get("Name", ""), item.get("Value", ""))
                for item in message.iter() if str(item.tag).endswith("SimpleItem")
                and item.getparent() is not None
                and str(item.getparent().tag).endswith(part)]
    items = _get(_get(message, part), "SimpleItem") or []
    return [(_str(_get(i, "Name")), _str(_get(i, "Value"))) for i in items]


def to_reading(device: str, notification: Any, received: float) -> Reading:
    """One NotificationMessage as an event reading."""
    topic = _str(_get(_get(notification, "Topic"), "_value_1"))
    holder = _get(notification, "Message")
    message = _get(holder, "_value_1") if holder is not None else None
    if message is not None and not hasattr(message, "tag") and _get(message, "Data") is None \
            and _get(message, "Message") is not None:
        message = _get(message, "Message")
    operation = message.get("PropertyOperation") if hasattr(message, "tag") else \
        _str(_get(message, "PropertyOperation"))
    data = _items(message, "Data")
    source = _items(message, "Source")
    value, used = 1.0, None
    ranked = sorted(data, key=lambda kv: VALUE_ITEMS.index(kv[0]) if kv[0] in VALUE_ITEMS
                    else len(VALUE_ITEMS))
    for name, raw in ranked:
        word = raw.strip().lower()
        if word in TRUE or word in FALSE:
            value, used = (1.0 if word in TRUE else 0.0), f"{name}={raw}"
            break
    name = topic_event(topic)
    labels: dict[str, str] = {}
    if source:
        labels["token"] = source[0][1]
    if name == "onvif_other":
        labels["topic"] = plain_topic(topic)
    text = " ".join(x for x in (topic, used, f"({operation})" if operation else None) if x)
    return event(device, name, "onvif", value, received, text, **labels)


class OnvifEvents:
    """PullPoint subscriptions for a set of cameras. Create and use it inside the running
    event loop; `watch` may be called again with a new list (config reload)."""

    def __init__(self, sink: EventSink, max_subscriptions: int = 500, *,
                 pull_timeout: float = 10.0, termination: float = 120.0,
                 message_limit: int = 64, retry_min: float = 2.0, retry_max: float = 300.0,
                 max_setups: int = 8):
        self.sink = sink
        self.max_subscriptions = max_subscriptions
        self.pull_timeout = pull_timeout
        self.termination = termination
        self.message_limit = message_limit
        self.retry_min = retry_min
        self.retry_max = retry_max
        self._watchers: dict[str, _Watcher] = {}
        self._status: dict[str, SubscriptionStatus] = {}
        # subscriptions being set up at once: at start-up every camera subscribes, and each
        # set-up builds SOAP clients (CPU) - unbounded, they would time each other out
        self._setups = asyncio.Semaphore(max_setups)

    async def watch(self, jobs: list[OnvifJob]) -> None:
        """Subscribe to these cameras (the first max_subscriptions of them), and only these."""
        wanted: dict[str, OnvifJob] = {}
        for job in jobs:
            wanted.setdefault(job.device, job)
        chosen = dict(list(wanted.items())[: self.max_subscriptions])
        beyond = [device for device in wanted if device not in chosen]
        for device, watcher in list(self._watchers.items()):
            if chosen.get(device) != watcher.job:
                del self._watchers[device]
                await watcher.stop()
        self._status = {d: s for d, s in self._status.items() if d in wanted}
        for device, job in chosen.items():
            if device not in self._watchers:
                status = self._status[device] = SubscriptionStatus(device, since=time.time())
                watcher = self._watchers[device] = _Watcher(self, job, status)
                watcher.start()
        for device in beyond:
            self._status[device] = SubscriptionStatus(
                device, "over_limit", None,
                f"beyond the bound of {self.max_subscriptions} open ONVIF subscriptions",
                time.time())
        if beyond:
            log.warning("%d camera(s) beyond the bound of %d open ONVIF event subscriptions "
                        "are not subscribed: %s%s", len(beyond), self.max_subscriptions,
                        ", ".join(beyond[:10]), " ..." if len(beyond) > 10 else "")

    async def close(self) -> None:
        """Unsubscribe from every camera and stop."""
        watchers, self._watchers = list(self._watchers.values()), {}
        await asyncio.gather(*(w.stop() for w in watchers), return_exceptions=True)

    def status(self) -> dict[str, SubscriptionStatus]:
        return dict(self._status)

    def readings(self) -> list[Reading]:
        """onvif_events_subscribed per watched camera (text: its state and reason)."""
        now = time.time()
        return [Reading(s.device, "onvif_events_subscribed", {},
                        1.0 if s.state == "active" else 0.0, now,
                        s.state + (f": {s.reason}" if s.reason else ""))
                for s in self._status.values()]

    def _deliver(self, reading: Reading) -> None:
        try:
            self.sink(reading)
        except Exception:  # the sink's failure must not end the subscription
            log.exception("event sink failed on %s", reading)


class _Lost(Exception):
    """The camera no longer knows our subscription."""


class _Watcher:
    """One camera's subscription, kept open by one task."""

    def __init__(self, owner: OnvifEvents, job: OnvifJob, status: SubscriptionStatus):
        self.owner = owner
        self.job = job
        self.status = status
        self.session: Session | None = None
        self.subscription: Any = None  # the subscription manager's service client
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(),
                                                           name=f"onvif-events-{self.job.device}")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        await self._unsubscribe()
        if self.session is not None:
            await self.session.close()
            self.session = None

    def _set(self, state: str, reason: str | None = None, detail: str = "") -> None:
        if state != self.status.state or reason != self.status.reason:
            self.status.since = time.time()
        self.status.state, self.status.reason, self.status.detail = state, reason, detail

    async def _run(self) -> None:
        delay = 0.0
        owner = self.owner
        lost_at = -1e9
        while True:
            if delay:
                await asyncio.sleep(delay)
            try:
                async with owner._setups:
                    await self._subscribe()
                delay = 0.0
                await self._pull()
            except _Lost as exc:
                # The camera forgot the subscription (a reboot, or it expired): subscribe
                # again at once, unless that keeps happening.
                log.info("%s: %s; subscribing again", self.job.device, exc)
                self._set("retrying", "fault", str(exc))
                self.subscription = None
                now = time.monotonic()
                delay = 0.0 if now - lost_at > owner.retry_max else \
                    min(max(delay * 2, owner.retry_min), owner.retry_max)
                lost_at = now
            except OnvifFailure as exc:
                self.subscription = None
                if exc.reason == "unsupported":
                    self._set("unsupported", exc.reason, exc.detail)
                    delay = owner.retry_max
                else:
                    self._set("retrying", exc.reason, exc.detail)
                    delay = min(max(delay * 2, owner.retry_min), owner.retry_max)
                if exc.reason in ("auth", "unsupported", "protocol") and self.session:
                    await self.session.close()  # learn the camera afresh next time
                    self.session = None
            except Exception as exc:  # a bug of ours: keep the other cameras going
                log.exception("ONVIF events of %s failed", self.job.device)
                self._set("retrying", "error", f"{type(exc).__name__}: {exc}")
                self.subscription = None
                delay = owner.retry_max

    async def _subscribe(self) -> None:
        job = self.job
        if self.session is None:
            self.session = Session(job.address, job.port, job.username, job.password)
        session = self.session
        if not session.learnt:
            await session.learn(job.timeout * 3)
        if not session.has("events"):
            raise OnvifFailure("unsupported", "the camera offers no event service")
        events = await session.service("events")
        answer = await session.call(
            "CreatePullPointSubscription", events.CreatePullPointSubscription,
            {"InitialTerminationTime": f"PT{int(self.owner.termination)}S"}, job.timeout)
        address = _get(_get(_get(answer, "SubscriptionReference"), "Address"), "_value_1")
        if not address:
            raise OnvifFailure("protocol", "CreatePullPointSubscription: no subscription "
                                           "address in the answer")
        session.camera.xaddrs[PULLPOINT_NS] = normalize_url(str(address).strip())
        self.pullpoint = await session.camera.create_pullpoint_service()
        self.subscription = await session.camera.create_subscription_service(
            "PullPointSubscription")
        self._expiry(answer)
        self.status.subscriptions += 1
        self._set("active")

    def _expiry(self, answer: Any) -> None:
        """When the subscription ends and when to renew it, from the camera's CurrentTime
        and TerminationTime (its own clock), on our monotonic clock."""
        current, end = _get(answer, "CurrentTime"), _get(answer, "TerminationTime")
        try:
            life = (end - current).total_seconds()
        except TypeError:
            life = self.owner.termination
        now = time.monotonic()
        self.ends = now + max(life, 0.0)
        self.renew_at = now + max(life / 2, 0.5)

    async def _pull(self) -> None:
        owner, job = self.owner, self.job
        assert self.session is not None
        while True:
            if time.monotonic() >= self.renew_at:
                await self._renew()
            wait = max(1, int(min(owner.pull_timeout, self.renew_at - time.monotonic())))
            try:
                answer = await self.session.call(
                    "PullMessages", self.pullpoint.PullMessages,
                    {"Timeout": f"PT{wait}S", "MessageLimit": owner.message_limit},
                    wait + job.timeout)
            except OnvifFailure as exc:
                if exc.reason in ("fault", "unsupported") or time.monotonic() > self.ends:
                    raise _Lost(f"PullMessages failed ({exc.detail})") from exc
                raise
            received = time.time()
            self._expiry_from_pull(answer)
            for notification in _get(answer, "NotificationMessage") or []:
                self.status.messages += 1
                owner._deliver(to_reading(job.device, notification, received))

    def _expiry_from_pull(self, answer: Any) -> None:
        current, end = _get(answer, "CurrentTime"), _get(answer, "TerminationTime")
        try:
            self.ends = time.monotonic() + (end - current).total_seconds()
        except TypeError:
            pass

    async def _renew(self) -> None:
        assert self.session is not None
        try:
            answer = await self.session.call(
                "Renew", self.subscription.Renew,
                {"TerminationTime": f"PT{int(self.owner.termination)}S"}, self.job.timeout)
        except OnvifFailure as exc:
            if exc.reason in ("fault", "unsupported") or time.monotonic() > self.ends:
                raise _Lost(f"Renew failed ({exc.detail})") from exc
            raise
        if _get(answer, "TerminationTime") is None:
            answer = {"CurrentTime": None, "TerminationTime": None}
        self._expiry(answer)
        self.status.renewals += 1

    async def _unsubscribe(self) -> None:
        if self.subscription is None or self.session is None:
            return
        subscription, self.subscription = self.subscription, None
        with contextlib.suppress(OnvifFailure, Exception):
            await self.session.call("Unsubscribe", subscription.Unsubscribe,
                                    timeout=min(self.job.timeout, 2.0))
