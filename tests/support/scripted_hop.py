"""A Transform hop whose handler does what each event says: echo it, fail for good, fail for a while, or crash."""

from __future__ import annotations

from dataclasses import dataclass, field

from parley_shared.events import DeadLetter
from parley_shared.kafka.consume import ConsumeProduceStep, PermanentFailure, TransientFailure
from parley_shared.kafka.dead_letters import count_dead_letter, original_key
from parley_shared.kafka.hops import Stream, Transform
from parley_shared.provider import ProviderRejected, ProviderUnavailable
from parley_shared.retry import RetryPolicy
from pydantic import BaseModel

from tests.support.kafka_fakes import FakeRecord, RecordedSleep, RecordingPublisher

SOURCE = "parley.requests"
OUTPUT = "parley.jobs"
DEAD_LETTERS = "parley.dead-letters"
GROUP = "parley-test"


class Said(BaseModel):
    """The consumed event: ``ok:<text>`` is echoed, ``bad`` fails for good, ``bug`` is a bug in the handler,
    ``flaky:<n>`` fails n times and then works, ``rejected`` / ``unavailable`` are the provider's errors."""

    conversation_id: str
    text: str


class Echoed(BaseModel):
    conversation_id: str
    text: str


class Stray(BaseModel):
    """An event no stream of the hop declares."""

    conversation_id: str


@dataclass
class ScriptedHandler:
    attempts: dict[str, int] = field(default_factory=dict)

    async def __call__(self, event: Said) -> list[BaseModel]:
        self.attempts[event.text] = self.attempts.get(event.text, 0) + 1
        if event.text == "bad":
            raise PermanentFailure("the record is not a ProcessRequested")
        if event.text == "bug":
            raise KeyError("conversationId")
        if event.text == "stray":
            return [Stray(conversation_id=event.conversation_id)]
        if event.text == "rejected":
            raise ProviderRejected("POST /v1/process/text: 400", status=400, provider_message="no messages")
        if event.text == "unavailable":
            raise ProviderUnavailable("POST /v1/process/text: 503", status=503, attempts=6)
        if event.text.startswith("flaky:"):
            if self.attempts[event.text] <= int(event.text.removeprefix("flaky:")):
                raise TransientFailure("the provider answered 503")
            return [Echoed(conversation_id=event.conversation_id, text="recovered")]
        return [Echoed(conversation_id=event.conversation_id, text=event.text.removeprefix("ok:").upper())]


@dataclass
class Committed:
    """What the hop's streams saw committed; dead letters are counted in the metrics as the service's are."""

    echoed: list[str] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)

    def dead_letter(self, letter: DeadLetter) -> None:
        count_dead_letter(letter)
        self.dead_letters.append(letter)


def make_step(
    handler: ScriptedHandler,
    publisher: RecordingPublisher,
    sleep: RecordedSleep,
    committed: Committed | None = None,
    *,
    max_attempts: int = 4,
) -> ConsumeProduceStep:
    committed = committed or Committed()
    hop = Transform[Said, BaseModel](
        "echo",
        consumes=Stream(SOURCE, Said, "what was said"),
        produces=(
            Stream[Echoed](OUTPUT, Echoed, "echoes", on_committed=lambda e: committed.echoed.append(e.text)),
            Stream[DeadLetter](
                DEAD_LETTERS, DeadLetter, "dead letters", key=original_key, on_committed=committed.dead_letter
            ),
        ),
        handler=handler,
    )
    # The largest delay of each attempt (random() → 1.0): the backoff ceilings themselves.
    retries = RetryPolicy(base_seconds=0.5, max_seconds=30.0, max_attempts=max_attempts, random=lambda: 1.0)
    return ConsumeProduceStep(hop, service="ingest", publisher=publisher, group_id=GROUP, retries=retries, sleep=sleep)


def said(text: str, conversation_id: str = "conv-1") -> bytes:
    return Said(conversation_id=conversation_id, text=text).model_dump_json().encode()


def record(partition: int, offset: int, value: bytes | None, key: bytes | None = b"conv-1") -> FakeRecord:
    return FakeRecord(topic=SOURCE, partition=partition, offset=offset, key=key, value=value)


def echoes(publisher: RecordingPublisher, publication: int = 0) -> list[str]:
    published = publisher.publications[publication]
    return [Echoed.model_validate_json(r.value).text for r in published.records if r.topic == OUTPUT]


def letters(publisher: RecordingPublisher, publication: int = 0) -> list[DeadLetter]:
    published = publisher.publications[publication]
    return [DeadLetter.model_validate_json(r.value) for r in published.records if r.topic == DEAD_LETTERS]
