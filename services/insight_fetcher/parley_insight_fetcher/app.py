"""insight-fetcher: the composition root. Its one hop, declared below, is everything it reads and writes.

It calls the provider's Conversation API (messages, topics, questions, action items, follow-ups, entities,
analytics, summary, members; concurrently within a bound) only after a job's ``JobCompleted``.
"""

from __future__ import annotations

from fastapi import FastAPI
from parley_shared.events import CompletionEvent, InsightsReady
from parley_shared.kafka.hops import Stream, Transform
from parley_shared.kafka.publishing import AtomicPublisher
from parley_shared.provider import ProviderClient
from parley_shared.provider.metrics import provider_error_counter
from parley_shared.provider.ports import ConversationApi
from parley_shared.service import PipelineService

from parley_insight_fetcher.fetching import InsightFetcher
from parley_insight_fetcher.metrics import SERVICE, insights_published
from parley_insight_fetcher.settings import InsightFetcherSettings


def create_app(
    settings: InsightFetcherSettings | None = None,
    *,
    publisher: AtomicPublisher | None = None,
    provider: ConversationApi | None = None,
) -> FastAPI:
    settings = settings or InsightFetcherSettings()
    topics = settings.topics
    service = PipelineService(
        SERVICE, settings, group_id=settings.group_id, instance_id=settings.instance_id, publisher=publisher
    )
    provider = provider or ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE))
    fetcher = InsightFetcher(provider, reads_in_flight=settings.reads_per_conversation)

    service.transform(
        Transform(
            "fetch insights",
            consumes=Stream(
                topics.completions,
                CompletionEvent,
                "JobCompleted: read the conversation's insights; JobFailed: nothing to read",
            ),
            produces=(
                Stream(
                    topics.insights,
                    InsightsReady,
                    "one InsightsReady per completed job, keyed by conversationId; compacted, so the latest bundle"
                    " per conversation stays",
                    on_committed=insights_published,
                ),
                service.dead_letters("completions that cannot be handled (unreadable record, conversation gone)"),
            ),
            handler=fetcher.insights_for,
            concurrency=settings.conversations_in_flight,
        )
    )
    return service.app(title="Parley insight-fetcher", resources=[provider])
