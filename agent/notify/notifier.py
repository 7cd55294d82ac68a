"""The notification stage: ticket events in, deliveries out, nothing lost silently.

`submit()` only buffers; `flush()` (called by the scheduler every second or so) sends what is
due. Per channel:

- storm aggregation: messages of one kind are held for the channel's `storm_window`; if
  `storm_threshold` or more arrived, they go as ONE storm message (counts per site, the first
  `storm_list` faults by level), else one by one. A site losing its uplink gives one message
  per channel, not one per camera.
- rate limit: a token bucket (`rate_per_minute`, `burst`); a delivery waits for a token.
- retries: `attempts` tries with exponential backoff (`backoff`, doubled, at most
  `max_backoff`) for retryable failures (no answer, timeout, 5xx, 429, robot "too fast").
- dead letters: a delivery that never got through goes to the dead-letter sink, an injectable
  callable (`MemoryDeadLetters`, `JsonlDeadLetters`, or the ticket store's).
- `on_done(message, channel)` is called once a message's delivery on a channel is over
  (delivered, or dead-lettered); a delivery cut short (the agent stopping) never calls it,
  so the caller's outbox sends that message again after the restart.

Clock and sleeper are injected, so tests advance time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter

from agent.notify.channels import DeliveryError, Sender, make_sender
from agent.notify.model import Channel, Kind, Message
from agent.notify.render import Rendered, Renderer

log = logging.getLogger("vigil.notify")

Clock = Callable[[], float]
Sleeper = Callable[[float], Awaitable[Any]]


@dataclass(frozen=True)
class DeadLetter:
    """A delivery that never got through, with everything needed to send it again."""

    at: float
    channel: str
    type: str
    kind: str
    subject: str
    body: str
    attempts: int
    error: str
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


DeadLetterSink = Callable[[DeadLetter], Any]
"""Called once per dead letter; may be a coroutine function."""


class MemoryDeadLetters(list[DeadLetter]):
    """Dead letters kept in memory (tests, or in front of another sink)."""

    def __call__(self, letter: DeadLetter) -> None:
        self.append(letter)


class JsonlDeadLetters:
    """Dead letters appended as JSON lines to `<directory>/dead-letters.jsonl`."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / "dead-letters.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def __call__(self, letter: DeadLetter) -> None:
        with open(self.path, "a", encoding="utf-8") as out:
            out.write(letter.to_json() + "\n")

    def read(self) -> list[DeadLetter]:
        if not self.path.exists():
            return []
        return [DeadLetter(**json.loads(line))
                for line in self.path.read_text(encoding="utf-8").splitlines() if line]


class TokenBucket:
    """`rate` tokens per second up to `burst`; `take()` waits (by the sleeper) for one."""

    def __init__(self, rate: float, burst: int, clock: Clock, sleep: Sleeper) -> None:
        self.rate, self.burst = rate, burst
        self.clock, self.sleep = clock, sleep
        self.tokens = float(burst)
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    async def take(self) -> float:
        """Take a token; returns the seconds waited for it."""
        waited = 0.0
        self._refill()
        while self.tokens < 1:
            wait = (1 - self.tokens) / self.rate
            await self.sleep(wait)
            waited += wait
            self._refill()
        self.tokens -= 1
        return waited


@dataclass
class _Group:
    first_at: float
    messages: dict[tuple[str, str, int], Message] = field(default_factory=dict)


class _Metrics:
    def __init__(self, registry: CollectorRegistry, names: list[str]) -> None:
        self.sent = Counter("vigil_notifications_sent", "Notifications delivered "
                            "(a storm message counts once).", ["channel"], registry=registry)
        self.failures = Counter("vigil_notification_failures", "Delivery attempts that "
                                "failed.", ["channel"], registry=registry)
        self.dead = Counter("vigil_notifications_dead_lettered", "Notifications that never "
                            "got through and went to the dead-letter record.", ["channel"],
                            registry=registry)
        self.storms = Counter("vigil_notification_storms", "Storm messages sent in place of "
                              "many single messages.", ["channel"], registry=registry)
        for name in names:
            for metric in (self.sent, self.failures, self.dead, self.storms):
                metric.labels(name)


class Notifier:
    """Sends ticket events to channels with storm aggregation, rate limits, retries and
    dead letters. Nothing raises to the caller."""

    def __init__(self, channels: list[Channel], *,
                 dead_letters: DeadLetterSink | None = None,
                 clock: Clock = time.time, sleep: Sleeper = asyncio.sleep,
                 renderer: Renderer | None = None,
                 registry: CollectorRegistry | None = None,
                 senders: dict[str, Sender] | None = None,
                 on_done: Callable[[Message, str], Any] | None = None) -> None:
        names = [c.name for c in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        self.channels = {c.name: c for c in channels}
        self.dead_letters = dead_letters if dead_letters is not None else MemoryDeadLetters()
        self.clock, self.sleep = clock, sleep
        self.renderer = renderer or Renderer()
        self.senders = senders or {c.name: make_sender(c, clock) for c in channels}
        self.buckets = {c.name: TokenBucket(c.rate_per_minute / 60.0, c.burst, clock, sleep)
                        for c in channels}
        self._groups: dict[tuple[str, Kind], _Group] = {}
        self._locks = {c.name: asyncio.Lock() for c in channels}
        self._metrics = _Metrics(registry, names) if registry else None
        self.on_done = on_done

    def clock_jumped(self, jump: float) -> None:
        """The wall clock stepped (agent/clock.py): storm windows and rate limits count elapsed
        time, so a step back does not hold messages for its length."""
        for group in self._groups.values():
            group.first_at += jump
        for bucket in self.buckets.values():
            bucket.updated += jump

    def submit(self, message: Message, channels: list[str] | None = None) -> None:
        """Queue `message` for `channels` (all if None). A repeat of the same fault key, kind
        and seq within the window replaces the earlier one."""
        if not message.at:
            message = message.model_copy(update={"at": self.clock()})
        for name in channels if channels is not None else list(self.channels):
            if name not in self.channels:
                log.error("notification for unknown channel %r dropped: %s", name, message.key)
                continue
            group = self._groups.setdefault((name, message.kind), _Group(self.clock()))
            group.messages[(message.key, message.kind, message.seq)] = message

    def pending(self) -> int:
        return sum(len(g.messages) for g in self._groups.values())

    async def flush(self, force: bool = False) -> None:
        """Send every group whose window has passed (every group if `force`)."""
        now = self.clock()
        due: dict[str, list[tuple[Kind, list[Message]]]] = {}
        for (name, kind), group in list(self._groups.items()):
            if force or now >= group.first_at + self.channels[name].storm_window:
                del self._groups[(name, kind)]
                due.setdefault(name, []).append((kind, list(group.messages.values())))
        await asyncio.gather(*(self._dispatch(name, groups) for name, groups in due.items()))

    async def notify(self, message: Message, channels: list[str] | None = None) -> None:
        """Submit and send at once when the channels do not aggregate (window 0)."""
        self.submit(message, channels)
        await self.flush()

    async def close(self) -> None:
        for sender in self.senders.values():
            await sender.close()

    async def _dispatch(self, name: str, groups: list[tuple[Kind, list[Message]]]) -> None:
        channel = self.channels[name]
        async with self._locks[name]:  # one channel's deliveries go in order
            for kind, messages in groups:
                if len(messages) >= channel.storm_threshold and channel.storm_window > 0:
                    rendered = self._render(lambda lang, k=kind, ms=messages: self.renderer.storm(
                        k, ms, lang, channel.storm_list), channel.language)
                    if await self._deliver(channel, rendered, kind, messages, storm=True) \
                            and self._metrics:
                        self._metrics.storms.labels(name).inc()
                else:
                    for m in sorted(messages, key=lambda m: (m.level, m.since)):
                        rendered = self._render(lambda lang, m=m: self.renderer.message(m, lang),
                                                channel.language)
                        await self._deliver(channel, rendered, kind, [m], storm=False)

    @staticmethod
    def _render(render: Callable[[Any], Rendered], lang: str) -> Rendered:
        try:
            return render(lang)
        except Exception as exc:  # noqa: BLE001  # a broken template must not lose the message
            log.error("notification template failed: %s", exc)
            return Rendered("Vigil notification (template error)", f"{exc}\n")

    async def _deliver(self, channel: Channel, rendered: Rendered, kind: Kind,
                       messages: list[Message], storm: bool) -> bool:
        sender = self.senders[channel.name]
        error = ""
        attempt = 0
        for attempt in range(1, channel.attempts + 1):
            if attempt > 1:
                await self.sleep(min(channel.backoff * 2 ** (attempt - 2), channel.max_backoff))
            await self.buckets[channel.name].take()
            try:
                await sender.send(rendered, "storm" if storm else kind, messages)
            except DeliveryError as exc:
                error = str(exc)
                if self._metrics:
                    self._metrics.failures.labels(channel.name).inc()
                log.warning("notification to %s failed (attempt %d/%d): %s",
                            channel.name, attempt, channel.attempts, error)
                if not exc.retryable:
                    break
                continue
            except Exception as exc:  # a sender bug must not stop the others
                error = f"{type(exc).__name__}: {exc}"
                log.exception("notification to %s failed", channel.name)
                break
            if self._metrics:
                self._metrics.sent.labels(channel.name).inc()
            self._done(messages, channel.name)
            return True
        letter = DeadLetter(at=self.clock(), channel=channel.name, type=channel.type,
                            kind="storm" if storm else kind, subject=rendered.subject,
                            body=rendered.body, attempts=attempt, error=error,
                            messages=[m.model_dump(mode="json") for m in messages])
        if self._metrics:
            self._metrics.dead.labels(channel.name).inc()
        try:
            result = self.dead_letters(letter)
            if inspect.isawaitable(result):
                await result
        except OSError as exc:   # e.g. the disk is full: the letter goes to the log instead
            log.error("dead letter for %s could not be recorded (%s): %s", channel.name, exc,
                      letter.to_json())
        except Exception:
            log.exception("dead letter for %s could not be recorded: %s", channel.name,
                          letter.to_json())
        self._done(messages, channel.name)
        return False

    def _done(self, messages: list[Message], channel: str) -> None:
        if self.on_done is None:
            return
        for message in messages:
            try:
                self.on_done(message, channel)
            except Exception:  # the caller's bookkeeping must not stop the deliveries
                log.exception("on_done failed for %s", message.key)
