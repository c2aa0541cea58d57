"""Following Parley's output topics from the command line (``parley submit --wait`` and ``parley tail``)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.kafka.topics import topic_partitions
from parley_shared.settings import KafkaSettings


class TopicFollower:
    """Reads committed events from the given topics; starts at their current end unless told otherwise."""

    def __init__(self, settings: KafkaSettings, topics: list[str], *, from_beginning: bool = False) -> None:
        self._settings = settings
        self._topics = topics
        self._from_beginning = from_beginning
        self._consumer: AIOKafkaConsumer | None = None

    async def __aenter__(self) -> TopicFollower:
        consumer = AIOKafkaConsumer(
            **aiokafka_options(self._settings),
            group_id=None,
            enable_auto_commit=False,
            isolation_level="read_committed",
        )
        known = await topic_partitions(self._settings, self._topics)
        missing = [topic for topic, found in known.items() if not found]
        if missing:
            raise RuntimeError(f"topics {', '.join(missing)} do not exist yet: start the services first")
        partitions = [TopicPartition(topic, p) for topic, found in known.items() for p in found]
        await consumer.start()
        consumer.assign(partitions)
        if self._from_beginning:
            await consumer.seek_to_beginning(*partitions)
        else:
            await consumer.seek_to_end(*partitions)
            for tp in partitions:
                await consumer.position(tp)  # fix the start now, before anything is submitted
        self._consumer = consumer
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._consumer is not None:
            await self._consumer.stop()

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        assert self._consumer is not None
        async for record in self._consumer:
            try:
                yield record.topic, json.loads(record.value or b"")
            except ValueError:
                yield record.topic, {"eventType": "(unreadable)", "raw": repr(record.value[:200])}


def describe_insights(event: dict[str, Any]) -> str:
    """A short human summary of an InsightsReady event."""
    insights = event.get("insights", {})
    lines = [f"Insights for conversation {event.get('conversationId')} (job {event.get('jobId')}):"]

    def items(key: str, inner: str) -> list[Any]:
        value = insights.get(key)
        if isinstance(value, dict):
            value = value.get(inner, [])
        return value if isinstance(value, list) else []

    for title, key, inner in [
        ("Summary", "summary", "summary"),
        ("Topics", "topics", "topics"),
        ("Questions", "questions", "questions"),
        ("Action items", "actionItems", "actionItems"),
        ("Follow-ups", "followUps", "followUps"),
        ("Entities", "entities", "entities"),
    ]:
        found = items(key, inner)
        lines.append(f"  {title} ({len(found)}):")
        for item in found[:8]:
            text = item.get("text") or item.get("value") if isinstance(item, dict) else item
            extra = ""
            if isinstance(item, dict) and item.get("assignee"):
                extra = f"  [assignee: {item['assignee'].get('name')}"
                extra += f", due: {item['dueBy']}]" if item.get("dueBy") else "]"
            lines.append(f"    - {text}{extra}")
    members = items("members", "members")
    lines.append(f"  Members: {', '.join(str(m.get('name')) for m in members if isinstance(m, dict))}")
    messages = items("messages", "messages")
    lines.append(f"  Transcript: {len(messages)} messages")
    return "\n".join(lines)
