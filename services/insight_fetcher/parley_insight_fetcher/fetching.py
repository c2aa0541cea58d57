"""Reading a completed job's insights: the gate of Parley lives here.

The Conversation API is read only for a ``JobCompleted``; a ``JobFailed`` produces nothing. Provider errors are
left to the hop, which retries the transient ones and dead-letters the rest.
"""

from __future__ import annotations

import logging

from parley_shared.events import InsightsReady, JobCompleted, JobFailed
from parley_shared.logs import bind_ids
from parley_shared.provider.ports import ConversationApi

logger = logging.getLogger("parley.insight_fetcher")


class InsightFetcher:
    def __init__(self, provider: ConversationApi, *, reads_in_flight: int) -> None:
        self._provider = provider
        self._reads_in_flight = reads_in_flight

    async def insights_for(self, event: JobCompleted | JobFailed) -> list[InsightsReady]:
        """The conversation's whole insight bundle once its job completed; nothing for a failed job."""
        bind_ids(conversation_id=event.conversation_id, job_id=event.job_id, request_id=event.request_id)
        if not isinstance(event, JobCompleted):
            return []
        insights = await self._provider.fetch_insights(event.conversation_id, concurrency=self._reads_in_flight)
        logger.info("insights read from %d endpoints", len(insights))
        return [
            InsightsReady(
                request_id=event.request_id,
                conversation_id=event.conversation_id,
                job_id=event.job_id,
                completed_at=event.completed_at,
                insights=insights,
            )
        ]
