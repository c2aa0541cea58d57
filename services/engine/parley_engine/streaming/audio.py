"""The Streaming API's binary audio frames turned into 16-kHz mono float32, the rate the recognizer listens at.

``LINEAR16`` is headerless little-endian 16-bit PCM at ``sampleRateHertz``; ``MULAW`` is G.711 µ-law at 8 kHz
(``ALAW``, G.711 A-law, is what a European phone call sends; the Telephony API's calls use it);
``Opus`` frames are raw Opus packets (one per binary frame), decoded by PyAV's libopus. Every rate is resampled
with FFmpeg's resampler, which keeps its filter state between frames so chunk edges leave no clicks.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import av
import numpy as np
import numpy.typing as npt
from parley_engine.speech.media import WHISPER_SAMPLE_RATE

Samples = npt.NDArray[np.float32]


class Encoding(StrEnum):
    LINEAR16 = "LINEAR16"
    MULAW = "MULAW"
    ALAW = "ALAW"
    OPUS = "OPUS"


# What Symbl's reference allows for each encoding (Hz).
SAMPLE_RATES: dict[Encoding, tuple[int, int]] = {
    Encoding.LINEAR16: (8000, 48000),
    Encoding.MULAW: (8000, 8000),
    Encoding.ALAW: (8000, 8000),
    Encoding.OPUS: (8000, 48000),
}
_OPUS_RATES = frozenset({8000, 12000, 16000, 24000, 48000})


class UnsupportedAudio(ValueError):
    """The start_request asks for audio this engine cannot read; the message is for the client."""


class AudioFrameError(ValueError):
    """One binary frame cannot be decoded as the announced encoding; the message is for the client."""


def parse_encoding(name: str | None) -> Encoding:
    """Symbl's encodings, compared without case (the Web SDK sends ``OPUS``); LINEAR16 when absent."""
    if not name:
        return Encoding.LINEAR16
    try:
        return Encoding(name.upper())
    except ValueError:
        supported = ", ".join(encoding.value for encoding in Encoding)
        raise UnsupportedAudio(f"unsupported encoding {name!r}: use one of {supported}") from None


def check_sample_rate(encoding: Encoding, rate: int) -> None:
    low, high = SAMPLE_RATES[encoding]
    if not low <= rate <= high or (encoding is Encoding.OPUS and rate not in _OPUS_RATES):
        allowed = f"{low}" if low == high else f"{low} to {high}"
        if encoding is Encoding.OPUS:
            allowed = ", ".join(str(r) for r in sorted(_OPUS_RATES))
        raise UnsupportedAudio(f"unsupported sampleRateHertz {rate} for {encoding.value}: use {allowed}")


def _mulaw_table() -> npt.NDArray[np.int16]:
    codes = ~np.arange(256, dtype=np.uint8)
    sign = codes & 0x80
    exponent = (codes >> 4) & 0x07
    mantissa = codes & 0x0F
    magnitude = ((mantissa.astype(np.int32) << 3) + 0x84) << exponent
    return np.where(sign != 0, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_table() -> npt.NDArray[np.int16]:
    codes = np.arange(256, dtype=np.uint8) ^ 0x55
    sign = codes & 0x80
    exponent = ((codes >> 4) & 0x07).astype(np.int32)
    mantissa = (codes & 0x0F).astype(np.int32)
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype(np.int16)


_MULAW = _mulaw_table()
_ALAW = _alaw_table()


@dataclass
class AudioDecoder:
    """Decodes one stream's binary frames in order; ``decode`` returns the 16-kHz samples they hold."""

    encoding: Encoding
    sample_rate: int

    def __post_init__(self) -> None:
        check_sample_rate(self.encoding, self.sample_rate)
        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=WHISPER_SAMPLE_RATE)
        self._odd_byte = b""
        self._opus: av.AudioCodecContext | None = None
        if self.encoding is Encoding.OPUS:
            codec = av.CodecContext.create("opus", "r")
            assert isinstance(codec, av.AudioCodecContext)
            codec.sample_rate = self.sample_rate
            codec.layout = "mono"
            self._opus = codec

    def decode(self, frame: bytes) -> Samples:
        if self.encoding is Encoding.OPUS:
            return self._decode_opus(frame)
        if self.encoding is Encoding.MULAW:
            pcm = _MULAW[np.frombuffer(frame, dtype=np.uint8)]
        elif self.encoding is Encoding.ALAW:
            pcm = _ALAW[np.frombuffer(frame, dtype=np.uint8)]
        else:
            # A frame may end mid-sample (odd byte count); the byte waits for the next frame.
            data = self._odd_byte + frame
            whole = len(data) // 2 * 2
            self._odd_byte = data[whole:]
            pcm = np.frombuffer(data[:whole], dtype="<i2").astype(np.int16)
        return self._resampled(pcm)

    def _resampled(self, pcm: npt.NDArray[np.int16]) -> Samples:
        if pcm.size == 0:
            return np.zeros(0, np.float32)
        frame = av.AudioFrame.from_ndarray(pcm[np.newaxis, :], format="s16", layout="mono")
        frame.sample_rate = self.sample_rate
        return _joined(self._resampler.resample(frame))

    def _decode_opus(self, packet: bytes) -> Samples:
        assert self._opus is not None
        try:
            frames = self._opus.decode(av.Packet(packet))
        except av.FFmpegError as error:
            raise AudioFrameError(f"the binary frame is not an Opus packet: {error}") from None
        out = []
        for decoded in frames:
            decoded.pts = None
            out.append(_joined(self._resampler.resample(decoded)))
        return np.concatenate(out) if out else np.zeros(0, np.float32)


def _joined(frames: list[av.AudioFrame]) -> Samples:
    if not frames:
        return np.zeros(0, np.float32)
    return np.concatenate([np.asarray(f.to_ndarray(), dtype=np.float32).reshape(-1) for f in frames])
