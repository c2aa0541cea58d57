"""What the Streaming API's routes are handed: the hub, the live workers and the stream conversations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from parley_engine.speech.segmenter import SegmenterSettings, SileroStream, SpeechProbability
from parley_engine.streaming.hub import StreamHub
from parley_engine.streaming.session import StreamConversations, StreamSession
from parley_engine.streaming.workers import LiveWorkers


@dataclass(frozen=True)
class StreamingService:
    hub: StreamHub[StreamSession]
    workers: LiveWorkers
    conversations: StreamConversations
    vad_factory: Callable[[], SpeechProbability] = SileroStream
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
