"""Alembic environment: runs on the connection `upgrade_to_head` hands over (it holds the
lock and the transaction); offline mode is not supported."""

from __future__ import annotations

from alembic import context

from agent.tickets.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the ticket migrations through agent.tickets.migrations."
                       "upgrade_to_head(url), which takes the lock first")
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite",
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
