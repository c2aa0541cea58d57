"""The engine's schema migrations on SQLite and a real PostgreSQL: from an empty database, and from the schema
engines made before migrations (their create_all's DDL, kept in ``schema_before_migrations/``) with its rows, and
from the first revision (0001) to the idempotency keys (0002) with its rows.

Every upgrade goes through ``Store.open``, as the engine does at start-up, and ends where the tables in
``parley_engine.store.schema`` say: Alembic's autogenerate comparison finds no difference.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from parley_engine.store import IdempotencyClaim, IdempotencyKeyTaken, NewConversation, NewJob, Store, utc_now
from parley_engine.store.migrations import alembic_config
from parley_engine.store.schema import Base
from sqlalchemy import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from parley_devtools.postgres_server import PostgresServer

SCHEMAS_BEFORE_MIGRATIONS = Path(__file__).parent / "schema_before_migrations"
CONVERSATION_ID = "1000000000000001"
JOB_ID = "00000000-0000-4000-8000-000000000001"
SIGNING_KEY = "ab" * 32
# Rows as an engine from before migrations left them: a conversation whose one job was in progress (claimed with
# no lease, as engines before leases did), its message, insights, a delivered webhook, the auth secrets.
ROWS_BEFORE_MIGRATIONS = [
    "INSERT INTO conversations (id, name, type, source, start_time, end_time, metadata, analysis_options,"
    " speaker_events, job_count, created_at, deleted) VALUES ('1000000000000001', 'Before migrations', 'meeting',"
    " 'text', '2026-01-02 03:04:05', NULL, '{\"team\": \"a\"}', '{}', NULL, 1, '2026-01-02 03:04:05', false)",
    "INSERT INTO jobs (id, conversation_id, sequence, kind, status, reason, options, input_path, input_json,"
    " webhook_url, created_at, updated_at, started_at, finished_at) VALUES ('00000000-0000-4000-8000-000000000001',"
    " '1000000000000001', 1, 'text', 'in_progress', NULL, '{}', NULL, '[]', 'http://hook', '2026-01-02 03:04:05',"
    " '2026-01-02 03:04:06', '2026-01-02 03:04:06', NULL)",
    "INSERT INTO utterances (conversation_id, position, job_id, data) VALUES ('1000000000000001', 0,"
    ' \'00000000-0000-4000-8000-000000000001\', \'{"id": "1000000000000042", "text": "hello",'
    ' "speaker": {"name": "Ann"}}\')',
    "INSERT INTO insights (conversation_id, job_id, data, updated_at) VALUES ('1000000000000001', NULL,"
    ' \'{"members": [{"id": "m1", "name": "Ann"}]}\', \'2026-01-02 03:04:05\')',
    "INSERT INTO webhook_deliveries (id, job_id, url, job_status, body, state, attempts, next_attempt_at,"
    " last_error, delivered_at, created_at) VALUES ('d0000000-0000-4000-8000-000000000001',"
    " '00000000-0000-4000-8000-000000000001', 'http://hook', 'scheduled', '{}', 'delivered', 1,"
    " '2026-01-02 03:04:05', NULL, '2026-01-02 03:04:05', '2026-01-02 03:04:05')",
    f"INSERT INTO engine_secrets (name, value) VALUES ('token_signing_key', '{SIGNING_KEY}')",
    "INSERT INTO access_tokens (app_id, token, expires_at) VALUES ('test-app', 'a.b.c', '2026-01-02 04:04:05')",
]


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a new, empty database of each kind the engine supports."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    server: PostgresServer = request.getfixturevalue("postgres")
    return server.create_database()


def schema_before_migrations(kind: str) -> str:
    """The DDL of ``schema_before_migrations/``; ``sqlite_before_leases``: SQLite as engines before job leases
    made it (commit 3ebc080), the same tables without ``jobs.claimed_by`` and ``jobs.lease_until``."""
    if kind != "sqlite_before_leases":
        return (SCHEMAS_BEFORE_MIGRATIONS / f"{kind}.sql").read_text()
    lines = schema_before_migrations("sqlite").splitlines()
    return "\n".join(line for line in lines if not line.lstrip().startswith(("claimed_by ", "lease_until ")))


def statements(script: str) -> list[str]:
    """The SQL statements of a script of ``;``-terminated statements and ``--`` comment lines."""
    code = "\n".join(line for line in script.splitlines() if not line.lstrip().startswith("--"))
    return [statement.strip() for statement in code.split(";") if statement.strip()]


async def execute(database_url: str, sql: list[str]) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as connection:
            for statement in sql:
                await connection.exec_driver_sql(statement)
    finally:
        await engine.dispose()


def _revision_and_differences(connection: Connection) -> tuple[str | None, list[Any]]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return context.get_current_revision(), compare_metadata(context, Base.metadata)


async def revision_and_differences(database_url: str) -> tuple[str | None, list[Any]]:
    """The database's revision, and what autogenerate would change to make it match the engine's tables."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(_revision_and_differences)
    finally:
        await engine.dispose()


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


@asynccontextmanager
async def opened(database_url: str) -> AsyncIterator[Store]:
    store = await Store.open(database_url)
    try:
        yield store
    finally:
        await store.close()


async def test_an_empty_database_is_migrated_to_the_engines_tables(empty_database: str) -> None:
    assert head_revision() == "0002"
    async with opened(empty_database) as store:
        await store.jobs.submit_job(
            NewJob(id=JOB_ID, kind="text", options={}),
            new_conversation=NewConversation(id=CONVERSATION_ID, name="new", source="text", start_time=utc_now()),
        )
    assert await revision_and_differences(empty_database) == (head_revision(), [])
    async with opened(empty_database) as store:  # opening a database at the head again changes nothing
        job = await store.jobs.job(JOB_ID)
        assert job is not None and job.status == "scheduled"
    assert await revision_and_differences(empty_database) == (head_revision(), [])


@pytest.mark.parametrize("schema", ["sqlite", "sqlite_before_leases", "postgresql"])
async def test_a_database_from_before_migrations_is_upgraded_with_its_rows(
    schema: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if schema.startswith("sqlite"):
        database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    else:
        server: PostgresServer = request.getfixturevalue("postgres")
        database_url = server.create_database()
    await execute(database_url, [*statements(schema_before_migrations(schema)), *ROWS_BEFORE_MIGRATIONS])
    assert (await revision_and_differences(database_url))[0] is None  # un-versioned, as those engines left it

    async with opened(database_url) as store:
        conversation = await store.conversations.conversation(CONVERSATION_ID)
        assert (conversation.name, conversation.meta, conversation.job_count) == ("Before migrations", {"team": "a"}, 1)
        assert [u.text for u in await store.conversations.utterances(CONVERSATION_ID)] == ["hello"]
        assert (await store.conversations.insights(CONVERSATION_ID)).members == [{"id": "m1", "name": "Ann"}]
        assert [(d.job_status, d.state) for d in await store.deliveries.deliveries_for_job(JOB_ID)] == [
            ("scheduled", "delivered")
        ]
        assert await store.credentials.signing_key() == bytes.fromhex(SIGNING_KEY)
        token = await store.credentials.current_token("test-app")
        assert token is not None and token.token == "a.b.c"
        # Its job was in progress without a lease: abandoned, so scheduled again and claimable with one.
        assert await store.jobs.reschedule_abandoned_jobs() == 1
        claimed = await store.jobs.claim_next_job(claimed_by="upgraded", lease_seconds=30)
        assert claimed is not None and claimed.id == JOB_ID
        assert claimed.lease_until is not None and claimed.lease_until > utc_now()
        appended = await store.jobs.submit_job(
            NewJob(id="00000000-0000-4000-8000-000000000002", kind="text", options={}),
            conversation_id=CONVERSATION_ID,
        )
        assert appended.sequence == 2
    assert await revision_and_differences(database_url) == (head_revision(), [])


def _upgrade_to(connection: Connection, revision: str) -> None:
    config = alembic_config(connection)
    command.upgrade(config, revision)


async def test_a_database_at_the_first_revision_gains_idempotency_keys_and_keeps_its_rows(empty_database: str) -> None:
    engine = create_async_engine(empty_database)
    try:
        async with engine.begin() as connection:
            await connection.run_sync(_upgrade_to, "0001")
    finally:
        await engine.dispose()
    first_revision_rows = [
        statement for statement in ROWS_BEFORE_MIGRATIONS if "INTO jobs" in statement or "INTO conv" in statement
    ]
    await execute(empty_database, first_revision_rows)
    assert (await revision_and_differences(empty_database))[0] == "0001"

    async with opened(empty_database) as store:
        assert (await store.conversations.conversation(CONVERSATION_ID)).name == "Before migrations"
        claim = IdempotencyClaim("key-1", "PUT", f"/v1/process/text/{CONVERSATION_ID}", expired_before=utc_now())
        new_job = NewJob(id="00000000-0000-4000-8000-000000000002", kind="text", options={})
        appended = await store.jobs.submit_job(new_job, conversation_id=CONVERSATION_ID, idempotency=claim)
        with pytest.raises(IdempotencyKeyTaken):
            await store.jobs.submit_job(
                NewJob(id="00000000-0000-4000-8000-000000000003", kind="text", options={}),
                conversation_id=CONVERSATION_ID,
                idempotency=claim,
            )
        recorded = await store.jobs.idempotency_key("key-1", expired_before=claim.expired_before)
        assert recorded is not None and (recorded.conversation_id, recorded.job_id) == (CONVERSATION_ID, appended.id)
        assert [job.id for job in await store.jobs.conversation_jobs(CONVERSATION_ID)] == [JOB_ID, appended.id]
    assert await revision_and_differences(empty_database) == (head_revision(), [])


async def test_a_database_with_only_some_of_the_engines_tables_is_refused(tmp_path: Path) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}"
    script = statements(schema_before_migrations("sqlite"))
    await execute(database_url, [statement for statement in script if "access_tokens" not in statement])
    with pytest.raises(RuntimeError, match="access_tokens"):
        await Store.open(database_url)


async def test_replicas_starting_together_on_an_empty_postgresql_database_upgrade_it_once(
    postgres: PostgresServer,
) -> None:
    database_url = postgres.create_database()
    # Racing upgrades would fail on duplicate tables or wait on each other's locks: bounded, so that is a failure.
    async with asyncio.timeout(60):
        stores = await asyncio.gather(*(Store.open(database_url) for _ in range(4)))
    for store in stores:
        await store.close()
    assert await revision_and_differences(database_url) == (head_revision(), [])
