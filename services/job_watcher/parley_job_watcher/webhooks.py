"""POST /webhooks/jobs: the provider's job status callbacks, taken as hints and confirmed before acting."""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import APIRouter, Depends, Request
from parley_shared.api_keys import ApiKeyCheck
from parley_shared.events import IdStr
from parley_shared.http_errors import ApiProblem
from parley_shared.logs import bind_ids
from parley_shared.provider import JobStatus
from parley_shared.webhook_signatures import SIGNATURE_HEADER, signature_matches
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from parley_job_watcher.metrics import webhook_received
from parley_job_watcher.watch import JobWatch


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


def webhook_router(
    watch: JobWatch, *, secret: SecretStr | None = None, api_keys: Iterable[SecretStr] = ()
) -> APIRouter:
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
        bind_ids(job_id=job_id)
        webhook_received("accepted")
        return CallbackReceipt(job_id=job_id, action=watch.on_webhook(job_id, callback.status))

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
