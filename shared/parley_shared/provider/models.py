"""Typed shapes of the provider's auth, Async API and Job API bodies (camelCase on the wire).

Conversation API reads are deliberately not modelled: Parley forwards them verbatim in its events, so
``InsightEndpoint`` only says where each one lives and which key it is stored under.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator


class AccessToken(BaseModel):
    """Response of ``POST /oauth2/token:generate``; the token is a ``SecretStr`` so reprs and logs hide it."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    access_token: SecretStr = Field(alias="accessToken", description="JWT sent as `Authorization: Bearer`")
    expires_in: int = Field(alias="expiresIn", ge=0, description="remaining lifetime in seconds", examples=[86400])


class ProcessResponse(BaseModel):
    """Response of every Async API submission (``/v1/process/...``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True, coerce_numbers_to_str=True)

    conversation_id: str = Field(alias="conversationId", examples=["5815170693595136"])
    job_id: str = Field(alias="jobId", examples=["9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"])


class ConversationSummary(BaseModel):
    """One entry of ``GET /v1/conversations``: what a reconciliation needs (other fields are ignored)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    id: str = Field(description="the conversationId")
    name: str | None = Field(None, description="the conversation's name")
    metadata: dict[str, Any] = Field(default_factory=dict, description="the metadata stored with the conversation")


class ConversationList(BaseModel):
    model_config = ConfigDict(extra="ignore")

    conversations: list[ConversationSummary] = Field(description="one page of conversations")


class JobStatus(StrEnum):
    """The complete set of job statuses documented for ``GET /v1/job/{jobId}``."""

    SCHEDULED = "scheduled"
    IN_PROGRESS = "in_progress"
    COMPLETED = "completed"
    FAILED = "failed"

    @property
    def is_final(self) -> bool:
        return self in (JobStatus.COMPLETED, JobStatus.FAILED)


class JobState(BaseModel):
    """Response of ``GET /v1/job/{jobId}``; the engine may add a ``reason`` to a failed job."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)

    id: str = Field(description="the jobId")
    status: JobStatus
    reason: str | None = Field(None, description="why the job failed, when the provider says")

    # A plain enum error would list pydantic internals; say plainly which value was unknown.
    @field_validator("status", mode="before")
    @classmethod
    def _known_status(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in JobStatus.__members__.values():
            known = ", ".join(status.value for status in JobStatus)
            raise ValueError(f"unknown job status {value!r} (known: {known})")
        return value


class InsightEndpoint(StrEnum):
    """The nine Conversation API reads Parley bundles; each value is the key the result is stored under."""

    MESSAGES = "messages"
    TOPICS = "topics"
    QUESTIONS = "questions"
    ACTION_ITEMS = "actionItems"
    FOLLOW_UPS = "followUps"
    ENTITIES = "entities"
    ANALYTICS = "analytics"
    SUMMARY = "summary"
    MEMBERS = "members"

    @property
    def key(self) -> str:
        return self.value

    @property
    def query(self) -> dict[str, str]:
        """Query parameters sent with this read (sentiment on messages and topics, topic hierarchy)."""
        return dict(_INSIGHT_QUERIES.get(self, {}))

    def path(self, conversation_id: str) -> str:
        """``/v1/conversations/{id}/<segment>`` with the id escaped as one path segment."""
        return f"/v1/conversations/{quote(conversation_id, safe='')}/{_INSIGHT_SEGMENTS[self]}"


_INSIGHT_SEGMENTS: dict[InsightEndpoint, str] = {
    InsightEndpoint.MESSAGES: "messages",
    InsightEndpoint.TOPICS: "topics",
    InsightEndpoint.QUESTIONS: "questions",
    InsightEndpoint.ACTION_ITEMS: "action-items",
    InsightEndpoint.FOLLOW_UPS: "follow-ups",
    InsightEndpoint.ENTITIES: "entities",
    InsightEndpoint.ANALYTICS: "analytics",
    InsightEndpoint.SUMMARY: "summary",
    InsightEndpoint.MEMBERS: "members",
}

_INSIGHT_QUERIES: dict[InsightEndpoint, dict[str, str]] = {
    InsightEndpoint.MESSAGES: {"sentiment": "true"},
    InsightEndpoint.TOPICS: {"sentiment": "true", "parentRefs": "true"},
}
