"""ingest's own metric: what became of each submission, counted once per outcome.

A submission the provider accepted (or recognised as a repeat) counts when its ``JobSubmitted`` is committed, not
when the provider answered: an answer whose event never commits (the transaction failed, the replica died) is
submitted again and counted then. Refusals and provider trouble have no event to commit; they count when they
happen.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable
from typing import TypeVar

from parley_shared.events import JobSubmitted
from parley_shared.metrics import series
from parley_shared.provider import ConversationNotFound, ProviderError, ProviderRejected, ProviderUnavailable
from prometheus_client import Counter

SERVICE = "ingest"
_Submitted = TypeVar("_Submitted")
# Answers waiting for their JobSubmitted to commit; a bound, so answers that never commit cannot pile up.
_MAX_WAITING = 100_000

REQUESTS = Counter(
    "parley_requests_total",
    "Submissions (HTTP and parley.requests commands) by outcome: 'accepted' (a new provider job), 'duplicate'"
    " (a known requestId), counted once its JobSubmitted is committed; 'rejected' (the provider refused it),"
    " 'unavailable' (provider trouble; commands are retried), 'failed' (anything else), counted as they happen",
    ["service", "outcome"],
)


class SubmissionOutcomes:
    """Remembers whether each answered submission made a new job, until its ``JobSubmitted`` commits."""

    def __init__(self) -> None:
        self._created: OrderedDict[str, bool] = OrderedDict()

    async def answered(
        self, submission: Awaitable[tuple[_Submitted, bool]], request_id: str
    ) -> tuple[_Submitted, bool]:
        """Await the provider's answer for ``request_id``; count a refusal or trouble now, note a job for later."""
        try:
            submitted, created = await submission
        except ProviderError as error:
            if isinstance(error, ProviderRejected | ConversationNotFound):
                outcome = "rejected"
            else:
                outcome = "unavailable" if isinstance(error, ProviderUnavailable) else "failed"
            series(REQUESTS, SERVICE, outcome).inc()
            raise
        self._created[request_id] = self._created.get(request_id, False) or created
        while len(self._created) > _MAX_WAITING:
            self._created.popitem(last=False)
        return submitted, created

    def committed(self, submitted: JobSubmitted) -> None:
        """The ``on_committed`` hook of the jobs stream (a live stream's job was no submission: not counted)."""
        created = self._created.pop(submitted.request_id, None)
        if created is not None:
            series(REQUESTS, SERVICE, "accepted" if created else "duplicate").inc()


ORPHANS = Counter(
    "parley_orphans_total",
    "Provider conversations left by a submission whose answer never came and which was submitted again (only with"
    " a provider that ignores Idempotency-Key): 'dropped' (found and deleted) or 'unreconciled' (the look-up or"
    " the delete failed)",
    ["service", "outcome"],
)


def orphan_swept(outcome: str) -> None:
    series(ORPHANS, SERVICE, outcome).inc()
