"""Reading a topic's recent history (from a point in time up to its current end), to rebuild state at start-up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from parley_shared.kafka.connection import aiokafka_options
from parley_shared.kafka.topics import topic_partitions
from parley_shared.settings import KafkaSettings


async def read_since(settings: KafkaSettings, topic: str, since: datetime) -> AsyncIterator[Any]:
    """Yield every committed record of ``topic`` written at or after ``since``, up to the end seen at the start."""
    assigned = [TopicPartition(topic, p) for p in (await topic_partitions(settings, [topic]))[topic]]
    if not assigned:
        return
    consumer = AIOKafkaConsumer(
        **aiokafka_options(settings),
        group_id=None,
        enable_auto_commit=False,
        isolation_level="read_committed",
        max_partition_fetch_bytes=4 << 20,
    )
    await consumer.start()
    try:
        consumer.assign(assigned)
        end_offsets = await consumer.end_offsets(assigned)
        starts = await consumer.offsets_for_times({tp: int(since.timestamp() * 1000) for tp in assigned})
        remaining = {}
        for tp in assigned:
            start = starts.get(tp)
            if start is None or start.offset >= end_offsets[tp]:
                continue
            consumer.seek(tp, start.offset)
            remaining[tp] = end_offsets[tp]
        while remaining:
            batches = await consumer.getmany(*remaining, timeout_ms=1000, max_records=5000)
            for tp, records in batches.items():
                for record in records:
                    if record.offset < remaining.get(tp, 0):
                        yield record
            for tp in list(remaining):
                # With transactions the last offsets may be control markers, never returned: use the position.
                if await consumer.position(tp) >= remaining[tp]:
                    del remaining[tp]
    finally:
        await consumer.stop()
