"""A conversation's rows written inside the caller's transaction: by the conversation store, and by a job's outcome.

Kept apart from ``conversations`` so the job store can commit a job's utterances and insights with its status
without the two stores importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley_engine.conversation import ConversationInsights, Utterance
from parley_engine.store.schema import ConversationRow, InsightsRow, UtteranceRow, utc_now


class ConversationNotFound(Exception):
    """The conversation id is unknown or the conversation was deleted."""


async def locked_conversation(session: AsyncSession, conversation_id: str) -> ConversationRow | None:
    """The conversation, locked for this transaction; None when it is unknown or deleted."""
    row = await session.get(ConversationRow, conversation_id, with_for_update=True)
    return None if row is None or row.deleted else row


async def append_utterances(
    session: AsyncSession, conversation_id: str, job_id: str, utterances: Sequence[Utterance]
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


async def delete_utterances(session: AsyncSession, conversation_id: str) -> None:
    await session.execute(delete(UtteranceRow).where(UtteranceRow.conversation_id == conversation_id))


async def put_insights(
    session: AsyncSession, conversation_id: str, insights: ConversationInsights, job_id: str | None = None
) -> None:
    """Store the conversation's insights; ``job_id`` names the job after which they were generated, if any."""
    data = insights.model_dump(mode="json")
    existing = await session.get(InsightsRow, conversation_id)
    if existing is None:
        session.add(InsightsRow(conversation_id=conversation_id, job_id=job_id, data=data, updated_at=utc_now()))
    else:
        existing.data, existing.updated_at = data, utc_now()
        if job_id is not None:
            existing.job_id = job_id
