"""One trace per conversation, across processes: ingest, the engine, job-watcher and insight-fetcher export their spans
over OTLP to a real receiver, and the spans of all of them join the trace that ingest's HTTP request started.

The same run checks the logs: every service writes JSON lines, and the lines about this conversation carry its ids and
that trace id.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from parley_shared.kafka.history import read_since

from parley_cli.watching import TopicFollower
from tests.support.otlp_receiver import OtlpReceiver, running_otlp_receiver
from tests.support.pipeline_stack import Pipeline, collect, running_pipeline

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
SERVICES = ("parley-ingest", "parley-engine", "parley-job-watcher", "parley-insight-fetcher")


@pytest.fixture(scope="module")
def receiver() -> Iterator[OtlpReceiver]:
    with running_otlp_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def pipeline(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory, receiver: OtlpReceiver
) -> Iterator[Pipeline]:
    traced = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "PARLEY_LOG_FORMAT": "json",
    }
    with running_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("traced"), provider="engine", env=traced) as running:
        yield running


async def test_the_spans_of_every_service_join_the_conversations_trace(
    pipeline: Pipeline, receiver: OtlpReceiver
) -> None:
    topics = pipeline.topics
    started = datetime.now(UTC) - timedelta(seconds=5)
    meeting = json.loads((SAMPLES / "meeting.json").read_text())
    async with (
        TopicFollower(pipeline.kafka, [topics.insights, topics.dead_letters]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=60) as client,
    ):
        submitted = (await client.post("/v1/process/text", json=meeting)).json()
        seen = await collect(follower, {submitted["jobId"]}, settle_seconds=0.5, wait_seconds=120)
    assert [e["jobId"] for e in seen["InsightsReady"]] == [submitted["jobId"]]

    # The trace ingest's request started: its server span for POST /v1/process/text is the root.
    def ingest_root() -> list[str]:
        return [
            s.trace_id
            for s in receiver.spans
            if s.service == "parley-ingest" and s.parent_span_id == "" and "/v1/process/text" in s.name
        ]

    assert receiver.wait_for(lambda: len(ingest_root()) == 1, timeout=15), "ingest exported no request span"
    trace_id = ingest_root()[0]

    # The InsightsReady record carries that trace on to whoever consumes it next.
    insights_records = [r async for r in read_since(pipeline.kafka, topics.insights, started)]
    parents = [dict(r.headers).get("traceparent", b"").decode() for r in insights_records]
    assert len(parents) == 1 and parents[0].split("-")[1] == trace_id, parents

    def joined_services() -> set[str]:
        return {s.service for s in receiver.trace(trace_id)}

    receiver.wait_for(lambda: joined_services() >= set(SERVICES), timeout=15)
    spans = receiver.trace(trace_id)
    assert joined_services() >= set(SERVICES), sorted({(s.service, s.name) for s in spans})

    names = {(s.service, s.name) for s in spans}
    assert ("parley-job-watcher", "check job status") in names
    assert ("parley-insight-fetcher", f"process {topics.completions}") in names
    # Provider calls are client spans in the caller and server spans in the engine, parent and child.
    by_id = {s.span_id: s for s in spans}
    engine_job_reads = [s for s in spans if s.service == "parley-engine" and "/v1/job/" in s.name]
    assert engine_job_reads and all(by_id[s.parent_span_id].service == "parley-job-watcher" for s in engine_job_reads)
    # Every span but the root hangs off another span of the same trace: one tree, no orphans.
    orphans = [s for s in spans if s.parent_span_id and s.parent_span_id not in by_id]
    assert not orphans, orphans
    conversation_spans = [s for s in spans if s.attributes.get("parley.conversationId")]
    assert {s.attributes["parley.conversationId"] for s in conversation_spans} == {submitted["conversationId"]}


async def test_log_lines_about_the_conversation_carry_its_ids_and_trace(
    pipeline: Pipeline, receiver: OtlpReceiver
) -> None:
    meeting = json.loads((SAMPLES / "meeting.json").read_text())
    async with (
        TopicFollower(pipeline.kafka, [pipeline.topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=60) as client,
    ):
        submitted = (await client.post("/v1/process/text", json=meeting)).json()
        await collect(follower, {submitted["jobId"]}, settle_seconds=0.5, wait_seconds=120)

    def traces_of_conversation() -> set[str]:
        return {
            s.trace_id
            for s in receiver.spans
            if s.attributes.get("parley.conversationId") == submitted["conversationId"]
        }

    receiver.wait_for(lambda: len(traces_of_conversation()) == 1, timeout=15)
    assert len(traces_of_conversation()) == 1
    (trace_id,) = traces_of_conversation()

    for name in ("ingest", "job-watcher", "insight-fetcher"):
        log = [line for line in pipeline.stack.processes[name].log_path.read_text().splitlines() if line.strip()]
        # Every line is JSON, libraries' included: nothing bypasses the structured handler.
        parsed = [json.loads(line) for line in log]
        about = [line for line in parsed if line.get("jobId") == submitted["jobId"]]
        assert about, f"{name} logged nothing about job {submitted['jobId']}"
        for line in about:
            assert line["conversationId"] == submitted["conversationId"], line
            assert line["requestId"] == submitted["requestId"], line
            assert line["traceId"] == trace_id, line
            assert line["level"] and line["timestamp"] and line["message"], line
