"""ingest: the composition root. Its hops, declared below, are everything it reads and writes.

Submissions arrive as ``ProcessRequested`` commands on Kafka or on the Symbl Async API paths over HTTP (text,
audio/video files streamed, audio/video URLs); each requestId is submitted to the provider once, and its job is
announced as a ``JobSubmitted``. At start-up the recent ``JobSubmitted`` history rebuilds the idempotency ledger.
Live streams (Symbl's Streaming API over WebSocket) and calls (its Telephony API) are relayed to the provider; what
it recognises is published on the live topic as it comes, and the stream's or call's job is announced when it ends.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import FastAPI
from parley_shared.events import JobSubmitted, LiveStreamEvent, ProcessRequested
from parley_shared.kafka.hops import HttpInput, StartupRead, Stream, Transform
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.provider import ProviderClient
from parley_shared.provider.metrics import provider_error_counter
from parley_shared.provider.ports import AsyncApi, ConversationCleanup
from parley_shared.service import PipelineService

from parley_ingest.calls_api import CallRelay, build_calls_router
from parley_ingest.http_api import build_router
from parley_ingest.ledger import RequestLedger
from parley_ingest.live_api import LiveRelaySettings, build_live_router
from parley_ingest.metrics import SERVICE
from parley_ingest.reconcile import OrphanSweeper
from parley_ingest.settings import IngestSettings
from parley_ingest.submission import Submitter


def create_app(
    settings: IngestSettings | None = None,
    *,
    publisher: AtomicPublisher | None = None,
    provider: AsyncApi | None = None,
    conversations: ConversationCleanup | None = None,
) -> FastAPI:
    """Build the service. ``publisher`` replaces the transactional producer in in-memory broker tests; a test's
    ``provider`` comes with ``conversations`` when it reconciles uncertain submissions."""
    settings = settings or IngestSettings()
    topics = settings.topics
    service = PipelineService(
        SERVICE, settings, group_id=settings.group_id, instance_id=settings.instance_id, publisher=publisher
    )
    if provider is None:
        client = ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
        provider, conversations = client, client
    ledger = RequestLedger(settings.idempotency_ledger_entries)
    orphans = OrphanSweeper(conversations) if conversations is not None else None
    redaction = settings.redaction.provider_option() if settings.redaction is not None else None
    submitter = Submitter(provider, ledger, webhook_url=settings.webhook_url, redaction=redaction, orphans=orphans)
    jobs = Stream[JobSubmitted](
        topics.jobs,
        JobSubmitted,
        "JobSubmitted, keyed by conversationId: a provider job for job-watcher to watch",
        on_committed=submitter.outcomes.committed,
    )

    service.startup_read(
        StartupRead(
            "rebuild the idempotency ledger",
            consumes=jobs,
            since=lambda: datetime.now(UTC) - timedelta(hours=settings.idempotency_window_hours),
            handler=ledger.remember,
        )
    )
    service.transform(
        Transform(
            "submit commands",
            consumes=Stream(
                topics.requests,
                ProcessRequested,
                "ProcessRequested commands: submit each requestId to the provider once",
            ),
            produces=(jobs, service.dead_letters("ProcessRequested commands that cannot be handled")),
            handler=submitter.jobs_for,
        )
    )
    submissions = service.http_input(
        HttpInput(
            "POST|PUT /v1/process/{text,audio,video}…",
            "the Symbl Async API paths: each requestId submitted to the provider once",
            produces=(jobs,),
        )
    )

    live_streams = service.http_input(
        HttpInput(
            "WebSocket /v1/streaming/{connectionId}, /v1/realtime/insights/{connectionId}; POST /v1/endpoint:connect",
            "Symbl's Streaming API, relayed to the provider frame for frame, and its Telephony API: each call's live"
            " results as the provider recognises them",
            produces=(
                Stream(
                    topics.live,
                    LiveStreamEvent,
                    "each live stream's messages, insights, topics and trackers as they are recognised, keyed by"
                    " conversationId, in order (sequence from 0); LiveStreamEnded last",
                ),
                jobs,
            ),
        )
    )

    router = build_router(
        submitter,
        lambda submitted: submissions.publish([submitted]),
        max_upload_bytes=settings.max_upload_bytes,
        api_keys=settings.api_keys,
    )
    relay_settings = LiveRelaySettings(
        provider_url=settings.provider.url,
        webhook_url=settings.webhook_url,
        stop_timeout_seconds=settings.live_stop_timeout_seconds,
        redaction=redaction,
    )
    live_router = build_live_router(relay_settings, live_streams.publish)
    calls = CallRelay(relay_settings, live_streams.publish)
    return service.app(
        title="Parley ingest",
        routers=[router, live_router, build_calls_router(calls)],
        resources=[provider, calls],
    )
