"""ingest's settings: the shared pieces plus its HTTP listener, webhook and idempotency window."""

from __future__ import annotations

import socket
from typing import Any, Literal

from parley_shared.api_keys import ApiKeys
from parley_shared.exposure import refuse_open_access
from parley_shared.settings import ParleySettings
from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel


class RedactionPolicy(BaseModel):
    """PII redaction every submission through this ingest carries, so nothing unredacted comes back to Kafka.

    The provider applies it (Parley's engine does: the ``redaction`` option); the entity types are the engine's
    (``PHONE_NUMBER``, ``PERSON`` …), checked there.
    """

    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
    )

    enabled: bool = True
    entity_types: list[str] | None = Field(None, min_length=1)
    substitution: Literal["entityType", "hash"] = "entityType"
    redact_audio: bool = False

    def provider_option(self) -> dict[str, Any]:
        """The ``redaction`` option as the provider's API reads it (camelCase, unset fields left out)."""
        return self.model_dump(by_alias=True, exclude_none=True)


class IngestSettings(ParleySettings):
    http_host: str = Field("127.0.0.1", description="address the HTTP API listens on")
    http_port: int = Field(8701, description="port of the HTTP API")
    webhook_url: str | None = Field(
        None,
        description="job-watcher's webhook (e.g. http://job-watcher:8702/webhooks/jobs), passed to the provider",
    )
    group_id: str = Field("parley-ingest", description="consumer group on the requests topic")
    instance_id: str = Field(
        default_factory=socket.gethostname, description="unique per replica; names the transactional producer"
    )
    idempotency_window_hours: float = Field(
        24.0, gt=0, description="how far back a repeated requestId is recognised after a restart"
    )
    idempotency_ledger_entries: int = Field(
        100_000,
        ge=1,
        description="requests the idempotency ledger remembers (about 530 bytes each); older repeats are answered "
        "by the provider's own Idempotency-Key handling",
    )
    max_upload_bytes: int = Field(2 * 1024**3, gt=0, description="largest audio/video upload accepted")
    live_stop_timeout_seconds: float = Field(
        30.0, gt=0, description="a streaming client gone without stop_request: how long the provider may take to finish"
    )
    redaction: RedactionPolicy | None = Field(
        None,
        description='PII redaction for every submission and live stream, as JSON: {"enabled": true} (every kind the '
        'provider knows) or {"enabled": true, "entityTypes": ["PHONE_NUMBER", "PERSON"], "substitution": "hash", '
        '"redactAudio": true}; it replaces any redaction a request asks for. Unset: each request decides',
    )
    api_keys: ApiKeys = Field(
        (),
        description="comma-separated keys the HTTP API accepts (Authorization: Bearer or x-api-key); "
        "empty: no authentication",
    )

    @model_validator(mode="after")
    def _guarded_beyond_loopback(self) -> IngestSettings:
        missing = [] if self.api_keys else ["PARLEY_API_KEYS (anyone could submit conversations)"]
        refuse_open_access("ingest", self.http_host, missing, allow_open_access=self.allow_open_access)
        return self
