"""ConsumeProduceStep: outputs and offsets in one publish, dead letters, retries with backoff (nothing sleeps)."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from faststream.kafka import KafkaMessage
from parley_shared.events import DeadLetter
from parley_shared.kafka.consume import (
    ConsumeProduceStep,
    PermanentFailure,
    RecordHandler,
    StepPolicy,
    TransientFailure,
)
from parley_shared.kafka.publishing import OutgoingRecord

SOURCE = "parley.requests"
OUTPUT = "parley.jobs"
DEAD_LETTERS = "parley.dead-letters"
GROUP = "parley-test"


@dataclass(frozen=True)
class FakeRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


@dataclass
class Publication:
    records: list[OutgoingRecord]
    consumed: dict[TopicPartition, int]
    group_id: str | None


@dataclass
class RecordingPublisher:
    failures: list[BaseException] = field(default_factory=list)
    publications: list[Publication] = field(default_factory=list)

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to disconnect."""

    async def publish(
        self,
        records: Sequence[OutgoingRecord],
        *,
        consumed: Mapping[TopicPartition, int] | None = None,
        group_id: str | None = None,
    ) -> None:
        if self.failures:
            raise self.failures.pop(0)
        self.publications.append(Publication(list(records), dict(consumed or {}), group_id))


@dataclass
class ScriptedHandler:
    """Handles ``ok:<text>`` into an output; ``bad`` fails permanently; ``flaky:<n>`` fails n times, then works."""

    attempts: dict[int, int] = field(default_factory=dict)

    async def __call__(self, record: Any) -> Sequence[OutgoingRecord]:
        self.attempts[record.offset] = self.attempts.get(record.offset, 0) + 1
        value = record.value or b""
        if value == b"bad":
            raise PermanentFailure("the record is not a ProcessRequested")
        if value == b"bug":
            raise KeyError("conversationId")
        if value.startswith(b"flaky:"):
            failures = int(value.removeprefix(b"flaky:"))
            if self.attempts[record.offset] <= failures:
                raise TransientFailure("the provider answered 503")
            return [OutgoingRecord(topic=OUTPUT, key=record.key, value=b"recovered")]
        return [OutgoingRecord(topic=OUTPUT, key=record.key, value=value.removeprefix(b"ok:").upper())]


@dataclass
class RecordedSleep:
    delays: list[float] = field(default_factory=list)

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make_step(
    handler: RecordHandler, publisher: RecordingPublisher, sleep: RecordedSleep, *, max_attempts: int = 4
) -> ConsumeProduceStep:
    return ConsumeProduceStep(
        service="ingest",
        handle_record=handler,
        publisher=lambda: publisher,
        group_id=GROUP,
        dead_letter_topic=DEAD_LETTERS,
        policy=StepPolicy(max_attempts=max_attempts, backoff_base_seconds=0.5, backoff_max_seconds=30.0),
        sleep=sleep,
    )


def record(partition: int, offset: int, value: bytes | None, key: bytes | None = b"conv-1") -> FakeRecord:
    return FakeRecord(topic=SOURCE, partition=partition, offset=offset, key=key, value=value)


def letters(publication: Publication) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value) for r in publication.records if r.topic == DEAD_LETTERS]


async def test_outputs_and_offsets_are_published_once() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    step = make_step(ScriptedHandler(), publisher, sleep)
    batch = [record(0, 10, b"ok:a"), record(1, 7, b"ok:b"), record(0, 11, b"ok:c"), record(1, 5, b"ok:d")]

    await step.handle_records(batch)

    assert len(publisher.publications) == 1
    published = publisher.publications[0]
    assert [r.value for r in published.records] == [b"A", b"B", b"C", b"D"]  # in the batch's order
    assert all(r.topic == OUTPUT and r.key == b"conv-1" for r in published.records)
    assert published.consumed == {TopicPartition(SOURCE, 0): 12, TopicPartition(SOURCE, 1): 8}
    assert published.group_id == GROUP
    assert sleep.delays == []


async def test_a_permanent_failure_becomes_a_dead_letter_and_the_rest_goes_on() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep)

    await step.handle_records([record(2, 40, b"ok:a"), record(2, 41, b"bad", key=b"conv-x"), record(2, 42, b"ok:c")])

    published = publisher.publications[0]
    assert [r.topic for r in published.records] == [OUTPUT, DEAD_LETTERS, OUTPUT]
    [letter] = letters(published)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (SOURCE, 2, 41)
    assert base64.b64decode(letter.original_value) == b"bad"
    assert letter.original_key is not None
    assert base64.b64decode(letter.original_key) == b"conv-x"
    assert letter.error_type == "PermanentFailure"
    assert letter.reason == "the record is not a ProcessRequested"
    assert letter.service == "ingest"
    assert letter.attempts == 1
    assert handler.attempts[41] == 1  # never retried
    assert published.consumed == {TopicPartition(SOURCE, 2): 43}
    assert sleep.delays == []


async def test_an_unforeseen_error_becomes_a_dead_letter_instead_of_being_skipped() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    step = make_step(ScriptedHandler(), publisher, sleep)

    await step.handle_records([record(0, 1, b"bug"), record(0, 2, b"ok:next")])

    published = publisher.publications[0]
    [letter] = letters(published)
    assert (letter.error_type, letter.source_offset) == ("KeyError", 1)
    assert base64.b64decode(letter.original_value) == b"bug"
    assert [r.value for r in published.records if r.topic == OUTPUT] == [b"NEXT"]
    assert published.consumed == {TopicPartition(SOURCE, 0): 3}


async def test_a_transient_failure_is_retried_with_growing_backoff_then_succeeds() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep, max_attempts=4)

    await step.handle_records([record(0, 3, b"flaky:3")])

    assert handler.attempts[3] == 4
    assert len(sleep.delays) == 3
    # Jittered within [ceiling/2, ceiling], the ceiling doubling from 0.5 s.
    for delay, ceiling in zip(sleep.delays, [0.5, 1.0, 2.0], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    [published] = publisher.publications
    assert [r.value for r in published.records] == [b"recovered"]
    assert published.consumed == {TopicPartition(SOURCE, 0): 4}


async def test_exhausted_attempts_become_a_dead_letter_with_the_attempt_count() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep, max_attempts=3)

    await step.handle_records([record(0, 9, b"flaky:100"), record(0, 10, b"ok:fine")])

    assert handler.attempts[9] == 3
    assert len(sleep.delays) == 2
    [published] = publisher.publications
    [letter] = letters(published)
    assert letter.attempts == 3
    assert letter.error_type == "TransientFailure"
    assert letter.source_offset == 9
    assert base64.b64decode(letter.original_value) == b"flaky:100"
    assert [r.value for r in published.records if r.topic == OUTPUT] == [b"FINE"]
    assert published.consumed == {TopicPartition(SOURCE, 0): 11}


async def test_the_backoff_is_capped() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    step = make_step(ScriptedHandler(), publisher, sleep, max_attempts=12)
    await step.handle_records([record(0, 0, b"flaky:11")])
    assert max(sleep.delays) <= 30.0
    assert sleep.delays[-1] >= 15.0


async def test_a_failed_commit_raises_and_publishes_nothing() -> None:
    publisher = RecordingPublisher(failures=[KafkaConnectionError()])
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    with pytest.raises(KafkaConnectionError):
        await step.handle_records([record(0, 0, b"ok:a")])
    assert publisher.publications == []


@dataclass
class FakeMessage:
    raw_message: Any


async def test_a_batch_whose_commit_fails_is_handled_again_after_a_pause() -> None:
    publisher, sleep = RecordingPublisher(failures=[KafkaConnectionError()]), RecordedSleep()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep)

    await step(cast(KafkaMessage, FakeMessage(raw_message=(record(0, 0, b"ok:a"), record(0, 1, b"ok:b")))))

    assert handler.attempts == {0: 2, 1: 2}
    assert len(sleep.delays) == 1
    [published] = publisher.publications
    assert [r.value for r in published.records] == [b"A", b"B"]
    assert published.consumed == {TopicPartition(SOURCE, 0): 2}


async def test_a_single_record_message_is_handled_too() -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    await step(cast(KafkaMessage, FakeMessage(raw_message=record(4, 99, b"ok:solo"))))
    [published] = publisher.publications
    assert [r.value for r in published.records] == [b"SOLO"]
    assert published.consumed == {TopicPartition(SOURCE, 4): 100}
