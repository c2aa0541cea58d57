"""insight-fetcher's handler as a plain function: a completion in, the conversation's InsightsReady out."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_insight_fetcher.fetching import InsightFetcher
from parley_shared.events import JobCompleted, JobFailed
from parley_shared.provider import ConversationNotFound

from tests.support.provider_fakes import FakeConversationApi

SUBMITTED = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
COMPLETED = datetime(2026, 12, 1, 10, 2, tzinfo=UTC)


async def test_a_completed_job_gives_one_insights_ready_with_what_the_provider_returned() -> None:
    provider = FakeConversationApi(insights={"messages": [{"id": "1", "text": "hello"}], "summary": []})
    completed = JobCompleted(
        request_id="r-1",
        conversation_id="c-1",
        job_id="j-1",
        submitted_at=SUBMITTED,
        completed_at=COMPLETED,
        detected_by="webhook",
    )

    [ready] = await InsightFetcher(provider, reads_in_flight=3).insights_for(completed)

    assert (ready.request_id, ready.conversation_id, ready.job_id) == ("r-1", "c-1", "j-1")
    assert ready.completed_at == COMPLETED
    assert ready.insights == {"messages": [{"id": "1", "text": "hello"}], "summary": []}
    assert provider.reads == ["c-1"]


async def test_a_failed_job_produces_nothing_and_reads_nothing() -> None:
    provider = FakeConversationApi()
    failed = JobFailed(request_id="r-2", conversation_id="c-2", job_id="j-2", submitted_at=SUBMITTED, reason="x")

    assert await InsightFetcher(provider, reads_in_flight=3).insights_for(failed) == []
    assert provider.reads == []


async def test_provider_errors_are_left_to_the_hop() -> None:
    class Gone(FakeConversationApi):
        async def fetch_insights(self, conversation_id: str, *args: object, **kwargs: object) -> dict[str, object]:
            raise ConversationNotFound(conversation_id)

    completed = JobCompleted(
        request_id="r-3", conversation_id="c-3", job_id="j-3", submitted_at=SUBMITTED, detected_by="poll"
    )
    with pytest.raises(ConversationNotFound):
        await InsightFetcher(Gone(), reads_in_flight=3).insights_for(completed)
