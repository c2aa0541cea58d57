"""Live speech-to-text: one utterance (a few seconds of speech the VAD cut out) decoded at a time, fast.

The Async recognizer (``recognizer``) hands Whisper 30-s windows; for a live utterance that wastes most of the
work, because Whisper's encoder costs the same for 3 s of speech padded to 30 s as for 30 s. CTranslate2's
encoder takes a shorter input, so the utterance is encoded at its own length (plus 3 s of silence, rounded up so
few shapes occur): a 3-s utterance then decodes in about 0.07 s instead of 1 s on one core of the benchmark
machine (``benchmarks/streaming.md``), which is what makes interim results every second, for several streams on
two cores, possible. Words and their times come from Whisper's cross-attention alignment, as in ``recognizer``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from parley_engine.speech.media import WHISPER_SAMPLE_RATE
from parley_engine.speech.models import DEFAULT_MODEL, WhisperChoice, load_whisper
from parley_engine.speech.recognizer import joined_words
from parley_engine.speech.sentences import RecognizedWord

if TYPE_CHECKING:
    from faster_whisper import WhisperModel
    from faster_whisper.tokenizer import Tokenizer

# Whisper's mel frames per second of audio, and its longest input (30 s).
FRAMES_PER_SECOND = 100
HOP = WHISPER_SAMPLE_RATE // FRAMES_PER_SECOND  # samples per mel frame
MAX_FRAMES = 3000
# Silence appended to a final utterance before encoding. With less, Whisper often said a short utterance twice: on
# the benchmark's sentences, word errors were 24 % with 0.5 s of silence, 10 % with 1.5 s, 3.4 % with 3 s and 3.7 %
# with 5 s (the Async API: 2.5 %). Interim results, cut off mid-word anyway, take a shorter, cheaper tail.
FINAL_TAIL_SECONDS = 3.0
INTERIM_TAIL_SECONDS = 1.0
FRAME_STEP = 100  # the encoder's input length is rounded up to this many frames, so few shapes occur
# Utterances that Whisper itself thinks are not speech (noise, breathing) are dropped, as faster-whisper does.
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
MAX_NEW_TOKENS = 220
# Speech runs at most about 5 tokens a second; a generous bound per second stops a looping interim decode early.
TOKENS_PER_SECOND = 8


@dataclass(frozen=True)
class LiveDecodeOptions:
    """How hard to search: interim results use greedy decoding and a shorter tail (cheaper), final ones a small beam."""

    beam_size: int = 1
    tail_seconds: float = 3.0


class UtteranceDecoder:
    """Decodes short 16-kHz float32 utterances to words with times (seconds from the utterance's start)."""

    def __init__(
        self, *, cpu_threads: int = 1, model: WhisperChoice = DEFAULT_MODEL, model_path: Path | None = None
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # as in ``recognizer``: never reach for the network
        from faster_whisper.tokenizer import Tokenizer

        self._whisper: WhisperModel = load_whisper(model, cpu_threads=cpu_threads, model_path=model_path)
        self._tokenizer: Tokenizer = Tokenizer(
            self._whisper.hf_tokenizer, self._whisper.model.is_multilingual, task="transcribe", language="en"
        )

    def decode(self, samples: npt.NDArray[np.float32], options: LiveDecodeOptions) -> list[RecognizedWord]:
        if samples.size < WHISPER_SAMPLE_RATE // 10:
            return []
        # Real silence fills the encoder's input to its rounded length: feature-space zeros are not silence to
        # Whisper, and made it repeat sentences.
        wanted = samples.size + int(options.tail_seconds * WHISPER_SAMPLE_RATE)
        frames = min(MAX_FRAMES, math.ceil(wanted / HOP / FRAME_STEP) * FRAME_STEP)
        padded = np.zeros(frames * HOP + HOP, np.float32)
        padded[: min(samples.size, padded.size)] = samples[: padded.size]
        features = self._whisper.feature_extractor(padded)[:, :frames]
        encoded = self._whisper.encode(np.ascontiguousarray(features[np.newaxis]))
        prompt = [*self._tokenizer.sot_sequence, self._tokenizer.no_timestamps]
        result = self._whisper.model.generate(
            encoded,
            [prompt],
            beam_size=options.beam_size,
            max_length=min(
                MAX_NEW_TOKENS, len(prompt) + 12 + int(TOKENS_PER_SECOND * samples.size / WHISPER_SAMPLE_RATE)
            ),
            # Greedy decoding of a cut-off utterance can loop on a phrase; forbidding a repeated 4-gram stops it.
            no_repeat_ngram_size=4 if options.beam_size == 1 else 0,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
        )[0]
        tokens = [token for token in result.sequences_ids[0] if token < self._tokenizer.eot]
        if not tokens:
            return []
        length_penalized = result.scores[0] / max(1, len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and length_penalized < LOG_PROB_THRESHOLD:
            return []
        spoken_frames = min(frames, math.ceil(samples.size / WHISPER_SAMPLE_RATE * FRAMES_PER_SECOND))
        alignment = self._whisper.find_alignment(self._tokenizer, [tokens], encoded, spoken_frames)[0]
        duration = samples.size / WHISPER_SAMPLE_RATE
        return list(joined_words(_AlignedWord.clamped(word, duration) for word in alignment))


@dataclass(frozen=True)
class _AlignedWord:
    word: str
    start: float
    end: float
    probability: float

    @classmethod
    def clamped(cls, aligned: dict[str, object], duration: float) -> _AlignedWord:
        start = min(float(aligned["start"]), duration)  # type: ignore[arg-type]
        end = min(max(float(aligned["end"]), start), duration)  # type: ignore[arg-type]
        return cls(str(aligned["word"]), start, end, float(aligned["probability"]))  # type: ignore[arg-type]
