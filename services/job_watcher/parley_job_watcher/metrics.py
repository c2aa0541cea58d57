"""job-watcher's own metrics: jobs settled, jobs pending, status polls and webhooks."""

from __future__ import annotations

from parley_shared.events import JobCompleted, JobFailed
from parley_shared.metrics import series
from prometheus_client import Counter, Gauge

SERVICE = "job-watcher"

JOBS = Counter(
    "parley_jobs_total",
    "Provider jobs settled, by outcome ('completed', 'failed', 'expired' past the deadline) and what saw it first",
    ["service", "outcome", "detected_by"],
)
PENDING_JOBS = Gauge("parley_pending_jobs", "Jobs watched and waiting for an outcome", ["service"])
STATUS_POLLS = Counter("parley_status_polls_total", "GET /v1/job status checks made", ["service"])
WEBHOOKS_RECEIVED = Counter(
    "parley_webhooks_received_total",
    (
        "Provider job status callbacks received: 'accepted' (about a job watched here), 'forwarded' (to the replica "
        "watching it, through the jobs topic), 'unforwarded' (that failed: answered 503), or 'refused' (missing or "
        "invalid signature)"
    ),
    ["service", "result"],
)


def outcome_committed(outcome: JobCompleted | JobFailed) -> None:
    """Once a job's outcome is committed: failures are always confirmed (or declared, past the deadline) by a poll."""
    if isinstance(outcome, JobCompleted):
        series(JOBS, SERVICE, "completed", outcome.detected_by).inc()
    else:
        series(JOBS, SERVICE, "expired" if outcome.reason == "deadline" else "failed", "poll").inc()


def status_polled() -> None:
    series(STATUS_POLLS, SERVICE).inc()


def webhook_received(result: str) -> None:
    series(WEBHOOKS_RECEIVED, SERVICE, result).inc()
