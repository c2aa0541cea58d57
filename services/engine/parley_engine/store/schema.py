"""The engine's tables, as SQLAlchemy 2 models. Changing one needs a migration (``store/migrations``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Dialect, Index, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utc_now() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, whatever the database keeps (SQLite keeps naive text)."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UtcDateTime(), dict[str, Any]: JSON, list[Any]: JSON}


class ConversationRow(Base):
    __tablename__ = "conversations"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(1024))
    type: Mapped[str] = mapped_column(String(32), default="meeting")
    source: Mapped[str] = mapped_column(String(16), doc="text, audio or video: what the first job brought")
    start_time: Mapped[datetime] = mapped_column(index=True)
    end_time: Mapped[datetime | None]
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", JSON, default=dict)
    analysis_options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    speaker_events: Mapped[list[Any] | None] = mapped_column(JSON, default=None)
    job_count: Mapped[int] = mapped_column(Integer, default=0, doc="sequence of the latest job")
    created_at: Mapped[datetime]
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)


class JobRow(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_created", "status", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(32), index=True)
    sequence: Mapped[int] = mapped_column(Integer, doc="1, 2, … within the conversation: the order jobs run in")
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    input_path: Mapped[str | None] = mapped_column(Text, doc="the stored upload or download of a media job")
    input_json: Mapped[Any | None] = mapped_column(JSON, doc="messages of a text job, url of a url job")
    webhook_url: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(128), doc="the replica that claimed the job last")
    lease_until: Mapped[datetime | None] = mapped_column(
        doc="while in progress: until when the claim holds unless renewed; NULL: a claim anyone may take over"
    )


class UtteranceRow(Base):
    __tablename__ = "utterances"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(String(36))
    data: Mapped[dict[str, Any]] = mapped_column(JSON)


class InsightsRow(Base):
    __tablename__ = "insights"

    conversation_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    job_id: Mapped[str | None] = mapped_column(String(36), doc="the job after which they were generated")
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class WebhookDeliveryRow(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_state_next", "state", "next_attempt_at"),)

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(36), unique=True, doc="X-Parley-Delivery: the same across retries")
    job_id: Mapped[str] = mapped_column(String(36), index=True)
    url: Mapped[str] = mapped_column(Text)
    job_status: Mapped[str] = mapped_column(String(16))
    body: Mapped[str] = mapped_column(Text, doc="the exact bytes POSTed (and signed), kept for retries")
    state: Mapped[str] = mapped_column(String(16), default="pending", doc="pending, delivered or failed")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    created_at: Mapped[datetime]


class EngineSecretRow(Base):
    __tablename__ = "engine_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class AccessTokenRow(Base):
    __tablename__ = "access_tokens"

    app_id: Mapped[str] = mapped_column(String(256), primary_key=True)
    token: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime]


class IdempotencyKeyRow(Base):
    """An Async API request's ``Idempotency-Key`` and the job it created: a repeat gets that job, not a new one."""

    __tablename__ = "idempotency_keys"

    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    method: Mapped[str] = mapped_column(String(8), doc="the first request's method: a repeat must match it")
    path: Mapped[str] = mapped_column(Text, doc="the first request's path: a repeat must match it")
    conversation_id: Mapped[str] = mapped_column(String(32))
    job_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(index=True, doc="the key is kept idempotency_key_hours from here")
