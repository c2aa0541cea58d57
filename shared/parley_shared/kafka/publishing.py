"""Atomic publishing: output records and the consumed offsets that produced them, in one Kafka transaction.

faststream has no transaction API (it only passes ``transactional_id`` through), so every write a service makes
goes through a transactional aiokafka producer beside the broker: consume→produce steps with their offsets, HTTP
submissions without. A crash before the commit aborts the transaction: the input is read again and the output
was never visible to ``read_committed`` consumers, so nothing is lost or duplicated.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from faststream.kafka import KafkaBroker

from parley_shared.kafka.connection import aiokafka_options
from parley_shared.settings import KafkaSettings
from parley_shared.tracing import current_trace_headers, is_trace_header

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    value: bytes
    key: bytes | None = None
    partition: int | None = None  # None: the producer's partitioner picks it from the key
    headers: tuple[tuple[str, bytes], ...] = field(default_factory=tuple)


def with_trace_context(records: Sequence[OutgoingRecord]) -> list[OutgoingRecord]:
    """``records`` carrying the current span's context, so the consumer of each continues this trace."""
    injected = current_trace_headers()
    if not injected:
        return list(records)
    return [
        replace(record, headers=tuple(h for h in record.headers if not is_trace_header(h[0])) + injected)
        for record in records
    ]


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


@dataclass
class _Pending:
    records: Sequence[OutgoingRecord]
    consumed: Mapping[TopicPartition, int]
    group_id: str | None
    done: asyncio.Future[None]


class TransactionalPublisher:
    """A transactional aiokafka producer with group commit.

    aiokafka allows one transaction at a time per producer, so callers that arrive while one is in flight (HTTP
    submissions, a consume step, job-watcher's outcomes) are committed together in the next one: each caller
    returns once its own records are committed, or raises if that transaction failed.
    """

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
        self._waiting: list[_Pending] = []

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
        if consumed and group_id is None:
            raise ValueError("committing consumed offsets needs the consumer's group_id")
        if self._producer is None:
            raise RuntimeError("TransactionalPublisher.start() was not called")
        pending = _Pending(records, consumed or {}, group_id, asyncio.get_running_loop().create_future())
        self._waiting.append(pending)
        try:
            async with self._lock:
                if not pending.done.done():
                    # Everything that arrived while the previous transaction was in flight goes in this one.
                    batch, self._waiting = self._waiting, []
                    await self._commit(batch)
        except asyncio.CancelledError:
            if pending in self._waiting:
                self._waiting.remove(pending)  # never sent: the caller gave up before its turn
            raise
        await pending.done

    async def _commit(self, batch: list[_Pending]) -> None:
        """One transaction for ``batch``; its outcome goes to each caller's future (raises only if cancelled)."""
        producer = self._producer
        assert producer is not None  # checked by publish
        offsets: dict[str, dict[TopicPartition, int]] = {}
        for pending in batch:
            if pending.group_id is not None:
                group = offsets.setdefault(pending.group_id, {})
                for tp, offset in pending.consumed.items():
                    group[tp] = max(group.get(tp, 0), offset)
        try:
            async with producer.transaction():
                records = [r for pending in batch for r in pending.records]
                sends = [
                    await producer.send(r.topic, r.value, key=r.key, partition=r.partition, headers=list(r.headers))
                    for r in records
                ]
                await asyncio.gather(*sends)
                for group_id, consumed in offsets.items():
                    await producer.send_offsets_to_transaction(consumed, group_id)
        except Exception as error:
            # Every caller in the batch raises it from its own ``await pending.done``.
            for pending in batch:
                pending.done.set_exception(error)
            return
        except BaseException:
            for pending in batch:  # cancelled mid-transaction (shutdown): nobody's records are committed
                pending.done.cancel()
            raise
        for pending in batch:
            pending.done.set_result(None)


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
            await self._broker.publish(
                r.value, r.topic, key=r.key, partition=r.partition, headers={k: v.decode() for k, v in r.headers}
            )
