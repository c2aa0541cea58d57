"""Dead letters go back to where they came from, byte for byte, once an operator replays them."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from parley_shared.kafka.dead_letters import dead_letter, dead_letter_stream
from parley_shared.settings import KafkaSettings

from parley_cli.dead_letters import REPLAY_HEADER, LetterFilter, replay

pytestmark = pytest.mark.kafka


async def test_replay_republishes_the_chosen_letters_to_their_source_topics(kafka_bootstrap: str) -> None:
    run = uuid.uuid4().hex[:8]
    letters_topic, source_topic = f"replay-{run}.dead-letters", f"replay-{run}.requests"
    settings = KafkaSettings(bootstrap_servers=kafka_bootstrap)
    letters = dead_letter_stream(letters_topic, "dead letters")
    broken = dead_letter(
        service="ingest",
        error="the provider refused the submission: bad vocabulary",
        value=b'{"requestId": "r-1", "kind": "text"}',
        key=b"r-1",
        source_topic=source_topic,
        source_partition=0,
        source_offset=41,
    )
    other = dead_letter(
        service="insight-fetcher",
        error="conversation gone",
        value=b"x",
        key=b"c-9",
        source_topic=f"replay-{run}.completions",
        source_partition=0,
        source_offset=7,
    )
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for record in (letters.record(broken), letters.record(other)):
            await producer.send_and_wait(record.topic, record.value, key=record.key)
    finally:
        await producer.stop()

    since = datetime.now(UTC) - timedelta(minutes=5)
    chosen = LetterFilter(since=since, service="ingest", reason_contains="VOCABULARY")
    planned = await replay(settings, letters_topic, chosen, dry_run=True)
    assert [letter.source_topic for letter in planned] == [source_topic]

    replayed = await replay(settings, letters_topic, chosen, dry_run=False)
    assert len(replayed) == 1

    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=None, auto_offset_reset="earliest")
    await consumer.start()
    try:
        consumer.assign([TopicPartition(source_topic, 0)])
        batches = await consumer.getmany(timeout_ms=10_000)
        records = [record for batch in batches.values() for record in batch]
    finally:
        await consumer.stop()
    assert [(r.key, r.value) for r in records] == [(b"r-1", b'{"requestId": "r-1", "kind": "text"}')]
    assert dict(records[0].headers)[REPLAY_HEADER] == replayed[0].event_id.encode()
