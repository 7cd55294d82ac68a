"""Tickets: one per fault key while open, with a lifecycle and an append-only timeline.

`store.TicketStore` is the async API; `migrations.upgrade_to_head(url)` brings the schema
up to date at start-up (SQLite embedded by default, PostgreSQL shared by a centre's agents).
"""
