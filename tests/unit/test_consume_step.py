"""The consume→produce step of a Transform hop: typed events in and out, outputs and offsets in one publish,
dead letters, retries with backoff (nothing sleeps), and outputs counted only once committed."""

from __future__ import annotations

import asyncio
import base64

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from parley_shared.kafka.consume import FenceOnRevoke
from pydantic import BaseModel

from tests.support.kafka_fakes import HeldPublisher, RecordedSleep, RecordingPublisher, batch_of
from tests.support.scripted_hop import (
    DEAD_LETTERS,
    GROUP,
    OUTPUT,
    SOURCE,
    Committed,
    Said,
    ScriptedHandler,
    echoes,
    letters,
    make_step,
    record,
    said,
)


async def test_outputs_and_offsets_are_published_once_then_counted() -> None:
    publisher, sleep, committed = RecordingPublisher(), RecordedSleep(), Committed()
    step = make_step(ScriptedHandler(), publisher, sleep, committed)
    batch = [
        record(0, 10, said("ok:a")),
        record(1, 7, said("ok:b", "conv-2")),
        record(0, 11, said("ok:c")),
        record(1, 5, said("ok:d")),
    ]

    await step.handle_records(batch)

    [published] = publisher.publications
    assert echoes(publisher) == ["A", "B", "C", "D"]  # in the batch's order
    assert [r.key for r in published.records] == [b"conv-1", b"conv-2", b"conv-1", b"conv-1"]  # by conversationId
    assert all(r.topic == OUTPUT for r in published.records)
    assert published.consumed == {TopicPartition(SOURCE, 0): 12, TopicPartition(SOURCE, 1): 8}
    assert published.group_id == GROUP
    assert committed.echoed == ["A", "B", "C", "D"]
    assert sleep.delays == []


async def test_a_record_that_holds_no_consumed_event_becomes_a_dead_letter_unhandled() -> None:
    publisher, handler = RecordingPublisher(), ScriptedHandler()
    step = make_step(handler, publisher, RecordedSleep())

    await step.handle_records([record(0, 1, b"{not json"), record(0, 2, b'{"text": "no conversation"}')])

    first, second = letters(publisher)
    assert first.reason.startswith("invalid Said: ")
    assert "conversation_id" in second.reason
    assert base64.b64decode(first.original_value) == b"{not json"
    assert handler.attempts == {}


async def test_a_permanent_failure_becomes_a_dead_letter_and_the_rest_goes_on() -> None:
    publisher, sleep, committed = RecordingPublisher(), RecordedSleep(), Committed()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep, committed)

    await step.handle_records(
        [record(2, 40, said("ok:a")), record(2, 41, said("bad"), key=b"conv-x"), record(2, 42, said("ok:c"))]
    )

    [published] = publisher.publications
    assert [r.topic for r in published.records] == [OUTPUT, DEAD_LETTERS, OUTPUT]
    assert published.records[1].key == b"conv-x"  # a dead letter is keyed like its original
    [letter] = letters(publisher)
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (SOURCE, 2, 41)
    assert base64.b64decode(letter.original_value) == said("bad")
    assert letter.original_key is not None
    assert base64.b64decode(letter.original_key) == b"conv-x"
    assert (letter.error_type, letter.reason) == ("PermanentFailure", "the record is not a ProcessRequested")
    assert (letter.service, letter.attempts) == ("ingest", 1)
    assert handler.attempts["bad"] == 1  # never retried
    assert published.consumed == {TopicPartition(SOURCE, 2): 43}
    assert [d.source_offset for d in committed.dead_letters] == [41]
    assert sleep.delays == []


async def test_provider_errors_are_retried_or_dead_lettered_in_one_place() -> None:
    publisher, sleep, handler = RecordingPublisher(), RecordedSleep(), ScriptedHandler()
    step = make_step(handler, publisher, sleep, max_attempts=2)

    await step.handle_records([record(0, 1, said("rejected")), record(0, 2, said("unavailable"))])

    rejected, unavailable = letters(publisher)
    assert (rejected.error_type, rejected.attempts) == ("PermanentFailure", 1)
    assert "400" in rejected.reason
    assert (unavailable.error_type, unavailable.attempts) == ("TransientFailure", 2)
    assert handler.attempts == {"rejected": 1, "unavailable": 2}
    assert sleep.delays == [0.5]


async def test_an_unforeseen_error_becomes_a_dead_letter_instead_of_being_skipped() -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())

    await step.handle_records([record(0, 1, said("bug")), record(0, 2, said("ok:next"))])

    [letter] = letters(publisher)
    assert (letter.error_type, letter.source_offset) == ("KeyError", 1)
    assert echoes(publisher) == ["NEXT"]
    assert publisher.publications[0].consumed == {TopicPartition(SOURCE, 0): 3}


async def test_an_output_the_hop_does_not_declare_is_a_dead_letter_not_a_write() -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())

    await step.handle_records([record(0, 1, said("stray"))])

    [published] = publisher.publications
    assert [r.topic for r in published.records] == [DEAD_LETTERS]
    [letter] = letters(publisher)
    assert letter.error_type == "UndeclaredOutput"
    assert "Stray is not among this hop's outputs" in letter.reason


async def test_a_transient_failure_is_retried_with_growing_backoff_then_succeeds() -> None:
    publisher, sleep, handler = RecordingPublisher(), RecordedSleep(), ScriptedHandler()
    step = make_step(handler, publisher, sleep, max_attempts=4)

    await step.handle_records([record(0, 3, said("flaky:3"))])

    assert handler.attempts["flaky:3"] == 4
    assert sleep.delays == [0.5, 1.0, 2.0]
    assert echoes(publisher) == ["recovered"]
    assert publisher.publications[0].consumed == {TopicPartition(SOURCE, 0): 4}


async def test_exhausted_attempts_become_a_dead_letter_with_the_attempt_count() -> None:
    publisher, sleep, handler = RecordingPublisher(), RecordedSleep(), ScriptedHandler()
    step = make_step(handler, publisher, sleep, max_attempts=3)

    await step.handle_records([record(0, 9, said("flaky:100")), record(0, 10, said("ok:fine"))])

    assert handler.attempts["flaky:100"] == 3
    assert len(sleep.delays) == 2
    [letter] = letters(publisher)
    assert (letter.attempts, letter.error_type, letter.source_offset) == (3, "TransientFailure", 9)
    assert echoes(publisher) == ["FINE"]
    assert publisher.publications[0].consumed == {TopicPartition(SOURCE, 0): 11}


async def test_the_backoff_is_capped() -> None:
    sleep = RecordedSleep()
    step = make_step(ScriptedHandler(), RecordingPublisher(), sleep, max_attempts=12)
    await step.handle_records([record(0, 0, said("flaky:11"))])
    assert sleep.delays[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0]
    assert max(sleep.delays) == 30.0


async def test_a_failed_commit_raises_publishes_nothing_and_counts_nothing() -> None:
    publisher, committed = RecordingPublisher(failures=[KafkaConnectionError()]), Committed()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep(), committed)
    with pytest.raises(KafkaConnectionError):
        await step.handle_records([record(0, 0, said("ok:a"))])
    assert publisher.publications == []
    assert committed.echoed == []


async def test_a_batch_whose_commit_fails_is_handled_again_after_a_pause() -> None:
    publisher, sleep, committed = RecordingPublisher(failures=[KafkaConnectionError()]), RecordedSleep(), Committed()
    handler = ScriptedHandler()
    step = make_step(handler, publisher, sleep, committed)

    await step(batch_of(record(0, 0, said("ok:a")), record(0, 1, said("ok:b"))))

    assert handler.attempts == {"ok:a": 2, "ok:b": 2}
    assert len(sleep.delays) == 1
    assert echoes(publisher) == ["A", "B"]
    assert publisher.publications[0].consumed == {TopicPartition(SOURCE, 0): 2}
    assert committed.echoed == ["A", "B"]  # once: the failed attempt was never counted


async def test_a_single_record_message_is_handled_too() -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    await step(batch_of(record(4, 99, said("ok:solo")), single=True))
    assert echoes(publisher) == ["SOLO"]
    assert publisher.publications[0].consumed == {TopicPartition(SOURCE, 4): 100}


# ---- a rebalance while a batch is handled (the fence against the previous owner's late commit) ------------------


class HeldHandler(ScriptedHandler):
    """Handles like ``ScriptedHandler`` once ``release`` is set: a slow provider read, say."""

    def __init__(self) -> None:
        super().__init__()
        self.started = asyncio.Event()
        self.release = asyncio.Event()

    async def __call__(self, event: Said) -> list[BaseModel]:
        self.started.set()
        await self.release.wait()
        return await super().__call__(event)


async def test_a_batch_whose_partitions_are_revoked_while_it_is_handled_is_not_committed() -> None:
    publisher, committed, handler = RecordingPublisher(), Committed(), HeldHandler()
    step = make_step(handler, publisher, RecordedSleep(), committed)
    handling = asyncio.create_task(step(batch_of(record(0, 5, said("ok:late")))))
    await handler.started.wait()

    await FenceOnRevoke(step.fence).on_partitions_revoked([TopicPartition(SOURCE, 0)])
    handler.release.set()
    await handling

    # The partition's new owner reads offset 5 again from the last commit: committing here would end it twice.
    assert publisher.publications == []
    assert committed.echoed == []
    assert handler.attempts == {"ok:late": 1}


async def test_revocation_waits_for_a_commit_already_under_way_and_later_batches_commit_again() -> None:
    publisher = HeldPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    handling = asyncio.create_task(step(batch_of(record(0, 5, said("ok:first")))))
    await publisher.committing.wait()

    revoking = asyncio.create_task(FenceOnRevoke(step.fence).on_partitions_revoked([TopicPartition(SOURCE, 0)]))
    await asyncio.sleep(0.01)
    assert not revoking.done()  # the rebalance goes on only after this member's last commit
    publisher.release.set()
    await asyncio.gather(handling, revoking)
    assert echoes(publisher) == ["FIRST"]

    # Records fetched under the new assignment commit as usual.
    await step(batch_of(record(0, 6, said("ok:second"))))
    assert echoes(publisher, 1) == ["SECOND"]


async def test_a_record_stops_being_retried_once_its_partition_is_revoked() -> None:
    publisher, handler = RecordingPublisher(), ScriptedHandler()

    class RevokingSleep(RecordedSleep):
        async def __call__(self, seconds: float) -> None:
            await super().__call__(seconds)
            await step.fence.revoke()  # a rebalance during the backoff

    step = make_step(handler, publisher, RevokingSleep(), max_attempts=8)
    await step(batch_of(record(0, 1, said("flaky:100"))))

    assert handler.attempts == {"flaky:100": 2}  # the attempt under way ends, and no more follow
    assert publisher.publications == []


async def test_an_empty_revocation_at_the_first_assignment_changes_nothing() -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    epoch = step.fence.epoch
    await FenceOnRevoke(step.fence).on_partitions_revoked([])
    assert step.fence.epoch == epoch
    await step(batch_of(record(0, 1, said("ok:a"))))
    assert echoes(publisher) == ["A"]
