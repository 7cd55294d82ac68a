"""The agent's HTTP endpoints, as Prometheus users expect them of an exporter.

GET /metrics       the state and the agent's own metrics (gzip if asked)
GET /-/healthy     200 while the process and its event loop run
GET /-/ready       200 once the configuration is loaded and polling has started, else 503
POST /-/reload     reload the configuration (same as SIGHUP); 200 or 400 with the errors
GET /evidence/{device}          the device's evidence files (JSON list, newest last)
GET /evidence/{device}/{name}   one evidence file (the JPEG a picture fault was seen in)
/api/v1/...        faults, silences and rules (agent/api.py); tickets (agent/tickets_api.py);
                   reports (agent/reports/api.py)
                   statistics (agent/statistics_api.py)
GET /  -> /ui/     the web UI (agent/webui)
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from agent.alert_relay import add_alert_relay_routes
from agent.api import add_routes
from agent.auth import Authenticator, Users
from agent.grounding_api import add_grounding_routes
from agent.inspections_api import add_inspection_routes
from agent.reports.api import add_report_routes, monthly_sources
from agent.statistics_api import add_statistics_routes
from agent.tickets_api import add_ticket_routes
from agent.ups_test_api import add_ups_test_routes
from agent.webui import add_webui_routes

if TYPE_CHECKING:
    from agent.daemon import Agent

AGENT_KEY = web.AppKey("agent", object)
AUTH_KEY = web.AppKey("auth", Authenticator)  # its failure limiter, for tests to relax
# The one thread that renders /metrics. glibc malloc gives every thread that allocates an arena
# of its own and keeps each at its peak: the page (25 MB at 5,000 devices) rendered in turn by
# the default executor's threads kept four arenas of ~40 MB, swinging the agent's RSS by
# 100 MiB between trims (soak run 16, docs/reliability.md). One thread keeps one.
RENDER_KEY = web.AppKey("render", ThreadPoolExecutor)


def make_app(agent: Agent) -> web.Application:
    app = web.Application()
    app[AGENT_KEY] = agent
    app[RENDER_KEY] = ThreadPoolExecutor(1, thread_name_prefix="vigil-metrics")
    app.on_cleanup.append(_stop_render)
    app.router.add_get("/metrics", _metrics)
    app.router.add_get("/-/healthy", _healthy)
    app.router.add_get("/-/ready", _ready)
    app.router.add_post("/-/reload", _reload)
    app.router.add_get("/evidence/{device}", _evidence_list)
    app.router.add_get("/evidence/{device}/{name}", _evidence_file)
    settings = agent.config.settings
    tokens = Path(settings.tickets.tokens)
    if not tokens.is_absolute():
        tokens = agent.config.path.parent / tokens
    auth = Authenticator(Users.from_file(tokens))  # one failure limiter for every route
    app[AUTH_KEY] = auth
    add_routes(app, AGENT_KEY, auth)
    add_ticket_routes(app, lambda: agent.tickets.store if agent.tickets is not None
                      and agent.tickets.ready else None, auth)
    add_report_routes(app, lambda: agent.tickets.store if agent.tickets is not None
                      and agent.tickets.ready else None, auth,
                      inventory=lambda: agent.config.inventory,
                      policy=lambda: agent.tickets.policy if agent.tickets else None,
                      monthly=lambda: monthly_sources(agent))
    add_grounding_routes(app, lambda: agent.grounding, auth)
    add_ups_test_routes(app, lambda: agent.ups_tests if agent.ups_tests is not None
                        and agent.ups_tests.ready else None, auth)
    add_inspection_routes(app, lambda: agent.inspections.service if agent.inspections
                          is not None and agent.tickets is not None and agent.tickets.ready
                          else None, auth)
    add_statistics_routes(app, lambda: agent.tickets if agent.tickets is not None
                          and agent.tickets.ready else None, auth)
    add_alert_relay_routes(app, lambda: agent.tickets.notifier if agent.tickets is not None
                           else None, auth)
    add_webui_routes(app, agent, auth)  # /ui/ (and / redirects there)
    return app


def _agent(request: web.Request) -> Agent:
    return request.app[AGENT_KEY]  # type: ignore[return-value]


async def _metrics(request: web.Request) -> web.Response:
    # rendered on the render thread: a big site's page (tens of MB) must not stop the polls.
    # The state is only ever replaced, never edited in place, so reading it there is safe.
    body, headers = await asyncio.get_running_loop().run_in_executor(
        request.app[RENDER_KEY], metrics_body, _agent(request).metrics_page,
        request.headers.get("Accept-Encoding", ""))
    return web.Response(body=body, headers=headers)


async def _stop_render(app: web.Application) -> None:
    app[RENDER_KEY].shutdown(wait=False, cancel_futures=True)


def metrics_body(render: Callable[[], bytes], accept_encoding: str
                 ) -> tuple[bytes, dict[str, str]]:
    """The /metrics page and its headers, gzipped at level 1 when the scraper accepts gzip
    (Prometheus does): a 10,000-device page is ~90 MB of text; level 1 packs it ~14x in a
    third of the CPU of the default level 6, which packs it only a little smaller."""
    body = render()
    headers = {"Content-Type": CONTENT_TYPE_LATEST}
    if "gzip" in accept_encoding:
        body = gzip.compress(body, compresslevel=1, mtime=0)
        headers["Content-Encoding"] = "gzip"
    return body, headers


async def _healthy(request: web.Request) -> web.Response:
    return web.Response(text="Vigil is Healthy.\n")


async def _ready(request: web.Request) -> web.Response:
    if _agent(request).ready:
        return web.Response(text="Vigil is Ready.\n")
    return web.Response(status=503, text="Vigil is not ready.\n")


async def _reload(request: web.Request) -> web.Response:
    errors = await _agent(request).reload()
    if errors:
        return web.Response(status=400, text="reload refused, the running configuration stays:\n"
                                             + "\n".join(errors) + "\n")
    return web.Response(text="configuration reloaded\n")


def _known_device(request: web.Request) -> str:
    device = request.match_info["device"]
    if device not in _agent(request).state.devices:
        raise web.HTTPNotFound(text=f"no device '{device}' in the inventory\n")
    return device


async def _evidence_list(request: web.Request) -> web.Response:
    device = _known_device(request)
    files = _agent(request).evidence.files(device)
    return web.json_response([{"name": f.name, "bytes": f.stat().st_size,
                               "url": f"/evidence/{device}/{f.name}"} for f in files])


async def _evidence_file(request: web.Request) -> web.StreamResponse:
    device = _known_device(request)
    path = _agent(request).evidence.path(device, request.match_info["name"])
    if path is None:
        raise web.HTTPNotFound(text="no such evidence file\n")
    return web.FileResponse(path)
