"""Kafka stand-ins for unit tests: records as aiokafka hands them over, and a publisher that records commits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from parley_shared.kafka.publishing import AtomicPublisher, OutgoingRecord


@dataclass(frozen=True)
class FakeRecord:
    """The fields of an aiokafka ``ConsumerRecord`` that Parley reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


@dataclass(frozen=True)
class FakeBatch:
    """faststream's ``KafkaMessage`` as the consume step reads it: the record, or the batch of them."""

    raw_message: Any


def batch_of(*records: FakeRecord, single: bool = False) -> FakeBatch:
    if single:
        (record,) = records
        return FakeBatch(record)
    return FakeBatch(tuple(records))


@dataclass
class Publication:
    records: list[OutgoingRecord]
    consumed: dict[TopicPartition, int]
    group_id: str | None


@dataclass
class RecordingPublisher(AtomicPublisher):
    """Commits by recording what it was given; raises the queued ``failures`` first, one per publish."""

    failures: list[BaseException] = field(default_factory=list)
    publications: list[Publication] = field(default_factory=list)
    # Called with each publication just before it counts as committed (to look at the state of the caller then).
    on_publish: Callable[[Publication], None] | None = None
    started: bool = False

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def publish(
        self,
        records: Sequence[OutgoingRecord],
        *,
        consumed: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        if self.failures:
            raise self.failures.pop(0)
        publication = Publication(list(records), dict(consumed or {}), group_id)
        if self.on_publish is not None:
            self.on_publish(publication)
        self.publications.append(publication)

    @property
    def records(self) -> list[OutgoingRecord]:
        """Every record committed so far, in order."""
        return [r for publication in self.publications for r in publication.records]


class HeldPublisher(RecordingPublisher):
    """A ``RecordingPublisher`` whose first ``held`` publishes wait for ``release``: transactions in flight."""

    def __init__(self, held: int = 1) -> None:
        super().__init__()
        self.held = held
        self.committing = asyncio.Event()  # set once a held publish is waiting
        self.release = asyncio.Event()

    async def publish(self, records: Sequence[OutgoingRecord], **kwargs: Any) -> None:
        if self.held > 0:
            self.held -= 1
            self.committing.set()
            await self.release.wait()
        await super().publish(records, **kwargs)


@dataclass
class RecordedSleep:
    """An ``asyncio.sleep`` that returns at once and remembers how long it was asked to wait."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
