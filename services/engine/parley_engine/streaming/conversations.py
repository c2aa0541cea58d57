"""A stream's conversation in the engine's store: created at ``start_request``, a job when the stream ends.

The job (kind ``streaming``) carries the sentences recognized live; the job runner analyses the whole
conversation as it does for an Async job, stores the Conversation API bodies and completes the job, and the
webhook outbox reports each status change to the stream's ``webhookUrl`` (or ``PARLEY_STREAMING_WEBHOOK_URL``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from parley_engine.conversation import Utterance
from parley_engine.identifiers import new_conversation_id, new_job_id
from parley_engine.store import JobStore, NewConversation, NewJob

STREAMING_SOURCE = "streaming"


class StoredStreamConversations:
    def __init__(
        self, jobs: JobStore, *, on_job_submitted: Callable[[], None], default_webhook_url: str | None
    ) -> None:
        self._jobs = jobs
        self._on_job_submitted = on_job_submitted
        self._default_webhook_url = default_webhook_url

    async def open(self, *, name: str | None, start_time: datetime) -> str:
        conversation_id = new_conversation_id()
        await self._jobs.create_conversation(
            NewConversation(
                id=conversation_id, name=name or conversation_id, source=STREAMING_SOURCE, start_time=start_time
            )
        )
        return conversation_id

    async def complete(
        self, conversation_id: str, utterances: Sequence[Utterance], *, options: dict[str, Any], webhook_url: str | None
    ) -> str:
        job = NewJob(
            id=new_job_id(),
            kind="streaming",
            options=options,
            input_json=[utterance.model_dump(mode="json") for utterance in utterances],
            webhook_url=webhook_url or self._default_webhook_url,
        )
        row = await self._jobs.submit_job(job, conversation_id=conversation_id)
        self._on_job_submitted()
        return row.id
