"""POST /webhooks/jobs: the provider's job status callbacks, taken as hints and confirmed before acting.

Any replica may receive a callback (a Kubernetes Service spreads them). One about a job this replica is not
watching is written to the jobs topic as a ``JobStatusReported``, so the replica that owns the job's partition reads
it within milliseconds instead of waiting for its next poll; the callback is answered once that record is committed.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence

from aiokafka.partitioner import DefaultPartitioner
from fastapi import APIRouter, Depends, Request
from parley_shared.api_keys import ApiKeyCheck
from parley_shared.events import IdStr, JobStatusReported
from parley_shared.http_errors import ApiProblem
from parley_shared.logs import bind_ids
from parley_shared.provider import JobStatus
from parley_shared.webhook_signatures import SIGNATURE_HEADER, signature_matches
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from parley_job_watcher.metrics import webhook_received
from parley_job_watcher.watch import NOT_WATCHED_HERE, JobWatch

logger = logging.getLogger("parley.job_watcher")

_DEFAULT_PARTITIONER = DefaultPartitioner()
Forward = Callable[[Sequence[JobStatusReported]], Awaitable[None]]


class JobStatusCallback(BaseModel):
    """Symbl documents ``jobId`` and shows ``id`` in examples; the engine sends both. Either is enough."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    job_id: IdStr | None = Field(None, alias="jobId", description="the job whose status changed")
    id: IdStr | None = Field(None, description="the same job id, as Symbl's examples spell it")
    status: JobStatus = Field(description="scheduled, in_progress, completed or failed")
    conversation_id: IdStr | None = Field(None, alias="conversationId", description="the job's conversation")

    @model_validator(mode="after")
    def _has_job_id(self) -> JobStatusCallback:
        if not (self.job_id or self.id):
            raise ValueError("a job status callback needs 'jobId' (or 'id')")
        return self


class CallbackReceipt(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    job_id: str = Field(alias="jobId")
    action: str = Field(description="what job-watcher did with the callback")


class WatchStatus(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    pending_jobs: int = Field(alias="pendingJobs", description="jobs waiting for an outcome")
    partitions: list[int] = Field(description="jobs-topic partitions this replica owns")
    replaying_partitions: list[int] = Field(
        alias="replayingPartitions", description="partitions still being re-read after an assignment"
    )
    status_polls: int = Field(alias="statusPolls", description="GET /v1/job calls since start")
    webhooks_received: int = Field(alias="webhooksReceived", description="callbacks received since start")


def partition_of(conversation_id: str, partitions: Collection[int]) -> int:
    """The jobs-topic partition of a conversation's records, as the producers' default partitioner places them."""
    everything = sorted(partitions)
    return int(_DEFAULT_PARTITIONER(conversation_id.encode(), everything, everything))


def status_reports(callback: JobStatusCallback, job_id: str, partitions: Collection[int]) -> list[JobStatusReported]:
    """The records that take a callback to the job's owner: one keyed by the conversation when the callback names
    it, else one on every partition of the jobs topic (the owner is one of their readers)."""
    common = {"request_id": job_id, "job_id": job_id, "status": callback.status.value}
    if callback.conversation_id is not None:
        return [JobStatusReported(conversation_id=callback.conversation_id, **common)]
    return [JobStatusReported(partition=partition, **common) for partition in sorted(partitions)]


def webhook_router(
    watch: JobWatch,
    *,
    forward: Forward,
    jobs_partitions: Callable[[], Collection[int]],
    secret: SecretStr | None = None,
    api_keys: Iterable[SecretStr] = (),
) -> APIRouter:
    """``forward`` commits ``JobStatusReported`` records to the jobs topic; ``jobs_partitions`` lists its partitions."""
    router = APIRouter(tags=["webhooks"])

    async def verified(request: Request) -> None:
        """With a secret configured, only callbacks signed with it get through (X-Parley-Signature)."""
        if secret is None:
            return
        if not signature_matches(
            secret.get_secret_value(), await request.body(), request.headers.get(SIGNATURE_HEADER)
        ):
            webhook_received("refused")
            raise ApiProblem(401, f"missing or invalid {SIGNATURE_HEADER}: the callback is not from the provider")

    @router.post(
        "/webhooks/jobs",
        status_code=202,
        summary="Job status callback from the provider",
        dependencies=[Depends(verified)],
    )
    async def job_status_changed(callback: JobStatusCallback) -> CallbackReceipt:
        job_id = callback.job_id or callback.id
        assert job_id is not None  # guaranteed by the model
        # The job's id only: the callback is its own trace, not the conversation's.
        bind_ids(job_id=job_id)
        action = watch.on_webhook(job_id, callback.status)
        if action != NOT_WATCHED_HERE:
            webhook_received("accepted")
            return CallbackReceipt(job_id=job_id, action=action)
        # Only a job this replica does not watch needs to know where the jobs topic puts it.
        partitions = jobs_partitions()
        conversation = callback.conversation_id
        if conversation and partitions and watch.owns(partition_of(conversation, partitions)):
            # Its JobSubmitted is on a partition this replica reads and has not reached yet: keep it here.
            watch.note_early(job_id, callback.status)
            webhook_received("accepted")
            return CallbackReceipt(job_id=job_id, action="noted before the job was seen")
        reports = status_reports(callback, job_id, partitions)
        try:
            if not reports:
                raise RuntimeError("the jobs topic's partitions are not known yet")
            await forward(reports)
        except Exception as error:
            # Not lost: answered 503 so the provider delivers it again, and kept here in case this replica owns it.
            logger.warning("could not forward the callback of job %s to its owner (%s)", job_id, error)
            watch.note_early(job_id, callback.status)
            webhook_received("unforwarded")
            raise ApiProblem(503, "the callback could not be passed to the replica watching this job; retry") from error
        webhook_received("forwarded")
        return CallbackReceipt(job_id=job_id, action="forwarded to the replica watching the job")

    @router.get(
        "/status",
        summary="What job-watcher is watching right now",
        tags=["status"],
        dependencies=[Depends(ApiKeyCheck(api_keys))],
    )
    async def status() -> WatchStatus:
        return WatchStatus(
            pending_jobs=len(watch.scheduler),
            partitions=sorted(watch.partitions),
            replaying_partitions=sorted(p for p, progress in watch.partitions.items() if progress.replaying),
            status_polls=watch.status_polls,
            webhooks_received=watch.webhooks_received,
        )

    return router
