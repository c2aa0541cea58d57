"""Fakes of the provider's ports (``parley_shared.provider.ports``): each implements the protocol it stands for."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from parley_shared.provider import (
    ConversationNotFound,
    ConversationSummary,
    InsightEndpoint,
    ProcessResponse,
    ProviderError,
    ProviderUnavailable,
)
from parley_shared.provider.client import MediaKind
from parley_shared.provider.ports import AsyncApi, ConversationApi, ConversationCleanup


class ProviderLifetime:
    """A fake holds no connections: entering and leaving it does nothing."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        return None


@dataclass
class ProviderCall:
    operation: str
    kind: str
    body: dict[str, Any]
    conversation_id: str | None
    content: bytes = b""
    content_type: str | None = None
    content_length: int | None = None
    idempotency_key: str | None = None


@dataclass
class FakeAsyncApi(ProviderLifetime, AsyncApi):
    """The three Async API calls ingest makes; each accepted call gets a new job, except a repeated idempotency key,
    which gets its first job back (as the engine answers). ``error`` makes the next call fail."""

    calls: list[ProviderCall] = field(default_factory=list)
    error: ProviderError | None = None
    jobs_by_key: dict[str, ProcessResponse] = field(default_factory=dict)

    @property
    def jobs_created(self) -> int:
        """Accepted calls that created a job (a repeated idempotency key creates none)."""
        return len({job.job_id for job in self._answers})

    def __post_init__(self) -> None:
        self._answers: list[ProcessResponse] = []

    def _accept(self, call: ProviderCall) -> ProcessResponse:
        self.calls.append(call)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if call.idempotency_key is not None and call.idempotency_key in self.jobs_by_key:
            answer = self.jobs_by_key[call.idempotency_key]
        else:
            number = len(self.calls)
            answer = ProcessResponse(
                conversation_id=call.conversation_id or f"58151706935951{number:02d}",
                job_id=f"9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb{number:02d}",
            )
            if call.idempotency_key is not None:
                self.jobs_by_key[call.idempotency_key] = answer
        self._answers.append(answer)
        return answer

    async def submit_text(
        self, body: Mapping[str, Any], *, conversation_id: str | None = None, idempotency_key: str | None = None
    ) -> ProcessResponse:
        call = ProviderCall("submit_text", "text", dict(body), conversation_id, idempotency_key=idempotency_key)
        return self._accept(call)

    async def submit_media_url(
        self,
        kind: MediaKind,
        body: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ProcessResponse:
        call = ProviderCall("submit_media_url", kind, dict(body), conversation_id, idempotency_key=idempotency_key)
        return self._accept(call)

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
        received = b"".join([chunk async for chunk in content])  # streamed through, as the real client does
        return self._accept(
            ProviderCall(
                "submit_media_file",
                kind,
                dict(options),
                conversation_id,
                content=received,
                content_type=content_type,
                content_length=content_length,
                idempotency_key=idempotency_key,
            )
        )


@dataclass
class FakeConversationApi(ProviderLifetime, ConversationApi):
    """Answers every insight read with ``insights``; records which conversations were read."""

    insights: dict[str, Any] = field(default_factory=lambda: {"messages": []})
    reads: list[str] = field(default_factory=list)

    async def fetch_insights(
        self,
        conversation_id: str,
        endpoints: Iterable[InsightEndpoint] = tuple(InsightEndpoint),
        *,
        concurrency: int = 9,
    ) -> dict[str, Any]:
        self.reads.append(conversation_id)
        return dict(self.insights)


@dataclass
class KeylessProvider(FakeAsyncApi, ConversationCleanup):
    """A provider that ignores ``Idempotency-Key`` and keeps each conversation's metadata, listable and deletable
    (newest first). ``lose_answers`` makes that many submissions create their job and then time out unheard."""

    conversations: dict[str, dict[str, Any]] = field(default_factory=dict)  # id → metadata, oldest first
    lose_answers: int = 0
    listing_fails: bool = False
    deleted: list[str] = field(default_factory=list)
    listings: int = 0

    def _accept(self, call: ProviderCall) -> ProcessResponse:
        call.idempotency_key = None  # ignored, as some providers do
        answer = super()._accept(call)
        metadata = call.body.get("metadata")
        self.conversations[answer.conversation_id] = dict(metadata) if isinstance(metadata, dict) else {}
        if self.lose_answers:
            self.lose_answers -= 1
            raise ProviderUnavailable(
                "POST /v1/process/text: read timeout", status=None, attempts=1, may_have_been_processed=True
            )
        return answer

    async def list_conversations(self, *, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        self.listings += 1
        if self.listing_fails:
            raise ProviderUnavailable("GET /v1/conversations: 503", status=503, attempts=6)
        newest_first = list(reversed(self.conversations.items()))[offset : offset + limit]
        return [ConversationSummary(id=cid, metadata=metadata) for cid, metadata in newest_first]

    async def delete_conversation(self, conversation_id: str) -> None:
        if self.conversations.pop(conversation_id, None) is None:
            raise ConversationNotFound(conversation_id)
        self.deleted.append(conversation_id)
