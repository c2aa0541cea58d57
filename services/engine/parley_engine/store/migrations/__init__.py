"""The engine's schema changes as Alembic migrations (``versions/``), applied by the engine itself at start-up.

``upgrade_to_head`` runs inside the caller's transaction (``Database.open`` holds it, and on PostgreSQL an advisory
lock, so one replica at a time upgrades). A database made before migrations existed (by ``create_all``, never
versioned) is recognised by its tables, brought to the first revision's schema and stamped with it, then upgraded
like any other. ``python -m parley_engine.store.migrations "what changed"`` writes the next revision.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.operations import Operations
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, inspect

FIRST_REVISION = "0001"
# The tables every engine from before migrations made at once with create_all (the first revision's tables).
UNVERSIONED_TABLES = frozenset(
    {"conversations", "jobs", "utterances", "insights", "webhook_deliveries", "engine_secrets", "access_tokens"}
)


def alembic_config(connection: Connection | None = None) -> Config:
    """The configuration Alembic's commands need, without an ini file: the scripts here, and the connection."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent).replace("%", "%%"))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    """Bring the database's schema to the newest revision, whatever state it is in."""
    config = alembic_config(connection)
    if _made_before_migrations(connection):
        _add_lease_columns(connection)
        command.stamp(config, FIRST_REVISION)
    command.upgrade(config, "head")


def _made_before_migrations(connection: Connection) -> bool:
    tables = set(inspect(connection).get_table_names())
    if "alembic_version" in tables or not tables & UNVERSIONED_TABLES:
        return False
    if missing := UNVERSIONED_TABLES - tables:
        raise RuntimeError(f"the database has some of the engine's tables but not {sorted(missing)}: not upgrading it")
    return True


def _add_lease_columns(connection: Connection) -> None:
    """The one difference between schemas made before migrations: engines before job leases lack these columns."""
    present = {column["name"] for column in inspect(connection).get_columns("jobs")}
    operations = Operations(MigrationContext.configure(connection))
    if "claimed_by" not in present:
        operations.add_column("jobs", sa.Column("claimed_by", sa.String(length=128), nullable=True))
    if "lease_until" not in present:
        operations.add_column("jobs", sa.Column("lease_until", sa.DateTime(), nullable=True))
