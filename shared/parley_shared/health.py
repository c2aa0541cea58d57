"""Liveness and readiness endpoints, the same for every service.

Readiness asks the Kafka broker. Liveness also watches the consumer: aiokafka consumers are known to stay
connected yet stop fetching after broker trouble (aio-libs/aiokafka#1154, #1037), so a consumer that has records
waiting but has handled none for ``stall_seconds`` reports 503 and gets restarted by its orchestrator.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker


class ConsumerProgress:
    """When the service last handled a batch, and whether records wait that it does not get to."""

    def __init__(self, stall_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._stall_seconds = stall_seconds
        self._clock = clock
        self._last_handled = clock()

    def handled(self) -> None:
        self._last_handled = self._clock()

    async def stall(self, consumer: Any) -> dict[str, Any] | None:
        """Why the consumer looks stuck, or None when it is fine (or idle with nothing to read)."""
        idle_for = self._clock() - self._last_handled
        if consumer is None or idle_for < self._stall_seconds:
            return None
        waiting: dict[str, int] = {}
        for tp in consumer.assignment():
            # Read-committed consumers can only get as far as the last stable offset.
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None:
                continue
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except Exception:
                position = -1
            if position < end:
                waiting[f"{tp.topic}[{tp.partition}]"] = end - max(position, 0)
        if not waiting:
            return None
        return {"idleSeconds": round(idle_for, 1), "recordsWaiting": waiting}


def health_router(
    broker: KafkaBroker,
    service: str,
    *,
    progress: ConsumerProgress | None = None,
    consumer: Callable[[], Any] | None = None,
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers and its consumer is not stuck")
    async def live() -> JSONResponse:
        stall = await progress.stall(consumer()) if progress is not None and consumer is not None else None
        if stall is not None:
            return JSONResponse({"status": "consumer stalled", "service": service, **stall}, 503)
        return JSONResponse({"status": "ok", "service": service})

    @router.get("/readyz", summary="Readiness: the Kafka broker answers")
    async def ready() -> JSONResponse:
        reachable = await broker.ping(timeout=2.0)
        status = 200 if reachable else 503
        return JSONResponse({"status": "ok" if reachable else "kafka unreachable", "service": service}, status)

    return router
