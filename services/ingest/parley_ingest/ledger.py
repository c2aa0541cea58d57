"""requestId → the job it produced, so the same request submitted twice gives one provider job."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import NamedTuple

from parley_shared.events import JobKind, JobSubmitted

DEFAULT_CAPACITY = 100_000


class _Remembered(NamedTuple):
    """A ``JobSubmitted``'s fields without the model around them: about 530 bytes a request instead of 1.6 kB."""

    event_id: str
    occurred_at: float
    conversation_id: str
    job_id: str
    kind: str
    submitted_at: float
    webhook_url: str | None


class RequestLedger:
    """Remembers submitted requests (bounded, oldest forgotten first); a concurrent duplicate waits for the first.

    It is rebuilt at start-up from the jobs topic (``remember``), so a restart keeps the guarantee within the
    idempotency window. ``capacity`` bounds its memory (``PARLEY_IDEMPOTENCY_LEDGER_ENTRIES``, about 53 MB at the
    default 100,000); a repeat older than that is answered by the provider's own idempotency (the engine keeps
    ``Idempotency-Key`` for 24 h).
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._done: OrderedDict[str, _Remembered] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[JobSubmitted]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def remember(self, submitted: JobSubmitted) -> None:
        self._done[submitted.request_id] = _Remembered(
            submitted.event_id,
            submitted.occurred_at.timestamp(),
            submitted.conversation_id,
            submitted.job_id,
            submitted.kind.value,
            submitted.submitted_at.timestamp(),
            submitted.webhook_url,
        )
        self._done.move_to_end(submitted.request_id)
        while len(self._done) > self._capacity:
            self._done.popitem(last=False)

    def get(self, request_id: str) -> JobSubmitted | None:
        """The request's ``JobSubmitted``, as first announced."""
        known = self._done.get(request_id)
        if known is None:
            return None
        return JobSubmitted(
            event_id=known.event_id,
            occurred_at=datetime.fromtimestamp(known.occurred_at, UTC),
            request_id=request_id,
            conversation_id=known.conversation_id,
            job_id=known.job_id,
            kind=JobKind(known.kind),
            submitted_at=datetime.fromtimestamp(known.submitted_at, UTC),
            webhook_url=known.webhook_url,
        )

    async def once(self, request_id: str, submit: Callable[[], Awaitable[JobSubmitted]]) -> tuple[JobSubmitted, bool]:
        """Run ``submit`` unless this request was already submitted; returns the job and whether it is new."""
        if (known := self.get(request_id)) is not None:
            return known, False
        if (pending := self._in_flight.get(request_id)) is not None:
            return await asyncio.shield(pending), False
        # The provider call runs as its own task: a caller that gives up (cancelled) does not cancel it for the
        # duplicates waiting on it, nor leave a provider job nobody knows about.
        task = asyncio.create_task(self._submit_and_remember(submit))
        self._in_flight[request_id] = task
        task.add_done_callback(lambda _: self._in_flight.pop(request_id, None))
        return await asyncio.shield(task), True

    async def _submit_and_remember(self, submit: Callable[[], Awaitable[JobSubmitted]]) -> JobSubmitted:
        submitted = await submit()
        self.remember(submitted)
        return submitted
