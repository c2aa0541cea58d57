"""End to end on the real broker: the provider double and the three services as separate processes.

The double records every call with its time and moves jobs scheduled → in_progress → completed/failed after a
delay, so these tests can prove the gate (no Conversation API read before its job completed), exactly one outcome
per job, idempotent submission, dead letters for bad commands, and recovery of pending jobs after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from parley_shared.events import MediaKind, ProcessRequested

from parley_cli.watching import TopicFollower
from parley_devtools.provider_double import gate_violations
from tests.support.pipeline_stack import Pipeline, collect, running_pipeline, submit_text, text_body

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    with running_pipeline(kafka_bootstrap, tmp_path_factory.mktemp("e2e-logs")) as running:
        yield running


async def test_every_conversation_ends_in_exactly_one_outcome(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights, topics.dead_letters]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):
        ok = [await submit_text(client, text_body(n)) for n in range(12)]
        failed = [await submit_text(client, text_body(100 + n, fail=True)) for n in range(3)]
        # The same idempotency key twice: one provider job.
        first = await submit_text(client, text_body(200), key="e2e-same-request")
        again = await submit_text(client, text_body(200), key="e2e-same-request")
        assert (again["jobId"], again["duplicate"]) == (first["jobId"], True)
        # The same commands from Kafka, one of them broken.
        command = ProcessRequested(
            request_id=f"kafka-{uuid.uuid4()}",
            kind=MediaKind.TEXT,
            messages=text_body(300)["messages"],
            name="from kafka",
        )
        broken = b'{"eventType": "ProcessRequested", "requestId": "broken-1", "kind": "text", "messages": []}'
        producer = AIOKafkaProducer(bootstrap_servers=pipeline.kafka.bootstrap_servers)
        await producer.start()
        try:
            await producer.send_and_wait(topics.requests, command.to_wire(), key=command.request_id.encode())
            await producer.send_and_wait(topics.requests, broken, key=b"broken-1")
        finally:
            await producer.stop()

        succeeded = {a["jobId"] for a in [*ok, first]}
        expected = succeeded | {a["jobId"] for a in failed} | {"broken-1"}
        seen = await collect(follower, expected, wait_seconds=60)

    insights = Counter(e["jobId"] for e in seen.get("InsightsReady", []))
    kafka_jobs = [e for e in seen.get("InsightsReady", []) if e["requestId"] == command.request_id]
    assert len(kafka_jobs) == 1, "the Kafka command yields its insights"
    for accepted in [*ok, first]:
        assert insights[accepted["jobId"]] == 1, f"exactly one InsightsReady for {accepted['jobId']}"
    assert all(count == 1 for count in insights.values()), insights
    for event in seen["InsightsReady"]:
        assert set(event["insights"]) >= {
            "messages",
            "topics",
            "questions",
            "actionItems",
            "followUps",
            "entities",
            "analytics",
            "summary",
            "members",
        }
        if event["jobId"] == ok[3]["jobId"]:
            assert event["conversationId"] == ok[3]["conversationId"]
            assert "conversation 3" in json.dumps(event["insights"]["messages"])
    failures = {e["jobId"]: e for e in seen.get("JobFailed", [])}
    assert set(failures) == {a["jobId"] for a in failed}
    assert all(failures[a["jobId"]]["reason"] for a in failed)
    assert not {a["jobId"] for a in failed} & set(insights), "a failed job yields no insights"
    completed = Counter(e["jobId"] for e in seen.get("JobCompleted", []))
    assert all(count == 1 for count in completed.values()), completed
    assert "webhook" in {e["detectedBy"] for e in seen["JobCompleted"]}
    letters = [e for e in seen.get("DeadLetter", []) if e.get("requestId") == "broken-1"]
    assert len(letters) == 1 and "messages" in letters[0]["reason"]
    assert base64.b64decode(letters[0]["originalValue"]) == broken
    assert letters[0]["sourceTopic"] == topics.requests

    async with httpx.AsyncClient(base_url=pipeline.double) as double:
        log = (await double.get("/_double/calls")).json()
        jobs = (await double.get("/_double/jobs")).json()["jobs"]
    assert gate_violations(log["calls"], log["transitions"]) == []
    reads = [c for c in log["calls"] if "/v1/conversations/" in c["path"]]
    assert reads, "the insight-fetcher read the Conversation API"
    assert not any(c.get("conversationId") == failed[0]["conversationId"] for c in reads)
    assert sum(1 for j in jobs if j["jobId"] == first["jobId"]) == 1
    # 12 + 3 + 1 (deduplicated) + 1 Kafka command: the broken command never reached the provider.
    assert len(jobs) == 17


async def test_appending_yields_a_new_job_and_fresh_insights(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):
        original = await submit_text(client, text_body(500))
        await collect(follower, {original["jobId"]}, settle_seconds=0.5)
        body = {
            "messages": [
                {
                    "payload": {"content": "An appended line about the budget."},
                    "from": {"userId": "cy@example.com", "name": "Cy"},
                }
            ]
        }
        appended = await submit_text(client, body, conversation_id=original["conversationId"])
        assert appended["conversationId"] == original["conversationId"] and appended["jobId"] != original["jobId"]
        seen = await collect(follower, {appended["jobId"]}, settle_seconds=1.0)
    latest = [e for e in seen["InsightsReady"] if e["jobId"] == appended["jobId"]]
    assert len(latest) == 1 and latest[0]["conversationId"] == original["conversationId"]
    assert "appended line about the budget" in json.dumps(latest[0]["insights"]["messages"])
    async with httpx.AsyncClient(base_url=pipeline.double) as double:
        log = (await double.get("/_double/calls")).json()
    assert gate_violations(log["calls"], log["transitions"]) == []


async def test_pending_jobs_survive_a_job_watcher_crash(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):
        accepted = [await submit_text(client, text_body(400 + n)) for n in range(8)]
        # Kill job-watcher while the jobs are still pending (the double takes over a second per job) and
        # drop webhooks meanwhile: the restarted watcher must rebuild its jobs from Kafka and poll them.
        pipeline.restart("job-watcher", kill=True)
        seen = await collect(follower, {a["jobId"] for a in accepted}, wait_seconds=60)
    insights = Counter(e["jobId"] for e in seen.get("InsightsReady", []))
    for a in accepted:
        assert insights[a["jobId"]] == 1
    completed = Counter(e["jobId"] for e in seen.get("JobCompleted", []))
    assert all(completed[a["jobId"]] == 1 for a in accepted), completed


async def test_sigterm_drains_in_flight_work_without_losing_or_duplicating_it(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):
        accepted = [await submit_text(client, text_body(600 + n)) for n in range(10)]
        await asyncio.sleep(1.3)  # the first jobs are completing: insight-fetcher has work in flight
        pipeline.restart("insight-fetcher", kill=False)  # SIGTERM: drain, commit what finished, stop
        pipeline.restart("job-watcher", kill=False)
        seen = await collect(follower, {a["jobId"] for a in accepted}, wait_seconds=60)
    insights = Counter(e["jobId"] for e in seen.get("InsightsReady", []))
    assert all(insights[a["jobId"]] == 1 for a in accepted), insights
    completed = Counter(e["jobId"] for e in seen.get("JobCompleted", []))
    assert all(completed[a["jobId"]] == 1 for a in accepted), completed


async def test_media_uploads_and_urls_flow_through(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    audio = bytes(range(256)) * 8192  # 2 MiB, streamed by ingest to the provider in chunks
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=30) as client,
    ):

        async def chunks() -> Any:
            for start in range(0, len(audio), 65536):
                yield audio[start : start + 65536]

        response = await client.post(
            "/v1/process/audio?name=upload&customVocabulary=%5B%22Parley%22%5D",
            content=chunks(),
            headers={"Content-Type": "audio/wav", "Content-Length": str(len(audio))},
        )
        assert response.status_code == 202, response.text
        uploaded = response.json()
        response = await client.post("/v1/process/video/url", json={"url": "https://media.example/talk.mp4"})
        assert response.status_code == 202, response.text
        by_url = response.json()
        refused = await client.post("/v1/process/audio", content=b"abc", headers={"Content-Type": "text/plain"})
        assert refused.status_code == 415 and "Content-Type" in refused.json()["message"]
        seen = await collect(follower, {uploaded["jobId"], by_url["jobId"]}, settle_seconds=0.5)
    assert {e["jobId"] for e in seen["InsightsReady"]} >= {uploaded["jobId"], by_url["jobId"]}
    async with httpx.AsyncClient(base_url=pipeline.double) as double:
        jobs = {j["jobId"]: j for j in (await double.get("/_double/jobs")).json()["jobs"]}
    assert jobs[uploaded["jobId"]]["bodyBytes"] == len(audio)


def test_the_submit_command_waits_and_prints_insights(pipeline: Pipeline) -> None:
    sample = Path(__file__).resolve().parents[2] / "samples" / "meeting.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "parley_cli",
            "submit",
            str(sample),
            "--wait",
            "--timeout",
            "60",
            "--ingest-url",
            pipeline.ingest,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env={**pipeline.stack.env, "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "insights ready" in result.stdout
    assert "Questions (2)" in result.stdout and "Members: Natalia, Mike, Priya" in result.stdout
