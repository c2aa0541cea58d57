"""An asyncio event loop on virtual time: whenever nothing is ready, its clock jumps to the next timer.

Hours of polling then take milliseconds, and nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Awaitable, Callable

# Small enough that the loop's clock resolution (1 ns) is above the float spacing, as with the monotonic clock.
START = 1_000_000.0


class VirtualClock:
    def __init__(self, now: float) -> None:
        self.now = now


class SkipAheadSelector(selectors.DefaultSelector):
    """Never waits for a timer: when no I/O is ready, the clock jumps forward by the loop's timeout instead."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None:
            return super().select(None)
        ready = super().select(0)
        if not ready and timeout > 0:
            self._clock.now += timeout
        return ready


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self, clock: VirtualClock) -> None:
        self._virtual = clock
        super().__init__(SkipAheadSelector(clock))

    def time(self) -> float:
        return self._virtual.now


def run_in_virtual_time(scenario: Callable[[VirtualClock], Awaitable[None]]) -> None:
    clock = VirtualClock(START)

    async def main() -> None:
        await scenario(clock)

    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(clock)) as runner:
        runner.run(main())
