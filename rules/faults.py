"""Faults: what a rule found, with its level, its life (pending -> firing -> resolved), the
scene record taken when it fired, and its history.

A Fault is the record later stages (tickets, reports, Alertmanager) read; the engine owns it.
Suppression is kept beside the state, not instead of it: a camera fault caused by its dead
switch is still firing (it is true), but `caused_by` names the root fault, on which it is
kept as evidence, and it opens nothing of its own. The same for inhibition and silences.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import tempfile
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger("vigil.faults")

STATES = ("pending", "firing", "resolved")


def fault_key(rule: str, subject: str, series: dict[str, str]) -> str:
    """`Rule:subject` or `Rule:subject:label=value,...`: stable across restarts and reloads."""
    if not series:
        return f"{rule}:{subject}"
    return f"{rule}:{subject}:" + ",".join(f"{k}={v}" for k, v in sorted(series.items()))


@dataclass
class Fault:
    key: str
    rule: str
    group: str
    subject: str  # the device id, or the group value of an aggregate (a site id)
    device: str  # '' for aggregates
    site: str
    kind: str
    series: dict[str, str]
    labels: dict[str, str]  # the rule's labels
    level: int
    state: str
    pending_since: float
    last_seen: float  # latest evaluation that found it true
    fired_at: float | None = None
    resolved_at: float | None = None
    value: float | None = None
    texts: dict[str, dict[str, str]] = field(default_factory=dict)
    evidence: dict[str, Any] = field(default_factory=dict)  # the scene record, when it fired
    caused_by: str | None = None  # root fault key (topology)
    caused: dict[str, dict[str, Any]] = field(default_factory=dict)  # on a root: its symptoms
    inhibited_by: str | None = None
    silenced_by: str | None = None
    flapping: bool = False
    no_data_since: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def suppressed(self) -> str | None:
        """Why this fault opens nothing of its own: 'caused', 'inhibited', 'silenced'."""
        if self.caused_by:
            return "caused"
        if self.silenced_by:
            return "silenced"
        if self.inhibited_by:
            return "inhibited"
        return None

    def event(self, at: float, what: str, **details: Any) -> None:
        """Append to the fault's history (kept short: the first and the latest 50)."""
        self.history.append({"at": at, "event": what, **details})
        if len(self.history) > 60:
            del self.history[10:-50]

    def alert_labels(self) -> dict[str, str]:
        """The label set matchers (silences, inhibition, Alertmanager) see."""
        labels = {**self.labels, **self.series, "alertname": self.rule,
                  "level": str(self.level), "site": self.site, "kind": self.kind}
        if self.device:
            labels["device"] = self.device
        else:
            labels["group"] = self.subject
        return labels

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["suppressed"] = self.suppressed
        return out


def fault_from_dict(data: dict[str, Any]) -> Fault:
    known = {k: data[k] for k in Fault.__dataclass_fields__ if k in data}
    return Fault(**known)


class ResolvedFaults:
    """The newest `keep` resolved faults (0: all), newest first, for the API and the CLI.

    Each is kept as its compact JSON (one bytes object, about 1.6 KB for an unreachable
    switch) beside the few fields the API filters on, and decoded when read. Kept as a
    Fault, the same record is some forty small dicts, lists and strings (about 6 KiB) born
    among each poll's short-lived objects: in the soak run (docs/reliability.md) the agent
    process grew by 120 MiB while 5,000 such Faults filled this bound. A resolved fault no
    longer changes, so nothing is lost by freezing it."""

    def __init__(self, keep: int) -> None:
        self._entries: deque[tuple[str, str, int, str, str, bytes]] = deque(maxlen=keep or None)

    @property
    def keep(self) -> int:
        return self._entries.maxlen or 0

    def resize(self, keep: int) -> None:
        """A new bound (a config reload): the newest `keep` stay."""
        if keep != self.keep:   # (a deque built from one keeps its last items: the oldest)
            newest = itertools.islice(self._entries, keep) if keep else self._entries
            self._entries = deque(newest, maxlen=keep or None)

    def add(self, fault: Fault) -> bytes:
        """Record a fault that has just resolved (it goes first); its JSON, which is also
        the line faults-history.jsonl stores, so that it is serialised once."""
        return self.add_raw(fault.to_dict())

    def add_raw(self, raw: dict[str, Any]) -> bytes:
        """Record a resolved fault as stored (Fault.to_dict), e.g. read back at start."""
        blob = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._entries.appendleft((str(raw.get("key", "")), str(raw.get("rule", "")),
                                  int(raw.get("level") or 0), str(raw.get("site", "")),
                                  str(raw.get("device", "")), blob))
        return blob

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, index: int) -> Fault:
        return _thaw(self._entries[index][5])

    def __iter__(self) -> Iterator[Fault]:
        return (_thaw(entry[5]) for entry in self._entries)

    def matching(self, rule: str | None = None, level: str | None = None,
                 site: str | None = None, device: str | None = None) -> Iterator[Fault]:
        """The faults (newest first) whose fields equal every filter given; only those
        are decoded."""
        for _key, rule_, level_, site_, device_, blob in self._entries:
            if ((rule is None or rule_ == rule) and (level is None or str(level_) == level)
                    and (site is None or site_ == site)
                    and (device is None or device_ == device)):
                yield _thaw(blob)

    def find(self, key: str) -> Fault | None:
        """The newest resolved fault with this key."""
        return next((_thaw(e[5]) for e in self._entries if e[0] == key), None)


def _thaw(blob: bytes) -> Fault:
    return fault_from_dict(json.loads(blob))


def save_json(path: Path, data: Any) -> None:
    """Write `data` as JSON atomically (save_text)."""
    save_text(path, json.dumps(data, ensure_ascii=False, separators=(",", ":")))


def load_json(path: Path) -> Any:
    """The file's data; None when absent. A corrupt file is kept aside, never overwritten."""
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        aside = path.with_suffix(path.suffix + ".corrupt")
        os.replace(path, aside)
        log.error("%s is unreadable (%s): kept as %s, starting without it", path, exc, aside)
        return None


class HistoryFile:
    """Resolved faults, one JSON line each, appended as they resolve (written once each, not
    with every save of the active faults). When the file holds twice `keep` lines it is
    rewritten with the newest `keep`. A line that cannot be read (a crash mid-append) is
    skipped and logged."""

    def __init__(self, path: Path, keep: int) -> None:
        self.path, self.keep = path, keep
        self.lines = 0

    def load(self) -> list[dict[str, Any]]:
        """The newest `keep` faults, oldest first; [] when there is no file."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        out, bad = [], 0
        for line in text.splitlines():
            try:
                raw = json.loads(line)
            except ValueError:
                bad += 1
                continue
            if isinstance(raw, dict):
                out.append(raw)
        if bad:
            log.warning("%s: %d unreadable line(s) skipped", self.path, bad)
        self.lines = len(out) + bad
        return out[-self.keep:] if self.keep else out

    def append(self, faults: list[bytes]) -> None:
        """Add resolved faults (oldest first), each its JSON as ResolvedFaults.add gave it;
        compact when the file has grown to 2 x keep."""
        if not faults:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = b"".join(blob + b"\n" for blob in faults)
        with self.path.open("ab+") as fh:
            if fh.tell():                        # after a torn last line: start a new one
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    data = b"\n" + data
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.lines += len(faults)
        if self.keep and self.lines >= 2 * self.keep:
            self.rewrite(self.load())

    def rewrite(self, faults: list[dict[str, Any]]) -> None:
        """Replace the file atomically with `faults` (oldest first)."""
        text = "".join(json.dumps(raw, ensure_ascii=False, separators=(",", ":")) + "\n"
                       for raw in faults)
        save_text(self.path, text)
        self.lines = len(faults)


def save_text(path: Path, text: str) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
