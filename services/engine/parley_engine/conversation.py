"""The engine's internal model of a conversation, shared by the API, the job runner and the analysis.

Input (text messages or transcribed speech) becomes ``Utterance``s; analysis turns the utterances of a whole
conversation into ``ConversationInsights``: every Conversation API response body, in Symbl's shapes, ready to
store and serve. Times inside a conversation are seconds from its start; absolute times are UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from parley_engine.redaction.options import RedactionOptions


class Speaker(BaseModel):
    """Who said something: Symbl's ``from`` object."""

    id: str | None = Field(None, description="stable id of the member (UUID) once known")
    name: str | None = None
    user_id: str | None = Field(None, description="Symbl's userId, usually an email address")
    email: str | None = None


class Word(BaseModel):
    word: str
    start_offset: float = Field(description="seconds from the conversation's start")
    end_offset: float
    score: float | None = Field(None, description="recognition confidence 0..1 (speech only)")


class Utterance(BaseModel):
    """One message: a text message as submitted, or a sentence-ish segment of transcribed speech."""

    id: str = Field(description="16-digit numeric message id")
    text: str
    speaker: Speaker = Field(default_factory=Speaker)
    start_offset: float | None = Field(None, description="seconds from the conversation's start")
    end_offset: float | None = None
    words: list[Word] | None = Field(None, description="word timings (speech; estimated for text with timings)")
    channel: int | None = Field(None, description="audio channel it came from, if any")


class Tracker(BaseModel):
    name: str
    vocabulary: list[str]


class CustomEntity(BaseModel):
    """A request's custom entity: ``{customType, value?, text}``; ``text`` is what to look for."""

    custom_type: str
    text: str
    value: str | None = None


class AnalysisOptions(BaseModel):
    """The Async API options that change analysis."""

    confidence_threshold: float = 0.5
    detect_phrases: bool = False
    detect_entities: bool = True
    entities: list[CustomEntity] = Field(default_factory=list)
    trackers: list[Tracker] = Field(default_factory=list)
    enable_all_trackers: bool = False
    enable_summary: bool = True
    redaction: RedactionOptions = Field(
        default_factory=RedactionOptions, description="PII redaction, applied to utterances before they are stored"
    )


class ConversationInsights(BaseModel):
    """Every Conversation API body for one conversation, in Symbl's shapes (camelCase keys).

    Items carry everything the optional query parameters can ask for (``sentiment``, ``words``, ``parentRefs``);
    the API removes what a request did not ask for.
    """

    messages: list[dict[str, Any]] = Field(default_factory=list)
    topics: list[dict[str, Any]] = Field(default_factory=list)
    questions: list[dict[str, Any]] = Field(default_factory=list)
    action_items: list[dict[str, Any]] = Field(default_factory=list)
    follow_ups: list[dict[str, Any]] = Field(default_factory=list)
    entities: list[dict[str, Any]] = Field(default_factory=list)
    summary: list[dict[str, Any]] = Field(default_factory=list)
    analytics: dict[str, Any] = Field(default_factory=dict)
    trackers: list[dict[str, Any]] = Field(default_factory=list)
    members: list[dict[str, Any]] = Field(default_factory=list)


def conversation_time(start: datetime | None, offset: float | None) -> str | None:
    """ISO-8601 UTC time ``offset`` seconds after ``start`` (Symbl's ``2020-07-21T16:02:19.010Z`` form)."""
    if start is None or offset is None:
        return None
    from datetime import timedelta

    moment = start + timedelta(seconds=offset)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def find_member(insights: dict[str, Any], member_id: str) -> dict[str, Any] | None:
    """The member with ``member_id`` among stored insights' ``members``, if there is one."""
    return next((member for member in insights.get("members", []) if member.get("id") == member_id), None)


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


def renamed_speaker(
    speaker: dict[str, Any], member: dict[str, Any], name: str | None, email: str | None
) -> dict[str, Any] | None:
    """A stored utterance's speaker after ``member`` was renamed; None when the utterance is someone else's.

    The speaker is the member by id or, when it has no id yet, by the member's former email (or userId) or name.
    """
    same_id = speaker.get("id") == member["id"]
    same_person = speaker.get("id") is None and (
        (member.get("email") and member.get("email") in (speaker.get("email"), speaker.get("user_id")))
        or (member.get("name") and speaker.get("name") == member.get("name"))
    )
    if not (same_id or same_person):
        return None
    renamed = {**speaker, "id": member["id"], "name": name if name is not None else speaker.get("name")}
    if email is not None:
        renamed["email"] = email
    return renamed
