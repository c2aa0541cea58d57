"""The engine's durable state: conversations, jobs, utterances, insights, webhook deliveries and auth secrets.

SQLAlchemy 2 async on SQLite (one file, WAL) by default, or PostgreSQL for several replicas. Every write is
one transaction; a job's status change and its webhook delivery row are written together (an outbox), so a crash
can lose neither. Rows leave this module as detached objects (``expire_on_commit=False``), never live sessions.

Several replicas on one database coordinate through the jobs table alone. A claimed job carries a lease
(``claimed_by``, ``lease_until``) that its replica renews while it runs; only a job whose lease ran out is
scheduled again, and only the lease holder may commit a job's outcome. Rows a replica reads and then changes are
locked (``SELECT … FOR UPDATE``; a no-op on SQLite, whose single writer already serializes writes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import uuid
from collections import OrderedDict
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from sqlalchemy import (
    JSON,
    Boolean,
    Connection,
    DateTime,
    Dialect,
    Index,
    Integer,
    String,
    Text,
    delete,
    event,
    exists,
    func,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column
from sqlalchemy.types import TypeDecorator

from parley_engine.conversation import ConversationInsights, Utterance

JobStatus = Literal["scheduled", "in_progress", "completed", "failed"]
ACTIVE_STATUSES: tuple[JobStatus, ...] = ("scheduled", "in_progress")
# Jobs a caller submitted through the Async API; the engine's own maintenance jobs (re-attributing speakers)
# share the queue so they run in order with them, but never count against the caller's concurrency limit.
PUBLIC_JOB_KINDS = ("text", "audio", "video", "audio_url", "video_url")
# PostgreSQL advisory lock keys (any fixed 64-bit numbers): one replica at a time creates the schema, and one
# submission at a time counts active jobs against the limit, across every replica of the database.
_SCHEMA_LOCK_KEY = 0x7061726C6579_01
_ADMISSION_LOCK_KEY = 0x7061726C6579_02


def utc_now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024))
    type: Mapped[str] = mapped_column(String(32), default="meeting")
    source: Mapped[str] = mapped_column(String(16), doc="text, audio or video: what the first job brought")
    start_time: Mapped[datetime] = mapped_column(index=True)
    end_time: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    analysis_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    speaker_events: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    job_count: Mapped[int] = mapped_column(Integer, default=0, doc="sequence of the latest job")
    created_at: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    sequence: Mapped[int] = mapped_column(Integer, doc="1, 2, … within the conversation: the order jobs run in")
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_path: Mapped[str | None] = mapped_column(Text, doc="the stored upload or download of a media job")
    input_json: Mapped[Any | None] = mapped_column(JSON, doc="messages of a text job, url of a url job")
    webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    # Added for several replicas; nullable so databases made before them get them by ALTER TABLE at open.
    claimed_by: Mapped[str | None] = mapped_column(String(128), doc="the replica that claimed the job last")
    lease_until: Mapped[datetime | None] = mapped_column(
        doc="while in progress: until when the claim holds unless renewed; NULL: a claim anyone may take over"
    )


class UtteranceRow(Base):
    __tablename__ = "utterances"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


# Conversations whose parsed insights stay in memory for Conversation API reads.
_PARSED_INSIGHTS_CACHED = 32


class InsightsRow(Base):
    __tablename__ = "insights"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(36), doc="the job after which they were generated")
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, doc="X-Parley-Delivery: the same across retries")
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(Text)
    job_status: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text, doc="the exact bytes POSTed (and signed), kept for retries")
    state: Mapped[str] = mapped_column(String(16), default="pending", doc="pending, delivered or failed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class EngineSecretRow(Base):
    __tablename__ = "engine_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AccessTokenRow(Base):
    __tablename__ = "access_tokens"

    app_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]


class ConversationNotFound(Exception):
    """The conversation id is unknown or the conversation was deleted."""


class MemberNotFound(Exception):
    pass


class TooManyJobs(Exception):
    """The engine already has its limit of scheduled and in-progress jobs (the Async API answers 429)."""


class JobLeaseLost(Exception):
    """This replica no longer holds the job: its lease ran out and the job was scheduled again or taken over."""


@dataclass(frozen=True)
class NewJob:
    """What the Async API hands the store for one accepted request."""

    id: str
    kind: str
    options: dict[str, Any]
    input_path: str | None = None
    input_json: Any | None = None
    webhook_url: str | None = None


@dataclass(frozen=True)
class NewConversation:
    id: str
    name: str
    source: str
    start_time: datetime
    metadata: dict[str, Any] = field(default_factory=dict)


def job_status_body(job_id: str, status: str, conversation_id: str) -> str:
    """The webhook body; Symbl documented ``jobId`` but its blog shows ``id``, so both are sent."""
    return json.dumps(
        {"jobId": job_id, "id": job_id, "status": status, "conversationId": conversation_id}, separators=(",", ":")
    )


class Store:
    """All reads and writes of the engine's state. Create with ``await Store.open(url)``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._is_sqlite = engine.dialect.name == "sqlite"
        # SQLite has one writer; serializing this process's writes avoids "database is locked" on lock upgrades.
        self._write_lock = asyncio.Lock()
        self._parsed_insights: OrderedDict[str, tuple[datetime, ConversationInsights]] = OrderedDict()

    @classmethod
    async def open(cls, database_url: str) -> Store:
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
                # Replicas starting together would otherwise race to CREATE the same tables.
                await connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK_KEY)))
            await connection.run_sync(Base.metadata.create_all)
            await connection.run_sync(_add_missing_columns)
        return cls(engine)

    async def close(self) -> None:
        await self._engine.dispose()

    async def ping(self) -> bool:
        try:
            async with self._read() as session:
                await session.execute(select(1))
        except Exception:
            return False
        return True

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncSession]:
        async with self._write_lock, self._sessions() as session, session.begin():
            yield session

    @contextlib.asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncSession]:
        async with self._sessions() as session:
            yield session

    # --- auth secrets -------------------------------------------------------------------------------------------

    async def signing_key(self) -> bytes:
        """The key that signs access tokens, created once and kept in the database so tokens survive restarts."""
        async with self._write() as session:
            row = await session.get(EngineSecretRow, "token_signing_key")
            if row is None:
                row = EngineSecretRow(name="token_signing_key", value=secrets.token_hex(32))
                session.add(row)
            return bytes.fromhex(row.value)

    async def current_token(self, app_id: str) -> AccessTokenRow | None:
        async with self._read() as session:
            return await session.get(AccessTokenRow, app_id)

    async def save_token(self, app_id: str, token: str, expires_at: datetime) -> None:
        async with self._write() as session:
            row = await session.get(AccessTokenRow, app_id)
            if row is None:
                session.add(AccessTokenRow(app_id=app_id, token=token, expires_at=expires_at))
            else:
                row.token, row.expires_at = token, expires_at

    # --- jobs -----------------------------------------------------------------------------------------------------

    async def count_active_jobs(self) -> int:
        async with self._read() as session:
            return await self._count_active_jobs(session)

    @staticmethod
    async def _count_active_jobs(session: AsyncSession) -> int:
        count = await session.scalar(
            select(func.count())
            .select_from(JobRow)
            .where(JobRow.status.in_(ACTIVE_STATUSES), JobRow.kind.in_(PUBLIC_JOB_KINDS))
        )
        return int(count or 0)

    async def submit_job(
        self,
        job: NewJob,
        *,
        new_conversation: NewConversation | None = None,
        conversation_id: str | None = None,
        max_active_jobs: int | None = None,
    ) -> JobRow:
        """Record a scheduled job, creating its conversation (POST) or appending to an existing one (PUT).

        With ``max_active_jobs``, a caller's job is refused with ``TooManyJobs`` when that many are already
        scheduled or in progress; the count and the insert are one transaction, serialized across replicas.
        """
        now = utc_now()
        async with self._write() as session:
            if max_active_jobs is not None and job.kind in PUBLIC_JOB_KINDS:
                if self._engine.dialect.name == "postgresql":
                    await session.execute(select(func.pg_advisory_xact_lock(_ADMISSION_LOCK_KEY)))
                if await self._count_active_jobs(session) >= max_active_jobs:
                    raise TooManyJobs(max_active_jobs)
            if new_conversation is not None:
                conversation = ConversationRow(
                    id=new_conversation.id,
                    name=new_conversation.name,
                    type="meeting",
                    source=new_conversation.source,
                    start_time=new_conversation.start_time,
                    end_time=None,
                    meta=dict(new_conversation.metadata),
                    analysis_options={},
                    speaker_events=None,
                    job_count=0,
                    created_at=now,
                    deleted=False,
                )
                session.add(conversation)
            else:
                assert conversation_id is not None
                # Locked: two replicas appending at once must not hand out the same sequence number.
                found = await session.get(ConversationRow, conversation_id, with_for_update=True)
                if found is None or found.deleted:
                    raise ConversationNotFound(conversation_id)
                conversation = found
            conversation.job_count += 1
            row = JobRow(
                id=job.id,
                conversation_id=conversation.id,
                sequence=conversation.job_count,
                kind=job.kind,
                status="scheduled",
                reason=None,
                options=job.options,
                input_path=job.input_path,
                input_json=job.input_json,
                webhook_url=job.webhook_url,
                created_at=now,
                updated_at=now,
                started_at=None,
                finished_at=None,
            )
            session.add(row)
            self._enqueue_webhook(session, row, now)
            return row

    async def job(self, job_id: str) -> JobRow | None:
        async with self._read() as session:
            return await session.get(JobRow, job_id)

    async def conversation_jobs(self, conversation_id: str) -> list[JobRow]:
        """Every job of a conversation in the order they run (sequence), whatever their status."""
        async with self._read() as session:
            rows = await session.scalars(
                select(JobRow).where(JobRow.conversation_id == conversation_id).order_by(JobRow.sequence)
            )
            return list(rows)

    async def reschedule_abandoned_jobs(self) -> int:
        """Schedule again the in-progress jobs whose lease ran out: their replica stopped or stalled.

        Jobs of a live replica keep their lease (it renews them), so a replica starting next to others takes
        nothing from them. A job claimed without a lease (``lease_until`` NULL) counts as abandoned.
        """
        async with self._write() as session:
            result = await session.execute(
                update(JobRow)
                .where(
                    JobRow.status == "in_progress",
                    (JobRow.lease_until.is_(None)) | (JobRow.lease_until < utc_now()),
                )
                .values(status="scheduled", started_at=None, lease_until=None, claimed_by=None, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def release_jobs(self, claimed_by: str) -> int:
        """Schedule again the in-progress jobs of one replica that is stopping (their work was not committed)."""
        async with self._write() as session:
            result = await session.execute(
                update(JobRow)
                .where(JobRow.status == "in_progress", JobRow.claimed_by == claimed_by)
                .values(status="scheduled", started_at=None, lease_until=None, claimed_by=None, updated_at=utc_now())
                .execution_options(synchronize_session=False)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def renew_leases(self, claimed_by: str, job_ids: Collection[str], lease_seconds: float) -> set[str]:
        """Extend the leases of a replica's running jobs; returns the ids among them it no longer holds.

        A job is lost when its lease ran out and another replica scheduled it again or took it over; its
        runner should stop, since the outcome it would commit is refused anyway.
        """
        if not job_ids:
            return set()
        async with self._write() as session:
            await session.execute(
                update(JobRow)
                .where(JobRow.id.in_(job_ids), JobRow.status == "in_progress", JobRow.claimed_by == claimed_by)
                .values(lease_until=utc_now() + timedelta(seconds=lease_seconds))
                .execution_options(synchronize_session=False)
            )
            rows = await session.execute(select(JobRow.id, JobRow.claimed_by).where(JobRow.id.in_(job_ids)))
            owners = {job_id: owner for job_id, owner in rows}
        # A job we finished keeps our name in claimed_by; any other owner (or none) means it was taken from us.
        return {job_id for job_id in job_ids if owners.get(job_id) != claimed_by}

    async def claim_next_job(
        self, *, claimed_by: str | None = None, lease_seconds: float | None = None
    ) -> JobRow | None:
        """Mark the oldest runnable job in progress for ``claimed_by`` and return it; None when nothing can run now.

        Runnable: scheduled, its conversation has no job in progress, and no earlier job of its conversation is
        still waiting, so one conversation's jobs run one at a time in submission order. On PostgreSQL the
        candidate row is locked with ``FOR UPDATE SKIP LOCKED`` (replicas claiming at once take different jobs),
        and the claim itself is a conditional UPDATE that checks the conversation again in a fresh snapshot.
        Without ``lease_seconds`` the claim has no lease: any replica's sweep may schedule the job again.
        """
        now = utc_now()
        lease_until = None if lease_seconds is None else now + timedelta(seconds=lease_seconds)
        async with self._write() as session:
            candidate = await session.scalar(
                select(JobRow)
                .where(JobRow.status == "scheduled", ~_conversation_busy(JobRow))
                .order_by(JobRow.created_at, JobRow.sequence)
                .limit(1)
                .with_for_update(skip_locked=True, of=JobRow)
            )
            if candidate is None:
                return None
            claimed = await session.execute(
                update(JobRow)
                .where(JobRow.id == candidate.id, JobRow.status == "scheduled", ~_conversation_busy(JobRow))
                .values(
                    status="in_progress",
                    claimed_by=claimed_by,
                    lease_until=lease_until,
                    started_at=now,
                    updated_at=now,
                )
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:  # type: ignore[attr-defined]
                return None  # another replica got there first; the dispatcher asks again
            await session.refresh(candidate)
            self._enqueue_webhook(session, candidate, now)
            return candidate

    async def _held_job(self, session: AsyncSession, job_id: str, claimed_by: str | None) -> JobRow | None:
        """The job, locked, if it is in progress; raises JobLeaseLost when ``claimed_by`` no longer holds it."""
        row = await session.get(JobRow, job_id, with_for_update=True)
        if row is None or row.status != "in_progress":
            if claimed_by is not None and (row is None or row.claimed_by != claimed_by):
                raise JobLeaseLost(job_id)
            return None
        if claimed_by is not None and row.claimed_by != claimed_by:
            raise JobLeaseLost(job_id)
        return row

    async def fail_job(self, job_id: str, reason: str, *, claimed_by: str | None = None) -> bool:
        """Fail a scheduled or running job; False when it had already finished or ``claimed_by`` lost it."""
        async with self._write() as session:
            row = await session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.status in ("completed", "failed"):
                return False
            if claimed_by is not None and (row.status != "in_progress" or row.claimed_by != claimed_by):
                return False
            self._finish(session, row, "failed", reason)
            return True

    async def complete_job(
        self,
        job_id: str,
        *,
        new_utterances: Sequence[Utterance],
        insights: ConversationInsights,
        analysis_options: dict[str, Any],
        end_time: datetime | None,
        claimed_by: str | None = None,
    ) -> JobStatus:
        """Commit a job's whole outcome at once: its utterances, the regenerated insights and the status.

        With ``claimed_by``, only while that replica holds the job; otherwise ``JobLeaseLost`` and nothing is written.
        """
        async with self._write() as session:
            row = await self._held_job(session, job_id, claimed_by)
            if row is None:
                return "failed"
            conversation = await session.get(ConversationRow, row.conversation_id, with_for_update=True)
            if conversation is None or conversation.deleted:
                self._finish(session, row, "failed", "the conversation was deleted while the job ran")
                return "failed"
            await self._append_utterances(session, row.conversation_id, row.id, new_utterances)
            self._put_insights(session, await session.get(InsightsRow, row.conversation_id), row, insights)
            conversation.analysis_options = analysis_options
            if end_time is not None:
                conversation.end_time = end_time
            self._finish(session, row, "completed", None)
            return "completed"

    async def complete_reanalysis(
        self,
        job_id: str,
        *,
        utterances: Sequence[Utterance],
        insights: ConversationInsights,
        claimed_by: str | None = None,
    ) -> None:
        """Commit a maintenance job that rewrote the conversation's utterances (speaker re-attribution)."""
        async with self._write() as session:
            row = await self._held_job(session, job_id, claimed_by)
            if row is None:
                return
            conversation = await session.get(ConversationRow, row.conversation_id, with_for_update=True)
            if conversation is None or conversation.deleted:
                self._finish(session, row, "failed", "the conversation was deleted while the job ran")
                return
            await session.execute(delete(UtteranceRow).where(UtteranceRow.conversation_id == row.conversation_id))
            await self._append_utterances(session, row.conversation_id, row.id, utterances)
            self._put_insights(session, await session.get(InsightsRow, row.conversation_id), row, insights)
            self._finish(session, row, "completed", None)

    def _finish(self, session: AsyncSession, row: JobRow, status: JobStatus, reason: str | None) -> None:
        now = utc_now()
        row.status, row.reason, row.finished_at, row.updated_at = status, reason, now, now
        row.lease_until = None
        self._enqueue_webhook(session, row, now)

    async def _append_utterances(
        self, session: AsyncSession, conversation_id: str, job_id: str, utterances: Sequence[Utterance]
    ) -> None:
        last = await session.scalar(
            select(func.max(UtteranceRow.position)).where(UtteranceRow.conversation_id == conversation_id)
        )
        start = -1 if last is None else int(last)
        for offset, utterance in enumerate(utterances, start=1):
            session.add(
                UtteranceRow(
                    conversation_id=conversation_id,
                    position=start + offset,
                    job_id=job_id,
                    data=utterance.model_dump(mode="json"),
                )
            )

    @staticmethod
    def _put_insights(
        session: AsyncSession, existing: InsightsRow | None, job: JobRow | None, insights: ConversationInsights
    ) -> None:
        data = insights.model_dump(mode="json")
        if existing is None:
            session.add(
                InsightsRow(
                    conversation_id=job.conversation_id if job else "",
                    job_id=job.id if job else None,
                    data=data,
                    updated_at=utc_now(),
                )
            )
        else:
            existing.data, existing.updated_at = data, utc_now()
            if job is not None:
                existing.job_id = job.id

    @staticmethod
    def _enqueue_webhook(session: AsyncSession, job: JobRow, now: datetime) -> None:
        """The outbox: a delivery row in the same transaction as the status change it reports."""
        if not job.webhook_url:
            return
        session.add(
            WebhookDeliveryRow(
                id=str(uuid.uuid4()),
                job_id=job.id,
                url=job.webhook_url,
                job_status=job.status,
                body=job_status_body(job.id, job.status, job.conversation_id),
                state="pending",
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                delivered_at=None,
                created_at=now,
            )
        )

    # --- conversations --------------------------------------------------------------------------------------------

    async def conversation(self, conversation_id: str) -> ConversationRow:
        """The live conversation; raises ConversationNotFound for unknown or deleted ids."""
        async with self._read() as session:
            row = await session.get(ConversationRow, conversation_id)
        if row is None or row.deleted:
            raise ConversationNotFound(conversation_id)
        return row

    async def list_conversations(
        self,
        *,
        limit: int,
        offset: int,
        descending: bool,
        start_after: datetime | None,
        start_before: datetime | None,
    ) -> list[ConversationRow]:
        query = select(ConversationRow).where(ConversationRow.deleted.is_(False))
        if start_after is not None:
            query = query.where(ConversationRow.start_time >= start_after)
        if start_before is not None:
            query = query.where(ConversationRow.start_time <= start_before)
        order = ConversationRow.start_time.desc() if descending else ConversationRow.start_time.asc()
        query = query.order_by(order, ConversationRow.id).limit(limit).offset(offset)
        async with self._read() as session:
            return list(await session.scalars(query))

    async def utterances(self, conversation_id: str) -> list[Utterance]:
        async with self._read() as session:
            rows = await session.scalars(
                select(UtteranceRow.data)
                .where(UtteranceRow.conversation_id == conversation_id)
                .order_by(UtteranceRow.position)
            )
            return [Utterance.model_validate(data) for data in rows]

    async def insights(self, conversation_id: str) -> ConversationInsights:
        """The stored insights; empty while the conversation's first job has not completed.

        Parsed insights are cached per conversation and reused while the row's ``updated_at`` is unchanged: a long
        meeting's insights are megabytes of JSON, and every Conversation API read needs them. Checking the version
        in the database keeps replicas sharing one database correct. Callers must not mutate the result.
        """
        async with self._read() as session:
            version = await session.scalar(
                select(InsightsRow.updated_at).where(InsightsRow.conversation_id == conversation_id)
            )
            if version is None:
                self._parsed_insights.pop(conversation_id, None)
                return ConversationInsights()
            cached = self._parsed_insights.get(conversation_id)
            if cached is not None and cached[0] == version:
                self._parsed_insights.move_to_end(conversation_id)
                return cached[1]
            row = await session.get(InsightsRow, conversation_id)
        if row is None:
            return ConversationInsights()
        parsed = ConversationInsights.model_validate(row.data)
        self._parsed_insights[conversation_id] = (row.updated_at, parsed)
        while len(self._parsed_insights) > _PARSED_INSIGHTS_CACHED:
            self._parsed_insights.popitem(last=False)
        return parsed

    async def save_insights(self, conversation_id: str, insights: ConversationInsights) -> None:
        async with self._write() as session:
            existing = await session.get(InsightsRow, conversation_id)
            if existing is None:
                session.add(
                    InsightsRow(
                        conversation_id=conversation_id,
                        job_id=None,
                        data=insights.model_dump(mode="json"),
                        updated_at=utc_now(),
                    )
                )
            else:
                self._put_insights(session, existing, None, insights)

    async def update_metadata(self, conversation_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Merge ``metadata`` into the conversation's; returns the result."""
        async with self._write() as session:
            row = await session.get(ConversationRow, conversation_id, with_for_update=True)
            if row is None or row.deleted:
                raise ConversationNotFound(conversation_id)
            row.meta = {**(row.meta or {}), **metadata}
            return dict(row.meta)

    async def delete_conversation(self, conversation_id: str) -> None:
        """Forget a conversation's content; its waiting jobs fail. The id stays reserved."""
        async with self._write() as session:
            row = await session.get(ConversationRow, conversation_id, with_for_update=True)
            if row is None or row.deleted:
                raise ConversationNotFound(conversation_id)
            row.deleted = True
            row.meta, row.speaker_events = {}, None
            await session.execute(delete(UtteranceRow).where(UtteranceRow.conversation_id == conversation_id))
            await session.execute(delete(InsightsRow).where(InsightsRow.conversation_id == conversation_id))
            waiting = await session.scalars(
                select(JobRow).where(JobRow.conversation_id == conversation_id, JobRow.status == "scheduled")
            )
            for job in waiting:
                self._finish(session, job, "failed", "the conversation was deleted")

    async def update_member(self, conversation_id: str, member_id: str, name: str | None, email: str | None) -> None:
        """Rename a member everywhere: stored insights, and the utterances future re-analysis starts from."""
        async with self._write() as session:
            row = await session.get(ConversationRow, conversation_id, with_for_update=True)
            if row is None or row.deleted:
                raise ConversationNotFound(conversation_id)
            stored = await session.get(InsightsRow, conversation_id)
            if stored is None or not any(m.get("id") == member_id for m in stored.data.get("members", [])):
                raise MemberNotFound(member_id)
            old = next(m for m in stored.data["members"] if m.get("id") == member_id)
            stored.data = rename_member(stored.data, member_id, name, email)
            stored.updated_at = utc_now()
            utterance_rows = await session.scalars(
                select(UtteranceRow).where(UtteranceRow.conversation_id == conversation_id)
            )
            for utterance_row in utterance_rows:
                speaker = dict(utterance_row.data.get("speaker") or {})
                same_id = speaker.get("id") == member_id
                same_person = speaker.get("id") is None and (
                    (old.get("email") and old.get("email") in (speaker.get("email"), speaker.get("user_id")))
                    or (old.get("name") and speaker.get("name") == old.get("name"))
                )
                if same_id or same_person:
                    speaker.update(id=member_id, name=name if name is not None else speaker.get("name"))
                    if email is not None:
                        speaker["email"] = email
                    utterance_row.data = {**utterance_row.data, "speaker": speaker}

    async def save_speaker_events(self, conversation_id: str, events: list[dict[str, Any]]) -> ConversationRow:
        async with self._write() as session:
            row = await session.get(ConversationRow, conversation_id, with_for_update=True)
            if row is None or row.deleted:
                raise ConversationNotFound(conversation_id)
            row.speaker_events = events
            return row

    # --- webhook deliveries ---------------------------------------------------------------------------------------

    async def due_deliveries(self, limit: int = 100) -> list[WebhookDeliveryRow]:
        """Pending deliveries whose time has come, at most one per job: a job's statuses arrive in order."""
        now = utc_now()
        async with self._read() as session:
            rows = await session.scalars(
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.state == "pending")
                .order_by(WebhookDeliveryRow.seq)
                .limit(limit * 4)
            )
            due: list[WebhookDeliveryRow] = []
            seen_jobs: set[str] = set()
            for row in rows:
                if row.job_id in seen_jobs:
                    continue
                seen_jobs.add(row.job_id)
                if row.next_attempt_at <= now:
                    due.append(row)
                if len(due) >= limit:
                    break
            return due

    async def next_delivery_time(self) -> datetime | None:
        async with self._read() as session:
            return await session.scalar(
                select(func.min(WebhookDeliveryRow.next_attempt_at)).where(WebhookDeliveryRow.state == "pending")
            )

    async def record_delivery(
        self, delivery_id: str, *, delivered: bool, give_up: bool, error: str | None, next_attempt_at: datetime
    ) -> None:
        async with self._write() as session:
            row = await session.scalar(select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id))
            if row is None:
                return
            row.attempts += 1
            row.last_error = error
            if delivered:
                row.state, row.delivered_at = "delivered", utc_now()
            elif give_up:
                row.state = "failed"
            else:
                row.next_attempt_at = next_attempt_at

    async def deliveries_for_job(self, job_id: str) -> list[WebhookDeliveryRow]:
        async with self._read() as session:
            rows = await session.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id).order_by(WebhookDeliveryRow.seq)
            )
            return list(rows)


def _conversation_busy(job: type[JobRow]) -> Any:
    """True for a job whose conversation has a job in progress or an earlier job still waiting."""
    other = aliased(JobRow)
    return exists().where(
        other.conversation_id == job.conversation_id,
        (other.status == "in_progress") | ((other.status == "scheduled") & (other.sequence < job.sequence)),
    )


def _add_missing_columns(connection: Connection) -> None:
    """Add the (nullable) columns a database made by an older engine lacks; create_all adds only tables."""
    inspector = inspect(connection)
    quote = connection.dialect.identifier_preparer.quote
    for table in Base.metadata.sorted_tables:
        present = {column["name"] for column in inspector.get_columns(table.name)}
        for column in table.columns:
            if column.name in present:
                continue
            if not column.nullable:
                raise RuntimeError(f"cannot add the required column {table.name}.{column.name} to an existing table")
            column_type = column.type.compile(dialect=connection.dialect)
            connection.execute(text(f"ALTER TABLE {quote(table.name)} ADD COLUMN {quote(column.name)} {column_type}"))


def rename_member(data: Any, member_id: str, name: str | None, email: str | None) -> Any:
    """A copy of stored insights where every object carrying the member's id has the new name and email."""
    if isinstance(data, list):
        return [rename_member(item, member_id, name, email) for item in data]
    if not isinstance(data, dict):
        return data
    renamed = {key: rename_member(value, member_id, name, email) for key, value in data.items()}
    if renamed.get("id") == member_id and ("name" in renamed or "email" in renamed or "userId" in renamed):
        if name is not None:
            renamed["name"] = name
        if email is not None:
            renamed["email"] = email
    return renamed
