"""ingest's own metric: what became of each submission."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

from parley_shared.metrics import series
from parley_shared.provider import ConversationNotFound, ProviderError, ProviderRejected, ProviderUnavailable
from prometheus_client import Counter

SERVICE = "ingest"
_Submitted = TypeVar("_Submitted")

REQUESTS = Counter(
    "parley_requests_total",
    "Submissions (HTTP and parley.requests commands) by outcome: 'accepted' (a new provider job), 'duplicate'"
    " (a known requestId), 'rejected' (the provider refused it), 'unavailable' (provider trouble; commands are"
    " retried), 'failed' (anything else)",
    ["service", "outcome"],
)


async def counted_submission(submission: Awaitable[tuple[_Submitted, bool]]) -> tuple[_Submitted, bool]:
    """Await ingest's ``(job, created)`` for one request and count its outcome in ``parley_requests_total``."""
    try:
        submitted, created = await submission
    except ProviderError as error:
        if isinstance(error, ProviderRejected | ConversationNotFound):
            outcome = "rejected"
        else:
            outcome = "unavailable" if isinstance(error, ProviderUnavailable) else "failed"
        series(REQUESTS, SERVICE, outcome).inc()
        raise
    series(REQUESTS, SERVICE, "accepted" if created else "duplicate").inc()
    return submitted, created
