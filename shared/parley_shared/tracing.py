"""OpenTelemetry tracing, wired once per process: one trace per conversation across every service.

The trace starts at ingest's HTTP request (or at whoever published the ``ProcessRequested`` command) and follows the
conversation through the provider calls, each Kafka hop (W3C ``traceparent`` in the record headers), job-watcher's
polls of that job, and insight-fetcher's reads. Spans always exist, so trace ids reach log lines and the next hop even
when nothing is exported; they are exported over OTLP/HTTP when the standard ``OTEL_*`` variables ask for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)

# faststream's Kafka middleware also speaks W3C trace context (it hard-codes this propagator), so both agree.
_propagator = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset(_propagator.fields)
_tracer = trace.get_tracer("parley")
# Health checks and scrapes every few seconds would bury the conversations' traces.
_UNTRACED_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
# Whether this process exports its spans; set once by configure_tracing, like the tracer provider itself.
_exporting = False


class OtelSettings(BaseSettings):
    """The standard OpenTelemetry variables Parley reads itself; the OTLP exporter reads the rest (headers, timeouts).

    Traces are exported when ``OTEL_TRACES_EXPORTER`` says so, or when an OTLP endpoint is set; with neither, spans
    still join logs and Kafka hops but leave the process nowhere (no collector to fail against on a laptop).
    """

    model_config = SettingsConfigDict(env_prefix="OTEL_", extra="ignore")

    sdk_disabled: bool = Field(
        False, description="true: no spans at all (no trace ids in logs, no traceparent on records)"
    )
    service_name: str | None = Field(None, description="the service.name of the spans; default parley-<service>")
    traces_exporter: str | None = Field(
        None, description="otlp, console or none (default: otlp when an endpoint is set)"
    )
    exporter_otlp_endpoint: str | None = Field(
        None, description="the collector's OTLP/HTTP base URL, e.g. http://collector:4318"
    )
    exporter_otlp_traces_endpoint: str | None = Field(
        None, description="the full traces URL, overriding the base endpoint"
    )
    exporter_otlp_protocol: str = Field(
        "http/protobuf", description="http/protobuf (the one Parley ships an exporter for)"
    )
    exporter_otlp_traces_protocol: str | None = Field(
        None, description="the protocol for traces only, overriding the one above"
    )

    def chosen_exporter(self) -> str:
        if self.traces_exporter:
            return self.traces_exporter.split(",")[0].strip().lower()
        return "otlp" if self.exporter_otlp_endpoint or self.exporter_otlp_traces_endpoint else "none"


def span_exporter(settings: OtelSettings) -> SpanExporter | None:
    chosen = settings.chosen_exporter()
    if chosen == "none":
        return None
    if chosen == "console":
        return ConsoleSpanExporter()
    if chosen != "otlp":
        raise ValueError(f"OTEL_TRACES_EXPORTER={chosen!r} is not supported: use otlp, console or none")
    protocol = settings.exporter_otlp_traces_protocol or settings.exporter_otlp_protocol
    if protocol != "http/protobuf":
        raise ValueError(f"OTLP protocol {protocol!r} is not supported: Parley exports traces over http/protobuf")
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()  # endpoint, headers, timeout and compression come from the OTEL_* variables


def configure_tracing(service: str, settings: OtelSettings | None = None) -> None:
    """Install the process's tracer provider (once: OpenTelemetry allows one per process)."""
    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return
    settings = settings or OtelSettings()
    if settings.sdk_disabled:
        return
    resource = Resource.create({"service.name": settings.service_name or f"parley-{service}"})
    exporter = span_exporter(settings)
    if exporter is None:
        # Nothing leaves the process, so nothing is recorded: unsampled spans still carry valid ids to the logs and
        # the next hop, at a fraction of the cost (benchmarks/observability.md).
        trace.set_tracer_provider(TracerProvider(resource=resource, sampler=ALWAYS_OFF))
        return
    # The sampler comes from OTEL_TRACES_SAMPLER / _ARG (parent-based, always on, by default).
    global _exporting
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _exporting = True
    logger.info("exporting traces with %s", settings.chosen_exporter())


@contextmanager
def spans_recorded_by(provider: TracerProvider) -> Iterator[None]:
    """Parley's spans go to ``provider`` inside the block (a test's in-memory recorder).

    OpenTelemetry takes one global tracer provider per process, and any app built in the process installs one.
    """
    global _tracer
    previous, _tracer = _tracer, provider.get_tracer("parley")
    try:
        yield
    finally:
        _tracer = previous


def exporting_traces() -> bool:
    """Whether this process's spans leave it (configure_tracing found an exporter)."""
    return _exporting


def flush_traces() -> None:
    """Hand finished spans to the exporter before the process exits (SIGTERM would lose the last batch)."""
    provider = trace.get_tracer_provider()
    if isinstance(provider, TracerProvider):
        provider.force_flush(timeout_millis=5000)


def http_telemetry() -> Any:
    """``FastAPI(telemetry=...)``: FastAPI's own OpenTelemetry server spans, while spans are exported.

    FastAPI turns its telemetry on whenever a tracer provider is installed, and it costs about a tenth of
    job-watcher's CPU under webhook load even when nothing is recorded; without export, ``trace_http_app`` only
    carries the caller's trace context instead. Metrics are Parley's own (Prometheus), logs go through ``logs.py``.
    """
    return {
        "tracing": _exporting,
        "metrics": False,
        "logs": False,
        "operation_spans": False,
        "exclude": lambda scope: scope.get("path") in _UNTRACED_PATHS,
    }


def trace_http_app(app: Any) -> None:
    """Without export, a request still continues its caller's trace (or starts one) for its logs and records."""
    if not _exporting:
        app.add_middleware(_TraceContextOnly)


class _TraceContextOnly:
    """ASGI middleware: the request continues its caller's trace, or starts one, for logs and the records it writes."""

    def __init__(self, app: Any) -> None:
        self._app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        trace_parent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"traceparent"), None)
        with continuing_trace(trace_parent, f"{scope['method']} {scope['path']}", kind=SpanKind.SERVER):
            await self._app(scope, receive, send)


@contextmanager
def calling_provider(operation: str, method: str, path: str, attempt: int, headers: dict[str, str]) -> Iterator[Span]:
    """The client span of one provider request; its ``traceparent`` goes into ``headers`` so the provider joins.

    Written here rather than by opentelemetry-instrumentation-httpx: that cost 80-250 µs a request even unrecorded
    (measured in insight-fetcher, which makes eight reads per conversation; benchmarks/observability.md), this a few
    microseconds, and less when the trace is not recorded.
    """

    def attributes() -> dict[str, str | int]:
        described: dict[str, str | int] = {"http.request.method": method, "url.path": path}
        described["parley.operation"] = operation
        if attempt > 1:
            described["http.request.resend_count"] = attempt - 1
        return described

    with _span_under(otel_context.get_current(), f"{method} {operation}", SpanKind.CLIENT, attributes) as span:
        _propagator.inject(headers)
        yield span


def _record_carrier(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    carrier: dict[str, str] = {}
    for name, value in headers or ():
        if name in _TRACE_HEADERS and isinstance(value, bytes):
            carrier[name] = value.decode("latin-1")
    return carrier


def record_trace_parent(record: Any) -> str | None:
    """The ``traceparent`` a Kafka record carries, kept as text by whoever acts on the record much later."""
    return _record_carrier(getattr(record, "headers", None)).get("traceparent")


@contextmanager
def _span_under(parent: otel_context.Context, name: str, kind: SpanKind, attributes: Any) -> Iterator[Span]:
    """A span under ``parent``, or, when the parent's trace is not sampled, the parent itself made current.

    Sampling follows the parent (OpenTelemetry's default): nothing below an unsampled span is recorded, so its ids
    are carried on to the logs and the next hop without the cost of a span that would never leave the process.
    """
    parent_span = trace.get_current_span(parent)
    parent_context = parent_span.get_span_context()
    if parent_context.is_valid and not parent_context.trace_flags.sampled:
        token = otel_context.attach(parent)
        try:
            yield parent_span
        finally:
            otel_context.detach(token)
        return
    with _tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes()) as span:
        yield span


@contextmanager
def consuming_record(record: Any, *, service: str, group_id: str) -> Iterator[Span]:
    """The span of handling one consumed record, a child of the span that produced it."""
    parent = _propagator.extract(_record_carrier(getattr(record, "headers", None)))

    def attributes() -> dict[str, Any]:
        return {
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.destination.name": record.topic,
            "messaging.destination.partition.id": str(record.partition),
            "messaging.kafka.offset": record.offset,
            "messaging.consumer.group.name": group_id,
            "parley.service": service,
        }

    with _span_under(parent, f"process {record.topic}", SpanKind.CONSUMER, attributes) as span:
        yield span


@contextmanager
def continuing_trace(
    trace_parent: str | None,
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    attributes: Mapping[str, str | int] | None = None,
) -> Iterator[Span]:
    """A span in the trace of ``trace_parent`` (a stored ``traceparent``), for work done long after the record."""
    parent = _propagator.extract({"traceparent": trace_parent}) if trace_parent else otel_context.Context()
    with _span_under(parent, name, kind, lambda: attributes or {}) as span:
        yield span


def current_trace_headers() -> tuple[tuple[str, bytes], ...]:
    """The current span's context as Kafka record headers, so the consumer of a record continues this trace."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return tuple((name, value.encode("latin-1")) for name, value in carrier.items())


def is_trace_header(name: str) -> bool:
    return name in _TRACE_HEADERS
