"""What an Experience API request may ask for, checked as Symbl documents it.

Every value that reaches the page is validated here, so the page can use it as it is: colours are hex codes, the font
is a family name (no quotes, commas or semicolons to leave the CSS value with), and URLs are plain http(s) addresses
without credentials, whose origin can stand in a Content-Security-Policy.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
)
from pydantic_core import PydanticCustomError

ExperienceName = Literal["verbose-text-summary", "video-summary", "audio-summary"]

THIRTY_DAYS = 30 * 24 * 3600
# Symbl sets no upper bound; ten years keeps expiry times within what every datetime and database can hold.
LONGEST_EXPIRY_SECONDS = 10 * 365 * 24 * 3600

_HOST_NAME = re.compile(r"[a-z0-9.-]{1,253}|[0-9a-f:.]{2,45}")
AUDIO_SUFFIXES = (".mp3", ".wav", ".ogg", ".oga", ".opus", ".m4a", ".aac", ".flac", ".weba")


def _web_url(value: str) -> str:
    if any(character.isspace() or ord(character) < 32 for character in value):
        raise PydanticCustomError("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError as error:
        raise PydanticCustomError("url", "is not a valid URL: {reason}", {"reason": str(error)}) from None
    if parts.scheme.lower() not in ("http", "https"):
        raise PydanticCustomError("url", "must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise PydanticCustomError("url", "must not carry a user name or password")
    if not parts.hostname or not _HOST_NAME.fullmatch(parts.hostname):
        raise PydanticCustomError("url", "must name a host (letters, digits, dots and hyphens, or [IPv6])")
    return value


def url_origin(url: str) -> str:
    """``scheme://host[:port]`` of a validated URL: what a Content-Security-Policy source names."""
    parts = urlsplit(url)
    host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname
    return f"{parts.scheme.lower()}://{host}" + (f":{parts.port}" if parts.port is not None else "")


def sounds_like_audio(url: str) -> bool:
    """Whether a media URL names an audio file (Symbl plays those in ``videoUrl`` too, without a picture)."""
    return urlsplit(url).path.lower().endswith(AUDIO_SUFFIXES)


_HEX_COLOR = re.compile(r"#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
_FONT_FAMILY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,63}")


def _hex_color(value: str) -> str:
    if not _HEX_COLOR.fullmatch(value):
        raise PydanticCustomError("color", "must be a hex colour code such as #0A2136")
    return value


def _font_family(value: str) -> str:
    if not _FONT_FAMILY.fullmatch(value):
        raise PydanticCustomError(
            "font", "must be a font family name: up to 64 letters, digits, spaces and hyphens, such as roboto"
        )
    return value


def _whole_seconds(value: object) -> object:
    # JSON has one number type: 3600.0 is a whole number of seconds, 1.5 and "3600" are not.
    return int(value) if isinstance(value, float) and value.is_integer() else value


# The patterns in the schemas document the checks; the validators make them, with messages that say what is wanted.
WebUrl = Annotated[
    str,
    Field(min_length=1, max_length=2048, json_schema_extra={"format": "uri", "pattern": "^https?://"}),
    AfterValidator(_web_url),
]
HexColor = Annotated[
    str,
    Field(json_schema_extra={"pattern": f"^{_HEX_COLOR.pattern}$", "examples": ["#0A2136"]}),
    AfterValidator(_hex_color),
]
FontFamily = Annotated[
    str,
    Field(json_schema_extra={"pattern": f"^{_FONT_FAMILY.pattern}$", "examples": ["roboto"]}),
    AfterValidator(_font_family),
]


class PageColors(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    background: HexColor | None = Field(None, description="the page's background")
    topics_filter: HexColor | None = Field(None, alias="topicsFilter", description="topics and their chart")
    insights_filter: HexColor | None = Field(
        None, alias="insightsFilter", description="action items, questions and follow-ups"
    )


class PageFont(BaseModel):
    model_config = ConfigDict(extra="forbid")

    family: FontFamily = Field(
        description="used when the viewer's device has it (nothing is fetched from Google Fonts), else a system font"
    )


class ExperienceRequest(BaseModel):
    """The body of ``POST /v1/conversations/{conversationId}/experiences``."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    name: ExperienceName = Field(
        description="verbose-text-summary (the summary page), video-summary (with a player) or audio-summary"
    )
    video_url: WebUrl | None = Field(
        None,
        alias="videoUrl",
        description="what the player plays (an audio file plays without a picture); for video-summary it may be "
        "left out when the engine kept the conversation's own media",
    )
    audio_url: WebUrl | None = Field(
        None,
        validation_alias=AliasChoices("audioUrl", "audioURL"),
        description="audio-summary's media; may be left out when the engine kept the conversation's own media",
    )
    logo: WebUrl | None = Field(None, description="public URL of a logo shown at the top of the page")
    favicon: WebUrl | None = Field(None, description="public URL of the page's favicon")
    color: PageColors | None = None
    font: PageFont | None = None
    summary_url_expires_in: Annotated[StrictInt, BeforeValidator(_whole_seconds)] | None = Field(
        None,
        alias="summaryURLExpiresIn",
        ge=0,
        le=LONGEST_EXPIRY_SECONDS,
        description="seconds until the URL stops working; 0: never. Default 2592000 (30 days)",
    )
    read_only: StrictBool = Field(False, alias="readOnly", description="accepted; the page is always read-only")
    enable_custom_domain: StrictBool = Field(
        False, alias="enableCustomDomain", description="accepted; URLs are always on PARLEY_PUBLIC_BASE_URL"
    )
    disable_summary_url_authentication: StrictBool = Field(
        False, alias="disableSummaryURLAuthentication", description="not supported (as at Symbl)"
    )

    @field_validator("disable_summary_url_authentication")
    @classmethod
    def _signed_always(cls, disabled: bool) -> bool:
        if disabled:
            raise PydanticCustomError("unsupported", "is not supported: every summary URL is signed")
        return disabled

    @property
    def media_url(self) -> str | None:
        return self.video_url or self.audio_url


class ExperienceCreated(BaseModel):
    """The answer: the experience's name and its page's URL."""

    name: ExperienceName
    url: str = Field(description="the page: <base>/experiences/<signed token>; it needs no access token")


def openapi_request_body() -> dict[str, Any]:
    """``ExperienceRequest`` as an OpenAPI request body (the route reads and checks the body itself)."""
    schema = ExperienceRequest.model_json_schema(by_alias=True)
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    return {"required": True, "content": {"application/json": {"schema": inline(schema)}}}
