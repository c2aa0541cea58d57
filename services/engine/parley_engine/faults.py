"""Fault mode: the engine misbehaves on purpose, so a fault-injection run can prove the pipeline copes.

Off unless ``PARLEY_ENGINE_FAULTS_ENABLED=true``. Then a seeded share of Async/Job/Conversation API calls
(paths under ``/v1/``; never ``/healthz``, ``/readyz`` or ``/oauth2``) is answered with 429 + ``Retry-After``, with
500, or only after a delay meant to outlast the client's timeout (the call is still served, too late). A share
of webhook deliveries is lost (never retried), sent twice, or held back and sent after the job's next status
(out of order). Every API call (time, method, path, status, fault) and every injected fault is noted in memory,
and ``GET /_faults/log`` (unauthenticated, present only in fault mode) returns those notes with each job's
status transitions read from the database, so the run can check that no conversation was read before its job
completed.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import select
from sqlalchemy.ext.asyncio import create_async_engine
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from parley_engine.store import DeliveryStore, JobRow, WebhookDeliveryRow

log = logging.getLogger(__name__)

# Only the Symbl API itself misbehaves: health checks, token generation and the fault log stay reliable.
FAULTY_PATH_PREFIX = "/v1/"
FAULT_LOG_PATH = "/_faults/log"
MAX_LOGGED_CALLS = 1_000_000


class FaultSettings(BaseSettings):
    """What fault mode injects (``PARLEY_ENGINE_FAULTS_*``); shares are probabilities per call or delivery."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_ENGINE_FAULTS_", extra="ignore")

    enabled: bool = Field(False, description="inject faults at all (never in production)")
    seed: int = Field(0, description="seed of the fault dice, so a run can be repeated")
    throttle_share: float = Field(0.0, ge=0, le=1, description="API calls answered 429 with Retry-After")
    retry_after_seconds: int = Field(1, ge=0, description="the Retry-After of an injected 429")
    error_share: float = Field(0.0, ge=0, le=1, description="API calls answered 500")
    delay_share: float = Field(0.0, ge=0, le=1, description="API calls served only after delay_seconds")
    delay_seconds: float = Field(3.0, ge=0, description="longer than the client's timeout, so it gives up")
    webhook_drop_share: float = Field(0.0, ge=0, le=1, description="webhook deliveries lost, never retried")
    webhook_duplicate_share: float = Field(0.0, ge=0, le=1, description="webhook deliveries sent twice")
    webhook_delay_share: float = Field(
        0.0, ge=0, le=1, description="webhook deliveries held back and sent after the job's next status"
    )
    webhook_delay_seconds: float = Field(2.0, ge=0, description="how long a delayed delivery is held back")

    @model_validator(mode="after")
    def _shares_fit(self) -> FaultSettings:
        if self.throttle_share + self.error_share + self.delay_share > 1:
            raise ValueError("throttle_share + error_share + delay_share must not exceed 1")
        if self.webhook_drop_share + self.webhook_duplicate_share + self.webhook_delay_share > 1:
            raise ValueError("webhook_drop_share + webhook_duplicate_share + webhook_delay_share must not exceed 1")
        return self


class ApiFault(StrEnum):
    THROTTLE = "throttle"
    ERROR = "error"
    DELAY = "delay"


class WebhookFault(StrEnum):
    DROP = "webhook_drop"
    DUPLICATE = "webhook_duplicate"
    DELAY = "webhook_delay"


class FaultDice:
    """Seeded decisions: which call or delivery gets which fault (or none)."""

    def __init__(self, settings: FaultSettings) -> None:
        self._settings = settings
        self._random = random.Random(settings.seed)

    def api_fault(self, path: str) -> ApiFault | None:
        if not path.startswith(FAULTY_PATH_PREFIX):
            return None
        s = self._settings
        return _pick(
            self._random.random(),
            [(ApiFault.THROTTLE, s.throttle_share), (ApiFault.ERROR, s.error_share), (ApiFault.DELAY, s.delay_share)],
        )

    def webhook_fault(self) -> WebhookFault | None:
        s = self._settings
        return _pick(
            self._random.random(),
            [
                (WebhookFault.DROP, s.webhook_drop_share),
                (WebhookFault.DUPLICATE, s.webhook_duplicate_share),
                (WebhookFault.DELAY, s.webhook_delay_share),
            ],
        )


F = TypeVar("F", ApiFault, WebhookFault)


def _pick(roll: float, shares: list[tuple[F, float]]) -> F | None:
    cumulative = 0.0
    for fault, share in shares:
        cumulative += share
        if roll < cumulative:
            return fault
    return None


class FaultLog:
    """What fault mode did and saw: API calls in arrival order and a count of injected faults by kind."""

    def __init__(self) -> None:
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_LOGGED_CALLS)
        self.injected: Counter[str] = Counter()

    def note_call(self, *, t: float, method: str, path: str, status: int | None, fault: ApiFault | None) -> None:
        self.calls.append({"t": t, "method": method, "path": path, "status": status, "fault": fault})

    def note_fault(self, fault: ApiFault | WebhookFault) -> None:
        self.injected[fault.value] += 1


class FaultInjection:
    """ASGI middleware: rolls the dice for each API call and notes the call with its arrival time and status."""

    def __init__(self, app: ASGIApp, *, settings: FaultSettings, dice: FaultDice, fault_log: FaultLog) -> None:
        self.app = app
        self._settings = settings
        self._dice = dice
        self._log = fault_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(FAULTY_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        fault = self._dice.api_fault(scope["path"])
        status: int | None = None

        async def noting_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            if fault is not None:
                self._log.note_fault(fault)
            if fault is ApiFault.THROTTLE:
                headers = {"Retry-After": str(self._settings.retry_after_seconds)}
                response = JSONResponse({"message": "fault injection: too many requests"}, 429, headers=headers)
                await response(scope, receive, noting_send)
            elif fault is ApiFault.ERROR:
                await JSONResponse({"message": "fault injection: internal error"}, 500)(scope, receive, noting_send)
            else:
                if fault is ApiFault.DELAY:
                    await asyncio.sleep(self._settings.delay_seconds)
                await self.app(scope, receive, noting_send)
        finally:
            self._log.note_call(t=arrived, method=scope["method"], path=scope["path"], status=status, fault=fault)


class WebhookFaults:
    """Applied by the webhook sender before each delivery; see :meth:`intercept`."""

    def __init__(
        self, settings: FaultSettings, dice: FaultDice, fault_log: FaultLog, deliveries: DeliveryStore
    ) -> None:
        self._settings = settings
        self._dice = dice
        self._log = fault_log
        self._deliveries = deliveries
        self._late: set[asyncio.Task[None]] = set()

    async def intercept(self, delivery: WebhookDeliveryRow, post: Callable[[], Awaitable[object]]) -> bool:
        """Maybe apply a fault to ``delivery``; True when it was settled here and the sender must not post it.

        A dropped delivery is marked failed at once (so never retried). A delayed one is marked delivered at once,
        which lets the job's next status go out first, and posted once, later. A duplicated one is posted now by
        the sender and once more by this class shortly after.
        """
        fault = self._dice.webhook_fault()
        if fault is None:
            return False
        self._log.note_fault(fault)
        now = datetime.now(UTC)
        if fault is WebhookFault.DROP:
            await self._deliveries.record_delivery(
                delivery.id, delivered=False, give_up=True, error="fault injection: dropped", next_attempt_at=now
            )
            return True
        if fault is WebhookFault.DELAY:
            await self._deliveries.record_delivery(
                delivery.id, delivered=True, give_up=False, error="fault injection: delayed", next_attempt_at=now
            )
            self._post_later(post, self._settings.webhook_delay_seconds)
            return True
        self._post_later(post, 0.2)
        return False

    def _post_later(self, post: Callable[[], Awaitable[object]], seconds: float) -> None:
        async def post_once() -> None:
            await asyncio.sleep(seconds)
            try:
                await post()
            except Exception as error:  # one attempt only: a late copy that fails is simply lost
                log.info("fault injection: late webhook copy failed: %s", error)

        task = asyncio.create_task(post_once(), name="fault-late-webhook")
        self._late.add(task)
        task.add_done_callback(self._late.discard)

    async def stop(self) -> None:
        for task in list(self._late):
            task.cancel()
        await asyncio.gather(*self._late, return_exceptions=True)


class FaultMode:
    """Everything fault mode adds to the engine, built once per app."""

    def __init__(self, settings: FaultSettings) -> None:
        self.settings = settings
        self.dice = FaultDice(settings)
        self.log = FaultLog()

    def webhook_faults(self, deliveries: DeliveryStore) -> WebhookFaults:
        return WebhookFaults(self.settings, self.dice, self.log, deliveries)

    def install(self, app: Any, database_url: str) -> None:
        """Add the middleware and ``GET /_faults/log`` to a FastAPI app."""
        app.add_middleware(FaultInjection, settings=self.settings, dice=self.dice, fault_log=self.log)

        @app.get(FAULT_LOG_PATH, include_in_schema=False)
        async def fault_log(_: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "calls": list(self.log.calls),
                    "injected": dict(self.log.injected),
                    "transitions": await job_transitions(database_url),
                }
            )

        log.warning("FAULT MODE: the engine injects faults (%s)", self.settings.model_dump())


async def job_transitions(database_url: str) -> list[dict[str, Any]]:
    """Each job's scheduled, in_progress and terminal moments (epoch seconds), shaped like the double's log."""
    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as connection:
            rows = await connection.execute(
                select(
                    JobRow.id,
                    JobRow.conversation_id,
                    JobRow.status,
                    JobRow.created_at,
                    JobRow.started_at,
                    JobRow.finished_at,
                )
            )
            jobs = list(rows)
    finally:
        await engine.dispose()
    transitions: list[dict[str, Any]] = []
    for job_id, conversation_id, status, created_at, started_at, finished_at in jobs:
        moments = [("scheduled", created_at), ("in_progress", started_at)]
        if status in ("completed", "failed"):
            moments.append((status, finished_at))
        for name, moment in moments:
            if moment is not None:
                transitions.append(
                    {"t": _epoch(moment), "jobId": job_id, "conversationId": conversation_id, "status": name}
                )
    return transitions


def _epoch(moment: datetime) -> float:
    # SQLite hands back naive UTC text through a plain select (the column type's decorator is bypassed).
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) / timedelta(seconds=1)
