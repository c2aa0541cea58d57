"""Symbl's Conversation API (``/v1/conversations``), served from the stored ``ConversationInsights``.

Stored items carry every optional part (sentiment, words, parentRefs); each endpoint removes what the request
did not ask for. Reading a conversation whose latest job has not completed returns what exists, like Symbl.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from parley_shared.http_errors import ApiProblem
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parley_engine.async_api import CONVERSATION_NOT_FOUND, invalid
from parley_engine.auth import require_access_token
from parley_engine.conversation import ConversationInsights, conversation_time
from parley_engine.dependencies import (
    ConversationsDep,
    JobRunnerDep,
    JobsDep,
    SettingsDep,
    WebhookSenderDep,
    WorkersDep,
)
from parley_engine.identifiers import new_job_id
from parley_engine.jobs import regenerate_insights
from parley_engine.media_store import KeptMedia
from parley_engine.store import ConversationNotFound, ConversationRow, ConversationStore, MemberNotFound, NewJob
from parley_engine.transcript import markdown_transcript, srt_transcript

# Far past any real list, and inside the database's 64-bit integers (SQLite overflows past them: a 500).
MAX_LIST_OFFSET = 1_000_000_000


class MemberUpdate(BaseModel):
    id: str
    name: str | None = None
    email: str | None = None


class SpeakerOffset(BaseModel):
    seconds: float = 0
    nanos: float = 0


class SpeakerUser(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    name: str | None = None
    email: str | None = None


class SpeakerEvent(BaseModel):
    type: Literal["started_speaking", "stopped_speaking"]
    user: SpeakerUser
    offset: SpeakerOffset


class SpeakerEvents(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    speaker_events: list[SpeakerEvent] = Field(alias="speakerEvents")


class TranscriptPhrases(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    highlight_only_insight_key_phrases: bool = Field(False, alias="highlightOnlyInsightKeyPhrases")
    highlight_all_key_phrases: bool = Field(False, alias="highlightAllKeyPhrases")


class TranscriptRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    content_type: Literal["text/markdown", "text/srt"] = Field(alias="contentType")
    create_paragraphs: bool = Field(False, alias="createParagraphs")
    show_speaker_separation: bool = Field(False, alias="showSpeakerSeparation")
    phrases: TranscriptPhrases = Field(default_factory=TranscriptPhrases)


def _without(items: list[dict[str, Any]], *keys: str) -> list[dict[str, Any]]:
    return [{key: value for key, value in item.items() if key not in keys} for item in items]


def conversation_body(row: ConversationRow, insights: ConversationInsights) -> dict[str, Any]:
    start = conversation_time(row.start_time, 0.0)
    return {
        "id": row.id,
        "type": row.type,
        "name": row.name,
        "startTime": start,
        "endTime": conversation_time(row.end_time, 0.0) if row.end_time else start,
        "members": insights.members,
        "metadata": row.meta or {},
    }


def _highlights(insights: ConversationInsights, only_insights: bool) -> dict[str, list[str]]:
    referenced: set[str] | None = None
    if only_insights:
        referenced = {
            str(message_id)
            for item in [*insights.questions, *insights.action_items, *insights.follow_ups]
            for message_id in item.get("messageIds", [])
        }
    return {
        str(message["id"]): [str(p.get("text")) for p in message.get("phrases") or [] if p.get("text")]
        for message in insights.messages
        if referenced is None or str(message.get("id")) in referenced
    }


def build_conversations_router() -> APIRouter:
    router = APIRouter(prefix="/v1/conversations", tags=["conversations"], dependencies=[Depends(require_access_token)])

    async def existing(
        conversations: ConversationStore, conversation_id: str
    ) -> tuple[ConversationRow, ConversationInsights]:
        try:
            row = await conversations.conversation(conversation_id)
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return row, await conversations.insights(conversation_id)

    async def json_object(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiProblem(400, "the request body is not valid JSON") from None

    @router.get("", summary="List conversations")
    async def list_conversations(
        conversations: ConversationsDep,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_LIST_OFFSET)] = 0,
        order: Literal["asc", "desc"] = "desc",
        start_time: Annotated[datetime | None, Query(alias="startTime")] = None,
        end_time: Annotated[datetime | None, Query(alias="endTime")] = None,
    ) -> dict[str, Any]:
        rows = await conversations.list_conversations(
            limit=limit, offset=offset, descending=order == "desc", start_after=start_time, start_before=end_time
        )
        return {"conversations": [conversation_body(row, await conversations.insights(row.id)) for row in rows]}

    @router.get("/{conversationId}", summary="A conversation")
    async def get_conversation(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return conversation_body(*await existing(conversations, conversationId))

    @router.put("/{conversationId}", summary="Update a conversation's metadata")
    async def put_conversation(
        request: Request, conversationId: str, conversations: ConversationsDep
    ) -> dict[str, Any]:
        await existing(conversations, conversationId)
        body = await json_object(request)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(metadata, dict):
            raise ApiProblem(400, "invalid request: metadata: must be an object")
        merged = await conversations.update_metadata(conversationId, metadata)
        return {"id": conversationId, "metadata": merged}

    @router.delete("/{conversationId}", summary="Delete a conversation")
    async def delete_conversation(
        conversationId: str, conversations: ConversationsDep, webhooks: WebhookSenderDep, settings: SettingsDep
    ) -> dict[str, str]:
        try:
            await conversations.delete_conversation(conversationId)
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        KeptMedia(settings.kept_media_dir).forget(conversationId)
        webhooks.wake()  # waiting jobs failed
        return {"message": "successfully deleted the conversation"}

    @router.get("/{conversationId}/messages", summary="Messages (transcript)")
    async def messages(
        conversationId: str,
        conversations: ConversationsDep,
        verbose: bool = False,
        sentiment: bool = False,
    ) -> dict[str, Any]:
        _, insights = await existing(conversations, conversationId)
        dropped = [key for key, wanted in (("words", verbose), ("sentiment", sentiment)) if not wanted]
        return {"messages": _without(insights.messages, *dropped)}

    @router.get("/{conversationId}/topics", summary="Topics")
    async def topics(
        conversationId: str,
        conversations: ConversationsDep,
        sentiment: bool = False,
        parent_refs: Annotated[bool, Query(alias="parentRefs")] = False,
    ) -> dict[str, Any]:
        _, insights = await existing(conversations, conversationId)
        dropped = [key for key, wanted in (("sentiment", sentiment), ("parentRefs", parent_refs)) if not wanted]
        return {"topics": _without(insights.topics, *dropped)}

    @router.get("/{conversationId}/questions", summary="Questions")
    async def questions(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return {"questions": (await existing(conversations, conversationId))[1].questions}

    @router.get("/{conversationId}/action-items", summary="Action items")
    async def action_items(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return {"actionItems": (await existing(conversations, conversationId))[1].action_items}

    @router.get("/{conversationId}/follow-ups", summary="Follow-ups")
    async def follow_ups(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return {"followUps": (await existing(conversations, conversationId))[1].follow_ups}

    @router.get("/{conversationId}/insights", summary="Questions, action items and follow-ups")
    async def all_insights(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        _, insights = await existing(conversations, conversationId)
        return {"insights": [*insights.questions, *insights.action_items, *insights.follow_ups]}

    @router.get("/{conversationId}/members", summary="Members")
    async def members(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return {"members": (await existing(conversations, conversationId))[1].members}

    @router.put("/{conversationId}/members/{memberId}", summary="Update a member's name and email")
    async def put_member(
        request: Request, conversationId: str, memberId: str, conversations: ConversationsDep
    ) -> dict[str, str]:
        await existing(conversations, conversationId)
        try:
            update = MemberUpdate.model_validate(await json_object(request))
        except ValidationError as error:
            raise invalid(error) from None
        if update.id != memberId:
            raise ApiProblem(400, "invalid request: id: must be the memberId of the path")
        try:
            await conversations.update_member(conversationId, memberId, update.name, update.email)
        except MemberNotFound:
            raise ApiProblem(404, f"Member with id: {memberId} does not exist in this conversation.") from None
        return {
            "message": f"Member with id: {memberId} updated successfully! The update should be reflected in all "
            "messages and insights along with this conversation"
        }

    @router.put("/{conversationId}/speakers", summary="Speaker events: who spoke when")
    async def put_speakers(
        request: Request,
        conversationId: str,
        conversations: ConversationsDep,
        jobs: JobsDep,
        runner: JobRunnerDep,
    ) -> dict[str, str]:
        await existing(conversations, conversationId)
        try:
            events = SpeakerEvents.model_validate(await json_object(request))
        except ValidationError as error:
            raise invalid(error) from None
        stored = [event.model_dump(mode="json") for event in events.speaker_events]
        try:
            row = await conversations.save_speaker_events(conversationId, stored)
            if row.source in ("audio", "video", "streaming"):
                # Re-attribution runs as a job of the conversation, after the jobs submitted before it.
                await jobs.submit_job(
                    NewJob(id=new_job_id(), kind="speakers", options={}, input_json=stored),
                    conversation_id=conversationId,
                )
                runner.wake()
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return {
            "message": f"Speaker events associated for conversationId: {conversationId} successfully! "
            "The update should be reflected in all messages and insights along with this conversation"
        }

    @router.get("/{conversationId}/entities", summary="Entities")
    async def entities(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        return {"entities": (await existing(conversations, conversationId))[1].entities}

    @router.get("/{conversationId}/analytics", summary="Talk-time analytics")
    async def analytics(conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        found = (await existing(conversations, conversationId))[1].analytics
        return {"metrics": [], "members": [], **found}

    @router.get("/{conversationId}/summary", summary="Summary")
    async def summary(
        conversationId: str, conversations: ConversationsDep, workers: WorkersDep, refresh: bool = False
    ) -> dict[str, Any]:
        _, insights = await existing(conversations, conversationId)
        if refresh:
            try:
                insights = await regenerate_insights(conversations, workers, conversationId, enable_summary=True)
            except ConversationNotFound:
                raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return {"summary": insights.summary}

    # /trackers is deprecated by Symbl but is the only tracker read of the official symbl-rest client.
    @router.get("/{conversationId}/trackers", summary="Trackers detected (deprecated path, same bare array)")
    @router.get("/{conversationId}/trackers-detected", summary="Trackers detected (a bare array)")
    async def trackers_detected(conversationId: str, conversations: ConversationsDep) -> list[dict[str, Any]]:
        return (await existing(conversations, conversationId))[1].trackers

    @router.post("/{conversationId}/transcript", summary="Formatted transcript (Markdown or SRT)")
    async def transcript(request: Request, conversationId: str, conversations: ConversationsDep) -> dict[str, Any]:
        _, insights = await existing(conversations, conversationId)
        try:
            wanted = TranscriptRequest.model_validate(await json_object(request))
        except ValidationError as error:
            raise invalid(error) from None
        if wanted.content_type == "text/srt":
            payload = srt_transcript(insights.messages, show_speaker_separation=wanted.show_speaker_separation)
        else:
            highlights = None
            if wanted.phrases.highlight_all_key_phrases or wanted.phrases.highlight_only_insight_key_phrases:
                highlights = _highlights(insights, only_insights=not wanted.phrases.highlight_all_key_phrases)
            payload = markdown_transcript(
                insights.messages,
                create_paragraphs=wanted.create_paragraphs,
                show_speaker_separation=wanted.show_speaker_separation,
                highlight_phrases=highlights,
            )
        return {"transcript": {"payload": payload, "contentType": wanted.content_type}}

    return router
