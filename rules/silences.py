"""Matchers, silences (maintenance windows) and Alertmanager-style inhibition.

Matchers are written as Alertmanager writes them (`alertname="UpsOnBattery"`, `level=~"1|2"`,
`site!="dh-01"`), so a centre's operators read the same language in both places. A silence
is planned work: an owner, a reason, a start and an end; a fault it matches opens nothing
while it lasts and is kept, marked silenced, for the record.
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field

_MATCHER = re.compile(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*(?:"((?:[^"\\]|\\.)*)"|'
                      r"([^\s\"]*))\s*$")


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # '=', '!=', '=~', '!~'
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, labels: dict[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(actual) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matcher(text: str) -> Matcher:
    """One matcher; ValueError with what is wrong (for config and API errors alike)."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f"'{text}' is not a matcher like name=\"value\" (operators = != =~ !~)")
    name, op = m.group(1), m.group(2)
    value = m.group(3) if m.group(3) is not None else (m.group(4) or "")
    value = value.replace('\\"', '"')
    regex = None
    if op in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"'{text}': bad regular expression: {exc}") from None
    return Matcher(name, op, value, regex)


def matches_all(matchers: list[Matcher], labels: dict[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass
class Silence:
    """A maintenance window: faults matching every matcher open nothing until `ends_at`."""

    id: str
    matchers: list[str]
    starts_at: float
    ends_at: float
    owner: str
    reason: str
    created_at: float
    parsed: list[Matcher] = field(default_factory=list, repr=False, compare=False)

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def to_dict(self) -> dict:
        out = asdict(self)
        del out["parsed"]
        return out


def new_silence(matchers: list[str], ends_at: float, owner: str, reason: str,
                starts_at: float | None = None, now: float | None = None) -> Silence:
    """Validate and make a silence; ValueError names the bad field."""
    now = time.time() if now is None else now
    if not matchers:
        raise ValueError("matchers: give at least one (e.g. device=\"cam-01\")")
    parsed = [parse_matcher(m) for m in matchers]
    if not any(m.op in ("=", "=~") and m.value for m in parsed):
        raise ValueError("matchers: at least one must select something positively "
                         "(= or =~ with a value); a silence of everything is refused")
    if not owner.strip():
        raise ValueError("owner: who is doing the planned work?")
    if not reason.strip():
        raise ValueError("reason: what is the planned work?")
    start = now if starts_at is None else starts_at
    if ends_at <= start:
        raise ValueError("ends_at: must be after the start")
    if ends_at <= now:
        raise ValueError("ends_at: already in the past")
    return Silence(secrets.token_hex(6), [str(m) for m in parsed], start, ends_at,
                   owner.strip(), reason.strip(), now, parsed)


def silence_from_dict(data: dict) -> Silence:
    silence = Silence(**{k: data[k] for k in ("id", "matchers", "starts_at", "ends_at", "owner",
                                              "reason", "created_at")})
    silence.parsed = [parse_matcher(m) for m in silence.matchers]
    return silence
