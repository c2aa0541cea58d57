"""Conversations as the Conversation API reads and changes them, with the parsed insights cached in memory."""

from __future__ import annotations

from collections import OrderedDict
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from parley_engine.conversation import ConversationInsights, Utterance, find_member, rename_member, renamed_speaker
from parley_engine.store.conversation_rows import (
    ConversationNotFound,
    delete_utterances,
    locked_conversation,
    put_insights,
)
from parley_engine.store.database import Database
from parley_engine.store.jobs import fail_waiting_jobs
from parley_engine.store.schema import ConversationRow, InsightsRow, UtteranceRow, utc_now

# Conversations whose parsed insights stay in memory for Conversation API reads.
_PARSED_INSIGHTS_CACHED = 32


class MemberNotFound(Exception):
    pass


class ConversationStore:
    def __init__(self, database: Database) -> None:
        self._database = database
        self._parsed_insights: OrderedDict[str, tuple[datetime, ConversationInsights]] = OrderedDict()

    async def conversation(self, conversation_id: str) -> ConversationRow:
        """The live conversation; raises ConversationNotFound for unknown or deleted ids."""
        async with self._database.read() as session:
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
        async with self._database.read() as session:
            return list(await session.scalars(query))

    async def utterances(self, conversation_id: str) -> list[Utterance]:
        async with self._database.read() as session:
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
        async with self._database.read() as session:
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
        async with self._database.write() as session:
            await put_insights(session, conversation_id, insights)

    async def update_metadata(self, conversation_id: str, metadata: dict[str, Any]) -> dict[str, Any]:
        """Merge ``metadata`` into the conversation's; returns the result."""
        async with self._database.write() as session:
            row = await locked_conversation(session, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            row.meta = {**(row.meta or {}), **metadata}
            return dict(row.meta)

    async def delete_conversation(self, conversation_id: str) -> None:
        """Forget a conversation's content; its waiting jobs fail. The id stays reserved."""
        async with self._database.write() as session:
            row = await locked_conversation(session, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            row.deleted = True
            row.meta, row.speaker_events = {}, None
            await delete_utterances(session, conversation_id)
            await session.execute(delete(InsightsRow).where(InsightsRow.conversation_id == conversation_id))
            await fail_waiting_jobs(session, conversation_id, "the conversation was deleted")

    async def update_member(self, conversation_id: str, member_id: str, name: str | None, email: str | None) -> None:
        """Rename a member everywhere: stored insights, and the utterances future re-analysis starts from."""
        async with self._database.write() as session:
            if await locked_conversation(session, conversation_id) is None:
                raise ConversationNotFound(conversation_id)
            stored = await session.get(InsightsRow, conversation_id)
            member = None if stored is None else find_member(stored.data, member_id)
            if stored is None or member is None:
                raise MemberNotFound(member_id)
            stored.data = rename_member(stored.data, member_id, name, email)
            stored.updated_at = utc_now()
            utterance_rows = await session.scalars(
                select(UtteranceRow).where(UtteranceRow.conversation_id == conversation_id)
            )
            for utterance_row in utterance_rows:
                speaker = renamed_speaker(utterance_row.data.get("speaker") or {}, member, name, email)
                if speaker is not None:
                    utterance_row.data = {**utterance_row.data, "speaker": speaker}

    async def save_speaker_events(self, conversation_id: str, events: list[dict[str, Any]]) -> ConversationRow:
        async with self._database.write() as session:
            row = await locked_conversation(session, conversation_id)
            if row is None:
                raise ConversationNotFound(conversation_id)
            row.speaker_events = events
            return row
