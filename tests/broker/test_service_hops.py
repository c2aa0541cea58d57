"""One hop of each consume→produce service, the same test body run in memory and on the real broker.

In memory (``TestKafkaBroker``) the records never leave the process and the faststream broker publishes;
on the real broker the service's transactional producer commits outputs and offsets together and a
``read_committed`` test subscriber on the output topic checks the hop.
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from faststream.kafka import TestKafkaBroker
from parley_ingest.app import create_app as create_ingest
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.app import create_app as create_fetcher
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_shared.events import JobCompleted, JobFailed, ProcessRequested
from parley_shared.kafka.publishing import AtomicPublisher, BrokerPublisher, TransactionalPublisher
from parley_shared.kafka.topics import ensure_topics
from parley_shared.provider import ProviderClient
from parley_shared.settings import ParleySettings, ProviderSettings, TopicNames

REAL = pytest.param(True, marks=pytest.mark.kafka, id="real-kafka")
IN_MEMORY = pytest.param(False, id="in-memory")


def unique_topics() -> TopicNames:
    run = uuid.uuid4().hex[:8]
    return TopicNames.prefixed(f"hop-{run}")


class FakeSymbl:
    """A provider answering from memory, recording the calls it got."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.calls.append((request.method, request.url.path))
        path = request.url.path
        if path == "/oauth2/token:generate":
            return httpx.Response(200, json={"accessToken": "hop-test-token", "expiresIn": 3600})
        if path.startswith("/v1/process/"):
            body = json.loads(request.content)
            if "refuse me" in json.dumps(body):
                return httpx.Response(400, json={"message": "messages[0].payload.content is not allowed"})
            return httpx.Response(200, json={"conversationId": "5815170693595136", "jobId": str(uuid.uuid4())})
        if path.startswith("/v1/conversations/5815170693595136/"):
            segment = path.rsplit("/", 1)[1]
            return httpx.Response(200, json={segment: [{"id": "1", "text": f"a {segment} item"}]})
        if path.startswith("/v1/conversations/"):
            return httpx.Response(404, json={"message": "The conversationId is either invalid or does not exist."})
        return httpx.Response(404, json={"message": "not here"})

    def client(self) -> ProviderClient:
        return ProviderClient(ProviderSettings(url="http://symbl.test"), transport=httpx.MockTransport(self.handler))


class LatePublisher:
    """Stands in for the service's publisher until the test has started the real one (inside the test broker)."""

    target: AtomicPublisher

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(self, records: Any, **kwargs: Any) -> None:
        await self.target.publish(records, **kwargs)


def settings_for(cls: Callable[..., ParleySettings], request: pytest.FixtureRequest, real: bool) -> Any:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if real else "127.0.0.1:9"
    return cls(kafka_bootstrap_servers=bootstrap, topics=unique_topics(), instance_id=f"hop-{uuid.uuid4().hex[:6]}")


async def started_publisher(settings: Any, broker: Any, real: bool) -> AtomicPublisher:
    if not real:
        return BrokerPublisher(broker)
    await ensure_topics(settings.kafka, settings.topics)
    publisher = TransactionalPublisher(settings.kafka, transactional_id=settings.instance_id, client_id="hop-test")
    await publisher.start()
    return publisher


@pytest.mark.parametrize("real", [IN_MEMORY, REAL])
async def test_insight_fetcher_turns_a_completion_into_insights(real: bool, request: pytest.FixtureRequest) -> None:
    settings: InsightFetcherSettings = settings_for(InsightFetcherSettings, request, real)
    symbl = FakeSymbl()
    late = LatePublisher()
    app = create_fetcher(settings, publisher=late, provider=symbl.client())
    broker = app.state.broker

    @broker.subscriber(
        settings.topics.insights,
        group_id=f"check-{uuid.uuid4()}",
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    async def insights_seen(body: dict[str, Any]) -> None: ...

    completed = JobCompleted(
        request_id="r-1",
        conversation_id="5815170693595136",
        job_id="job-1",
        submitted_at=datetime.now(UTC),
        detected_by="webhook",
    )
    failed = JobFailed(
        request_id="r-2",
        conversation_id="5815170693595137",
        job_id="job-2",
        submitted_at=datetime.now(UTC),
        reason="scripted",
    )
    async with TestKafkaBroker(broker, with_real=real) as test_broker:
        late.target = await started_publisher(settings, broker, real)
        try:
            await test_broker.publish(failed.to_wire(), settings.topics.completions, key=b"5815170693595137")
            await test_broker.publish(completed.to_wire(), settings.topics.completions, key=b"5815170693595136")
            await insights_seen.wait_call(timeout=20)
        finally:
            await late.target.stop()
        # The mock lives only while the test broker does.
        event = insights_seen.mock.call_args.args[0]
        calls = insights_seen.mock.call_count

    assert (event["eventType"], event["jobId"], event["requestId"]) == ("InsightsReady", "job-1", "r-1")
    assert event["insights"]["actionItems"] == {"action-items": [{"id": "1", "text": "a action-items item"}]}
    assert calls == 1, "the failed job produced nothing"
    reads = [path for _, path in symbl.calls if path.startswith("/v1/conversations/")]
    assert len(reads) == 9 and all("5815170693595136" in path for path in reads)


@pytest.mark.parametrize("real", [IN_MEMORY, REAL])
async def test_ingest_submits_commands_and_dead_letters_bad_ones(real: bool, request: pytest.FixtureRequest) -> None:
    settings: IngestSettings = settings_for(IngestSettings, request, real)
    symbl = FakeSymbl()
    late = LatePublisher()
    app = create_ingest(settings, publisher=late, provider=symbl.client())
    broker = app.state.broker
    group = f"check-{uuid.uuid4()}"

    @broker.subscriber(
        settings.topics.jobs, group_id=group, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    async def jobs_seen(body: dict[str, Any]) -> None: ...

    letters_arrived: list[dict[str, Any]] = []
    both_letters = asyncio.Event()

    @broker.subscriber(
        settings.topics.dead_letters, group_id=group, auto_offset_reset="earliest", isolation_level="read_committed"
    )
    async def letters_seen(body: dict[str, Any]) -> None:
        letters_arrived.append(body)
        if len(letters_arrived) >= 2:
            both_letters.set()

    good = ProcessRequested.model_validate(
        {"requestId": "req-good", "kind": "text", "messages": [{"payload": {"content": "hello"}}]}
    )
    refused = ProcessRequested.model_validate(
        {"requestId": "req-refused", "kind": "text", "messages": [{"payload": {"content": "refuse me"}}]}
    )
    garbage = b"\xff not json"
    async with TestKafkaBroker(broker, with_real=real) as test_broker:
        late.target = await started_publisher(settings, broker, real)
        try:
            await test_broker.publish(good.to_wire(), settings.topics.requests, key=b"req-good")
            await test_broker.publish(good.to_wire(), settings.topics.requests, key=b"req-good")
            await test_broker.publish(refused.to_wire(), settings.topics.requests, key=b"req-refused")
            await test_broker.publish(garbage, settings.topics.requests, key=b"garbage")
            await jobs_seen.wait_call(timeout=20)
            # wait_call returns at once after a first call; wait (bounded) for both dead letters instead.
            await asyncio.wait_for(both_letters.wait(), timeout=30)
        finally:
            await late.target.stop()
        submitted = [call.args[0] for call in jobs_seen.mock.call_args_list]
        dead = [call.args[0] for call in letters_seen.mock.call_args_list]

    assert {e["requestId"] for e in submitted} == {"req-good"}
    assert len({e["jobId"] for e in submitted}) == 1, "the repeated command reused the first provider job"
    assert sum(1 for method, path in symbl.calls if path == "/v1/process/text") == 2  # good once + refused
    letters = {e["originalKey"]: e for e in dead}
    refused_letter = letters[base64.b64encode(b"req-refused").decode()]
    assert "not allowed" in refused_letter["reason"] and refused_letter["errorType"] == "PermanentFailure"
    garbage_letter = letters[base64.b64encode(b"garbage").decode()]
    assert base64.b64decode(garbage_letter["originalValue"]) == garbage
    assert "invalid ProcessRequested" in garbage_letter["reason"]
