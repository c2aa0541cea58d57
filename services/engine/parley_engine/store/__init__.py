"""The engine's durable state, one store per concern over one database (``Store.open`` upgrades its schema first).

``schema`` (the tables) and ``migrations`` (their changes), ``jobs`` (the queue, leases, outcomes, with
``idempotency``: the Async API's idempotency keys),
``conversations`` (the Conversation API's reads and changes, the insights cache), ``deliveries`` (the webhook
outbox) and ``credentials`` (auth secrets), all on ``database``.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley_engine.store.conversation_rows import ConversationNotFound
from parley_engine.store.conversations import ConversationStore, MemberNotFound
from parley_engine.store.credentials import CredentialStore
from parley_engine.store.database import Database
from parley_engine.store.deliveries import DeliveryStore
from parley_engine.store.idempotency import IdempotencyClaim, IdempotencyKeyTaken
from parley_engine.store.jobs import JobLeaseLost, JobStore, NewConversation, NewJob, TooManyJobs
from parley_engine.store.schema import ConversationRow, JobRow, WebhookDeliveryRow, utc_now

__all__ = [
    "ConversationNotFound",
    "ConversationRow",
    "ConversationStore",
    "CredentialStore",
    "Database",
    "DeliveryStore",
    "IdempotencyClaim",
    "IdempotencyKeyTaken",
    "JobLeaseLost",
    "JobRow",
    "JobStore",
    "MemberNotFound",
    "NewConversation",
    "NewJob",
    "Store",
    "TooManyJobs",
    "WebhookDeliveryRow",
    "utc_now",
]


@dataclass(frozen=True)
class Store:
    database: Database
    jobs: JobStore
    conversations: ConversationStore
    deliveries: DeliveryStore
    credentials: CredentialStore

    @classmethod
    async def open(cls, database_url: str) -> Store:
        database = await Database.open(database_url)
        return cls(
            database,
            JobStore(database),
            ConversationStore(database),
            DeliveryStore(database),
            CredentialStore(database),
        )

    async def close(self) -> None:
        await self.database.close()
