"""Live streams relayed through ingest: what the provider says becomes ``parley.live`` events, in order.

Plain domain code, free of WebSockets: ``LiveStreamRecorder`` is handed each text frame the provider sends on one
stream and the frames the client sends, and publishes (through the function it is given, the service's
transactional producer) one event per finished message batch and per live insight batch. When the stream ends, for
whatever reason, it publishes ``LiveStreamEnded`` and the conversation's ``JobSubmitted`` in one transaction, so
job-watcher watches the stream's job like a submitted one and exactly one ``InsightsReady`` follows.

Publishing never holds the stream up: events wait in an ordered queue drained by one task, which retries a failed
publish with backoff until it succeeds (nothing recognised is dropped because Kafka was briefly away).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from parley_shared.events import (
    IdStr,
    JobKind,
    JobSubmitted,
    LiveInsights,
    LiveMessages,
    LiveStreamEnded,
    LiveStreamStarted,
    LiveTopics,
    LiveTrackers,
)
from parley_shared.logs import bind_ids
from parley_shared.retry import RetryPolicy
from parley_shared.validation import describe_validation_error
from pydantic import BaseModel, TypeAdapter, ValidationError

logger = logging.getLogger("parley.ingest.live")

EndReason = Literal["stopped", "client_disconnected", "provider_disconnected"]
# The Python SDK sends its stop as a Python dict's repr ("{'type': 'stop_request'}"), which is not JSON.
_STOP_TYPES = ("stop_request", "stop_recognition")
# Kafka away for a while must not lose what was said: retry for as long as the service runs, at most every 10 s.
PUBLISH_RETRIES = RetryPolicy(base_seconds=0.2, max_seconds=10.0, max_attempts=1_000_000)

Publish = Callable[[Sequence[BaseModel]], Awaitable[None]]
_conversation_ids: TypeAdapter[str] = TypeAdapter(IdStr)


def parse_frame(text: str) -> dict[str, Any] | None:
    """A text frame as a JSON object, or None (``__PING__``/``__PONG__``, anything else that is not an object)."""
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


def is_stop_request(text: str) -> bool:
    frame = parse_frame(text)
    if frame is not None:
        return frame.get("type") in _STOP_TYPES
    return text.replace(" ", "") == "{'type':'stop_request'}"


def with_pipeline_options(text: str, webhook_url: str | None, redaction: dict[str, Any] | None = None) -> str:
    """A client's ``start_request`` with ingest's job webhook added (unless the client chose one), so the provider
    tells job-watcher when the stream's conversation is processed, and the pipeline's redaction (replacing the
    client's); every other frame is passed through as it is."""
    if webhook_url is None and redaction is None:
        return text
    frame = parse_frame(text)
    if frame is None or frame.get("type") != "start_request":
        return text
    changed = with_pipeline_fields(frame, webhook_url, redaction)
    return text if changed == frame else json.dumps(changed)


def with_pipeline_fields(
    request: dict[str, Any], webhook_url: str | None, redaction: dict[str, Any] | None
) -> dict[str, Any]:
    """A stream's or call's start request with ingest's job webhook (unless it names one) and the pipeline's
    redaction (replacing its own)."""
    changed = dict(request)
    if webhook_url is not None and not request.get("webhookUrl"):
        changed["webhookUrl"] = webhook_url
    if redaction is not None:
        changed["redaction"] = redaction
    return changed


class LiveStreamRecorder:
    """One relayed stream: the provider's frames in, ``parley.live`` events and the final ``JobSubmitted`` out."""

    def __init__(
        self,
        connection_id: str,
        publish: Publish,
        *,
        webhook_url: str | None,
        retries: RetryPolicy = PUBLISH_RETRIES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.connection_id = connection_id
        self.conversation_id: str | None = None
        self.job_id: str | None = None
        self.stop_requested = False
        self.completed = False  # the provider sent conversation_completed
        self._publish = publish
        self.webhook_url = webhook_url  # ingest's job webhook, given to the provider in the start_request
        self._retries = retries
        self._sleep = sleep
        self._sequence = 0
        self._speaker: dict[str, Any] | None = None
        self._queue: asyncio.Queue[list[BaseModel] | None] = asyncio.Queue()
        self._publishing: asyncio.Task[None] | None = None

    # ---- the client's frames --------------------------------------------------------------------------------

    def client_sent(self, text: str) -> None:
        if is_stop_request(text):
            self.stop_requested = True
            return
        frame = parse_frame(text)
        if frame is not None and frame.get("type") == "start_request" and isinstance(frame.get("speaker"), dict):
            self._speaker = frame["speaker"]

    # ---- the provider's frames ------------------------------------------------------------------------------

    def provider_sent(self, text: str) -> None:
        frame = parse_frame(text)
        if frame is None:
            return
        try:
            self._provider_frame(frame)
        except ValidationError as error:
            # A frame the events cannot hold (an id outside the alphabet, a list that is not one): the client still
            # gets it as it came; the live topic does not.
            logger.warning("a provider frame was not recorded: %s", describe_validation_error(error))

    def _provider_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "message":
            self._platform_message(frame.get("message"))
        elif self.conversation_id is None:
            return  # results before the conversation exists cannot be keyed; the provider never sends them
        elif kind == "message_response" and frame.get("messages"):
            self._queue_events(LiveMessages(**self._envelope(), messages=list(frame["messages"])))
        elif kind == "insight_response" and frame.get("insights"):
            self._queue_events(LiveInsights(**self._envelope(), insights=list(frame["insights"])))
        elif kind == "topic_response" and frame.get("topics"):
            self._queue_events(LiveTopics(**self._envelope(), topics=list(frame["topics"])))
        elif kind == "tracker_response" and frame.get("trackers"):
            self._queue_events(LiveTrackers(**self._envelope(), trackers=list(frame["trackers"])))

    def _platform_message(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        data: dict[str, Any] = message["data"] if isinstance(message.get("data"), dict) else {}
        # The engine names the stream's job from the start (and again at the end); other providers may not.
        job_id = data.get("jobId") or message.get("jobId")
        if isinstance(job_id, str) and job_id:
            self.job_id = job_id
        if message.get("type") == "conversation_created" and self.conversation_id is None:
            conversation_id = data.get("conversationId")
            if isinstance(conversation_id, str | int) and str(conversation_id):
                self.conversation_id = _conversation_ids.validate_python(str(conversation_id))
                bind_ids(conversation_id=self.conversation_id)
                logger.info("live stream %s started", self.connection_id)
                self._queue_events(LiveStreamStarted(**self._envelope(), speaker=self._speaker))
        elif message.get("type") == "conversation_completed":
            self.completed = True

    def _envelope(self) -> dict[str, Any]:
        assert self.conversation_id is not None
        envelope = {
            "request_id": self.request_id,
            "conversation_id": self.conversation_id,
            "connection_id": self.connection_id,
            "sequence": self._sequence,
        }
        self._sequence += 1
        return envelope

    @property
    def request_id(self) -> str:
        return f"stream-{self.conversation_id}"

    def _queue_events(self, *events: BaseModel) -> None:
        self._queue.put_nowait(list(events))

    # ---- publishing, in order -------------------------------------------------------------------------------

    def start(self) -> None:
        self._publishing = asyncio.create_task(self._drain(), name=f"live {self.connection_id}")

    async def _drain(self) -> None:
        while (events := await self._queue.get()) is not None:
            attempt = 1
            while True:
                try:
                    await self._publish(events)
                    break
                except Exception as error:
                    delay = self._retries.delay(attempt)
                    logger.warning("could not publish live events (%s); retrying in %.1fs", error, delay)
                    await self._sleep(delay)
                    attempt += 1

    async def finish(self, reason: EndReason) -> None:
        """Queue the end of the stream (and its job, when the provider named one) and wait until all is published."""
        if self.conversation_id is not None:
            ended = LiveStreamEnded(**self._envelope(), job_id=self.job_id, reason=reason)
            if self.job_id is None:
                logger.warning("live stream %s ended (%s) without a provider job to watch", self.connection_id, reason)
                self._queue_events(ended)
            else:
                submitted = JobSubmitted(
                    request_id=self.request_id,
                    conversation_id=self.conversation_id,
                    job_id=self.job_id,
                    kind=JobKind.STREAM,
                    webhook_url=self.webhook_url,
                )
                self._queue_events(ended, submitted)
            logger.info("live stream %s ended: %s", self.connection_id, reason)
        self._queue.put_nowait(None)
        if self._publishing is not None:
            await self._publishing
