"""Hostile records on every consumed topic: each is dead-lettered exactly once, and nothing wedges.

Over 10,000 records the services' own validators refuse (generated up front by ``hostile_records``) go to
``parley.requests`` (ingest), ``parley.jobs`` (job-watcher) and ``parley.completions`` (insight-fetcher) of a
pipeline running as processes against the provider double. Then a valid record follows on every partition of
every topic. The test asserts that each hostile record appears on the dead-letter topic exactly once, with a
reason, its source topic/partition/offset and its original key and bytes; that the valid records are still
handled (no partition stuck behind garbage); and that no service died.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from parley_shared.events import JobCompleted, JobSubmitted, MediaKind, ProcessRequested
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.provider import JobStatus, ProviderClient
from parley_shared.settings import ProviderSettings

from tests.support.hostile_records import (
    COMPLETIONS,
    JOBS,
    REQUESTS,
    ConsumedTopic,
    HostileRecord,
    hostile_records,
    huge_records,
)
from tests.support.pipeline_stack import Pipeline, running_pipeline

pytestmark = pytest.mark.kafka

RECORDS_PER_TOPIC = 3_400  # 10,200 in all
PARTITIONS = 3  # running_pipeline creates its topics with 3 partitions
SERVICES = ("ingest", "job-watcher", "insight-fetcher")
Source = tuple[str, int, int]  # topic, partition, offset


@dataclass(frozen=True)
class SentRecord:
    key: bytes | None
    value: bytes


@pytest.fixture
def pipeline(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Pipeline]:
    with running_pipeline(kafka_bootstrap, tmp_path / "logs") as running:
        yield running


def topic_name(pipeline: Pipeline, topic: ConsumedTopic) -> str:
    return str(getattr(pipeline.topics, topic.name))


async def produce(pipeline: Pipeline, batches: Mapping[str, Sequence[HostileRecord]]) -> dict[Source, SentRecord]:
    """Send every record, batched; return what was sent by where it landed."""
    producer = AIOKafkaProducer(**aiokafka_options(pipeline.kafka), linger_ms=20, max_request_size=2 << 20)
    await producer.start()
    try:
        sends = [
            (topic, record, await producer.send(topic, record.value, key=record.key))
            for topic, records in batches.items()
            for record in records
        ]
        sent: dict[Source, SentRecord] = {}
        for topic, record, delivery in sends:
            metadata = await delivery
            sent[(topic, metadata.partition, metadata.offset)] = SentRecord(record.key, record.value)
        return sent
    finally:
        await producer.stop()


def direct_job(purpose: str) -> dict[str, Any]:
    return {"messages": [{"payload": {"content": f"A job made at the provider directly, {purpose}."}}]}


async def completed_at_provider(provider: ProviderClient, job_id: str) -> None:
    """The fetcher may read a conversation only once its job completed, as job-watcher would have seen it."""
    deadline = time.monotonic() + 20
    while (await provider.get_job(job_id)).status is not JobStatus.COMPLETED:
        assert time.monotonic() < deadline, f"job {job_id} did not complete at the provider"
        await asyncio.sleep(0.2)


async def publish_valid_followers(pipeline: Pipeline) -> tuple[set[str], set[str]]:
    """A valid record on every partition of every consumed topic, after the garbage.

    Returns the requestIds that must end in InsightsReady and the jobIds that must end in JobCompleted.
    """
    expect_insights: set[str] = set()
    expect_outcomes: set[str] = set()
    producer = AIOKafkaProducer(**aiokafka_options(pipeline.kafka))
    provider = ProviderClient(ProviderSettings(url=pipeline.double))
    await producer.start()
    try:
        for partition in range(PARTITIONS):
            command = ProcessRequested(
                request_id=f"fuzz-after-{partition}-{uuid.uuid4().hex[:8]}",
                kind=MediaKind.TEXT,
                messages=[{"payload": {"content": f"A valid request after the garbage, partition {partition}."}}],
            )
            await producer.send_and_wait(pipeline.topics.requests, command.to_wire(), partition=partition)
            expect_insights.add(command.request_id)

        # Jobs made at the provider directly, announced on chosen partitions of the jobs and completions topics.
        for partition in range(PARTITIONS):
            accepted = await provider.submit_text(direct_job("for the watcher"))
            submitted = JobSubmitted(
                request_id=f"fuzz-job-{partition}-{uuid.uuid4().hex[:8]}",
                conversation_id=accepted.conversation_id,
                job_id=accepted.job_id,
                kind=MediaKind.TEXT,
            )
            await producer.send_and_wait(pipeline.topics.jobs, submitted.to_wire(), partition=partition)
            expect_outcomes.add(accepted.job_id)
        for partition in range(PARTITIONS):
            accepted = await provider.submit_text(direct_job("for the fetcher"))
            await completed_at_provider(provider, accepted.job_id)
            completed = JobCompleted(
                request_id=f"fuzz-completion-{partition}-{uuid.uuid4().hex[:8]}",
                conversation_id=accepted.conversation_id,
                job_id=accepted.job_id,
                submitted_at=datetime.now(UTC),
                detected_by="poll",
            )
            await producer.send_and_wait(pipeline.topics.completions, completed.to_wire(), partition=partition)
            expect_insights.add(completed.request_id)
    finally:
        await producer.stop()
        await provider.aclose()
    return expect_insights, expect_outcomes


@dataclass
class Observed:
    letters: list[dict[str, Any]]
    insights_for: set[str]
    outcomes_for: set[str]


async def observe(
    pipeline: Pipeline,
    sent: dict[Source, SentRecord],
    expect_insights: set[str],
    expect_outcomes: set[str],
    *,
    wait_seconds: float,
    settle_seconds: float = 3.0,
) -> Observed:
    """Read dead letters, completions and insights until everything expected is seen (then a little longer)."""
    topics = pipeline.topics
    consumer = AIOKafkaConsumer(
        topics.dead_letters,
        topics.completions,
        topics.insights,
        **aiokafka_options(pipeline.kafka),
        group_id=None,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 << 20,
        fetch_max_bytes=64 << 20,
    )
    observed = Observed([], set(), set())

    def done() -> bool:
        letters = {(e.get("sourceTopic"), e.get("sourcePartition"), e.get("sourceOffset")) for e in observed.letters}
        return (
            set(sent) <= letters
            and expect_insights <= observed.insights_for
            and expect_outcomes <= observed.outcomes_for
        )

    async def read(until_done: bool) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=200)
            for records in batches.values():
                for record in records:
                    try:
                        event = json.loads(record.value or b"")
                    except (ValueError, RecursionError):
                        continue  # the hostile records themselves sit on the completions topic
                    if not isinstance(event, dict):
                        continue
                    if record.topic == topics.dead_letters:
                        observed.letters.append(event)
                    elif event.get("eventType") == "InsightsReady":
                        observed.insights_for.add(str(event.get("requestId")))
                    elif event.get("eventType") in ("JobCompleted", "JobFailed"):
                        observed.outcomes_for.add(str(event.get("jobId")))
            if until_done and done():
                return

    await consumer.start()
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(True), wait_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(False), settle_seconds)
    finally:
        await consumer.stop()
    return observed


def dead_letter_problems(sent: dict[Source, SentRecord], letters: list[dict[str, Any]]) -> list[str]:
    """Every way the dead letters differ from 'each sent record exactly once, faithfully'."""
    problems: list[str] = []
    by_source = Counter((e.get("sourceTopic"), e.get("sourcePartition"), e.get("sourceOffset")) for e in letters)
    for source, record in sent.items():
        count = by_source[source]
        if count != 1:
            problems.append(f"{source}: {count} dead letters for {record.value[:120]!r} (key {record.key!r})")
    for letter in letters:
        source = (
            str(letter.get("sourceTopic")),
            int(letter.get("sourcePartition", -1)),
            int(letter.get("sourceOffset", -1)),
        )
        found = sent.get(source)
        if found is None:
            continue  # a letter for a record this test did not send (none are expected; counted above)
        record = found
        if not letter.get("reason"):
            problems.append(f"{source}: empty reason")
        if base64.b64decode(letter.get("originalValue", "")) != record.value:
            problems.append(f"{source}: originalValue differs from the bytes sent")
        sent_key = base64.b64encode(record.key).decode() if record.key is not None else None
        if letter.get("originalKey") != sent_key:
            problems.append(f"{source}: originalKey {letter.get('originalKey')!r}, sent {sent_key!r}")
    return problems


def dead_services(pipeline: Pipeline) -> dict[str, str]:
    return {
        name: pipeline.stack.processes[name].log_tail()
        for name in SERVICES
        if pipeline.stack.processes[name].process.poll() is not None
    }


async def run_fuzz(pipeline: Pipeline, batches: Mapping[str, Sequence[HostileRecord]], *, wait_seconds: float) -> None:
    started = time.monotonic()
    sent = await produce(pipeline, batches)
    expect_insights, expect_outcomes = await publish_valid_followers(pipeline)
    observed = await observe(
        pipeline, sent, expect_insights, expect_outcomes, wait_seconds=wait_seconds - (time.monotonic() - started)
    )

    # One report of everything wrong, so a failure shows whether garbage was lost, services died or partitions stuck.
    failures: list[str] = []
    for name, log_tail in dead_services(pipeline).items():
        failures.append(f"{name} died:\n{log_tail}")
    problems = dead_letter_problems(sent, observed.letters)
    if problems:
        by_topic = Counter(problem.split("'")[1] for problem in problems)
        failures.append(
            f"{len(problems)} dead-letter problems with {len(sent)} hostile records ({dict(by_topic)}), e.g.:\n"
            + "\n".join(problems[:20])
        )
    stuck_requests = expect_insights - observed.insights_for
    if stuck_requests:
        failures.append(f"valid records after the garbage never yielded InsightsReady: {sorted(stuck_requests)}")
    stuck_jobs = expect_outcomes - observed.outcomes_for
    if stuck_jobs:
        failures.append(f"valid JobSubmitted after the garbage never got an outcome: {sorted(stuck_jobs)}")
    assert not failures, "\n\n".join(failures)


async def test_ten_thousand_hostile_records_are_dead_lettered_and_nothing_wedges(pipeline: Pipeline) -> None:
    batches = {
        topic_name(pipeline, topic): hostile_records(topic, RECORDS_PER_TOPIC, random_seed=seed)
        for seed, topic in enumerate((REQUESTS, JOBS, COMPLETIONS))
    }
    assert sum(len(records) for records in batches.values()) >= 10_000
    await run_fuzz(pipeline, batches, wait_seconds=120)


async def test_records_near_the_size_limit_are_dead_lettered_and_nothing_wedges(pipeline: Pipeline) -> None:
    batches = {topic_name(pipeline, topic): huge_records(topic) for topic in (REQUESTS, JOBS, COMPLETIONS)}
    await run_fuzz(pipeline, batches, wait_seconds=60)
