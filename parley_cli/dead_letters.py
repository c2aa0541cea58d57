"""``parley dead-letters list|replay``: look at what no service could handle, and send it back once fixed.

Replay republishes each chosen letter's original bytes, with its original key, to the topic it came from, with a
``parley-replay-of`` header naming the dead letter. The services are idempotent on what they read (ingest submits a
``requestId`` once, job-watcher settles a ``jobId`` once), so replaying a letter twice does no harm.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated

import typer
from aiokafka import AIOKafkaProducer
from parley_shared.events import DeadLetter
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.kafka.history import read_since
from parley_shared.settings import KafkaSettings, ParleySettings
from pydantic import ValidationError

dead_letters_app = typer.Typer(help="Inspect and replay the dead-letter topic.", no_args_is_help=True)
REPLAY_HEADER = "parley-replay-of"


@dataclass(frozen=True)
class LetterFilter:
    """Which dead letters an operator means: by age, service, source topic and a phrase of the reason."""

    since: datetime
    service: str | None = None
    source_topic: str | None = None
    reason_contains: str | None = None

    def matches(self, letter: DeadLetter) -> bool:
        return (
            (self.service is None or letter.service == self.service)
            and (self.source_topic is None or letter.source_topic == self.source_topic)
            and (self.reason_contains is None or self.reason_contains.lower() in letter.reason.lower())
        )


async def dead_letters(settings: KafkaSettings, topic: str, chosen: LetterFilter) -> AsyncIterator[DeadLetter]:
    async for record in read_since(settings, topic, chosen.since):
        try:
            letter = DeadLetter.model_validate_json(record.value or b"")
        except ValidationError:
            continue  # not written by Parley; nothing to replay it to
        if chosen.matches(letter):
            yield letter


async def replay(settings: KafkaSettings, topic: str, chosen: LetterFilter, *, dry_run: bool) -> list[DeadLetter]:
    """Republish the chosen letters' original records to their source topics; returns the letters replayed."""
    letters = [letter async for letter in dead_letters(settings, topic, chosen) if letter.source_topic]
    if dry_run or not letters:
        return letters
    producer = AIOKafkaProducer(**aiokafka_options(settings), enable_idempotence=True)
    await producer.start()
    try:
        for letter in letters:
            assert letter.source_topic is not None
            await producer.send(
                letter.source_topic,
                base64.b64decode(letter.original_value),
                key=base64.b64decode(letter.original_key) if letter.original_key is not None else None,
                headers=[(REPLAY_HEADER, letter.event_id.encode())],
            )
        await producer.flush()
    finally:
        await producer.stop()
    return letters


def _filter(hours: float, service: str | None, source_topic: str | None, reason: str | None) -> LetterFilter:
    return LetterFilter(
        since=datetime.now(UTC) - timedelta(hours=hours),
        service=service,
        source_topic=source_topic,
        reason_contains=reason,
    )


Hours = Annotated[float, typer.Option(help="only letters written in the last N hours")]
Service = Annotated[str | None, typer.Option(help="only letters from this service (ingest, job-watcher, …)")]
SourceTopic = Annotated[str | None, typer.Option(help="only letters read from this topic")]
Reason = Annotated[str | None, typer.Option(help="only letters whose reason contains this text")]


@dead_letters_app.command("list")
def list_letters(
    hours: Hours = 24.0,
    service: Service = None,
    source_topic: SourceTopic = None,
    reason: Reason = None,
    as_json: Annotated[bool, typer.Option("--json", help="print whole letters")] = False,
) -> None:
    """Show dead letters: when, which service, from where, and why."""
    settings = ParleySettings()

    async def show() -> int:
        count = 0
        async for letter in dead_letters(
            settings.kafka, settings.topics.dead_letters, _filter(hours, service, source_topic, reason)
        ):
            count += 1
            if as_json:
                typer.echo(letter.model_dump_json(by_alias=True))
            else:
                where = f"{letter.source_topic}[{letter.source_partition}]@{letter.source_offset}"
                typer.echo(
                    f"{letter.occurred_at:%Y-%m-%d %H:%M:%S} {letter.service} {where} "
                    f"({letter.error_type}, {letter.attempts} attempt(s)): {letter.reason}"
                )
        return count

    typer.echo(f"{asyncio.run(show())} dead letter(s)", err=True)


@dead_letters_app.command("replay")
def replay_letters(
    hours: Hours = 24.0,
    service: Service = None,
    source_topic: SourceTopic = None,
    reason: Reason = None,
    dry_run: Annotated[bool, typer.Option(help="say what would be replayed, send nothing")] = False,
) -> None:
    """Send chosen dead letters back to the topics they came from (after fixing what made them fail)."""
    settings = ParleySettings()
    letters = asyncio.run(
        replay(
            settings.kafka,
            settings.topics.dead_letters,
            _filter(hours, service, source_topic, reason),
            dry_run=dry_run,
        )
    )
    verb = "would replay" if dry_run else "replayed"
    for letter in letters:
        typer.echo(json.dumps({"deadLetter": letter.event_id, "to": letter.source_topic, "reason": letter.reason}))
    typer.echo(f"{verb} {len(letters)} dead letter(s)", err=True)
