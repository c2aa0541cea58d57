"""Turning a record that cannot be handled into a dead letter: the reason, where it came from, the original bytes.

Dead letters are events like any other output: the hop that gives up on a record writes one to its declared
dead-letter stream, in the transaction that commits the record's offset, and it is counted once that commits.
"""

from __future__ import annotations

import base64
import json
import re
from typing import Any

from parley_shared.events import DeadLetter
from parley_shared.kafka.hops import Stream
from parley_shared.metrics import DEAD_LETTERS, series

# Dead letters carry the original base64-encoded (4/3 of its size); past this the original is cut, and says so.
MAX_ORIGINAL_BYTES = 2 * 1024 * 1024
_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def _peek_ids(value: bytes | None) -> dict[str, str | None]:
    """Best effort: the ids of a broken record, so an operator can find what it was about."""
    try:
        body = json.loads(value or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return {}
    if not isinstance(body, dict):
        return {}
    ids: dict[str, str | None] = {}
    for wire, name in (
        ("requestId", "request_id"),
        ("conversationId", "conversation_id"),
        ("jobId", "job_id"),
    ):
        candidate = body.get(wire)
        # Only well-formed ids: a hostile one (a lone surrogate, say) must not break the dead letter itself.
        if isinstance(candidate, str) and _ID.match(candidate):
            ids[name] = candidate
    return ids


def dead_letter(
    *,
    service: str,
    error: BaseException | str,
    value: bytes | None,
    key: bytes | None = None,
    source_topic: str | None = None,
    source_partition: int | None = None,
    source_offset: int | None = None,
    attempts: int = 1,
) -> DeadLetter:
    reason = error if isinstance(error, str) else (str(error) or type(error).__name__)
    original = value or b""
    truncated = len(original) > MAX_ORIGINAL_BYTES
    letter = DeadLetter(
        service=service,
        reason=reason[:4_000],
        error_type="InvalidInput" if isinstance(error, str) else type(error).__name__,
        attempts=attempts,
        source_topic=source_topic,
        source_partition=source_partition,
        source_offset=source_offset,
        original_key=base64.b64encode(key).decode() if key is not None else None,
        original_value=base64.b64encode(original[:MAX_ORIGINAL_BYTES]).decode(),
        original_truncated=truncated,
        **_peek_ids(value),
    )
    return letter


def original_key(letter: DeadLetter) -> bytes | None:
    """The record key of a dead letter: the original record's, so it lands beside what it was about."""
    return base64.b64decode(letter.original_key) if letter.original_key is not None else None


def count_dead_letter(letter: DeadLetter) -> None:
    """Once the dead letter is committed."""
    series(DEAD_LETTERS, letter.service, letter.error_type).inc()


def dead_letter_from_record(record: Any, *, service: str, error: BaseException | str, attempts: int = 1) -> DeadLetter:
    """A dead letter for an aiokafka ``ConsumerRecord``."""
    return dead_letter(
        service=service,
        error=error,
        value=record.value,
        key=record.key,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=record.offset,
        attempts=attempts,
    )


def dead_letter_stream(topic: str, description: str) -> Stream[DeadLetter]:
    """The dead-letter stream, for a hop's ``produces``: keyed like the original record, counted once committed."""
    return Stream(topic, DeadLetter, description, key=original_key, on_committed=count_dead_letter)
