"""requestId → the job it produced, so the same request submitted twice gives one provider job."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from parley_shared.events import JobSubmitted


class RequestLedger:
    """Remembers submitted requests (bounded, oldest forgotten first); a concurrent duplicate waits for the first.

    It is rebuilt at start-up from the jobs topic (``remember``), so a restart keeps the guarantee within the
    idempotency window.
    """

    def __init__(self, capacity: int = 1_000_000) -> None:
        self._capacity = capacity
        self._done: OrderedDict[str, JobSubmitted] = OrderedDict()
        self._in_flight: dict[str, asyncio.Task[JobSubmitted]] = {}

    def __len__(self) -> int:
        return len(self._done)

    def remember(self, submitted: JobSubmitted) -> None:
        self._done[submitted.request_id] = submitted
        self._done.move_to_end(submitted.request_id)
        while len(self._done) > self._capacity:
            self._done.popitem(last=False)

    def get(self, request_id: str) -> JobSubmitted | None:
        return self._done.get(request_id)

    async def once(self, request_id: str, submit: Callable[[], Awaitable[JobSubmitted]]) -> tuple[JobSubmitted, bool]:
        """Run ``submit`` unless this request was already submitted; returns the job and whether it is new."""
        if (known := self._done.get(request_id)) is not None:
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
