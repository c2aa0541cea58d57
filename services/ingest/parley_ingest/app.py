"""ingest: the composition root.

Consumes  parley.requests   (ProcessRequested commands; batches, read_committed)
Serves    POST/PUT /v1/process/…  (text, audio/video files streamed, audio/video URLs; the Symbl Async API paths)
Calls     the provider's Async API, once per requestId
Produces  parley.jobs          JobSubmitted, keyed by conversationId (transactionally with the consumed offsets)
          parley.dead-letters  DeadLetter for commands that cannot be handled
"""

from __future__ import annotations

import logging
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from parley_shared.events import DeadLetter, JobSubmitted, ProcessRequested
from parley_shared.health import ConsumerProgress, health_router
from parley_shared.http_errors import install_error_handlers
from parley_shared.kafka.connection import consumer_tuning, make_broker
from parley_shared.kafka.consume import ConsumeProduceStep
from parley_shared.kafka.history import read_since
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.metrics import provider_error_counter, serve_metrics
from parley_shared.provider import ProviderClient
from parley_shared.service import configure_observability, running_service, transactional_publisher
from parley_shared.tracing import http_telemetry, trace_http_app, with_trace_context

from parley_ingest.commands import handle_process_requested, submitted_record
from parley_ingest.http_api import build_router
from parley_ingest.ledger import RequestLedger
from parley_ingest.settings import IngestSettings
from parley_ingest.submission import Submitter

logger = logging.getLogger("parley.ingest")
SERVICE = "ingest"


def create_app(
    settings: IngestSettings | None = None,
    *,
    publisher: AtomicPublisher | None = None,
    provider: ProviderClient | None = None,
) -> FastAPI:
    """Build the service. ``publisher`` replaces the transactional producer in in-memory broker tests."""
    settings = settings or IngestSettings()
    configure_observability(SERVICE, log_level=settings.log_level, log_format=settings.log_format)
    topics = settings.topics
    broker = make_broker(
        settings.kafka,
        client_id=f"parley-ingest-{settings.instance_id}",
        graceful_timeout=settings.shutdown_grace_seconds,
    )
    provider = provider or ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
    ledger = RequestLedger()
    submitter = Submitter(provider, ledger, webhook_url=settings.webhook_url)
    transactional = publisher or transactional_publisher(settings, "ingest", settings.instance_id)

    progress = ConsumerProgress(settings.consumer_stall_seconds)
    step = ConsumeProduceStep(
        service=SERVICE,
        handle_record=handle_process_requested(submitter, topics),
        publisher=lambda: transactional,
        group_id=settings.group_id,
        dead_letter_topic=topics.dead_letters,
        on_progress=progress.handled,
    )

    requests_subscriber = broker.subscriber(
        topics.requests,
        group_id=settings.group_id,
        batch=True,
        max_records=256,
        ack_policy=AckPolicy.MANUAL,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        **consumer_tuning(settings.kafka),
        description="ProcessRequested commands: submit each to the provider once, publish JobSubmitted",
    )

    @requests_subscriber
    async def on_process_requested(msg: KafkaMessage) -> None:
        await step(msg)

    jobs_publisher = broker.publisher(
        topics.jobs,
        description="JobSubmitted, keyed by conversationId: a provider job for job-watcher to watch",
        schema=JobSubmitted,
    )
    # Written by the transactional publisher; declared here so the AsyncAPI document shows it.
    broker.publisher(
        topics.dead_letters, description="ProcessRequested commands that cannot be handled", schema=DeadLetter
    )

    async def publish_submitted(submitted: JobSubmitted) -> None:
        (record,) = with_trace_context([submitted_record(topics, submitted)])
        headers = {name: value.decode("latin-1") for name, value in record.headers}
        await jobs_publisher.publish(record.value, key=record.key, headers=headers)

    async def remember_recent_submissions() -> None:
        since = datetime.now(UTC) - timedelta(hours=settings.idempotency_window_hours)
        async for record in read_since(settings.kafka, topics.jobs, since):
            try:
                ledger.remember(JobSubmitted.model_validate_json(record.value or b""))
            except ValueError:
                continue  # other event types share nothing with the ledger
        logger.info("idempotency ledger rebuilt with %d recent requests", len(ledger))

    def lifespan(_: FastAPI) -> AbstractAsyncContextManager[None]:
        return running_service(
            settings,
            broker=broker,
            provider=provider,
            publisher=transactional,
            prepare=remember_recent_submissions,
        )

    app = FastAPI(title="Parley ingest", version="0.1.0", lifespan=lifespan, telemetry=http_telemetry())
    install_error_handlers(app)
    trace_http_app(app)
    app.include_router(
        build_router(
            submitter,
            publish_submitted,
            max_upload_bytes=settings.max_upload_bytes,
            api_keys=settings.api_keys,
        )
    )
    app.include_router(health_router(broker, SERVICE, progress=progress, consumer=lambda: requests_subscriber.consumer))
    serve_metrics(app, SERVICE, consumer=lambda: requests_subscriber.consumer)
    app.state.broker = broker
    # The events each subscriber reads, for the AsyncAPI document: handlers take raw records (to dead-letter
    # unreadable ones), so faststream cannot see them.
    app.state.consumed_events = {topics.requests: ProcessRequested}
    app.state.settings = settings
    return app
