"""YAML loading that remembers where every value came from.

Engineers edit the inventory, credentials and profiles by hand, so every error must name the
file, the line and the key path. PyYAML's composed node tree carries the marks; this module
turns it into plain Python data plus a map from key path to line number, and refuses the
mistakes PyYAML accepts silently (duplicate keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


class ConfigError(Exception):
    """One problem in one configuration file, already phrased for the engineer."""

    def __init__(self, file: str | Path, line: int | None, key: str, message: str):
        self.file = str(file)
        self.line = line
        self.key = key
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Every problem found in one pass, so `vigil check` can list them all at once."""

    def __init__(self, errors: list[ConfigError]):
        self.errors = errors
        super().__init__("\n".join(str(e) for e in errors))


def key_path(path: Path_) -> str:
    """Render ('devices', 17, 'uplink') as devices[17].uplink."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass
class Document:
    """A loaded YAML file: its data and the line of every key path inside it."""

    file: Path
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)

    def line(self, path: Path_) -> int | None:
        """Line of the closest enclosing node that has a recorded position."""
        path = tuple(path)
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path[:-1]
        return self.lines.get((), None)

    def error(self, path: Path_, message: str) -> ConfigError:
        return ConfigError(self.file, self.line(path), key_path(path), message)


class _Builder:
    """Turns a composed node tree into Python data, recording lines per key path."""

    def __init__(self, file: Path):
        self.file = file
        self.lines: dict[Path_, int] = {}
        self._constructor = yaml.SafeLoader("")  # only used to resolve scalar tags

    def build(self, node: yaml.Node, path: Path_) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            merged: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`
                    sources = (value_node.value if isinstance(value_node, yaml.SequenceNode)
                               else [value_node])
                    for source in sources:
                        data = self.build(source, path)
                        if not isinstance(data, dict):
                            raise ConfigError(self.file, key_node.start_mark.line + 1,
                                              key_path(path), "'<<' must merge a mapping")
                        for k, v in data.items():
                            merged.setdefault(k, v)
                    continue
                key = self._scalar(key_node, path)
                if isinstance(key, (list, dict)):
                    raise ConfigError(self.file, key_node.start_mark.line + 1, key_path(path),
                                      "a mapping key must be a plain value")
                child = (*path, key if isinstance(key, (str, int)) else str(key))
                if key in out:
                    raise ConfigError(self.file, key_node.start_mark.line + 1, key_path(child),
                                      f"duplicate key '{key}' (first at line {self.lines[child]})")
                self.lines[child] = key_node.start_mark.line + 1
                out[key] = self.build(value_node, child)
            for k, v in merged.items():
                out.setdefault(k, v)  # explicit keys win over merged ones, as in YAML
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self._scalar(node, path)

    def _scalar(self, node: yaml.Node, path: Path_) -> Any:
        """PyYAML's constructors for tagged scalars do not check their text and fail with
        whatever Python raises (a date 2026-02-30: ValueError; `!!bool q`: KeyError;
        `!!timestamp x`: AttributeError): each is the file's mistake, not ours."""
        try:
            return self._constructor.construct_object(node, deep=True)
        except (ValueError, OverflowError, KeyError, AttributeError, TypeError) as exc:
            kind = str(node.tag).rpartition(":")[2]
            raise ConfigError(self.file, node.start_mark.line + 1, key_path(path),
                              f"YAML error: {str(node.value)[:80]!r} is not a valid {kind} "
                              f"({type(exc).__name__}: {exc})") from None


def load(file: str | Path, text: str | None = None) -> Document:
    """Load one YAML file; raise ConfigError with the file and line on any syntax problem."""
    file = Path(file)
    try:
        if text is None:
            text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(file, None, "", f"cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(file, None, "", f"not UTF-8 text ({exc.reason})") from exc
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or str(exc)
        raise ConfigError(file, line, "", f"YAML syntax error: {problem}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(file, None, "", f"YAML error: {exc}") from exc
    if node is None:
        return Document(file, None, {(): 1})
    builder = _Builder(file)
    try:
        data = builder.build(node, ())
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise ConfigError(file, mark.line + 1 if mark else None, "",
                          f"YAML error: {exc.problem}") from exc
    return Document(file, data, builder.lines)
