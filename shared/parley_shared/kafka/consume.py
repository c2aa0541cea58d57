"""The consume→produce step a ``Transform`` hop runs on each batch of records.

Each record is decoded into the hop's consumed event and handled concurrently (within a bound) into output events;
a record that holds no such event, or whose failure is permanent, becomes a dead letter; a transient failure is
retried with jittered backoff, and after the retry policy's last attempt it too becomes a dead letter (with the
attempt count) instead of blocking its partition forever. The outputs and the batch's offsets are then committed
in one transaction, and only then counted. If the commit fails, the batch is handled again after a pause: nothing
lost, nothing half-written.

A batch whose partitions are revoked while it is being handled is never committed (``AssignmentFence``): its
records' new owner handles them again from the last committed offset, so they end once, not twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, Protocol

from aiokafka import ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from pydantic import BaseModel, ValidationError

from parley_shared.events import DeadLetter
from parley_shared.kafka.dead_letters import dead_letter_from_record
from parley_shared.kafka.hops import Outputs, Transform
from parley_shared.kafka.publishing import AtomicPublisher, OutgoingRecord
from parley_shared.metrics import RECORD_RETRIES, count_committed_records, series
from parley_shared.provider.errors import ProviderAuthError, ProviderError, ProviderUnavailable
from parley_shared.retry import RetryPolicy
from parley_shared.tracing import consuming_record
from parley_shared.validation import describe_validation_error

logger = logging.getLogger(__name__)

# Transient failures of one record: about two minutes of retries before it is given up on.
DEFAULT_RECORD_RETRIES = RetryPolicy(base_seconds=0.5, max_seconds=30.0, max_attempts=8)


class PermanentFailure(Exception):
    """Handling this record can never succeed (bad input, rejected by the provider): dead-letter it."""


class TransientFailure(Exception):
    """Handling may succeed later (provider or network trouble): retry with backoff."""


def classify_failure(error: Exception) -> PermanentFailure | TransientFailure:
    """Whether a handler's error is worth retrying: the one place provider errors are mapped for Kafka hops.

    Provider trouble and refused credentials (ours, not the record's: they may be fixed) are retried; anything else
    the provider says about the request is final.
    """
    if isinstance(error, PermanentFailure | TransientFailure):
        return error
    if isinstance(error, ProviderUnavailable | ProviderAuthError):
        return TransientFailure(str(error))
    if isinstance(error, ProviderError):
        return PermanentFailure(str(error))
    raise error


class PartitionsRevoked(Exception):
    """The batch's partitions were revoked while it was handled: another member now owns (and re-reads) them."""


class AssignmentFence:
    """Keeps the consumer group's previous owner of a partition from committing after its successor has started.

    aiokafka adds consumed offsets to a transaction without the group's generation (TxnOffsetCommit v0, before
    KIP-447), so the broker does not refuse a commit from a member that has just lost the partition. Without this
    fence a replica still fetching insights when a rebalance moves the partition commits them after the new owner
    has read the same record from the last committed offset, and the job ends twice.

    Every assignment change bumps ``epoch``; a batch commits only if the epoch it began in is still current, and
    the revocation callback returns (letting the rebalance go on) only once the commits already under way have
    finished. aiokafka runs every member's ``on_partitions_revoked`` before any member is assigned partitions, so
    the successor reads the committed offset only after the last commit the previous owner will ever make.
    """

    def __init__(self) -> None:
        self.epoch = 0
        self._commits_in_flight = 0
        self._no_commits_in_flight = asyncio.Event()
        self._no_commits_in_flight.set()

    def check(self, since_epoch: int) -> None:
        """Raises ``PartitionsRevoked`` if the assignment changed after ``since_epoch``."""
        if since_epoch != self.epoch:
            raise PartitionsRevoked(f"assignment changed (epoch {since_epoch} -> {self.epoch})")

    @asynccontextmanager
    async def committing(self, since_epoch: int) -> AsyncIterator[None]:
        """Wraps a commit of work begun in ``since_epoch``: refused if the assignment has changed since."""
        self.check(since_epoch)
        self._commits_in_flight += 1
        self._no_commits_in_flight.clear()
        try:
            yield
        finally:
            self._commits_in_flight -= 1
            if not self._commits_in_flight:
                self._no_commits_in_flight.set()

    async def revoke(self) -> None:
        """Refuses every commit of work begun before now, and waits for those already committing."""
        self.epoch += 1
        await self._no_commits_in_flight.wait()


class FenceOnRevoke(ConsumerRebalanceListener):
    """The subscriber's rebalance listener: fences the step's commits before its partitions change hands."""

    def __init__(self, fence: AssignmentFence) -> None:
        self._fence = fence

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            await self._fence.revoke()

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        """Nothing to do: the consumer resumes each assigned partition from its committed offset."""


# A record's outcome: the events it produced (or its dead letter) and their outgoing records.
Handled = tuple[Sequence[BaseModel], Sequence[OutgoingRecord]]


def consumed_offsets(records: Sequence[Any]) -> dict[TopicPartition, int]:
    """The offsets to commit after handling ``records``: one past the last record of each partition."""
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    return offsets


class ConsumedBatch(Protocol):
    """What the step reads of faststream's ``KafkaMessage``: the aiokafka record, or the batch of them."""

    @property
    def raw_message(self) -> Any: ...


class ConsumeProduceStep:
    """A ``Transform`` hop run on batches of records (the subscriber's handler calls it with each batch)."""

    def __init__(
        self,
        hop: Transform[Any, Any],
        *,
        service: str,
        publisher: AtomicPublisher,
        group_id: str,
        retries: RetryPolicy = DEFAULT_RECORD_RETRIES,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_progress: Callable[[], None] | None = None,
    ) -> None:
        self._hop = hop
        self._outputs = Outputs(hop.produces)
        self._service = service
        self._publisher = publisher
        self._group_id = group_id
        self._retries = retries
        self._sleep = sleep
        self._on_progress = on_progress
        self._limit = asyncio.Semaphore(hop.concurrency)
        self.fence = AssignmentFence()

    async def _attempts(self, record: Any, epoch: int) -> Handled:
        """The record's output events and their records (carrying the current span's trace), or its dead letter."""
        try:
            event = self._hop.consumes.decode(record.value)
        except ValidationError as error:
            reason = f"invalid {self._hop.consumes.event_names}: {describe_validation_error(error)}"
            return self._dead_letter(record, reason, 1)
        attempt = 1
        while True:
            try:
                async with self._limit:
                    outputs = await self._hop.handler(event)
                # An output no declared stream carries is a bug (UndeclaredOutput): it fails here, not on commit.
                return outputs, self._outputs.records(outputs)
            except Exception as error:
                try:
                    failure = classify_failure(error)
                except Exception:
                    # A failure nobody foresaw: keep the record (and the partition moving) rather than skip it.
                    logger.exception("unexpected error on %s[%s]@%s", record.topic, record.partition, record.offset)
                    return self._dead_letter(record, error, attempt)
                if isinstance(failure, PermanentFailure) or not self._retries.may_retry(attempt):
                    return self._dead_letter(record, failure, attempt)
                self.fence.check(epoch)  # no use retrying for a partition this member no longer owns
                delay = self._retries.delay(attempt)
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

    def _dead_letter(self, record: Any, failure: Exception | str, attempts: int) -> Handled:
        logger.warning(
            "dead-lettering %s[%s]@%s after %d attempt(s): %s",
            record.topic,
            record.partition,
            record.offset,
            attempts,
            failure,
        )
        letter = dead_letter_from_record(record, service=self._service, error=failure, attempts=attempts)
        return [letter], self._outputs.records([letter])

    async def handle_records(self, records: Sequence[Any], *, epoch: int | None = None) -> None:
        """Handle ``records`` and commit outputs and offsets atomically (raises if the commit fails, and
        ``PartitionsRevoked`` if the assignment changed after ``epoch``, the fence's current one by default)."""
        epoch = self.fence.epoch if epoch is None else epoch
        results = await asyncio.gather(*(self._traced(r, epoch) for r in records))
        events = [event for result, _ in results for event in result]
        outgoing = [out for _, result in results for out in result]
        async with self.fence.committing(epoch):
            await self._publisher.publish(outgoing, consumed=consumed_offsets(records), group_id=self._group_id)
        self._outputs.committed(events)
        count_committed_records(self._service, [any(isinstance(e, DeadLetter) for e in r) for r, _ in results])

    async def _traced(self, record: Any, epoch: int) -> Handled:
        # One span per record, in the trace its producer started; the outputs carry it on to the next hop.
        with consuming_record(record, service=self._service, group_id=self._group_id):
            return await self._attempts(record, epoch)

    async def __call__(self, msg: ConsumedBatch) -> None:
        raw = msg.raw_message
        records: Sequence[Any] = raw if isinstance(raw, (tuple, list)) else (raw,)
        epoch = self.fence.epoch  # the assignment these records were fetched under
        attempt = 1
        while True:
            try:
                await self.handle_records(records, epoch=epoch)
                if self._on_progress is not None:
                    self._on_progress()
                return
            except PartitionsRevoked as revoked:
                logger.info(
                    "not committing a batch of %d: %s; the partitions' new owner reads it again", len(records), revoked
                )
                if self._on_progress is not None:
                    self._on_progress()
                return
            except KafkaError as error:
                # Could not commit: pause instead of spinning, and handle the batch again.
                delay = self._retries.delay(attempt)
                logger.error("could not commit a batch of %d (%s); retrying in %.1fs", len(records), error, delay)
                await self._sleep(delay)
                attempt += 1
