"""End to end: after a run with known outcomes, every service's /metrics counts exactly what happened.

The provider double logs each call it answered and each webhook it delivered, and the topics show each outcome, so
the metrics are checked against those records rather than against numbers written into the test twice.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from parley_shared.events import MediaKind, ProcessRequested
from prometheus_client.parser import text_string_to_metric_families

from parley_cli.watching import TopicFollower
from tests.support.pipeline_stack import Pipeline, running_pipeline, submit_text, text_body

pytestmark = [pytest.mark.kafka, pytest.mark.e2e]

SERVICES = ("ingest", "job-watcher", "insight-fetcher")
UNKNOWN_CONVERSATION = "9999999999999999"
OK_CONVERSATIONS = 6
FAILING_CONVERSATIONS = 2

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("e2e-metrics-logs")) as running:
        yield running


async def scrape(pipeline: Pipeline, service: str) -> Samples:
    async with httpx.AsyncClient(base_url=pipeline.stack.processes[service].url, timeout=10) as client:
        response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum over every series of ``name`` that has ``labels`` (and any others)."""
    wanted = set(labels.items())
    return sum(value for (sample, series), value in samples.items() if sample == name and wanted <= series)


def lags(samples: Samples) -> dict[str, float]:
    return {
        f"{dict(series)['topic']}[{dict(series)['partition']}]": value
        for (sample, series), value in samples.items()
        if sample == "parley_consumer_lag"
    }


async def produce(pipeline: Pipeline, records: list[tuple[str, bytes, bytes]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap_servers)
    await producer.start()
    try:
        for topic, key, value in records:
            await producer.send_and_wait(topic, value, key=key)
    finally:
        await producer.stop()


async def outcomes(follower: TopicFollower, *, insights: int, failed: int, dead_letters: int) -> dict[str, list[Any]]:
    """Events by eventType (the test's own malformed records left out) once the expected numbers have arrived."""
    seen: dict[str, list[dict[str, Any]]] = {}

    def done() -> bool:
        return (
            len(seen.get("InsightsReady", [])) >= insights
            and len(seen.get("JobFailed", [])) >= failed
            and len(seen.get("DeadLetter", [])) >= dead_letters
        )

    async def read() -> None:
        async for _, event in follower.events():
            if str(event.get("requestId", "")).startswith("malformed-") and event.get("eventType") != "DeadLetter":
                continue
            seen.setdefault(event.get("eventType", "?"), []).append(event)
            if done():
                return

    await asyncio.wait_for(read(), 90)
    return seen


async def settled_pages(pipeline: Pipeline) -> dict[str, Samples]:
    """Every service's page once nothing is left to read or watch: all lag 0 and no pending job (bounded wait)."""
    for _ in range(300):
        pages = {service: await scrape(pipeline, service) for service in SERVICES}
        lag_values = [value for page in pages.values() for value in lags(page).values()]
        pending = total(pages["job-watcher"], "parley_pending_jobs")
        if all(lags(page) for page in pages.values()) and not any(lag_values) and pending == 0:
            return pages
        await asyncio.sleep(0.2)
    raise AssertionError(f"the pipeline did not settle: lag {[lags(p) for p in pages.values()]}, pending {pending}")


async def test_every_service_counts_what_happened(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights, topics.dead_letters]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):
        ok = [await submit_text(client, text_body(n), key=f"metrics-{uuid.uuid4()}") for n in range(OK_CONVERSATIONS)]
        for n in range(FAILING_CONVERSATIONS):
            await submit_text(client, text_body(100 + n, fail=True))
        duplicate = await client.post(
            "/v1/process/text", json=text_body(0), headers={"Idempotency-Key": ok[0]["requestId"]}
        )
        assert duplicate.json()["duplicate"] is True
        unknown = await client.put(f"/v1/process/text/{UNKNOWN_CONVERSATION}", json=text_body(200))
        assert unknown.status_code == 404, unknown.text

        def command(conversation_id: str | None = None) -> ProcessRequested:
            return ProcessRequested(
                request_id=f"kafka-{uuid.uuid4()}",
                kind=MediaKind.TEXT,
                messages=text_body(300)["messages"],
                conversation_id=conversation_id,
            )

        good, appending_to_nothing = command(), command(UNKNOWN_CONVERSATION)
        await produce(
            pipeline,
            [
                (topics.requests, b"k-1", good.to_wire()),
                (topics.requests, b"k-2", appending_to_nothing.to_wire()),
                (topics.requests, b"k-3", b'{"eventType": "ProcessRequested", "requestId": "malformed-1"}'),
                (topics.jobs, b"k-4", b'{"eventType": "JobSubmitted", "requestId": "malformed-2"}'),
                (topics.completions, b"k-5", b'{"eventType": "JobCompleted", "requestId": "malformed-3"}'),
            ],
        )
        seen = await outcomes(follower, insights=OK_CONVERSATIONS + 1, failed=FAILING_CONVERSATIONS, dead_letters=4)
        pages = await settled_pages(pipeline)

    async with httpx.AsyncClient(base_url=pipeline.double) as double:
        calls = (await double.get("/_double/calls")).json()["calls"]
        webhooks = (await double.get("/_double/jobs")).json()["webhooks"]

    ingest, watcher, fetcher = pages["ingest"], pages["job-watcher"], pages["insight-fetcher"]
    letters = Counter(letter["service"] for letter in seen["DeadLetter"])
    assert letters == {"ingest": 2, "job-watcher": 1, "insight-fetcher": 1}, seen["DeadLetter"]

    # ingest: every submission by outcome, HTTP or Kafka; the provider's 404s; records and dead letters.
    submissions = OK_CONVERSATIONS + FAILING_CONVERSATIONS + 1
    assert total(ingest, "parley_requests_total", outcome="accepted") == submissions
    assert total(ingest, "parley_requests_total", outcome="duplicate") == 1
    assert total(ingest, "parley_requests_total", outcome="rejected") == 2
    assert total(ingest, "parley_provider_errors_total", status_code="404") == 2
    assert total(ingest, "parley_records_handled_total", outcome="handled") == 1
    assert total(ingest, "parley_records_handled_total", outcome="dead_lettered") == 2
    assert total(ingest, "parley_dead_letters_total") == letters["ingest"]
    assert total(ingest, "faststream_received_messages_total", handler=topics.requests) == 3
    text_route = {"method": "POST", "route": "/v1/process/text"}
    assert total(ingest, "parley_http_requests_total", **text_route, status_code="202") == submissions
    append_route = {"method": "PUT", "route": "/v1/process/text/{conversation_id}"}
    assert total(ingest, "parley_http_requests_total", **append_route, status_code="404") == 1

    # job-watcher: outcomes as published, by how they were noticed; polls and webhooks as the double saw them.
    completed = Counter(event["detectedBy"] for event in seen["JobCompleted"])
    assert sum(completed.values()) == OK_CONVERSATIONS + 1
    for detected_by in ("webhook", "poll"):
        series = {"outcome": "completed", "detected_by": detected_by}
        assert total(watcher, "parley_jobs_total", **series) == completed[detected_by], detected_by
    assert total(watcher, "parley_jobs_total", outcome="failed") == len(seen["JobFailed"]) == FAILING_CONVERSATIONS
    assert total(watcher, "parley_jobs_total", outcome="expired") == 0
    assert total(watcher, "parley_pending_jobs") == 0
    status_checks = [c for c in calls if c["method"] == "GET" and c["path"].startswith("/v1/job/")]
    assert total(watcher, "parley_status_polls_total") == len(status_checks) >= submissions
    assert total(watcher, "parley_webhooks_received_total", result="accepted") == webhooks["delivered"] > 0
    assert total(watcher, "parley_webhooks_received_total", result="refused") == 0
    assert total(watcher, "parley_dead_letters_total", reason_type="InvalidInput") == letters["job-watcher"]

    # insight-fetcher: one latency observation per InsightsReady; every completion record handled or dead-lettered.
    assert total(fetcher, "parley_completion_to_insights_seconds_count") == len(seen["InsightsReady"])
    assert total(fetcher, "parley_completion_to_insights_seconds_sum") > 0
    completions = len(seen["JobCompleted"]) + len(seen["JobFailed"])
    assert total(fetcher, "parley_records_handled_total", outcome="handled") == completions
    assert total(fetcher, "parley_records_handled_total", outcome="dead_lettered") == letters["insight-fetcher"]
    assert total(fetcher, "parley_dead_letters_total") == letters["insight-fetcher"]

    # Every provider error any service counted is an answer the double gave, and the other way round.
    answered = Counter(str(c["status"]) for c in calls if not 200 <= c["status"] < 300)
    counted = {
        status: sum(total(page, "parley_provider_errors_total", status_code=status) for page in pages.values())
        for status in answered
    }
    assert counted == answered == {"404": 2}
    assert sum(total(page, "parley_provider_errors_total") for page in pages.values()) == 2
