"""The Experience page's URL token: everything the page needs to know, signed, so the page needs no access token.

A token is ``<payload>.<signature>``, both base64url: the payload is the ``PageGrant`` as JSON (the conversation, the
experience's name and options, the expiry), the signature an HMAC-SHA256 of the payload under a key derived from the
engine's token-signing key (kept in the database, so URLs stay valid across restarts and replicas). Derived, not the
same key: a page token is never an access token, nor the other way round. Nothing is stored per page; a URL stops
working when it expires, when the conversation is deleted, or when the engine's signing key changes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parley_engine.experience.request import FontFamily, HexColor, WebUrl

_PURPOSE = b"parley-engine experience page v1"


class PageGrant(BaseModel):
    """What a page URL grants: one conversation's page, with these options, until ``expiresAt``."""

    model_config = ConfigDict(populate_by_name=True, frozen=True)

    conversation_id: str = Field(alias="conversationId")
    name: str
    expires_at: int | None = Field(None, alias="expiresAt", description="Unix seconds; None: never")
    media_url: WebUrl | None = Field(None, alias="mediaUrl", description="what the player plays, if the caller said")
    logo: WebUrl | None = None
    favicon: WebUrl | None = None
    background: HexColor | None = None
    topics_color: HexColor | None = Field(None, alias="topicsColor")
    insights_color: HexColor | None = Field(None, alias="insightsColor")
    font: FontFamily | None = None


class RefusedLink(Exception):
    """A page URL that grants nothing."""


class ForgedLink(RefusedLink):
    """Not signed by this engine (altered, made up, or signed with a key the engine no longer has)."""


class ExpiredLink(RefusedLink):
    def __init__(self, expired_at: int) -> None:
        super().__init__(f"expired at {expired_at}")
        self.expired_at = expired_at


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class PageSigner:
    def __init__(self, signing_key: bytes) -> None:
        self._key = hmac.new(signing_key, _PURPOSE, hashlib.sha256).digest()

    def _signature(self, payload: str) -> bytes:
        return hmac.new(self._key, payload.encode("ascii"), hashlib.sha256).digest()

    def sign(self, grant: PageGrant) -> str:
        payload = _b64(grant.model_dump_json(by_alias=True, exclude_none=True).encode())
        return f"{payload}.{_b64(self._signature(payload))}"

    def open(self, token: str, *, now: float | None = None) -> PageGrant:
        """The grant a token carries; ``ForgedLink`` or ``ExpiredLink`` when it grants nothing."""
        payload, dot, signature = token.partition(".")
        if not dot or not payload.isascii() or not signature.isascii():
            raise ForgedLink("not a page token")
        # Compared as text, not decoded: base64's last character can vary in padding bits that decoding ignores.
        if not hmac.compare_digest(signature, _b64(self._signature(payload))):
            raise ForgedLink("the signature does not match")
        try:
            grant = PageGrant.model_validate_json(_unb64(payload))
        except (binascii.Error, ValueError, ValidationError):
            raise ForgedLink("the payload is not a page grant") from None
        if grant.expires_at is not None and (time.time() if now is None else now) >= grant.expires_at:
            raise ExpiredLink(grant.expires_at)
        return grant
