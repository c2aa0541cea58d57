"""Prometheus metrics every service shares, defined once per process, and ``GET /metrics`` for a service.

A service's own metrics (``parley_requests_total``, ``parley_jobs_total`` …) live in its package, the provider
client's in ``parley_shared.provider.metrics``. They live in the default registry, so several apps built in one
process (tests) share them; each carries a ``service`` label, from the service's declaration, which also keeps a
service's page free of other services' metrics (a labelled metric has no samples until used). Per-message consume
and publish metrics come from faststream's middleware (``faststream_*``). Consumer lag is read from the service's
aiokafka consumer when the page is scraped.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from prometheus_client import REGISTRY, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

# --- every service ------------------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "parley_http_requests_total",
    "HTTP requests served, by route template (not the raw path) and response status",
    ["service", "method", "route", "status_code"],
)
HTTP_REQUEST_SECONDS = Histogram(
    "parley_http_request_duration_seconds",
    "Time to serve an HTTP request, until its response body was sent",
    ["service", "method", "route"],
)
RECORDS_HANDLED = Counter(
    "parley_records_handled_total",
    "Consumed records whose outputs were committed: 'handled' or 'dead_lettered'",
    ["service", "outcome"],
)
RECORD_RETRIES = Counter(
    "parley_record_retries_total",
    "Transient failures handling a consumed record, each followed by a retry after a backoff",
    ["service"],
)
DEAD_LETTERS = Counter(
    "parley_dead_letters_total",
    "Records given up on and written to the dead-letter topic, by the dead letter's errorType",
    ["service", "reason_type"],
)
CONSUMER_LAG = Gauge(
    "parley_consumer_lag",
    "Records in a partition this replica has not read yet (end offset minus position), read at scrape time",
    ["service", "topic", "partition"],
)


@functools.cache
def series(metric: Any, *label_values: str) -> Any:
    """``metric.labels(*label_values)``, looked up once.

    ``labels()`` locks and validates on every call, which showed as 3 % of job-watcher's CPU under webhook load.
    Label values come from small fixed sets (services, outcomes, status codes, route templates): the cache stays small.
    """
    return metric.labels(*label_values)


# --- recording, for the call sites ---------------------------------------------------------------------------------


def count_committed_records(service: str, dead_lettered: Sequence[bool]) -> None:
    """After a batch commit: each record was either handled or dead-lettered."""
    for dead in dead_lettered:
        series(RECORDS_HANDLED, service, "dead_lettered" if dead else "handled").inc()


@functools.cache
def kafka_message_metrics() -> KafkaPrometheusMiddleware:
    """faststream's per-message metrics (``faststream_*``): one middleware per process, shared by every broker."""
    return KafkaPrometheusMiddleware(registry=REGISTRY, app_name="parley")


# --- scraping ------------------------------------------------------------------------------------------------------

ScrapeHook = Callable[[], Awaitable[None]]


class ConsumerLag:
    """Sets ``parley_consumer_lag`` for the partitions a consumer holds now, and drops those it no longer holds."""

    def __init__(self, service: str, consumer: Callable[[], Any]) -> None:
        self._service = service
        self._consumer = consumer
        self._reported: set[tuple[str, str]] = set()

    async def __call__(self) -> None:
        consumer = self._consumer()
        lags: dict[tuple[str, str], int] = {}
        for tp in consumer.assignment() if consumer is not None else ():
            # Read-committed consumers can only get as far as the last stable offset.
            end = consumer.last_stable_offset(tp)
            if end is None:
                end = consumer.highwater(tp)
            if end is None:
                continue  # nothing fetched from it yet
            try:
                position = await asyncio.wait_for(consumer.position(tp), timeout=1.0)
            except Exception:
                continue
            lags[(tp.topic, str(tp.partition))] = max(0, end - position)
        for topic, partition in self._reported - lags.keys():
            CONSUMER_LAG.remove(self._service, topic, partition)
        for (topic, partition), lag in lags.items():
            CONSUMER_LAG.labels(service=self._service, topic=topic, partition=partition).set(lag)
        self._reported = set(lags)


class HttpRequestMetrics:
    """ASGI middleware: ``parley_http_requests_total`` and its duration, labelled with the matched route template."""

    def __init__(self, app: ASGIApp, *, service: str) -> None:
        self._app = app
        self._service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets when the app raises before answering

        async def note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, note_status)
        finally:
            # The router stores the matched route in the scope; unmatched paths share one label value.
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"]
            series(HTTP_REQUESTS, self._service, method, route, str(status)).inc()
            series(HTTP_REQUEST_SECONDS, self._service, method, route).observe(time.perf_counter() - started)


def serve_metrics(
    app: FastAPI, service: str, *, consumer: Callable[[], Any] | None = None, before_scrape: Sequence[ScrapeHook] = ()
) -> None:
    """``GET /metrics`` in the Prometheus text format, and HTTP request metrics for every route of ``app``.

    ``consumer`` returns the service's aiokafka consumer (None before start) for ``parley_consumer_lag``;
    ``before_scrape`` hooks refresh other gauges that need I/O to read.
    """
    hooks: list[ScrapeHook] = [*before_scrape, *([ConsumerLag(service, consumer)] if consumer is not None else [])]
    app.add_middleware(HttpRequestMetrics, service=service)

    async def metrics(request: Request) -> Response:
        for hook in hooks:
            try:
                await hook()
            except Exception:
                # A gauge that cannot be read now must not cost the whole page.
                logger.warning("could not refresh metrics with %r", hook, exc_info=True)
        # The format the scraper asks for (OpenMetrics, or the text format Prometheus reads by default).
        encode, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(REGISTRY), headers={"Content-Type": content_type})

    app.add_api_route("/metrics", metrics, methods=["GET"], include_in_schema=False)
