"""The scheduled case: the real daemon (agent.daemon.Agent) polling N devices on an interval.

Run by bench/main.py in its own process, one engine per process. It writes a complete agent
configuration (agent.yaml, credentials.yaml chmod 600, inventory.yaml with N switches using
the benchmark's profile), loads it with agent.config.load_config, starts the Agent (HTTP
server, APScheduler jobs with the start-up spread, the max_concurrent_polls semaphore, the
collector, the state) and lets it run: a warm-up, then a measured window of whole intervals.

Measured over the window: process CPU seconds (getrusage, all threads) per wall second, polls
done and failed (the agent's own counters vigil_polls_total / vigil_poll_failures_total),
poll lag (every value the scheduler observes into vigil_poll_lag_seconds, kept here to give
exact percentiles), polls skipped because the previous one still ran; at the end, peak RSS
and the cost of rendering /metrics for Prometheus (the handler's Agent.metrics_page call).
Prints one JSON line on stdout; progress on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(work: Path, args: argparse.Namespace, targets: list[tuple[str, int]]) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    agent = {
        "agent": {"id": "bench"},
        "listen": f"127.0.0.1:{_free_port()}",
        "inventory": ["inventory.yaml"],
        "credentials": "credentials.yaml",
        "log_level": "warning",
        "snmp": {"engine": args.engine.split("-")[0], "engine_threads": args.threads,
                 "timeout": "2s", "retries": 1},
        "schedule": {"default_interval": f"{args.interval:g}s",
                     "max_concurrent_polls": args.concurrency},
    }
    (work / "agent.yaml").write_text(yaml.safe_dump(agent, sort_keys=False))
    credentials = work / "credentials.yaml"
    credentials.write_text(yaml.safe_dump(
        {"credentials": {"bench": {"version": "2c", "community": args.community}}}))
    os.chmod(credentials, 0o600)
    sites = [{"id": f"site-{k:02d}"} for k in range(max(1, len(targets) // 500))]
    devices = [{"id": f"sw-{i:05d}", "kind": "switch", "site": sites[i % len(sites)]["id"],
                "address": address, "port": port, "profile": args.profile}
               for i, (address, port) in enumerate(targets)]
    (work / "inventory.yaml").write_text(yaml.safe_dump(
        {"sites": sites, "defaults": {"credentials": "bench"}, "devices": devices},
        sort_keys=False))
    return work / "agent.yaml"


class LagRecorder:
    """Stands in for the lag histogram: records every value, then passes it on."""

    def __init__(self, histogram):
        self.histogram = histogram
        self.values: list[tuple[float, float]] = []

    def labels(self, collector: str) -> LagRecorder:
        self.child = self.histogram.labels(collector)
        return self

    def observe(self, value: float) -> None:
        self.values.append((time.time(), value))
        self.child.observe(value)


def _total(metric) -> float:
    """Sum of a counter's `_total` samples over its labels (not registry.collect(): that
    would also render every device's readings)."""
    return sum(sample.value for family in metric.collect() for sample in family.samples
               if sample.name.endswith("_total"))


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(args: argparse.Namespace) -> dict:
    from agent.config import load_config
    from agent.daemon import Agent

    targets = [tuple(t) for t in json.loads(Path(args.targets).read_text())][:args.devices]
    path = write_config(Path(args.work), args, targets)
    t0 = time.perf_counter()
    config = load_config(path)
    load_seconds = time.perf_counter() - t0
    agent = Agent(config)
    recorder = LagRecorder(agent.metrics.lag)
    agent.metrics.lag = recorder
    await agent.start()
    started = time.time()
    log = lambda text: print("@@ " + text, file=sys.stderr, flush=True)  # noqa: E731
    log(f"    agent started: {len(targets)} devices, engine {agent.engine.name}, "
        f"config loaded in {load_seconds:.1f}s; warm-up {args.warmup:g}s")
    await asyncio.sleep(args.warmup)
    m = agent.metrics
    window = args.interval * args.intervals
    c0, w0 = cpu_seconds(), time.perf_counter()
    p0 = _total(m.polls)
    f0 = _total(m.failures)
    s0 = _total(m.skipped)
    lag_from = time.time()
    step = max(5.0, window / 6)
    elapsed = 0.0
    while elapsed < window:
        await asyncio.sleep(min(step, window - elapsed))
        elapsed = time.perf_counter() - w0
        log(f"    {elapsed:5.0f}s of {window:g}s: {(cpu_seconds() - c0) / elapsed:.2f} CPU s/s, "
            f"{_total(m.polls) - p0:.0f} polls, "
            f"{_total(m.failures) - f0:.0f} failed")
    wall = time.perf_counter() - w0
    cpu = cpu_seconds() - c0
    polls = _total(m.polls) - p0
    failed = _total(m.failures) - f0
    skipped = _total(m.skipped) - s0
    lags = [v for t, v in recorder.values if t >= lag_from]
    threads = threading.active_count()
    # what one Prometheus scrape of /metrics costs (the handler runs metrics_page)
    renders = []
    for _ in range(2):
        r0, rw = time.process_time(), time.perf_counter()
        body = agent.metrics_page()
        renders.append((time.process_time() - r0, time.perf_counter() - rw))
    series = sum(1 for line in body.split(b"\n") if line and not line.startswith(b"#"))
    up = sum(1 for e in agent.state.devices.values() if e.up)
    await agent.stop()
    return {
        "engine": args.engine, "devices": len(targets), "interval": args.interval,
        "warmup": args.warmup, "window": wall, "cpu": cpu, "cpu_per_second": cpu / wall,
        "cpu_ms_per_poll": cpu / polls * 1000 if polls else float("nan"),
        "polls": polls, "polls_per_second": polls / wall, "failed": failed, "skipped": skipped,
        "lag_p50": percentile(lags, 0.50), "lag_p99": percentile(lags, 0.99),
        "lag_max": max(lags, default=0),
        "lag_mean": statistics.fmean(lags) if lags else float("nan"), "lag_samples": len(lags),
        "devices_up_at_end": up, "threads": threads,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "render_cpu": min(r[0] for r in renders), "render_wall": min(r[1] for r in renders),
        "render_bytes": len(body), "render_series": series,
        "config_load_seconds": load_seconds, "uptime": time.time() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--engine", required=True)
    parser.add_argument("--targets", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--devices", type=int, default=5000)
    parser.add_argument("--interval", type=float, default=60.0)
    parser.add_argument("--intervals", type=float, default=1.0)
    parser.add_argument("--warmup", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--profile", default="zyxel-switch")
    parser.add_argument("--community", default="public")
    args = parser.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
