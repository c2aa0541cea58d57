"""The events on the wire: camelCase JSON, round trips, ProcessRequested rules, discriminated reads, dead letters."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest
from parley_shared.events import (
    DeadLetter,
    InsightsReady,
    JobCompleted,
    JobFailed,
    JobResolved,
    JobSubmitted,
    MediaKind,
    ProcessRequested,
    completion_adapter,
    jobs_topic_adapter,
)
from parley_shared.kafka.dead_letters import dead_letter, dead_letter_stream
from parley_shared.validation import describe_validation_error
from pydantic import ValidationError

SUBMITTED_AT = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MESSAGES = [{"payload": {"content": "Hello, can we ship on Friday?"}, "from": {"userId": "a@example.com"}}]


def job_submitted() -> JobSubmitted:
    return JobSubmitted(
        request_id="req-1",
        conversation_id="5815170693595136",
        job_id="9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
        kind=MediaKind.AUDIO,
        submitted_at=SUBMITTED_AT,
        webhook_url="http://127.0.0.1:8702/webhooks/jobs",
    )


def test_the_wire_format_is_camel_case_json() -> None:
    wire = json.loads(job_submitted().to_wire())
    assert set(wire) == {
        "eventId",
        "eventType",
        "schemaVersion",
        "occurredAt",
        "requestId",
        "conversationId",
        "jobId",
        "kind",
        "submittedAt",
        "webhookUrl",
    }
    assert wire["eventType"] == "JobSubmitted"
    assert wire["schemaVersion"] == 1
    assert wire["kind"] == "audio"
    assert datetime.fromisoformat(wire["submittedAt"]) == SUBMITTED_AT


def test_absent_optional_fields_are_left_out_of_the_wire() -> None:
    event = JobSubmitted(request_id="r", conversation_id="c", job_id="j", kind=MediaKind.TEXT)
    assert "webhookUrl" not in json.loads(event.to_wire())


@pytest.mark.parametrize(
    "event",
    [
        job_submitted(),
        JobCompleted(request_id="r", conversation_id="c", job_id="j", submitted_at=SUBMITTED_AT, detected_by="poll"),
        JobFailed(request_id="r", conversation_id="c", job_id="j", submitted_at=SUBMITTED_AT, reason="deadline"),
        JobResolved(request_id="r", conversation_id="c", job_id="j", outcome="failed"),
        InsightsReady(
            request_id="r",
            conversation_id="c",
            job_id="j",
            completed_at=SUBMITTED_AT,
            insights={"topics": {"topics": [{"text": "shipping"}]}, "summary": {"summary": []}},
        ),
        ProcessRequested(request_id="r", kind=MediaKind.TEXT, messages=MESSAGES, options={"detectPhrases": True}),
    ],
    ids=lambda event: type(event).__name__,
)
def test_every_event_survives_a_round_trip(event: Any) -> None:
    assert type(event).model_validate_json(event.to_wire()) == event


def test_events_also_accept_snake_case_names_in_python() -> None:
    event = JobResolved.model_validate({"requestId": "r", "conversation_id": "c", "jobId": "j", "outcome": "completed"})
    assert event.conversation_id == "c"


def test_an_unknown_field_is_refused() -> None:
    wire = json.loads(job_submitted().to_wire())
    wire["surprise"] = True
    with pytest.raises(ValidationError, match="surprise"):
        JobSubmitted.model_validate(wire)


def test_a_hostile_id_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"job_id|jobId"):
        JobResolved(request_id="r", conversation_id="c", job_id="x" * 129, outcome="completed")
    with pytest.raises(ValidationError):
        JobResolved(request_id="r/../../etc", conversation_id="c", job_id="j", outcome="completed")


# ---- ProcessRequested ---------------------------------------------------------------------------------------


def test_a_text_request_needs_messages() -> None:
    with pytest.raises(ValidationError, match="messages"):
        ProcessRequested(request_id="r", kind=MediaKind.TEXT)
    with pytest.raises(ValidationError, match="messages"):
        ProcessRequested(request_id="r", kind=MediaKind.TEXT, messages=[])


def test_a_message_needs_content() -> None:
    with pytest.raises(ValidationError) as raised:
        ProcessRequested(request_id="r", kind=MediaKind.TEXT, messages=[{"payload": {"content": ""}}])
    assert "messages.0.payload.content" in describe_validation_error(raised.value)


def test_a_text_request_carries_no_url() -> None:
    with pytest.raises(ValidationError, match="url"):
        ProcessRequested(request_id="r", kind=MediaKind.TEXT, messages=MESSAGES, url="https://example.com/a.mp3")


@pytest.mark.parametrize("kind", [MediaKind.AUDIO, MediaKind.VIDEO])
def test_a_media_request_needs_an_http_url(kind: MediaKind) -> None:
    with pytest.raises(ValidationError, match="url"):
        ProcessRequested(request_id="r", kind=kind)
    with pytest.raises(ValidationError, match="http"):
        ProcessRequested(request_id="r", kind=kind, url="file:///etc/passwd")
    with pytest.raises(ValidationError, match="http"):
        ProcessRequested(request_id="r", kind=kind, url="ftp://example.com/a.mp4")
    accepted = ProcessRequested(request_id="r", kind=kind, url="https://example.com/call.mp4")
    assert accepted.url == "https://example.com/call.mp4"


def test_a_different_schema_version_is_refused() -> None:
    wire = json.loads(ProcessRequested(request_id="r", kind=MediaKind.TEXT, messages=MESSAGES).to_wire())
    wire["schemaVersion"] = 2
    with pytest.raises(ValidationError, match=r"schemaVersion|schema_version"):
        ProcessRequested.model_validate(wire)


def test_the_provider_body_carries_options_name_and_content() -> None:
    request = ProcessRequested(
        request_id="r",
        kind=MediaKind.TEXT,
        name="Weekly sync",
        messages=MESSAGES,
        options={"confidenceThreshold": 0.7, "detectPhrases": True},
    )
    body = request.provider_body()
    assert body["name"] == "Weekly sync"
    assert body["confidenceThreshold"] == 0.7
    assert body["detectPhrases"] is True
    assert body["messages"][0]["payload"] == {"content": "Hello, can we ship on Friday?", "contentType": "text/plain"}
    assert body["messages"][0]["from"] == {"userId": "a@example.com"}
    assert "requestId" not in body


# ---- discriminated reads ------------------------------------------------------------------------------------


def test_the_jobs_topic_adapter_reads_each_event_type() -> None:
    submitted = job_submitted()
    resolved = JobResolved(request_id="r", conversation_id="c", job_id="j", outcome="completed")
    assert jobs_topic_adapter.validate_json(submitted.to_wire()) == submitted
    assert jobs_topic_adapter.validate_json(resolved.to_wire()) == resolved


def test_the_completion_adapter_reads_each_event_type() -> None:
    completed = JobCompleted(
        request_id="r", conversation_id="c", job_id="j", submitted_at=SUBMITTED_AT, detected_by="poll"
    )
    failed = JobFailed(request_id="r", conversation_id="c", job_id="j", submitted_at=SUBMITTED_AT, reason="deadline")
    assert isinstance(completion_adapter.validate_json(completed.to_wire()), JobCompleted)
    assert isinstance(completion_adapter.validate_json(failed.to_wire()), JobFailed)


def test_an_unknown_event_type_is_refused_by_the_adapters() -> None:
    wire = json.loads(job_submitted().to_wire())
    wire["eventType"] = "JobVanished"
    raw = json.dumps(wire).encode()
    with pytest.raises(ValidationError, match=r"JobVanished|eventType|event_type"):
        jobs_topic_adapter.validate_json(raw)
    with pytest.raises(ValidationError):
        completion_adapter.validate_json(raw)
    # An event of the other topic is just as unknown.
    with pytest.raises(ValidationError):
        completion_adapter.validate_json(job_submitted().to_wire())


def test_a_record_without_event_type_is_refused() -> None:
    wire = json.loads(job_submitted().to_wire())
    del wire["eventType"]
    with pytest.raises(ValidationError):
        jobs_topic_adapter.validate_json(json.dumps(wire))


# ---- dead letters ---------------------------------------------------------------------------------------------

letters_stream = dead_letter_stream("parley.dead-letters", "records no service could handle")


def test_a_dead_letter_carries_the_original_bytes_and_the_ids_it_could_read() -> None:
    original = b'{"requestId": "req-9", "conversationId": "c-9", "jobId": "j-9", "kind": "holo\xc3\xa9gram"}'
    record = letters_stream.record(
        dead_letter(
            service="ingest",
            error=ValueError("kind: Input should be 'text', 'audio' or 'video'"),
            value=original,
            key=b"c-9",
            source_topic="parley.requests",
            source_partition=3,
            source_offset=41,
            attempts=2,
        )
    )
    assert record.topic == "parley.dead-letters"
    assert record.key == b"c-9"
    letter = DeadLetter.model_validate_json(record.value)
    assert base64.b64decode(letter.original_value) == original
    assert letter.original_key is not None
    assert base64.b64decode(letter.original_key) == b"c-9"
    assert (letter.request_id, letter.conversation_id, letter.job_id) == ("req-9", "c-9", "j-9")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == ("parley.requests", 3, 41)
    assert letter.error_type == "ValueError"
    assert "kind" in letter.reason
    assert letter.attempts == 2
    assert letter.service == "ingest"
    assert json.loads(record.value)["eventType"] == "DeadLetter"


@pytest.mark.parametrize("value", [b"\xff\xfe not json", b"[1, 2]", b"", None, b'{"requestId": 7}'])
def test_a_dead_letter_of_unreadable_bytes_has_no_ids_but_keeps_the_bytes(value: bytes | None) -> None:
    record = letters_stream.record(dead_letter(service="ingest", error="not a ProcessRequested", value=value))
    letter = DeadLetter.model_validate_json(record.value)
    assert base64.b64decode(letter.original_value) == (value or b"")
    assert (letter.request_id, letter.conversation_id, letter.job_id) == (None, None, None)
    assert letter.error_type == "InvalidInput"
    assert letter.reason == "not a ProcessRequested"
    assert letter.original_key is None
