"""The engine's settings: where it listens, who may call it, where it keeps data and how hard it works.

Read by pydantic-settings with the ``PARLEY_`` prefix (``PARLEY_HTTP_PORT``, ``PARLEY_ENGINE_DATA_DIR`` …).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Literal

from parley_shared.exposure import refuse_open_access
from parley_shared.settings import DEVELOPMENT_APP_ID, DEVELOPMENT_APP_SECRET, CommaSeparated
from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    return Path.home() / ".local" / "share" / "parley" / "engine"


CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def usable_cpu_count(cpu_max: Path = CGROUP_CPU_MAX) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota (a container's CPU limit).

    ``os.cpu_count()`` counts the node's cores, so a pod limited to 2 CPUs on a 64-core node would start 63 workers,
    each with 64 threads, and spend its time throttled.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, math.ceil(int(quota) / int(period)))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to read: the affinity is the limit
    return max(1, cores)


def _default_workers() -> int:
    # One core stays free for the event loop, the database and the webhook sender.
    return max(1, usable_cpu_count() - 1)


class EngineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PARLEY_", extra="ignore")

    http_host: str = Field("127.0.0.1", description="address the HTTP server binds")
    http_port: int = Field(8700, ge=0, le=65535, description="port the HTTP server binds")
    app_id: str = Field(DEVELOPMENT_APP_ID, description="the appId accepted by /oauth2/token:generate")
    app_secret: SecretStr = Field(SecretStr(DEVELOPMENT_APP_SECRET), description="the matching appSecret")
    engine_data_dir: Path = Field(default_factory=_default_data_dir, description="database file and uploaded media")
    database_url: str | None = Field(
        None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite:///<engine_data_dir>/engine.db "
        "(postgresql+asyncpg://… for several replicas)",
    )
    token_ttl_seconds: int = Field(86400, ge=60, description="lifetime of an access token")
    token_grace_seconds: int = Field(60, ge=0, description="how long an expired token is still accepted")
    max_concurrent_jobs: int = Field(50, ge=1, description="scheduled + in-progress jobs before 429")
    workers: int = Field(default_factory=_default_workers, ge=1, description="jobs processed at once")
    max_upload_bytes: int = Field(2 * 1024**3, ge=1, description="largest media file (upload or download)")
    allow_private_media_urls: bool = Field(
        False,
        description="fetch audio/video URLs that are or resolve to loopback, private, link-local or other "
        "non-public addresses (off: a caller could otherwise reach the engine's own network)",
    )
    idempotency_key_hours: float = Field(
        24.0, gt=0, description="how long an Async API Idempotency-Key answers with its first job"
    )
    max_text_request_bytes: int = Field(20 * 1024**2, ge=1, description="largest JSON request body")
    webhook_secret: SecretStr | None = Field(
        None, description="signs webhook bodies (X-Parley-Signature); unsigned if unset"
    )
    webhook_max_attempts: int = Field(6, ge=1, description="attempts per webhook delivery")
    webhook_timeout_seconds: float = Field(5.0, gt=0, description="per-attempt timeout of a webhook POST")
    webhook_backoff_base_seconds: float = Field(1.0, gt=0, description="first retry delay; doubles per attempt")
    webhook_backoff_max_seconds: float = Field(300.0, gt=0, description="cap on one retry delay")
    dispatch_poll_seconds: float = Field(
        1.0, gt=0, description="how often the job dispatcher looks for work unprompted"
    )
    job_lease_seconds: float = Field(
        30.0, gt=0, description="how long a replica's claim on a running job lasts unless renewed"
    )
    streaming_max_streams: int = Field(
        8,
        ge=1,
        description="live Streaming API streams at once, one waiting for its client to reconnect "
        "(noConnectionTimeout) included; past it the WebSocket upgrade answers 429",
    )
    streaming_workers: int = Field(
        default_factory=usable_cpu_count,
        ge=1,
        description="processes that recognize and analyse live streams (apart from the Async jobs' workers)",
    )
    streaming_start_timeout_seconds: float = Field(
        30.0, gt=0, description="how long a new connection may take to send its start_request"
    )
    streaming_idle_timeout_seconds: float = Field(
        1800.0,
        gt=0,
        description="a listening stream that sends no frame for this long is ended (Symbl: 30 minutes); a paused "
        "one is closed after its start_request's disconnectOnStopRequestTimeout",
    )
    streaming_max_duration_seconds: float = Field(
        4 * 3600.0,
        gt=0,
        description="longest a stream may last, reconnects included; it is then stopped as if by stop_request",
    )
    streaming_max_frame_bytes: int = Field(
        65_536, ge=1024, description="largest binary audio frame (Symbl documents 8,192; SDK microphones send more)"
    )
    streaming_send_queue_frames: int = Field(
        1000, ge=10, description="frames waiting for a slow client before it is disconnected"
    )
    streaming_send_timeout_seconds: float = Field(
        10.0, gt=0, description="longest one frame may take to reach a client before it is disconnected"
    )
    streaming_webhook_url: str | None = Field(
        None,
        description="where a stream's job reports its status when its start_request names no webhookUrl; "
        "unset: no webhook",
    )
    telephony_max_calls: int = Field(
        4, ge=1, description="Telephony API calls at once (each is also a live stream); past it 429"
    )
    sip_bind_address: str = Field(
        "127.0.0.1",
        description="the local address the SIP user agent and its RTP sockets use; set it to the pod's address (or "
        "0.0.0.0) for calls beyond this host",
    )
    sip_advertised_address: str | None = Field(
        None, description="the address put in SDP and Contact headers (a NAT's public address); unset: sip_bind_address"
    )
    sip_username: str | None = Field(None, description="digest authentication user for SIP endpoints that ask for it")
    sip_password: SecretStr | None = Field(None, description="digest authentication password for SIP endpoints")
    sip_trunk_uri: str | None = Field(
        None,
        description="the SIP trunk (gateway) that places pstn calls, e.g. sip:gateway.example.com;transport=tcp; "
        "unset: pstn endpoints are refused",
    )
    sip_trunk_username: str | None = Field(None, description="the trunk's digest authentication user")
    sip_trunk_password: SecretStr | None = Field(None, description="the trunk's digest authentication password")
    sip_answer_timeout_seconds: float = Field(60.0, gt=0, description="a call not answered by then is cancelled")
    sip_rtp_timeout_seconds: float = Field(
        30.0, gt=0, description="an answered call whose audio stops for this long (no BYE) is hung up"
    )
    trusted_webhook_urls: CommaSeparated = Field(
        (),
        description="comma-separated URL prefixes the engine may call back although they are not public (your "
        "job-watcher, e.g. http://job-watcher:8702/webhooks/jobs); other non-public webhook URLs are refused "
        "unless PARLEY_ALLOW_PRIVATE_MEDIA_URLS",
    )
    keep_media: bool = Field(
        True,
        description="keep each audio/video conversation's media for its Experience page's player (deleted with "
        "the conversation); media of a conversation with redaction on is kept only when its audio is redacted too",
    )
    public_base_url: str | None = Field(
        None,
        description="the engine's address as people reach it (e.g. https://engine.example.com behind a proxy); "
        "Experience page URLs are built on it. Unset: the address each Experience API request came to",
        pattern=r"^https?://[^\s/?#]+(/[^\s?#]*)?$",
    )
    experience_url_max_seconds: int | None = Field(
        None,
        ge=60,
        description="longest summaryURLExpiresIn an Experience API request may ask for; when set, a page URL that "
        "never expires (0) is refused and the default of 30 days is shortened to it. Unset: any, as Symbl",
    )
    api_docs: bool = Field(False, description="serve /docs, /redoc and /openapi.json (off: they map every route)")
    allow_open_access: bool = Field(
        False,
        description="start on an address beyond loopback with the development appSecret or without a webhook "
        "secret; only for a network you trust completely",
    )
    log_level: str = Field("INFO", description="log level of the engine")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json lines, or aligned text for people; auto picks text when stderr is a terminal"
    )

    @model_validator(mode="after")
    def _fill_database_url(self) -> EngineSettings:
        if self.database_url is None:
            self.database_url = f"sqlite+aiosqlite:///{self.engine_data_dir / 'engine.db'}"
        return self

    @model_validator(mode="after")
    def _guarded_beyond_loopback(self) -> EngineSettings:
        missing = []
        if self.app_secret.get_secret_value() == DEVELOPMENT_APP_SECRET:
            missing.append("its own PARLEY_APP_SECRET (the development one is published)")
        if self.webhook_secret is None:
            missing.append("PARLEY_WEBHOOK_SECRET (callbacks would be unsigned)")
        refuse_open_access("the engine", self.http_host, missing, allow_open_access=self.allow_open_access)
        return self

    def may_call_back(self, url: str) -> bool:
        """Whether a webhook URL is let through to a non-public address (an operator's own receiver)."""
        return self.allow_private_media_urls or any(url.startswith(prefix) for prefix in self.trusted_webhook_urls)

    @property
    def resolved_database_url(self) -> str:
        assert self.database_url is not None  # filled by the validator
        return self.database_url

    @property
    def uploads_dir(self) -> Path:
        return self.engine_data_dir / "media"

    @property
    def kept_media_dir(self) -> Path:
        """Where each conversation's media stays after its job (``keep_media``): ``<conversationId><suffix>``."""
        return self.engine_data_dir / "conversation-media"
