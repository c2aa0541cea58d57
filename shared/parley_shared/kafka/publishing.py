"""Atomic publishing: output records and the consumed offsets that produced them, in one Kafka transaction.

faststream has no transaction API (it only passes ``transactional_id`` through), so consume→produce steps use a
transactional aiokafka producer beside the broker. A crash before the commit aborts the transaction: the input is
read again and the output was never visible to ``read_committed`` consumers, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from parley_shared.kafka.connection import aiokafka_options
from parley_shared.settings import KafkaSettings

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


class AtomicPublisher(Protocol):
    """Publishes records together with the input offsets they consume, all or nothing."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self,
        records: Sequence[OutgoingRecord],
        *,
        consumed: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None: ...


class TransactionalPublisher:
    """A transactional aiokafka producer; one transaction at a time (aiokafka allows no more per producer)."""

    def __init__(self, settings: KafkaSettings, *, transactional_id: str, client_id: str) -> None:
        self._options = {
            **aiokafka_options(settings),
            "transactional_id": transactional_id,
            "client_id": client_id,
            "linger_ms": 2,
            "max_batch_size": 1 << 20,
            "max_request_size": 8 << 20,
        }
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        # aiokafka binds to the running loop, so the producer is made here rather than in __init__.
        self._producer = AIOKafkaProducer(**self._options)
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()

    async def publish(
        self,
        records: Sequence[OutgoingRecord],
        *,
        consumed: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        if not records and not consumed:
            return
        producer = self._producer
        if producer is None:
            raise RuntimeError("TransactionalPublisher.start() was not called")
        async with self._lock, producer.transaction():
            sends = [await producer.send(r.topic, r.value, key=r.key, headers=list(r.headers)) for r in records]
            await asyncio.gather(*sends)
            if consumed:
                if group_id is None:
                    raise ValueError("committing consumed offsets needs the consumer's group_id")
                await producer.send_offsets_to_transaction(dict(consumed), group_id)


class BrokerPublisher:
    """Non-transactional publishing through the faststream broker, for in-memory broker tests.

    Offsets are left to the subscriber's own acknowledgement.
    """

    def __init__(self, broker: KafkaBroker) -> None:
        self._broker = broker

    async def start(self) -> None:
        """The broker is started by its owner."""

    async def stop(self) -> None:
        """The broker is stopped by its owner."""

    async def publish(
        self,
        records: Sequence[OutgoingRecord],
        *,
        consumed: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        for r in records:
            await self._broker.publish(r.value, r.topic, key=r.key, headers={k: v.decode() for k, v in r.headers})
