"""Fault texts (summary, description) from the rule's Jinja2 templates, in Chinese and English.

Templates run in Jinja2's sandbox: an engineer's template can format values but not reach
into the agent. A template that fails at run time (a label the device did not send) gives
its raw source with the error noted, never a lost fault.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, trim_blocks=True)
_ENV.filters["pct"] = lambda v, digits=0: f"{float(v) * 100:.{digits}f}%"
_ENV.filters["num"] = lambda v, digits=1: f"{float(v):.{digits}f}"


def _date(value: Any, timezone: str = "Asia/Shanghai", fmt: str = "%Y-%m-%d") -> str:
    """A unix time as a local date (`{{ due | date('Asia/Shanghai') }}`)."""
    return datetime.fromtimestamp(float(value), ZoneInfo(timezone)).strftime(fmt)


_ENV.filters["date"] = _date


def compile_text(source: str) -> Template:
    template = _ENV.from_string(source)
    template.vigil_source = source  # type: ignore[attr-defined]  # for error texts
    return template


def render(templates: dict[str, dict[str, Template]], context: dict[str, Any]
           ) -> dict[str, dict[str, str]]:
    """{'summary': {'zh': ..., 'en': ...}, ...} for the templates given."""
    out: dict[str, dict[str, str]] = {}
    for key, langs in templates.items():
        out[key] = {}
        for lang, template in langs.items():
            try:
                out[key][lang] = template.render(context)
            except (TemplateError, TypeError, ValueError) as exc:
                out[key][lang] = f"{template_source(template)} [template error: {exc}]"
    return out


def template_source(template: Template) -> str:
    return getattr(template, "vigil_source", "")
