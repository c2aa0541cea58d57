"""ingest's HTTP API in process: the real router and Submitter over a fake provider, through httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from parley_ingest.http_api import build_router
from parley_ingest.ledger import RequestLedger
from parley_ingest.settings import IngestSettings
from parley_ingest.submission import Submitter
from parley_shared.events import JobSubmitted, MediaKind
from parley_shared.http_errors import install_error_handlers
from parley_shared.provider import (
    ConversationNotFound,
    ProviderRejected,
    ProviderUnavailable,
)

from tests.support.provider_fakes import FakeAsyncApi

WEBHOOK_URL = "http://127.0.0.1:8702/webhooks/jobs"
MAX_UPLOAD_BYTES = 64
MESSAGES = [{"payload": {"content": "Can we ship on Friday?"}, "from": {"userId": "ann@example.com", "name": "Ann"}}]


@dataclass
class Ingest:
    client: httpx.AsyncClient
    provider: FakeAsyncApi
    published: list[JobSubmitted]


@pytest.fixture
async def ingest() -> AsyncIterator[Ingest]:
    provider = FakeAsyncApi()
    published: list[JobSubmitted] = []

    async def publish_submitted(submitted: JobSubmitted) -> None:
        published.append(submitted)

    submitter = Submitter(provider, RequestLedger(), webhook_url=WEBHOOK_URL)
    app = FastAPI()
    install_error_handlers(app)
    app.include_router(build_router(submitter, publish_submitted, max_upload_bytes=MAX_UPLOAD_BYTES))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest.test") as client:
        yield Ingest(client, provider, published)


# ---- accepted ---------------------------------------------------------------------------------------------------


async def test_a_text_submission_is_accepted_with_its_ids(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/text", json={"messages": MESSAGES, "name": "Release sync", "confidenceThreshold": 0.7}
    )

    assert response.status_code == 202
    accepted = response.json()
    [call] = ingest.provider.calls
    [submitted] = ingest.published
    assert accepted["conversationId"] == submitted.conversation_id == "5815170693595101"
    assert accepted["jobId"] == submitted.job_id
    assert accepted["requestId"] == submitted.request_id
    assert len(accepted["requestId"]) == 36  # a fresh UUID when the caller sent no key
    assert accepted["duplicate"] is False
    assert call.idempotency_key == accepted["requestId"]  # the provider dedupes across replicas and retries
    assert call.body["messages"][0]["payload"]["content"] == "Can we ship on Friday?"
    assert call.body["messages"][0]["from"] == {"userId": "ann@example.com", "name": "Ann"}
    assert call.body["name"] == "Release sync"
    assert call.body["confidenceThreshold"] == 0.7  # Symbl options pass through
    assert call.body["webhookUrl"] == WEBHOOK_URL
    assert submitted.kind == MediaKind.TEXT


async def test_the_same_idempotency_key_twice_gives_the_same_job(ingest: Ingest) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await ingest.client.post("/v1/process/text", json={"messages": MESSAGES}, headers=headers)
    second = await ingest.client.post("/v1/process/text", json={"messages": MESSAGES}, headers=headers)

    assert (first.status_code, second.status_code) == (202, 202)
    assert len(ingest.provider.calls) == 1
    assert second.json()["jobId"] == first.json()["jobId"]
    assert second.json()["conversationId"] == first.json()["conversationId"]
    assert first.json()["requestId"] == second.json()["requestId"] == "order-42"
    assert (first.json()["duplicate"], second.json()["duplicate"]) == (False, True)


async def test_a_request_id_in_the_body_works_like_the_header(ingest: Ingest) -> None:
    body = {"url": "https://media.example.com/call.mp3", "requestId": "upstream-7"}
    first = await ingest.client.post("/v1/process/audio/url", json=body)
    second = await ingest.client.post("/v1/process/audio/url", json=body)

    assert second.json()["duplicate"] is True
    assert second.json()["jobId"] == first.json()["jobId"]
    [call] = ingest.provider.calls
    assert call.kind == "audio"
    assert call.body["url"] == "https://media.example.com/call.mp3"
    assert "requestId" not in call.body
    assert call.idempotency_key == "upstream-7"


async def test_appending_text_goes_to_the_named_conversation(ingest: Ingest) -> None:
    response = await ingest.client.put("/v1/process/text/5815170693595136", json={"messages": MESSAGES})
    assert response.status_code == 202
    assert response.json()["conversationId"] == "5815170693595136"
    assert ingest.provider.calls[0].conversation_id == "5815170693595136"


async def test_an_audio_upload_is_streamed_to_the_provider_with_its_options(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/audio",
        params={"name": "Call", "detectPhrases": "true", "trackers": '[{"name": "Pricing"}]'},
        content=b"RIFF....WAVEfmt ",
        headers={"Content-Type": "audio/wav", "Idempotency-Key": "upload-1"},
    )

    assert response.status_code == 202
    assert response.json()["requestId"] == "upload-1"
    [call] = ingest.provider.calls
    assert call.content == b"RIFF....WAVEfmt "
    assert call.content_type == "audio/wav"
    assert call.content_length == 16
    assert call.idempotency_key == "upload-1"
    assert call.body == {
        "name": "Call",
        "detectPhrases": True,
        "trackers": [{"name": "Pricing"}],
        "webhookUrl": WEBHOOK_URL,
    }
    assert ingest.published[0].kind == MediaKind.AUDIO


# ---- refused ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "field_named"),
    [
        ("/v1/process/text", {"name": "no messages"}, "messages"),
        ("/v1/process/text", {"messages": []}, "messages"),
        ("/v1/process/text", {"messages": [{"payload": {"content": ""}}]}, "content"),
        ("/v1/process/video/url", {"url": "ftp://media.example.com/call.mp4"}, "url"),
        ("/v1/process/audio/url", {"name": "no url"}, "url"),
    ],
)
async def test_an_invalid_body_is_a_400_naming_the_field(
    ingest: Ingest, path: str, body: dict[str, Any], field_named: str
) -> None:
    response = await ingest.client.post(path, json=body)

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/json")
    assert field_named in response.json()["message"]
    assert ingest.provider.calls == []
    assert ingest.published == []


async def test_body_that_is_not_json_is_a_400(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/text", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    assert "message" in response.json()


async def test_a_malformed_idempotency_key_is_a_400(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/text", json={"messages": MESSAGES}, headers={"Idempotency-Key": "a key with spaces"}
    )
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["message"]


async def test_an_audio_upload_with_the_wrong_content_type_is_a_415(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/process/audio", content=b"hello", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "text/plain" in response.json()["message"]
    assert ingest.provider.calls == []


async def test_an_upload_over_the_size_limit_is_a_413(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/video", content=b"x" * (MAX_UPLOAD_BYTES + 1), headers={"Content-Type": "video/mp4"}
    )
    assert response.status_code == 413
    assert str(MAX_UPLOAD_BYTES) in response.json()["message"]
    assert ingest.provider.calls == []


async def test_a_chunked_upload_over_the_size_limit_is_a_413(ingest: Ingest) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"y" * 16

    response = await ingest.client.post("/v1/process/audio", content=chunks(), headers={"Content-Type": "audio/mpeg"})

    assert response.status_code == 413
    assert ingest.published == []


async def test_an_empty_upload_is_a_400(ingest: Ingest) -> None:
    response = await ingest.client.post("/v1/process/audio", content=b"", headers={"Content-Type": "audio/mpeg"})
    assert response.status_code == 400
    assert "empty" in response.json()["message"]


async def test_a_query_option_that_is_not_json_is_a_400(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/audio",
        params={"trackers": "[{broken"},
        content=b"abc",
        headers={"Content-Type": "audio/mpeg"},
    )
    assert response.status_code == 400
    assert "trackers" in response.json()["message"]


async def test_an_empty_query_option_is_passed_through(ingest: Ingest) -> None:
    response = await ingest.client.post(
        "/v1/process/audio?name=", content=b"abc", headers={"Content-Type": "audio/mpeg"}
    )
    assert response.status_code == 202
    assert ingest.provider.calls[0].body["name"] == ""


# ---- provider errors ------------------------------------------------------------------------------------------


async def test_a_provider_rejection_is_a_4xx_with_its_message(ingest: Ingest) -> None:
    ingest.provider.error = ProviderRejected(
        "POST /v1/process/text: 422 messages[0].duration.startTime is not ISO-8601",
        status=422,
        provider_message="messages[0].duration.startTime is not ISO-8601",
    )
    response = await ingest.client.post("/v1/process/text", json={"messages": MESSAGES})

    assert response.status_code == 422
    assert "startTime is not ISO-8601" in response.json()["message"]
    assert ingest.published == []


async def test_a_rejected_request_can_be_retried_with_the_same_key(ingest: Ingest) -> None:
    ingest.provider.error = ProviderRejected("POST /v1/process/text: 400 bad", status=400, provider_message="bad")
    headers = {"Idempotency-Key": "retry-me"}
    refused = await ingest.client.post("/v1/process/text", json={"messages": MESSAGES}, headers=headers)
    retried = await ingest.client.post("/v1/process/text", json={"messages": MESSAGES}, headers=headers)
    assert refused.status_code == 400
    assert retried.status_code == 202
    assert retried.json()["duplicate"] is False


async def test_an_unavailable_provider_is_a_503(ingest: Ingest) -> None:
    ingest.provider.error = ProviderUnavailable("POST /v1/process/audio/url: 503", status=503, attempts=6)
    response = await ingest.client.post("/v1/process/audio/url", json={"url": "https://media.example.com/a.mp3"})

    assert response.status_code == 503
    assert "unavailable" in response.json()["message"]
    assert ingest.published == []


async def test_an_unknown_conversation_is_a_404(ingest: Ingest) -> None:
    ingest.provider.error = ConversationNotFound("5815170693595136")
    response = await ingest.client.put("/v1/process/text/5815170693595136", json={"messages": MESSAGES})
    assert response.status_code == 404
    assert "5815170693595136" in response.json()["message"]


# ---- the pipeline's redaction -----------------------------------------------------------------------------------


async def test_the_pipelines_redaction_goes_with_every_submission_and_replaces_the_requests(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    provider = FakeAsyncApi()
    monkeypatch.setenv("PARLEY_REDACTION", '{"enabled": true, "entityTypes": ["PHONE_NUMBER"]}')
    settings = IngestSettings()
    assert settings.redaction is not None
    submitter = Submitter(
        provider, RequestLedger(), webhook_url=WEBHOOK_URL, redaction=settings.redaction.provider_option()
    )
    app = FastAPI()
    install_error_handlers(app)

    async def publish(_: JobSubmitted) -> None:
        return None

    app.include_router(build_router(submitter, publish, max_upload_bytes=MAX_UPLOAD_BYTES))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest.test") as client:
        await client.post("/v1/process/text", json={"messages": MESSAGES, "redaction": {"enabled": False}})
        await client.post("/v1/process/audio/url", json={"url": "https://media.example/call.wav"})
        await client.post("/v1/process/audio", content=b"RIFF....WAVEfmt ", headers={"Content-Type": "audio/wav"})

    wanted = {"enabled": True, "entityTypes": ["PHONE_NUMBER"], "substitution": "entityType", "redactAudio": False}
    assert [call.body["redaction"] for call in provider.calls] == [wanted, wanted, wanted]


def test_a_redaction_setting_that_is_not_a_policy_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_REDACTION", '{"enabled": true, "substitution": "stars"}')
    with pytest.raises(ValueError, match="redaction"):
        IngestSettings()
