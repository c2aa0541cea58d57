"""insight-fetcher: the composition root.

Consumes  parley.completions   JobCompleted / JobFailed (read_committed, batches)
Calls     GET /v1/conversations/{id}/{messages,topics,questions,action-items,follow-ups,entities,analytics,
          summary,members}, concurrently within a bound, only after the job's JobCompleted
Produces  parley.insights      one InsightsReady per jobId, keyed by conversationId (in one transaction with
                               the consumed offsets, so a crash can neither lose nor duplicate it)
          parley.dead-letters  completions that cannot be handled (bad record, conversation gone)
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from parley_shared.events import CompletionEvent, DeadLetter, InsightsReady
from parley_shared.health import ConsumerProgress, health_router
from parley_shared.kafka.connection import consumer_tuning, make_broker
from parley_shared.kafka.consume import ConsumeProduceStep, StepPolicy
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.metrics import provider_error_counter, serve_metrics
from parley_shared.provider import ProviderClient
from parley_shared.service import configure_observability, running_service, transactional_publisher
from parley_shared.tracing import http_telemetry

from parley_insight_fetcher.fetching import handle_completion
from parley_insight_fetcher.settings import InsightFetcherSettings

SERVICE = "insight-fetcher"


def create_app(
    settings: InsightFetcherSettings | None = None,
    *,
    publisher: AtomicPublisher | None = None,
    provider: ProviderClient | None = None,
) -> FastAPI:
    settings = settings or InsightFetcherSettings()
    configure_observability(SERVICE, log_level=settings.log_level, log_format=settings.log_format)
    topics = settings.topics
    broker = make_broker(
        settings.kafka,
        client_id=f"parley-insight-fetcher-{settings.instance_id}",
        graceful_timeout=settings.shutdown_grace_seconds,
    )
    provider = provider or ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
    transactional = publisher or transactional_publisher(settings, "insight-fetcher", settings.instance_id)
    progress = ConsumerProgress(settings.consumer_stall_seconds)
    step = ConsumeProduceStep(
        service=SERVICE,
        handle_record=handle_completion(provider, topics, reads_in_flight=settings.reads_per_conversation),
        publisher=lambda: transactional,
        group_id=settings.group_id,
        dead_letter_topic=topics.dead_letters,
        on_progress=progress.handled,
        policy=StepPolicy(concurrency=settings.conversations_in_flight),
    )

    completions_subscriber = broker.subscriber(
        topics.completions,
        group_id=settings.group_id,
        batch=True,
        max_records=256,
        ack_policy=AckPolicy.MANUAL,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **consumer_tuning(settings.kafka),
        description="JobCompleted: read the conversation's insights and publish InsightsReady; JobFailed: nothing",
    )

    @completions_subscriber
    async def on_completion(msg: KafkaMessage) -> None:
        await step(msg)

    # Written by the transactional publisher; declared here so the AsyncAPI document shows them.
    broker.publisher(
        topics.insights,
        description="InsightsReady, keyed by conversationId; compacted, so the latest bundle per conversation stays",
        schema=InsightsReady,
    )
    broker.publisher(topics.dead_letters, description="completions that cannot be handled", schema=DeadLetter)

    def lifespan(_: FastAPI) -> AbstractAsyncContextManager[None]:
        return running_service(settings, broker=broker, provider=provider, publisher=transactional)

    app = FastAPI(title="Parley insight-fetcher", version="0.1.0", lifespan=lifespan, telemetry=http_telemetry())
    app.include_router(
        health_router(broker, SERVICE, progress=progress, consumer=lambda: completions_subscriber.consumer)
    )
    serve_metrics(app, SERVICE, consumer=lambda: completions_subscriber.consumer)
    app.state.broker = broker
    # The events each subscriber reads, for the AsyncAPI document: handlers take raw records (to dead-letter
    # unreadable ones), so faststream cannot see them.
    app.state.consumed_events = {topics.completions: CompletionEvent}
    return app
