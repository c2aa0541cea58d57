"""What every pipeline service does around its own logic: start-up and shutdown in the right order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any

from faststream.kafka import KafkaBroker

from parley_shared.kafka.publishing import AtomicPublisher, TransactionalPublisher
from parley_shared.kafka.topics import ensure_topics
from parley_shared.logs import LogFormat, configure_logging
from parley_shared.provider import ProviderClient
from parley_shared.settings import ParleySettings
from parley_shared.tracing import configure_tracing, flush_traces


def configure_observability(service: str, *, log_level: str, log_format: LogFormat) -> None:
    """Structured logs and tracing for this process, before anything logs: called first by each composition root."""
    configure_logging(log_level, log_format)
    configure_tracing(service)


def transactional_publisher(settings: ParleySettings, service: str, instance_id: str) -> TransactionalPublisher:
    """One transactional producer per replica: a restarted replica with the same id fences its predecessor."""
    name = f"parley-{service}-{instance_id}"
    return TransactionalPublisher(settings.kafka, transactional_id=name, client_id=name)


@asynccontextmanager
async def running_service(
    settings: ParleySettings,
    *,
    broker: KafkaBroker,
    provider: ProviderClient,
    publisher: AtomicPublisher,
    prepare: Callable[[], Awaitable[None]] | None = None,
    loops: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
    before_stop: Callable[[], Awaitable[None]] | None = None,
) -> AsyncIterator[None]:
    """Topics, then state (``prepare``), then the producer, then consumption, then background ``loops``.

    Shutdown goes the other way, so nothing is consumed that could no longer be published.
    """
    await ensure_topics(settings.kafka, settings.topics)
    if prepare is not None:
        await prepare()
    async with provider:
        await publisher.start()
        await broker.start()
        tasks = [asyncio.create_task(loop(), name=loop.__name__) for loop in loops]
        try:
            yield
        finally:
            await broker.stop()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if before_stop is not None:
                with contextlib.suppress(Exception):
                    await before_stop()
            await publisher.stop()
            flush_traces()
