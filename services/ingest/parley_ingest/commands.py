"""The ``parley.requests`` adapter: a Kafka record in, a ``JobSubmitted`` (or a dead letter) out."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from parley_shared.events import ProcessRequested
from parley_shared.kafka.consume import PermanentFailure, RecordHandler, TransientFailure
from parley_shared.kafka.publishing import OutgoingRecord
from parley_shared.provider import ProviderAuthError, ProviderError, ProviderUnavailable
from parley_shared.settings import TopicNames
from parley_shared.validation import describe_validation_error
from pydantic import ValidationError

from parley_ingest.submission import Submitter


def submitted_record(topics: TopicNames, submitted: Any) -> OutgoingRecord:
    return OutgoingRecord(topic=topics.jobs, key=submitted.conversation_id.encode(), value=submitted.to_wire())


def handle_process_requested(submitter: Submitter, topics: TopicNames) -> RecordHandler:
    async def handle(record: Any) -> Sequence[OutgoingRecord]:
        try:
            request = ProcessRequested.model_validate_json(record.value or b"")
        except ValidationError as error:
            raise PermanentFailure(f"invalid ProcessRequested: {describe_validation_error(error)}") from None
        try:
            submitted, _ = await submitter.submit(request)
        except ProviderUnavailable as error:
            raise TransientFailure(str(error)) from error
        except ProviderError as error:
            if isinstance(error, ProviderAuthError):  # our credentials, not the record: may be fixed
                raise TransientFailure(str(error)) from error
            raise PermanentFailure(str(error)) from error
        # Published even for a repeated request: the first publish may have been lost; job-watcher dedupes jobIds.
        return [submitted_record(topics, submitted)]

    return handle
