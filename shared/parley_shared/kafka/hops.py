"""Hops, each declared once: what a service reads, what it writes, and the handler between.

A composition root declares every way events enter and leave its service with the classes below and hands them to
``PipelineService`` (``parley_shared.service``), which builds from them the Kafka subscriber, the transactional
publishing of outputs with the consumed offsets, dead letters, the retry-or-give-up decision, a span per record,
metrics counted after commit, and the AsyncAPI document. So a service's ``app.py`` shows, in code, everything it
consumes and produces, and a handler is a plain async function from an event to the events it produces.

- ``Transform``: a consumer group on one topic; each event's outputs are committed with its offset.
- ``Feed``: a consumer group whose events go to a stateful owner that writes outputs later and commits the offsets
  with them (job-watcher holds a job's offset until the job settles).
- ``HttpInput``: requests served over HTTP whose outputs are written through the same transactional producer.
- ``StartupRead``: a topic's recent history read once at start-up to rebuild state.
"""

from __future__ import annotations

import functools
import types
import typing
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, TypeAdapter

from parley_shared.kafka.publishing import OutgoingRecord, with_trace_context

EventT = TypeVar("EventT", bound=BaseModel)
InT = TypeVar("InT", bound=BaseModel)
OutT = TypeVar("OutT", bound=BaseModel)
EventT_contra = TypeVar("EventT_contra", bound=BaseModel, contravariant=True)


def conversation_key(event: Any) -> bytes | None:
    """Parley's events are keyed by conversationId, so one conversation's events stay in order on one partition."""
    conversation_id = getattr(event, "conversation_id", None)
    return conversation_id.encode() if conversation_id else None


def partition_by_key(_: Any) -> int | None:
    """The producer's partitioner places the record by its key."""
    return None


def _event_classes(events: Any) -> tuple[type[BaseModel], ...]:
    """The model classes of ``events``: one model, a union of them, or an ``Annotated`` discriminated union."""
    if typing.get_origin(events) is typing.Annotated:
        return _event_classes(typing.get_args(events)[0])
    if typing.get_origin(events) in (typing.Union, types.UnionType):
        return tuple(c for member in typing.get_args(events) for c in _event_classes(member))
    if isinstance(events, type) and issubclass(events, BaseModel):
        return (events,)
    raise TypeError(f"a stream carries pydantic models, not {events!r}")


@dataclass(frozen=True, eq=False)
class Stream(Generic[EventT]):
    """A topic and the events a hop reads from it or writes to it.

    ``events`` is a model or a (discriminated) union of models; ``on_committed`` is called for each event written
    here once its transaction has committed, which is where per-outcome metrics are counted. ``partition`` names an
    event's partition outright, for the rare event that cannot be placed by its key.
    """

    topic: str
    events: Any
    description: str
    key: Callable[[EventT], bytes | None] = conversation_key
    partition: Callable[[EventT], int | None] = partition_by_key
    on_committed: Callable[[EventT], None] | None = None

    @functools.cached_property
    def event_classes(self) -> tuple[type[BaseModel], ...]:
        return _event_classes(self.events)

    @functools.cached_property
    def _adapter(self) -> TypeAdapter[EventT]:
        return TypeAdapter(self.events)

    @property
    def event_names(self) -> str:
        return " | ".join(c.__name__ for c in self.event_classes)

    def decode(self, value: bytes | None) -> EventT:
        """The event a record holds (raises pydantic's ``ValidationError`` when it holds none of this stream's)."""
        return self._adapter.validate_json(value or b"")

    def accepts(self, event: object) -> bool:
        return isinstance(event, self.event_classes)

    def record(self, event: EventT) -> OutgoingRecord:
        wire = getattr(event, "to_wire", None)
        value = wire() if wire is not None else event.model_dump_json(by_alias=True, exclude_none=True).encode()
        return OutgoingRecord(topic=self.topic, key=self.key(event), partition=self.partition(event), value=value)


class UndeclaredOutput(Exception):
    """A handler produced an event that none of its hop's declared output streams carries (a programming error)."""


@dataclass(frozen=True)
class Outputs:
    """The streams a hop writes; routes each event to the first that carries its type."""

    streams: tuple[Stream[Any], ...]

    def stream_for(self, event: BaseModel) -> Stream[Any]:
        for stream in self.streams:
            if stream.accepts(event):
                return stream
        declared = ", ".join(f"{s.topic} ({s.event_names})" for s in self.streams) or "nothing"
        raise UndeclaredOutput(f"{type(event).__name__} is not among this hop's outputs: {declared}")

    def records(self, events: Iterable[BaseModel]) -> list[OutgoingRecord]:
        """The records of ``events``, carrying the current trace to their consumers."""
        return with_trace_context([self.stream_for(event).record(event) for event in events])

    def committed(self, events: Iterable[BaseModel]) -> None:
        """Run each stream's ``on_committed`` for the events whose transaction has committed."""
        for event in events:
            hook = self.stream_for(event).on_committed
            if hook is not None:
                hook(event)


@dataclass(frozen=True)
class Transform(Generic[InT, OutT]):
    """Read ``consumes`` in a consumer group; ``handler`` turns each event into the events it produces.

    The outputs of a batch, its dead letters and its offsets are committed in one transaction. A record that does
    not hold one of the consumed events, or whose handling fails for good, becomes a dead letter; a transient
    failure (provider or network trouble) is retried with backoff. See ``parley_shared.kafka.consume``.
    """

    name: str
    consumes: Stream[InT]
    produces: tuple[Stream[Any], ...]
    handler: Callable[[InT], Awaitable[Sequence[OutT]]]
    concurrency: int = 64
    max_records: int = 256


@dataclass(frozen=True)
class RecordPosition:
    """Where a consumed event was read, and the trace its producer started."""

    partition: int
    offset: int
    trace_parent: str | None = None


class FeedOwner(Protocol[EventT_contra]):
    """What a ``Feed`` hands its events to: the owner writes outputs later and commits the offsets with them."""

    def on_event(self, event: EventT_contra, position: RecordPosition) -> None: ...

    def on_unreadable(self, letter: Any, position: RecordPosition) -> None:
        """A record that holds none of the consumed events: its dead letter goes out with the owner's next commit."""
        ...


@dataclass(frozen=True)
class Feed(Generic[InT]):
    """Read ``consumes`` in a consumer group and hand each event to ``owner``, which writes ``produces`` when it
    decides (from this input, HTTP callbacks or timers) and commits the consumed offsets in those transactions."""

    name: str
    consumes: Stream[InT]
    produces: tuple[Stream[Any], ...]
    owner: FeedOwner[InT]
    commits: str  # how the owner commits offsets, for the reader and the documents
    listener: Any = None  # an aiokafka ConsumerRebalanceListener
    max_records: int = 1000


@dataclass(frozen=True)
class HttpInput:
    """Requests served over HTTP; what they produce is written through the service's transactional producer."""

    name: str  # the routes, e.g. "POST /webhooks/jobs"
    description: str
    produces: tuple[Stream[Any], ...] = ()


@dataclass(frozen=True)
class StartupRead(Generic[InT]):
    """Before consuming, read ``consumes`` from ``since()`` to its current end and hand each event to ``handler``
    (records holding other events are skipped: the topic may be shared with other hops)."""

    name: str
    consumes: Stream[InT]
    since: Callable[[], datetime]
    handler: Callable[[InT], None]


@dataclass
class Declarations:
    """Every hop a service runs, in the order its composition root declared them."""

    service: str
    hops: list[Transform[Any, Any] | Feed[Any] | HttpInput | StartupRead[Any]] = field(default_factory=list)

    def consumed(self) -> list[Stream[Any]]:
        return [h.consumes for h in self.hops if isinstance(h, Transform | Feed)]
