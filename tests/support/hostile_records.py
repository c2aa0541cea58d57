"""Hostile Kafka records for Parley's consumed topics, generated with hypothesis before any network I/O.

Each record starts from a valid event of its topic and is broken in one way an upstream producer (buggy or
malicious) could break it: bytes that are not JSON, JSON that is not an object, an unknown ``eventType``, a wrong
``schemaVersion``, a missing, null, mistyped or oversized field, an unexpected field, ids outside the id
alphabet, lone UTF-16 surrogates, invalid UTF-8, truncation, numbers too big to parse, and nesting far deeper than
any parser's recursion limit. Only records the service's own validator refuses are kept, so each one must end up
on the dead-letter topic.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from parley_shared.events import ProcessRequested, completion_adapter, jobs_topic_adapter
from pydantic import ValidationError


@dataclass(frozen=True)
class HostileRecord:
    key: bytes | None
    value: bytes


def _valid_process_requested() -> dict[str, Any]:
    return {
        "eventType": "ProcessRequested",
        "schemaVersion": 1,
        "eventId": "2f1c6f0e-2f55-4b7b-9d3e-0c8f3f7f1a11",
        "occurredAt": "2024-05-01T10:00:00Z",
        "requestId": "fuzz-request",
        "kind": "text",
        "messages": [{"payload": {"content": "hello"}, "from": {"userId": "a@example.com"}}],
    }


def _valid_job_submitted() -> dict[str, Any]:
    return {
        "eventType": "JobSubmitted",
        "schemaVersion": 1,
        "eventId": "2f1c6f0e-2f55-4b7b-9d3e-0c8f3f7f1a12",
        "occurredAt": "2024-05-01T10:00:00Z",
        "requestId": "fuzz-request",
        "conversationId": "5815170693595136",
        "jobId": "9b8d8c4e-4d55-4b0e-a0e5-6f1a2b3c4d5e",
        "kind": "text",
        "submittedAt": "2024-05-01T10:00:00Z",
    }


def _valid_job_completed() -> dict[str, Any]:
    return {
        "eventType": "JobCompleted",
        "schemaVersion": 1,
        "eventId": "2f1c6f0e-2f55-4b7b-9d3e-0c8f3f7f1a13",
        "occurredAt": "2024-05-01T10:00:00Z",
        "requestId": "fuzz-request",
        "conversationId": "5815170693595136",
        "jobId": "9b8d8c4e-4d55-4b0e-a0e5-6f1a2b3c4d5e",
        "submittedAt": "2024-05-01T10:00:00Z",
        "completedAt": "2024-05-01T10:01:00Z",
        "detectedBy": "webhook",
    }


@dataclass(frozen=True)
class ConsumedTopic:
    """A topic a service consumes: a valid event to break, and the validator the service applies."""

    name: str
    template: Callable[[], dict[str, Any]]
    validate: Callable[[bytes], object]

    def refuses(self, value: bytes) -> bool:
        try:
            self.validate(value)
        except ValidationError:
            return True
        return False


REQUESTS = ConsumedTopic("requests", _valid_process_requested, ProcessRequested.model_validate_json)
JOBS = ConsumedTopic("jobs", _valid_job_submitted, jobs_topic_adapter.validate_json)
COMPLETIONS = ConsumedTopic("completions", _valid_job_completed, completion_adapter.validate_json)
CONSUMED_TOPICS = (REQUESTS, JOBS, COMPLETIONS)

KNOWN_EVENT_TYPES = {"ProcessRequested", "JobSubmitted", "JobResolved", "JobCompleted", "JobFailed"}

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=50),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=10), inner, max_size=5)),
    max_leaves=20,
)
keys = st.one_of(st.none(), st.binary(max_size=64), st.text(max_size=64).map(lambda text: text.encode()))


def _encode(body: object) -> bytes:
    return json.dumps(body).encode()


@st.composite
def _field_replaced(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    """One field of a valid event given a value of any JSON type (mostly the wrong one), or null."""
    body = topic.template()
    name = draw(st.sampled_from(sorted(body)))
    body[name] = draw(st.one_of(st.none(), json_values))
    return _encode(body)


@st.composite
def _field_missing(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    for name in draw(st.lists(st.sampled_from(sorted(body)), min_size=1, unique=True)):
        del body[name]
    return _encode(body)


@st.composite
def _unknown_event_type(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    body["eventType"] = draw(st.text(max_size=40).filter(lambda name: name not in KNOWN_EVENT_TYPES))
    return _encode(body)


@st.composite
def _wrong_schema_version(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    body["schemaVersion"] = draw(
        st.one_of(st.integers().filter(lambda version: version != 1), st.text(max_size=5), st.none(), json_values)
    )
    return _encode(body)


@st.composite
def _unexpected_field(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    name = draw(st.text(min_size=1, max_size=30).filter(lambda name: name not in body))
    body[name] = draw(json_values)
    return _encode(body)


# Outside the id alphabet [A-Za-z0-9._:-], or longer than 128 characters.
hostile_ids = st.one_of(
    st.text(min_size=1, max_size=60).filter(
        lambda text: any(not (c.isascii() and (c.isalnum() or c in "._:-")) for c in text)
    ),
    st.sampled_from(["../../etc/passwd", "id with spaces", "id\nwith\nnewlines", "'; DROP TABLE jobs; --", ""]),
    st.integers(129, 5_000).map(lambda size: "9" * size),
)


@st.composite
def _hostile_id(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    id_fields = [name for name in ("requestId", "conversationId", "jobId") if name in body]
    body[draw(st.sampled_from(id_fields))] = draw(hostile_ids)
    return _encode(body)


@st.composite
def _lone_surrogate(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    """JSON escapes of unpaired UTF-16 surrogates: valid for Python's json module, not encodable as UTF-8."""
    body = topic.template()
    name = draw(st.sampled_from(sorted(body)))
    escape = draw(st.sampled_from(["\\ud800", "\\udfff", "\\udbff\\u0041", "x\\udc80y"]))
    marker = "SURROGATE-MARKER"
    body[name] = marker
    return _encode(body).replace(marker.encode(), escape.encode())


@st.composite
def _invalid_utf8(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    encoded = _encode(topic.template())
    at = draw(st.integers(0, len(encoded)))
    junk = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\x00", b"\xf8\x88\x80\x80\x80"]))
    return encoded[:at] + junk + encoded[at:]


@st.composite
def _truncated(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    encoded = _encode(topic.template())
    return encoded[: draw(st.integers(0, len(encoded) - 1))]


@st.composite
def _unparsable_numbers(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    body = topic.template()
    name = draw(st.sampled_from(sorted(body)))
    number = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e99999", "9" * 5_000, "-0.0e-99999"]))
    body[name] = "NUMBER-MARKER"
    return _encode(body).replace(b'"NUMBER-MARKER"', number.encode())


@st.composite
def _deeply_nested(draw: st.DrawFn, topic: ConsumedTopic) -> bytes:
    """Nesting beyond every recursion limit, at the top level or inside a field, closed or not."""
    depth = draw(st.integers(150, 20_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    nested = opener * depth + b"1" + (closer * depth if draw(st.booleans()) else b"")
    if draw(st.booleans()):
        return nested
    body = topic.template()
    name = draw(st.sampled_from(sorted(body)))
    body[name] = "NESTED-MARKER"
    return _encode(body).replace(b'"NESTED-MARKER"', nested)


def hostile_values(topic: ConsumedTopic) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=2_000),
        json_values.filter(lambda value: not isinstance(value, dict)).map(_encode),
        _field_replaced(topic),
        _field_missing(topic),
        _unknown_event_type(topic),
        _wrong_schema_version(topic),
        _unexpected_field(topic),
        _hostile_id(topic),
        _lone_surrogate(topic),
        _invalid_utf8(topic),
        _truncated(topic),
        _unparsable_numbers(topic),
        _deeply_nested(topic),
    )


def hostile_records(topic: ConsumedTopic, count: int, *, random_seed: int) -> list[HostileRecord]:
    """``count`` records the topic's validator refuses, drawn up front (no I/O per hypothesis example)."""
    strategy = st.builds(HostileRecord, key=keys, value=hostile_values(topic))
    drawn: list[HostileRecord] = []
    for attempt in range(10):
        if len(drawn) >= count:
            break

        @settings(
            max_examples=count - len(drawn),
            database=None,
            deadline=None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @seed(random_seed + attempt)
        @given(strategy)
        def collect(record: HostileRecord) -> None:
            if topic.refuses(record.value):
                drawn.append(record)

        collect()
    return drawn[:count]


def huge_records(topic: ConsumedTopic) -> list[HostileRecord]:
    """Values just under Kafka's default 1 MB record limit: a 900 kB string field, and 900 kB of junk."""
    body = topic.template()
    body["requestId"] = "r" * 900_000
    padded = topic.template()
    padded["name"] = "n" * 900_000
    padded["schemaVersion"] = 2
    return [
        HostileRecord(key=b"huge-id", value=_encode(body)),
        HostileRecord(key=b"huge-field", value=_encode(padded)),
        HostileRecord(key=None, value=b"\xfe" * 900_000),
    ]
