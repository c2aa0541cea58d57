"""The provider double's HTTP surface: the Symbl subset Parley uses, and ``/_double/*`` to inspect it."""

from __future__ import annotations

import hmac
import json
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley_devtools.provider_double.config import DoubleConfig
from parley_devtools.provider_double.insights import (
    DEFAULT_SPEAKER,
    FIXED_TRANSCRIPT,
    INSIGHT_BUILDERS,
    build_insight,
)
from parley_devtools.provider_double.lifecycle import JobLifecycle
from parley_devtools.provider_double.records import Conversation, ConversationKind, SourceMessage

INVALID_TOKEN_MESSAGE = "Token validation failed for provided token."
UNKNOWN_CONVERSATION_MESSAGE = "The conversationId is either invalid or does not exist."
UNKNOWN_JOB_MESSAGE = "The jobId is either invalid or does not exist."
# Where the call-log middleware leaves the record a handler may annotate with conversationId/jobId.
CALL_RECORD_KEY = "parley.double.call"

Handler = Callable[[Request], Awaitable[Response]]


class BadRequest(Exception):
    """A request the real provider would refuse with 400 and this message."""


class TokenIssuer:
    """Issues one access token at a time and, like Symbl, hands out the same one until it expires."""

    def __init__(self, config: DoubleConfig) -> None:
        self._config = config
        self._expiries: dict[str, float] = {}
        self._current: str | None = None

    def credentials_match(self, app_id: object, app_secret: object) -> bool:
        if not isinstance(app_id, str) or not isinstance(app_secret, str):
            return False
        id_ok = hmac.compare_digest(app_id.encode(), self._config.app_id.encode())
        expected_secret = self._config.app_secret.get_secret_value()
        secret_ok = hmac.compare_digest(app_secret.encode(), expected_secret.encode())
        return id_ok and secret_ok

    def issue(self) -> tuple[str, int]:
        """The current token and its remaining lifetime in whole seconds."""
        now = time.monotonic()
        if self._current is not None and self._expiries[self._current] - now >= 1:
            return self._current, int(self._expiries[self._current] - now)
        self._current = secrets.token_urlsafe(32)
        self._expiries[self._current] = now + self._config.token_ttl_seconds
        return self._current, self._config.token_ttl_seconds

    def is_valid(self, token: str | None) -> bool:
        expiry = self._expiries.get(token) if token else None
        return expiry is not None and expiry > time.monotonic()


class CallLog:
    """ASGI middleware recording every provider request as ``{"t", "method", "path", "status", ...}``.

    Written as plain ASGI rather than ``BaseHTTPMiddleware`` because the double must answer thousands of
    requests a second. ``/_double/*`` requests are not recorded.
    """

    def __init__(self, app: ASGIApp, calls: list[dict[str, Any]]) -> None:
        self._app = app
        self._calls = calls

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_double/"):
            await self._app(scope, receive, send)
            return
        record: dict[str, Any] = {
            "t": time.time(),
            "method": scope["method"],
            "path": scope["path"],
            "status": 500,
        }
        scope[CALL_RECORD_KEY] = record

        async def send_and_note_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                record["status"] = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_note_status)
        finally:
            path_params = scope.get("path_params", {})
            for param, key in (("conversation_id", "conversationId"), ("job_id", "jobId")):
                if param in path_params:
                    record.setdefault(key, path_params[param])
            self._calls.append(record)


def _message(status_code: int, message: str) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status_code)


def _annotate_call(request: Request, **fields: str) -> None:
    record = request.scope.get(CALL_RECORD_KEY)
    if record is not None:
        record.update(fields)


def _bearer_token(request: Request) -> str | None:
    authorization = request.headers.get("authorization")
    if authorization and authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return request.headers.get("x-api-key") or request.query_params.get("access_token")


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError as error:
        raise BadRequest("The request body is not valid JSON.") from error
    if not isinstance(body, dict):
        raise BadRequest("The request body must be a JSON object.")
    return body


def _text_messages(body: dict[str, Any]) -> list[SourceMessage]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest('"messages" is required and must be a non-empty array.')
    content: list[SourceMessage] = []
    for index, message in enumerate(messages):
        payload = message.get("payload") if isinstance(message, dict) else None
        text = payload.get("content") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text:
            raise BadRequest(f'"messages[{index}].payload.content" is required (a non-empty string).')
        speaker = message.get("from") if isinstance(message.get("from"), dict) else {}
        duration = message.get("duration") if isinstance(message.get("duration"), dict) else {}
        content.append(
            SourceMessage(
                text=text,
                speaker_name=_optional_str(speaker.get("name")),
                speaker_user_id=_optional_str(speaker.get("userId")),
                start_time=_optional_str(duration.get("startTime")),
                end_time=_optional_str(duration.get("endTime")),
            )
        )
    return content


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def create_app(config: DoubleConfig) -> Starlette:
    """The double as an ASGI app; its scheduler runs in the app's lifespan (or inside ``running(app)``)."""
    lifecycle = JobLifecycle(config)
    tokens = TokenIssuer(config)
    calls: list[dict[str, Any]] = []

    def requires_token(handler: Handler) -> Handler:
        async def checked(request: Request) -> Response:
            if not tokens.is_valid(_bearer_token(request)):
                return _message(401, INVALID_TOKEN_MESSAGE)
            try:
                return await handler(request)
            except BadRequest as error:
                return _message(400, str(error))

        return checked

    async def generate_token(request: Request) -> Response:
        try:
            body = await _json_object(request)
        except BadRequest as error:
            return _message(400, str(error))
        if not tokens.credentials_match(body.get("appId"), body.get("appSecret")):
            return _message(401, "Token generation failed: invalid appId or appSecret.")
        token, expires_in = tokens.issue()
        return JSONResponse({"accessToken": token, "expiresIn": expires_in})

    def submission_endpoint(kind: ConversationKind, source: str) -> Handler:
        """One handler per endpoint family; ``source`` is "text", "file" (raw body) or "url" (JSON url)."""

        async def submit(request: Request) -> Response:
            conversation: Conversation | None = None
            if "conversation_id" in request.path_params:
                conversation = lifecycle.conversations.get(request.path_params["conversation_id"])
                if conversation is None:
                    return _message(404, UNKNOWN_CONVERSATION_MESSAGE)

            body_bytes = 0
            marked_fields: list[str] = []
            if source == "file":
                options: dict[str, Any] = dict(request.query_params)
                async for chunk in request.stream():
                    body_bytes += len(chunk)
                if body_bytes == 0:
                    raise BadRequest("The request body is empty: send the media file as the raw body.")
                content = [SourceMessage(text=FIXED_TRANSCRIPT, speaker_name=DEFAULT_SPEAKER)]
            else:
                options = await _json_object(request)
                if source == "text":
                    content = _text_messages(options)
                else:
                    url = options.get("url")
                    if not isinstance(url, str) or not url:
                        raise BadRequest('"url" is required and must be a non-empty string.')
                    marked_fields.append(url)
                    content = [SourceMessage(text=FIXED_TRANSCRIPT, speaker_name=DEFAULT_SPEAKER)]

            name = _optional_str(options.get("name"))
            webhook_url = _optional_str(options.get("webhookUrl")) or request.query_params.get("webhookUrl")
            marked_fields.extend(message.text for message in content)
            if name:
                marked_fields.append(name)
            will_fail = any(config.fail_marker in text for text in marked_fields)

            if conversation is None:
                conversation = lifecycle.new_conversation(name, kind)
            elif name:
                conversation.name = name
            job = lifecycle.submit(
                conversation, content, will_fail=will_fail, webhook_url=webhook_url, body_bytes=body_bytes
            )
            _annotate_call(request, conversationId=conversation.conversation_id, jobId=job.job_id)
            return JSONResponse({"conversationId": conversation.conversation_id, "jobId": job.job_id})

        return requires_token(submit)

    @requires_token
    async def job_status(request: Request) -> Response:
        job = lifecycle.jobs.get(request.path_params["job_id"])
        if job is None:
            return _message(404, UNKNOWN_JOB_MESSAGE)
        _annotate_call(request, conversationId=job.conversation_id)
        return JSONResponse(job.as_status_body())

    @requires_token
    async def conversation_read(request: Request) -> Response:
        conversation = lifecycle.conversations.get(request.path_params["conversation_id"])
        if conversation is None:
            return _message(404, UNKNOWN_CONVERSATION_MESSAGE)
        aspect = request.path_params.get("aspect", "")
        if aspect not in INSIGHT_BUILDERS:
            return _message(404, f"Unknown Conversation API resource: {aspect}.")
        body = conversation.cached_bodies.get(aspect)
        if body is None:
            body = json.dumps(build_insight(conversation, aspect)).encode()
            conversation.cached_bodies[aspect] = body
        return Response(body, media_type="application/json")

    async def list_calls(request: Request) -> Response:
        return JSONResponse({"calls": calls, "transitions": lifecycle.transitions})

    async def list_jobs(request: Request) -> Response:
        jobs = [
            {
                "jobId": job.job_id,
                "conversationId": job.conversation_id,
                "status": job.status,
                "reason": job.reason,
                "submittedAt": job.submitted_at,
                "completedAt": job.finished_at,
                "bodyBytes": job.body_bytes,
            }
            for job in lifecycle.jobs.values()
        ]
        webhooks = {
            "delivered": lifecycle.webhooks_delivered,
            "failed": lifecycle.webhooks_failed,
            "dropped": lifecycle.webhooks_dropped,
        }
        return JSONResponse({"jobs": jobs, "webhooks": webhooks})

    async def reset(request: Request) -> Response:
        lifecycle.reset()
        calls.clear()
        return JSONResponse({"message": "reset"})

    routes = [Route("/oauth2/token:generate", generate_token, methods=["POST"])]
    for media in ("audio", "video"):
        upload, by_url = submission_endpoint(media, "file"), submission_endpoint(media, "url")
        routes += [
            Route(f"/v1/process/{media}", upload, methods=["POST"]),
            Route(f"/v1/process/{media}/url", by_url, methods=["POST"]),
            Route(f"/v1/process/{media}/url/{{conversation_id}}", by_url, methods=["PUT"]),
            Route(f"/v1/process/{media}/{{conversation_id}}", upload, methods=["PUT"]),
        ]
    routes += [
        Route("/v1/process/text", submission_endpoint("text", "text"), methods=["POST"]),
        Route("/v1/process/text/{conversation_id}", submission_endpoint("text", "text"), methods=["PUT"]),
        Route("/v1/job/{job_id}", job_status, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}", conversation_read, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/{aspect}", conversation_read, methods=["GET"]),
        Route("/_double/calls", list_calls, methods=["GET"]),
        Route("/_double/jobs", list_jobs, methods=["GET"]),
        Route("/_double/reset", reset, methods=["POST"]),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await lifecycle.start()
        try:
            yield
        finally:
            await lifecycle.stop()

    app = Starlette(routes=routes, lifespan=lifespan)
    app.add_middleware(CallLog, calls=calls)
    app.state.lifecycle = lifecycle
    app.state.calls = calls
    return app


@asynccontextmanager
async def running(app: Starlette) -> AsyncIterator[Starlette]:
    """Run the double's scheduler without a server, e.g. around ``httpx.ASGITransport(app)`` in tests."""
    lifecycle: JobLifecycle = app.state.lifecycle
    await lifecycle.start()
    try:
        yield app
    finally:
        await lifecycle.stop()
