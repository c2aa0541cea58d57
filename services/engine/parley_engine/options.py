"""The Async API's request bodies and options, read from JSON bodies or (for file uploads) the query string.

Symbl's clients disagree on how list and object options travel in a query string: the documentation and the
``symbl`` SDK JSON-encode them, the generated ``symbl-rest`` client repeats ``customVocabulary`` and writes other
lists as Python literals. All three are accepted.
"""

from __future__ import annotations

import ast
import json
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel
from starlette.datastructures import QueryParams

from parley_engine.conversation import AnalysisOptions
from parley_engine.redaction.options import RedactionOptions
from parley_engine.speech.options import SpeechOptions

# Options whose value is a list or an object; everything else in a query string is a scalar.
_STRUCTURED_OPTIONS = frozenset(
    {"customVocabulary", "entities", "trackers", "channelMetadata", "metadata", "features", "redaction"}
)
# Query parameters that are not job options.
_NOT_OPTIONS = frozenset({"access_token"})
_SPEECH_FIELDS = (
    "language_code",
    "custom_vocabulary",
    "channel_metadata",
    "enable_separate_recognition_per_channel",
    "enable_speaker_diarization",
    "diarization_speaker_count",
)
_ANALYSIS_FIELDS = tuple(AnalysisOptions.model_fields)


class _CamelModel(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel), populate_by_name=True, extra="ignore"
    )


class CustomEntityIn(_CamelModel):
    custom_type: str
    text: str
    value: str | None = None


class TrackerIn(_CamelModel):
    name: str
    vocabulary: list[str]


class AsyncOptions(_CamelModel):
    """Options every Async API endpoint accepts; which of them matter depends on the input."""

    name: str | None = None
    confidence_threshold: float | None = Field(None, ge=0.5, le=1.0)
    detect_phrases: bool | None = None
    webhook_url: str | None = None
    entities: list[CustomEntityIn] | None = None
    detect_entities: bool | None = None
    trackers: list[TrackerIn] | None = None
    enable_all_trackers: bool | None = None
    enable_summary: bool | None = None
    custom_vocabulary: list[str] | None = None
    language_code: str | None = None
    mode: Literal["phone", "default"] | None = None
    enable_separate_recognition_per_channel: bool | None = None
    enable_speaker_diarization: bool | None = None
    diarization_speaker_count: int | None = Field(None, ge=1)
    channel_metadata: list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = Field(None, description="stored as the conversation's metadata")
    redaction: RedactionOptions | None = Field(
        None, description='PII redaction: {"enabled": true, "entityTypes": [...], "substitution": "entityType"|"hash"}'
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url is not None and not url.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url

    def analysis_overrides(self) -> dict[str, Any]:
        """The analysis options this request set explicitly (snake_case, as ``AnalysisOptions`` names them)."""
        chosen = {
            name: _plain(getattr(self, name)) for name in _ANALYSIS_FIELDS if getattr(self, name, None) is not None
        }
        return AnalysisOptions.model_validate(chosen).model_dump(include=set(chosen), mode="json")

    def speech_options(self) -> SpeechOptions:
        chosen = {name: getattr(self, name) for name in _SPEECH_FIELDS if getattr(self, name) is not None}
        return SpeechOptions.model_validate(chosen)

    def job_options(self, *, speech: bool) -> dict[str, Any]:
        """What a job keeps of the request: raises ``ValidationError`` for options that do not validate."""
        return {
            "name": self.name,
            "mode": self.mode,
            "analysis": self.analysis_overrides(),
            "speech": self.speech_options().model_dump(mode="json") if speech else None,
        }


class PayloadIn(_CamelModel):
    content: str = Field(min_length=1)
    content_type: str | None = None


class SpeakerIn(_CamelModel):
    user_id: str | None = None
    name: str | None = None
    email: str | None = None
    id: str | None = None


class DurationIn(_CamelModel):
    start_time: datetime | None = None
    end_time: datetime | None = None


class MessageIn(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    payload: PayloadIn
    from_: SpeakerIn | None = Field(None, alias="from")
    duration: DurationIn | None = None


class TextRequest(AsyncOptions):
    messages: list[MessageIn] = Field(min_length=1)

    def stored_messages(self) -> list[dict[str, Any]]:
        """The messages as a text job keeps them until it runs."""
        stored = []
        for message in self.messages:
            sender = message.from_
            duration = message.duration or DurationIn()
            stored.append(
                {
                    "payload": {"content": message.payload.content},
                    "from": None
                    if sender is None
                    else {"id": sender.id, "userId": sender.user_id, "name": sender.name, "email": sender.email},
                    "duration": {
                        "startTime": duration.start_time.isoformat() if duration.start_time else None,
                        "endTime": duration.end_time.isoformat() if duration.end_time else None,
                    },
                }
            )
        return stored

    def first_start_time(self) -> datetime | None:
        for message in self.messages:
            if message.duration is not None and message.duration.start_time is not None:
                return message.duration.start_time
        return None


class UrlRequest(AsyncOptions):
    url: str

    @field_validator("url")
    @classmethod
    def _http_media_url(cls, url: str) -> str:
        if not url.lower().startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return url


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value.model_dump() if isinstance(value, BaseModel) else value


def _structured_value(raw: str) -> Any:
    """A list or object from one query value: JSON, else a Python literal, else the bare string."""
    text = raw.strip()
    if text[:1] in "[{":
        try:
            return json.loads(text)
        except ValueError:
            try:
                return ast.literal_eval(text)
            except (ValueError, SyntaxError):
                return raw
    return raw


def options_from_query(query: QueryParams) -> dict[str, Any]:
    """Async API options from a query string, as a dict ready for ``AsyncOptions.model_validate``."""
    options: dict[str, Any] = {}
    for key in query:
        if key in _NOT_OPTIONS or key in options:
            continue
        values = query.getlist(key)
        if key in _STRUCTURED_OPTIONS:
            decoded = [_structured_value(value) for value in values]
            if len(decoded) == 1:
                single = decoded[0]
                options[key] = single if isinstance(single, list | dict) or key == "metadata" else [single]
            else:
                options[key] = [item for value in decoded for item in (value if isinstance(value, list) else [value])]
        else:
            options[key] = values[-1]
    return options
