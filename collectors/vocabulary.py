"""The metric vocabulary: every metric name a collector may produce, with its type and help.

Each collector package keeps its names in its own `metrics.yaml` (collectors/snmp/,
collectors/onvif/, ...); they are read together, and a name defined twice is an error. A rule,
a dashboard or an engineer then reads `vigil_ups_on_battery` or `vigil_onvif_clock_offset_seconds`
the same way whatever produced it. SNMP profiles may add names of their own with a `help`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from agent import yamlfile
from agent.validation import validate
from agent.yamlfile import ConfigError, ConfigErrors

COLLECTORS_DIR = Path(__file__).resolve().parent


class VocabularyEntry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["gauge", "counter", "info"]
    help: str


@dataclass(frozen=True)
class MetricSpec:
    """Exported identity of a metric family: what the exporter needs to describe it."""

    name: str
    type: str
    help: str


def vocabulary_files() -> list[Path]:
    return sorted(COLLECTORS_DIR.glob("*/metrics.yaml"))


def load_vocabulary(files: list[Path] | None = None) -> dict[str, VocabularyEntry]:
    errors: list[ConfigError] = []
    out: dict[str, VocabularyEntry] = {}
    where: dict[str, Path] = {}
    for path in files if files is not None else vocabulary_files():
        doc = yamlfile.load(path)
        for name, entry in (doc.data or {}).items():
            if name in out:
                errors.append(doc.error((name,), f"'{name}' is already defined in {where[name]}"))
                continue
            try:
                out[name] = validate(VocabularyEntry, doc, entry, prefix=(name,))
                where[name] = path
            except ConfigErrors as exc:
                errors.extend(exc.errors)
    if errors:
        raise ConfigErrors(errors)
    return out
