"""Hop declarations: streams decode and route typed events, a service runs exactly what it declares, HTTP inputs
commit before they count, and start-up reads skip other hops' events."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import FastAPI
from parley_ingest.app import create_app as create_ingest
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.app import create_app as create_insight_fetcher
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_job_watcher.app import create_app as create_job_watcher
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.events import (
    CompletionEvent,
    DeadLetter,
    JobCompleted,
    JobFailed,
    JobResolved,
    JobSubmitted,
    MediaKind,
)
from parley_shared.kafka.hops import Declarations, Feed, Outputs, Stream, Transform, UndeclaredOutput
from parley_shared.service import Emitter, PipelineService
from parley_shared.settings import ParleySettings
from pydantic import ValidationError

from tests.support.kafka_fakes import RecordingPublisher

JOB = {"request_id": "r-1", "conversation_id": "c-1", "job_id": "j-1"}


def completed() -> JobCompleted:
    return JobCompleted(**JOB, submitted_at="2026-12-01T10:00:00Z", detected_by="poll")


def test_a_stream_decodes_each_of_its_events_and_refuses_others() -> None:
    completions = Stream[JobCompleted | JobFailed]("parley.completions", CompletionEvent, "outcomes")

    assert completions.event_classes == (JobCompleted, JobFailed)
    assert completions.event_names == "JobCompleted | JobFailed"
    outcome = completed()
    assert completions.decode(outcome.to_wire()) == outcome
    resolved = JobResolved(**JOB, outcome="completed")
    with pytest.raises(ValidationError):
        completions.decode(resolved.to_wire())
    record = completions.record(completed())
    assert (record.topic, record.key) == ("parley.completions", b"c-1")


def test_outputs_go_to_the_stream_that_carries_their_type_and_nowhere_else() -> None:
    outputs = Outputs(
        (
            Stream[JobCompleted | JobFailed]("parley.completions", CompletionEvent, "outcomes"),
            Stream[JobResolved]("parley.jobs", JobResolved, "markers"),
        )
    )

    topics = [r.topic for r in outputs.records([completed(), JobResolved(**JOB, outcome="completed")])]

    assert topics == ["parley.completions", "parley.jobs"]
    with pytest.raises(UndeclaredOutput, match="JobSubmitted is not among this hop's outputs"):
        outputs.records([JobSubmitted(**JOB, kind=MediaKind.TEXT)])


def subscribed_topics(app: FastAPI) -> list[str]:
    broker = app.state.broker
    return sorted(topic.name for subscriber in broker.subscribers for topic in subscriber.topics)


@pytest.mark.parametrize(
    ("build", "consumed"),
    [
        (lambda: create_ingest(IngestSettings(instance_id="t")), ["parley.requests"]),
        (lambda: create_job_watcher(JobWatcherSettings(instance_id="t")), ["parley.jobs"]),
        (lambda: create_insight_fetcher(InsightFetcherSettings(instance_id="t")), ["parley.completions"]),
    ],
)
def test_each_service_subscribes_to_exactly_the_topics_its_hops_declare(build: Any, consumed: list[str]) -> None:
    app = build()
    declarations: Declarations = app.state.declarations

    assert subscribed_topics(app) == consumed == sorted(s.topic for s in declarations.consumed())
    for hop in declarations.hops:
        if isinstance(hop, Transform | Feed):  # reads Kafka records, so it can dead-letter the unreadable ones
            assert any(DeadLetter in stream.event_classes for stream in hop.produces), hop.name


def test_a_hop_that_reads_kafka_must_be_able_to_dead_letter() -> None:
    service = PipelineService("test", ParleySettings(), group_id="g", instance_id="t", publisher=RecordingPublisher())

    async def nothing(event: JobCompleted | JobFailed) -> list[JobResolved]:
        return []

    hop = Transform[JobCompleted | JobFailed, JobResolved](
        "no dead letters",
        consumes=Stream("parley.completions", CompletionEvent, "outcomes"),
        produces=(Stream[JobResolved]("parley.jobs", JobResolved, "markers"),),
        handler=nothing,
    )
    with pytest.raises(ValueError, match="must produce dead letters"):
        service.transform(hop)


async def test_an_http_input_counts_its_events_only_once_they_are_committed() -> None:
    counted: list[JobSubmitted] = []
    jobs = Stream[JobSubmitted]("parley.jobs", JobSubmitted, "jobs", on_committed=counted.append)
    publisher = RecordingPublisher(failures=[ConnectionError("the broker is unreachable")])
    emitter = Emitter(Outputs((jobs,)), publisher)
    submitted = JobSubmitted(**JOB, kind=MediaKind.TEXT)

    with pytest.raises(ConnectionError):
        await emitter.publish([submitted])
    assert counted == []
    await emitter.publish([submitted])

    assert counted == [submitted]
    [publication] = publisher.publications
    assert [r.topic for r in publication.records] == ["parley.jobs"]
    assert publication.consumed == {}
