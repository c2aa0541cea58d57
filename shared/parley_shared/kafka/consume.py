"""The consume→produce step every pipeline service runs on a batch of records.

Each record is handled concurrently (within a bound) into output records; a record whose input is bad, or whose
failure is permanent, becomes a dead letter; a transient failure is retried with jittered backoff, and after
``max_attempts`` it too becomes a dead letter (with the attempt count) instead of blocking its partition forever.
The outputs and the batch's offsets are then committed in one transaction. If that fails, the consumer is rewound
to the batch's first offsets and the batch is handled again after a pause: nothing lost, nothing half-written.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaMessage

from parley_shared.kafka.dead_letters import dead_letter_from_record
from parley_shared.kafka.publishing import AtomicPublisher, OutgoingRecord
from parley_shared.metrics import RECORD_RETRIES, count_committed_records, series
from parley_shared.tracing import consuming_record, with_trace_context

logger = logging.getLogger(__name__)


class PermanentFailure(Exception):
    """Handling this record can never succeed (bad input, rejected by the provider): dead-letter it."""


class TransientFailure(Exception):
    """Handling may succeed later (provider or network trouble): retry with backoff."""


RecordHandler = Callable[[Any], Awaitable[Sequence[OutgoingRecord]]]


@dataclass
class StepPolicy:
    max_attempts: int = 8
    backoff_base_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    concurrency: int = 64


def consumed_offsets(records: Sequence[Any]) -> dict[TopicPartition, int]:
    """The offsets to commit after handling ``records``: one past the last record of each partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


class ConsumeProduceStep:
    def __init__(
        self,
        *,
        service: str,
        handle_record: RecordHandler,
        publisher: Callable[[], AtomicPublisher],
        group_id: str,
        dead_letter_topic: str,
        policy: StepPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._service = service
        self._handle_record = handle_record
        self._publisher = publisher
        self._group_id = group_id
        self._dead_letter_topic = dead_letter_topic
        self._policy = policy or StepPolicy()
        self._sleep = sleep
        self._on_progress = on_progress
        self._limit = asyncio.Semaphore(self._policy.concurrency)

    def _backoff(self, attempt: int) -> float:
        ceiling = min(self._policy.backoff_max_seconds, self._policy.backoff_base_seconds * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    async def _handle_with_retries(self, record: Any) -> Sequence[OutgoingRecord]:
        # One span per record, in the trace its producer started; the outputs carry it on to the next hop.
        with consuming_record(record, service=self._service, group_id=self._group_id):
            return with_trace_context(await self._attempts(record))

    async def _attempts(self, record: Any) -> Sequence[OutgoingRecord]:
        attempt = 1
        while True:
            try:
                async with self._limit:
                    return await self._handle_record(record)
            except PermanentFailure as failure:
                return [self._dead_letter(record, failure, attempt)]
            except TransientFailure as failure:
                if attempt >= self._policy.max_attempts:
                    return [self._dead_letter(record, failure, attempt)]
                delay = self._backoff(attempt)
                series(RECORD_RETRIES, self._service).inc()
                logger.warning(
                    "transient failure on %s[%s]@%s (attempt %d), retrying in %.1fs: %s",
                    record.topic,
                    record.partition,
                    record.offset,
                    attempt,
                    delay,
                    failure,
                )
                await self._sleep(delay)
                attempt += 1
            except Exception as error:
                # A failure nobody foresaw: keep the record (and the partition moving) rather than skip it.
                logger.exception("unexpected error on %s[%s]@%s", record.topic, record.partition, record.offset)
                return [self._dead_letter(record, error, attempt)]

    def _dead_letter(self, record: Any, failure: Exception, attempts: int) -> OutgoingRecord:
        logger.warning(
            "dead-lettering %s[%s]@%s after %d attempt(s): %s",
            record.topic,
            record.partition,
            record.offset,
            attempts,
            failure,
        )
        return dead_letter_from_record(
            record, service=self._service, topic=self._dead_letter_topic, error=failure, attempts=attempts
        )

    async def handle_records(self, records: Sequence[Any]) -> None:
        """Handle ``records`` and commit outputs and offsets atomically (raises if the commit fails)."""
        results = await asyncio.gather(*(self._handle_with_retries(r) for r in records))
        outputs = [out for result in results for out in result]
        await self._publisher().publish(outputs, consumed=consumed_offsets(records), group_id=self._group_id)
        count_committed_records(self._service, results, self._dead_letter_topic)

    async def __call__(self, msg: KafkaMessage) -> None:
        raw = msg.raw_message
        records: Sequence[Any] = raw if isinstance(raw, (tuple, list)) else (raw,)
        attempt = 1
        while True:
            try:
                await self.handle_records(records)
                if self._on_progress is not None:
                    self._on_progress()
                return
            except KafkaError as error:
                # Could not commit: rewind so the batch is read again, and pause instead of spinning.
                delay = self._backoff(attempt)
                logger.error("could not commit a batch of %d (%s); retrying in %.1fs", len(records), error, delay)
                await self._sleep(delay)
                attempt += 1
