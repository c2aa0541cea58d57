"""Webhooks on every job status change, delivered by the outbox sender to a real HTTP receiver."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web
from parley_engine.store.schema import WebhookDeliveryRow, utc_now
from parley_engine.webhooks import retry_delay, signature
from sqlalchemy import update

from tests.support.engine import TEXT_MESSAGES, RunningEngine, engine_settings, http_server, running_engine


@dataclass
class Receiver:
    """Answers with the next status in ``replies`` (then 200) and records every request."""

    replies: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        status = self.replies.pop(0) if self.replies else 200
        self.received.append((dict(request.headers), await request.read(), status))
        return web.Response(status=status)

    async def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 10
        while len(self.received) < count:
            assert time.monotonic() < deadline, self.received
            await asyncio.sleep(0.02)


async def settled_deliveries(engine: RunningEngine, job_id: str, count: int = 3) -> list[WebhookDeliveryRow]:
    """The job's deliveries once each has a final state: after that the engine sends none of them again."""
    deadline = time.monotonic() + 10
    while True:
        deliveries = await engine.components.store.deliveries.deliveries_for_job(job_id)
        if len(deliveries) == count and all(d.state != "pending" for d in deliveries):
            return deliveries
        assert time.monotonic() < deadline, [(d.job_status, d.state) for d in deliveries]
        await asyncio.sleep(0.02)


async def test_every_status_is_posted_signed_and_a_500_is_retried_with_the_same_delivery_id(tmp_path: Path) -> None:
    receiver = Receiver(replies=[500])
    settings = engine_settings(tmp_path, webhook_secret="hook-secret")
    async with http_server({"/hook": receiver.handle}) as base, running_engine(settings) as engine:
        response = await engine.client.post(
            "/v1/process/text", json={"messages": TEXT_MESSAGES, "webhookUrl": f"{base}/hook"}, headers=engine.headers
        )
        job_id, cid = response.json()["jobId"], response.json()["conversationId"]
        await engine.wait_for_job(job_id)
        assert [d.state for d in await settled_deliveries(engine, job_id)] == ["delivered"] * 3
        assert len(receiver.received) == 4

        first, retry, *rest = receiver.received
        assert first[2] == 500 and retry[2] == 200
        assert first[0]["X-Parley-Delivery"] == retry[0]["X-Parley-Delivery"]
        assert first[1] == retry[1]
        delivered = [retry, *rest]
        assert [json.loads(body)["status"] for _, body, _ in delivered] == ["scheduled", "in_progress", "completed"]
        assert len({headers["X-Parley-Delivery"] for headers, _, _ in delivered}) == 3
        for headers, body, _ in receiver.received:
            assert json.loads(body) == {
                "jobId": job_id,
                "id": job_id,
                "status": json.loads(body)["status"],
                "conversationId": cid,
            }
            expected = hmac.new(b"hook-secret", body, hashlib.sha256).hexdigest()
            assert headers["X-Parley-Signature"] == f"sha256={expected}"
            assert headers["X-Parley-Event"] == "job.status"
            assert headers["Content-Type"] == "application/json"


async def test_a_4xx_is_final_and_retries_stop_at_max_attempts(tmp_path: Path) -> None:
    refusing = Receiver(replies=[410] * 10)
    failing = Receiver(replies=[503] * 10)
    settings = engine_settings(tmp_path, webhook_max_attempts=2)
    async with (
        http_server({"/gone": refusing.handle, "/down": failing.handle}) as base,
        running_engine(settings) as engine,
    ):
        job_ids = []
        for path in ("gone", "down"):
            response = await engine.client.post(
                "/v1/process/text",
                json={"messages": TEXT_MESSAGES, "webhookUrl": f"{base}/{path}"},
                headers=engine.headers,
            )
            job_ids.append(response.json()["jobId"])
            await engine.wait_for_job(job_ids[-1])
        for job_id in job_ids:
            await settled_deliveries(engine, job_id)
        # 410: each of the three statuses tried once; 503: each tried twice (max attempts), then given up.
        assert len(refusing.received) == 3
        assert len(failing.received) == 6
        assert "X-Parley-Signature" not in refusing.received[0][0]  # no secret configured: unsigned
        ids = [headers["X-Parley-Delivery"] for headers, _, _ in failing.received]
        assert ids[0] == ids[1] and ids[2] == ids[3] and ids[4] == ids[5] and len(set(ids)) == 3
        job_id = response.json()["jobId"]
        deliveries = await engine.components.store.deliveries.deliveries_for_job(job_id)
        assert [(d.job_status, d.state, d.attempts) for d in deliveries] == [
            ("scheduled", "failed", 2),
            ("in_progress", "failed", 2),
            ("completed", "failed", 2),
        ]


async def test_undelivered_webhooks_survive_a_restart(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, webhook_backoff_base_seconds=0.5, webhook_backoff_max_seconds=0.5)
    down = Receiver(replies=[503] * 100)
    async with http_server({"/hook": down.handle}) as base:
        url = f"{base}/hook"
        async with running_engine(settings) as engine:
            response = await engine.client.post(
                "/v1/process/text", json={"messages": TEXT_MESSAGES, "webhookUrl": url}, headers=engine.headers
            )
            job_id = response.json()["jobId"]
            await engine.wait_for_job(job_id)
            await down.wait_for(1)
        down.replies.clear()  # the receiver recovers while the engine is down
        async with running_engine(settings) as engine:
            deadline = time.monotonic() + 10
            while True:
                deliveries = await engine.components.store.deliveries.deliveries_for_job(job_id)
                if [d.state for d in deliveries] == ["delivered"] * 3:
                    break
                assert time.monotonic() < deadline, [(d.job_status, d.state) for d in deliveries]
                await asyncio.sleep(0.05)


async def test_webhook_urls_into_the_engines_network_are_refused_unless_trusted_or_allowed(tmp_path: Path) -> None:
    receiver = Receiver()
    async with http_server({"/hook": receiver.handle}) as base:
        port = base.rsplit(":", 1)[1]
        settings = engine_settings(
            tmp_path, allow_private_media_urls=False, trusted_webhook_urls=f"http://127.0.0.1:{port}/hook"
        )
        async with running_engine(settings) as engine:
            refused = {}
            for url in (f"http://localhost:{port}/hook", "http://10.0.0.8/hook", f"http://127.0.0.1:{port}/other"):
                response = await engine.client.post(
                    "/v1/process/text", json={"messages": TEXT_MESSAGES, "webhookUrl": url}, headers=engine.headers
                )
                refused[url] = (response.status_code, response.json()["message"])
            media = await engine.client.post(
                "/v1/process/audio?webhookUrl=http://10.0.0.8/hook",
                content=b"RIFF",
                headers={**engine.headers, "Content-Type": "audio/wav"},
            )
            trusted = await engine.client.post(
                "/v1/process/text",
                json={"messages": TEXT_MESSAGES, "webhookUrl": f"http://127.0.0.1:{port}/hook"},
                headers=engine.headers,
            )
            await engine.wait_for_job(trusted.json()["jobId"])
            await receiver.wait_for(3)
            listed = await engine.client.get("/v1/conversations", headers=engine.headers)

    for status, message in refused.values():
        assert status == 400
        assert message.startswith("webhookUrl refused: the URL") and "PARLEY_TRUSTED_WEBHOOK_URLS" in message
    assert "private address 10.0.0.8" in refused["http://10.0.0.8/hook"][1]
    assert media.status_code == 400 and "private address 10.0.0.8" in media.json()["message"]
    assert trusted.status_code == 200
    assert [conversation["id"] for conversation in listed.json()["conversations"]] == [trusted.json()["conversationId"]]


async def test_a_delivery_whose_url_now_resolves_into_the_engines_network_is_given_up_unsent(
    tmp_path: Path,
) -> None:
    """A row written while the URL was acceptable (or by an engine with looser settings) is checked again on send."""
    receiver = Receiver()
    async with http_server({"/hook": receiver.handle}) as base:
        async with running_engine(engine_settings(tmp_path)) as engine:  # private URLs allowed: accepted
            response = await engine.client.post(
                "/v1/process/text",
                json={"messages": TEXT_MESSAGES, "webhookUrl": f"{base}/hook"},
                headers=engine.headers,
            )
            job_id = response.json()["jobId"]
            await engine.wait_for_job(job_id)
            await settled_deliveries(engine, job_id)
        delivered_before = len(receiver.received)
        strict = engine_settings(tmp_path, allow_private_media_urls=False)
        async with running_engine(strict) as engine:
            # As if never sent: pending again, due now.
            async with engine.components.store.database.write() as session:
                await session.execute(
                    update(WebhookDeliveryRow)
                    .where(WebhookDeliveryRow.job_id == job_id)
                    .values(state="pending", attempts=0, last_error=None, next_attempt_at=utc_now())
                )
            engine.components.webhook_sender.wake()
            deliveries = await settled_deliveries(engine, job_id)

    assert delivered_before == 3 and len(receiver.received) == 3  # nothing more reached the receiver
    assert {(d.state, d.attempts) for d in deliveries} == {("failed", 1)}
    assert all("loopback address 127.0.0.1" in (d.last_error or "") for d in deliveries)


def test_signature_and_backoff() -> None:
    assert signature("k", b"{}") == "sha256=" + hmac.new(b"k", b"{}", hashlib.sha256).hexdigest()
    delays = [retry_delay(attempt, 1.0, 8.0) for attempt in range(1, 7)]
    assert 0.5 <= delays[0] <= 1.0
    assert 1.0 <= delays[1] <= 2.0
    assert all(4.0 <= d <= 8.0 for d in delays[3:])
