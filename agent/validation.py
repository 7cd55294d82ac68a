"""Pydantic validation with errors an engineer can act on.

Pydantic reports a location tuple and a terse message; this module maps the location to the
file and line through the Document, says which keys are allowed when a key is unknown (with a
"did you mean" for typos), and which values are allowed when a value is not one of them.
"""

from __future__ import annotations

import ast
import difflib
import inspect
import itertools
import re
import textwrap
import types
import typing
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agent import yamlfile
from agent.yamlfile import ConfigError, ConfigErrors, Document, Path_

M = TypeVar("M", bound=BaseModel)

_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")


def parse_duration(value: Any) -> float:
    """Prometheus-style duration ('90s', '5m', '1h30m', '250ms') or plain seconds, as seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like '30s' or '5m'")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        match = _DURATION.match(text)
        if not text or not match or not any(match.groups()):
            raise ValueError(f"'{value}' is not a duration (use e.g. 500ms, 30s, 5m, 1h30m, 1d)")
        d, h, m, s, ms = match.groups()
        seconds = (int(d or 0) * 86400 + int(h or 0) * 3600 + int(m or 0) * 60
                   + float(s or 0) + int(ms or 0) / 1000)
    if seconds <= 0:
        raise ValueError("a duration must be greater than zero")
    return seconds


def _model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model class that owns the last element of loc, for listing its allowed keys."""
    current: Any = root
    for part in loc[:-1]:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            current = field.annotation
            continue
        origin = typing.get_origin(current)
        args = typing.get_args(current)
        if origin in (list, tuple) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(tp: Any) -> Any:
    """Strip Optional/Annotated so list/dict/model types can be walked."""
    while True:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            tp = typing.get_args(tp)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            if len(args) == 1:
                tp = args[0]
                continue
            if models:
                return models[0]
            for arg in args:
                if typing.get_origin(arg) in (list, dict):
                    return arg
        return tp


def _allowed_keys(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _message(root: type[BaseModel], err: dict[str, Any]) -> str:
    kind = err["type"]
    loc = tuple(err["loc"])
    if kind == "extra_forbidden":
        key = str(loc[-1])
        model = _model_at(root, loc)
        allowed = _allowed_keys(model) if model else []
        guess = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean '{guess[0]}'?)" if guess else ""
        listing = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{key}'{hint}{listing}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("literal_error", "enum"):
        expected = err.get("ctx", {}).get("expected", "")
        return f"'{err.get('input')}' is not allowed; expected {expected}"
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if kind.endswith(("_type", "_parsing")):
        msg = f"{msg} (got {err.get('input')!r})"
    return msg


def _clean_loc(loc: tuple[Any, ...]) -> Path_:
    """Drop pydantic's internal union/function markers so the location matches the YAML."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        out.append(part)
    return tuple(out)


def validate(model: type[M], doc: Document, data: Any = None, prefix: Path_ = (),
             context: dict[str, Any] | None = None) -> M:
    """Validate data (default: the whole document) against model; raise ConfigErrors."""
    payload = doc.data if data is None else data
    if payload is None:
        payload = {}
    try:
        return model.model_validate(payload, context=context)
    except ValidationError as exc:
        errors: list[ConfigError] = []
        for err in exc.errors():
            raw = tuple(err["loc"])
            # an unknown key is the last part, whatever it looks like (`[` included)
            loc = _clean_loc(raw[:-1]) + raw[-1:] if err["type"] == "extra_forbidden" \
                else _clean_loc(raw)
            errors.append(doc.error(prefix + loc, _message(model, {**err, "loc": loc})))
        raise ConfigErrors(errors) from None


def attribute_docs(cls: type) -> dict[str, str]:
    """The docstrings written under a class's attributes (`x: int = 1` then `\"\"\"...\"\"\"`),
    so a dataclass documented where it is defined can be offered as configuration with the
    same words."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) \
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant) \
                and isinstance(after.value.value, str):
            docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def load_valid(model: type[M], file: Any, errors: list[ConfigError]
               ) -> tuple[Document, M] | None:
    """Read and validate one YAML file; on any problem its errors join `errors` and the
    result is None, so a caller checking many files reports them all in one pass."""
    try:
        doc = yamlfile.load(file)
        return doc, validate(model, doc)
    except ConfigError as exc:
        errors.append(exc)
    except ConfigErrors as exc:
        errors.extend(exc.errors)
    return None
