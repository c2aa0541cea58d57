"""Watching the pipeline from outside: when each InsightsReady is read, what the double saw, and the SDK's way.

``InsightsArrivals`` is the benchmark's read_committed consumer on an insights topic: it notes the wall-clock
time at which each bundle was read, by jobId and by requestId, so latencies compare with the double's
``completedAt`` (same machine, same clock). ``DoubleApi`` talks to the provider double directly, both as a
Symbl client would (token, submit, job status, Conversation API) and through its ``/_double/*`` inspection routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
from parley_shared.provider import InsightEndpoint
from parley_shared.settings import DEVELOPMENT_APP_ID, DEVELOPMENT_APP_SECRET, KafkaSettings

from parley_cli.watching import TopicFollower

# The Symbl Python SDK's job wait: one long sleep, then a status check every 30 s until the job is done.
SDK_FIRST_WAIT_SECONDS = 30.0
SDK_POLL_SECONDS = 30.0


def text_body(n: int, *, words: str = "") -> dict[str, Any]:
    """A two-message text conversation, as a Symbl client would send it."""
    return {
        "name": f"bench conversation {n}",
        "messages": [
            {
                "payload": {"content": f"Hello, this is conversation {n}. {words}".strip()},
                "from": {"userId": "ana@example.com", "name": "Ana"},
            },
            {
                "payload": {"content": "Will you send the report by Friday?"},
                "from": {"userId": "ben@example.com", "name": "Ben"},
            },
        ],
    }


@dataclass
class InsightsArrivals:
    """Follows one insights topic from its current end and remembers when each bundle arrived."""

    kafka: KafkaSettings
    topic: str
    by_job: dict[str, float] = field(default_factory=dict)
    by_request: dict[str, float] = field(default_factory=dict)
    # jobId → (job-watcher saw the completion, insight-fetcher built the bundle), from the event's own fields.
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = None
    _follower: TopicFollower | None = None

    async def start(self) -> None:
        self._follower = TopicFollower(self.kafka, [self.topic])
        await self._follower.__aenter__()
        self._task = asyncio.create_task(self._read(), name=f"follow {self.topic}")

    async def _read(self) -> None:
        assert self._follower is not None
        async for _, event in self._follower.events():
            now = time.time()
            if event.get("eventType") != "InsightsReady":
                continue
            self.by_job.setdefault(event["jobId"], now)
            self.by_request.setdefault(event["requestId"], now)
            self.stages.setdefault(
                event["jobId"],
                (
                    datetime.fromisoformat(event["completedAt"]).timestamp(),
                    datetime.fromisoformat(event["occurredAt"]).timestamp(),
                ),
            )
            self._changed.set()

    async def wait_for(self, ids: set[str], *, by: str = "job", within_seconds: float) -> set[str]:
        """Wait until every id has arrived or ``within_seconds`` pass; the ids still missing."""
        seen = self.by_job if by == "job" else self.by_request
        deadline = time.monotonic() + within_seconds
        while missing := ids - seen.keys():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return missing
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))
        return set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._follower is not None:
            await self._follower.__aexit__(None, None, None)


class DoubleApi:
    """The provider double over HTTP, as a plain Symbl client (no Parley code in between)."""

    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self._session = session
        self._token: str | None = None

    async def _headers(self) -> dict[str, str]:
        if self._token is None:
            body = {"type": "application", "appId": DEVELOPMENT_APP_ID, "appSecret": DEVELOPMENT_APP_SECRET}
            async with self._session.post(f"{self.url}/oauth2/token:generate", json=body) as response:
                response.raise_for_status()
                self._token = (await response.json())["accessToken"]
        return {"Authorization": f"Bearer {self._token}"}

    async def submit_text(self, body: dict[str, Any]) -> dict[str, Any]:
        async with self._session.post(
            f"{self.url}/v1/process/text", json=body, headers=await self._headers()
        ) as response:
            response.raise_for_status()
            accepted: dict[str, Any] = await response.json()
            return accepted

    async def job_status(self, job_id: str) -> str:
        async with self._session.get(f"{self.url}/v1/job/{job_id}", headers=await self._headers()) as response:
            response.raise_for_status()
            return str((await response.json())["status"])

    async def read_conversation(self, conversation_id: str) -> dict[str, Any]:
        """All nine Conversation API reads Parley bundles, concurrently."""
        headers = await self._headers()

        async def read(endpoint: InsightEndpoint) -> Any:
            url = f"{self.url}{endpoint.path(conversation_id)}"
            async with self._session.get(url, params=endpoint.query, headers=headers) as response:
                response.raise_for_status()
                return await response.json()

        bodies = await asyncio.gather(*(read(endpoint) for endpoint in InsightEndpoint))
        return dict(zip([endpoint.key for endpoint in InsightEndpoint], bodies, strict=True))

    async def completed_at(self) -> dict[str, float]:
        """jobId → when the double completed it (wall clock), for finished jobs."""
        async with self._session.get(f"{self.url}/_double/jobs") as response:
            jobs = (await response.json())["jobs"]
        return {job["jobId"]: job["completedAt"] for job in jobs if job["completedAt"] is not None}

    async def status_calls_by_job(self) -> Counter[str]:
        """How many ``GET /v1/job/{jobId}`` calls the double answered, by jobId."""
        async with self._session.get(f"{self.url}/_double/calls") as response:
            calls = (await response.json())["calls"]
        return Counter(
            call["jobId"] for call in calls if call["method"] == "GET" and call["path"].startswith("/v1/job/")
        )


@dataclass
class SdkWaitResult:
    job_id: str
    status_calls: int
    insights_read_at: float


async def wait_like_the_sdk(double: DoubleApi, body: dict[str, Any]) -> SdkWaitResult:
    """Submit one conversation and wait for it as the official Symbl Python SDK does, then read its insights."""
    accepted = await double.submit_text(body)
    await asyncio.sleep(SDK_FIRST_WAIT_SECONDS)
    calls = 0
    while True:
        calls += 1
        if await double.job_status(accepted["jobId"]) in ("completed", "failed"):
            break
        await asyncio.sleep(SDK_POLL_SECONDS)
    await double.read_conversation(accepted["conversationId"])
    return SdkWaitResult(job_id=accepted["jobId"], status_calls=calls, insights_read_at=time.time())
