"""Async client for the Symbl-compatible provider: cached token, retries, typed errors, bounded submissions.

Every conversation costs about a dozen calls, so the client's request rate bounds Parley's throughput: requests go
straight through aiohttp's ``ClientSession`` (``exchanges.AiohttpExchange``), with no httpx objects per request.
A caller may still hand in an httpx transport (tests mount ``httpx.MockTransport``); requests then go through it.

Retry rules, in short:

* reads (GET, and token generation, which the provider answers idempotently) retry every transient failure:
  timeouts, connection errors, 429 and 5xx;
* submissions (``/v1/process/*``) are not idempotent: they retry only what proves the request was not
  processed (429, 502, 503, 504, failure to connect). A read timeout or a 500 may hide a created job, so the
  client raises ``ProviderUnavailable(may_have_been_processed=True)`` and lets the caller decide. A caller's
  ``idempotency_key`` goes out as the ``Idempotency-Key`` header on every attempt, so a provider that honours it
  (Parley's engine) answers the caller's resubmission with the first job instead of a second;
* file uploads stream the caller's bytes and a stream cannot be replayed: once the body started flowing
  nothing is retried (not even a 401 or a 429); the caller must resubmit with a fresh stream.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import ValidationError

from parley_shared.provider.errors import (
    ConversationNotFound,
    JobNotFound,
    ProviderAuthError,
    ProviderError,
    ProviderRejected,
    ProviderUnavailable,
    UnexpectedProviderResponse,
)
from parley_shared.provider.exchanges import (
    AiohttpExchange,
    Answer,
    Exchange,
    ExchangeFailed,
    HttpxExchange,
    RequestBody,
)
from parley_shared.provider.models import (
    AccessToken,
    ConversationList,
    ConversationSummary,
    InsightEndpoint,
    JobState,
    ProcessResponse,
)
from parley_shared.provider.retry import parse_retry_after
from parley_shared.retry import RetryPolicy
from parley_shared.settings import ProviderSettings
from parley_shared.tracing import calling_provider

logger = logging.getLogger(__name__)

_Parsed = TypeVar("_Parsed")

MediaKind = Literal["audio", "video"]

TOKEN_PATH = "/oauth2/token:generate"
# Refresh this long before expiry: 10 % of the lifetime, at most a minute.
TOKEN_REFRESH_FRACTION = 0.1
TOKEN_REFRESH_MAX_MARGIN_SECONDS = 60.0
# All nine reads of one conversation at once by default; callers lower it to spare the provider.
DEFAULT_INSIGHT_CONCURRENCY = len(InsightEndpoint)
# Submissions may be retried on these: the provider (or a proxy in front) did not process the request.
SUBMISSION_RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
_JSON_CONTENT: Mapping[str, str] = {"Content-Type": "application/json"}
# Each read's query string, escaped once for the process rather than once per request.
_INSIGHT_QUERIES = {endpoint: urlencode(endpoint.query) for endpoint in InsightEndpoint}
_PROVIDER_MESSAGE_LIMIT = 300


@dataclass(frozen=True)
class ResponseObservation:
    """One HTTP attempt, handed to the ``on_response`` hook; ``operation`` is low-cardinality."""

    operation: str
    method: str
    status: int | None
    elapsed_seconds: float
    attempt: int
    error: str | None = None


ResponseObserver = Callable[[ResponseObservation], None]


def token_refresh_margin(lifetime_seconds: float) -> float:
    """How long before expiry a token of this lifetime is replaced."""
    return min(TOKEN_REFRESH_MAX_MARGIN_SECONDS, TOKEN_REFRESH_FRACTION * lifetime_seconds)


def _encode_json(body: Any) -> bytes:
    """A JSON request body, encoded once per call (not per attempt) the way httpx's ``json=`` encoded it."""
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()


def encode_upload_options(options: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters for a file upload: lists, objects and booleans JSON-encoded, ``None`` dropped."""
    query: dict[str, str] = {}
    for name, value in options.items():
        if value is None:
            continue
        if isinstance(value, list | dict | bool):
            query[name] = json.dumps(value, separators=(",", ":"))
        else:
            query[name] = str(value)
    return query


_MIN_REDACTED_LENGTH = 6


@dataclass
class _CachedToken:
    token: AccessToken
    refresh_at: float  # on the client's monotonic clock
    authorization: str = field(repr=False)  # the Authorization header value, built once per token


class _OneShotUpload:
    """Wraps the caller's byte stream and remembers whether the transport began pulling it."""

    def __init__(self, chunks: AsyncIterable[bytes]) -> None:
        self._chunks = chunks
        self.started = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.started = True
        async for chunk in self._chunks:
            yield chunk


@dataclass
class _Call:
    """One logical request; ``_send`` may make several attempts of it."""

    operation: str
    method: str
    path: str
    idempotent: bool
    query: str = ""  # escaped, without the "?"
    content: bytes | None = field(default=None, repr=False)  # the token request carries the app secret
    upload: _OneShotUpload | None = field(default=None, repr=False)
    headers: Mapping[str, str] = field(default_factory=dict)
    not_found: Callable[[], ProviderError] | None = None
    authenticated: bool = True

    @property
    def label(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def body(self) -> RequestBody:
        return self.upload if self.upload is not None else self.content

    @property
    def replayable(self) -> bool:
        return self.upload is None or not self.upload.started


class ProviderClient:
    """The provider's auth, Async, Job and Conversation APIs as typed async methods.

    Use as ``async with ProviderClient(settings) as provider: ...``. ``transport``, an httpx transport, replaces
    the aiohttp session (tests pass ``httpx.MockTransport``); the retries, limits on jobs, tracing and hooks are
    the same either way. ``sleep`` and ``clock`` are injectable so retries and token expiry are testable without
    waiting.
    """

    def __init__(
        self,
        settings: ProviderSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_response: ResponseObserver | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self._settings = settings
        self._sleep = sleep
        self._clock = clock
        self._on_response = on_response
        self._policy = retry_policy or RetryPolicy(
            base_seconds=settings.backoff_base_seconds,
            max_seconds=settings.backoff_max_seconds,
            max_attempts=settings.max_attempts,
        )
        self._base_url = settings.url.rstrip("/")
        self._exchange: Exchange = (
            AiohttpExchange(max_connections=settings.max_connections, timeout_seconds=settings.timeout_seconds)
            if transport is None
            else HttpxExchange(transport, timeout_seconds=settings.timeout_seconds)
        )
        self._token: _CachedToken | None = None
        self._token_lock = asyncio.Lock()
        self._job_slots = asyncio.Semaphore(settings.max_concurrent_jobs)

    def __repr__(self) -> str:
        return f"ProviderClient(url={self._settings.url!r}, app_id={self._settings.app_id!r})"

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._exchange.aclose()

    # --- auth -------------------------------------------------------------------------------------------

    async def generate_token(self) -> AccessToken:
        """Fetch an access token now and cache it (``ProviderAuthError`` on bad credentials)."""
        async with self._token_lock:
            return (await self._fetch_token()).token

    async def _fetch_token(self) -> _CachedToken:
        # Callers hold _token_lock, so concurrent requests share one refresh.
        call = _Call(
            operation="generate_token",
            method="POST",
            path=TOKEN_PATH,
            idempotent=True,  # the provider hands back the same cached token when asked twice
            content=_encode_json(
                {
                    "type": "application",
                    "appId": self._settings.app_id,
                    "appSecret": self._settings.app_secret.get_secret_value(),
                }
            ),
            headers=_JSON_CONTENT,
            authenticated=False,
        )
        answer = await self._send(call)
        token = self._parse(call, answer, AccessToken.model_validate)
        refresh_at = self._clock() + token.expires_in - token_refresh_margin(token.expires_in)
        self._token = _CachedToken(
            token=token,
            refresh_at=refresh_at,
            authorization=f"Bearer {token.access_token.get_secret_value()}",
        )
        return self._token

    async def _current_token(self) -> _CachedToken:
        cached = self._token
        if cached is not None and self._clock() < cached.refresh_at:
            return cached
        async with self._token_lock:
            cached = self._token
            if cached is None or self._clock() >= cached.refresh_at:
                cached = await self._fetch_token()
            return cached

    async def _replace_rejected_token(self, rejected: _CachedToken) -> None:
        async with self._token_lock:
            cached = self._token
            if cached is not None and cached.authorization != rejected.authorization:
                return  # another caller already replaced it
            await self._fetch_token()

    # --- Async API ----------------------------------------------------------------------------------------

    async def submit_text(
        self, body: Mapping[str, Any], *, conversation_id: str | None = None, idempotency_key: str | None = None
    ) -> ProcessResponse:
        """``POST /v1/process/text``, or ``PUT /v1/process/text/{id}`` to append to a conversation."""
        return await self._submit(
            "submit_text",
            _process_path("text", conversation_id),
            conversation_id,
            content=_encode_json(dict(body)),
            headers={**_JSON_CONTENT, **_idempotency_header(idempotency_key)},
        )

    async def submit_media_url(
        self,
        kind: MediaKind,
        body: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ProcessResponse:
        """``POST /v1/process/{kind}/url`` (or ``PUT .../url/{id}``); ``body`` holds ``url`` and options."""
        _check_kind(kind)
        return await self._submit(
            f"submit_{kind}_url",
            _process_path(f"{kind}/url", conversation_id),
            conversation_id,
            content=_encode_json(dict(body)),
            headers={**_JSON_CONTENT, **_idempotency_header(idempotency_key)},
        )

    async def submit_media_file(
        self,
        kind: MediaKind,
        content: AsyncIterable[bytes],
        *,
        content_type: str,
        content_length: int | None,
        options: Mapping[str, Any],
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ProcessResponse:
        """``POST /v1/process/{audio|video}`` (or ``PUT .../{id}``) streaming ``content`` as the raw body.

        The bytes are streamed, never buffered whole. Options go in the query string. The provider requires
        ``Content-Length``; without one the body is sent chunked. Because a stream cannot be replayed, the
        upload is retried only if it failed before the transport pulled the first chunk (e.g. the connection
        could not be opened); after that any failure raises and the caller must resubmit with a new stream.
        """
        _check_kind(kind)
        headers = {"Content-Type": content_type, **_idempotency_header(idempotency_key)}
        if content_length is not None:
            headers["Content-Length"] = str(content_length)
        return await self._submit(
            f"submit_{kind}_file",
            _process_path(kind, conversation_id),
            conversation_id,
            query=urlencode(encode_upload_options(options)),
            upload=_OneShotUpload(content),
            headers=headers,
        )

    async def _submit(
        self,
        operation: str,
        path: str,
        conversation_id: str | None,
        *,
        content: bytes | None = None,
        query: str = "",
        upload: _OneShotUpload | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> ProcessResponse:
        call = _Call(
            operation=operation,
            method="POST" if conversation_id is None else "PUT",
            path=path,
            idempotent=False,
            query=query,
            content=content,
            upload=upload,
            headers=headers or {},
            not_found=None if conversation_id is None else lambda: ConversationNotFound(conversation_id),
        )
        # The provider caps concurrent jobs per account (429 beyond it); stay under the cap ourselves.
        async with self._job_slots:
            answer = await self._send(call)
        return self._parse(call, answer, ProcessResponse.model_validate)

    # --- Job API and Conversation API ----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> JobState:
        """``GET /v1/job/{jobId}``.

        404 raises ``JobNotFound``; an unknown status raises ``UnexpectedProviderResponse``.
        """
        call = _Call(
            operation="get_job",
            method="GET",
            path=f"/v1/job/{quote(job_id, safe='')}",
            idempotent=True,
            not_found=lambda: JobNotFound(job_id),
        )
        return self._parse(call, await self._send(call), JobState.model_validate)

    async def list_conversations(self, *, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        """``GET /v1/conversations?limit=&offset=&order=desc``: one page, newest first."""
        call = _Call(
            operation="list_conversations",
            method="GET",
            path="/v1/conversations",
            idempotent=True,
            query=urlencode({"limit": limit, "offset": offset, "order": "desc"}),
        )
        return self._parse(call, await self._send(call), ConversationList.model_validate).conversations

    async def delete_conversation(self, conversation_id: str) -> None:
        """``DELETE /v1/conversations/{id}``; 404 raises ``ConversationNotFound`` (already gone)."""
        call = _Call(
            operation="delete_conversation",
            method="DELETE",
            path=f"/v1/conversations/{quote(conversation_id, safe='')}",
            idempotent=True,
            not_found=lambda: ConversationNotFound(conversation_id),
        )
        await self._send(call)

    async def get_insight(self, conversation_id: str, endpoint: InsightEndpoint) -> Any:
        """One Conversation API read, returned as the provider's JSON (forwarded verbatim downstream)."""
        endpoint = InsightEndpoint(endpoint)
        call = _Call(
            operation=f"get_insight:{endpoint.key}",
            method="GET",
            path=endpoint.path(conversation_id),
            idempotent=True,
            query=_INSIGHT_QUERIES[endpoint],
            not_found=lambda: ConversationNotFound(conversation_id),
        )
        return self._parse(call, await self._send(call), _as_is)

    async def fetch_insights(
        self,
        conversation_id: str,
        endpoints: Iterable[InsightEndpoint] = tuple(InsightEndpoint),
        *,
        concurrency: int = DEFAULT_INSIGHT_CONCURRENCY,
    ) -> dict[str, Any]:
        """Several reads at once, at most ``concurrency`` in flight, keyed by ``InsightEndpoint.key``.

        All or nothing: the first failure cancels the other reads and is raised as is.
        """
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        wanted = list(dict.fromkeys(InsightEndpoint(endpoint) for endpoint in endpoints))
        slots = asyncio.Semaphore(concurrency)

        async def read(endpoint: InsightEndpoint) -> Any:
            async with slots:
                return await self.get_insight(conversation_id, endpoint)

        tasks = [asyncio.create_task(read(endpoint)) for endpoint in wanted]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return {endpoint.key: result for endpoint, result in zip(wanted, results, strict=True)}

    # --- the request loop ------------------------------------------------------------------------------

    async def _send(self, call: _Call) -> Answer:
        """Make attempts of ``call`` until a 2xx, a permanent error, or the retry budget runs out."""
        url = self._url(call)
        attempt = 0
        token_replaced = False
        while True:
            attempt += 1
            token = await self._current_token() if call.authenticated else None
            headers = dict(call.headers)
            if token is not None:
                headers["Authorization"] = token.authorization
            started = time.perf_counter()
            try:
                with calling_provider(call.operation, call.method, call.path, attempt, headers) as span:
                    answer = await self._exchange.send(call.method, url, headers, call.body)
                    span.set_attribute("http.response.status_code", answer.status)
            except ExchangeFailed as failure:
                self._observe(call, None, started, attempt, error=failure.failure)
                logger.debug("%s %s failed: %s (attempt %d)", call.method, call.path, failure.failure, attempt)
                retryable, may_have_been_processed = self._classify_failure(call, failure)
                if not retryable or not self._policy.may_retry(attempt):
                    raise self._unavailable(
                        call, failure, attempt, may_have_been_processed=may_have_been_processed
                    ) from failure.__cause__
                await self._sleep(self._policy.delay(attempt))
                continue

            status = answer.status
            self._observe(call, status, started, attempt)
            logger.debug("%s %s -> %d (attempt %d)", call.method, call.path, status, attempt)
            if 200 <= status < 300:
                return answer

            if status == 401:
                if token is None:
                    raise ProviderAuthError(
                        f"{call.label}: the provider rejected the credentials of appId "
                        f"{self._settings.app_id!r}: {self._provider_message(answer)}"
                    )
                if not token_replaced and call.replayable:
                    token_replaced = True
                    attempt -= 1  # a stale token is not a transient failure; it does not use up the budget
                    await self._replace_rejected_token(token)
                    continue
                if not call.replayable:
                    self._token = None  # the next call fetches a fresh token; this upload cannot be replayed
                    raise ProviderUnavailable(
                        f"{call.label}: the provider rejected the access token after the upload started; "
                        "a streamed body cannot be replayed, resubmit with a new stream",
                        status=status,
                        attempts=attempt,
                    )
                raise ProviderAuthError(
                    f"{call.label}: the provider rejected a freshly generated access token: "
                    f"{self._provider_message(answer)}"
                )

            if status == 404 and call.not_found is not None:
                raise call.not_found()

            if status == 429 or status >= 500:
                retry_after = parse_retry_after(answer.retry_after)
                if not call.replayable:
                    raise ProviderUnavailable(
                        f"{call.label}: the provider answered {status} after the upload started "
                        f"({self._provider_message(answer)}); a streamed body cannot be replayed",
                        status=status,
                        attempts=attempt,
                        retry_after=retry_after,
                        may_have_been_processed=status not in SUBMISSION_RETRYABLE_STATUSES,
                    )
                if not call.idempotent and status not in SUBMISSION_RETRYABLE_STATUSES:
                    raise ProviderUnavailable(
                        f"{call.label}: the provider answered {status} ({self._provider_message(answer)}); "
                        "not retried because the provider may have created a job",
                        status=status,
                        attempts=attempt,
                        retry_after=retry_after,
                        may_have_been_processed=True,
                    )
                if not self._policy.may_retry(attempt):
                    raise ProviderUnavailable(
                        f"{call.label}: the provider answered {status} ({self._provider_message(answer)}) "
                        f"on all {attempt} attempts",
                        status=status,
                        attempts=attempt,
                        retry_after=retry_after,
                    )
                honoured = retry_after if status in (429, 503) else None
                await self._sleep(self._policy.delay(attempt, honoured))
                continue

            raise ProviderRejected(
                f"{call.label}: the provider rejected the request with {status}: {self._provider_message(answer)}",
                status=status,
                provider_message=self._provider_message(answer),
            )

    def _url(self, call: _Call) -> str:
        """The absolute URL of every attempt of ``call``: built once, with the path and query already escaped."""
        return f"{self._base_url}{call.path}?{call.query}" if call.query else f"{self._base_url}{call.path}"

    def _classify_failure(self, call: _Call, failure: ExchangeFailed) -> tuple[bool, bool]:
        """(retryable, may_have_been_processed) for a timeout, a connection failure or an unusable URL."""
        if failure.url_unusable:
            return False, False  # a misconfigured URL, not a transient failure
        not_sent = failure.request_not_sent and not (call.upload is not None and call.upload.started)
        if not call.replayable:
            return False, not not_sent
        if call.idempotent:
            return True, False
        return not_sent, not not_sent

    def _unavailable(
        self, call: _Call, failure: ExchangeFailed, attempts: int, *, may_have_been_processed: bool
    ) -> ProviderUnavailable:
        if may_have_been_processed:
            why = "not retried because the provider may have processed the request"
        elif failure.url_unusable:
            why = f"the provider URL {self._settings.url!r} is not usable"
        else:
            why = f"gave up after {attempts} attempt(s)"
        return ProviderUnavailable(
            f"{call.label}: {failure.failure} talking to the provider; {why}",
            status=None,
            attempts=attempts,
            may_have_been_processed=may_have_been_processed,
        )

    def _observe(
        self, call: _Call, status: int | None, started: float, attempt: int, *, error: str | None = None
    ) -> None:
        if self._on_response is None:
            return
        observation = ResponseObservation(
            operation=call.operation,
            method=call.method,
            status=status,
            elapsed_seconds=time.perf_counter() - started,
            attempt=attempt,
            error=error,
        )
        try:
            self._on_response(observation)
        except Exception:
            # Metrics must never break a request.
            logger.warning("on_response hook failed for %s", call.operation, exc_info=True)

    def _parse(self, call: _Call, answer: Answer, build: Callable[[Any], _Parsed]) -> _Parsed:
        try:
            body = json.loads(answer.body)
        except ValueError as exc:
            raise UnexpectedProviderResponse(
                f"{call.label} answered {answer.status} with a body that is not JSON"
            ) from exc
        try:
            return build(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(part) for part in error['loc']) or 'body'}: {error['msg']}"
                for error in exc.errors(include_input=False, include_url=False)
            )
            message = f"{call.label} answered an unexpected body: {problems}"
            raise UnexpectedProviderResponse(message) from None

    def _provider_message(self, answer: Answer) -> str:
        """The provider's ``message`` (or a short excerpt of the body), with the access token scrubbed."""
        try:
            body = json.loads(answer.body)
        except ValueError:
            body = None
        if isinstance(body, dict) and isinstance(body.get("message"), str):
            message = body["message"]
        else:
            excerpt = answer.text.strip()[:_PROVIDER_MESSAGE_LIMIT]
            message = excerpt or answer.reason or "no message"
        secrets = [self._settings.app_secret.get_secret_value()]
        if self._token is not None:
            secrets.append(self._token.token.access_token.get_secret_value())
        for secret in secrets:
            # A secret too short to be real would blank out ordinary words of the message.
            if len(secret) >= _MIN_REDACTED_LENGTH:
                message = message.replace(secret, "[redacted]")
        return message


def _as_is(body: Any) -> Any:
    return body


def _process_path(segment: str, conversation_id: str | None) -> str:
    path = f"/v1/process/{segment}"
    return path if conversation_id is None else f"{path}/{quote(conversation_id, safe='')}"


def _idempotency_header(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _check_kind(kind: str) -> None:
    if kind not in ("audio", "video"):
        raise ValueError(f"media kind must be 'audio' or 'video', got {kind!r}")
