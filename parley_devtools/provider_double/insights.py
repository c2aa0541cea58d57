"""Conversation API bodies (symbl-api.md §4) derived cheaply and deterministically from completed content.

No analysis happens here, only rules a test can predict: questions are messages ending in "?", action items
are messages containing "will" or "let's", follow-ups mention "follow up", dates are weekday and month names,
topics are the most mentioned long words, and the members are the distinct speakers.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_devtools.provider_double.records import Conversation

# What an audio or video submission "transcribes" to: one message that is both a question and an action item.
FIXED_TRANSCRIPT = "Thanks for joining, we will send the revised proposal by Friday, does that work for you?"
DEFAULT_SPEAKER = "Speaker 1"
_SYNTHETIC_START = datetime(2020, 7, 21, 16, 0, tzinfo=UTC)
_SYNTHETIC_MESSAGE_SECONDS = 5.0
_ACTION_ITEM = re.compile(r"\bwill\b|\blet'?s\b", re.IGNORECASE)
_FOLLOW_UP = re.compile(r"\bfollow[ -]?up\b", re.IGNORECASE)
_WORD = re.compile(r"[A-Za-z][A-Za-z']*")
_DATE_WORDS = re.compile(
    r"\b(?:monday|tuesday|wednesday|thursday|friday|saturday|sunday|today|tomorrow|january|february|march"
    r"|april|may|june|july|august|september|october|november|december)\b",
    re.IGNORECASE,
)
_POSITIVE_WORDS = re.compile(r"\b(?:great|good|thanks?|excellent|happy|glad|love|perfect|awesome)\b", re.I)
_NEGATIVE_WORDS = re.compile(r"\b(?:bad|problem|issue|angry|sad|terrible|wrong|broken|delay|delayed)\b", re.I)
_TOPIC_STOP_WORDS = frozenset(
    re.findall(
        r"\S+",
        "about after again being could doesn't everyone from have just should thanks their there these thing "
        "think those through what when where which while would your yours that this with will",
    )
)


@dataclass(frozen=True, slots=True)
class _Speaker:
    member_id: str
    name: str
    user_id: str | None

    def as_from(self) -> dict[str, Any]:
        return {"id": self.member_id, "name": self.name, "userId": self.user_id}

    def as_member(self) -> dict[str, Any]:
        member: dict[str, Any] = {"id": self.member_id, "name": self.name}
        if self.user_id and "@" in self.user_id:
            member["email"] = self.user_id
        return member


@dataclass(frozen=True, slots=True)
class _Message:
    message_id: str
    text: str
    speaker: _Speaker
    start: datetime
    end: datetime
    time_offset: float


def _numeric_id(*parts: str) -> str:
    """A stable 16-digit numeric id, the format Symbl uses for messages and insights."""
    digest = int(hashlib.blake2b(":".join(parts).encode(), digest_size=8).hexdigest(), 16)
    return str(10**15 + digest % (9 * 10**15))


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _analyse(conversation: Conversation) -> list[_Message]:
    conversation_id = conversation.conversation_id
    speakers: dict[str, _Speaker] = {}
    messages: list[_Message] = []
    cursor = _SYNTHETIC_START
    first_start: datetime | None = None
    for index, source in enumerate(conversation.completed_content):
        name = source.speaker_name or source.speaker_user_id or DEFAULT_SPEAKER
        # A speaker is known by userId when one is given, else by name ("Natalia" is natalia@… seen earlier).
        key = f"user:{source.speaker_user_id}" if source.speaker_user_id else f"name:{name}"
        speaker = speakers.get(key)
        if speaker is None:
            member_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"parley-double:{conversation_id}:{key}"))
            speaker = speakers[key] = _Speaker(member_id, name, source.speaker_user_id)
            speakers.setdefault(f"name:{name}", speaker)
        start = _parse_time(source.start_time) or cursor
        end = _parse_time(source.end_time) or start + timedelta(seconds=_SYNTHETIC_MESSAGE_SECONDS)
        first_start = first_start or start
        cursor = max(end, start)
        messages.append(
            _Message(
                message_id=_numeric_id(conversation_id, "message", str(index)),
                text=source.text,
                speaker=speaker,
                start=start,
                end=end,
                time_offset=(start - first_start).total_seconds(),
            )
        )
    return messages


def _sentiment(text: str) -> dict[str, Any]:
    positive = _POSITIVE_WORDS.search(text) is not None
    negative = _NEGATIVE_WORDS.search(text) is not None
    score = 0.6 * positive - 0.6 * negative
    suggested = "positive" if score > 0.3 else "negative" if score < -0.3 else "neutral"
    return {"polarity": {"score": round(score, 2)}, "suggested": suggested}


def _insight(message: _Message, kind: str, kind_name: str) -> dict[str, Any]:
    return {
        "id": _numeric_id(message.message_id, kind),
        "text": message.text,
        "type": kind_name,
        "score": 0.9,
        "messageIds": [message.message_id],
        "from": message.speaker.as_from(),
    }


def _action_like(message: _Message, kind: str, kind_name: str) -> dict[str, Any]:
    item = _insight(message, kind, kind_name)
    item.update(
        entities=[],
        phrases=[],
        definitive=True,
        assignee={key: value for key, value in message.speaker.as_member().items() if key != "id"},
    )
    return item


def messages_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    return {
        "messages": [
            {
                "id": m.message_id,
                "text": m.text,
                "from": m.speaker.as_from(),
                "startTime": _iso(m.start),
                "endTime": _iso(m.end),
                "timeOffset": m.time_offset,
                "duration": (m.end - m.start).total_seconds(),
                "conversationId": conversation.conversation_id,
                "phrases": [],
                "sentiment": _sentiment(m.text),
            }
            for m in messages
        ]
    }


def questions_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    questions = [_insight(m, "question", "question") for m in messages if m.text.rstrip().endswith("?")]
    return {"questions": questions}


def action_items_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    items = [_action_like(m, "action", "action_item") for m in messages if _ACTION_ITEM.search(m.text)]
    return {"actionItems": items}


def follow_ups_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    follow_ups = []
    for m in messages:
        if _FOLLOW_UP.search(m.text):
            item = _action_like(m, "follow-up", "follow_up")
            item["dueBy"] = _iso(m.start + timedelta(days=1))
            follow_ups.append(item)
    return {"followUps": follow_ups}


def insights_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    return {
        "insights": questions_body(conversation, messages)["questions"]
        + action_items_body(conversation, messages)["actionItems"]
    }


def topics_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    mentions: dict[str, list[str]] = {}
    for m in messages:
        for word in dict.fromkeys(w.lower() for w in _WORD.findall(m.text)):
            if len(word) >= 5 and word not in _TOPIC_STOP_WORDS:
                mentions.setdefault(word, []).append(m.message_id)
    ranked = sorted(mentions.items(), key=lambda item: -len(item[1]))[:3]
    return {
        "topics": [
            {
                "id": _numeric_id(conversation.conversation_id, "topic", word),
                "text": word,
                "type": "topic",
                "score": round(len(ids) / len(messages), 2),
                "messageIds": ids,
                "parentRefs": [],
            }
            for word, ids in ranked
        ]
    }


def entities_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    found: dict[str, dict[str, Any]] = {}
    for m in messages:
        for match in _DATE_WORDS.finditer(m.text):
            value = match.group().lower()
            entity = found.setdefault(value, {"type": "date", "value": value, "text": match.group(), "messageRefs": []})
            entity["messageRefs"].append({"id": m.message_id, "text": m.text, "offset": match.start()})
    return {"entities": list(found.values())}


def members_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    speakers = {m.speaker.member_id: m.speaker for m in messages}
    return {"members": [speaker.as_member() for speaker in speakers.values()]}


def summary_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    if not messages:
        return {"summary": []}
    opening = messages[:2]
    return {
        "summary": [
            {
                "id": _numeric_id(conversation.conversation_id, "summary"),
                "text": " ".join(m.text for m in opening),
                "messageRefs": [{"id": m.message_id} for m in opening],
            }
        ]
    }


def analytics_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    if not messages:
        return {"metrics": [], "members": []}
    span = max((max(m.end for m in messages) - messages[0].start).total_seconds(), 1e-9)
    talk: dict[str, float] = {}
    words: dict[str, int] = {}
    speakers: dict[str, _Speaker] = {}
    for m in messages:
        key = m.speaker.member_id
        speakers[key] = m.speaker
        talk[key] = talk.get(key, 0.0) + (m.end - m.start).total_seconds()
        words[key] = words.get(key, 0) + len(_WORD.findall(m.text))
    total_talk = min(sum(talk.values()), span)

    def metric(kind: str, seconds: float) -> dict[str, Any]:
        return {"type": kind, "percent": round(100 * seconds / span, 2), "seconds": round(seconds, 3)}

    return {
        "metrics": [
            metric("total_silence", span - total_talk),
            metric("total_talk_time", total_talk),
            metric("total_overlap", 0.0),
        ],
        "members": [
            {
                "id": key,
                "name": speaker.name,
                "userId": speaker.user_id,
                "pace": {"wpm": round(60 * words[key] / talk[key]) if talk[key] else 0},
                "talkTime": {"percentage": round(100 * talk[key] / span, 2), "seconds": round(talk[key], 3)},
                "listenTime": {
                    "percentage": round(100 * max(span - talk[key], 0) / span, 2),
                    "seconds": round(max(span - talk[key], 0), 3),
                },
                "overlap": {"overlapDuration": 0, "overlappingMembers": []},
            }
            for key, speaker in speakers.items()
        ],
    }


def conversation_body(conversation: Conversation, messages: list[_Message]) -> dict[str, Any]:
    return {
        "id": conversation.conversation_id,
        "type": "meeting",
        "name": conversation.name,
        "startTime": _iso(messages[0].start) if messages else None,
        "endTime": _iso(max(m.end for m in messages)) if messages else None,
        "members": members_body(conversation, messages)["members"],
        "metadata": {},
    }


def trackers_detected_body(conversation: Conversation, messages: list[_Message]) -> list[Any]:
    return []


InsightBuilder = Callable[[Conversation, list[_Message]], Any]

# Keyed by the path segment after /v1/conversations/{id}/ ("" is the conversation itself).
INSIGHT_BUILDERS: dict[str, InsightBuilder] = {
    "": conversation_body,
    "messages": messages_body,
    "topics": topics_body,
    "questions": questions_body,
    "action-items": action_items_body,
    "follow-ups": follow_ups_body,
    "insights": insights_body,
    "entities": entities_body,
    "analytics": analytics_body,
    "summary": summary_body,
    "members": members_body,
    "trackers-detected": trackers_detected_body,
}


def build_insight(conversation: Conversation, aspect: str) -> Any:
    """The body of ``GET /v1/conversations/{id}/{aspect}`` for what has completed so far."""
    return INSIGHT_BUILDERS[aspect](conversation, _analyse(conversation))
