"""The Telephony API's request bodies (``POST /v1/endpoint:connect``), as Symbl's docs and SDKs send them.

``start`` names an endpoint to dial: ``sip`` (a SIP URI the engine calls itself) or ``pstn`` (a phone number,
called through the configured SIP trunk, with optional ``dtmf`` digits sent once answered). ``stop`` names the
``connectionId`` that ``start`` returned. Everything the Streaming API's ``start_request`` takes for recognition
and insights (``insightTypes``, ``customVocabulary``, ``trackers``, ``redaction``, a ``webhookUrl`` for the job)
is taken here too, so a call is a live stream whose audio comes from the call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from parley_engine.redaction.options import RedactionOptions
from parley_engine.streaming.frames import StreamTracker
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# E.164 without the "+": country code and number, 7 to 15 digits (Symbl: "14082924837").
PHONE_NUMBER = re.compile(r"^[1-9]\d{6,14}$")
# Symbl's dtmf string: digits, *, #, A-D, and "," for a half-second pause.
DTMF = re.compile(r"^[0-9*#A-Da-d,]{1,64}$")
SIP_URI = re.compile(
    r"^(?P<scheme>sips?):(?:(?P<user>[^@;?]+)@)?(?P<host>\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.\-]+)(?::(?P<port>\d{1,5}))?"
    r"(?P<params>(?:;[^;?=]+(?:=[^;?]*)?)*)(?:\?.*)?$"
)
INSIGHT_TYPES = {"question", "action_item", "follow_up", "topic"}


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class AudioConfig(_Camel):
    """The SIP endpoint's preferred audio: Symbl names ``OPUS`` (or ``PCMU``/``PCMA``) at a ``sampleRate``."""

    encoding: Literal["OPUS", "opus", "Opus", "PCMU", "pcmu", "PCMA", "pcma", "MULAW", "mulaw"] | None = None
    sample_rate: int | None = Field(None, ge=8000, le=48000)
    sample_size: int | None = Field(None, description="bits per sample; informational")


class SipEndpoint(_Camel):
    type: Literal["sip"]
    uri: str = Field(min_length=5, max_length=512, description="sip:user@host[:port][;transport=tcp]")
    audio_config: AudioConfig | None = None
    provider_name: str | None = None

    @field_validator("uri")
    @classmethod
    def _sip_uri(cls, uri: str) -> str:
        parse_sip_uri(uri)
        return uri


class PstnEndpoint(_Camel):
    type: Literal["pstn"]
    phone_number: str = Field(description="E.164 without the +, e.g. 14082924837")
    dtmf: str | None = Field(None, description="digits sent once the call is answered; ',' waits half a second")
    provider_name: str | None = None

    @field_validator("phone_number")
    @classmethod
    def _e164(cls, number: str) -> str:
        if not PHONE_NUMBER.match(number):
            raise ValueError("phoneNumber must be an E.164 number without the '+', 7 to 15 digits (14082924837)")
        return number

    @field_validator("dtmf")
    @classmethod
    def _dtmf(cls, digits: str | None) -> str | None:
        if digits is not None and digits != "" and not DTMF.match(digits):
            raise ValueError("dtmf may hold only 0-9, *, #, A-D and ',' (a half-second pause), at most 64 of them")
        return digits or None


class Action(_Camel):
    invoke_on: str = Field(min_length=1)
    name: str = Field(min_length=1)
    parameters: dict[str, Any] = Field(default_factory=dict)


class SessionData(_Camel):
    name: str | None = Field(None, max_length=512)


class ConnectData(_Camel):
    session: SessionData | None = None


class StartCall(_Camel):
    operation: Literal["start"]
    endpoint: Annotated[SipEndpoint | PstnEndpoint, Field(discriminator="type")]
    actions: list[Action] = Field(default_factory=list)
    data: ConnectData | None = None
    timezone: str | None = None
    languages: list[str] = Field(default_factory=lambda: ["en-US"])
    insight_types: list[str] = Field(default_factory=lambda: ["question", "action_item", "follow_up"])
    custom_vocabulary: list[str] | None = None
    trackers: list[StreamTracker] | None = None
    redaction: RedactionOptions | None = None
    push_speaker_events: bool = False
    webhook_url: str | None = Field(
        None,
        validation_alias=AliasChoices("webhookUrl", "webhook_url"),
        description="a Parley extension: where the call's job reports status (as an Async job's webhookUrl)",
    )

    @field_validator("webhook_url")
    @classmethod
    def _http_url(cls, url: str | None) -> str | None:
        if url and not url.lower().startswith(("http://", "https://")):
            raise ValueError("webhookUrl must be an http(s) URL")
        return url or None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, zone: str | None) -> str | None:
        if zone:
            try:
                ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown timezone {zone!r}: use an IANA name such as US/Pacific") from None
        return zone or None

    @field_validator("languages")
    @classmethod
    def _english(cls, languages: list[str]) -> list[str]:
        unsupported = [code for code in languages if not code.lower().startswith("en")]
        if unsupported:
            raise ValueError(f"languages {unsupported} are not supported: the engine recognizes English only")
        return languages

    @field_validator("insight_types", mode="before")
    @classmethod
    def _insight_types(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, list):
            unknown = [v for v in value if v not in INSIGHT_TYPES]
            if unknown:
                raise ValueError(f"unknown insightTypes {unknown}: use {sorted(INSIGHT_TYPES)}")
        return value

    @field_validator("actions")
    @classmethod
    def _actions(cls, actions: list[Action]) -> list[Action]:
        for action in actions:
            if action.name == "sendSummaryEmail":
                raise ValueError(
                    "the sendSummaryEmail action is not supported: this engine sends no e-mail; subscribe to the"
                    " job's webhookUrl or the pipeline's insights topic instead"
                )
            raise ValueError(f"unknown action {action.name!r}")
        return actions

    @property
    def session_name(self) -> str | None:
        return self.data.session.name if self.data and self.data.session else None


class StopCall(_Camel):
    operation: Literal["stop"]
    connection_id: str = Field(min_length=1, max_length=128)


class ConnectRequest(BaseModel):
    """The body of ``POST /v1/endpoint:connect``: a start or a stop, told apart by ``operation``."""

    request: Annotated[StartCall | StopCall, Field(discriminator="operation")]


class ConnectResponse(_Camel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True)

    event_url: str
    result_web_socket_url: str
    connection_id: str
    conversation_id: str
    job_id: str = Field(description="a Parley extension: the call's job, whose webhook reports its end")


@dataclass(frozen=True)
class SipAddress:
    """A SIP URI taken apart: who to ask for at which host, and over which transport."""

    user: str | None
    host: str
    port: int
    transport: Literal["udp", "tcp"]

    def uri(self) -> str:
        port = "" if self.port == 5060 else f":{self.port}"
        user = f"{self.user}@" if self.user else ""
        suffix = ";transport=tcp" if self.transport == "tcp" else ""
        return f"sip:{user}{self.host}{port}{suffix}"


def parse_sip_uri(uri: str) -> SipAddress:
    """``sip:user@host[:port][;transport=udp|tcp]``; ``ValueError`` with the reason for anything else."""
    match = SIP_URI.match(uri.strip())
    if match is None:
        raise ValueError(f"uri {uri!r} is not a SIP URI: expected sip:user@host[:port][;transport=udp|tcp]")
    if match["scheme"] == "sips":
        raise ValueError("sips: URIs (SIP over TLS) are not supported: use sip: with transport udp or tcp")
    params = {
        name.lower(): value.lower() for name, _, value in (p.partition("=") for p in match["params"].split(";") if p)
    }
    transport = params.get("transport", "udp")
    if transport not in ("udp", "tcp"):
        raise ValueError(f"transport {transport!r} is not supported: use udp or tcp")
    port = int(match["port"]) if match["port"] else 5060
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is out of range")
    host = match["host"].strip("[]")
    return SipAddress(user=match["user"], host=host, port=port, transport="tcp" if transport == "tcp" else "udp")
