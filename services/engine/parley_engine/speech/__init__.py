"""Speech-to-text for audio and video uploads, fully offline (see ``recognizer`` for what it can and cannot do)."""

from parley_engine.speech.media import MediaError, NoAudioTrack
from parley_engine.speech.options import ChannelSpeaker, ChannelSpeakerIdentity, SpeechOptions
from parley_engine.speech.recognizer import SpeechRecognizer

__all__ = [
    "ChannelSpeaker",
    "ChannelSpeakerIdentity",
    "MediaError",
    "NoAudioTrack",
    "SpeechOptions",
    "SpeechRecognizer",
]
