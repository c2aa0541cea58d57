"""aiokafka 0.14 against the real local Kafka 4.x broker: the client features Parley's services rely on.

Kafka 4 dropped old protocol versions (KIP-896) and aiokafka's own CI stops at Kafka 2.8, so these prove on
our broker that produce/consume, consumer groups, manual commits and transactions work end to end.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

pytestmark = pytest.mark.kafka

TEST_TIMEOUT_SECONDS = 60


def unique_name(purpose: str) -> str:
    return f"test-{purpose}-{uuid.uuid4().hex[:10]}"


async def create_topic(bootstrap: str, partitions: int = 1) -> str:
    name = unique_name("topic")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    finally:
        await admin.close()
    return name


@asynccontextmanager
async def running_producer(bootstrap: str, **config: object) -> AsyncIterator[AIOKafkaProducer]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, **config)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def running_consumer(bootstrap: str, *topics: str, **config: object) -> AsyncIterator[AIOKafkaConsumer]:
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=bootstrap, auto_offset_reset="earliest", **config)
    await consumer.start()
    try:
        yield consumer
    finally:
        await consumer.stop()


async def read_records(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    """The next ``count`` records in fetch order (fails by timeout if fewer arrive)."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(20):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    return records


async def read_whole_partition(
    bootstrap: str, topic: str, count: int, isolation_level: str
) -> list[ConsumerRecord[bytes, bytes]]:
    """All of partition 0 as a group-less consumer with the given isolation sees it: ``count`` records, then none."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        isolation_level=isolation_level,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, 0)])
        records = await read_records(consumer, count)
        more = await consumer.getmany(timeout_ms=1000)
        records.extend(record for batch in more.values() for record in batch)
        return records
    finally:
        await consumer.stop()


async def test_round_trip_keeps_key_value_and_headers(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap)
    headers = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"), ("kind", b"test")]

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        async with running_producer(kafka_bootstrap) as producer:
            sent = await producer.send_and_wait(topic, b'{"n": 1}', key=b"conversation-1", headers=headers)
        async with running_consumer(kafka_bootstrap, topic, group_id=unique_name("group")) as consumer:
            [record] = await read_records(consumer, 1)

    assert record.key == b"conversation-1"
    assert record.value == b'{"n": 1}'
    assert list(record.headers) == headers
    assert (record.partition, record.offset) == (sent.partition, sent.offset)


async def test_two_group_members_share_a_two_partition_topic(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap, partitions=2)
    group = unique_name("group")
    all_partitions = {TopicPartition(topic, 0), TopicPartition(topic, 1)}

    async with (
        asyncio.timeout(TEST_TIMEOUT_SECONDS),
        running_consumer(kafka_bootstrap, topic, group_id=group) as first,
        running_consumer(kafka_bootstrap, topic, group_id=group) as second,
    ):
        # Polling drives the group protocol; the second join triggers a rebalance that splits the partitions.
        while not (
            first.assignment()
            and second.assignment()
            and first.assignment() | second.assignment() == all_partitions
            and not first.assignment() & second.assignment()
        ):
            await asyncio.gather(first.getmany(timeout_ms=100), second.getmany(timeout_ms=100))

        async with running_producer(kafka_bootstrap) as producer:
            for partition in (0, 1):
                for n in range(2):
                    await producer.send_and_wait(topic, f"p{partition}-{n}".encode(), partition=partition)
        first_records, second_records = await asyncio.gather(read_records(first, 2), read_records(second, 2))

    assert first.assignment() != second.assignment()
    assert {TopicPartition(topic, r.partition) for r in first_records} == first.assignment()
    assert {TopicPartition(topic, r.partition) for r in second_records} == second.assignment()


async def test_new_member_resumes_after_the_manually_committed_offset(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap)
    group = unique_name("group")
    partition = TopicPartition(topic, 0)

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        async with running_producer(kafka_bootstrap) as producer:
            for n in range(5):
                await producer.send_and_wait(topic, f"record-{n}".encode())
        async with running_consumer(kafka_bootstrap, topic, group_id=group, enable_auto_commit=False) as first:
            handled = await read_records(first, 3)
            await first.commit({partition: handled[-1].offset + 1})
        async with running_consumer(kafka_bootstrap, topic, group_id=group, enable_auto_commit=False) as second:
            [resumed] = await read_records(second, 1)
            committed = await second.committed(partition)

    assert [r.value for r in handled] == [b"record-0", b"record-1", b"record-2"]
    assert committed == 3
    assert (resumed.offset, resumed.value) == (3, b"record-3")


async def test_read_committed_consumer_sees_only_committed_transactions(kafka_bootstrap: str) -> None:
    topic = await create_topic(kafka_bootstrap)

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        async with running_producer(kafka_bootstrap, transactional_id=unique_name("txn")) as producer:
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-1")
                await producer.send_and_wait(topic, b"committed-2")
            await producer.begin_transaction()
            await producer.send_and_wait(topic, b"aborted")
            await producer.abort_transaction()
            async with producer.transaction():
                await producer.send_and_wait(topic, b"committed-3")

        committed = await read_whole_partition(kafka_bootstrap, topic, 3, "read_committed")
        uncommitted = await read_whole_partition(kafka_bootstrap, topic, 4, "read_uncommitted")

    assert [r.value for r in committed] == [b"committed-1", b"committed-2", b"committed-3"]
    # The aborted record did reach the log: only the isolation level hides it.
    assert [r.value for r in uncommitted] == [b"committed-1", b"committed-2", b"aborted", b"committed-3"]


async def test_consume_produce_commits_offsets_with_the_transaction(kafka_bootstrap: str) -> None:
    source = await create_topic(kafka_bootstrap)
    sink = await create_topic(kafka_bootstrap)
    group = unique_name("group")
    source_partition = TopicPartition(source, 0)

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        async with running_producer(kafka_bootstrap) as upstream:
            for n in range(3):
                await upstream.send_and_wait(source, f"job-{n}".encode())

        async with (
            running_consumer(
                kafka_bootstrap, source, group_id=group, enable_auto_commit=False, isolation_level="read_committed"
            ) as consumer,
            running_producer(kafka_bootstrap, transactional_id=unique_name("txn")) as producer,
        ):
            records = await read_records(consumer, 3)
            # One step commits outputs for the first two inputs together with their offsets ...
            async with producer.transaction():
                for record in records[:2]:
                    await producer.send_and_wait(sink, record.value.upper())
                await producer.send_offsets_to_transaction({source_partition: records[1].offset + 1}, group)
            # ... the next aborts, taking its output and its offset with it.
            await producer.begin_transaction()
            await producer.send_and_wait(sink, records[2].value.upper())
            await producer.send_offsets_to_transaction({source_partition: records[2].offset + 1}, group)
            await producer.abort_transaction()
            committed_offset = await consumer.committed(source_partition)

        outputs = await read_whole_partition(kafka_bootstrap, sink, 2, "read_committed")
        async with running_consumer(kafka_bootstrap, source, group_id=group, enable_auto_commit=False) as restarted:
            [redelivered] = await read_records(restarted, 1)

    assert committed_offset == 2
    assert [r.value for r in outputs] == [b"JOB-0", b"JOB-1"]
    assert (redelivered.offset, redelivered.value) == (2, b"job-2")
