"""The base types of every config model (re-exported by agent.settings).

A module of its own so that agent.settings can use models defined beside their stage (the
notification channels of agent.notify.model) without an import cycle.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict

from agent.validation import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds; written in YAML as a Prometheus-style duration ('500ms', '30s', '5m') or a number."""


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)
