"""The engine's own metrics: jobs run to an end, and the queue (read when the page is scraped)."""

from __future__ import annotations

from parley_shared.metrics import series
from prometheus_client import Counter, Gauge

SERVICE = "engine"

ENGINE_JOBS = Counter("parley_engine_jobs_total", "Jobs the engine ran to an end, by outcome", ["service", "outcome"])
ENGINE_ACTIVE_JOBS = Gauge(
    "parley_engine_active_jobs", "Jobs scheduled or in progress (the queue), read at scrape time", ["service"]
)


def engine_job_ended(outcome: str) -> None:
    series(ENGINE_JOBS, SERVICE, outcome).inc()


def active_jobs(count: int) -> None:
    series(ENGINE_ACTIVE_JOBS, SERVICE).set(count)
