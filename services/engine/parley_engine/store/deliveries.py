"""The webhook outbox: a delivery row written with each status change it reports, and the sender's reads of it.

A job's status change and its delivery row are one transaction (``enqueue_delivery`` takes the caller's session),
so a crash can lose neither; the webhook sender drains the rows (``parley_engine.webhooks``).
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from parley_engine.job_status import job_status_body
from parley_engine.store.database import Database
from parley_engine.store.schema import JobRow, WebhookDeliveryRow, utc_now


def enqueue_delivery(session: AsyncSession, job: JobRow, now: datetime) -> None:
    """A delivery of the job's current status, in the transaction that changed it; none without a webhook URL."""
    if not job.webhook_url:
        return
    session.add(
        WebhookDeliveryRow(
            id=str(uuid.uuid4()),
            job_id=job.id,
            url=job.webhook_url,
            job_status=job.status,
            body=job_status_body(job.id, job.status, job.conversation_id),
            state="pending",
            attempts=0,
            next_attempt_at=now,
            last_error=None,
            delivered_at=None,
            created_at=now,
        )
    )


class DeliveryStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def due_deliveries(self, limit: int = 100) -> list[WebhookDeliveryRow]:
        """Pending deliveries whose time has come, at most one per job: a job's statuses arrive in order."""
        now = utc_now()
        async with self._database.read() as session:
            rows = await session.scalars(
                select(WebhookDeliveryRow)
                .where(WebhookDeliveryRow.state == "pending")
                .order_by(WebhookDeliveryRow.seq)
                .limit(limit * 4)
            )
            due: list[WebhookDeliveryRow] = []
            seen_jobs: set[str] = set()
            for row in rows:
                if row.job_id in seen_jobs:
                    continue
                seen_jobs.add(row.job_id)
                if row.next_attempt_at <= now:
                    due.append(row)
                if len(due) >= limit:
                    break
            return due

    async def next_delivery_time(self) -> datetime | None:
        async with self._database.read() as session:
            return await session.scalar(
                select(func.min(WebhookDeliveryRow.next_attempt_at)).where(WebhookDeliveryRow.state == "pending")
            )

    async def record_delivery(
        self, delivery_id: str, *, delivered: bool, give_up: bool, error: str | None, next_attempt_at: datetime
    ) -> None:
        async with self._database.write() as session:
            row = await session.scalar(select(WebhookDeliveryRow).where(WebhookDeliveryRow.id == delivery_id))
            if row is None:
                return
            row.attempts += 1
            row.last_error = error
            if delivered:
                row.state, row.delivered_at = "delivered", utc_now()
            elif give_up:
                row.state = "failed"
            else:
                row.next_attempt_at = next_attempt_at

    async def deliveries_for_job(self, job_id: str) -> list[WebhookDeliveryRow]:
        async with self._database.read() as session:
            rows = await session.scalars(
                select(WebhookDeliveryRow).where(WebhookDeliveryRow.job_id == job_id).order_by(WebhookDeliveryRow.seq)
            )
            return list(rows)
