"""What the Streaming API's routes are handed: the hub, the live workers and the stream conversations."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from parley_engine.redaction.options import substitution_key
from parley_engine.settings import EngineSettings
from parley_engine.speech.segmenter import SegmenterSettings, SileroStream, SpeechProbability
from parley_engine.streaming.hub import StreamHub
from parley_engine.streaming.session import FrameSink, SessionLimits, StreamConversations, StreamSession
from parley_engine.streaming.workers import LiveWorkers


@dataclass(frozen=True)
class StreamingService:
    hub: StreamHub[StreamSession]
    workers: LiveWorkers
    conversations: StreamConversations
    vad_factory: Callable[[], SpeechProbability] = SileroStream
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)

    def new_session(
        self,
        connection_id: str,
        sink: FrameSink,
        settings: EngineSettings,
        *,
        summary_base_url: str,
        webhook_refusal: Callable[[str], Awaitable[str | None]] | None = None,
    ) -> StreamSession:
        """A stream on ``connection_id`` answering through ``sink``, under the engine's limits."""
        return StreamSession(
            connection_id,
            sink,
            self.conversations,
            self.workers,
            self.vad_factory,
            limits=SessionLimits(
                max_frame_bytes=settings.streaming_max_frame_bytes,
                summary_base_url=summary_base_url,
                redaction_key=substitution_key(settings.app_secret.get_secret_value()),
            ),
            segmenter_settings=self.segmenter,
            webhook_refusal=webhook_refusal,
        )
