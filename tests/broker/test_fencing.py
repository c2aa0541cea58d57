"""A pod that replaces a crashed one fences the crashed pod's open transaction: read_committed readers go on at once.

A process killed inside a Kafka transaction leaves it open, and every read_committed consumer of that partition
stops at its first record until the broker aborts it (the producer's transaction timeout, 60 s). A replacement that
starts with the same transactional id aborts it at once (the broker bumps the id's epoch on InitProducerId). Parley
names each service's transactional producer ``parley-<service>-<PARLEY_INSTANCE_ID>``, and the Helm chart runs the
pipeline as StatefulSets whose pod names (the instance ids) survive a replacement. Here a real insight-fetcher
process is that replacement, on the real broker.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from parley_shared.settings import TopicNames

from parley_cli.local_stack import LocalStack
from tests.support.pipeline_stack import free_port

pytestmark = pytest.mark.kafka

# A producer that opens a transaction, writes one record, says so, and waits to be killed.
CRASHING_PRODUCER = """
import asyncio, sys
from aiokafka import AIOKafkaProducer

async def main() -> None:
    bootstrap, transactional_id, topic = sys.argv[1:4]
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, transactional_id=transactional_id, transaction_timeout_ms=60_000
    )
    await producer.start()
    await producer.begin_transaction()
    await producer.send_and_wait(topic, b"written by a pod that then crashed")
    print("open", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""
# How long the replacement has to make the records visible; the transaction timeout is 60 s.
VISIBLE_WITHIN_SECONDS = 15.0
# A replacement with another id changes nothing for at least this long.
HELD_FOR_SECONDS = 6.0


def crash_inside_a_transaction(bootstrap: str, transactional_id: str, topic: str) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", CRASHING_PRODUCER, bootstrap, transactional_id, topic],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "open", "the crashing producer never opened its transaction"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(10)


async def commit_marker(bootstrap: str, topic: str) -> None:
    """A record committed after the crashed pod's open one: readable only once that transaction ends."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"test-marker-{uuid.uuid4().hex[:8]}")
    await producer.start()
    try:
        async with producer.transaction():
            await producer.send(topic, b"marker")
    finally:
        await producer.stop()


async def seconds_until_marker_is_read(bootstrap: str, topic: str, *, within: float) -> float | None:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    started = time.monotonic()
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        await consumer.seek_to_beginning(partition)
        while time.monotonic() - started < within:
            batches = await consumer.getmany(partition, timeout_ms=200)
            if any(record.value == b"marker" for records in batches.values() for record in records):
                return time.monotonic() - started
        return None
    finally:
        await consumer.stop()


def start_insight_fetcher(bootstrap: str, instance_id: str, log_dir: Path) -> LocalStack:
    stack = LocalStack(
        log_dir=log_dir,
        env={
            "PARLEY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
            **TopicNames.prefixed(f"fencing-{uuid.uuid4().hex[:8]}").as_env(),
            "PARLEY_INSTANCE_ID": instance_id,
        },
    )
    stack.start("insight-fetcher", port=free_port())
    return stack


async def test_a_replacement_with_the_same_instance_id_fences_the_crashed_transaction(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topic = f"fencing-{uuid.uuid4().hex[:8]}"
    instance = f"pod-{uuid.uuid4().hex[:6]}"
    # insight-fetcher's transactional id for that instance: the crashed pod was an insight-fetcher too.
    await asyncio.to_thread(crash_inside_a_transaction, kafka_bootstrap, f"parley-insight-fetcher-{instance}", topic)
    await commit_marker(kafka_bootstrap, topic)
    assert await seconds_until_marker_is_read(kafka_bootstrap, topic, within=2.0) is None, "held by the open one"

    stack = await asyncio.to_thread(start_insight_fetcher, kafka_bootstrap, instance, tmp_path / "same-id")
    try:
        waited = await seconds_until_marker_is_read(kafka_bootstrap, topic, within=VISIBLE_WITHIN_SECONDS)
    finally:
        await asyncio.to_thread(stack.stop_all)
    assert waited is not None, f"still held {VISIBLE_WITHIN_SECONDS:g} s after the replacement started"


async def test_a_replacement_with_a_new_instance_id_leaves_readers_held(kafka_bootstrap: str, tmp_path: Path) -> None:
    """The control: what a Deployment's replacement pod (a new name) does."""
    topic = f"fencing-{uuid.uuid4().hex[:8]}"
    crashed = f"pod-{uuid.uuid4().hex[:6]}"
    await asyncio.to_thread(crash_inside_a_transaction, kafka_bootstrap, f"parley-insight-fetcher-{crashed}", topic)
    await commit_marker(kafka_bootstrap, topic)

    stack = await asyncio.to_thread(start_insight_fetcher, kafka_bootstrap, f"{crashed}-new", tmp_path / "new-id")
    try:
        waited = await seconds_until_marker_is_read(kafka_bootstrap, topic, within=HELD_FOR_SECONDS)
    finally:
        await asyncio.to_thread(stack.stop_all)
    assert waited is None, "a replacement with another transactional id cannot end the crashed pod's transaction"
