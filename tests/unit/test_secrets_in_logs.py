"""No secret reaches a log line, an error message or a settings dump.

The provider double below echoes whatever secret it received (the app secret, the bearer token) in its 401, 4xx
and 5xx bodies, as careless real services do; everything the client logs (at DEBUG) and raises must still be
clean. Likewise ingest's API under a wrong or missing API key, and every service's settings as repr, str and JSON.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from parley_engine.settings import EngineSettings
from parley_ingest.http_api import build_router
from parley_ingest.ledger import RequestLedger
from parley_ingest.settings import IngestSettings
from parley_ingest.submission import Submitter
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.events import JobSubmitted
from parley_shared.http_errors import install_error_handlers
from parley_shared.provider import ProviderClient, ProviderError
from parley_shared.settings import ProviderSettings
from pydantic import SecretStr, ValidationError

APP_SECRET = "app-secret-5f0c2a9e7d"
ACCESS_TOKENS = ["access-token-one-8e1b44", "access-token-two-31c9d0"]
API_KEYS = ["api-key-crm-77aa01", "api-key-dialer-19bc02"]
WEBHOOK_SECRET = "webhook-secret-c3d2e1"
SASL_PASSWORD = "sasl-password-0a9b8c"
SECRETS = [APP_SECRET, *ACCESS_TOKENS, *API_KEYS, WEBHOOK_SECRET, SASL_PASSWORD]
MESSAGES = [{"payload": {"content": "Can we ship on Friday?"}, "from": {"userId": "ann@example.com", "name": "Ann"}}]


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, f"{leaked} leaked into: {text[:2000]}"


def everything_about(error: BaseException) -> str:
    """The exception as a log handler would print it (causes and context included) plus its attributes."""
    return "".join(traceback.format_exception(error)) + repr(error) + repr(vars(error))


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog
    records = caplog.records
    assert_no_secret(caplog.text, *(record.getMessage() for record in records), *(str(r.args) for r in records))


class EchoingProvider:
    """A provider that answers with ``failure`` (status, body shape) and puts the secrets it got in the body.

    The token endpoint hands out ``ACCESS_TOKENS`` in turn; ``fail_token`` makes it refuse the credentials.
    """

    def __init__(self, *, status: int, json_body: bool = True, fail_token: bool = False) -> None:
        self.status = status
        self.json_body = json_body
        self.fail_token = fail_token
        self.tokens_issued = 0
        self.requests = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests += 1
        if request.url.path == "/oauth2/token:generate":
            received = json.loads(request.content)
            if self.fail_token:
                return self._echo(401, f"invalid appSecret {received['appSecret']} for appId {received['appId']}")
            token = ACCESS_TOKENS[min(self.tokens_issued, len(ACCESS_TOKENS) - 1)]
            self.tokens_issued += 1
            return httpx.Response(200, json={"accessToken": token, "expiresIn": 3600})
        return self._echo(self.status, f"bad request with {request.headers.get('authorization')} ({APP_SECRET})")

    def _echo(self, status: int, message: str) -> httpx.Response:
        if self.json_body:
            return httpx.Response(status, json={"message": message, "echo": message})
        return httpx.Response(status, text=f"<html><body>{message}</body></html>")


async def no_sleep(_: float) -> None:
    return None


def client_for(provider: EchoingProvider) -> ProviderClient:
    settings = ProviderSettings(
        url="http://provider.example", app_id="parley-test", app_secret=SecretStr(APP_SECRET), max_attempts=3
    )
    return ProviderClient(settings, transport=httpx.MockTransport(provider), sleep=no_sleep)


Call = Callable[[ProviderClient], Any]
CALLS: dict[str, Call] = {
    "get_job": lambda client: client.get_job("job-1"),
    "submit_text": lambda client: client.submit_text({"messages": MESSAGES}),
    "submit_url": lambda client: client.submit_media_url("audio", {"url": "https://media.example/a.wav"}),
    "get_insight": lambda client: client.fetch_insights("5815170693595136"),
}


@pytest.mark.parametrize("json_body", [True, False], ids=["json", "html"])
@pytest.mark.parametrize("status", [400, 401, 403, 422, 429, 500, 502, 503])
@pytest.mark.parametrize("call", sorted(CALLS))
async def test_provider_errors_never_carry_the_secrets_the_provider_echoed(
    logs: pytest.LogCaptureFixture, call: str, status: int, json_body: bool
) -> None:
    provider = EchoingProvider(status=status, json_body=json_body)
    async with client_for(provider) as client:
        with pytest.raises(ProviderError) as raised:
            await CALLS[call](client)
    assert provider.requests >= 2, "the call reached the provider past token generation"
    assert_no_secret(everything_about(raised.value), repr(client))


@pytest.mark.parametrize("json_body", [True, False], ids=["json", "html"])
async def test_refused_credentials_do_not_repeat_the_app_secret(
    logs: pytest.LogCaptureFixture, json_body: bool
) -> None:
    provider = EchoingProvider(status=200, json_body=json_body, fail_token=True)
    async with client_for(provider) as client:
        with pytest.raises(ProviderError) as raised:
            await client.get_job("job-1")
    assert "rejected the credentials" in str(raised.value)
    assert "[redacted]" in str(raised.value), "the provider's words are kept, only the secret is cut out"
    assert_no_secret(everything_about(raised.value))


# --- ingest's API ----------------------------------------------------------------------------------------


def ingest_app(provider: EchoingProvider) -> tuple[FastAPI, ProviderClient]:
    async def publish(_: JobSubmitted) -> None:
        return None

    client = client_for(provider)
    app = FastAPI()
    install_error_handlers(app)
    router = build_router(
        Submitter(client, RequestLedger(), webhook_url=None),
        publish,
        max_upload_bytes=1024,
        api_keys=[SecretStr(key) for key in API_KEYS],
    )
    app.include_router(router)
    return app, client


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"x-api-key": API_KEYS[0][:-1]},
        {"Authorization": f"Bearer {API_KEYS[1]}x"},
        {"Authorization": f"Basic {API_KEYS[0]}"},
    ],
)
async def test_ingest_refusals_name_no_key(logs: pytest.LogCaptureFixture, headers: dict[str, str]) -> None:
    provider = EchoingProvider(status=400)
    app, provider_client = ingest_app(provider)
    async with (
        provider_client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http,
    ):
        response = await http.post("/v1/process/text", json={"messages": MESSAGES}, headers=headers)
    assert response.status_code == 401
    assert provider.requests == 0
    assert_no_secret(response.text, str(response.headers))
    # The near-miss keys the caller sent are not echoed either.
    assert all(value.split()[-1] not in response.text for value in headers.values())


@pytest.mark.parametrize("status", [400, 500])
async def test_ingest_passes_on_provider_errors_without_the_secrets_in_them(
    logs: pytest.LogCaptureFixture, status: int
) -> None:
    provider = EchoingProvider(status=status)
    app, provider_client = ingest_app(provider)
    async with (
        provider_client,
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http,
    ):
        response = await http.post(
            "/v1/process/audio/url", json={"url": "https://media.example/a.wav"}, headers={"x-api-key": API_KEYS[1]}
        )
    assert response.status_code in (400, 502, 503)
    assert "bad request with" in response.json()["message"], "the provider's message is passed on"
    assert_no_secret(response.text)


# --- settings --------------------------------------------------------------------------------------------


def all_settings() -> list[Any]:
    shared: dict[str, Any] = {
        "app_secret": APP_SECRET,
        "kafka": {"security_protocol": "SASL_SSL", "sasl_mechanism": "PLAIN", "sasl_password": SASL_PASSWORD},
    }
    return [
        IngestSettings(api_keys=",".join(API_KEYS), **shared),
        JobWatcherSettings(webhook_secret=WEBHOOK_SECRET, **shared),
        EngineSettings(app_secret=APP_SECRET, webhook_secret=WEBHOOK_SECRET),
    ]


@pytest.mark.parametrize("render", [repr, str, lambda s: s.model_dump_json(), lambda s: str(s.model_dump())])
def test_settings_render_without_secrets(render: Callable[[Any], str]) -> None:
    for settings in all_settings():
        assert_no_secret(render(settings))


def test_settings_hold_the_secrets_they_hide() -> None:
    ingest, watcher, engine = all_settings()
    assert [key.get_secret_value() for key in ingest.api_keys] == API_KEYS
    assert ingest.provider.app_secret.get_secret_value() == APP_SECRET
    assert ingest.kafka.sasl_password.get_secret_value() == SASL_PASSWORD
    assert watcher.webhook_secret.get_secret_value() == WEBHOOK_SECRET
    assert engine.app_secret.get_secret_value() == APP_SECRET


def test_a_settings_validation_error_does_not_print_the_secrets_beside_it() -> None:
    with pytest.raises(ValidationError) as raised:
        IngestSettings(api_keys=",".join(API_KEYS), app_secret=APP_SECRET, http_port="eighty")
    assert "http_port" in str(raised.value)
    assert_no_secret(str(raised.value), repr(raised.value))
