"""Submitting conversations to the provider: the domain of ingest, free of Kafka and HTTP.

Every submission carries its requestId as the provider's ``Idempotency-Key``: the ledger stops a repeat on this
replica, and the provider (the engine honours the key) answers a repeat from another replica, or a resubmission
after a timeout that hid an accepted job, with the first job instead of an orphaned second one. For providers that
ignore the key, the requestId is in the conversation's metadata too, and ``OrphanSweeper`` (``reconcile``) drops
the conversation of an earlier, unheard-of attempt once the resubmission is accepted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Awaitable, Callable
from typing import Any

from parley_shared.events import JobSubmitted, MediaKind, ProcessRequested
from parley_shared.logs import bind_ids
from parley_shared.provider import ProcessResponse, ProviderUnavailable
from parley_shared.provider.ports import AsyncApi

from parley_ingest.ledger import RequestLedger
from parley_ingest.metrics import SubmissionOutcomes
from parley_ingest.reconcile import OrphanSweeper, marked

logger = logging.getLogger("parley.ingest")


class Submitter:
    """Calls the provider's Async API once per requestId and describes the result as a ``JobSubmitted``."""

    def __init__(
        self,
        provider: AsyncApi,
        ledger: RequestLedger,
        *,
        webhook_url: str | None,
        redaction: dict[str, Any] | None = None,
        orphans: OrphanSweeper | None = None,
    ) -> None:
        self._provider = provider
        self._ledger = ledger
        self._webhook_url = webhook_url
        self._redaction = redaction
        self._orphans = orphans
        # Counted in parley_requests_total once each submission's JobSubmitted commits (the jobs stream's hook).
        self.outcomes = SubmissionOutcomes()

    def _with_pipeline_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The request's options with job-watcher's webhook (unless it names one) and the pipeline's redaction
        (whatever it asks: the setting is there so that nothing unredacted reaches Kafka)."""
        if self._webhook_url and "webhookUrl" not in options:
            options = {**options, "webhookUrl": self._webhook_url}
        if self._redaction is not None:
            options = {**options, "redaction": self._redaction}
        return options

    def _submitted(self, request_id: str, kind: MediaKind, accepted: ProcessResponse) -> JobSubmitted:
        return JobSubmitted(
            request_id=request_id,
            conversation_id=accepted.conversation_id,
            job_id=accepted.job_id,
            kind=kind,
            webhook_url=self._webhook_url,
        )

    async def submit(self, request: ProcessRequested) -> tuple[JobSubmitted, bool]:
        """Submit a text or media-URL request; returns the job and whether this call created it."""

        async def call_provider() -> JobSubmitted:
            body = marked(self._with_pipeline_options(request.provider_body()), request.request_id)
            if request.kind is MediaKind.TEXT:
                accepted = await self._provider.submit_text(
                    body, conversation_id=request.conversation_id, idempotency_key=request.request_id
                )
            else:
                accepted = await self._provider.submit_media_url(
                    request.kind.value,  # type: ignore[arg-type]
                    body,
                    conversation_id=request.conversation_id,
                    idempotency_key=request.request_id,
                )
            return self._submitted(request.request_id, request.kind, accepted)

        return await self._once(request.request_id, call_provider)

    async def jobs_for(self, request: ProcessRequested) -> list[JobSubmitted]:
        """A ``parley.requests`` command's job. Given even for a repeated request: the first ``JobSubmitted`` may
        have been lost, and job-watcher ignores a jobId it already watches."""
        submitted, _ = await self.submit(request)
        return [submitted]

    async def submit_file(
        self,
        *,
        request_id: str,
        kind: MediaKind,
        content: AsyncIterable[bytes],
        content_type: str,
        content_length: int | None,
        options: dict[str, Any],
        conversation_id: str | None,
    ) -> tuple[JobSubmitted, bool]:
        """Stream an uploaded audio/video file to the provider without holding it in memory."""

        async def call_provider() -> JobSubmitted:
            accepted = await self._provider.submit_media_file(
                kind.value,  # type: ignore[arg-type]
                content,
                content_type=content_type,
                content_length=content_length,
                options=self._with_pipeline_options(options),
                conversation_id=conversation_id,
                idempotency_key=request_id,
            )
            return self._submitted(request_id, kind, accepted)

        return await self._once(request_id, call_provider)

    async def _once(
        self, request_id: str, call_provider: Callable[[], Awaitable[JobSubmitted]]
    ) -> tuple[JobSubmitted, bool]:
        """Call the provider unless this requestId was submitted already; name the work on logs and the span."""
        bind_ids(request_id=request_id)

        async def call_and_reconcile() -> JobSubmitted:
            try:
                submitted = await call_provider()
            except ProviderUnavailable as error:
                if error.may_have_been_processed and self._orphans is not None:
                    self._orphans.uncertain(request_id)
                raise
            if self._orphans is not None:
                await self._orphans.accepted(request_id, submitted.conversation_id)
            return submitted

        submitted, created = await self.outcomes.answered(self._ledger.once(request_id, call_and_reconcile), request_id)
        bind_ids(conversation_id=submitted.conversation_id, job_id=submitted.job_id)
        if created:
            logger.info("submitted to the provider (%s)", submitted.kind.value)
        return submitted, created
