"""Liveness notices a consumer that is connected but no longer handles the records waiting for it."""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import TopicPartition
from parley_shared.health import ConsumerProgress

TP = TopicPartition("parley.completions", 2)


@dataclass
class FakeConsumer:
    position_at: int
    stable_end: int | None
    high_end: int | None = None
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP})

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.stable_end

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.high_end

    async def position(self, tp: TopicPartition) -> int:
        return self.position_at


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_records_waiting_and_nothing_handled_for_too_long_is_a_stall() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=120, clock=clock)
    clock.now += 121

    stall = await progress.stall(FakeConsumer(position_at=40, stable_end=45))

    assert stall == {"idleSeconds": 121.0, "recordsWaiting": {"parley.completions[2]": 5}}


async def test_an_idle_consumer_that_is_caught_up_is_healthy() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=120, clock=clock)
    clock.now += 3600
    assert await progress.stall(FakeConsumer(position_at=45, stable_end=45)) is None


async def test_recent_progress_is_healthy_even_with_a_backlog() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=120, clock=clock)
    clock.now += 500
    progress.handled()
    clock.now += 60
    assert await progress.stall(FakeConsumer(position_at=0, stable_end=10_000)) is None


async def test_records_beyond_an_open_transaction_do_not_count_as_waiting() -> None:
    clock = Clock()
    progress = ConsumerProgress(stall_seconds=120, clock=clock)
    clock.now += 300
    # The high watermark is ahead, but a read_committed consumer cannot pass the last stable offset yet.
    assert await progress.stall(FakeConsumer(position_at=45, stable_end=45, high_end=90)) is None
