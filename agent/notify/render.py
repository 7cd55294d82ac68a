"""Notification texts from Jinja2 templates (sandboxed), Chinese by default, English optional.

`templates/<kind>.<lang>.j2`, one per message kind and language: the first line is the
subject (e-mail subject, robot message headline), the rest the body. Templates run in
Jinja2's sandbox like the rules' annotations (rules/annotate.py), so a site may replace them
without giving templates a way into the agent.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, tzinfo
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined
from jinja2.sandbox import SandboxedEnvironment

from agent.notify.model import Kind, Language, Message

TEMPLATES = Path(__file__).parent / "templates"

LEVEL_NAME = {"zh": {1: "一级", 2: "二级", 3: "三级", 4: "四级"},
              "en": {1: "Level 1", 2: "Level 2", 3: "Level 3", 4: "Level 4"}}
LEVEL_MEANING = {
    "zh": {1: "系统瘫痪", 2: "严重影响业务", 3: "部分设备故障", 4: "咨询/配置类"},
    "en": {1: "system paralysed", 2: "business seriously affected",
           3: "some devices faulty", 4: "information or configuration"}}
KIND_LABEL = {"zh": {"opened": "新", "escalated": "升级", "resolved": "已恢复"},
              "en": {"opened": "new", "escalated": "escalated", "resolved": "resolved"}}


@dataclass(frozen=True)
class Rendered:
    subject: str
    body: str


class Renderer:
    """Renders messages and storms; `directory` replaces the shipped templates."""

    def __init__(self, directory: Path = TEMPLATES, tz: tzinfo | None = None) -> None:
        self.env = SandboxedEnvironment(loader=FileSystemLoader(str(directory)),
                                        undefined=StrictUndefined, autoescape=False,
                                        trim_blocks=True, keep_trailing_newline=False)
        self.tz = tz

    def message(self, m: Message, lang: Language) -> Rendered:
        return self._render(m.kind, lang, {"m": m, **self._facts(m, lang)})

    def storm(self, kind: Kind, messages: list[Message], lang: Language, listed: int
              ) -> Rendered:
        facts = [{"level": m.level, "link": m.link, **self._facts(m, lang)}
                 for m in sorted(messages, key=lambda m: (m.level, m.since))]
        sites = Counter(f["site_label"] for f in facts)
        sep = "、" if lang == "zh" else ", "
        names = [name for name, _ in sites.most_common(3)]
        sites_label = sep.join(names) + (("等" if lang == "zh" else " and others")
                                         if len(sites) > 3 else "")
        return self._render("storm", lang, {
            "count": len(messages), "kind_label": KIND_LABEL[lang][kind],
            "sites": [{"label": k, "count": v} for k, v in sites.most_common()],
            "sites_label": sites_label,
            "top_level": min(m.level for m in messages),
            "first_since": self._time(min(m.since for m in messages)),
            "shown": facts[:listed], "more": max(0, len(facts) - listed)})

    def _facts(self, m: Message, lang: Language) -> dict[str, Any]:
        return {"site_label": _label(m.site_name, m.site, lang),
                "device_label": _label(m.device_name, m.device, lang),
                "what": m.what(lang), "level_name": LEVEL_NAME[lang][m.level],
                "level_meaning": LEVEL_MEANING[lang][m.level],
                "since": self._time(m.since),
                "deadline": self._time(m.deadline) if m.deadline else ""}

    def _time(self, t: datetime) -> str:
        if t.tzinfo is not None:
            t = t.astimezone(self.tz)
        return t.strftime("%Y-%m-%d %H:%M")

    def _render(self, kind: str, lang: Language, context: dict[str, Any]) -> Rendered:
        text = self.env.get_template(f"{kind}.{lang}.j2").render(context).strip()
        subject, _, body = text.partition("\n")
        return Rendered(subject.strip(), body.strip() + "\n")


def _label(name: str, ident: str, lang: Language) -> str:
    if not name or name == ident:
        return ident
    return f"{name}（{ident}）" if lang == "zh" else f"{name} ({ident})"
