"""ingest's HTTP API: the Symbl Async API paths, so a Symbl client can submit through Parley unchanged.

Each accepted submission returns 202 with ``conversationId``, ``jobId`` and ``requestId`` once its
``JobSubmitted`` is on the jobs topic. Send ``Idempotency-Key`` (or ``requestId`` in a JSON body / query string)
to make a retry safe: the same key gives the same job. With API keys configured (``PARLEY_API_KEYS``) every
route here needs one, as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Request
from parley_shared.api_keys import ApiKeyCheck
from parley_shared.events import IdStr, JobSubmitted, MediaKind, ProcessRequested, SymblMessage
from parley_shared.http_errors import ApiProblem
from parley_shared.provider import ConversationNotFound, ProviderError, ProviderRejected, ProviderUnavailable
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from parley_ingest.submission import Submitter


class Accepted(BaseModel):
    conversation_id: str = Field(alias="conversationId", description="the provider's conversation id")
    job_id: str = Field(alias="jobId", description="the provider's job id; watch parley.completions for it")
    request_id: str = Field(alias="requestId", description="the idempotency key this submission used")
    duplicate: bool = Field(description="true when this requestId had been submitted before (same job returned)")


class TextSubmission(BaseModel):
    """The body of Symbl's ``POST /v1/process/text``, plus an optional ``requestId``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    messages: list[SymblMessage] = Field(min_length=1, max_length=10_000, description="the conversation")
    name: str | None = Field(None, max_length=1_000)
    request_id: IdStr | None = Field(None, alias="requestId", description="idempotency key")


class UrlSubmission(BaseModel):
    """The body of Symbl's ``POST /v1/process/{audio,video}/url``, plus an optional ``requestId``."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    url: str = Field(max_length=4_096, pattern=r"^https?://", description="public URL of the media file")
    name: str | None = Field(None, max_length=1_000)
    request_id: IdStr | None = Field(None, alias="requestId", description="idempotency key")


ConversationIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:\-]{1,128}$", description="conversation to append to")]
IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", max_length=128, pattern=r"^[A-Za-z0-9._:\-]+$")]
_OPTION_KEYS_FROM_BODY = {"messages", "name", "url", "requestId", "request_id"}
_MEDIA_TYPES: dict[MediaKind, tuple[str, ...]] = {
    MediaKind.AUDIO: ("audio/", "application/octet-stream"),
    MediaKind.VIDEO: ("video/", "application/octet-stream"),
}


def _request_id(*candidates: str | None) -> str:
    return next((c for c in candidates if c), None) or str(uuid.uuid4())


def _provider_problem(error: ProviderError) -> ApiProblem:
    if isinstance(error, ConversationNotFound):
        return ApiProblem(404, f"the provider does not know this conversation: {error}")
    if isinstance(error, ProviderRejected):
        status = error.status if 400 <= error.status < 500 else 400
        return ApiProblem(status, f"the provider refused the submission: {error}")
    if isinstance(error, ProviderUnavailable):
        return ApiProblem(503, f"the provider is unavailable, try again later: {error}")
    return ApiProblem(502, f"the provider call failed: {error}")


def _options_from_query(request: Request) -> dict[str, Any]:
    """Symbl file uploads carry options in the query string, lists and objects JSON-encoded."""
    options: dict[str, Any] = {}
    for key, raw in request.query_params.items():
        if key == "requestId":
            continue
        try:
            options[key] = json.loads(raw) if raw.startswith(("[", "{")) or raw in ("true", "false") else raw
        except ValueError:
            raise ApiProblem(400, f"query parameter {key!r} is not valid JSON") from None
    return options


def build_router(
    submitter: Submitter,
    publish_submitted: Callable[[JobSubmitted], Awaitable[None]],
    *,
    max_upload_bytes: int,
    api_keys: Iterable[SecretStr] = (),
) -> APIRouter:
    """The submission routes; with ``api_keys`` each needs one of them (``/healthz`` and ``/readyz`` live elsewhere).

    ``publish_submitted`` returns once the submission's ``JobSubmitted`` is committed to the jobs topic.
    """
    router = APIRouter(prefix="/v1/process", tags=["submit"], dependencies=[Depends(ApiKeyCheck(api_keys))])

    async def accept(request: ProcessRequested) -> Accepted:
        try:
            submitted, created = await submitter.submit(request)
        except ProviderError as error:
            raise _provider_problem(error) from error
        await publish_submitted(submitted)
        return _accepted(submitted, created)

    def _accepted(submitted: JobSubmitted, created: bool) -> Accepted:
        return Accepted(
            conversationId=submitted.conversation_id,
            jobId=submitted.job_id,
            requestId=submitted.request_id,
            duplicate=not created,
        )

    def text_request(body: TextSubmission, key: str | None, conversation_id: str | None) -> ProcessRequested:
        extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _OPTION_KEYS_FROM_BODY}
        return ProcessRequested(
            request_id=_request_id(key, body.request_id),
            kind=MediaKind.TEXT,
            conversation_id=conversation_id,
            name=body.name,
            messages=body.messages,
            options=extra,
        )

    def url_request(
        kind: MediaKind, body: UrlSubmission, key: str | None, conversation_id: str | None
    ) -> ProcessRequested:
        extra = {k: v for k, v in (body.model_extra or {}).items() if k not in _OPTION_KEYS_FROM_BODY}
        return ProcessRequested(
            request_id=_request_id(key, body.request_id),
            kind=kind,
            conversation_id=conversation_id,
            name=body.name,
            url=body.url,
            options=extra,
        )

    @router.post("/text", status_code=202, summary="Submit a text conversation (Symbl message format)")
    async def submit_text(body: TextSubmission, idempotency_key: IdempotencyKey = None) -> Accepted:
        return await accept(text_request(body, idempotency_key, None))

    @router.put("/text/{conversation_id}", status_code=202, summary="Append messages to a conversation")
    async def append_text(
        conversation_id: ConversationIdPath, body: TextSubmission, idempotency_key: IdempotencyKey = None
    ) -> Accepted:
        return await accept(text_request(body, idempotency_key, conversation_id))

    for kind in (MediaKind.AUDIO, MediaKind.VIDEO):

        def url_routes(kind: MediaKind = kind) -> None:
            @router.post(f"/{kind.value}/url", status_code=202, summary=f"Submit {kind.value} by URL")
            async def submit_url(body: UrlSubmission, idempotency_key: IdempotencyKey = None) -> Accepted:
                return await accept(url_request(kind, body, idempotency_key, None))

            @router.put(
                f"/{kind.value}/url/{{conversation_id}}",
                status_code=202,
                summary=f"Append {kind.value} by URL",
            )
            async def append_url(
                conversation_id: ConversationIdPath,
                body: UrlSubmission,
                idempotency_key: IdempotencyKey = None,
            ) -> Accepted:
                return await accept(url_request(kind, body, idempotency_key, conversation_id))

            async def upload(request: Request, idempotency_key: str | None, conversation_id: str | None) -> Accepted:
                content_type = request.headers.get("content-type", "application/octet-stream")
                if not content_type.startswith(_MEDIA_TYPES[kind]):
                    raise ApiProblem(
                        415,
                        f"a {kind.value} upload needs a {kind.value}/* Content-Type, got {content_type!r}",
                    )
                length_header = request.headers.get("content-length")
                content_length = int(length_header) if length_header and length_header.isdigit() else None
                if content_length is not None and content_length > max_upload_bytes:
                    raise ApiProblem(413, f"upload of {content_length} bytes exceeds {max_upload_bytes} bytes")
                if content_length == 0:
                    raise ApiProblem(400, f"the {kind.value} upload is empty")
                request_id = _request_id(idempotency_key, request.query_params.get("requestId"))
                try:
                    submitted, created = await submitter.submit_file(
                        request_id=request_id,
                        kind=kind,
                        content=_bounded(request.stream(), max_upload_bytes),
                        content_type=content_type,
                        content_length=content_length,
                        options=_options_from_query(request),
                        conversation_id=conversation_id,
                    )
                except ProviderError as error:
                    raise _provider_problem(error) from error
                await publish_submitted(submitted)
                return _accepted(submitted, created)

            @router.post(
                f"/{kind.value}",
                status_code=202,
                summary=f"Upload a {kind.value} file (raw body, options in the query string), streamed",
            )
            async def submit_file(request: Request, idempotency_key: IdempotencyKey = None) -> Accepted:
                return await upload(request, idempotency_key, None)

            @router.put(f"/{kind.value}/{{conversation_id}}", status_code=202, summary=f"Append a {kind.value} file")
            async def append_file(
                request: Request, conversation_id: ConversationIdPath, idempotency_key: IdempotencyKey = None
            ) -> Accepted:
                return await upload(request, idempotency_key, conversation_id)

        url_routes()

    return router


async def _bounded(stream: AsyncIterator[bytes], limit: int) -> AsyncIterator[bytes]:
    """Pass chunks through, stopping a body without Content-Length once it passes ``limit``."""
    seen = 0
    async for chunk in stream:
        seen += len(chunk)
        if seen > limit:
            raise ApiProblem(413, f"upload exceeds {limit} bytes")
        yield chunk
