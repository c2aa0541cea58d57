"""The ``parley.completions`` adapter: a JobCompleted in, the conversation's InsightsReady out.

The gate of Parley lives here: the Conversation API is read only for a ``JobCompleted``; a ``JobFailed`` is
acknowledged and produces nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from parley_shared.events import InsightsReady, JobCompleted, completion_adapter
from parley_shared.kafka.consume import PermanentFailure, RecordHandler, TransientFailure
from parley_shared.kafka.publishing import OutgoingRecord
from parley_shared.logs import bind_ids
from parley_shared.metrics import insights_published
from parley_shared.provider import ProviderAuthError, ProviderClient, ProviderError, ProviderUnavailable
from parley_shared.settings import TopicNames
from parley_shared.validation import describe_validation_error
from pydantic import ValidationError

logger = logging.getLogger("parley.insight_fetcher")


def handle_completion(provider: ProviderClient, topics: TopicNames, *, reads_in_flight: int) -> RecordHandler:
    async def handle(record: Any) -> Sequence[OutgoingRecord]:
        try:
            event = completion_adapter.validate_json(record.value or b"")
        except ValidationError as error:
            raise PermanentFailure(f"invalid completion event: {describe_validation_error(error)}") from None
        bind_ids(conversation_id=event.conversation_id, job_id=event.job_id, request_id=event.request_id)
        if not isinstance(event, JobCompleted):
            return []  # a failed job has no insights to read
        try:
            insights = await provider.fetch_insights(event.conversation_id, concurrency=reads_in_flight)
        except ProviderUnavailable as error:
            raise TransientFailure(str(error)) from error
        except ProviderError as error:
            if isinstance(error, ProviderAuthError):  # our credentials, not the record: may be fixed
                raise TransientFailure(str(error)) from error
            raise PermanentFailure(f"conversation {event.conversation_id}: {error}") from error
        logger.info("insights read from %d endpoints", len(insights))
        ready = InsightsReady(
            request_id=event.request_id,
            conversation_id=event.conversation_id,
            job_id=event.job_id,
            completed_at=event.completed_at,
            insights=insights,
        )
        insights_published(event.completed_at)
        return [OutgoingRecord(topic=topics.insights, key=event.conversation_id.encode(), value=ready.to_wire())]

    return handle
