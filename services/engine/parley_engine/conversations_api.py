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
from parley_engine.identifiers import new_job_id
from parley_engine.jobs import JobRunner, regenerate_insights
from parley_engine.store import ConversationNotFound, ConversationRow, MemberNotFound, NewJob, Store
from parley_engine.transcript import markdown_transcript, srt_transcript
from parley_engine.workers import AnalysisWorkers


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

    def store_of(request: Request) -> Store:
        store: Store = request.app.state.store
        return store

    async def existing(request: Request, conversation_id: str) -> tuple[ConversationRow, ConversationInsights]:
        store = store_of(request)
        try:
            row = await store.conversation(conversation_id)
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return row, await store.insights(conversation_id)

    async def json_object(request: Request) -> Any:
        try:
            return await request.json()
        except ValueError:
            raise ApiProblem(400, "the request body is not valid JSON") from None

    @router.get("", summary="List conversations")
    async def list_conversations(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 20,
        offset: Annotated[int, Query(ge=0)] = 0,
        order: Literal["asc", "desc"] = "desc",
        start_time: Annotated[datetime | None, Query(alias="startTime")] = None,
        end_time: Annotated[datetime | None, Query(alias="endTime")] = None,
    ) -> dict[str, Any]:
        store = store_of(request)
        rows = await store.list_conversations(
            limit=limit, offset=offset, descending=order == "desc", start_after=start_time, start_before=end_time
        )
        return {"conversations": [conversation_body(row, await store.insights(row.id)) for row in rows]}

    @router.get("/{conversationId}", summary="A conversation")
    async def get_conversation(request: Request, conversationId: str) -> dict[str, Any]:
        return conversation_body(*await existing(request, conversationId))

    @router.put("/{conversationId}", summary="Update a conversation's metadata")
    async def put_conversation(request: Request, conversationId: str) -> dict[str, Any]:
        await existing(request, conversationId)
        body = await json_object(request)
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if not isinstance(metadata, dict):
            raise ApiProblem(400, "invalid request: metadata: must be an object")
        merged = await store_of(request).update_metadata(conversationId, metadata)
        return {"id": conversationId, "metadata": merged}

    @router.delete("/{conversationId}", summary="Delete a conversation")
    async def delete_conversation(request: Request, conversationId: str) -> dict[str, str]:
        try:
            await store_of(request).delete_conversation(conversationId)
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        request.app.state.webhook_sender.wake()  # waiting jobs failed
        return {"message": "successfully deleted the conversation"}

    @router.get("/{conversationId}/messages", summary="Messages (transcript)")
    async def messages(
        request: Request,
        conversationId: str,
        verbose: bool = False,
        sentiment: bool = False,
    ) -> dict[str, Any]:
        _, insights = await existing(request, conversationId)
        dropped = [key for key, wanted in (("words", verbose), ("sentiment", sentiment)) if not wanted]
        return {"messages": _without(insights.messages, *dropped)}

    @router.get("/{conversationId}/topics", summary="Topics")
    async def topics(
        request: Request,
        conversationId: str,
        sentiment: bool = False,
        parent_refs: Annotated[bool, Query(alias="parentRefs")] = False,
    ) -> dict[str, Any]:
        _, insights = await existing(request, conversationId)
        dropped = [key for key, wanted in (("sentiment", sentiment), ("parentRefs", parent_refs)) if not wanted]
        return {"topics": _without(insights.topics, *dropped)}

    @router.get("/{conversationId}/questions", summary="Questions")
    async def questions(request: Request, conversationId: str) -> dict[str, Any]:
        return {"questions": (await existing(request, conversationId))[1].questions}

    @router.get("/{conversationId}/action-items", summary="Action items")
    async def action_items(request: Request, conversationId: str) -> dict[str, Any]:
        return {"actionItems": (await existing(request, conversationId))[1].action_items}

    @router.get("/{conversationId}/follow-ups", summary="Follow-ups")
    async def follow_ups(request: Request, conversationId: str) -> dict[str, Any]:
        return {"followUps": (await existing(request, conversationId))[1].follow_ups}

    @router.get("/{conversationId}/insights", summary="Questions, action items and follow-ups")
    async def all_insights(request: Request, conversationId: str) -> dict[str, Any]:
        _, insights = await existing(request, conversationId)
        return {"insights": [*insights.questions, *insights.action_items, *insights.follow_ups]}

    @router.get("/{conversationId}/members", summary="Members")
    async def members(request: Request, conversationId: str) -> dict[str, Any]:
        return {"members": (await existing(request, conversationId))[1].members}

    @router.put("/{conversationId}/members/{memberId}", summary="Update a member's name and email")
    async def put_member(request: Request, conversationId: str, memberId: str) -> dict[str, str]:
        await existing(request, conversationId)
        try:
            update = MemberUpdate.model_validate(await json_object(request))
        except ValidationError as error:
            raise invalid(error) from None
        if update.id != memberId:
            raise ApiProblem(400, "invalid request: id: must be the memberId of the path")
        try:
            await store_of(request).update_member(conversationId, memberId, update.name, update.email)
        except MemberNotFound:
            raise ApiProblem(404, f"Member with id: {memberId} does not exist in this conversation.") from None
        return {
            "message": f"Member with id: {memberId} updated successfully! The update should be reflected in all "
            "messages and insights along with this conversation"
        }

    @router.put("/{conversationId}/speakers", summary="Speaker events: who spoke when")
    async def put_speakers(request: Request, conversationId: str) -> dict[str, str]:
        await existing(request, conversationId)
        try:
            events = SpeakerEvents.model_validate(await json_object(request))
        except ValidationError as error:
            raise invalid(error) from None
        stored = [event.model_dump(mode="json") for event in events.speaker_events]
        store = store_of(request)
        try:
            row = await store.save_speaker_events(conversationId, stored)
            if row.source in ("audio", "video"):
                # Re-attribution runs as a job of the conversation, after the jobs submitted before it.
                await store.submit_job(
                    NewJob(id=new_job_id(), kind="speakers", options={}, input_json=stored),
                    conversation_id=conversationId,
                )
                runner: JobRunner = request.app.state.job_runner
                runner.wake()
        except ConversationNotFound:
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return {
            "message": f"Speaker events associated for conversationId: {conversationId} successfully! "
            "The update should be reflected in all messages and insights along with this conversation"
        }

    @router.get("/{conversationId}/entities", summary="Entities")
    async def entities(request: Request, conversationId: str) -> dict[str, Any]:
        return {"entities": (await existing(request, conversationId))[1].entities}

    @router.get("/{conversationId}/analytics", summary="Talk-time analytics")
    async def analytics(request: Request, conversationId: str) -> dict[str, Any]:
        found = (await existing(request, conversationId))[1].analytics
        return {"metrics": [], "members": [], **found}

    @router.get("/{conversationId}/summary", summary="Summary")
    async def summary(request: Request, conversationId: str, refresh: bool = False) -> dict[str, Any]:
        _, insights = await existing(request, conversationId)
        if refresh:
            workers: AnalysisWorkers = request.app.state.workers
            try:
                insights = await regenerate_insights(store_of(request), workers, conversationId, enable_summary=True)
            except ConversationNotFound:
                raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        return {"summary": insights.summary}

    # /trackers is deprecated by Symbl but is the only tracker read of the official symbl-rest client.
    @router.get("/{conversationId}/trackers", summary="Trackers detected (deprecated path, same bare array)")
    @router.get("/{conversationId}/trackers-detected", summary="Trackers detected (a bare array)")
    async def trackers_detected(request: Request, conversationId: str) -> list[dict[str, Any]]:
        return (await existing(request, conversationId))[1].trackers

    @router.post("/{conversationId}/transcript", summary="Formatted transcript (Markdown or SRT)")
    async def transcript(request: Request, conversationId: str) -> dict[str, Any]:
        _, insights = await existing(request, conversationId)
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
