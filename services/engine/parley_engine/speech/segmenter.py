"""Cutting a live audio stream into utterances with Silero VAD (the model faster-whisper bundles).

``UtteranceSegmenter`` is fed 16-kHz float32 audio as it arrives and reports, per feed, what changed: an utterance
began, grew (time for an interim result), or ended after ``end_silence_seconds`` of silence (time for the final
result). faster-whisper's ``get_speech_timestamps`` runs Silero over a whole file; here the model runs window by
window with its recurrent state carried over, exactly as that function does inside one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from parley_engine.speech.media import WHISPER_SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
CONTEXT = 64  # samples of the previous window Silero sees before each one

Samples = npt.NDArray[np.float32]


class SpeechProbability(Protocol):
    """Speech probability of each ``WINDOW``-sample window, in order, remembering what came before."""

    def __call__(self, windows: Samples) -> npt.NDArray[np.float32]: ...


class SileroStream:
    """Silero VAD over consecutive windows of one stream, its LSTM state and context kept between calls."""

    def __init__(self) -> None:
        from faster_whisper.vad import get_vad_model

        self._session = get_vad_model().session
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(CONTEXT, dtype=np.float32)

    def __call__(self, windows: Samples) -> npt.NDArray[np.float32]:
        batch = windows.reshape(-1, WINDOW)
        contexts = np.concatenate([self._context[np.newaxis, :], batch[:-1, -CONTEXT:]])
        self._context = batch[-1, -CONTEXT:].copy()
        output, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([contexts, batch], axis=1), "h": self._h, "c": self._c}
        )
        return np.asarray(output, dtype=np.float32).reshape(-1)


@dataclass(frozen=True)
class SegmenterSettings:
    threshold: float = 0.5  # a window at least this likely to be speech starts (or continues) an utterance
    end_silence_seconds: float = 0.5  # this much silence after speech ends the utterance
    pre_roll_seconds: float = 0.3  # audio kept before the first speech window (Silero reacts a little late)
    min_speech_seconds: float = 0.25  # shorter blips (a cough, a click) are dropped
    max_utterance_seconds: float = 20.0  # a longer utterance is cut here (Whisper's window is 30 s)
    interim_interval_seconds: float = 0.5  # how much more speech calls for another interim result


@dataclass(frozen=True)
class SpeechSegment:
    """Audio of one utterance so far; ``start`` is its first sample's time in the stream, in seconds."""

    samples: Samples
    start: float
    final: bool

    @property
    def end(self) -> float:
        return self.start + self.samples.size / WHISPER_SAMPLE_RATE


@dataclass
class UtteranceSegmenter:
    """Feed audio, get back the utterance to decode now (interim or final), if any."""

    vad: SpeechProbability
    settings: SegmenterSettings = field(default_factory=SegmenterSettings)
    _pending: Samples = field(default_factory=lambda: np.zeros(0, np.float32))
    _recent: list[Samples] = field(default_factory=list)  # pre-roll while silent
    _speech: list[Samples] = field(default_factory=list)  # the utterance in progress
    _position: int = 0  # samples of the stream that went through the VAD
    _start: int = 0  # first sample of the utterance in progress
    _speech_samples: int = 0
    _silence_run: int = 0
    _last_interim_at: int = 0
    in_speech: bool = False

    def feed(self, audio: Samples) -> list[SpeechSegment]:
        """Everything to decode after ``audio``: finals of ended utterances, then at most one interim."""
        self._pending = np.concatenate([self._pending, audio.astype(np.float32, copy=False)])
        whole = self._pending.size // WINDOW * WINDOW
        if whole == 0:
            return []
        windows, self._pending = self._pending[:whole], self._pending[whole:]
        probabilities = self.vad(windows)
        ready: list[SpeechSegment] = []
        rate = WHISPER_SAMPLE_RATE
        for index, probability in enumerate(probabilities):
            window = windows[index * WINDOW : (index + 1) * WINDOW]
            self._position += WINDOW
            if not self.in_speech:
                if probability >= self.settings.threshold:
                    self._begin(window)
                else:
                    self._remember(window)
                continue
            self._speech.append(window)
            if probability >= self.settings.threshold:
                self._speech_samples += WINDOW
                self._silence_run = 0
            else:
                self._silence_run += WINDOW
            ended = self._silence_run >= self.settings.end_silence_seconds * rate
            too_long = sum(part.size for part in self._speech) >= self.settings.max_utterance_seconds * rate
            if (ended or too_long) and (final := self._finish()) is not None:
                ready.append(final)
        if self.in_speech and self._speech_samples >= self.settings.min_speech_seconds * rate:
            grown = self._position - self._last_interim_at
            if grown >= self.settings.interim_interval_seconds * rate:
                self._last_interim_at = self._position
                ready.append(SpeechSegment(self._audio(), self._start / rate, final=False))
        return ready

    def flush(self) -> SpeechSegment | None:
        """The utterance in progress as final (the stream stopped); None if there is none."""
        if not self.in_speech:
            return None
        return self._finish()

    def _remember(self, window: Samples) -> None:
        self._recent.append(window)
        keep = max(1, int(self.settings.pre_roll_seconds * WHISPER_SAMPLE_RATE / WINDOW))
        del self._recent[:-keep]

    def _begin(self, window: Samples) -> None:
        self.in_speech = True
        self._speech = [*self._recent, window]
        self._recent = []
        self._start = self._position - sum(part.size for part in self._speech)
        self._speech_samples = WINDOW
        self._silence_run = 0
        self._last_interim_at = self._position

    def _audio(self) -> Samples:
        return np.concatenate(self._speech)

    def _finish(self) -> SpeechSegment | None:
        self.in_speech = False
        audio = self._audio()
        # Keep only a short tail of the silence that ended it; the rest may be the next utterance's pre-roll.
        trailing = max(0, self._silence_run - int(0.2 * WHISPER_SAMPLE_RATE))
        if trailing:
            self._recent = [audio[-min(trailing, int(self.settings.pre_roll_seconds * WHISPER_SAMPLE_RATE)) :]]
            audio = audio[: audio.size - trailing]
        spoken = self._speech_samples
        self._speech = []
        if spoken < self.settings.min_speech_seconds * WHISPER_SAMPLE_RATE:
            return None
        return SpeechSegment(audio, self._start / WHISPER_SAMPLE_RATE, final=True)
