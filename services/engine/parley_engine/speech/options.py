"""The Async API options that change speech-to-text, as the engine's recognizer takes them."""

from __future__ import annotations

from pydantic import AliasGenerator, BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class _CamelModel(BaseModel):
    # Symbl spells these options in camelCase; the engine builds them from either spelling.
    model_config = ConfigDict(alias_generator=AliasGenerator(validation_alias=to_camel), populate_by_name=True)


class ChannelSpeakerIdentity(_CamelModel):
    name: str | None = None
    email: str | None = None


class ChannelSpeaker(_CamelModel):
    """One ``channelMetadata`` entry: who speaks on an audio channel."""

    channel: int = Field(ge=1, description="1-based channel number, as in Symbl's channelMetadata")
    speaker: ChannelSpeakerIdentity = Field(default_factory=ChannelSpeakerIdentity)


class SpeechOptions(_CamelModel):
    language_code: str = Field("en-US", description="BCP-47; this engine recognizes English only")
    custom_vocabulary: list[str] = Field(default_factory=list, description="terms to prefer when spelling words")
    channel_metadata: list[ChannelSpeaker] = Field(default_factory=list)
    enable_separate_recognition_per_channel: bool = False
    enable_speaker_diarization: bool = Field(
        False,
        description="accepted; single-channel audio is always diarized when the speaker encoder's weights are"
        " installed (the resemblyzer wheel), else it is one speaker",
    )
    diarization_speaker_count: int | None = Field(
        None, ge=1, description="how many speakers single-channel audio has; unset: found by clustering"
    )

    @property
    def wants_channels(self) -> bool:
        """Whether the caller asked to recognize each channel on its own."""
        return self.enable_separate_recognition_per_channel or bool(self.channel_metadata)
