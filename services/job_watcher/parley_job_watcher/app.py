"""job-watcher: the composition root. Its hops, declared below, are everything it reads and writes.

It polls ``GET /v1/job/{jobId}`` for every pending job from one timer heap (backoff, jitter, a deadline) and takes
provider webhooks as hints; a webhook about a job another replica watches is passed to it through the jobs topic.
Offsets on the jobs topic are committed only up to the oldest pending job, inside the transactions that publish
outcomes, so pending jobs survive restarts and rebalances: they are rebuilt by re-reading the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Collection
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from fastapi import FastAPI
from parley_shared.events import CompletionEvent, JobResolved, JobStatusReported, JobsTopicEvent
from parley_shared.kafka.hops import Feed, HttpInput, Outputs, Stream
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.provider import ProviderClient
from parley_shared.provider.metrics import provider_error_counter
from parley_shared.provider.ports import JobApi
from parley_shared.service import PipelineService

from parley_job_watcher.metrics import PENDING_JOBS, SERVICE, outcome_committed
from parley_job_watcher.scheduler import PollPolicy, PollScheduler
from parley_job_watcher.settings import JobWatcherSettings
from parley_job_watcher.watch import JobWatch
from parley_job_watcher.webhooks import webhook_router

logger = logging.getLogger("parley.job_watcher")


class JobsPartitionListener(ConsumerRebalanceListener):
    """Hands partitions of the jobs topic to and from the watch, settling what can be settled first."""

    def __init__(self, watch: JobWatch, consumer: Callable[[], Any]) -> None:
        self._watch = watch
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._watch.hand_over([tp.partition for tp in revoked])

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        consumer = self._consumer()
        if not assigned or consumer is None:
            return
        ends = await consumer.end_offsets(list(assigned))
        for tp in assigned:
            committed = await consumer.committed(tp)
            self._watch.assign(tp.partition, committed or 0, ends[tp])
        logger.info("watching jobs of partitions %s", sorted(tp.partition for tp in assigned))


def create_app(
    settings: JobWatcherSettings | None = None,
    *,
    publisher: AtomicPublisher | None = None,
    provider: JobApi | None = None,
    jobs_partitions: Callable[[], Collection[int]] | None = None,
) -> FastAPI:
    """Build the service. ``publisher`` replaces the transactional producer and ``jobs_partitions`` the consumer's
    knowledge of the jobs topic's partitions in in-memory broker tests."""
    settings = settings or JobWatcherSettings()
    topics = settings.topics
    service = PipelineService(
        SERVICE, settings, group_id=settings.group_id, instance_id=settings.instance_id, publisher=publisher
    )
    provider = provider or ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
    policy = PollPolicy(
        initial_seconds=settings.poll_initial_seconds,
        factor=settings.poll_factor,
        max_interval_seconds=settings.poll_max_interval_seconds,
        jitter=settings.poll_jitter,
        webhook_fallback_interval_seconds=settings.webhook_fallback_interval_seconds,
        deadline_seconds=settings.job_deadline_seconds,
    )
    outcomes = Stream(
        topics.completions,
        CompletionEvent,
        "exactly one JobCompleted or JobFailed per jobId, keyed by conversationId",
        on_committed=outcome_committed,
    )
    # job-watcher's bookkeeping goes back into its own input: a replayed marker says the job is settled.
    resolved_markers = Stream[JobResolved](
        topics.jobs, JobResolved, "JobResolved: the job's outcome is published (written in the same transaction)"
    )
    dead_letters = service.dead_letters("jobs-topic records that cannot be read")
    produces = (outcomes, resolved_markers, dead_letters)
    watch = JobWatch(
        provider=provider,
        publisher=service.publisher,
        outputs=Outputs(produces),
        jobs_topic=topics.jobs,
        group_id=settings.group_id,
        scheduler=PollScheduler(policy=policy),
        max_concurrent_polls=settings.max_concurrent_polls,
        settled_jobs_remembered=settings.settled_jobs_remembered,
    )

    service.feed(
        Feed(
            "watch jobs",
            consumes=Stream(
                topics.jobs,
                JobsTopicEvent,
                "JobSubmitted: watch the job until it ends; JobResolved: this job is settled already; "
                "JobStatusReported: a callback about the job, received by another replica",
            ),
            produces=produces,
            owner=watch,
            commits="with each batch of outcomes, up to the oldest job still pending",
            listener=JobsPartitionListener(watch, service.consumer),
        )
    )
    # A callback about a job another replica watches goes to that replica's partition of the jobs topic.
    forwarded_callbacks = Stream[JobStatusReported](
        topics.jobs,
        JobStatusReported,
        "JobStatusReported: a callback for the replica watching the job (keyed by conversation, or one per partition)",
        partition=lambda report: report.partition,
    )
    callbacks = service.http_input(
        HttpInput(
            "POST /webhooks/jobs",
            "provider job status callbacks: hints, each confirmed with GET /v1/job/{jobId} before the watch acts",
            produces=(forwarded_callbacks,),
        )
    )

    def partitions_known_to_the_consumer() -> Collection[int]:
        consumer = service.consumer()
        return (consumer.partitions_for_topic(topics.jobs) if consumer is not None else None) or ()

    async def follow_replay() -> None:
        """Transaction markers take offsets but are never delivered: read positions to see a replay end."""
        while True:
            consumer = service.consumer()
            if consumer is not None:
                for partition, progress in list(watch.partitions.items()):
                    if progress.replaying:
                        with contextlib.suppress(Exception):
                            position = await consumer.position(TopicPartition(topics.jobs, partition))
                            progress.seen(position - 1)
            await asyncio.sleep(0.1)

    PENDING_JOBS.labels(service=SERVICE).set_function(lambda: len(watch.scheduler))
    app = service.app(
        title="Parley job-watcher",
        routers=[
            webhook_router(
                watch,
                forward=callbacks.publish,
                jobs_partitions=jobs_partitions or partitions_known_to_the_consumer,
                secret=settings.webhook_secret,
                api_keys=settings.api_keys,
            )
        ],
        resources=[provider],
        loops=[watch.run_polling, watch.run_publishing, follow_replay],
        before_stop=watch.flush,
    )
    app.state.watch = watch
    return app
