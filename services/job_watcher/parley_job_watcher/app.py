"""job-watcher: the composition root.

Consumes  parley.jobs         JobSubmitted (jobs to watch) and JobResolved (its own markers, replayed on restart)
Serves    POST /webhooks/jobs  provider status callbacks, each confirmed with GET /v1/job/{jobId}
Polls     GET /v1/job/{jobId}  for every pending job, from one timer heap, with backoff, jitter and a deadline
Produces  parley.completions  exactly one JobCompleted or JobFailed per jobId, keyed by conversationId
          parley.jobs         JobResolved markers, in the same transaction as the outcome
          parley.dead-letters records on parley.jobs that cannot be read
Offsets on parley.jobs are committed only up to the oldest pending job, inside those transactions, so pending
jobs survive restarts and rebalances: they are rebuilt by re-reading the topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition
from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from parley_shared.events import (
    DeadLetter,
    JobCompleted,
    JobFailed,
    JobResolved,
    JobsTopicEvent,
    JobSubmitted,
    jobs_topic_adapter,
)
from parley_shared.health import ConsumerProgress, health_router
from parley_shared.http_errors import install_error_handlers
from parley_shared.kafka.connection import consumer_tuning, make_broker
from parley_shared.kafka.dead_letters import dead_letter_from_record
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.metrics import PENDING_JOBS, provider_error_counter, serve_metrics
from parley_shared.provider import ProviderClient
from parley_shared.service import configure_observability, running_service, transactional_publisher
from parley_shared.tracing import http_telemetry, record_trace_parent, trace_http_app
from parley_shared.validation import describe_validation_error
from pydantic import ValidationError

from parley_job_watcher.scheduler import PollPolicy, PollScheduler
from parley_job_watcher.settings import JobWatcherSettings
from parley_job_watcher.watch import JobWatch
from parley_job_watcher.webhooks import webhook_router

logger = logging.getLogger("parley.job_watcher")
SERVICE = "job-watcher"


class JobsPartitionListener(ConsumerRebalanceListener):
    """Hands partitions of the jobs topic to and from the watch, settling what can be settled first."""

    def __init__(self, watch: JobWatch, consumer: Callable[[], Any]) -> None:
        self._watch = watch
        self._consumer = consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        try:
            await self._watch.flush()
        except Exception as error:
            logger.warning("could not publish outcomes before losing partitions (%s)", error)
            self._watch.drop_unpublished()
        for tp in revoked:
            self._watch.revoke(tp.partition)

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
    provider: ProviderClient | None = None,
) -> FastAPI:
    settings = settings or JobWatcherSettings()
    configure_observability(SERVICE, log_level=settings.log_level, log_format=settings.log_format)
    topics = settings.topics
    broker = make_broker(
        settings.kafka,
        client_id=f"parley-job-watcher-{settings.instance_id}",
        graceful_timeout=settings.shutdown_grace_seconds,
    )
    provider = provider or ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
    transactional = publisher or transactional_publisher(settings, "job-watcher", settings.instance_id)
    policy = PollPolicy(
        initial_seconds=settings.poll_initial_seconds,
        factor=settings.poll_factor,
        max_interval_seconds=settings.poll_max_interval_seconds,
        jitter=settings.poll_jitter,
        webhook_fallback_interval_seconds=settings.webhook_fallback_interval_seconds,
        deadline_seconds=settings.job_deadline_seconds,
    )
    watch = JobWatch(
        provider=provider,
        publisher=lambda: transactional,
        topics=topics,
        group_id=settings.group_id,
        scheduler=PollScheduler(policy=policy),
        max_concurrent_polls=settings.max_concurrent_polls,
    )

    progress = ConsumerProgress(settings.consumer_stall_seconds)
    jobs_subscriber = broker.subscriber(
        topics.jobs,
        group_id=settings.group_id,
        batch=True,
        max_records=1000,
        ack_policy=AckPolicy.MANUAL,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **consumer_tuning(settings.kafka),
        listener=JobsPartitionListener(watch, lambda: jobs_consumer()),
        description="JobSubmitted: start watching the job; JobResolved: this job is already settled",
    )

    @jobs_subscriber
    async def on_jobs_topic(msg: KafkaMessage) -> None:
        progress.handled()
        raw = msg.raw_message
        for record in raw if isinstance(raw, (tuple, list)) else (raw,):
            try:
                event = jobs_topic_adapter.validate_json(record.value or b"")
            except ValidationError as error:
                watch.on_record_seen(record.partition, record.offset)
                watch.queue(
                    dead_letter_from_record(
                        record,
                        service=SERVICE,
                        topic=topics.dead_letters,
                        error=f"invalid jobs-topic event: {describe_validation_error(error)}",
                    )
                )
                continue
            if isinstance(event, JobSubmitted):
                watch.on_submitted(event, record.partition, record.offset, trace_parent=record_trace_parent(record))
            elif isinstance(event, JobResolved):
                watch.on_resolved(event, record.partition, record.offset)

    # Written by the transactional publisher; declared here so the AsyncAPI document shows them.
    broker.publisher(
        topics.completions,
        description="exactly one JobCompleted or JobFailed per jobId, keyed by conversationId",
        schema=JobCompleted | JobFailed,
    )
    broker.publisher(
        topics.jobs,
        description="JobResolved: job-watcher's marker that a job's outcome is published (same transaction)",
        schema=JobResolved,
    )
    broker.publisher(topics.dead_letters, description="jobs-topic records that cannot be read", schema=DeadLetter)

    def jobs_consumer() -> Any:
        # The subscriber's aiokafka consumer exists once the broker has started.
        return jobs_subscriber.consumer

    async def follow_replay() -> None:
        """Transaction markers take offsets but are never delivered: read positions to see a replay end."""
        while True:
            consumer = jobs_consumer()
            if consumer is not None:
                for partition, progress in list(watch.partitions.items()):
                    if progress.replaying:
                        with contextlib.suppress(Exception):
                            position = await consumer.position(TopicPartition(topics.jobs, partition))
                            progress.seen(position - 1)
            await asyncio.sleep(0.1)

    def lifespan(_: FastAPI) -> AbstractAsyncContextManager[None]:
        return running_service(
            settings,
            broker=broker,
            provider=provider,
            publisher=transactional,
            loops=[watch.run_polling, watch.run_publishing, follow_replay],
            before_stop=watch.flush,
        )

    app = FastAPI(title="Parley job-watcher", version="0.1.0", lifespan=lifespan, telemetry=http_telemetry())
    install_error_handlers(app)
    trace_http_app(app)
    app.include_router(webhook_router(watch, secret=settings.webhook_secret, api_keys=settings.api_keys))
    app.include_router(health_router(broker, SERVICE, progress=progress, consumer=jobs_consumer))
    serve_metrics(app, SERVICE, consumer=jobs_consumer)
    PENDING_JOBS.labels(service=SERVICE).set_function(lambda: len(watch.scheduler))
    app.state.watch = watch
    app.state.broker = broker
    # The events each subscriber reads, for the AsyncAPI document: handlers take raw records (to dead-letter
    # unreadable ones), so faststream cannot see them.
    app.state.consumed_events = {topics.jobs: JobsTopicEvent}
    return app
