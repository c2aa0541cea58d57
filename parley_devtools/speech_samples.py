"""Synthetic test speech: Debian's ``flite`` voices, mixed into conversations and re-encoded with PyAV.

Tests and the speech evaluation generate their audio at run time with these functions instead of committing
recordings. ``flite`` must be on PATH (``apt-get install flite``); ``flite_available()`` says whether it is.
Everything is written at 16 kHz, the rate the recognizer uses; ``kal`` (8 kHz) is upsampled.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream
from av.container import InputContainer, OutputContainer

SAMPLE_RATE = 16_000
VOICES = ("kal", "slt", "rms", "awb")
# Every general-purpose voice of Debian's flite (``flite -lv``; ``awb_time`` only speaks clock times). ``kal16`` is
# the kal speaker recorded at 16 kHz, a different voice build from the 8 kHz ``kal``.
ALL_VOICES = ("kal", "kal16", "slt", "rms", "awb")
# A turn's pace is flite's ``duration_stretch`` (below 1 speaks faster, above 1 slower), or None for the voice's
# own default, which is not always 1 (kal and kal16 speak at 1.1).
DEFAULT_PACE: float | None = None
# Silence between turns of a conversation, and before the first one (recognizers clip leading speech less).
TURN_PAUSE_SECONDS = 0.6

Samples = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Turn:
    voice: str
    text: str
    pace: float | None = DEFAULT_PACE  # flite's duration_stretch for this turn; None: the voice's own


@dataclass(frozen=True)
class PlacedTurn:
    """Where a synthesized turn sits in a conversation file (seconds) and on which channel (1-based).

    ``start``/``end`` bound flite's whole clip, which opens with about 0.2 s of silence and closes with up to
    0.25 s; ``speech_start``/``speech_end`` bound the audible voice inside it, what word times should match.
    """

    voice: str
    text: str
    start: float
    end: float
    channel: int
    speech_start: float
    speech_end: float


def flite_available() -> bool:
    return shutil.which("flite") is not None


def synthesize_samples(text: str, voice: str, *, pace: float | None = DEFAULT_PACE) -> Samples:
    """``text`` spoken by a flite voice at ``pace`` (duration stretch), as 16 kHz mono float32 samples."""
    with tempfile.TemporaryDirectory(prefix="parley-flite-") as scratch:
        wav_path = Path(scratch) / "speech.wav"
        stretch = [] if pace is None else ["--setf", f"duration_stretch={pace:g}"]
        command = ["flite", "-voice", voice, *stretch, "-t", text, str(wav_path)]
        subprocess.run(command, check=True, capture_output=True)
        samples, rate = read_wav(wav_path)
    return _resample(samples, rate, SAMPLE_RATE)


def synthesize_wav(text: str, voice: str, path: Path) -> Path:
    """One sentence in one voice, written as a 16 kHz mono WAV."""
    write_wav(path, synthesize_samples(text, voice)[np.newaxis, :])
    return path


def synthesize_conversation(turns: Sequence[Turn], path: Path, *, stereo: bool = False) -> list[PlacedTurn]:
    """Turns one after another with short pauses, as a WAV.

    Mono puts every voice on the one channel. ``stereo`` gives each voice its own channel (in order of first
    appearance, at most two voices) with silence on the other, like a two-party call recording.
    """
    voices = list(dict.fromkeys(turn.voice for turn in turns))
    if stereo and len(voices) > 2:
        raise ValueError(f"a stereo conversation holds two voices, got {voices}")
    channel_count = 2 if stereo else 1
    pause = np.zeros(int(TURN_PAUSE_SECONDS * SAMPLE_RATE), dtype=np.float32)
    pieces: list[Samples] = [np.zeros((channel_count, pause.size), dtype=np.float32)]
    placed: list[PlacedTurn] = []
    cursor = pause.size
    for turn in turns:
        speech = synthesize_samples(turn.text, turn.voice, pace=turn.pace)
        channel = voices.index(turn.voice) + 1 if stereo else 1
        block = np.zeros((channel_count, speech.size + pause.size), dtype=np.float32)
        block[channel - 1, : speech.size] = speech
        pieces.append(block)
        audible_start, audible_end = audible_span(speech)
        placed.append(
            PlacedTurn(
                turn.voice,
                turn.text,
                start=cursor / SAMPLE_RATE,
                end=(cursor + speech.size) / SAMPLE_RATE,
                channel=channel,
                speech_start=(cursor + audible_start) / SAMPLE_RATE,
                speech_end=(cursor + audible_end) / SAMPLE_RATE,
            )
        )
        cursor += block.shape[1]
    write_wav(path, np.concatenate(pieces, axis=1))
    return placed


# A sample louder than this share of the clip's peak is voice; flite's silences are digital zeros or near them.
_AUDIBLE_SHARE_OF_PEAK = 0.02


def audible_span(samples: Samples) -> tuple[int, int]:
    """First and one-past-last sample index where the clip is audible (the whole clip if it never is)."""
    peak = float(np.abs(samples).max()) if samples.size else 0.0
    loud = np.flatnonzero(np.abs(samples) > peak * _AUDIBLE_SHARE_OF_PEAK) if peak > 0 else np.array([], dtype=int)
    if loud.size == 0:
        return 0, samples.size
    return int(loud[0]), int(loud[-1]) + 1


def read_wav(path: Path) -> tuple[Samples, int]:
    """A 16-bit PCM WAV (what flite writes) as mono float32 samples and its sample rate."""
    with wave.open(str(path), "rb") as reader:
        if reader.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM")
        frames = reader.readframes(reader.getnframes())
        channel_count = reader.getnchannels()
        rate = reader.getframerate()
    samples = np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0
    return samples.reshape(-1, channel_count).mean(axis=1, dtype=np.float32), rate


def write_wav(path: Path, channels: Samples) -> Path:
    """Write ``channels`` (shape: channels x samples, float in -1..1) as a 16 kHz 16-bit PCM WAV."""
    pcm = (np.clip(channels, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as writer:
        writer.setnchannels(channels.shape[0])
        writer.setsampwidth(2)
        writer.setframerate(SAMPLE_RATE)
        writer.writeframes(pcm.T.tobytes())
    return path


# Audio encoder per output suffix. Opus only runs at 48 kHz; the others keep 16 kHz.
_AUDIO_CODECS = {".mp3": ("mp3", 16_000), ".flac": ("flac", 16_000), ".ogg": ("libopus", 48_000)}
_AUDIO_CODECS |= {".opus": ("libopus", 48_000), ".m4a": ("aac", 16_000), ".webm": ("libopus", 48_000)}


def convert_audio(wav_path: Path, out_path: Path) -> Path:
    """Re-encode a WAV as mp3, flac, ogg/opus, m4a/aac or webm/opus, chosen by ``out_path``'s suffix."""
    codec, rate = _AUDIO_CODECS[out_path.suffix.lower()]
    with av.open(str(wav_path)) as source, av.open(str(out_path), mode="w") as target:
        # Python's wave module writes no channel mask, so name the layout from the channel count.
        layout = "stereo" if source.streams.audio[0].channels == 2 else "mono"
        stream = target.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, AudioStream)
        _copy_audio(source, target, stream)
    return out_path


def make_video(out_path: Path, *, wav_path: Path | None, duration: float | None = None) -> Path:
    """A small mp4 (H.264, 64x64 grey frames at 10 fps), with the WAV as an AAC track when ``wav_path`` is given.

    Without audio, ``duration`` seconds of video are written (default 2 s).
    """
    if wav_path is not None:
        with wave.open(str(wav_path), "rb") as reader:
            duration = reader.getnframes() / reader.getframerate()
    seconds = duration if duration is not None else 2.0
    frame_rate = 10
    with av.open(str(out_path), mode="w") as target:
        video = target.add_stream("libx264", rate=frame_rate)
        video.width, video.height, video.pix_fmt = 64, 64, "yuv420p"
        audio = None
        if wav_path is not None:
            audio = target.add_stream("aac", rate=SAMPLE_RATE, layout="mono")
        image = np.full((64, 64, 3), 128, dtype=np.uint8)
        for index in range(max(1, int(seconds * frame_rate))):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, frame_rate)
            target.mux(video.encode(frame))
        target.mux(video.encode(None))
        if audio is not None and wav_path is not None:
            with av.open(str(wav_path)) as source:
                _copy_audio(source, target, audio)
    return out_path


def _copy_audio(source: InputContainer, target: OutputContainer, stream: AudioStream) -> None:
    """Decode every audio frame of ``source`` and mux it re-encoded through ``stream``.

    PyAV's encoder converts sample format, rate and frame size itself; the timestamps are dropped so it
    counts them from the encoder's own rate.
    """
    for frame in source.decode(audio=0):
        frame.pts = None
        target.mux(stream.encode(frame))
    target.mux(stream.encode(None))


def _resample(samples: Samples, rate: int, target_rate: int) -> Samples:
    """Linear-interpolation resampling: plenty for synthetic speech going up from 8 kHz."""
    if rate == target_rate:
        return samples.astype(np.float32, copy=False)
    duration = samples.size / rate
    target_times = np.arange(int(duration * target_rate)) / target_rate
    source_times = np.arange(samples.size) / rate
    return np.interp(target_times, source_times, samples).astype(np.float32)
