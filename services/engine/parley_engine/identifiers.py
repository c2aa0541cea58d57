"""Identifiers in Symbl's formats, drawn from ``secrets`` so they cannot be guessed from one another."""

from __future__ import annotations

import secrets
import uuid


def new_numeric_id(digits: int = 16) -> str:
    """A ``digits``-long decimal string that does not start with 0 (Symbl's conversation and message ids)."""
    first = str(secrets.randbelow(9) + 1)
    rest = "".join(str(secrets.randbelow(10)) for _ in range(digits - 1))
    return first + rest


def new_conversation_id() -> str:
    return new_numeric_id(16)


def new_job_id() -> str:
    return str(uuid.UUID(bytes=secrets.token_bytes(16), version=4))


def new_message_id_prefix() -> str:
    """The first ten digits of every message id one job creates; ``message_id`` adds six more."""
    return new_numeric_id(10)


def message_id(prefix: str, index: int) -> str:
    """A 16-digit message id: the job's prefix, then the message's index in the conversation."""
    return f"{prefix}{index % 10 ** (16 - len(prefix)):0{16 - len(prefix)}d}"
