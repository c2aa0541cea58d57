"""The durable job queue: submission, claims with leases, and each job's outcome committed with its status.

Several replicas on one database coordinate through the jobs table alone. A claimed job carries a lease
(``claimed_by``, ``lease_until``) that its replica renews while it runs; only a job whose lease ran out is
scheduled again, and only the lease holder may commit a job's outcome. Rows a replica reads and then changes are
locked (``SELECT … FOR UPDATE``; a no-op on SQLite, whose single writer already serializes writes). Every status
change writes its webhook delivery row in the same transaction (``deliveries.enqueue_delivery``).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from parley_engine.conversation import ConversationInsights, Utterance
from parley_engine.job_status import ACTIVE_STATUSES, PUBLIC_JOB_KINDS, JobStatus
from parley_engine.store.conversation_rows import (
    ConversationNotFound,
    append_utterances,
    delete_utterances,
    locked_conversation,
    put_insights,
)
from parley_engine.store.database import Database
from parley_engine.store.deliveries import enqueue_delivery
from parley_engine.store.idempotency import IdempotencyClaim, IdempotencyKeyTaken, find_key, record_key
from parley_engine.store.schema import ConversationRow, IdempotencyKeyRow, JobRow, utc_now

# A PostgreSQL advisory lock key (any fixed 64-bit number): one submission at a time counts active jobs against
# the limit, across every replica of the database.
_ADMISSION_LOCK_KEY = 0x7061726C6579_02


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


def conversation_row(new: NewConversation, now: datetime) -> ConversationRow:
    """A new conversation's row, with no jobs yet."""
    return ConversationRow(
        id=new.id,
        name=new.name,
        type="meeting",
        source=new.source,
        start_time=new.start_time,
        end_time=None,
        meta=dict(new.metadata),
        analysis_options={},
        speaker_events=None,
        job_count=0,
        created_at=now,
        deleted=False,
    )


def scheduled_job_row(job: NewJob, conversation_id: str, sequence: int, now: datetime) -> JobRow:
    return JobRow(
        id=job.id,
        conversation_id=conversation_id,
        sequence=sequence,
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


def finish_job(session: AsyncSession, row: JobRow, status: JobStatus, reason: str | None) -> None:
    now = utc_now()
    row.status, row.reason, row.finished_at, row.updated_at = status, reason, now, now
    row.lease_until = None
    enqueue_delivery(session, row, now)


async def fail_waiting_jobs(session: AsyncSession, conversation_id: str, reason: str) -> None:
    """Fail the conversation's scheduled jobs (those in progress find out when they commit)."""
    waiting = await session.scalars(
        select(JobRow).where(JobRow.conversation_id == conversation_id, JobRow.status == "scheduled")
    )
    for job in waiting:
        finish_job(session, job, "failed", reason)


def _conversation_busy(job: type[JobRow]) -> Any:
    """True for a job whose conversation has a job in progress or an earlier job still waiting."""
    other = aliased(JobRow)
    return exists().where(
        other.conversation_id == job.conversation_id,
        (other.status == "in_progress") | ((other.status == "scheduled") & (other.sequence < job.sequence)),
    )


async def _count_active_jobs(session: AsyncSession) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(JobRow)
        .where(JobRow.status.in_(ACTIVE_STATUSES), JobRow.kind.in_(PUBLIC_JOB_KINDS))
    )
    return int(count or 0)


async def _held_job(session: AsyncSession, job_id: str, claimed_by: str | None) -> JobRow | None:
    """The job, locked, if it is in progress; raises JobLeaseLost when ``claimed_by`` no longer holds it."""
    row = await session.get(JobRow, job_id, with_for_update=True)
    if row is None or row.status != "in_progress":
        if claimed_by is not None and (row is None or row.claimed_by != claimed_by):
            raise JobLeaseLost(job_id)
        return None
    if claimed_by is not None and row.claimed_by != claimed_by:
        raise JobLeaseLost(job_id)
    return row


class JobStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def count_active_jobs(self) -> int:
        async with self._database.read() as session:
            return await _count_active_jobs(session)

    async def submit_job(
        self,
        job: NewJob,
        *,
        new_conversation: NewConversation | None = None,
        conversation_id: str | None = None,
        max_active_jobs: int | None = None,
        idempotency: IdempotencyClaim | None = None,
    ) -> JobRow:
        """Record a scheduled job, creating its conversation (POST) or appending to an existing one (PUT).

        With ``max_active_jobs``, a caller's job is refused with ``TooManyJobs`` when that many are already
        scheduled or in progress; the count and the insert are one transaction, serialized across replicas.
        With ``idempotency``, its key is recorded first in the same transaction; ``IdempotencyKeyTaken`` when
        another request holds it (and then nothing is written).
        """
        if idempotency is None:
            return await self._submit_job(job, new_conversation, conversation_id, max_active_jobs, None)
        try:
            return await self._submit_job(job, new_conversation, conversation_id, max_active_jobs, idempotency)
        except IntegrityError:
            if await self.idempotency_key(idempotency.key, expired_before=idempotency.expired_before) is None:
                raise
            raise IdempotencyKeyTaken(idempotency.key) from None

    async def idempotency_key(self, key: str, *, expired_before: datetime) -> IdempotencyKeyRow | None:
        """The job a request with this ``Idempotency-Key`` created, unless the key expired."""
        async with self._database.read() as session:
            return await find_key(session, key, expired_before=expired_before)

    async def _submit_job(
        self,
        job: NewJob,
        new_conversation: NewConversation | None,
        conversation_id: str | None,
        max_active_jobs: int | None,
        idempotency: IdempotencyClaim | None,
    ) -> JobRow:
        now = utc_now()
        async with self._database.write() as session:
            if idempotency is not None:
                target = new_conversation.id if new_conversation is not None else conversation_id
                assert target is not None
                await record_key(session, idempotency, target, job.id, now)
            if max_active_jobs is not None and job.kind in PUBLIC_JOB_KINDS:
                if self._database.is_postgresql:
                    await session.execute(select(func.pg_advisory_xact_lock(_ADMISSION_LOCK_KEY)))
                if await _count_active_jobs(session) >= max_active_jobs:
                    raise TooManyJobs(max_active_jobs)
            if new_conversation is not None:
                conversation = conversation_row(new_conversation, now)
                session.add(conversation)
            else:
                assert conversation_id is not None
                # Locked: two replicas appending at once must not hand out the same sequence number.
                found = await locked_conversation(session, conversation_id)
                if found is None:
                    raise ConversationNotFound(conversation_id)
                conversation = found
            conversation.job_count += 1
            row = scheduled_job_row(job, conversation.id, conversation.job_count, now)
            session.add(row)
            enqueue_delivery(session, row, now)
            return row

    async def open_held_job(
        self, job: NewJob, conversation: NewConversation, *, claimed_by: str, lease_seconds: float
    ) -> JobRow:
        """A new conversation whose first job is already in progress for ``claimed_by`` (a live stream's).

        Its webhook hears ``scheduled`` then ``in_progress``, as for a job the runner claims; the holder renews the
        lease (``renew_leases``) and, if it dies, the job is scheduled again like any abandoned one.
        """
        now = utc_now()
        async with self._database.write() as session:
            conversation_record = conversation_row(conversation, now)
            conversation_record.job_count = 1
            session.add(conversation_record)
            row = scheduled_job_row(job, conversation.id, 1, now)
            session.add(row)
            enqueue_delivery(session, row, now)
            row.status, row.started_at = "in_progress", now
            row.claimed_by, row.lease_until = claimed_by, now + timedelta(seconds=lease_seconds)
            enqueue_delivery(session, row, now)
            return row

    async def record_utterances(self, job_id: str, utterances: Sequence[Utterance], *, claimed_by: str) -> None:
        """Commit utterances of a job still in progress to its conversation now, not with its outcome (a live
        stream's final sentences, so a crash keeps them). ``JobLeaseLost`` unless ``claimed_by`` holds the job."""
        async with self._database.write() as session:
            row = await _held_job(session, job_id, claimed_by)
            if row is None:
                raise JobLeaseLost(job_id)
            if await locked_conversation(session, row.conversation_id) is None:
                raise ConversationNotFound(row.conversation_id)
            await append_utterances(session, row.conversation_id, row.id, utterances)

    async def hand_over_job(self, job_id: str, *, held_by: str, to: str, lease_seconds: float) -> JobRow:
        """Pass a job in progress from one holder to another with a fresh lease (a finished stream's job to the
        job runner); ``JobLeaseLost`` when ``held_by`` no longer holds it."""
        async with self._database.write() as session:
            row = await _held_job(session, job_id, held_by)
            if row is None:
                raise JobLeaseLost(job_id)
            now = utc_now()
            row.claimed_by, row.lease_until, row.updated_at = to, now + timedelta(seconds=lease_seconds), now
            return row

    async def job(self, job_id: str) -> JobRow | None:
        async with self._database.read() as session:
            return await session.get(JobRow, job_id)

    async def conversation_jobs(self, conversation_id: str) -> list[JobRow]:
        """Every job of a conversation in the order they run (sequence), whatever their status."""
        async with self._database.read() as session:
            rows = await session.scalars(
                select(JobRow).where(JobRow.conversation_id == conversation_id).order_by(JobRow.sequence)
            )
            return list(rows)

    async def reschedule_abandoned_jobs(self) -> int:
        """Schedule again the in-progress jobs whose lease ran out: their replica stopped or stalled.

        Jobs of a live replica keep their lease (it renews them), so a replica starting next to others takes
        nothing from them. A job claimed without a lease (``lease_until`` NULL) counts as abandoned.
        """
        async with self._database.write() as session:
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
        async with self._database.write() as session:
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
        async with self._database.write() as session:
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
        async with self._database.write() as session:
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
            enqueue_delivery(session, candidate, now)
            return candidate

    async def fail_job(self, job_id: str, reason: str, *, claimed_by: str | None = None) -> bool:
        """Fail a scheduled or running job; False when it had already finished or ``claimed_by`` lost it."""
        async with self._database.write() as session:
            row = await session.get(JobRow, job_id, with_for_update=True)
            if row is None or row.status in ("completed", "failed"):
                return False
            if claimed_by is not None and (row.status != "in_progress" or row.claimed_by != claimed_by):
                return False
            finish_job(session, row, "failed", reason)
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
        async with self._database.write() as session:
            row = await _held_job(session, job_id, claimed_by)
            if row is None:
                return "failed"
            conversation = await locked_conversation(session, row.conversation_id)
            if conversation is None:
                finish_job(session, row, "failed", "the conversation was deleted while the job ran")
                return "failed"
            await append_utterances(session, row.conversation_id, row.id, new_utterances)
            await put_insights(session, row.conversation_id, insights, job_id=row.id)
            conversation.analysis_options = analysis_options
            if end_time is not None:
                conversation.end_time = end_time
            finish_job(session, row, "completed", None)
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
        async with self._database.write() as session:
            row = await _held_job(session, job_id, claimed_by)
            if row is None:
                return
            if await locked_conversation(session, row.conversation_id) is None:
                finish_job(session, row, "failed", "the conversation was deleted while the job ran")
                return
            await delete_utterances(session, row.conversation_id)
            await append_utterances(session, row.conversation_id, row.id, utterances)
            await put_insights(session, row.conversation_id, insights, job_id=row.id)
            finish_job(session, row, "completed", None)
