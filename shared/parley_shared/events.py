"""The events Parley's services exchange over Kafka.

JSON on the wire with camelCase names, like the Symbl API. Every event carries the envelope
(``eventId``, ``eventType``, ``schemaVersion``, ``occurredAt``, ``requestId``, and ``conversationId`` / ``jobId``
where they exist) so a consumer can route, dedupe and trace it without knowing the others.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from pydantic.alias_generators import to_camel

SCHEMA_VERSION = 1
# Symbl's ids are numeric strings or UUIDs; bound their size so a hostile record cannot bloat state.
IdStr = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]


class CamelModel(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=AliasGenerator(alias=to_camel), populate_by_name=True)

    def to_wire(self) -> bytes:
        return self.model_dump_json(by_alias=True, exclude_none=True).encode()


class MediaKind(StrEnum):
    TEXT = "text"
    AUDIO = "audio"
    VIDEO = "video"


class JobKind(StrEnum):
    """What a provider job processes: a submission of one of the media kinds, or a live stream once it ended."""

    TEXT = "text"
    AUDIO = "audio"
    VIDEO = "video"
    STREAM = "stream"


class MessagePayload(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str = Field(min_length=1, max_length=100_000, description="the text of the message")
    content_type: str = Field("text/plain", alias="contentType", description="MIME type of the content")


class SymblMessage(BaseModel):
    """One message of a text conversation in the Symbl format; forwarded to the provider as given."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    payload: MessagePayload = Field(description="the message content")
    from_: dict[str, Any] | None = Field(None, alias="from", description="the speaker, e.g. {userId, name}")
    duration: dict[str, Any] | None = Field(None, description="{startTime, endTime} as ISO-8601 strings")


def _new_event_id() -> str:
    return str(uuid.uuid4())


def _now() -> datetime:
    return datetime.now(UTC)


class Event(CamelModel):
    """The envelope every Parley event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: str = Field(default_factory=_new_event_id, description="unique id of this event (UUID)")
    schema_version: Literal[1] = Field(1, description="version of this event's schema")
    occurred_at: datetime = Field(default_factory=_now, description="when the event happened (UTC, ISO-8601)")
    request_id: IdStr = Field(description="id of the request that started this chain; the idempotency key of ingest")


class ProcessRequested(Event):
    """A command to process a conversation: text messages, or an audio/video URL (Kafka never carries media).

    With ``conversationId`` the content is appended to that conversation (a new job on the same conversation).
    """

    event_type: Literal["ProcessRequested"] = Field("ProcessRequested", description="event discriminator")
    kind: MediaKind = Field(description="text, audio or video")
    conversation_id: IdStr | None = Field(None, description="append to this existing conversation")
    name: str | None = Field(None, max_length=1_000, description="conversation name")
    messages: list[SymblMessage] | None = Field(
        None, min_length=1, max_length=10_000, description="text conversations: the Symbl message list"
    )
    url: str | None = Field(None, max_length=4_096, description="audio/video conversations: a public URL")
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="further Symbl Async API options (confidenceThreshold, detectPhrases, trackers, …)",
    )

    @model_validator(mode="after")
    def _content_matches_kind(self) -> ProcessRequested:
        if self.kind is MediaKind.TEXT and not self.messages:
            raise ValueError("a text request needs a non-empty 'messages' list")
        if self.kind is not MediaKind.TEXT and not self.url:
            raise ValueError(f"an {self.kind.value} request needs a 'url' (media files go through the HTTP API)")
        if self.kind is MediaKind.TEXT and self.url:
            raise ValueError("a text request carries 'messages', not a 'url'")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError("'url' must be an http(s) URL")
        return self

    def provider_body(self) -> dict[str, Any]:
        """The JSON body of the provider's Async API call for this request."""
        body: dict[str, Any] = dict(self.options)
        if self.name:
            body["name"] = self.name
        if self.messages is not None:
            body["messages"] = [m.model_dump(by_alias=True, exclude_none=True) for m in self.messages]
        if self.url is not None:
            body["url"] = self.url
        return body


class JobSubmitted(Event):
    """ingest submitted a conversation to the provider and got a job to watch."""

    event_type: Literal["JobSubmitted"] = Field("JobSubmitted", description="event discriminator")
    conversation_id: IdStr = Field(description="the provider's conversation id (16-digit numeric string)")
    job_id: IdStr = Field(description="the provider's job id (UUID)")
    kind: JobKind = Field(description="text, audio, video, or stream (a live stream that ended)")
    submitted_at: datetime = Field(default_factory=_now, description="when the provider accepted the job")
    webhook_url: str | None = Field(None, description="the webhook the provider was told to call, if any")


class JobCompleted(Event):
    """The provider reported the job completed (confirmed with GET /v1/job/{jobId}); insights may be read now."""

    event_type: Literal["JobCompleted"] = Field("JobCompleted", description="event discriminator")
    conversation_id: IdStr = Field(description="the conversation whose insights are ready to read")
    job_id: IdStr = Field(description="the job that completed")
    submitted_at: datetime = Field(description="when the job was submitted")
    completed_at: datetime = Field(default_factory=_now, description="when job-watcher saw the completion")
    detected_by: Literal["webhook", "poll"] = Field(description="how the completion was noticed")


class JobFailed(Event):
    """The job failed at the provider, or did not finish before the deadline. No insights follow."""

    event_type: Literal["JobFailed"] = Field("JobFailed", description="event discriminator")
    conversation_id: IdStr = Field(description="the conversation of the failed job")
    job_id: IdStr = Field(description="the job that failed")
    reason: str = Field(max_length=2_000, description="why: the provider's reason, 'deadline', or the error")
    submitted_at: datetime = Field(description="when the job was submitted")


class JobResolved(Event):
    """job-watcher's bookkeeping marker on the jobs topic: this job's outcome has been published.

    Written in the same transaction as the ``JobCompleted``/``JobFailed`` so that a job-watcher replaying the
    partition after a restart or rebalance knows the job is settled and never announces it twice.
    """

    event_type: Literal["JobResolved"] = Field("JobResolved", description="event discriminator")
    conversation_id: IdStr = Field(description="the conversation of the job")
    job_id: IdStr = Field(description="the settled job")
    outcome: Literal["completed", "failed"] = Field(description="what was published for it")


class JobStatusReported(Event):
    """A provider callback said a job's status changed, received by a job-watcher replica that was not watching the
    job; written to the jobs topic so the replica that owns the job hears it at once (the owner confirms it with
    ``GET /v1/job/{jobId}`` before acting, as for any callback).

    Keyed by conversationId, so it lands on the partition of the job's ``JobSubmitted``. A callback that does not
    name the conversation (Symbl documents only ``jobId`` and ``status``) is written once to every partition,
    each copy naming its ``partition``.
    """

    event_type: Literal["JobStatusReported"] = Field("JobStatusReported", description="event discriminator")
    request_id: IdStr = Field(description="the job id: a provider callback does not carry the request id")
    job_id: IdStr = Field(description="the job the callback is about")
    conversation_id: IdStr | None = Field(None, description="the job's conversation, when the callback named it")
    status: Literal["scheduled", "in_progress", "completed", "failed"] = Field(description="the reported status")
    partition: int | None = Field(
        None, ge=0, description="the jobs-topic partition of this copy, when the callback did not name the conversation"
    )


class InsightsReady(Event):
    """The whole insight bundle of a conversation, read after its job completed."""

    event_type: Literal["InsightsReady"] = Field("InsightsReady", description="event discriminator")
    conversation_id: IdStr = Field(description="the conversation")
    job_id: IdStr = Field(description="the job whose completion these insights reflect (latest wins)")
    completed_at: datetime = Field(description="when the job completed")
    insights: dict[str, Any] = Field(
        description=(
            "Conversation API responses by name: messages, topics, questions, actionItems, followUps, entities, "
            "analytics, summary, members (each the provider's JSON as returned)"
        )
    )


class DeadLetter(CamelModel):
    """A record no service could handle, with why and the original bytes, for operators to inspect and replay."""

    model_config = ConfigDict(frozen=True)

    event_type: Literal["DeadLetter"] = Field("DeadLetter", description="event discriminator")
    event_id: str = Field(default_factory=_new_event_id, description="unique id of this dead letter")
    schema_version: Literal[1] = Field(1, description="version of this event's schema")
    occurred_at: datetime = Field(default_factory=_now, description="when the record was given up on")
    request_id: str | None = Field(None, description="the request id, when it could be read")
    conversation_id: str | None = Field(None, description="the conversation id, when it could be read")
    job_id: str | None = Field(None, description="the job id, when it could be read")
    service: str = Field(description="the service that gave up")
    reason: str = Field(description="what was wrong, for a human")
    error_type: str = Field(description="the class of error, e.g. ValidationError, ProviderRejected")
    attempts: int = Field(1, ge=1, description="how many times handling was tried")
    source_topic: str | None = Field(None, description="topic of the original record (None for HTTP input)")
    source_partition: int | None = Field(None, description="partition of the original record")
    source_offset: int | None = Field(None, description="offset of the original record")
    original_key: str | None = Field(None, description="key of the original record, base64")
    original_value: str = Field(description="the original bytes, base64")
    original_truncated: bool = Field(
        False, description="true when the original was larger than 2 MiB and only its start is kept"
    )


class LiveEvent(Event):
    """What every event on ``parley.live`` carries: the stream's conversation and connection, and its place in the
    stream (``sequence`` counts from 0 per connection, so a consumer can see a gap or a repeat)."""

    conversation_id: IdStr = Field(description="the conversation the stream is recorded into")
    connection_id: str = Field(max_length=256, description="the Streaming API connectionId the client chose")
    sequence: int = Field(ge=0, description="this event's position in its stream, from 0")


class LiveStreamStarted(LiveEvent):
    """A live stream began: the provider created its conversation."""

    event_type: Literal["LiveStreamStarted"] = Field("LiveStreamStarted", description="event discriminator")
    speaker: dict[str, Any] | None = Field(None, description="the start_request's speaker ({userId, name}), if any")


class LiveMessages(LiveEvent):
    """Finished messages (final sentences) of a live stream, as the provider's message_response gave them."""

    event_type: Literal["LiveMessages"] = Field("LiveMessages", description="event discriminator")
    messages: list[dict[str, Any]] = Field(
        description="Symbl message objects: id, from {id, name, userId}, payload {content}, duration, metadata"
    )


class LiveInsights(LiveEvent):
    """Questions, action items and follow-ups detected live (the provider's insight_response)."""

    event_type: Literal["LiveInsights"] = Field("LiveInsights", description="event discriminator")
    insights: list[dict[str, Any]] = Field(description="Symbl insight objects: id, type, payload {content}, from")


class LiveTopics(LiveEvent):
    """Topics detected live (the provider's topic_response)."""

    event_type: Literal["LiveTopics"] = Field("LiveTopics", description="event discriminator")
    topics: list[dict[str, Any]] = Field(description="Symbl topic objects: id, phrases, score, messageReferences")


class LiveTrackers(LiveEvent):
    """Tracker matches detected live (the provider's tracker_response)."""

    event_type: Literal["LiveTrackers"] = Field("LiveTrackers", description="event discriminator")
    trackers: list[dict[str, Any]] = Field(description="Symbl tracker objects: name, matches")


class LiveStreamEnded(LiveEvent):
    """The stream is over; its conversation goes on as a job (``JobSubmitted`` on the jobs topic, same
    transaction), so its ``InsightsReady`` follows like any other conversation's."""

    event_type: Literal["LiveStreamEnded"] = Field("LiveStreamEnded", description="event discriminator")
    job_id: IdStr | None = Field(None, description="the provider job that finishes the conversation, when known")
    reason: Literal["stopped", "client_disconnected", "provider_disconnected"] = Field(
        description="stopped: the client sent stop_request; otherwise which side went away first"
    )


LiveStreamEvent = Annotated[
    LiveStreamStarted | LiveMessages | LiveInsights | LiveTopics | LiveTrackers | LiveStreamEnded,
    Field(discriminator="event_type"),
]
JobsTopicEvent = Annotated[JobSubmitted | JobResolved | JobStatusReported, Field(discriminator="event_type")]
jobs_topic_adapter: TypeAdapter[JobSubmitted | JobResolved | JobStatusReported] = TypeAdapter(JobsTopicEvent)
CompletionEvent = Annotated[JobCompleted | JobFailed, Field(discriminator="event_type")]
completion_adapter: TypeAdapter[JobCompleted | JobFailed] = TypeAdapter(CompletionEvent)
