"""Shared fixtures: the recordings served by snmpsim, polling them the daemon's way, and
ticket-store databases (SQLite files, a throwaway PostgreSQL)."""

from __future__ import annotations

import asyncio
import itertools
import shutil

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from collectors.reading import PollResult
from collectors.snmp.collector import SnmpCollector, SnmpJob
from collectors.snmp.engine import SnmpAuth, Target, make_engine
from collectors.snmp.fetch import FetchLimits
from collectors.snmp.profile import ProfileSet, load_profiles
from tests import peers


@pytest.fixture(scope="session")
def profiles() -> ProfileSet:
    return load_profiles()


@pytest.fixture(scope="session")
def recordings_sim(tmp_path_factory: pytest.TempPathFactory):
    """snmpsim serving every real walk in ../shared/recordings/snmp; community = file stem.

    The walks are copied to a temporary data directory at run time (snmpsim writes index
    files beside its data); nothing of them is stored in the project."""
    source = peers.recordings()
    work = tmp_path_factory.mktemp("recordings-sim")
    data = work / "data"
    data.mkdir()
    for file in source.glob("*.snmprec"):
        shutil.copy(file, data / file.name)
    with peers.snmpsim(data, work) as port:
        yield port


class Poller:
    """Polls a recording through SnmpCollector, the code path the daemon uses."""

    def __init__(self, port: int, profiles: ProfileSet):
        self.port = port
        self.profiles = profiles

    def poll(self, recording: str, profile: str | None = None, engine: str = "pysnmp",
             version: str = "2c", timeout: float = 2.0) -> PollResult:
        async def run() -> PollResult:
            snmp_engine = make_engine(engine)
            collector = SnmpCollector(snmp_engine, self.profiles)
            job = SnmpJob(recording, Target("127.0.0.1", self.port,
                                            SnmpAuth(version, community=recording), timeout, 1),
                          profile, FetchLimits(25, 32, 60, version != "1"), 30.0)
            try:
                return await collector.poll(job)
            finally:
                await snmp_engine.close()

        return asyncio.run(run())


@pytest.fixture(scope="session")
def recording_poller(recordings_sim: int, profiles: ProfileSet) -> Poller:
    return Poller(recordings_sim, profiles)


def values(result: PollResult, metric: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Readings of one metric as {sorted label items: value}."""
    return {tuple(sorted(r.labels.items())): r.value for r in result.readings
            if r.metric == metric}


def value(result: PollResult, metric: str, **labels: str) -> float:
    """The single value of `metric` whose labels include `labels` (fails if not exactly one)."""
    found = [r.value for r in result.readings if r.metric == metric
             and all(r.labels.get(k) == v for k, v in labels.items())]
    assert len(found) == 1, f"{metric}{labels}: {len(found)} readings in {result.device} " \
                            f"(up={result.up} {result.reason} {result.detail})"
    return found[0]


def info(result: PollResult, metric: str = "device_info") -> dict[str, str]:
    found = [r.labels for r in result.readings if r.metric == metric]
    assert found, f"no {metric} for {result.device}"
    return found[0]


SERIAL = {"test_demo", "test_dashboards", "test_cameras"}
"""Modules run after the rest, alone (scripts/test): the demo district on its fixed addresses,
and video decoding whose timing another heavy module on the other core upsets."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.stem in SERIAL:
            item.add_marker(pytest.mark.serial)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Under CI=true nothing may pass by skipping: a skipped test fails the run."""
    if not peers.IN_CI or exitstatus != 0:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            print(f"\nCI=true: skipped test counts as a failure: {report.nodeid}: "
                  f"{report.longrepr[-1] if isinstance(report.longrepr, tuple) else ''}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server(tmp_path_factory: pytest.TempPathFactory):
    with peers.postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


def new_database(server: str) -> str:
    """A new, empty database on the PostgreSQL `server`; its URL."""
    name = f"tickets_{next(_databases)}"
    engine = create_engine(server, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    engine.dispose()
    return make_url(server).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A fresh, empty ticket database: a temp SQLite file, or a new database on the server."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'tickets.db'}"
    return new_database(request.getfixturevalue("postgres_server"))
