"""insight-fetcher's own metric: how long after a job's completion its insights were published."""

from __future__ import annotations

from datetime import UTC, datetime

from parley_shared.events import InsightsReady
from parley_shared.metrics import series
from prometheus_client import Histogram

SERVICE = "insight-fetcher"

COMPLETION_TO_INSIGHTS = Histogram(
    "parley_completion_to_insights_seconds",
    "From a job's completion (JobCompleted.completedAt, job-watcher's clock) to its InsightsReady being committed",
    ["service"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0),
)


def insights_published(ready: InsightsReady) -> None:
    """Called once the InsightsReady is committed (never for a transaction that was rolled back)."""
    # Another host's clock: a small negative difference is skew, not time travel.
    seconds = max(0.0, (datetime.now(UTC) - ready.completed_at).total_seconds())
    series(COMPLETION_TO_INSIGHTS, SERVICE).observe(seconds)
