"""The SDP side of a call: the offer the engine sends, the codec the far end chose, the answer to a re-INVITE.

aiosipua parses and serializes SDP; its ``build_sdp`` offers a single codec, so the offer (several codecs in the
caller's order, plus telephone-event) is assembled here from its dataclasses.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from aiosipua import SdpMessage
from aiosipua.sdp import Codec, ConnectionData, MediaDescription, Origin
from parley_engine.telephony.ports import CallAudio

TELEPHONE_EVENT_PAYLOAD_TYPE = 101
# The payload type the engine offers opus on; the far end may answer with another dynamic number.
OPUS_PAYLOAD_TYPE = 111

Direction = Literal["sendrecv", "sendonly", "recvonly", "inactive"]


@dataclass(frozen=True)
class SupportedCodec:
    """A codec the engine can receive, as offered in SDP and as the Streaming API names its payloads."""

    name: str  # the rtpmap encoding name
    payload_type: int  # the number the engine offers it on
    clock_rate: int
    channels: int
    audio: CallAudio


SUPPORTED_CODECS: dict[str, SupportedCodec] = {
    "PCMU": SupportedCodec("PCMU", 0, 8000, 1, CallAudio(encoding="MULAW", sample_rate=8000)),
    "PCMA": SupportedCodec("PCMA", 8, 8000, 1, CallAudio(encoding="ALAW", sample_rate=8000)),
    "opus": SupportedCodec("opus", OPUS_PAYLOAD_TYPE, 48000, 2, CallAudio(encoding="OPUS", sample_rate=48000)),
}


@dataclass(frozen=True)
class NegotiatedMedia:
    """What one SDP exchange settled: the codec and where the far end receives RTP (``None``: on hold)."""

    codec: SupportedCodec
    payload_type: int  # the far end's number for the codec (dynamic for opus)
    telephone_event_payload_type: int | None
    telephone_event_clock_rate: int
    remote_rtp_address: tuple[str, int] | None
    remote_direction: Direction

    @property
    def far_end_sends(self) -> bool:
        """Whether the far end said it sends audio (a hold says it does not: no RTP timeout then)."""
        return self.remote_direction in ("sendrecv", "sendonly") and self.remote_rtp_address is not None


def supported_codec(name: str) -> SupportedCodec:
    """The codec a DialRequest names (``PCMU``, ``PCMA``, ``opus``, in any case); ValueError for another."""
    for codec in SUPPORTED_CODECS.values():
        if codec.name.lower() == name.lower():
            return codec
    raise ValueError(f"unsupported codec {name!r}: the engine offers {', '.join(SUPPORTED_CODECS)}")


def _session(address: str, media: MediaDescription, session_id: str) -> SdpMessage:
    return SdpMessage(
        origin=Origin(username="parley", session_id=session_id, session_version=session_id, address=address),
        session_name="Parley",
        connection=ConnectionData(address=address),
        media=[media],
    )


def _media(
    codecs: Sequence[tuple[int, SupportedCodec]],
    rtp_port: int,
    direction: Direction,
    telephone_event: tuple[int, int] | None,
) -> MediaDescription:
    rtpmap = [
        f"{payload_type} {codec.name}/{codec.clock_rate}" + (f"/{codec.channels}" if codec.channels > 1 else "")
        for payload_type, codec in codecs
    ]
    formats = [str(payload_type) for payload_type, _ in codecs]
    attributes: dict[str, list[str]] = {"rtpmap": rtpmap}
    if telephone_event is not None:
        event_payload_type, event_clock_rate = telephone_event
        rtpmap.append(f"{event_payload_type} telephone-event/{event_clock_rate}")
        formats.append(str(event_payload_type))
        attributes["fmtp"] = [f"{event_payload_type} 0-16"]
    attributes["ptime"] = ["20"]
    attributes[direction] = []
    media = MediaDescription(media="audio", port=rtp_port, formats=formats, attributes=attributes)
    media.codecs = [
        Codec(payload_type=payload_type, encoding_name=codec.name, clock_rate=codec.clock_rate)
        for payload_type, codec in codecs
    ]
    return media


def build_offer(codec_names: Sequence[str], address: str, rtp_port: int) -> SdpMessage:
    """The INVITE's offer: the requested codecs in their order of preference, then telephone-event (101)."""
    codecs = [supported_codec(name) for name in codec_names]
    if not codecs:
        raise ValueError("a call needs at least one codec to offer")
    media = _media(
        [(codec.payload_type, codec) for codec in codecs], rtp_port, "sendrecv", (TELEPHONE_EVENT_PAYLOAD_TYPE, 8000)
    )
    return _session(address, media, str(int(time.time())))


def negotiate(sdp: SdpMessage, acceptable: Sequence[SupportedCodec]) -> NegotiatedMedia | None:
    """The first codec of ``sdp``'s audio stream that is in ``acceptable`` (in ``sdp``'s order, as RFC 3264 has the
    answerer's choice first), with the far end's RTP address; ``None`` when there is none in common."""
    audio = sdp.audio
    if audio is None:
        return None
    chosen: tuple[int, SupportedCodec] | None = None
    telephone_event: tuple[int, int] | None = None
    for codec in audio.codecs:
        name = codec.encoding_name.lower()
        if name == "telephone-event" and telephone_event is None:
            telephone_event = (codec.payload_type, codec.clock_rate or 8000)
            continue
        for candidate in acceptable:
            if chosen is None and candidate.name.lower() == name and codec.clock_rate == candidate.clock_rate:
                chosen = (codec.payload_type, candidate)
    if chosen is None:
        return None
    address = sdp.rtp_address
    # Port 0 or the 0.0.0.0 of old-style hold: the far end receives nothing for now.
    remote = address if address is not None and address[1] != 0 and address[0] != "0.0.0.0" else None
    return NegotiatedMedia(
        codec=chosen[1],
        payload_type=chosen[0],
        telephone_event_payload_type=telephone_event[0] if telephone_event else None,
        telephone_event_clock_rate=telephone_event[1] if telephone_event else 8000,
        remote_rtp_address=remote,
        remote_direction=_direction(audio.direction),
    )


def _direction(value: str) -> Direction:
    if value in ("sendonly", "recvonly", "inactive"):
        return value  # type: ignore[return-value]
    return "sendrecv"


# Our direction answers theirs (RFC 3264 §6.1): they only send → we only receive, and so on.
_ANSWER_DIRECTION: dict[Direction, Direction] = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}


def build_answer(offer: NegotiatedMedia, address: str, rtp_port: int) -> SdpMessage:
    """The answer to a re-INVITE's offer: the codec in use, telephone-event if offered, the mirrored direction."""
    telephone_event = (
        (offer.telephone_event_payload_type, offer.telephone_event_clock_rate)
        if offer.telephone_event_payload_type is not None
        else None
    )
    media = _media(
        [(offer.payload_type, offer.codec)], rtp_port, _ANSWER_DIRECTION[offer.remote_direction], telephone_event
    )
    return _session(address, media, str(int(time.time())))
