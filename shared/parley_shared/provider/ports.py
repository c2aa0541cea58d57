"""The parts of the provider each service calls, as protocols: ``ProviderClient`` implements them all, and a test's
fake implements the one it stands for (mypy checks both). Each is an async context manager, which the service
enters for its lifetime (the client's connection pool)."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

from parley_shared.provider.client import DEFAULT_INSIGHT_CONCURRENCY, MediaKind
from parley_shared.provider.models import ConversationSummary, InsightEndpoint, JobState, ProcessResponse


class AsyncApi(AbstractAsyncContextManager[Any], Protocol):
    """Submitting conversations (ingest); ``idempotency_key`` is sent as the ``Idempotency-Key`` header."""

    async def submit_text(
        self, body: Mapping[str, Any], *, conversation_id: str | None = None, idempotency_key: str | None = None
    ) -> ProcessResponse: ...

    async def submit_media_url(
        self,
        kind: MediaKind,
        body: Mapping[str, Any],
        *,
        conversation_id: str | None = None,
        idempotency_key: str | None = None,
    ) -> ProcessResponse: ...

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
    ) -> ProcessResponse: ...


class ConversationCleanup(Protocol):
    """Finding and deleting conversations (ingest's reconciliation of submissions whose outcome it never heard)."""

    async def list_conversations(self, *, limit: int = 100, offset: int = 0) -> list[ConversationSummary]: ...

    async def delete_conversation(self, conversation_id: str) -> None: ...


class JobApi(AbstractAsyncContextManager[Any], Protocol):
    """Checking a job's status (job-watcher)."""

    async def get_job(self, job_id: str) -> JobState: ...


class ConversationApi(AbstractAsyncContextManager[Any], Protocol):
    """Reading a conversation's insights (insight-fetcher)."""

    async def fetch_insights(
        self,
        conversation_id: str,
        endpoints: Iterable[InsightEndpoint] = tuple(InsightEndpoint),
        *,
        concurrency: int = DEFAULT_INSIGHT_CONCURRENCY,
    ) -> dict[str, Any]: ...
