"""Alembic's entry point: always handed a connection (``alembic_config``), in a transaction the caller owns."""

from __future__ import annotations

from typing import Any, Literal

from alembic import context

from parley_engine.store.schema import Base, UtcDateTime


def render_item(type_: str, item: Any, _context: Any) -> str | Literal[False]:
    """Migrations stay frozen, so they name no engine type: a UtcDateTime column is a plain DateTime in the database."""
    if type_ == "type" and isinstance(item, UtcDateTime):
        return "sa.DateTime()"
    return False


connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run the engine's migrations through parley_engine.store.migrations, which opens the database")
# Batch mode: SQLite alters a table by copying it, so generated migrations must use batch operations.
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=True,
    compare_type=True,
    render_item=render_item,
)
with context.begin_transaction():
    context.run_migrations()
