"""Idempotency keys of Async API requests: the first request with a key records the job it created, in the same
transaction as the job; a repeat finds that record instead of creating another job.

The key is the table's primary key, so two requests racing with one key (on one replica or several on one
database) cannot both commit: the loser's transaction fails on the constraint and it reads the winner's record.
A key is kept for a configured time; expired rows are deleted by the next keyed write (an indexed range delete).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley_engine.store.schema import IdempotencyKeyRow


class IdempotencyKeyTaken(Exception):
    """Another request committed this key first: its record (``IdempotencyStore.find``) is the answer."""

    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


@dataclass(frozen=True)
class IdempotencyClaim:
    """The key a request brings, what it asked for (a repeat must ask the same), and when older keys expired."""

    key: str
    method: str
    path: str
    expired_before: datetime


async def record_key(
    session: AsyncSession, claim: IdempotencyClaim, conversation_id: str, job_id: str, now: datetime
) -> None:
    """Delete expired keys (this one's included, so it can be used again) and record this one; flushed at once so
    a key taken by another transaction fails here, before any other row is written."""
    await session.execute(delete(IdempotencyKeyRow).where(IdempotencyKeyRow.created_at < claim.expired_before))
    session.add(
        IdempotencyKeyRow(
            key=claim.key,
            method=claim.method,
            path=claim.path,
            conversation_id=conversation_id,
            job_id=job_id,
            created_at=now,
        )
    )
    await session.flush()


async def find_key(session: AsyncSession, key: str, *, expired_before: datetime) -> IdempotencyKeyRow | None:
    """The record of a key that has not expired."""
    row: IdempotencyKeyRow | None = await session.scalar(
        select(IdempotencyKeyRow).where(IdempotencyKeyRow.key == key, IdempotencyKeyRow.created_at >= expired_before)
    )
    return row
