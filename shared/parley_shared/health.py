"""Liveness and readiness endpoints, the same for every service."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker


def health_router(broker: KafkaBroker, service: str) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", summary="Liveness: the process answers")
    async def live() -> dict[str, str]:
        return {"status": "ok", "service": service}

    @router.get("/readyz", summary="Readiness: the Kafka broker answers")
    async def ready() -> JSONResponse:
        reachable = await broker.ping(timeout=2.0)
        status = 200 if reachable else 503
        return JSONResponse({"status": "ok" if reachable else "kafka unreachable", "service": service}, status)

    return router
