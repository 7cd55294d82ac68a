"""Faults: what a rule found, with its level, its life (pending -> firing -> resolved), the
scene record taken when it fired, and its history.

A Fault is the record later stages (tickets, reports, Alertmanager) read; the engine owns it.
Suppression is kept beside the state, not instead of it: a camera fault caused by its dead
switch is still firing (it is true), but `caused_by` names the root fault, on which it is
kept as evidence, and it opens nothing of its own. The same for inhibition and silences.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
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


def save_json(path: Path, data: Any) -> None:
    """Write atomically (temp file, fsync, rename): a crash leaves the old file or the new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
