"""Schema migrations of the ticket store (Alembic), run programmatically at start-up.

`upgrade_to_head(url)` is safe when several processes start at once:

- PostgreSQL: the whole upgrade runs in one transaction that first takes a transaction-level
  advisory lock (`pg_advisory_xact_lock`); a second agent waits on the lock, then finds the
  schema at head and does nothing. PostgreSQL's DDL is transactional, so a crash mid-way
  leaves the old schema.
- SQLite: no lock file; the upgrade relies on SQLite's own write lock. It runs in one
  `BEGIN IMMEDIATE` transaction (SQLite's DDL is transactional too), so a second process
  waits (busy timeout) until the first commits, then finds the schema at head.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.exc import OperationalError

HERE = Path(__file__).resolve().parent
ADVISORY_LOCK_KEY = 0x56_49_47_49_4C_54  # 'VIGILT': one key for the ticket schema
MIGRATION_BUSY_TIMEOUT_MS = 120_000


def sync_url(url: str | URL) -> URL:
    """The same database through a synchronous driver (Alembic is synchronous)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return parsed.set(drivername="sqlite")
    if parsed.get_backend_name() == "postgresql":
        return parsed.set(drivername="postgresql+psycopg")
    raise ValueError(f"unsupported ticket store database {parsed.drivername!r}: "
                     "use sqlite+aiosqlite:///PATH or postgresql+psycopg://...")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head() or ""


def current(connection: Connection) -> str | None:
    from alembic.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


_UPGRADING = threading.Lock()
"""Alembic's `context` and `op` are module-wide proxies: two upgrades on two threads of one
process (the stores of one agent opening at once, or two agents in one test process) would
share them and drive one thread's connection from the other (a segfault was seen in SQLite).
Other processes are kept apart by the database's own lock below."""


def upgrade_to_head(url: str | URL) -> str:
    """Bring the schema to the latest revision; returns it. Safe to run concurrently: one
    upgrade at a time in this process, and under the database's lock across processes."""
    with _UPGRADING:
        return _upgrade(url)


def _upgrade(url: str | URL) -> str:
    target = sync_url(url)
    sqlite = target.get_backend_name() == "sqlite"
    engine = create_engine(target)
    if sqlite:
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
            dbapi_connection.isolation_level = None  # we say BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {MIGRATION_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _begin(conn):  # type: ignore[no-untyped-def]
            conn.exec_driver_sql("BEGIN IMMEDIATE")
    try:
        for attempt in range(5):
            try:
                with engine.connect() as connection, connection.begin():
                    if not sqlite:
                        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                                           {"key": ADVISORY_LOCK_KEY})
                    command.upgrade(alembic_config(connection), "head")
                    return current(connection) or ""
            except OperationalError as exc:
                # SQLite can answer 'locked' without waiting while another process switches
                # a fresh file to WAL; the upgrade is one transaction, so trying again is safe.
                if not sqlite or "locked" not in str(exc) or attempt == 4:
                    raise
                time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")
    finally:
        engine.dispose()
