"""Webhook delivery: every status change of a job with a ``webhookUrl`` is POSTed to it, at least once.

The delivery rows are written in the same transaction as the status change (an outbox,
``parley_engine.store.deliveries``), so they survive crashes; this sender drains them. Each POST carries
``X-Parley-Delivery`` (the same across retries, for deduplication), ``X-Parley-Event: job.status`` and, when a
secret is configured, ``X-Parley-Signature: sha256=<hex HMAC-SHA256 of the raw body>``. Errors, timeouts, 408,
429 and 5xx are retried with exponential backoff and jitter up to ``webhook_max_attempts``; any other 4xx is
final. A job's statuses go out in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from datetime import UTC, datetime, timedelta

import httpx
from parley_shared.url_safety import Resolver, UnfetchableUrl, check_url, post_checked_url, system_resolver
from parley_shared.webhook_signatures import SIGNATURE_HEADER, signature

from parley_engine.faults import WebhookFaults
from parley_engine.settings import EngineSettings
from parley_engine.store import DeliveryStore, WebhookDeliveryRow

log = logging.getLogger(__name__)

__all__ = ["SIGNATURE_HEADER", "WebhookSender", "retry_delay", "signature"]

RETRYABLE_STATUSES = frozenset({408, 429})
DELIVERY_HEADER = "X-Parley-Delivery"
EVENT_HEADER = "X-Parley-Event"


async def webhook_refusal(url: str, settings: EngineSettings, *, resolve: Resolver = system_resolver) -> str | None:
    """Why the engine will not call ``url`` back, or None. Like media URLs, webhook URLs must reach public addresses
    (a caller could otherwise make the engine POST into its own network), unless the URL starts with one of
    ``PARLEY_TRUSTED_WEBHOOK_URLS`` (the operator's own job-watcher) or ``PARLEY_ALLOW_PRIVATE_MEDIA_URLS`` is on."""
    if settings.may_call_back(url):
        return None
    try:
        await check_url(url, resolve=resolve, fetcher="this engine")
    except UnfetchableUrl as error:
        return (
            f"webhookUrl refused: {error} (an operator may allow it with PARLEY_TRUSTED_WEBHOOK_URLS, or "
            "PARLEY_ALLOW_PRIVATE_MEDIA_URLS for local use)"
        )
    return None


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential backoff with "equal jitter": half the delay is fixed, half random, so retries spread out."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay / 2 + random.uniform(0, delay / 2)


class WebhookSender:
    """Drains the webhook outbox; ``wake()`` after writing a delivery row."""

    def __init__(
        self,
        deliveries: DeliveryStore,
        settings: EngineSettings,
        *,
        batch_size: int = 32,
        faults: WebhookFaults | None = None,
    ) -> None:
        self._deliveries = deliveries
        self._faults = faults  # fault mode only (parley_engine.faults); None in normal operation
        self._settings = settings
        self._batch_size = batch_size
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._stopping = False

    def wake(self) -> None:
        self._wake.set()

    async def start(self) -> None:
        self._client = httpx.AsyncClient(follow_redirects=False)
        self._task = asyncio.create_task(self._drain(), name="webhook-sender")

    async def stop(self) -> None:
        self._stopping = True
        if self._faults is not None:  # fault mode: late copies still waiting to be sent
            await self._faults.stop()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _drain(self) -> None:
        while not self._stopping:
            self._wake.clear()
            wait = 5.0
            try:
                due = await self._deliveries.due_deliveries(self._batch_size)
                if due:
                    await asyncio.gather(*(self._deliver(delivery) for delivery in due))
                    continue  # a job's next status may be waiting behind the one just sent
                upcoming = await self._deliveries.next_delivery_time()
                if upcoming is not None:
                    wait = min(wait, max(0.01, (upcoming - datetime.now(UTC)).total_seconds()))
            except Exception:
                log.exception("webhook sender: could not read the outbox; retrying")
                wait = 1.0
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await self._wake.wait()

    async def _post(self, delivery: WebhookDeliveryRow) -> httpx.Response:
        assert self._client is not None
        body = delivery.body.encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "parley-engine",
            DELIVERY_HEADER: delivery.id,
            EVENT_HEADER: "job.status",
        }
        if self._settings.webhook_secret is not None:
            headers[SIGNATURE_HEADER] = signature(self._settings.webhook_secret.get_secret_value(), body)
        timeout = self._settings.webhook_timeout_seconds
        if self._settings.may_call_back(delivery.url):
            return await self._client.post(delivery.url, content=body, headers=headers, timeout=timeout)
        # Checked again when sent, and sent to the checked address: a name that resolved to a public address at
        # submission cannot be re-pointed into the engine's network since (DNS rebinding).
        return await post_checked_url(
            self._client, delivery.url, content=body, headers=headers, timeout_seconds=timeout, fetcher="this engine"
        )

    async def _deliver(self, delivery: WebhookDeliveryRow) -> None:
        # Fault mode may drop, duplicate or hold back this delivery (parley_engine.faults).
        if self._faults is not None and await self._faults.intercept(delivery, lambda: self._post(delivery)):
            return
        retry_after: float | None = None
        error: str | None
        try:
            response = await self._post(delivery)
        except UnfetchableUrl as refused:
            delivered, final, error = False, True, f"refused: {refused}"
        except httpx.HTTPError as exc:
            delivered, final, error = False, False, f"{type(exc).__name__}: {exc}"
        else:
            status = response.status_code
            delivered = 200 <= status < 300
            final = not delivered and status < 500 and status not in RETRYABLE_STATUSES
            error = None if delivered else f"HTTP {status}"
            header = response.headers.get("retry-after", "")
            retry_after = float(header) if header.isdigit() else None
        attempts = delivery.attempts + 1
        give_up = final or (not delivered and attempts >= self._settings.webhook_max_attempts)
        delay = retry_delay(
            attempts, self._settings.webhook_backoff_base_seconds, self._settings.webhook_backoff_max_seconds
        )
        if retry_after is not None:
            delay = min(max(delay, retry_after), self._settings.webhook_backoff_max_seconds)
        if give_up:
            log.warning(
                "webhook delivery %s for job %s (%s) abandoned after %d attempt(s): %s",
                delivery.id,
                delivery.job_id,
                delivery.job_status,
                attempts,
                error,
            )
        await self._deliveries.record_delivery(
            delivery.id,
            delivered=delivered,
            give_up=give_up,
            error=error,
            next_attempt_at=datetime.now(UTC) + timedelta(seconds=delay),
        )
