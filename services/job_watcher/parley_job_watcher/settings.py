"""job-watcher's settings: the shared pieces plus its webhook listener and polling policy."""

from __future__ import annotations

import socket

from parley_shared.api_keys import ApiKeys
from parley_shared.exposure import refuse_open_access
from parley_shared.settings import ParleySettings
from pydantic import Field, SecretStr, model_validator


class JobWatcherSettings(ParleySettings):
    http_host: str = Field("127.0.0.1", description="address the webhook listener binds")
    http_port: int = Field(8702, description="port of the webhook listener (POST /webhooks/jobs)")
    group_id: str = Field("parley-job-watcher", description="consumer group on the jobs topic")
    instance_id: str = Field(
        default_factory=socket.gethostname, description="unique per replica; names the transactional producer"
    )
    poll_initial_seconds: float = Field(1.0, gt=0, description="first status poll after submission")
    poll_factor: float = Field(2.0, ge=1, description="each poll interval is this times the last")
    poll_max_interval_seconds: float = Field(60.0, gt=0, description="longest interval between polls")
    poll_jitter: float = Field(0.1, ge=0, le=1, description="intervals are stretched by up to this fraction")
    webhook_fallback_interval_seconds: float = Field(
        45.0, gt=0, description="poll interval once a job's webhooks have been seen to arrive"
    )
    job_deadline_seconds: float = Field(
        6 * 3600.0,
        gt=0,
        description="a job not finished this long after submission fails with reason 'deadline'",
    )
    api_keys: ApiKeys = Field(
        (), description="keys that may read GET /status (Bearer or x-api-key); empty: no authentication"
    )
    webhook_secret: SecretStr | None = Field(
        None,
        description="the provider's webhook signing secret; when set, unsigned or forged callbacks are refused (401)",
    )
    settled_jobs_remembered: int = Field(
        200_000,
        ge=1,
        description="settled job ids kept so that a repeated JobSubmitted (ingest republishes on retries) is ignored "
        "(about 180 bytes each); a repeat arriving after more than this many later settlements is watched again",
    )
    max_concurrent_polls: int = Field(64, ge=1, description="status requests in flight at once")

    @model_validator(mode="after")
    def _guarded_beyond_loopback(self) -> JobWatcherSettings:
        missing = [] if self.webhook_secret else ["PARLEY_WEBHOOK_SECRET (anyone could post job callbacks)"]
        refuse_open_access("job-watcher", self.http_host, missing, allow_open_access=self.allow_open_access)
        return self
