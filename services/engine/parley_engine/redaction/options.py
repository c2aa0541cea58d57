"""The ``redaction`` processing option of Async and Streaming submissions, and the kinds of PII it knows.

``{"enabled": true, "entityTypes": [...], "substitution": "entityType" | "hash", "redactAudio": false}``: with only
``enabled``, every kind below is redacted and replaced by its tag (``[PHONE_NUMBER]``); ``hash`` replaces each value
by its tag and a keyed hash of the value (``[PERSON_5f0c1e2a9b]``), the same for the same value, so one person or card
can still be followed through a conversation without being named. ``redactAudio`` also silences the redacted words
in the kept media (their word timings say where), or covers them with a tone (``"audioSubstitution": "tone"``).
"""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Literal

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel


class PiiType(StrEnum):
    """What can be redacted; the value is the tag that replaces it. Modelled on AssemblyAI's and Deepgram's lists."""

    PERSON = "PERSON"
    ORGANIZATION = "ORGANIZATION"
    LOCATION = "LOCATION"
    ADDRESS = "ADDRESS"
    PHONE_NUMBER = "PHONE_NUMBER"
    EMAIL_ADDRESS = "EMAIL_ADDRESS"
    CREDIT_CARD_NUMBER = "CREDIT_CARD_NUMBER"
    BANK_ACCOUNT_NUMBER = "BANK_ACCOUNT_NUMBER"
    IBAN = "IBAN"
    US_SOCIAL_SECURITY_NUMBER = "US_SOCIAL_SECURITY_NUMBER"
    NATIONAL_ID = "NATIONAL_ID"
    PASSPORT_NUMBER = "PASSPORT_NUMBER"
    DRIVERS_LICENSE = "DRIVERS_LICENSE"
    DATE_OF_BIRTH = "DATE_OF_BIRTH"
    IP_ADDRESS = "IP_ADDRESS"
    CRYPTO_WALLET = "CRYPTO_WALLET"


AudioSubstitution = Literal["silence", "tone"]


class RedactionOptions(BaseModel):
    model_config = ConfigDict(
        alias_generator=AliasGenerator(validation_alias=to_camel, serialization_alias=to_camel),
        populate_by_name=True,
        extra="forbid",
        frozen=True,
    )

    enabled: bool = False
    entity_types: tuple[PiiType, ...] | None = Field(
        None, description="the kinds to redact; unset: every kind", min_length=1
    )
    substitution: Literal["entityType", "hash"] = "entityType"
    redact_audio: bool = Field(False, description="silence the redacted words in the kept audio/video too")
    audio_substitution: AudioSubstitution = Field(
        "silence", description="what covers a redacted word in the audio: silence, or a 1 kHz tone"
    )

    @field_validator("entity_types", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        # AssemblyAI and Deepgram spell their kinds in lower case; either is accepted.
        if isinstance(value, list | tuple):
            return [item.upper() if isinstance(item, str) else item for item in value]
        return value

    @property
    def kinds(self) -> frozenset[PiiType]:
        return frozenset(self.entity_types or PiiType)


def substitution_key(app_secret: str) -> bytes:
    """The key of the ``hash`` substitution: the engine's appSecret's, so replicas agree and callers cannot guess it.

    A new appSecret gives values new hashes from then on.
    """
    return hashlib.sha256(b"parley redaction substitution\0" + app_secret.encode()).digest()
