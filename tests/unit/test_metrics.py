"""The metrics each plumbing point records, read back from the Prometheus text page as a scraper would.

Metrics are per process and other tests move them too, so each test compares a scrape after with one before.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaConnectionError
from fastapi import FastAPI
from faststream.kafka import TestKafkaBroker
from parley_ingest.metrics import SubmissionOutcomes
from parley_job_watcher.scheduler import PollPolicy
from parley_shared.events import JobCompleted, JobKind, JobSubmitted
from parley_shared.kafka.connection import make_broker
from parley_shared.kafka.consume import ConsumeProduceStep
from parley_shared.kafka.hops import Transform
from parley_shared.metrics import serve_metrics
from parley_shared.provider import JobNotFound, JobStatus, ProviderClient, ProviderRejected, ProviderUnavailable
from parley_shared.provider.metrics import provider_error_counter
from parley_shared.retry import RetryPolicy
from parley_shared.settings import KafkaSettings, ProviderSettings
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.engine import TEXT_MESSAGES, engine_settings, running_engine
from tests.support.job_watch import FakeJobApi, ProviderJob, make_watch, polling, submitted
from tests.support.kafka_fakes import FakeRecord, RecordedSleep, RecordingPublisher
from tests.support.provider_fakes import FakeConversationApi
from tests.support.scripted_hop import ScriptedHandler, make_step, record, said
from tests.support.virtual_time import START, VirtualClock, run_in_virtual_time

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(page: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(page)
        for sample in family.samples
    }


def scrape() -> Samples:
    return parse(generate_latest(REGISTRY).decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def increase(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


async def test_the_consume_step_counts_committed_records_retries_and_dead_letters() -> None:
    publisher, sleep = RecordingPublisher(), RecordedSleep()
    step = make_step(ScriptedHandler(), publisher, sleep)
    before = scrape()

    await step.handle_records(
        [
            record(0, 1, said("ok:a")),
            record(0, 2, said("bad")),
            record(0, 3, said("flaky:2")),
            record(0, 4, said("bug")),
        ]
    )
    after = scrape()

    handled = "parley_records_handled_total"
    assert increase(before, after, handled, service="ingest", outcome="handled") == 2
    assert increase(before, after, handled, service="ingest", outcome="dead_lettered") == 2
    assert increase(before, after, "parley_record_retries_total", service="ingest") == 2
    letters = "parley_dead_letters_total"
    assert increase(before, after, letters, service="ingest", reason_type="PermanentFailure") == 1
    assert increase(before, after, letters, service="ingest", reason_type="KeyError") == 1


async def test_a_batch_whose_commit_fails_is_not_counted_as_handled() -> None:
    publisher, sleep = RecordingPublisher(failures=[KafkaConnectionError()]), RecordedSleep()
    step = make_step(ScriptedHandler(), publisher, sleep)
    before = scrape()

    with pytest.raises(KafkaConnectionError):
        await step.handle_records([record(0, 1, said("ok:a")), record(0, 2, said("bad"))])

    after = scrape()
    assert increase(before, after, "parley_records_handled_total", service="ingest", outcome="handled") == 0
    assert increase(before, after, "parley_dead_letters_total", service="ingest", reason_type="PermanentFailure") == 0


@dataclass
class FakeConsumer:
    """The part of ``AIOKafkaConsumer`` the lag reads: assignment, end offsets and positions."""

    ends: dict[TopicPartition, int | None]
    positions: dict[TopicPartition, int]
    stable: dict[TopicPartition, int] = field(default_factory=dict)

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    def last_stable_offset(self, tp: TopicPartition) -> int | None:
        return self.stable.get(tp)

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.ends[tp]

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]


async def get_page(app: FastAPI) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
        return await client.get("/metrics")


async def test_consumer_lag_is_read_at_scrape_time_for_the_partitions_held_now() -> None:
    t0, t1, t2 = (TopicPartition("parley.jobs", p) for p in range(3))
    consumer = FakeConsumer(ends={t0: 10, t1: 7, t2: None}, positions={t0: 4, t1: 7, t2: 0}, stable={t0: 9})
    current: list[FakeConsumer | None] = [None]
    app = FastAPI()
    serve_metrics(app, "lag-test", consumer=lambda: current[0])

    not_started = parse((await get_page(app)).text)
    assert not [key for key in not_started if ("service", "lag-test") in key[1]]

    current[0] = consumer
    page = parse((await get_page(app)).text)
    # Read-committed: the last stable offset (9), not the high watermark (10), is as far as it can read.
    assert value(page, "parley_consumer_lag", service="lag-test", topic="parley.jobs", partition="0") == 5
    assert value(page, "parley_consumer_lag", service="lag-test", topic="parley.jobs", partition="1") == 0
    lag_series = [key for key in page if key[0] == "parley_consumer_lag" and ("service", "lag-test") in key[1]]
    assert len(lag_series) == 2, "a partition nothing was fetched from yet has no lag to report"

    current[0] = FakeConsumer(ends={t1: 12}, positions={t1: 8})  # partition 0 went to another replica
    page = parse((await get_page(app)).text)
    lag_series = [key for key in page if key[0] == "parley_consumer_lag" and ("service", "lag-test") in key[1]]
    assert lag_series == [
        ("parley_consumer_lag", frozenset({("service", "lag-test"), ("topic", "parley.jobs"), ("partition", "1")}))
    ]
    assert value(page, "parley_consumer_lag", service="lag-test", topic="parley.jobs", partition="1") == 4


async def test_the_page_counts_requests_by_route_template_and_survives_a_failing_hook() -> None:
    app = FastAPI()

    @app.get("/items/{item_id}")
    async def item(item_id: int) -> dict[str, int]:
        return {"item": item_id}

    async def broken_gauge() -> None:
        raise ConnectionError("the database is away")

    serve_metrics(app, "http-test", before_scrape=[broken_gauge])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
        for path in ("/items/1", "/items/2", "/items/x", "/nowhere"):
            await client.get(path)
        page = await client.get("/metrics")
        schema = (await client.get("/openapi.json")).json()

    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = parse(page.text)
    requests = "parley_http_requests_total"
    labels = {"service": "http-test", "method": "GET"}
    assert value(samples, requests, **labels, route="/items/{item_id}", status_code="200") == 2
    assert value(samples, requests, **labels, route="/items/{item_id}", status_code="422") == 1
    assert value(samples, requests, **labels, route="unmatched", status_code="404") == 1
    assert value(samples, "parley_http_request_duration_seconds_count", **labels, route="/items/{item_id}") == 3
    assert "/metrics" not in schema["paths"], "the metrics page stays out of the API documents"


async def test_provider_attempts_that_are_not_2xx_are_counted_by_status() -> None:
    answers = iter(
        [httpx.Response(503), httpx.Response(429), httpx.Response(200, json={"id": "j", "status": "completed"})]
    )

    def provider(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("token:generate"):
            return httpx.Response(200, json={"accessToken": "token-123456", "expiresIn": 3600})
        if request.url.path == "/v1/job/timeout":
            raise httpx.ReadTimeout("no answer", request=request)
        if request.url.path == "/v1/job/gone":
            return httpx.Response(404, json={"message": "no such job"})
        return next(answers)

    async def no_wait(_: float) -> None:
        return None

    settings = ProviderSettings(url="http://provider.test")
    before = scrape()
    async with ProviderClient(
        settings,
        transport=httpx.MockTransport(provider),
        sleep=no_wait,
        on_response=provider_error_counter("provider-test"),
        retry_policy=RetryPolicy(base_seconds=0.01, max_seconds=0.01, max_attempts=3),
    ) as client:
        assert (await client.get_job("j")).status == "completed"
        with pytest.raises(JobNotFound):
            await client.get_job("gone")
        with pytest.raises(ProviderUnavailable):
            await client.get_job("timeout")
    after = scrape()

    errors = "parley_provider_errors_total"
    assert increase(before, after, errors, service="provider-test", status_code="503") == 1
    assert increase(before, after, errors, service="provider-test", status_code="429") == 1
    assert increase(before, after, errors, service="provider-test", status_code="404") == 1
    assert increase(before, after, errors, service="provider-test", status_code="timeout") == 3
    assert increase(before, after, errors, service="provider-test", status_code="200") == 0


async def test_submissions_are_counted_by_outcome_an_accepted_one_once_its_job_is_committed() -> None:
    async def answer(result: tuple[str, bool] | Exception) -> tuple[str, bool]:
        if isinstance(result, Exception):
            raise result
        return result

    def job(request_id: str) -> JobSubmitted:
        return JobSubmitted(request_id=request_id, conversation_id="c", job_id="j", kind=JobKind.TEXT)

    outcomes = SubmissionOutcomes()
    before = scrape()
    await outcomes.answered(answer(("job-1", True)), "r-1")
    await outcomes.answered(answer(("job-1", False)), "r-2")
    for error in (
        ProviderRejected("bad body", status=400, provider_message="bad body"),
        ProviderUnavailable("503", status=503, attempts=6),
    ):
        with pytest.raises(type(error)):
            await outcomes.answered(answer(error), "r-3")
    answered = scrape()
    outcomes.committed(job("r-1"))
    outcomes.committed(job("r-2"))
    outcomes.committed(job("r-1"))  # a second commit of the same answer is not a second submission
    outcomes.committed(job("stream-58"))  # a live stream's job was never submitted
    after = scrape()

    requests = "parley_requests_total"
    for outcome in ("rejected", "unavailable"):
        assert increase(before, answered, requests, service="ingest", outcome=outcome) == 1, outcome
    for outcome in ("accepted", "duplicate"):
        assert increase(before, answered, requests, service="ingest", outcome=outcome) == 0, outcome
        assert increase(before, after, requests, service="ingest", outcome=outcome) == 1, outcome


def test_job_outcomes_polls_and_pending_jobs_are_counted() -> None:
    before = scrape()
    polls: list[int] = []
    not_committed: Samples = {}

    async def scenario(clock: VirtualClock) -> None:
        jobs = {
            "m-done": ProviderJob(finishes_at=START + 5),
            "m-failed": ProviderJob(finishes_at=START + 5, final=JobStatus.FAILED, reason="no audio"),
            "m-slow": ProviderJob(),  # never finishes: expires at the deadline
        }
        publisher = RecordingPublisher(failures=[ConnectionError("the broker is unreachable")])
        watch = make_watch(clock, FakeJobApi(clock, jobs), publisher, policy=PollPolicy(deadline_seconds=600))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            for offset, job_id in enumerate(jobs):
                watch.on_submitted(submitted(job_id, START), partition=0, offset=offset)
            await asyncio.sleep(900)
        polls.append(watch.status_polls)
        with pytest.raises(ConnectionError):
            await watch.flush()
        not_committed.update(scrape())  # the outcomes are settled but their transaction failed: not counted
        await watch.flush()

    run_in_virtual_time(scenario)
    after = scrape()

    jobs = "parley_jobs_total"
    assert increase(before, not_committed, jobs, service="job-watcher", outcome="completed", detected_by="poll") == 0
    assert increase(before, after, jobs, service="job-watcher", outcome="completed", detected_by="poll") == 1
    assert increase(before, after, jobs, service="job-watcher", outcome="failed", detected_by="poll") == 1
    assert increase(before, after, jobs, service="job-watcher", outcome="expired", detected_by="poll") == 1
    assert increase(before, after, "parley_status_polls_total", service="job-watcher") == polls[0] > 3


async def test_the_job_watcher_page_shows_pending_jobs_and_webhooks_by_result() -> None:
    from parley_job_watcher.app import create_app
    from parley_job_watcher.settings import JobWatcherSettings
    from parley_shared.webhook_signatures import SIGNATURE_HEADER, signature
    from pydantic import SecretStr

    app = create_app(JobWatcherSettings(webhook_secret=SecretStr("webhook-secret")))  # not started: no Kafka
    watch = app.state.watch
    watch.assign(0, committed=0, end=0)
    for offset, job_id in enumerate(("p-1", "p-2")):
        watch.on_submitted(submitted(job_id, START), partition=0, offset=offset)
    body = b'{"jobId": "p-1", "status": "in_progress"}'
    headers = {"Content-Type": "application/json"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        before = parse((await client.get("/metrics")).text)
        await client.post("/webhooks/jobs", content=body, headers=headers)
        await client.post(
            "/webhooks/jobs", content=body, headers={**headers, SIGNATURE_HEADER: signature("webhook-secret", body)}
        )
        after = parse((await client.get("/metrics")).text)

    assert value(after, "parley_pending_jobs", service="job-watcher") == 2
    webhooks = "parley_webhooks_received_total"
    assert increase(before, after, webhooks, service="job-watcher", result="accepted") == 1
    assert increase(before, after, webhooks, service="job-watcher", result="refused") == 1
    route = {"service": "job-watcher", "method": "POST", "route": "/webhooks/jobs"}
    assert increase(before, after, "parley_http_requests_total", **route, status_code="202") == 1
    assert increase(before, after, "parley_http_requests_total", **route, status_code="401") == 1


async def test_completion_to_insights_latency_is_observed_once_per_committed_insights_ready() -> None:
    from parley_insight_fetcher.app import create_app
    from parley_insight_fetcher.settings import InsightFetcherSettings

    app = create_app(InsightFetcherSettings(), provider=FakeConversationApi())  # not started: no Kafka
    [hop] = app.state.declarations.hops
    assert isinstance(hop, Transform)
    publisher = RecordingPublisher(failures=[KafkaConnectionError()])
    step = ConsumeProduceStep(hop, service="insight-fetcher", publisher=publisher, group_id="metrics-test")
    completed = JobCompleted(
        request_id="r-1",
        conversation_id="c-1",
        job_id="j-1",
        submitted_at=datetime.now(UTC) - timedelta(seconds=9),
        completed_at=datetime.now(UTC) - timedelta(seconds=3),
        detected_by="poll",
    )
    completion = FakeRecord("parley.completions", 0, 1, b"c-1", completed.to_wire())
    latency = "parley_completion_to_insights_seconds"
    before = scrape()

    with pytest.raises(KafkaConnectionError):
        await step.handle_records([completion])
    assert increase(before, scrape(), f"{latency}_count", service="insight-fetcher") == 0, "rolled back: not counted"
    await step.handle_records([completion])
    after = scrape()

    assert len(publisher.publications) == 1
    assert increase(before, after, f"{latency}_count", service="insight-fetcher") == 1
    assert 3 <= increase(before, after, f"{latency}_sum", service="insight-fetcher") < 60
    assert increase(before, after, f"{latency}_bucket", service="insight-fetcher", le="2.5") == 0
    assert increase(before, after, f"{latency}_bucket", service="insight-fetcher", le="5.0") == 1


async def test_faststream_counts_consumed_messages_once_per_process_however_many_brokers() -> None:
    make_broker(KafkaSettings(), client_id="metrics-test-1")  # a second broker in the process must not double-count
    second = make_broker(KafkaSettings(), client_id="metrics-test-2")
    received: list[bytes] = []

    @second.subscriber("metrics-test-topic")
    async def consume(body: bytes) -> None:
        received.append(body)

    before = scrape()
    async with TestKafkaBroker(second) as broker:
        await broker.publish(b"one", "metrics-test-topic")
        await broker.publish(b"two", "metrics-test-topic")
    after = scrape()

    assert received == [b"one", b"two"]
    labels = {"app_name": "parley", "broker": "kafka", "handler": "metrics-test-topic"}
    assert increase(before, after, "faststream_received_messages_total", **labels) == 2


async def test_the_engine_counts_jobs_by_outcome_and_its_queue(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        before = parse((await engine.client.get("/metrics")).text)
        submitted_job = await engine.submit_text(TEXT_MESSAGES)
        assert (await engine.wait_for_job(submitted_job["jobId"]))["status"] == "completed"
        after = parse((await engine.client.get("/metrics")).text)

    assert increase(before, after, "parley_engine_jobs_total", service="engine", outcome="completed") == 1
    assert value(after, "parley_engine_active_jobs", service="engine") == 0
    route = {"service": "engine", "method": "POST", "route": "/v1/process/text", "status_code": "200"}
    assert increase(before, after, "parley_http_requests_total", **route) == 1
    polls = {"service": "engine", "method": "GET", "route": "/v1/job/{jobId}", "status_code": "200"}
    assert increase(before, after, "parley_http_requests_total", **polls) >= 1
