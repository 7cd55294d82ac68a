"""Vigil's agent: configuration, inventory, scheduling, state, exporter, HTTP and CLI."""
