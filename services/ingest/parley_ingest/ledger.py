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
        self._in_flight: dict[str, asyncio.Future[JobSubmitted]] = {}

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
        future: asyncio.Future[JobSubmitted] = asyncio.get_running_loop().create_future()
        self._in_flight[request_id] = future
        try:
            submitted = await submit()
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiting duplicates get it, nobody else must
            raise
        else:
            self.remember(submitted)
            future.set_result(submitted)
            return submitted, True
        finally:
            del self._in_flight[request_id]
