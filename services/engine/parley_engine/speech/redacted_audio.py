"""A copy of a recording with the redacted words silenced (or covered by a tone): ``redactAudio``.

The spans come from the redacted words' timings (``parley_engine.redaction.redactor.redacted_spans``). Word timings
from the recognizer are good to a few tens of milliseconds, so each span is widened a little on both sides: a
clipped first or last syllable of a card number is still a digit heard. The copy is audio only (AAC in MP4, mono
or as many channels as the source, 16 kHz: speech, not music): re-encoding a video to blank a few syllables of its
sound track would cost far more than it is worth, and the page plays the audio.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

from parley_engine.redaction.options import AudioSubstitution
from parley_engine.speech.media import WHISPER_SAMPLE_RATE, decode_audio

# How far each silenced span reaches past its words' timings, on each side.
SPAN_PADDING_SECONDS = 0.12
TONE_HERTZ = 1000.0
# Quiet enough not to startle, loud enough to tell that something was removed.
TONE_AMPLITUDE = 0.2
FRAME_SAMPLES = 1024  # AAC's frame size
REDACTED_AUDIO_SUFFIX = ".m4a"


def blanked(
    channels: npt.NDArray[np.float32], spans: Sequence[tuple[float, float]], substitution: AudioSubstitution
) -> npt.NDArray[np.float32]:
    """A copy of (channels, samples) at 16 kHz with every span (seconds, padded) silenced or toned."""
    result = channels.copy()
    length = result.shape[1]
    for start, end in spans:
        first = max(0, int((start - SPAN_PADDING_SECONDS) * WHISPER_SAMPLE_RATE))
        last = min(length, int(np.ceil((end + SPAN_PADDING_SECONDS) * WHISPER_SAMPLE_RATE)))
        if last <= first:
            continue
        if substitution == "tone":
            times = np.arange(first, last) / WHISPER_SAMPLE_RATE
            result[:, first:last] = (TONE_AMPLITUDE * np.sin(2 * np.pi * TONE_HERTZ * times)).astype(np.float32)
        else:
            result[:, first:last] = 0.0
    return result


def write_redacted_audio(
    source: Path,
    spans: Sequence[tuple[float, float]],
    target: Path,
    *,
    substitution: AudioSubstitution = "silence",
) -> None:
    """Write ``source``'s audio with ``spans`` blanked to ``target`` (AAC in an .m4a); raises ``MediaError``."""
    channels = blanked(decode_audio(source).channels, spans, substitution)
    layout = "mono" if channels.shape[0] == 1 else "stereo"
    if channels.shape[0] > 2:
        channels = channels[:2]
    with av.open(str(target), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=WHISPER_SAMPLE_RATE, layout=layout)
        for offset in range(0, channels.shape[1], FRAME_SAMPLES):
            chunk = np.ascontiguousarray(channels[:, offset : offset + FRAME_SAMPLES])
            frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=layout)
            frame.sample_rate = WHISPER_SAMPLE_RATE
            frame.pts = offset
            frame.time_base = Fraction(1, WHISPER_SAMPLE_RATE)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
