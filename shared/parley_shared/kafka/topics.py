"""Create Parley's topics with sensible settings, idempotently, at service start-up."""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from parley_shared.kafka.connection import aiokafka_options
from parley_shared.settings import KafkaSettings, TopicNames

logger = logging.getLogger(__name__)

# Seven days: long enough to replay after a weekend outage.
_RETENTION_MS = str(7 * 24 * 3600 * 1000)


def topic_specs(settings: KafkaSettings, topics: TopicNames) -> list[NewTopic]:
    """Every topic keyed by conversationId gets the same partition count so one conversation stays in order."""
    partitions, replication = settings.topic_partitions, settings.topic_replication_factor
    durable = {"retention.ms": _RETENTION_MS, "min.insync.replicas": str(min(2, replication))}
    return [
        NewTopic(topics.requests, partitions, replication, topic_configs=durable),
        NewTopic(topics.jobs, partitions, replication, topic_configs=durable),
        NewTopic(topics.completions, partitions, replication, topic_configs=durable),
        NewTopic(topics.live, partitions, replication, topic_configs=durable),
        # Compacted: the latest insight bundle per conversation is kept forever, older ones are cleaned up.
        NewTopic(
            topics.insights,
            partitions,
            replication,
            topic_configs={
                "cleanup.policy": "compact",
                "min.insync.replicas": durable["min.insync.replicas"],
            },
        ),
        # Dead letters wait for an operator: keep them a month.
        NewTopic(
            topics.dead_letters,
            1,
            replication,
            # A dead letter wraps the original record base64-encoded, so it needs room for 4/3 of the largest one.
            topic_configs={"retention.ms": str(30 * 24 * 3600 * 1000), "max.message.bytes": str(4 * 1024 * 1024)},
        ),
    ]


async def ensure_topics(settings: KafkaSettings, topics: TopicNames) -> None:
    """Create the topics that do not exist yet; leave existing ones (and their settings) alone."""
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [spec for spec in topic_specs(settings, topics) if spec.name not in existing]
        if not missing:
            return
        # Another service may create them at the same moment.
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(missing)
        logger.info("created topics %s", ", ".join(spec.name for spec in missing))
    finally:
        await admin.close()


async def topic_partitions(settings: KafkaSettings, topics: list[str]) -> dict[str, list[int]]:
    """The partitions of each existing topic (a topic that does not exist maps to an empty list).

    Asked of the admin API because a consumer's metadata only covers topics it already follows.
    """
    admin = AIOKafkaAdminClient(**aiokafka_options(settings))
    await admin.start()
    try:
        described = await admin.describe_topics(topics)
    finally:
        await admin.close()
    return {
        entry["topic"]: sorted(p["partition"] for p in entry["partitions"]) if entry["error_code"] == 0 else []
        for entry in described
    }
