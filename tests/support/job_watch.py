"""A JobWatch over fakes: a provider answering job statuses by virtual time, and a recording publisher."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from parley_job_watcher.metrics import outcome_committed
from parley_job_watcher.scheduler import PollPolicy, PollScheduler
from parley_job_watcher.watch import JobWatch
from parley_shared.events import (
    CompletionEvent,
    DeadLetter,
    JobCompleted,
    JobFailed,
    JobResolved,
    JobStatusReported,
    JobSubmitted,
    MediaKind,
    completion_adapter,
)
from parley_shared.kafka.dead_letters import dead_letter_stream
from parley_shared.kafka.hops import Outputs, Stream
from parley_shared.provider import JobNotFound, JobState, JobStatus, ProviderUnavailable
from parley_shared.provider.ports import JobApi
from parley_shared.settings import TopicNames

from tests.support.kafka_fakes import RecordingPublisher
from tests.support.provider_fakes import ProviderLifetime
from tests.support.virtual_time import VirtualClock

TOPICS = TopicNames()
GROUP = "parley-job-watcher-test"


@dataclass
class ProviderJob:
    finishes_at: float = math.inf
    final: JobStatus = JobStatus.COMPLETED
    reason: str | None = None


@dataclass
class FakeJobApi(ProviderLifetime, JobApi):
    """Answers ``get_job`` from a table of jobs by the (virtual) time of the call, and records every call."""

    clock: VirtualClock
    jobs: dict[str, ProviderJob] = field(default_factory=dict)
    latency: float = 0.0
    unavailable_until: float = -math.inf
    calls: list[tuple[str, float]] = field(default_factory=list)

    async def get_job(self, job_id: str) -> JobState:
        self.calls.append((job_id, self.clock.now))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.clock.now < self.unavailable_until:
            raise ProviderUnavailable("GET /v1/job: 503", status=503, attempts=6)
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFound(job_id)
        if self.clock.now >= job.finishes_at:
            return JobState(id=job_id, status=job.final, reason=job.reason)
        return JobState(id=job_id, status=JobStatus.IN_PROGRESS)

    def calls_for(self, job_id: str) -> list[float]:
        return [at for called, at in self.calls if called == job_id]


class FixedDraw(random.Random):
    """A random source whose ``uniform`` always lands at the same fraction of its range."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def watch_outputs() -> Outputs:
    """job-watcher's output streams, as its composition root declares them (outcomes counted once committed)."""
    return Outputs(
        (
            Stream[JobCompleted | JobFailed](
                TOPICS.completions, CompletionEvent, "outcomes", on_committed=outcome_committed
            ),
            Stream[JobResolved](TOPICS.jobs, JobResolved, "markers"),
            dead_letter_stream(TOPICS.dead_letters, "unreadable jobs-topic records"),
        )
    )


def make_watch(
    clock: VirtualClock,
    provider: FakeJobApi,
    publisher: RecordingPublisher,
    *,
    policy: PollPolicy | None = None,
    rng: random.Random | None = None,
) -> JobWatch:
    return JobWatch(
        provider=provider,
        publisher=publisher,
        outputs=watch_outputs(),
        jobs_topic=TOPICS.jobs,
        group_id=GROUP,
        scheduler=PollScheduler(policy=policy or PollPolicy(), rng=rng or random.Random(3)),
        clock=lambda: clock.now,
    )


def submitted(job_id: str, at: float) -> JobSubmitted:
    return JobSubmitted(
        request_id=f"req-{job_id}",
        conversation_id=f"conv-{job_id}",
        job_id=job_id,
        kind=MediaKind.TEXT,
        submitted_at=datetime.fromtimestamp(at, UTC),
    )


def resolved(job_id: str) -> JobResolved:
    return JobResolved(request_id=f"req-{job_id}", conversation_id=f"conv-{job_id}", job_id=job_id, outcome="completed")


def reported(job_id: str, status: JobStatus, *, partition: int | None = None) -> JobStatusReported:
    """A callback forwarded through the jobs topic by the replica that received it."""
    conversation = None if partition is not None else f"conv-{job_id}"
    return JobStatusReported(
        request_id=job_id, job_id=job_id, conversation_id=conversation, status=status.value, partition=partition
    )


class ForwardedCallbacks:
    """A webhook router's ``forward``: records what it was asked to write, or fails while ``failing``."""

    def __init__(self) -> None:
        self.reports: list[JobStatusReported] = []
        self.failing = False

    async def __call__(self, reports: Sequence[JobStatusReported]) -> None:
        if self.failing:
            raise KafkaConnectionError()
        self.reports.extend(reports)


@contextlib.asynccontextmanager
async def polling(watch: JobWatch) -> AsyncIterator[None]:
    task = asyncio.create_task(watch.run_polling())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def outcomes(publisher: RecordingPublisher) -> list[JobCompleted | JobFailed]:
    return [completion_adapter.validate_json(r.value) for r in publisher.records if r.topic == TOPICS.completions]


def markers(publisher: RecordingPublisher) -> list[JobResolved]:
    return [JobResolved.model_validate_json(r.value) for r in publisher.records if r.topic == TOPICS.jobs]


def dead_letters(publisher: RecordingPublisher) -> list[DeadLetter]:
    return [DeadLetter.model_validate_json(r.value) for r in publisher.records if r.topic == TOPICS.dead_letters]


def last_committed(publisher: RecordingPublisher, partition: int = 0) -> int | None:
    tp = TopicPartition(TOPICS.jobs, partition)
    committed = [p.consumed[tp] for p in publisher.publications if tp in p.consumed]
    return committed[-1] if committed else None


def only_outcome(publisher: RecordingPublisher) -> JobCompleted | JobFailed:
    found = outcomes(publisher)
    assert len(found) == 1, found
    assert [m.job_id for m in markers(publisher)] == [found[0].job_id]
    return found[0]
