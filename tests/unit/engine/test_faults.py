"""Fault mode's decisions: seeded, within the configured shares, and never on health, auth or the fault log."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import pytest
from fastapi import FastAPI
from parley_engine.faults import ApiFault, FaultDice, FaultInjection, FaultLog, FaultSettings, WebhookFault
from pydantic import ValidationError


def faults(**shares: float) -> FaultSettings:
    return FaultSettings(enabled=True, seed=7, **shares)  # type: ignore[arg-type]


def test_the_same_seed_gives_the_same_faults_and_the_shares_hold() -> None:
    settings = faults(throttle_share=0.1, error_share=0.05, delay_share=0.05)
    dice_a, dice_b = FaultDice(settings), FaultDice(settings)
    rolls_a = [dice_a.api_fault("/v1/job/x") for _ in range(10_000)]
    rolls_b = [dice_b.api_fault("/v1/job/x") for _ in range(10_000)]
    assert rolls_a == rolls_b
    counts = Counter(rolls_a)
    assert 850 < counts[ApiFault.THROTTLE] < 1150
    assert 400 < counts[ApiFault.ERROR] < 600
    assert 400 < counts[ApiFault.DELAY] < 600
    assert 7700 < counts[None] < 8300


def test_health_auth_and_the_fault_log_are_never_faulted() -> None:
    dice = FaultDice(faults(error_share=1.0))
    for path in ("/healthz", "/readyz", "/oauth2/token:generate", "/_faults/log"):
        assert dice.api_fault(path) is None
    assert dice.api_fault("/v1/conversations/c1/messages") is ApiFault.ERROR


def test_webhook_shares_pick_each_fault() -> None:
    dice = FaultDice(faults(webhook_drop_share=0.2, webhook_duplicate_share=0.2, webhook_delay_share=0.2))
    counts = Counter(dice.webhook_fault() for _ in range(5_000))
    assert set(counts) == {WebhookFault.DROP, WebhookFault.DUPLICATE, WebhookFault.DELAY, None}
    assert 2700 < sum(counts[f] for f in WebhookFault) < 3300


def test_shares_over_one_are_refused() -> None:
    with pytest.raises(ValidationError):
        faults(throttle_share=0.6, error_share=0.6)


@pytest.mark.parametrize(
    ("shares", "status", "retry_after"),
    [({"throttle_share": 1.0}, 429, "3"), ({"error_share": 1.0}, 500, None), ({}, 200, None)],
)
async def test_the_middleware_answers_with_the_fault_and_logs_every_api_call(
    shares: dict[str, float], status: int, retry_after: str | None
) -> None:
    settings = faults(retry_after_seconds=3, **shares)
    fault_log = FaultLog()
    app = FastAPI()
    served: list[str] = []

    @app.get("/v1/job/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        served.append(job_id)
        return {"id": job_id, "status": "completed"}

    @app.get("/healthz")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    app.add_middleware(FaultInjection, settings=settings, dice=FaultDice(settings), fault_log=fault_log)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as client:
        response = await client.get("/v1/job/j1")
        assert (await client.get("/healthz")).status_code == 200

    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    assert served == (["j1"] if status == 200 else [])
    assert [(c["path"], c["status"]) for c in fault_log.calls] == [("/v1/job/j1", status)]
    assert sum(fault_log.injected.values()) == (0 if status == 200 else 1)


async def test_a_delayed_call_is_still_served_after_the_delay() -> None:
    settings = faults(delay_share=1.0, delay_seconds=0.3)
    fault_log = FaultLog()
    app = FastAPI()

    @app.get("/v1/job/{job_id}")
    async def job(job_id: str) -> dict[str, str]:
        return {"id": job_id}

    app.add_middleware(FaultInjection, settings=settings, dice=FaultDice(settings), fault_log=fault_log)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as client:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.get("/v1/job/j1"), 0.1)
        slow = await client.get("/v1/job/j2", timeout=2)
    assert slow.status_code == 200
    assert fault_log.injected == {"delay": 2}
