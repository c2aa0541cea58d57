"""Reading the audio of an audio or video file in process with PyAV, ready for Whisper (16 kHz float32)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt

WHISPER_SAMPLE_RATE = 16_000

# ffmpeg picks these text-art demuxers from the file name alone (``.bin``, ``.txt``) and then "finds" a video
# stream in any bytes at all; for an upload that is never a real video.
_TEXT_ART_FORMATS = frozenset({"bin", "tty", "xbin", "adf", "idf"})


class MediaError(Exception):
    """The job cannot be done with this file or these options; the message is meant for the API caller."""


class NoAudioTrack(MediaError):
    """A readable container (a video, say) that carries no audio stream."""


@dataclass(frozen=True)
class DecodedAudio:
    """Every channel of a file's first audio track, resampled to 16 kHz."""

    channels: npt.NDArray[np.float32]  # shape (channel count, samples)

    @property
    def channel_count(self) -> int:
        return int(self.channels.shape[0])

    @property
    def duration(self) -> float:
        return self.channels.shape[1] / WHISPER_SAMPLE_RATE

    def mono(self) -> npt.NDArray[np.float32]:
        """All channels averaged: what a single recognizer pass listens to."""
        if self.channel_count == 1:
            return self.channels[0]
        return self.channels.mean(axis=0, dtype=np.float32)

    def channel(self, index: int) -> npt.NDArray[np.float32]:
        """One channel by 0-based index, contiguous (Whisper copies non-contiguous views anyway)."""
        return np.ascontiguousarray(self.channels[index])


def decode_audio(path: Path) -> DecodedAudio:
    """Decode the first audio track of ``path`` (wav, mp3, flac, ogg/opus, m4a/aac, mp4, webm, mov, …).

    Raises ``NoAudioTrack`` for a container without audio and ``MediaError`` for anything PyAV cannot read.
    """
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, UnicodeDecodeError) as error:
        raise MediaError(f"not a decodable audio/video file: {error}") from error
    with container:
        if not container.streams.audio:
            if not container.streams.video or container.format.name in _TEXT_ART_FORMATS:
                raise MediaError("not a decodable audio/video file: no audio or video stream found")
            raise NoAudioTrack("the file has no audio track")
        stream = container.streams.audio[0]
        # Planar float keeps channels apart (one row per channel); the input's own layout keeps their count.
        resampler = av.AudioResampler(format="fltp", rate=WHISPER_SAMPLE_RATE)
        chunks: list[npt.NDArray[np.float32]] = []
        try:
            for frame in container.decode(stream):
                frame.pts = None  # the resampler refuses timestamps that jump (common in edited video)
                chunks.extend(_samples(resampled) for resampled in resampler.resample(frame))
            chunks.extend(_samples(resampled) for resampled in resampler.resample(None))
        except av.FFmpegError as error:
            if not chunks:
                raise MediaError(f"not a decodable audio/video file: {error}") from error
            # A damaged tail is common in uploads; keep what decoded, as ffmpeg itself would.
    if not chunks:
        return DecodedAudio(channels=np.zeros((1, 0), dtype=np.float32))
    channel_count = max(chunk.shape[0] for chunk in chunks)
    samples = np.concatenate([chunk for chunk in chunks if chunk.shape[0] == channel_count], axis=1)
    return DecodedAudio(channels=samples.astype(np.float32, copy=False))


def _samples(frame: av.AudioFrame) -> npt.NDArray[np.float32]:
    """A planar-float frame as (channels, samples); the resampler was asked for ``fltp``, so this is float32."""
    return np.asarray(frame.to_ndarray(), dtype=np.float32)
