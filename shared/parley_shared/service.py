"""A pipeline service built from its declared hops: Kafka plumbing, HTTP plumbing, start-up and shutdown order.

A composition root makes a ``PipelineService``, declares each hop on it (``parley_shared.kafka.hops``) and asks it
for the FastAPI app. Everything a service consumes and produces is one of those declarations, so its ``app.py``
shows all of it, and the AsyncAPI document and ``docs/api/hops.md`` are generated from the same objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from faststream import AckPolicy
from faststream.kafka import KafkaMessage
from pydantic import BaseModel, ValidationError

from parley_shared.events import DeadLetter
from parley_shared.exposure import api_document_routes
from parley_shared.health import ConsumerProgress, health_router
from parley_shared.http_errors import install_error_handlers
from parley_shared.kafka.connection import consumer_tuning, make_broker
from parley_shared.kafka.consume import ConsumeProduceStep, FenceOnRevoke
from parley_shared.kafka.dead_letters import dead_letter_from_record, dead_letter_stream
from parley_shared.kafka.history import read_since
from parley_shared.kafka.hops import (
    Declarations,
    Feed,
    HttpInput,
    Outputs,
    RecordPosition,
    StartupRead,
    Stream,
    Transform,
)
from parley_shared.kafka.publishing import AtomicPublisher, TransactionalPublisher
from parley_shared.kafka.topics import ensure_topics
from parley_shared.logs import LogFormat, configure_logging
from parley_shared.metrics import serve_metrics
from parley_shared.settings import ParleySettings
from parley_shared.tracing import configure_tracing, flush_traces, http_telemetry, record_trace_parent, trace_http_app
from parley_shared.validation import describe_validation_error

logger = logging.getLogger(__name__)


def configure_observability(service: str, *, log_level: str, log_format: LogFormat) -> None:
    """Structured logs and tracing for this process, before anything logs: called first by each composition root."""
    configure_logging(log_level, log_format)
    configure_tracing(service)


def _require_dead_letters(hop: Transform[Any, Any] | Feed[Any]) -> None:
    if not any(DeadLetter in stream.event_classes for stream in hop.produces):
        raise ValueError(f"hop {hop.name!r} consumes Kafka records, so it must produce dead letters")


class Emitter:
    """Writes an HTTP input's events through the service's transactional producer (see ``HttpInput``)."""

    def __init__(self, outputs: Outputs, publisher: AtomicPublisher) -> None:
        self._outputs = outputs
        self._publisher = publisher

    async def publish(self, events: Sequence[BaseModel]) -> None:
        """Returns once the events are committed (and counted); raises if they could not be."""
        await self._publisher.publish(self._outputs.records(events))
        self._outputs.committed(events)


class PipelineService:
    """One service's broker, transactional producer and declared hops.

    ``publisher`` replaces the transactional producer in in-memory broker tests (``BrokerPublisher``).
    """

    def __init__(
        self, name: str, settings: ParleySettings, *, group_id: str, instance_id: str, publisher: AtomicPublisher | None
    ) -> None:
        configure_observability(name, log_level=settings.log_level, log_format=settings.log_format)
        self.name = name
        self.settings = settings
        self.group_id = group_id
        self.broker = make_broker(
            settings.kafka, client_id=f"parley-{name}-{instance_id}", graceful_timeout=settings.shutdown_grace_seconds
        )
        # One transactional producer per replica: a restarted replica with the same id fences its predecessor.
        transactional_id = f"parley-{name}-{instance_id}"
        self.publisher = publisher or TransactionalPublisher(
            settings.kafka, transactional_id=transactional_id, client_id=transactional_id
        )
        self.progress = ConsumerProgress(settings.consumer_stall_seconds)
        self.declarations = Declarations(name)
        self._subscribers: list[Any] = []
        self._startup_reads: list[StartupRead[Any]] = []
        self._declared_topics: set[str] = set()

    # ---- declarations -------------------------------------------------------------------------------------------

    def dead_letters(self, description: str) -> Stream[DeadLetter]:
        """The dead-letter stream, for a hop's ``produces``: keyed like the original record, counted on commit."""
        return dead_letter_stream(self.settings.topics.dead_letters, description)

    def transform(self, hop: Transform[Any, Any]) -> None:
        _require_dead_letters(hop)
        self.declarations.hops.append(hop)
        step = ConsumeProduceStep(
            hop,
            service=self.name,
            publisher=self.publisher,
            group_id=self.group_id,
            on_progress=self.progress.handled,
        )
        subscriber = self._subscriber(
            hop.consumes, hop.name, max_records=hop.max_records, listener=FenceOnRevoke(step.fence)
        )

        @subscriber
        async def consume(msg: KafkaMessage) -> None:
            await step(msg)

        self._declare_outputs(hop.produces)

    def feed(self, hop: Feed[Any]) -> None:
        _require_dead_letters(hop)
        self.declarations.hops.append(hop)
        subscriber = self._subscriber(hop.consumes, hop.name, max_records=hop.max_records, listener=hop.listener)
        stream, owner, service = hop.consumes, hop.owner, self.name

        @subscriber
        async def consume(msg: KafkaMessage) -> None:
            self.progress.handled()
            raw = msg.raw_message
            for record in raw if isinstance(raw, (tuple, list)) else (raw,):
                position = RecordPosition(record.partition, record.offset, record_trace_parent(record))
                try:
                    event = stream.decode(record.value)
                except ValidationError as error:
                    reason = f"invalid {stream.event_names}: {describe_validation_error(error)}"
                    owner.on_unreadable(dead_letter_from_record(record, service=service, error=reason), position)
                    continue
                owner.on_event(event, position)

        self._declare_outputs(hop.produces)

    def startup_read(self, read: StartupRead[Any]) -> None:
        self.declarations.hops.append(read)
        self._startup_reads.append(read)

    def http_input(self, declaration: HttpInput) -> Emitter:
        self.declarations.hops.append(declaration)
        self._declare_outputs(declaration.produces)
        return Emitter(Outputs(declaration.produces), self.publisher)

    def _subscriber(self, stream: Stream[Any], name: str, *, max_records: int, listener: Any = None) -> Any:
        subscriber = self.broker.subscriber(
            stream.topic,
            group_id=self.group_id,
            batch=True,
            max_records=max_records,
            ack_policy=AckPolicy.MANUAL,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            **consumer_tuning(self.settings.kafka),
            **({"listener": listener} if listener is not None else {}),
            title=f"{stream.topic}:{name.replace(' ', '-')}",
            description=f"{name}: {stream.description}",
        )
        self._subscribers.append(subscriber)
        return subscriber

    def _declare_outputs(self, streams: Sequence[Stream[Any]]) -> None:
        # Written by the transactional producer; declared on the broker so the AsyncAPI document shows them (once
        # per topic: several hops may write the same stream).
        for stream in streams:
            if stream.topic not in self._declared_topics:
                self._declared_topics.add(stream.topic)
                self.broker.publisher(stream.topic, description=stream.description, schema=stream.events)

    # ---- running --------------------------------------------------------------------------------------------

    def consumer(self) -> Any:
        """The aiokafka consumer of the service's (first) subscription, once the broker has started."""
        return self._subscribers[0].consumer if self._subscribers else None

    async def _read_at_start(self) -> None:
        for read in self._startup_reads:
            seen = 0
            async for record in read_since(self.settings.kafka, read.consumes.topic, read.since()):
                try:
                    event = read.consumes.decode(record.value)
                except ValidationError:
                    continue  # another hop's event on a shared topic
                read.handler(event)
                seen += 1
            logger.info("%s: read %d events from %s", read.name, seen, read.consumes.topic)

    @asynccontextmanager
    async def running(
        self,
        *,
        resources: Sequence[AbstractAsyncContextManager[Any]] = (),
        loops: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        before_stop: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> AsyncIterator[None]:
        """Topics, then start-up reads, then ``resources`` (the provider client), then the producer, then
        consumption, then background ``loops``. Shutdown goes the other way, so nothing is consumed that could no
        longer be published."""
        await ensure_topics(self.settings.kafka, self.settings.topics)
        await self._read_at_start()
        async with contextlib.AsyncExitStack() as stack:
            for resource in resources:
                await stack.enter_async_context(resource)
            await self.publisher.start()
            await self.broker.start()
            tasks = [asyncio.create_task(loop(), name=loop.__name__) for loop in loops]
            try:
                yield
            finally:
                await self.broker.stop()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                if before_stop is not None:
                    with contextlib.suppress(Exception):
                        await before_stop()
                await self.publisher.stop()
                flush_traces()

    def app(
        self,
        *,
        title: str,
        routers: Sequence[APIRouter] = (),
        resources: Sequence[AbstractAsyncContextManager[Any]] = (),
        loops: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        before_stop: Callable[[], Coroutine[Any, Any, None]] | None = None,
    ) -> FastAPI:
        """The service's FastAPI app: its routers, health, metrics, and a lifespan that runs the hops."""

        def lifespan(_: FastAPI) -> AbstractAsyncContextManager[None]:
            return self.running(resources=resources, loops=loops, before_stop=before_stop)

        app = FastAPI(
            title=title,
            version="0.1.0",
            lifespan=lifespan,
            telemetry=http_telemetry(),
            **api_document_routes(self.settings.api_docs),
        )
        install_error_handlers(app)
        trace_http_app(app)
        for router in routers:
            app.include_router(router)
        app.include_router(health_router(self.broker, self.name, progress=self.progress, consumer=self.consumer))
        serve_metrics(app, self.name, consumer=self.consumer)
        app.state.broker = self.broker
        app.state.declarations = self.declarations
        return app
