"""A rebalance that moves partitions while a replica is still handling their records ends each record once.

aiokafka commits consumed offsets inside the transaction without the consumer group's generation, so the broker
accepts a commit from a replica that has just lost the partition. Here insight-fetcher A is still reading the
provider for twelve completions when replica B joins the group and takes some of A's partitions; B reads those
completions again from the last committed offset. Every completion must still give exactly one InsightsReady:
A's batch, begun under the old assignment, must not commit (``AssignmentFence``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from parley_insight_fetcher.app import create_app as create_fetcher
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_shared.events import JobCompleted
from parley_shared.kafka.topics import ensure_topics
from parley_shared.provider import ProviderClient
from parley_shared.settings import ProviderSettings, TopicNames

pytestmark = pytest.mark.kafka

COMPLETIONS = 12
# After the last InsightsReady, how long a late duplicate has to show up.
SETTLE_SECONDS = 6.0


class HeldProvider:
    """A provider whose Conversation API answers only once ``release`` is set; it remembers who asked what."""

    def __init__(self, release: asyncio.Event) -> None:
        self.release = release
        self.reads: list[str] = []
        self.first_read = asyncio.Event()

    async def handler(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token:generate":
            return httpx.Response(200, json={"accessToken": "fence-test", "expiresIn": 3600})
        self.reads.append(request.url.path)
        self.first_read.set()
        await self.release.wait()
        segment = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={segment: []})

    def client(self) -> ProviderClient:
        return ProviderClient(ProviderSettings(url="http://symbl.test"), transport=httpx.MockTransport(self.handler))


def completion(index: int) -> JobCompleted:
    return JobCompleted(
        request_id=f"fence-{index}",
        conversation_id=f"conversation-{index}",
        job_id=f"job-{index}",
        submitted_at=datetime.now(UTC),
        detected_by="webhook",
    )


async def insights_by_job(bootstrap: str, topic: str, *, expected: int, within: float) -> Counter[str]:
    """Every committed InsightsReady's jobId, read until ``expected`` arrived and then ``SETTLE_SECONDS`` more."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    seen: Counter[str] = Counter()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    try:
        while loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    seen[json.loads(record.value)["jobId"]] += 1
            if sum(seen.values()) >= expected:
                deadline = min(deadline, loop.time() + SETTLE_SECONDS)
    finally:
        await consumer.stop()
    return seen


async def test_records_moved_by_a_rebalance_mid_handling_end_once(kafka_bootstrap: str) -> None:
    topics = TopicNames.prefixed(f"fence-{uuid.uuid4().hex[:8]}")
    group = f"fence-{uuid.uuid4().hex[:8]}"

    def settings(instance: str) -> InsightFetcherSettings:
        return InsightFetcherSettings(
            kafka_bootstrap_servers=kafka_bootstrap, topics=topics, group_id=group, instance_id=instance
        )

    release = asyncio.Event()
    provider_a, provider_b = HeldProvider(release), HeldProvider(release)
    app_a = create_fetcher(settings("fence-a"), provider=provider_a.client())
    app_b = create_fetcher(settings("fence-b"), provider=provider_b.client())
    await ensure_topics(settings("fence-a").kafka, topics)

    async with contextlib.AsyncExitStack() as running:
        await running.enter_async_context(app_a.router.lifespan_context(app_a))
        producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
        await producer.start()
        try:
            for index in range(COMPLETIONS):
                event = completion(index)
                await producer.send_and_wait(topics.completions, event.to_wire(), key=event.conversation_id.encode())
        finally:
            await producer.stop()
        await asyncio.wait_for(provider_a.first_read.wait(), 30)  # A holds the completions, mid-handling

        await running.enter_async_context(app_b.router.lifespan_context(app_b))
        # B reads a completion only once the rebalance has given it some of A's partitions.
        await asyncio.wait_for(provider_b.first_read.wait(), 60)
        release.set()

        seen = await insights_by_job(kafka_bootstrap, topics.insights, expected=COMPLETIONS, within=60)

    assert sorted(seen) == sorted(f"job-{index}" for index in range(COMPLETIONS))
    assert {job: count for job, count in seen.items() if count > 1} == {}, "a completion ended twice"
