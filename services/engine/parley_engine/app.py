"""The engine's composition root: settings → store → workers → job runner and webhook sender → HTTP API.

The lifespan opens the store (upgrading its schema: ``parley_engine.store.migrations``), builds the parts and keeps
them as ``EngineComponents``, which the routes receive as typed dependencies (``parley_engine.dependencies``).

Everything the engine serves is here: auth, the Async API, the Job API, the Conversation API, the Streaming API
(WebSocket, ``parley_engine.streaming``), health. Errors are
JSON ``{"message": …}`` everywhere, bad input is a 4xx, never a 5xx.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from parley_shared.exposure import api_document_routes
from parley_shared.http_errors import install_error_handlers
from parley_shared.metrics import serve_metrics
from parley_shared.service import configure_observability
from parley_shared.tracing import flush_traces, http_telemetry, trace_http_app
from starlette.exceptions import HTTPException as StarletteHTTPException

from parley_engine.async_api import build_async_router, build_job_router
from parley_engine.auth import build_auth_router
from parley_engine.conversations_api import build_conversations_router
from parley_engine.dependencies import EngineComponents, MaybeStartedDep
from parley_engine.experience.router import build_experience_router
from parley_engine.faults import FaultMode, FaultSettings
from parley_engine.jobs import JobRunner
from parley_engine.metrics import active_jobs
from parley_engine.settings import EngineSettings
from parley_engine.store import Store
from parley_engine.streaming.conversations import StoredStreamConversations
from parley_engine.streaming.hub import StreamHub
from parley_engine.streaming.router import build_streaming_router
from parley_engine.streaming.service import StreamingService
from parley_engine.streaming.session import StreamSession
from parley_engine.streaming.workers import Decoder, LiveProcessWorkers, LiveThreadWorkers, LiveWorkers, real_decoder
from parley_engine.telephony.calls import TelephonyCalls
from parley_engine.telephony.ports import SipDialer
from parley_engine.telephony.router import build_telephony_router
from parley_engine.tokens import TokenAuthority
from parley_engine.webhooks import WebhookSender
from parley_engine.workers import (
    AnalysisWorkers,
    Analyzer,
    ProcessPoolWorkers,
    Recognizer,
    ThreadWorkers,
    UtteranceRedactor,
    real_analyzer,
    real_recognizer,
    real_redactor,
)

log = logging.getLogger(__name__)


def build_workers(
    settings: EngineSettings,
    analyzer_factory: Callable[[], Analyzer] | None,
    recognizer_factory: Callable[[], Recognizer] | None,
    redactor_factory: Callable[[], UtteranceRedactor] | None = None,
) -> AnalysisWorkers:
    """Injected factories run on threads (tests, light fakes); the real models run in a process pool."""
    if analyzer_factory is None and recognizer_factory is None and redactor_factory is None:
        return ProcessPoolWorkers(settings.workers)
    return ThreadWorkers(
        recognizer_factory or real_recognizer, analyzer_factory or real_analyzer, redactor_factory or real_redactor
    )


def build_live_workers(
    settings: EngineSettings,
    analyzer_factory: Callable[[], Analyzer] | None,
    decoder_factory: Callable[[], Decoder] | None,
) -> LiveWorkers:
    """As ``build_workers``, for live streams: injected factories on threads, else a pool of processes."""
    if analyzer_factory is None and decoder_factory is None:
        return LiveProcessWorkers(settings.streaming_workers)
    return LiveThreadWorkers(decoder_factory or real_decoder, analyzer_factory or real_analyzer)


def sip_user_agent(settings: EngineSettings) -> SipDialer:
    """The Telephony API's SIP user agent, on the configured local address."""
    from parley_engine.telephony.sip import SipUserAgent

    return SipUserAgent(
        bind_address=settings.sip_bind_address,
        advertised_address=settings.sip_advertised_address or settings.sip_bind_address,
    )


def create_app(
    settings: EngineSettings | None = None,
    *,
    analyzer_factory: Callable[[], Analyzer] | None = None,
    recognizer_factory: Callable[[], Recognizer] | None = None,
    decoder_factory: Callable[[], Decoder] | None = None,
    redactor_factory: Callable[[], UtteranceRedactor] | None = None,
    dialer_factory: Callable[[EngineSettings], SipDialer] = sip_user_agent,
    fault_settings: FaultSettings | None = None,
) -> FastAPI:
    settings = settings or EngineSettings()
    configure_observability("engine", log_level=settings.log_level, log_format=settings.log_format)
    # Fault injection for resilience runs (parley_engine.faults); None unless PARLEY_ENGINE_FAULTS_ENABLED=true.
    fault_settings = fault_settings or FaultSettings()
    fault_mode = FaultMode(fault_settings) if fault_settings.enabled else None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.uploads_dir.mkdir(parents=True, exist_ok=True)
        store = await Store.open(settings.resolved_database_url)
        workers = build_workers(settings, analyzer_factory, recognizer_factory, redactor_factory)
        faults = fault_mode.webhook_faults(store.deliveries) if fault_mode else None
        sender = WebhookSender(store.deliveries, settings, faults=faults)
        runner = JobRunner(
            store.jobs,
            store.conversations,
            workers,
            settings,
            on_status_change=sender.wake,
            lease_seconds=settings.job_lease_seconds,
        )
        authority = TokenAuthority(settings, store.credentials, await store.credentials.signing_key())
        live_workers = build_live_workers(settings, analyzer_factory, decoder_factory)
        streaming = StreamingService(
            StreamHub[StreamSession](settings.streaming_max_streams),
            live_workers,
            StoredStreamConversations(
                store.jobs,
                runner,
                lease_seconds=settings.job_lease_seconds,
                default_webhook_url=settings.streaming_webhook_url,
                on_status_change=sender.wake,
            ),
        )
        telephony = TelephonyCalls(settings, dialer_factory(settings), streaming)
        app.state.components = EngineComponents(
            settings, store, workers, runner, sender, authority, streaming, telephony
        )
        await sender.start()
        await runner.start()
        log.info("engine ready on %s:%d (data in %s)", settings.http_host, settings.http_port, settings.engine_data_dir)
        try:
            yield
        finally:
            # Calls hang up and streams waiting for their clients end now, their jobs handed over before the runner
            # stops.
            await telephony.close()
            await streaming.hub.end_waiting_streams()
            await runner.stop()
            await sender.stop()
            workers.close()
            live_workers.close()
            await store.close()
            flush_traces()

    app = FastAPI(
        title="Parley engine",
        description="A self-hosted, Symbl.ai-compatible conversation-intelligence API with offline analysis.",
        lifespan=lifespan,
        telemetry=http_telemetry(),
        **api_document_routes(settings.api_docs),
    )
    install_error_handlers(app)
    trace_http_app(app)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"message": str(error.detail)}, status_code=error.status_code, headers=error.headers)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, error: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"message": "internal error"}, status_code=500)

    @app.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": "engine"}

    @app.get("/readyz", tags=["health"], summary="Readiness: the database answers")
    async def ready(components: MaybeStartedDep) -> JSONResponse:
        reachable = components is not None and await components.store.database.ping()
        return JSONResponse(
            {"status": "ok" if reachable else "database unreachable", "service": "engine"},
            status_code=200 if reachable else 503,
        )

    app.include_router(build_auth_router())
    app.include_router(build_async_router())
    app.include_router(build_job_router())
    app.include_router(build_conversations_router())
    app.include_router(build_streaming_router())
    app.include_router(build_telephony_router())
    app.include_router(build_experience_router())
    if fault_mode is not None:  # fault injection: middleware and GET /_faults/log
        fault_mode.install(app, settings.resolved_database_url)

    async def count_active_jobs() -> None:
        components: EngineComponents | None = getattr(app.state, "components", None)
        if components is not None:
            active_jobs(await components.store.jobs.count_active_jobs())

    serve_metrics(app, "engine", before_scrape=[count_active_jobs])
    return app
