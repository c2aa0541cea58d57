"""One database that every store of the engine shares: its connections, its transactions, and its schema upgrade.

SQLAlchemy 2 async on SQLite (one file, WAL) by default, or PostgreSQL for several replicas. Every write is one
transaction. Rows leave the stores as detached objects (``expire_on_commit=False``), never live sessions.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from parley_engine.store.migrations import upgrade_to_head

# A PostgreSQL advisory lock key (any fixed 64-bit number): one replica at a time upgrades the schema.
_SCHEMA_LOCK_KEY = 0x7061726C6579_01


class Database:
    """Sessions on one database. Create with ``await Database.open(url)``, which upgrades its schema first."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self.is_postgresql = engine.dialect.name == "postgresql"
        # SQLite has one writer; serializing this process's writes avoids "database is locked" on lock upgrades.
        self._write_lock = asyncio.Lock()

    @classmethod
    async def open(cls, database_url: str) -> Database:
        url = make_url(database_url)
        is_sqlite = url.get_backend_name() == "sqlite"
        if is_sqlite and url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_async_engine(url, connect_args={"timeout": 30} if is_sqlite else {})
        if is_sqlite:

            @event.listens_for(engine.sync_engine, "connect")
            def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA busy_timeout=30000")
                cursor.execute("PRAGMA synchronous=NORMAL")
                cursor.close()

        async with engine.begin() as connection:
            if engine.dialect.name == "postgresql":
                # Replicas starting together would otherwise race to upgrade the same schema.
                await connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            await connection.run_sync(upgrade_to_head)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self.read() as session:
                await session.execute(select(1))
        except Exception:
            return False
        return True

    @contextlib.asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in a transaction that commits when the block ends (and rolls back if it raises)."""
        async with self._write_lock, self._sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session
