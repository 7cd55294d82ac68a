"""GET /metrics of the in-process agent (agent/http.py): concurrent scrapes all get a whole
page, gzipped when asked, and every page is rendered on the one render thread, never on the
event loop's thread nor spread over the default executor's threads (each thread that
allocates keeps a glibc arena at its peak: four of them cost the soak ~100 MiB)."""

from __future__ import annotations

import asyncio
import gzip
import socket
import threading
from pathlib import Path

import aiohttp
from aiohttp.test_utils import TestServer
from prometheus_client.parser import text_string_to_metric_families

from agent.config import load_config
from agent.daemon import Agent
from agent.http import make_app
from tests import peers
from tests.test_openapi import write_site


async def test_concurrent_scrapes_are_rendered_on_one_thread(tmp_path: Path) -> None:
    agent = Agent(load_config(write_site(tmp_path, peers.free_port(socket.SOCK_STREAM))))
    threads: list[str] = []
    render = agent.metrics_page

    def recorded() -> bytes:
        threads.append(threading.current_thread().name)
        return render()

    agent.metrics_page = recorded          # type: ignore[method-assign]
    server = TestServer(make_app(agent), host="127.0.0.1")
    await server.start_server()
    try:
        async with aiohttp.ClientSession(auto_decompress=False) as session:
            async def scrape(gzipped: bool) -> bytes:
                headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
                async with session.get(server.make_url("/metrics"), headers=headers) as resp:
                    assert resp.status == 200
                    body = await resp.read()
                    assert (resp.headers.get("Content-Encoding") == "gzip") == gzipped
                    return gzip.decompress(body) if gzipped else body

            pages = await asyncio.gather(*(scrape(i % 2 == 0) for i in range(12)))
    finally:
        await server.close()
    for page in pages:
        names = {f.name for f in text_string_to_metric_families(page.decode())}
        assert "vigil_memory_trimmed_bytes" in names, sorted(names)[:10]
    assert len(threads) == 12
    assert len(set(threads)) == 1, set(threads)
    assert threads[0].startswith("vigil-metrics"), threads[0]
    assert not any(t.name.startswith("vigil-metrics") and t.is_alive()
                   for t in threading.enumerate()), "the render thread outlived the app"
