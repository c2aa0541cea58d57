"""ProviderClient against a scripted provider; retries never really sleep.

Each test body runs twice: through ``httpx.MockTransport`` (a transport handed to the client, as fakes do), and
through the client's own aiohttp session to the same scripted provider served on a loopback socket, the path the
services take. There a scripted ``httpx.ReadTimeout`` makes the server answer too late and a scripted
``httpx.RemoteProtocolError`` makes it drop the connection. A refused connection (``httpx.ConnectError``) can only
be scripted for the mock transport; the tests at the end refuse real connections instead, and check what only a
real connection shows (the connection limit, dropped connections, how an upload's length goes out).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import socket
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from aiohttp import web
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from parley_shared.provider import (
    ConversationNotFound,
    InsightEndpoint,
    JobNotFound,
    JobStatus,
    ProviderAuthError,
    ProviderClient,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    ResponseObservation,
    RetryPolicy,
    UnexpectedProviderResponse,
)
from parley_shared.settings import ProviderSettings
from parley_shared.tracing import spans_recorded_by
from pydantic import SecretStr

APP_ID = "parley-test"
APP_SECRET = "app-secret-7f3a9c"
TOKEN_PREFIX = "jwt-token-b81e"
BASE_URL = "http://provider.test"

Script = httpx.Response | Exception


class FakeProvider:
    """A tiny Symbl-compatible provider: issues tokens, checks them, and plays scripted answers per path."""

    def __init__(self, *, expires_in: int = 86400) -> None:
        self.expires_in = expires_in
        self.issued: list[str] = []
        self.revoked: set[str] = set()
        self.requests: list[httpx.Request] = []
        self.scripts: dict[tuple[str, str], deque[Script]] = defaultdict(deque)

    def script(self, method: str, path: str, *answers: Script) -> None:
        self.scripts[(method, path)].extend(answers)

    def requests_to(self, path: str) -> list[httpx.Request]:
        return [request for request in self.requests if request.url.path == path]

    @property
    def token_requests(self) -> list[httpx.Request]:
        return self.requests_to("/oauth2/token:generate")

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        scripted = self.scripts.get((request.method, request.url.path))
        if scripted:
            answer = scripted.popleft()
            if isinstance(answer, Exception):
                raise answer
            return answer
        if request.url.path == "/oauth2/token:generate":
            return self._token(request)
        if request.headers.get("Authorization") not in {f"Bearer {token}" for token in self.live_tokens}:
            return httpx.Response(401, json={"message": "Token validation failed for provided token."})
        return self._default(request)

    @property
    def live_tokens(self) -> set[str]:
        return set(self.issued) - self.revoked

    def _token(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if body != {"type": "application", "appId": APP_ID, "appSecret": APP_SECRET}:
            return httpx.Response(401, json={"message": "Invalid appId or appSecret"})
        token = f"{TOKEN_PREFIX}-{len(self.issued) + 1}"
        self.issued.append(token)
        return httpx.Response(200, json={"accessToken": token, "expiresIn": self.expires_in})

    def _default(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.startswith("/v1/process/"):
            last = path.rsplit("/", 1)[1]
            conversation_id = last if last.isdigit() else "5815170693595136"
            return httpx.Response(200, json={"conversationId": conversation_id, "jobId": "job-1"})
        if path.startswith("/v1/job/"):
            return httpx.Response(200, json={"id": path.rsplit("/", 1)[1], "status": "completed"})
        if path.startswith("/v1/conversations/"):
            segment = path.rsplit("/", 1)[1]
            query = request.url.query.decode("ascii")
            return httpx.Response(200, json={segment: [{"id": "1", "query": query}]})
        return httpx.Response(404, json={"message": "no such route"})


Handler = Callable[[httpx.Request], httpx.Response | Awaitable[httpx.Response]]
# The client's timeout on the loopback wire: long for a loopback answer, short for a test that waits it out.
LOOPBACK_TIMEOUT_SECONDS = 0.3
HTTPX_TRANSPORT, AIOHTTP_SESSION = "httpx transport", "aiohttp session"


class LoopbackProvider:
    """A test's httpx handler served on a real loopback socket.

    Each request is relayed to ``handler`` as an ``httpx.Request`` (its path and query exactly as sent) and the
    ``httpx.Response`` written back, so the same scripted provider answers both wires.
    """

    def __init__(self) -> None:
        self.handler: Handler | None = None
        self._runner: web.AppRunner | None = None
        self.url = ""

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._relay)
        # Cancel a handler whose client went away, so a stalled answer does not outlive its test.
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _relay(self, request: web.Request) -> web.StreamResponse:
        assert self.handler is not None, "no handler: build the client with make_client"
        relayed = httpx.Request(
            request.method,
            f"{BASE_URL}{request.raw_path}",
            headers=list(request.headers.items()),
            content=await request.read(),
        )
        try:
            answer = self.handler(relayed)
            response = await answer if inspect.isawaitable(answer) else answer
        except httpx.ReadTimeout:
            await asyncio.sleep(LOOPBACK_TIMEOUT_SECONDS * 5)  # answer only after the client gave up
            return web.Response(status=504)
        except httpx.RemoteProtocolError:
            assert request.transport is not None
            request.transport.close()  # hang up without an answer
            return web.Response(status=500)
        body = await response.aread()
        passed_on = {
            name: value
            for name, value in response.headers.items()
            if name.lower() not in {"content-length", "transfer-encoding", "content-encoding"}
        }
        return web.Response(status=response.status_code, body=body, headers=passed_on)


class RecordingSleep:
    """Stands in for asyncio.sleep: records each requested delay and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make_settings(**overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {
        "url": BASE_URL,
        "app_id": APP_ID,
        "app_secret": SecretStr(APP_SECRET),
        "max_attempts": 4,
        "backoff_base_seconds": 0.2,
        "backoff_max_seconds": 10.0,
        "max_concurrent_jobs": 3,
    }
    values.update(overrides)
    return ProviderSettings(**values)


@pytest.fixture
def provider() -> FakeProvider:
    return FakeProvider()


@pytest.fixture
def sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=[HTTPX_TRANSPORT, AIOHTTP_SESSION])
def wire(request: pytest.FixtureRequest) -> str:
    """How the client reaches the provider; a test that scripts what only a mock transport can do narrows it."""
    return str(request.param)


@pytest.fixture
async def loopback() -> AsyncIterator[LoopbackProvider]:
    server = LoopbackProvider()
    await server.start()
    yield server
    await server.stop()


# For tests whose provider is a custom httpx transport, or that script a refused connection.
mock_transport_only = pytest.mark.parametrize("wire", [HTTPX_TRANSPORT])


@pytest.fixture
def make_client(
    provider: FakeProvider, sleep: RecordingSleep, clock: FakeClock, wire: str, loopback: LoopbackProvider
) -> Callable[..., ProviderClient]:
    def build(
        handler: Any = None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        on_response: Any = None,
        **settings: Any,
    ) -> ProviderClient:
        if wire == AIOHTTP_SESSION and transport is None:
            loopback.handler = handler or provider
            settings = {"url": loopback.url, "timeout_seconds": LOOPBACK_TIMEOUT_SECONDS, **settings}
            transport_used = None
        else:
            transport_used = transport or httpx.MockTransport(handler or provider)
        resolved = make_settings(**settings)
        return ProviderClient(
            resolved,
            transport=transport_used,
            sleep=sleep,
            clock=clock,
            on_response=on_response,
            # Draw the top of the jitter range so recorded delays are exact.
            retry_policy=RetryPolicy(
                base_seconds=resolved.backoff_base_seconds,
                max_seconds=resolved.backoff_max_seconds,
                max_attempts=resolved.max_attempts,
                random=lambda: 1.0,
            ),
        )

    return build


# --- token ----------------------------------------------------------------------------------------


async def test_token_is_generated_once_and_reused(provider: FakeProvider, make_client: Any) -> None:
    async with make_client() as client:
        for job_id in ("a", "b", "c"):
            assert (await client.get_job(job_id)).status is JobStatus.COMPLETED

    assert len(provider.token_requests) == 1
    job_requests = [r for r in provider.requests if r.url.path.startswith("/v1/job/")]
    assert [r.headers["Authorization"] for r in job_requests] == [f"Bearer {TOKEN_PREFIX}-1"] * 3


async def test_concurrent_callers_share_one_token_request(provider: FakeProvider, make_client: Any) -> None:
    async with make_client() as client:
        await asyncio.gather(*(client.get_job(str(n)) for n in range(20)))

    assert len(provider.token_requests) == 1


async def test_token_is_refreshed_near_expiry(provider: FakeProvider, make_client: Any, clock: FakeClock) -> None:
    provider.expires_in = 100  # refresh margin is 10 % of the lifetime: 10 s
    async with make_client() as client:
        await client.get_job("a")
        clock.now += 89
        await client.get_job("b")
        assert len(provider.token_requests) == 1
        clock.now += 2  # 91 s into a 100 s token
        await client.get_job("c")

    assert len(provider.token_requests) == 2
    assert provider.requests[-1].headers["Authorization"] == f"Bearer {TOKEN_PREFIX}-2"


async def test_401_refreshes_the_token_once_and_retries(
    provider: FakeProvider, make_client: Any, sleep: RecordingSleep
) -> None:
    async with make_client() as client:
        await client.get_job("a")
        provider.revoked.add(f"{TOKEN_PREFIX}-1")
        state = await client.get_job("b")

    assert state.id == "b"
    assert len(provider.token_requests) == 2
    retried = provider.requests_to("/v1/job/b")
    assert [r.headers["Authorization"] for r in retried] == [
        f"Bearer {TOKEN_PREFIX}-1",
        f"Bearer {TOKEN_PREFIX}-2",
    ]
    assert sleep.delays == []


async def test_401_after_a_fresh_token_is_an_auth_error(provider: FakeProvider, make_client: Any) -> None:
    provider.script(
        "GET",
        "/v1/job/a",
        httpx.Response(401, json={"message": "nope"}),
        httpx.Response(401, json={"message": "nope"}),
    )
    async with make_client() as client:
        with pytest.raises(ProviderAuthError, match="freshly generated"):
            await client.get_job("a")

    assert len(provider.token_requests) == 2
    assert len(provider.requests_to("/v1/job/a")) == 2


async def test_bad_credentials_raise_auth_error(provider: FakeProvider, make_client: Any) -> None:
    async with make_client(app_secret=SecretStr("wrong-secret")) as client:
        with pytest.raises(ProviderAuthError, match=APP_ID) as caught:
            await client.get_job("a")

    assert "wrong-secret" not in str(caught.value)
    assert len(provider.token_requests) == 1  # a 401 on token generation is not retried


# --- retries --------------------------------------------------------------------------------------


async def test_5xx_is_retried_with_backoff_then_succeeds(
    provider: FakeProvider, make_client: Any, sleep: RecordingSleep
) -> None:
    provider.script("GET", "/v1/job/a", httpx.Response(503), httpx.Response(500))
    async with make_client() as client:
        state = await client.get_job("a")

    assert state.status is JobStatus.COMPLETED
    assert len(provider.requests_to("/v1/job/a")) == 3
    assert sleep.delays == pytest.approx([0.2, 0.4])


async def test_exhausted_retries_raise_unavailable_with_last_status(
    provider: FakeProvider, make_client: Any, sleep: RecordingSleep
) -> None:
    provider.script("GET", "/v1/job/a", *(httpx.Response(502) for _ in range(10)))
    async with make_client(max_attempts=4) as client:
        with pytest.raises(ProviderUnavailable) as caught:
            await client.get_job("a")

    assert caught.value.status == 502
    assert caught.value.attempts == 4
    assert len(provider.requests_to("/v1/job/a")) == 4
    assert len(sleep.delays) == 3


async def test_get_read_timeout_is_retried(provider: FakeProvider, make_client: Any) -> None:
    provider.script("GET", "/v1/job/a", httpx.ReadTimeout("slow"))
    async with make_client() as client:
        assert (await client.get_job("a")).id == "a"

    assert len(provider.requests_to("/v1/job/a")) == 2


async def test_429_retry_after_is_honoured(provider: FakeProvider, make_client: Any, sleep: RecordingSleep) -> None:
    limit = {"statusCode": 429, "message": "This API has a limit of maximum of 2 number of concurrent jobs"}
    provider.script("POST", "/v1/process/text", httpx.Response(429, headers={"Retry-After": "7"}, json=limit))
    async with make_client() as client:
        response = await client.submit_text({"messages": [{"payload": {"content": "hi"}}]})

    assert response.job_id == "job-1"
    assert sleep.delays == [7.0]
    assert len(provider.requests_to("/v1/process/text")) == 2


async def test_429_without_retry_after_falls_back_to_backoff(
    provider: FakeProvider, make_client: Any, sleep: RecordingSleep
) -> None:
    provider.script("GET", "/v1/job/a", httpx.Response(429))
    async with make_client() as client:
        await client.get_job("a")

    assert sleep.delays == pytest.approx([0.2])


async def test_submission_500_is_not_retried(provider: FakeProvider, make_client: Any, sleep: RecordingSleep) -> None:
    provider.script("POST", "/v1/process/text", httpx.Response(500, json={"message": "boom"}))
    async with make_client() as client:
        with pytest.raises(ProviderUnavailable, match="may have created a job") as caught:
            await client.submit_text({"messages": []})

    assert caught.value.status == 500
    assert caught.value.may_have_been_processed
    assert len(provider.requests_to("/v1/process/text")) == 1
    assert sleep.delays == []


async def test_submission_read_timeout_is_not_retried(provider: FakeProvider, make_client: Any) -> None:
    provider.script("POST", "/v1/process/audio/url", httpx.ReadTimeout("slow"))
    async with make_client() as client:
        with pytest.raises(ProviderUnavailable) as caught:
            await client.submit_media_url("audio", {"url": "https://example.com/a.wav"})

    assert caught.value.may_have_been_processed
    assert caught.value.status is None
    assert len(provider.requests_to("/v1/process/audio/url")) == 1


@pytest.mark.parametrize("failure", [httpx.Response(503), httpx.Response(502)])
async def test_submission_retries_what_was_not_processed(
    provider: FakeProvider, make_client: Any, failure: Script
) -> None:
    provider.script("PUT", "/v1/process/text/123", failure)
    async with make_client() as client:
        response = await client.submit_text({"messages": []}, conversation_id="123")

    assert response.conversation_id == "123"
    assert len(provider.requests_to("/v1/process/text/123")) == 2


@mock_transport_only
async def test_submission_retries_a_connection_that_was_refused(provider: FakeProvider, make_client: Any) -> None:
    provider.script("PUT", "/v1/process/text/123", httpx.ConnectError("refused"))
    async with make_client() as client:
        response = await client.submit_text({"messages": []}, conversation_id="123")

    assert response.conversation_id == "123"
    assert len(provider.requests_to("/v1/process/text/123")) == 2


async def test_the_idempotency_key_is_sent_on_every_attempt_of_a_submission(
    provider: FakeProvider, make_client: Any
) -> None:
    provider.script("POST", "/v1/process/text", httpx.Response(503), httpx.Response(429))
    provider.script("PUT", "/v1/process/audio/url/123", httpx.Response(502))
    async with make_client() as client:
        await client.get_job("warm-up")  # a token, which is then revoked: a 401, a new token and another attempt
        provider.revoked.add(f"{TOKEN_PREFIX}-1")
        await client.submit_text({"messages": []}, idempotency_key="request-7")
        await client.submit_media_url(
            "audio", {"url": "https://x/a.wav"}, conversation_id="123", idempotency_key="request-8"
        )
        await client.submit_text({"messages": []})

    text_attempts = provider.requests_to("/v1/process/text")
    assert [r.headers.get("Idempotency-Key") for r in text_attempts] == ["request-7"] * 4 + [None]
    assert [r.headers.get("Idempotency-Key") for r in provider.requests_to("/v1/process/audio/url/123")] == [
        "request-8"
    ] * 2


@mock_transport_only
async def test_the_idempotency_key_is_sent_on_every_attempt_of_an_upload(
    provider: FakeProvider, make_client: Any
) -> None:
    transport = StreamingTransport([], provider)
    attempts: list[httpx.Request] = []
    failures = [httpx.ConnectError("refused")]

    class RefusesOnce(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/process/video":
                attempts.append(request)
                if failures:
                    raise failures.pop()
            return await transport.handle_async_request(request)

    async def video() -> AsyncIterator[bytes]:
        yield b"abc"

    async with make_client(transport=RefusesOnce()) as client:
        await client.submit_media_file(
            "video", video(), content_type="video/mp4", content_length=3, options={}, idempotency_key="upload-1"
        )

    assert [r.headers.get("Idempotency-Key") for r in attempts] == ["upload-1", "upload-1"]


# --- errors ---------------------------------------------------------------------------------------


async def test_404_on_a_conversation_read_is_conversation_not_found(provider: FakeProvider, make_client: Any) -> None:
    path = "/v1/conversations/999/messages"
    provider.script("GET", path, httpx.Response(404, json={"message": "not found"}))
    async with make_client() as client:
        with pytest.raises(ConversationNotFound, match="999"):
            await client.get_insight("999", InsightEndpoint.MESSAGES)

    assert len(provider.requests_to(path)) == 1


async def test_404_on_a_job_is_job_not_found(provider: FakeProvider, make_client: Any) -> None:
    provider.script("GET", "/v1/job/gone", httpx.Response(404))
    async with make_client() as client:
        with pytest.raises(JobNotFound, match="gone"):
            await client.get_job("gone")


async def test_400_is_rejected_with_the_providers_message(provider: FakeProvider, make_client: Any) -> None:
    message = "messages is a mandatory field"
    provider.script("POST", "/v1/process/text", httpx.Response(400, json={"message": message}))
    async with make_client() as client:
        with pytest.raises(ProviderRejected) as caught:
            await client.submit_text({})

    assert caught.value.status == 400
    assert caught.value.provider_message == message
    assert message in str(caught.value)
    assert len(provider.requests_to("/v1/process/text")) == 1


async def test_unknown_job_status_is_a_clear_error(provider: FakeProvider, make_client: Any) -> None:
    provider.script("GET", "/v1/job/a", httpx.Response(200, json={"id": "a", "status": "paused"}))
    async with make_client() as client:
        with pytest.raises(UnexpectedProviderResponse, match="unknown job status 'paused'"):
            await client.get_job("a")


async def test_failed_job_carries_the_reason(provider: FakeProvider, make_client: Any) -> None:
    body = {"id": "a", "status": "failed", "reason": "unsupported codec"}
    provider.script("GET", "/v1/job/a", httpx.Response(200, json=body))
    async with make_client() as client:
        state = await client.get_job("a")

    assert (state.status, state.reason) == (JobStatus.FAILED, "unsupported codec")


# --- bounds ---------------------------------------------------------------------------------------


async def test_semaphore_bounds_concurrent_submissions(provider: FakeProvider, make_client: Any) -> None:
    in_flight = 0
    most_in_flight = 0

    async def slow_provider(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most_in_flight
        if request.url.path != "/v1/process/text":
            return await provider(request)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.02)  # long enough for the other submissions to arrive, over a socket too
        in_flight -= 1
        return httpx.Response(200, json={"conversationId": "1", "jobId": "j"})

    async with make_client(slow_provider, max_concurrent_jobs=3) as client:
        results = await asyncio.gather(*(client.submit_text({"messages": []}) for _ in range(10)))

    assert len(results) == 10
    assert most_in_flight == 3


async def test_fetch_insights_reads_all_nine_with_their_query_strings(provider: FakeProvider, make_client: Any) -> None:
    async with make_client() as client:
        insights = await client.fetch_insights("42")

    assert set(insights) == {
        "messages",
        "topics",
        "questions",
        "actionItems",
        "followUps",
        "entities",
        "analytics",
        "summary",
        "members",
    }
    assert insights["actionItems"] == {"action-items": [{"id": "1", "query": ""}]}
    assert insights["messages"]["messages"][0]["query"] == "sentiment=true"
    assert insights["topics"]["topics"][0]["query"] == "sentiment=true&parentRefs=true"


async def test_fetch_insights_is_all_or_error(provider: FakeProvider, make_client: Any) -> None:
    provider.script("GET", "/v1/conversations/42/summary", httpx.Response(404))
    async with make_client() as client:
        with pytest.raises(ConversationNotFound):
            await client.fetch_insights("42", concurrency=2)


# --- streamed uploads -----------------------------------------------------------------------------


class StreamingTransport(httpx.AsyncBaseTransport):
    """Reads the request body chunk by chunk as a server would, logging when each chunk arrives."""

    def __init__(self, events: list[str], provider: FakeProvider) -> None:
        self.events = events
        self.provider = provider
        self.uploads: list[tuple[httpx.Request, list[bytes]]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.startswith("/v1/process/"):
            return await self.provider(request)
        received: list[bytes] = []
        assert isinstance(request.stream, httpx.AsyncByteStream)
        async for chunk in request.stream:
            self.events.append(f"received {len(received)}")
            received.append(chunk)
        self.uploads.append((request, received))
        return httpx.Response(200, json={"conversationId": "77", "jobId": "j-77"})


@mock_transport_only
async def test_file_upload_streams_exactly_the_given_bytes(provider: FakeProvider, make_client: Any) -> None:
    chunks = [b"RIFF" + bytes(range(256)), b"\x00" * 1000, b"tail"]
    events: list[str] = []

    async def audio() -> AsyncIterator[bytes]:
        for index, chunk in enumerate(chunks):
            events.append(f"produced {index}")
            yield chunk

    transport = StreamingTransport(events, provider)
    options = {"customVocabulary": ["Platform", "acme"], "detectEntities": True, "languageCode": "en-US"}
    async with make_client(transport=transport) as client:
        response = await client.submit_media_file(
            "audio",
            audio(),
            content_type="audio/wav",
            content_length=sum(map(len, chunks)),
            options=options,
        )

    assert response.job_id == "j-77"
    [(request, received)] = transport.uploads
    assert received == chunks
    # Interleaved: each chunk is sent before the next is produced, so the body was never buffered whole.
    assert events == ["produced 0", "received 0", "produced 1", "received 1", "produced 2", "received 2"]
    assert (request.method, request.url.path) == ("POST", "/v1/process/audio")
    assert request.headers["Content-Type"] == "audio/wav"
    assert request.headers["Content-Length"] == str(sum(map(len, chunks)))
    assert request.url.params["customVocabulary"] == '["Platform","acme"]'
    assert json.loads(request.url.params["customVocabulary"]) == ["Platform", "acme"]
    assert request.url.params["detectEntities"] == "true"
    assert request.url.params["languageCode"] == "en-US"
    assert b"%5B%22Platform%22%2C%22acme%22%5D" in request.url.query


@mock_transport_only
async def test_file_append_uses_put_with_the_conversation_id(provider: FakeProvider, make_client: Any) -> None:
    async def video() -> AsyncIterator[bytes]:
        yield b"mp4"

    transport = StreamingTransport([], provider)
    async with make_client(transport=transport) as client:
        await client.submit_media_file(
            "video", video(), content_type="video/mp4", content_length=3, options={}, conversation_id="77"
        )

    [(request, received)] = transport.uploads
    assert (request.method, request.url.path, received) == ("PUT", "/v1/process/video/77", [b"mp4"])


async def test_file_upload_is_not_retried_after_the_body_started(provider: FakeProvider, make_client: Any) -> None:
    pulled: list[bytes] = []

    async def audio() -> AsyncIterator[bytes]:
        for chunk in (b"a", b"b"):
            pulled.append(chunk)
            yield chunk

    async def reads_then_fails(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/process/audio":
            provider.requests.append(request)
            return httpx.Response(503)  # MockTransport has already read the whole body
        return await provider(request)

    async with make_client(reads_then_fails) as client:
        with pytest.raises(ProviderUnavailable, match="cannot be replayed") as caught:
            await client.submit_media_file("audio", audio(), content_type="audio/wav", content_length=2, options={})

    assert caught.value.status == 503
    assert pulled == [b"a", b"b"]
    assert len(provider.requests_to("/v1/process/audio")) == 1


@mock_transport_only
async def test_file_upload_is_retried_when_the_connection_never_opened(
    provider: FakeProvider, make_client: Any
) -> None:
    events: list[str] = []
    transport = StreamingTransport(events, provider)
    failures = [httpx.ConnectError("refused")]

    class RefusesOnce(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/process/audio" and failures:
                raise failures.pop()
            return await transport.handle_async_request(request)

    async def audio() -> AsyncIterator[bytes]:
        yield b"abc"

    async with make_client(transport=RefusesOnce()) as client:
        await client.submit_media_file("audio", audio(), content_type="audio/wav", content_length=3, options={})

    assert [received for _, received in transport.uploads] == [[b"abc"]]


# --- observability and secrets --------------------------------------------------------------------


async def test_on_response_sees_every_attempt(provider: FakeProvider, make_client: Any) -> None:
    seen: list[ResponseObservation] = []
    provider.script("GET", "/v1/job/a", httpx.Response(503))
    async with make_client(on_response=seen.append) as client:
        await client.get_job("a")

    assert [(o.operation, o.status, o.attempt) for o in seen] == [
        ("generate_token", 200, 1),
        ("get_job", 503, 1),
        ("get_job", 200, 2),
    ]


async def test_neither_secret_nor_token_reaches_logs_or_errors(
    provider: FakeProvider, make_client: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    errors: list[BaseException] = []
    echo = {"message": f"bad request for token {TOKEN_PREFIX}-1 and secret {APP_SECRET}"}
    provider.script("GET", "/v1/conversations/1/questions", httpx.Response(400, json=echo))
    provider.script("POST", "/v1/process/text", httpx.Response(500, json=echo))
    provider.script("GET", "/v1/job/x", httpx.Response(401), httpx.Response(401))

    async with make_client() as client:
        token = await client.generate_token()
        await client.get_job("a")
        for failing in (
            client.get_insight("1", InsightEndpoint.QUESTIONS),
            client.submit_text({"messages": []}),
            client.get_job("x"),
        ):
            try:
                await failing
            except ProviderError as exc:
                errors.append(exc)
        texts = [repr(client), repr(token), str(token)]

    async with make_client(app_secret=SecretStr(APP_SECRET + "-wrong")) as wrong:
        try:
            await wrong.get_job("a")
        except ProviderError as exc:
            errors.append(exc)

    assert [type(error) for error in errors] == [
        ProviderRejected,
        ProviderUnavailable,
        ProviderAuthError,
        ProviderAuthError,
    ]
    assert any("GET /v1/job/a -> 200" in record.getMessage() for record in caplog.records)
    texts += [record.getMessage() for record in caplog.records]
    texts += [caplog.text]
    texts += [f"{error!s} {error!r} {error.__cause__!r}" for error in errors]
    for text in texts:
        assert APP_SECRET not in text
        assert TOKEN_PREFIX not in text


async def test_each_attempt_is_a_client_span_whose_traceparent_the_provider_receives(
    provider: FakeProvider, make_client: Any
) -> None:
    recorder = TracerProvider()
    spans = InMemorySpanExporter()
    recorder.add_span_processor(SimpleSpanProcessor(spans))
    provider.script("GET", "/v1/job/a", httpx.Response(503))
    with spans_recorded_by(recorder):
        async with make_client() as client:
            await client.get_job("a")

    calls = [span for span in spans.get_finished_spans() if span.kind is SpanKind.CLIENT]
    assert [span.name for span in calls] == ["POST generate_token", "GET get_job", "GET get_job"]
    assert [(span.attributes or {}).get("http.response.status_code") for span in calls] == [200, 503, 200]
    received = [request.headers["traceparent"].split("-")[1:3] for request in provider.requests]
    assert received == [[format(span.context.trace_id, "032x"), format(span.context.span_id, "016x")] for span in calls]


async def test_a_json_body_is_sent_once_encoded_with_its_content_type(provider: FakeProvider, make_client: Any) -> None:
    body = {"messages": [{"payload": {"content": "Grüße, ça va?"}}], "confidenceThreshold": 0.6}
    provider.script("POST", "/v1/process/text", httpx.Response(503))
    async with make_client() as client:
        await client.submit_text(body)

    attempts = provider.requests_to("/v1/process/text")
    assert len(attempts) == 2
    for attempt in attempts:
        assert attempt.headers["Content-Type"] == "application/json"
        assert json.loads(attempt.content) == body
    assert attempts[0].content == attempts[1].content


# --- the aiohttp session: what only a real connection shows ------------------------------------------

aiohttp_session_only = pytest.mark.parametrize("wire", [AIOHTTP_SESSION])


def unused_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@aiohttp_session_only
async def test_a_refused_connection_is_retried_even_for_a_submission(
    provider: FakeProvider, make_client: Any, loopback: LoopbackProvider, sleep: RecordingSleep
) -> None:
    seen: list[ResponseObservation] = []
    async with make_client(on_response=seen.append, max_attempts=3) as client:
        await client.generate_token()
        await loopback.stop()  # from now on every connection is refused
        await asyncio.sleep(0.05)  # and the client has seen its pooled connection closed
        with pytest.raises(ProviderUnavailable, match="ClientConnectorError") as caught:
            await client.submit_text({"messages": []})

    assert caught.value.status is None
    assert caught.value.attempts == 3
    assert not caught.value.may_have_been_processed  # never connected, so the provider saw nothing
    assert [(o.operation, o.status, o.error) for o in seen[1:]] == [("submit_text", None, "ClientConnectorError")] * 3
    assert sleep.delays == pytest.approx([0.2, 0.4])


@aiohttp_session_only
async def test_a_refused_connection_for_a_read_gives_up_after_the_budget(
    make_client: Any, sleep: RecordingSleep
) -> None:
    async with make_client(url=f"http://127.0.0.1:{unused_loopback_port()}", max_attempts=4) as client:
        with pytest.raises(ProviderUnavailable, match="gave up after 4 attempt") as caught:
            await client.get_insight("1", InsightEndpoint.SUMMARY)

    assert (caught.value.status, caught.value.attempts) == (None, 4)
    assert len(sleep.delays) == 3


@aiohttp_session_only
async def test_a_submission_whose_connection_dropped_is_not_retried(
    provider: FakeProvider, make_client: Any, sleep: RecordingSleep
) -> None:
    provider.script("POST", "/v1/process/text", httpx.RemoteProtocolError("hang up"))
    async with make_client() as client:
        with pytest.raises(ProviderUnavailable, match="ServerDisconnectedError") as caught:
            await client.submit_text({"messages": []})

    assert caught.value.may_have_been_processed
    assert len(provider.requests_to("/v1/process/text")) == 1
    assert sleep.delays == []


@aiohttp_session_only
async def test_a_url_that_is_not_http_is_not_retried(make_client: Any, sleep: RecordingSleep) -> None:
    async with make_client(url="ftp://provider.test") as client:
        with pytest.raises(ProviderUnavailable, match="is not usable") as caught:
            await client.get_job("a")

    assert caught.value.attempts == 1
    assert sleep.delays == []


@aiohttp_session_only
async def test_connections_are_bounded_by_max_connections(provider: FakeProvider, make_client: Any) -> None:
    in_flight = 0
    most_in_flight = 0

    async def slow_reads(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most_in_flight
        if not request.url.path.startswith("/v1/job/"):
            return await provider(request)
        in_flight += 1
        most_in_flight = max(most_in_flight, in_flight)
        await asyncio.sleep(0.02)
        in_flight -= 1
        return await provider(request)

    async with make_client(slow_reads, max_connections=2) as client:
        states = await asyncio.gather(*(client.get_job(str(n)) for n in range(8)))

    assert [state.id for state in states] == [str(n) for n in range(8)]
    assert most_in_flight == 2


@aiohttp_session_only
@pytest.mark.parametrize("content_length", [6, None])
async def test_an_upload_goes_out_with_its_length_or_chunked(
    provider: FakeProvider, make_client: Any, content_length: int | None
) -> None:
    async def audio() -> AsyncIterator[bytes]:
        yield b"RIFF"
        yield b"\x00\x01"

    async with make_client() as client:
        await client.submit_media_file(
            "audio",
            audio(),
            content_type="audio/wav",
            content_length=content_length,
            options={"customVocabulary": ["Platform"], "detectEntities": True},
            idempotency_key="upload-9",
        )

    [upload] = provider.requests_to("/v1/process/audio")
    assert upload.content == b"RIFF\x00\x01"
    assert upload.headers["Content-Type"] == "audio/wav"
    assert upload.headers["Idempotency-Key"] == "upload-9"
    if content_length is None:
        assert upload.headers["Transfer-Encoding"] == "chunked"
    else:
        assert upload.headers["Content-Length"] == "6"
        assert "Transfer-Encoding" not in upload.headers
    assert upload.url.params["customVocabulary"] == '["Platform"]'
    assert upload.url.params["detectEntities"] == "true"
