"""The Streaming API's frames: what clients send (typed, validated) and what the engine answers, in Symbl's shapes.

Shapes and their sources are in ``reference/symbl-streaming.md`` (§2 client frames, §3 server frames). Where
Symbl's SDKs disagree, the engine sends what satisfies all of them: ``conversation_completed`` carries the
conversation id both at ``message.conversationId`` and ``message.data.conversationId``; an insight carries both
``payload.content`` and the older ``text``; an error goes out both top-level (Go, Web SDKs) and wrapped as a
``message`` (JS SDK). A Parley extension: ``conversation_created`` and ``recognition_started`` carry the stream's
``jobId`` beside its ``conversationId`` (the job exists, in progress, from the start), so a relay that loses the
connection can still follow the job to its end.
"""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from parley_engine.redaction.options import RedactionOptions
from parley_engine.speech.sentences import RecognizedWord
from pydantic import AliasChoices, AliasGenerator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

PING = "__PING__"
PONG = "__PONG__"
STOP_TYPES = frozenset({"stop_request", "stop_recognition"})


class _Camel(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel), populate_by_name=True, extra="ignore"
    )


class SpeechRecognition(_Camel):
    encoding: str | None = Field(None, description="LINEAR16 (default), MULAW or Opus; any case")
    sample_rate_hertz: int | None = Field(None, description="the audio's sample rate; 16000 when absent")


class StreamTracker(_Camel):
    name: str = Field(min_length=1)
    vocabulary: list[str] = Field(min_length=1)


class StreamSpeaker(_Camel):
    user_id: str | None = Field(None, description="usually an email address")
    name: str | None = None


class StreamConfig(_Camel):
    confidence_threshold: float = Field(0.5, ge=0.0, le=1.0, description="insights below it are not sent")
    language_code: str = Field("en-US", description="BCP-47; this engine recognizes English only")
    meeting_title: str | None = None
    timezone_offset: int | None = Field(None, description="minutes from UTC (accepted, not used)")
    speech_recognition: SpeechRecognition = Field(default_factory=SpeechRecognition)
    # The JS and Web SDKs may send these next to speechRecognition instead of inside it.
    encoding: str | None = None
    sample_rate_hertz: int | None = None
    sentiment: bool = False
    webhook_url: str | None = Field(None, description="a Parley extension: where the stream's job reports status")


class StartRequest(_Camel):
    """``start_request``: everything a stream is configured with."""

    type: Literal["start_request"]
    insight_types: list[str] = Field(
        default_factory=list, description="question, action_item, follow_up (topic accepted); none: no insights"
    )
    config: StreamConfig = Field(default_factory=StreamConfig)
    speaker: StreamSpeaker | None = None
    trackers: list[StreamTracker] | None = None
    custom_vocabulary: list[str] | None = None
    no_connection_timeout: int = Field(
        0,
        ge=0,
        le=1800,
        description="seconds a started stream whose socket dropped without stop_request waits for a socket on the "
        "same connectionId to continue it; 0: it ends at once",
    )
    disconnect_on_stop_request: bool = Field(True, description="false: stop_request pauses the stream, not closes it")
    disconnect_on_stop_request_timeout: int = Field(
        1800, ge=0, le=1800, description="seconds a paused socket is kept after stop_request; 0: closed at once"
    )
    meeting_title: str | None = None
    redaction: RedactionOptions | None = Field(
        None, description="PII redaction of everything the stream recognises, as the Async API's option"
    )
    webhook_url: str | None = Field(
        None,
        validation_alias=AliasChoices("webhookUrl", "webhook_url"),
        description="a Parley extension: where the stream's job reports status (as an Async job's webhookUrl)",
    )

    @field_validator("insight_types", mode="before")
    @classmethod
    def _list_or_nothing(cls, value: Any) -> Any:
        return [] if value is None else value  # the Python SDK sends null; a non-list is treated as none there

    @field_validator("no_connection_timeout", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> Any:
        return 0 if value is None or isinstance(value, bool) else value  # the Go SDK types it as a bool

    @property
    def encoding(self) -> str | None:
        return self.config.speech_recognition.encoding or self.config.encoding

    @property
    def sample_rate(self) -> int:
        return self.config.speech_recognition.sample_rate_hertz or self.config.sample_rate_hertz or 16000

    @property
    def title(self) -> str | None:
        return self.meeting_title or self.config.meeting_title

    @property
    def callback_url(self) -> str | None:
        return self.webhook_url or self.config.webhook_url


class BadFrame(ValueError):
    """A text frame that is not a message this API knows; the message is for the client."""


def parse_text_frame(text: str) -> dict[str, Any]:
    """A client text frame as an object: JSON, or the Python SDK's ``{'type': 'stop_request'}`` (a Python repr)."""
    try:
        value = json.loads(text)
    except ValueError:
        try:
            value = ast.literal_eval(text) if len(text) < 4096 else None
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = None
    if not isinstance(value, dict) or not isinstance(value.get("type"), str):
        raise BadFrame("a text frame must be a JSON object with a type (start_request, stop_request) or __PING__")
    return value


def parse_start_request(data: dict[str, Any]) -> StartRequest:
    try:
        return StartRequest.model_validate(data)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise BadFrame(f"invalid start_request: {where}: {first['msg']}") from None


# Server → client


def platform_message(kind: str, **fields: Any) -> dict[str, Any]:
    return {"type": "message", "message": {"type": kind, **fields}}


def conversation_created(conversation_id: str, job_id: str) -> dict[str, Any]:
    return platform_message("conversation_created", data={"conversationId": conversation_id, "jobId": job_id})


def started_listening() -> dict[str, Any]:
    return platform_message("started_listening")


def recognition_started(conversation_id: str, job_id: str) -> dict[str, Any]:
    return platform_message("recognition_started", data={"conversationId": conversation_id, "jobId": job_id})


def recognition_stopped(conversation_id: str) -> dict[str, Any]:
    return platform_message("recognition_stopped", data={"conversationId": conversation_id})


def conversation_completed(conversation_id: str, job_id: str, summary_url: str) -> dict[str, Any]:
    data = {"conversationId": conversation_id, "jobId": job_id}
    return platform_message(
        "conversation_completed", conversationId=conversation_id, jobId=job_id, summaryUrl=summary_url, data=data
    )


def error_frames(message: str, details: str) -> list[dict[str, Any]]:
    """The same error both ways Symbl's SDKs read one (top-level for Go/Web, wrapped for JS)."""
    body = {"message": message, "details": details}
    return [{"type": "error", **body}, platform_message("error", **body)]


def duration(seconds: float) -> dict[str, str]:
    """Protobuf Duration JSON, as Symbl's recognition_result times are written."""
    whole = int(seconds)
    return {"seconds": str(whole), "nanos": str(round((seconds - whole) * 1e9))}


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def recognition_result(
    words: list[RecognizedWord], *, final: bool, user: dict[str, Any] | None, offset: float
) -> dict[str, Any]:
    """Live transcript; word times are seconds from the stream's start (``offset`` is the utterance's)."""
    transcript = " ".join(word.text for word in words)
    confidence = sum(word.probability for word in words) / len(words) if words else 0.0
    return platform_message(
        "recognition_result",
        isFinal=final,
        payload={
            "raw": {
                "alternatives": [
                    {
                        "words": [
                            {
                                "word": word.text,
                                "startTime": duration(offset + word.start),
                                "endTime": duration(offset + word.end),
                            }
                            for word in words
                        ],
                        "transcript": transcript,
                        "confidence": round(confidence, 4),
                    }
                ]
            }
        },
        punctuated={"transcript": transcript},
        user=user,
    )


def message_response(messages: list[dict[str, Any]], sequence_number: int) -> dict[str, Any]:
    return {"type": "message_response", "messages": messages, "sequenceNumber": sequence_number}


def stream_message(
    message_id: str,
    text: str,
    words: list[RecognizedWord],
    *,
    sender: dict[str, Any],
    start: datetime,
    offset: float,
) -> dict[str, Any]:
    """One final sentence as a ``message_response`` entry (``metadata.words`` is a JSON string, as Symbl's is)."""

    def at(seconds: float) -> str:
        return iso(start + timedelta(seconds=seconds))

    word_times = [{"word": w.text, "startTime": at(offset + w.start), "endTime": at(offset + w.end)} for w in words]
    return {
        "id": message_id,
        "from": sender,
        "payload": {"content": text, "contentType": "text/plain"},
        "channel": {"id": "realtime-api"},
        "metadata": {
            "disablePunctuation": True,
            "originalContent": text,
            "words": json.dumps(word_times, separators=(",", ":")),
            "originalMessageId": message_id,
        },
        "dismissed": False,
        "duration": {
            "startTime": at(offset + words[0].start),
            "endTime": at(offset + words[-1].end),
            "timeOffset": round(offset + words[0].start, 3),
            "duration": round(words[-1].end - words[0].start, 3),
        },
    }


def insight(item: dict[str, Any]) -> dict[str, Any]:
    """A Conversation API question, action item or follow-up as a live ``insight_response`` entry."""
    message_ids = item.get("messageIds") or []
    text = str(item.get("text", ""))
    body: dict[str, Any] = {
        "id": str(item["id"]),
        "type": item["type"],
        "confidence": item.get("score"),
        "messageReference": {"id": message_ids[0] if message_ids else None},
        "hints": [],
        "tags": [],
        "dismissed": False,
        "payload": {"content": text, "contentType": "text/plain"},
        "text": text,
        "from": item.get("from"),
        "entities": item.get("entities") or None,
    }
    if item.get("assignee"):
        body["assignee"] = item["assignee"]
    if item.get("dueBy"):
        body["dueBy"] = {"value": item["dueBy"]}
    return body


def insight_response(insights: list[dict[str, Any]], sequence_number: int) -> dict[str, Any]:
    return {"type": "insight_response", "insights": insights, "sequenceNumber": sequence_number}


def topic(item: dict[str, Any]) -> dict[str, Any]:
    text = str(item.get("text", ""))
    return {
        "id": str(item["id"]),
        "messageReferences": [{"id": i, "relation": "text instance"} for i in item.get("messageIds") or []],
        "phrases": text,
        "rootWords": [{"text": word} for word in text.split()],
        "score": item.get("score"),
        "type": "topic",
    }


def topic_response(topics: list[dict[str, Any]], sequence_number: int) -> dict[str, Any]:
    return {"type": "topic_response", "topics": topics, "sequenceNumber": sequence_number}


def tracker_response(trackers: list[dict[str, Any]], sequence_number: int) -> dict[str, Any]:
    return {"type": "tracker_response", "isFinal": True, "sequenceNumber": sequence_number, "trackers": trackers}
