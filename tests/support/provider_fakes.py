"""Fakes of the provider's ports (``parley_shared.provider.ports``): each implements the protocol it stands for."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from parley_shared.provider import InsightEndpoint, ProcessResponse, ProviderError
from parley_shared.provider.client import MediaKind
from parley_shared.provider.ports import AsyncApi, ConversationApi


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


@dataclass
class FakeAsyncApi(ProviderLifetime, AsyncApi):
    """The three Async API calls ingest makes; each accepted call gets a new job. ``error`` makes the next fail."""

    calls: list[ProviderCall] = field(default_factory=list)
    error: ProviderError | None = None

    def _accept(self, call: ProviderCall) -> ProcessResponse:
        self.calls.append(call)
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        number = len(self.calls)
        return ProcessResponse(
            conversation_id=call.conversation_id or f"58151706935951{number:02d}",
            job_id=f"9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb{number:02d}",
        )

    async def submit_text(self, body: Mapping[str, Any], *, conversation_id: str | None = None) -> ProcessResponse:
        return self._accept(ProviderCall("submit_text", "text", dict(body), conversation_id))

    async def submit_media_url(
        self, kind: MediaKind, body: Mapping[str, Any], *, conversation_id: str | None = None
    ) -> ProcessResponse:
        return self._accept(ProviderCall("submit_media_url", kind, dict(body), conversation_id))

    async def submit_media_file(
        self,
        kind: MediaKind,
        content: AsyncIterable[bytes],
        *,
        content_type: str,
        content_length: int | None,
        options: Mapping[str, Any],
        conversation_id: str | None = None,
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
