"""A stream's conversation and job in the engine's store, both created at ``start_request``.

The job (kind ``streaming``) is in progress from the start, held by the stream under a lease it renews, as the
job runner holds the jobs it runs; each final sentence is committed to the conversation as it is recognized. When
the stream ends, the job's claim passes to the job runner, which analyses the whole conversation as it does for an
Async job, stores the Conversation API bodies and completes the job; the webhook outbox reports each status change
to the stream's ``webhookUrl`` (or ``PARLEY_STREAMING_WEBHOOK_URL``). If the engine dies mid-stream the lease runs
out, the job is scheduled again like any abandoned job, and the runner analyses the sentences stored until then.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from parley_engine.conversation import Utterance
from parley_engine.identifiers import new_conversation_id, new_job_id
from parley_engine.jobs import JobRunner
from parley_engine.store import JobLeaseLost, JobStore, NewConversation, NewJob
from parley_engine.streaming.session import OpenedStream

log = logging.getLogger(__name__)

STREAMING_SOURCE = "streaming"


class StoredStreamConversations:
    def __init__(
        self,
        jobs: JobStore,
        runner: JobRunner,
        *,
        lease_seconds: float,
        default_webhook_url: str | None,
        on_status_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._jobs = jobs
        self._runner = runner
        self._lease_seconds = lease_seconds
        self._default_webhook_url = default_webhook_url
        self._on_status_change = on_status_change
        # One holder name for this replica's live streams, apart from its runner's, so stopping the runner
        # (which hands its own jobs back) leaves the jobs of streams still being served alone.
        self._holder = f"{runner.replica_id}/streams"

    @property
    def renew_every_seconds(self) -> float:
        return self._lease_seconds / 3

    async def open(
        self, *, name: str | None, start_time: datetime, options: dict[str, Any], webhook_url: str | None
    ) -> OpenedStream:
        conversation_id = new_conversation_id()
        job = await self._jobs.open_held_job(
            NewJob(
                id=new_job_id(),
                kind="streaming",
                options=options,
                webhook_url=webhook_url or self._default_webhook_url,
            ),
            NewConversation(
                id=conversation_id, name=name or conversation_id, source=STREAMING_SOURCE, start_time=start_time
            ),
            claimed_by=self._holder,
            lease_seconds=self._lease_seconds,
        )
        self._on_status_change()
        return OpenedStream(conversation_id=conversation_id, job_id=job.id)

    async def record(self, stream: OpenedStream, utterances: Sequence[Utterance]) -> None:
        await self._jobs.record_utterances(stream.job_id, utterances, claimed_by=self._holder)

    async def renew(self, stream: OpenedStream) -> bool:
        lost = await self._jobs.renew_leases(self._holder, {stream.job_id}, self._lease_seconds)
        return stream.job_id not in lost

    async def complete(self, stream: OpenedStream) -> None:
        try:
            job = await self._jobs.hand_over_job(
                stream.job_id, held_by=self._holder, to=self._runner.replica_id, lease_seconds=self._lease_seconds
            )
        except JobLeaseLost:
            # Its lease ran out mid-stream and the job was scheduled again: whoever runs it analyses what was stored.
            log.warning("stream job %s was no longer held by its stream; it completes where it runs now", stream.job_id)
            return
        self._runner.run_handed_over(job)

    async def fail(self, stream: OpenedStream, reason: str) -> None:
        """The stream's job fails with ``reason`` (its webhook reports it), nothing analysed."""
        if await self._jobs.fail_job(stream.job_id, reason, claimed_by=self._holder):
            self._on_status_change()
        else:
            log.warning(
                "stream job %s could not be failed (%s): it had finished or was taken over", stream.job_id, reason
            )
