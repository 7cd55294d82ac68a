"""What the `vigil` commands share: the --config option, loading it, plain-text tables, and
calling the running agent's API (--url, --token)."""

from __future__ import annotations

import json
import ssl
import sys
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from agent.config import DEFAULT_CONFIG, Config, load_config
from agent.tls import Tls, client_context
from agent.yamlfile import ConfigError, ConfigErrors

CONFIG_OPTION = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), envvar="VIGIL_CONFIG",
    default=DEFAULT_CONFIG, show_default=True,
    help="agent.yaml; the inventory, credentials and profile paths in it are relative to it. "
         "Also read from $VIGIL_CONFIG.")
URL_OPTION = click.option("--url", metavar="URL", help="The agent's HTTP address (default: "
                                                       "`listen` of agent.yaml).")
TOKEN_OPTION = click.option(
    "--token", envvar="VIGIL_TOKEN", metavar="TOKEN",
    help="API token (`vigil tokens add`); also read from $VIGIL_TOKEN.")

_tls: Tls | None = None
"""The TLS settings of the config `_api` took the URL from: its certificate is trusted."""


def ssl_context() -> ssl.SSLContext:
    """What the commands trust for an https URL (agent/tls.py client_context)."""
    return client_context(_tls)


def _api(config_path: Path, url: str | None) -> str:
    if url:
        return url.rstrip("/")
    global _tls
    config = _load(config_path)
    _tls = config.settings.tls
    return f"http{'s' if _tls else ''}://{config.settings.listen}"


class ApiClient:
    """One command group's way to the agent's API: --config/--url/--token and the group's
    path under /api/v1 (e.g. `/tickets`). A group whose refusals list `problems` sets
    `problem_line` to print each of them."""

    timeout = 10.0
    problem_line: Callable[[dict[str, Any]], str] | None = None

    def __init__(self, config_path: Path, url: str | None, token: str | None,
                 prefix: str) -> None:
        self.config_path, self.url, self.token, self.prefix = config_path, url, token, prefix

    def base(self) -> str:
        return f"{_api(self.config_path, self.url)}/api/v1{self.prefix}"

    def call(self, method: str, path: str, body: dict | None = None, *,
             data: bytes | None = None, content_type: str = "application/json") -> Any:
        """A JSON answer to a JSON `body`, or to raw `data` (a file) of `content_type`."""
        content, _ = api_request(method, self.base() + path, body, self.token, self.timeout,
                                 data=data, content_type=content_type,
                                 problem_line=type(self).problem_line)
        return json.loads(content or b"null")


def api_call(method: str, url: str, body: dict | None = None, token: str | None = None
             ) -> Any:
    """One JSON request to the agent's API; an error answer or no answer ends the command
    with the reason (exit 1, or 2 when the agent cannot be reached)."""
    content, _ = api_request(method, url, body, token)
    return json.loads(content or b"null")


def api_request(method: str, url: str, body: dict | None = None, token: str | None = None,
                timeout: float = 10.0, *, data: bytes | None = None,
                content_type: str = "application/json",
                problem_line: Callable[[dict[str, Any]], str] | None = None
                ) -> tuple[bytes, Any]:
    """One request to the agent's API: (body bytes, response headers). Errors end the
    command like `api_call`, each of the answer's `problems` printed by `problem_line`."""
    import urllib.error
    import urllib.request

    headers = {"Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    if data is not None:
        headers["Content-Type"] = content_type
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout,
                                    context=ssl_context()) as response:
            return response.read(), response.headers
    except urllib.error.HTTPError as exc:
        try:
            answer = json.loads(exc.read())
            message = answer.get("error", exc.reason)
        except (ValueError, AttributeError):
            answer, message = {}, exc.reason
        click.echo(f"error ({exc.code}): {message}", err=True)
        if problem_line is not None:
            for problem in answer.get("problems") or []:
                click.echo(f"  {problem_line(problem)}", err=True)
        if exc.code == 401 and not token:
            click.echo("give --token or set $VIGIL_TOKEN", err=True)
        sys.exit(1)
    except (urllib.error.URLError, OSError) as exc:
        click.echo(f"error: cannot reach the agent at {url}: "
                   f"{getattr(exc, 'reason', exc)} (is `vigil run` running?)", err=True)
        sys.exit(2)


def _load(path: Path) -> Config:
    try:
        return load_config(path)
    except (ConfigError, ConfigErrors) as exc:
        errors = getattr(exc, "errors", [exc])
        for error in errors:
            click.echo(str(error), err=True)
        click.echo(f"{len(errors)} problem(s) found; nothing was started.", err=True)
        sys.exit(1)


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(_width(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell + " " * (w - _width(cell))
                               for cell, w in zip(r, widths, strict=True))
                     .rstrip() for r in rows)
