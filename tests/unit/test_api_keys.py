"""API keys: the shared dependency on a small app, ingest's router behind it, and the PARLEY_API_KEYS setting."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from parley_ingest.http_api import build_router
from parley_ingest.ledger import RequestLedger
from parley_ingest.settings import IngestSettings
from parley_ingest.submission import Submitter
from parley_shared.api_keys import ApiKeyCheck
from parley_shared.events import JobSubmitted
from parley_shared.http_errors import install_error_handlers
from parley_shared.provider import ProviderClient
from parley_shared.settings import ProviderSettings
from pydantic import SecretStr

KEYS = [SecretStr("key-for-the-crm-0123456789"), SecretStr("key-for-the-dialer-9876543210")]
MESSAGES = [{"payload": {"content": "Can we ship on Friday?"}, "from": {"userId": "ann@example.com", "name": "Ann"}}]


def small_app(keys: list[SecretStr]) -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)
    guarded = APIRouter(dependencies=[Depends(ApiKeyCheck(keys))])

    @guarded.get("/private")
    async def private() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    app.include_router(guarded)
    return app


async def get(app: FastAPI, path: str, headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        return await client.get(path, headers=headers or {})


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer key-for-the-crm-0123456789"},
        {"Authorization": "bearer key-for-the-dialer-9876543210"},
        {"x-api-key": "key-for-the-dialer-9876543210"},
        {"Authorization": "Bearer not-a-key", "x-api-key": "key-for-the-crm-0123456789"},
    ],
)
async def test_any_configured_key_in_either_header_gets_through(headers: dict[str, str]) -> None:
    response = await get(small_app(KEYS), "/private", headers)
    assert response.status_code == 200
    assert response.json() == {"ok": "yes"}


@pytest.mark.parametrize(
    ("headers", "message"),
    [
        ({}, "this API needs an API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'"),
        ({"Authorization": "Basic a2V5LWZvci10aGUtY3JtOg=="}, "this API needs an API key"),
        ({"Authorization": "Bearer key-for-the-crm"}, "the API key is not valid"),
        ({"x-api-key": "key-for-the-crm-0123456789 "}, "the API key is not valid"),
        ({"x-api-key": "KEY-FOR-THE-CRM-0123456789"}, "the API key is not valid"),
    ],
)
async def test_missing_or_wrong_keys_get_401_with_a_message(headers: dict[str, str], message: str) -> None:
    response = await get(small_app(KEYS), "/private", headers)
    assert response.status_code == 401
    assert response.json()["message"].startswith(message)
    assert set(response.json()) == {"message"}


async def test_health_stays_open_and_no_keys_means_no_check() -> None:
    assert (await get(small_app(KEYS), "/healthz")).status_code == 200
    assert (await get(small_app([]), "/private")).status_code == 200


def test_the_check_compares_against_every_key_without_revealing_them() -> None:
    check = ApiKeyCheck(KEYS)
    assert check.accepts("key-for-the-dialer-9876543210")
    assert not check.accepts("")
    assert not check.accepts("key-for-the-dialer-987654321")
    assert "key-for" not in repr(check)


def test_parley_api_keys_is_a_comma_separated_list_of_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_API_KEYS", " key-for-the-crm-0123456789 ,key-for-the-dialer-9876543210,")
    settings = IngestSettings()
    assert [key.get_secret_value() for key in settings.api_keys] == [k.get_secret_value() for k in KEYS]
    assert "key-for" not in repr(settings)
    monkeypatch.setenv("PARLEY_API_KEYS", "")
    assert IngestSettings().api_keys == ()
    monkeypatch.delenv("PARLEY_API_KEYS")
    assert IngestSettings().api_keys == ()


# --- ingest's router --------------------------------------------------------------------------------------


def provider_double(request: httpx.Request) -> httpx.Response:
    if request.url.path == "/oauth2/token:generate":
        return httpx.Response(200, json={"accessToken": "provider-token-abcdef", "expiresIn": 3600})
    return httpx.Response(201, json={"conversationId": "5815170693595136", "jobId": "job-1"})


@asynccontextmanager
async def ingest_client(keys: list[SecretStr]) -> AsyncIterator[tuple[httpx.AsyncClient, list[JobSubmitted]]]:
    published: list[JobSubmitted] = []

    async def publish(submitted: JobSubmitted) -> None:
        published.append(submitted)

    provider = ProviderClient(ProviderSettings(url="http://provider"), transport=httpx.MockTransport(provider_double))
    app = FastAPI()
    install_error_handlers(app)
    submitter = Submitter(provider, RequestLedger(), webhook_url=None)
    app.include_router(build_router(submitter, publish, max_upload_bytes=1024, api_keys=keys))
    async with (
        provider,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as client,
    ):
        yield client, published


async def test_ingest_refuses_submissions_without_a_key_and_calls_no_provider() -> None:
    async with ingest_client(KEYS) as (client, published):
        for path, kwargs in [
            ("/v1/process/text", {"json": {"messages": MESSAGES}}),
            ("/v1/process/audio/url", {"json": {"url": "https://media.example/a.wav"}}),
            ("/v1/process/audio", {"content": b"RIFF", "headers": {"Content-Type": "audio/wav"}}),
        ]:
            refused = await client.post(path, **kwargs)  # type: ignore[arg-type]
            assert refused.status_code == 401, path
            assert "API key" in refused.json()["message"]
        wrong = await client.post("/v1/process/text", json={"messages": MESSAGES}, headers={"x-api-key": "guess"})
        assert wrong.status_code == 401
        assert published == []

        accepted = await client.post(
            "/v1/process/text",
            json={"messages": MESSAGES},
            headers={"Authorization": "Bearer key-for-the-crm-0123456789"},
        )
        assert accepted.status_code == 202, accepted.text
        assert json.loads(accepted.text)["jobId"] == "job-1"
        assert [s.job_id for s in published] == ["job-1"]


async def test_ingest_without_keys_accepts_submissions_as_before() -> None:
    async with ingest_client([]) as (client, published):
        accepted = await client.post("/v1/process/text", json={"messages": MESSAGES})
        assert accepted.status_code == 202, accepted.text
        assert len(published) == 1
