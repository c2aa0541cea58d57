"""Symbl's Async API: ``POST /v1/process/{text,audio,video}[/url]`` and the ``PUT …/{conversationId}`` appends.

A request is checked (conversation, concurrency, options, size) before any of its body is read; media bodies are
streamed to a file, never held in memory. Acceptance is one transaction (conversation, job, webhook outbox row)
and the runner is woken; the response is ``{conversationId, jobId}``.

A request may carry an ``Idempotency-Key``: the first with a key records it with its job, and a repeat (a client's
retry after a timeout, or the same request through another replica) gets that ``{conversationId, jobId}`` again,
answered before its body is read, without a second job. A repeat to another method or path is a 409.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from parley_shared.http_errors import ApiProblem
from parley_shared.validation import describe_validation_error
from pydantic import ValidationError
from starlette.requests import ClientDisconnect

from parley_engine.auth import AccessChecked
from parley_engine.dependencies import (
    ConversationsDep,
    JobRunnerDep,
    JobsDep,
    SettingsDep,
    WebhookSenderDep,
)
from parley_engine.identifiers import new_conversation_id, new_job_id
from parley_engine.jobs import media_suffix
from parley_engine.options import AsyncOptions, TextRequest, UrlRequest, options_from_query
from parley_engine.store import (
    ConversationNotFound,
    IdempotencyClaim,
    IdempotencyKeyTaken,
    NewConversation,
    NewJob,
    TooManyJobs,
)
from parley_engine.webhooks import webhook_refusal

CONVERSATION_NOT_FOUND = "The conversationId is either invalid or does not exist."


def too_many_jobs_message(limit: int) -> str:
    return (
        f"This API has a limit of maximum of {limit} number of concurrent jobs per account. "
        "Please wait for some of the jobs to complete before submitting more."
    )


def too_many_jobs(limit: int) -> JSONResponse:
    return JSONResponse(
        {"statusCode": 429, "message": too_many_jobs_message(limit)}, status_code=429, headers={"Retry-After": "5"}
    )


def invalid(error: ValidationError) -> ApiProblem:
    return ApiProblem(400, f"invalid request: {describe_validation_error(error)}")


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description=(
            "Any unique string (1 to 255 characters) per intended job, e.g. a UUID. A repeat with the same key within "
            "PARLEY_IDEMPOTENCY_KEY_HOURS returns the first request's conversationId and jobId and creates no job; "
            "a repeat to another method or path is refused with 409."
        ),
    ),
]


class Submissions:
    """What every Async API endpoint does around its own input handling."""

    def __init__(
        self,
        settings: SettingsDep,
        jobs: JobsDep,
        conversations: ConversationsDep,
        runner: JobRunnerDep,
        webhooks: WebhookSenderDep,
        request: Request,
        idempotency_key: IdempotencyKeyHeader = None,
    ) -> None:
        self.settings = settings
        self.jobs = jobs
        self.conversations = conversations
        self.runner = runner
        self.webhooks = webhooks
        self.idempotency = None
        if idempotency_key is not None:
            kept = timedelta(hours=settings.idempotency_key_hours)
            self.idempotency = IdempotencyClaim(
                idempotency_key, request.method, request.url.path, expired_before=datetime.now(UTC) - kept
            )

    async def admit(self, conversation_id: str | None) -> JSONResponse | dict[str, str] | None:
        """Answer a repeated idempotency key with its first job, or refuse early: an unknown conversation (404)
        or too many active jobs (429)."""
        if (first := await self.first_answer()) is not None:
            return first
        if conversation_id is not None:
            try:
                await self.conversations.conversation(conversation_id)
            except ConversationNotFound:
                raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        if await self.jobs.count_active_jobs() >= self.settings.max_concurrent_jobs:
            return too_many_jobs(self.settings.max_concurrent_jobs)
        return None

    async def refuse_unreachable_webhook(self, url: str | None) -> None:
        """400 for a webhookUrl the engine will not call (a non-public address it was not told to trust)."""
        if url is not None and (refusal := await webhook_refusal(url, self.settings)) is not None:
            raise ApiProblem(400, refusal)

    async def accept(
        self,
        *,
        kind: str,
        source: str,
        options: AsyncOptions,
        conversation_id: str | None,
        job_id: str | None = None,
        input_path: Path | None = None,
        input_json: Any = None,
        start_time: datetime | None = None,
    ) -> dict[str, str]:
        try:
            job_options = options.job_options(speech=source != "text")
        except ValidationError as error:
            raise invalid(error) from None
        await self.refuse_unreachable_webhook(options.webhook_url)
        job = NewJob(
            id=job_id or new_job_id(),
            kind=kind,
            options=job_options,
            input_path=str(input_path) if input_path else None,
            input_json=input_json,
            webhook_url=options.webhook_url,
        )
        new_conversation = None
        if conversation_id is None:
            new_id = new_conversation_id()
            new_conversation = NewConversation(
                id=new_id,
                name=options.name or new_id,
                source=source,
                start_time=start_time or datetime.now(UTC),
                metadata=options.metadata or {},
            )
        limit = self.settings.max_concurrent_jobs
        try:
            # The count and the insert are one transaction: replicas on one database cannot overshoot the limit.
            row = await self.jobs.submit_job(
                job,
                new_conversation=new_conversation,
                conversation_id=conversation_id,
                max_active_jobs=limit,
                idempotency=self.idempotency,
            )
        except (ConversationNotFound, TooManyJobs, IdempotencyKeyTaken) as refused:
            if input_path is not None:
                await asyncio.to_thread(input_path.unlink, missing_ok=True)
            if isinstance(refused, IdempotencyKeyTaken):
                # A concurrent request with this key committed first: its job is the answer.
                if (first := await self.first_answer()) is not None:
                    return first
                raise ApiProblem(409, "the Idempotency-Key is in use by another request: retry it") from None
            if isinstance(refused, TooManyJobs):
                raise ApiProblem(429, too_many_jobs_message(limit), statusCode=429) from None
            raise ApiProblem(404, CONVERSATION_NOT_FOUND) from None
        self.runner.wake()
        self.webhooks.wake()  # the "scheduled" delivery
        return {"conversationId": row.conversation_id, "jobId": row.id}

    async def first_answer(self) -> dict[str, str] | None:
        """The first answer to this request's idempotency key, if one was given and recorded; 409 if that first
        request was to another method or path."""
        claim = self.idempotency
        if claim is None:
            return None
        first = await self.jobs.idempotency_key(claim.key, expired_before=claim.expired_before)
        if first is None:
            return None
        if (first.method, first.path) != (claim.method, claim.path):
            raise ApiProblem(
                409,
                f"the Idempotency-Key was already used for {first.method} {first.path}: "
                "use a new key for a different request",
            )
        return {"conversationId": first.conversation_id, "jobId": first.job_id}

    async def json_body(self, request: Request) -> dict[str, Any]:
        """The JSON object body, bounded by ``max_text_request_bytes`` (413) and well formed (400)."""
        limit = self.settings.max_text_request_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiProblem(413, f"the request body is larger than {limit} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body.extend(chunk)
            if len(body) > limit:
                raise ApiProblem(413, f"the request body is larger than {limit} bytes")
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiProblem(400, "the request body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiProblem(400, "the request body must be a JSON object")
        return data

    async def media_body(self, request: Request, job_id: str) -> Path:
        """Stream the raw body to a file in the data dir; 413 as soon as it passes ``max_upload_bytes``."""
        limit = self.settings.max_upload_bytes
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > limit:
            raise ApiProblem(413, f"the file is larger than the limit of {limit} bytes")
        self.settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        path = self.settings.uploads_dir / f"{job_id}{media_suffix(request.headers.get('content-type'))}"
        received = 0
        try:
            with path.open("wb") as file:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > limit:
                        raise ApiProblem(413, f"the file is larger than the limit of {limit} bytes")
                    file.write(chunk)
        except (ApiProblem, ClientDisconnect, OSError):
            path.unlink(missing_ok=True)
            raise
        if received == 0:
            path.unlink(missing_ok=True)
            raise ApiProblem(400, "the request body is empty: send the media file as the body")
        return path


SubmissionsDep = Annotated[Submissions, Depends(Submissions)]


def _media_type_accepted(content_type: str | None, family: str) -> bool:
    # Symbl's own Python SDK sends an empty Content-Type for files unless told one: the same as none.
    if content_type is None or not content_type.strip():
        return family == "audio"  # Symbl detects audio formats itself; video requires a type
    media_type = content_type.split(";")[0].strip().lower()
    return media_type.startswith(f"{family}/") or media_type == "application/octet-stream"


def build_async_router() -> APIRouter:
    router = APIRouter(prefix="/v1/process", tags=["async"])

    async def process_text(request: Request, submissions: Submissions, conversation_id: str | None) -> Any:
        if (answered := await submissions.admit(conversation_id)) is not None:
            return answered
        data = await submissions.json_body(request)
        try:
            body = TextRequest.model_validate(data)
        except ValidationError as error:
            raise invalid(error) from None
        return await submissions.accept(
            kind="text",
            source="text",
            options=body,
            conversation_id=conversation_id,
            input_json=body.stored_messages(),
            start_time=body.first_start_time(),
        )

    async def process_media(
        request: Request, submissions: Submissions, family: str, conversation_id: str | None
    ) -> Any:
        if (answered := await submissions.admit(conversation_id)) is not None:
            return answered
        try:
            options = AsyncOptions.model_validate(options_from_query(request.query_params))
        except ValidationError as error:
            raise invalid(error) from None
        if not _media_type_accepted(request.headers.get("content-type"), family):
            expected = "audio/* (e.g. audio/wav, audio/mpeg) or none" if family == "audio" else "video/* (video/mp4)"
            raise ApiProblem(415, f"unsupported Content-Type {request.headers.get('content-type')!r}: use {expected}")
        job_id = new_job_id()
        await submissions.refuse_unreachable_webhook(options.webhook_url)  # before the upload is read
        path = await submissions.media_body(request, job_id)
        return await submissions.accept(
            kind=family, source=family, options=options, conversation_id=conversation_id, job_id=job_id, input_path=path
        )

    async def process_media_url(
        request: Request, submissions: Submissions, family: str, conversation_id: str | None
    ) -> Any:
        if (answered := await submissions.admit(conversation_id)) is not None:
            return answered
        data = await submissions.json_body(request)
        # symbl-rest sends the diarization options of the url endpoints in the query string.
        merged = {**options_from_query(request.query_params), **data}
        try:
            body = UrlRequest.model_validate(merged)
        except ValidationError as error:
            raise invalid(error) from None
        return await submissions.accept(
            kind=f"{family}_url",
            source=family,
            options=body,
            conversation_id=conversation_id,
            input_json={"url": body.url},
        )

    @router.post("/text", summary="Process text messages as a new conversation")
    async def post_text(request: Request, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_text(request, submissions, None)

    @router.put("/text/{conversationId}", summary="Append text messages to a conversation")
    async def put_text(request: Request, conversationId: str, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_text(request, submissions, conversationId)

    @router.post("/audio/url", summary="Process an audio file at a URL as a new conversation")
    async def post_audio_url(request: Request, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media_url(request, submissions, "audio", None)

    @router.put("/audio/url/{conversationId}", summary="Append an audio file at a URL to a conversation")
    async def put_audio_url(
        request: Request, conversationId: str, _: AccessChecked, submissions: SubmissionsDep
    ) -> Any:
        return await process_media_url(request, submissions, "audio", conversationId)

    @router.post("/audio", summary="Process an uploaded audio file (raw body) as a new conversation")
    async def post_audio(request: Request, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media(request, submissions, "audio", None)

    @router.put("/audio/{conversationId}", summary="Append an uploaded audio file to a conversation")
    async def put_audio(request: Request, conversationId: str, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media(request, submissions, "audio", conversationId)

    @router.post("/video/url", summary="Process a video file at a URL as a new conversation")
    async def post_video_url(request: Request, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media_url(request, submissions, "video", None)

    @router.put("/video/url/{conversationId}", summary="Append a video file at a URL to a conversation")
    async def put_video_url(
        request: Request, conversationId: str, _: AccessChecked, submissions: SubmissionsDep
    ) -> Any:
        return await process_media_url(request, submissions, "video", conversationId)

    @router.post("/video", summary="Process an uploaded video file (raw body) as a new conversation")
    async def post_video(request: Request, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media(request, submissions, "video", None)

    @router.put("/video/{conversationId}", summary="Append an uploaded video file to a conversation")
    async def put_video(request: Request, conversationId: str, _: AccessChecked, submissions: SubmissionsDep) -> Any:
        return await process_media(request, submissions, "video", conversationId)

    return router


def build_job_router() -> APIRouter:
    router = APIRouter(prefix="/v1/job", tags=["jobs"])

    @router.get("/{jobId}", summary="A job's status")
    async def get_job(jobId: str, _: AccessChecked, jobs: JobsDep) -> dict[str, str]:
        job = await jobs.job(jobId)
        if job is None:
            raise ApiProblem(404, f"The jobId {jobId} is either invalid or does not exist.")
        body = {"id": job.id, "status": job.status}
        if job.status == "failed" and job.reason:
            body["reason"] = job.reason
        return body

    return router
