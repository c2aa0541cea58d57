"""Trace context across a hop, job-watcher's spans in the conversation's trace, and structured log lines.

Spans go to an in-memory exporter on the process's tracer provider (OpenTelemetry allows one per process, so the
tests add their exporter to whichever SDK provider is installed).
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator
from typing import Any, cast

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from parley_shared.kafka.publishing import OutgoingRecord, with_trace_context
from parley_shared.logs import ParleyLogHandler, bind_ids, configure_logging
from parley_shared.provider import ProviderClient
from parley_shared.settings import ProviderSettings
from parley_shared.tracing import OtelSettings, continuing_trace, span_exporter, spans_recorded_by

from tests.support.job_watch import FakeJobApi, ProviderJob, make_watch, polling, submitted
from tests.support.kafka_fakes import FakeRecord, RecordedSleep, RecordingPublisher
from tests.support.scripted_hop import DEAD_LETTERS, OUTPUT, ScriptedHandler, make_step, said
from tests.support.virtual_time import START, VirtualClock, run_in_virtual_time

UPSTREAM_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
UPSTREAM_SPAN = "00f067aa0ba902b7"
UPSTREAM = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Parley's spans, recorded in memory by a provider of the test's own.

    The process's global provider may already be set (any app built in this process installs one, unrecorded when
    nothing is exported), and OpenTelemetry allows only one, so Parley's tracer is swapped for this test instead.
    """
    provider = TracerProvider()  # records every span, as when traces are exported
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with spans_recorded_by(provider):
        yield exporter
    provider.shutdown()


def traced_record(offset: int, text: str, trace_parent: str | None) -> FakeRecord:
    headers = (("traceparent", trace_parent.encode()),) if trace_parent else ()
    return FakeRecord("parley.requests", 0, offset, b"conv-1", said(text), headers)


def trace_parent_of(record: OutgoingRecord) -> str:
    values = [value.decode() for name, value in record.headers if name == "traceparent"]
    assert len(values) == 1, record.headers
    return values[0]


def consumer_span(exporter: InMemorySpanExporter, offset: int) -> ReadableSpan:
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.name == "process parley.requests" and (s.attributes or {}).get("messaging.kafka.offset") == offset
    ]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


async def test_a_consumed_record_continues_its_producers_trace_on_every_output(spans: InMemorySpanExporter) -> None:
    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    records = [
        traced_record(10, "ok:good", UPSTREAM),
        traced_record(11, "bad", UPSTREAM),
        traced_record(12, "ok:good", None),
    ]
    await step.handle_records(records)

    out, dead, fresh = publisher.publications[0].records
    assert (out.topic, dead.topic, fresh.topic) == (OUTPUT, DEAD_LETTERS, OUTPUT)
    for record, offset in ((out, 10), (dead, 11)):
        span = consumer_span(spans, offset)
        assert span.parent is not None and format(span.parent.span_id, "016x") == UPSTREAM_SPAN
        assert format(span.context.trace_id, "032x") == UPSTREAM_TRACE
        # The output names the consuming span as its parent, in the upstream trace.
        assert trace_parent_of(record) == f"00-{UPSTREAM_TRACE}-{format(span.context.span_id, '016x')}-01"
    # A record without trace context starts a trace of its own rather than joining a neighbour's.
    assert trace_parent_of(fresh).split("-")[1] != UPSTREAM_TRACE
    assert consumer_span(spans, 12).parent is None


def test_outside_any_span_records_are_left_as_they_are() -> None:
    record = OutgoingRecord(topic=OUTPUT, value=b"x", headers=(("h", b"v"),))
    assert with_trace_context([record]) == [record]


def test_an_upstream_traceparent_copied_into_a_record_is_replaced_not_kept_beside_the_new_one() -> None:
    stale = OutgoingRecord(topic=OUTPUT, value=b"x", headers=(("h", b"v"), ("traceparent", b"00-stale-stale-01")))
    with continuing_trace(UPSTREAM, "handle"):
        (record,) = with_trace_context([stale])
    assert record.headers[0] == ("h", b"v")
    assert trace_parent_of(record).split("-")[1] == UPSTREAM_TRACE


def test_job_watchers_status_checks_and_outcome_join_the_trace_of_the_jobsubmitted(
    spans: InMemorySpanExporter,
) -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 2)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0, trace_parent=UPSTREAM)
            await asyncio.sleep(30)
        await watch.flush()

        checks = [s for s in spans.get_finished_spans() if s.name == "check job status"]
        assert len(checks) == len(provider.calls_for("job-a")) >= 2
        assert {format(s.context.trace_id, "032x") for s in checks} == {UPSTREAM_TRACE}
        assert {(s.attributes or {}).get("parley.jobId") for s in checks} == {"job-a"}
        for record in publisher.records:  # the outcome and its JobResolved marker
            assert trace_parent_of(record).split("-")[1] == UPSTREAM_TRACE

    run_in_virtual_time(scenario)


def test_otlp_is_exported_only_when_asked_and_over_a_protocol_parley_ships() -> None:
    assert span_exporter(OtelSettings()) is None
    assert span_exporter(OtelSettings(exporter_otlp_endpoint="http://127.0.0.1:4318")) is not None
    assert span_exporter(OtelSettings(traces_exporter="none", exporter_otlp_endpoint="http://x:4318")) is None
    with pytest.raises(ValueError, match="http/protobuf"):
        span_exporter(OtelSettings(exporter_otlp_endpoint="http://x:4317", exporter_otlp_protocol="grpc"))
    with pytest.raises(ValueError, match="zipkin"):
        span_exporter(OtelSettings(traces_exporter="zipkin"))


# ---- logs --------------------------------------------------------------------------------------------------


@pytest.fixture
def log_output() -> Iterator[io.StringIO]:
    """What Parley's handler writes, while pytest's own capture handlers stay in place."""
    configure_logging("INFO", "json")
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, ParleyLogHandler))
    output = io.StringIO()
    handler.setStream(output)
    yield output
    logging.getLogger().removeHandler(handler)


def test_log_lines_are_json_with_the_ids_and_trace_of_the_work(
    log_output: io.StringIO, spans: InMemorySpanExporter
) -> None:
    async def one_conversation(name: str) -> None:
        with continuing_trace(None, name):
            bind_ids(conversation_id=f"conv-{name}", job_id=f"job-{name}")
            await asyncio.sleep(0)
            logging.getLogger("parley.test").info("working on %s", name)

    async def both() -> None:
        await asyncio.gather(one_conversation("a"), one_conversation("b"))

    asyncio.run(both())
    logging.getLogger("uvicorn.error").warning("a library line")
    lines = [json.loads(line) for line in log_output.getvalue().splitlines()]
    by_message = {line["message"]: line for line in lines}
    spans_by_name = {s.name: s for s in spans.get_finished_spans()}
    for name in "ab":
        line = by_message[f"working on {name}"]
        # Concurrent tasks never see each other's ids.
        assert (line["conversationId"], line["jobId"]) == (f"conv-{name}", f"job-{name}")
        assert line["traceId"] == format(spans_by_name[name].context.trace_id, "032x")
        assert line["level"] == "info" and line["logger"] == "parley.test" and line["timestamp"]
    library = by_message["a library line"]
    assert library["logger"] == "uvicorn.error" and "conversationId" not in library and "traceId" not in library


def test_an_exception_is_logged_as_text_without_the_frames_locals(log_output: io.StringIO) -> None:
    def fail(app_secret: str) -> None:
        raise RuntimeError("token refused")

    secret = "-".join(("s3cr3t", "value"))  # never written out whole in the source the traceback quotes
    try:
        fail(secret)
    except RuntimeError:
        logging.getLogger("parley.test").exception("call failed")
    (line,) = [json.loads(line) for line in log_output.getvalue().splitlines()]
    assert "RuntimeError: token refused" in line["exception"]
    assert "s3cr3t-value" not in log_output.getvalue()


def test_console_format_is_for_people(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO", "console")
    try:
        logging.getLogger("parley.test").warning("readable %s", "line")
        handler = next(h for h in logging.getLogger().handlers if isinstance(h, ParleyLogHandler))
        handler.flush()
        err = capsys.readouterr().err
        assert "readable line" in err and not err.lstrip().startswith("{")
    finally:
        for handler in [h for h in logging.getLogger().handlers if isinstance(h, ParleyLogHandler)]:
            logging.getLogger().removeHandler(handler)


# ---- configure_tracing (a fresh process each: OpenTelemetry takes one tracer provider per process) ----------------

PROBE = """
import json, sys
from parley_shared.kafka.publishing import OutgoingRecord, with_trace_context
from parley_shared.tracing import OtelSettings, configure_tracing, continuing_trace

configure_tracing("probe", OtelSettings(traces_exporter=sys.argv[1]))
with continuing_trace(None, "probe") as span:
    recording = span.is_recording()
    (record,) = with_trace_context([OutgoingRecord(topic="t", value=b"v")])
print("PROBE", json.dumps({
    "recording": recording,
    "valid": span.get_span_context().is_valid,
    "traceparent": dict(record.headers)["traceparent"].decode(),
}))
"""


def probe_tracing(exporter: str) -> dict[str, Any]:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", PROBE, exporter], capture_output=True, text=True, timeout=60, check=True
    )
    # The console exporter prints spans on stdout too.
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("PROBE ")]
    return cast(dict[str, Any], json.loads(line.removeprefix("PROBE ")))


def test_without_an_exporter_spans_are_not_recorded_but_ids_still_travel() -> None:
    probe = probe_tracing("none")
    assert probe["recording"] is False and probe["valid"] is True
    version, trace_id, span_id, flags = probe["traceparent"].split("-")
    assert version == "00" and int(trace_id, 16) and int(span_id, 16)
    assert int(flags, 16) & 0x01 == 0  # not sampled: downstream services do not record it either


def test_with_an_exporter_spans_are_recorded() -> None:
    probe = probe_tracing("console")
    assert probe["recording"] is True
    assert int(probe["traceparent"].split("-")[3], 16) & 0x01 == 1  # sampled


async def test_each_provider_request_is_a_client_span_whose_traceparent_the_provider_receives(
    spans: InMemorySpanExporter,
) -> None:
    received: list[str] = []

    def provider(request: httpx.Request) -> httpx.Response:
        received.append(request.headers.get("traceparent", ""))
        if request.url.path.endswith(":generate"):
            return httpx.Response(200, json={"accessToken": "t", "expiresIn": 3600})
        if len(received) == 2:
            return httpx.Response(503)  # one retry: a second attempt, a second span
        return httpx.Response(200, json={"id": "job-1", "status": "completed"})

    async def no_wait(_: float) -> None:
        """Retries back off in virtual time."""

    settings = ProviderSettings(url="http://provider.test")
    async with ProviderClient(settings, transport=httpx.MockTransport(provider), sleep=no_wait) as client:
        with continuing_trace(UPSTREAM, "check job status"):
            await client.get_job("job-1")

    calls = [s for s in spans.get_finished_spans() if s.kind is SpanKind.CLIENT]
    assert [s.name for s in calls] == ["POST generate_token", "GET get_job", "GET get_job"]
    assert [(s.attributes or {}).get("http.response.status_code") for s in calls] == [200, 503, 200]
    assert (calls[2].attributes or {}).get("http.request.resend_count") == 1
    for span, header in zip(calls, received, strict=True):
        assert format(span.context.trace_id, "032x") == UPSTREAM_TRACE
        assert header == f"00-{UPSTREAM_TRACE}-{format(span.context.span_id, '016x')}-01"


async def test_an_unsampled_trace_is_carried_on_without_spans_of_its_own(spans: InMemorySpanExporter) -> None:
    unsampled = f"00-{UPSTREAM_TRACE}-{UPSTREAM_SPAN}-00"

    publisher = RecordingPublisher()
    step = make_step(ScriptedHandler(), publisher, RecordedSleep())
    await step.handle_records([traced_record(1, "ok:x", unsampled)])

    (out,) = publisher.publications[0].records
    assert trace_parent_of(out) == unsampled  # the same trace and parent, still unsampled
    assert spans.get_finished_spans() == ()


async def test_without_export_an_http_request_still_continues_its_callers_trace() -> None:
    from fastapi import FastAPI
    from parley_shared.tracing import configure_tracing, trace_http_app

    configure_tracing("unit-tests", OtelSettings())  # what every service does first (a no-op once one is set)
    app = FastAPI()
    trace_http_app(app)  # this process exports nothing

    @app.get("/ids")
    async def ids() -> dict[str, str]:
        span_context = trace.get_current_span().get_span_context()
        return {"traceId": format(span_context.trace_id, "032x"), "valid": str(span_context.is_valid)}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as client:
        continued = (await client.get("/ids", headers={"traceparent": UPSTREAM})).json()
        started = (await client.get("/ids")).json()
    assert continued == {"traceId": UPSTREAM_TRACE, "valid": "True"}
    assert started["valid"] == "True" and started["traceId"] != UPSTREAM_TRACE
