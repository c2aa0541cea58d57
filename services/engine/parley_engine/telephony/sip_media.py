"""A call's RTP: one UDP socket that receives the far end's audio payloads in order and sends RFC 4733 DTMF.

aiortp supplies the packet formats (``RtpPacket``, ``DtmfEvent``, ``is_rtcp``). Its ``RTPSession`` is not used: it
decodes to PCM (the engine wants the codec's payloads), binds a second socket for RTCP, keeps its bound port private
and sends each digit's telephone-event packets in one burst, where RFC 4733 has them paced every 20 ms.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, cast

from aiortp import DtmfEvent, RtpPacket, is_rtcp
from parley_engine.telephony.sip_sdp import NegotiatedMedia

logger = logging.getLogger(__name__)

# RFC 4733 event codes of the digits a Symbl dtmf string may hold.
DTMF_EVENT_CODES: dict[str, int] = {
    **{str(digit): digit for digit in range(10)},
    "*": 10,
    "#": 11,
    "A": 12,
    "B": 13,
    "C": 14,
    "D": 15,
}
DTMF_PAUSE = ","
DTMF_PAUSE_SECONDS = 0.5
DTMF_TONE_SECONDS = 0.16
DTMF_GAP_SECONDS = 0.08
DTMF_PACKET_SECONDS = 0.02
DTMF_END_REPEATS = 3  # RFC 4733 §2.5.1.4: the end packet is sent three times
DTMF_VOLUME = 10

# Packets held back waiting for a missing one; past this, the gap is taken as lost (60 ms of 20 ms packets).
REORDER_DEPTH = 3
# Payloads waiting for the reader: 10 s of 20 ms packets; past that the oldest are dropped, not memory.
AUDIO_BACKLOG = 500


def valid_dtmf(digits: str) -> str:
    """``digits`` upper-cased, or ValueError naming the first character that is neither a digit nor a pause."""
    normalized = digits.upper()
    for character in normalized:
        if character != DTMF_PAUSE and character not in DTMF_EVENT_CODES:
            raise ValueError(f"{character!r} is not a DTMF digit (0-9, *, #, A-D, or ',' to pause)")
    return normalized


class PayloadReorderBuffer:
    """Puts one RTP stream's payloads back in sequence order: duplicates and packets older than what was already
    released are dropped; a gap is waited for until ``depth`` later packets are held, then skipped."""

    def __init__(self, depth: int = REORDER_DEPTH) -> None:
        self._depth = depth
        self._next: int | None = None
        self._held: dict[int, bytes] = {}

    def push(self, sequence_number: int, payload: bytes) -> list[bytes]:
        """The payloads that are now in order, oldest first (often just this one)."""
        if self._next is None:
            self._next = sequence_number
        ahead = (sequence_number - self._next) & 0xFFFF
        if ahead >= 0x8000 or sequence_number in self._held:
            return []  # already released (late or duplicate), or already held
        self._held[sequence_number] = payload
        released = self._release_in_order()
        while len(self._held) > self._depth:
            self._next = min(self._held, key=lambda held: (held - self._next) & 0xFFFF)  # type: ignore[operator]
            released += self._release_in_order()
        return released

    def flush(self) -> list[bytes]:
        """Everything still held, in sequence order (the stream ended or changed source)."""
        released: list[bytes] = []
        while self._held:
            self._next = min(self._held, key=lambda held: (held - self._next) & 0xFFFF)  # type: ignore[operator]
            released += self._release_in_order()
        self._next = None
        return released

    def _release_in_order(self) -> list[bytes]:
        released: list[bytes] = []
        assert self._next is not None
        while self._next in self._held:
            released.append(self._held.pop(self._next))
            self._next = (self._next + 1) & 0xFFFF
        return released


@dataclass
class _ReceivingFormat:
    payload_type: int
    telephone_event_payload_type: int | None
    telephone_event_clock_rate: int
    remote_rtp_address: tuple[str, int] | None


class RtpMediaStream(asyncio.DatagramProtocol):
    """The call's RTP socket. Open it before the INVITE (the offer names its port), ``start`` it with what the
    answer settled, ``follow`` each re-INVITE, read ``payloads()``, and ``close`` it when the call ends."""

    def __init__(self, accepted_sources: frozenset[str]) -> None:
        self._accepted_sources = set(accepted_sources)
        self._transport: asyncio.DatagramTransport | None = None
        self._format: _ReceivingFormat | None = None
        self._reorder = PayloadReorderBuffer()
        self._source_ssrc: int | None = None
        self._payloads: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._closed = False
        self.last_packet_at = time.monotonic()
        self.packets_received = 0
        # What we send (telephone-events only): our own SSRC, sequence and a media clock started at opening.
        self._ssrc = random.getrandbits(32)
        self._sequence_number = random.getrandbits(16)
        self._timestamp_base = random.getrandbits(32)
        self._opened_at = time.monotonic()
        self._dtmf_lock = asyncio.Lock()

    @classmethod
    async def open(cls, bind_address: str, accepted_sources: frozenset[str]) -> RtpMediaStream:
        """Bind a UDP socket on ``bind_address`` (an ephemeral port); RTP from other addresses than
        ``accepted_sources`` (the far end's SIP address; the SDP's is added by ``start``) is ignored."""
        loop = asyncio.get_running_loop()
        _, stream = await loop.create_datagram_endpoint(lambda: cls(accepted_sources), local_addr=(bind_address, 0))
        return stream

    @property
    def port(self) -> int:
        assert self._transport is not None
        port: int = self._transport.get_extra_info("sockname")[1]
        return port

    def start(self, media: NegotiatedMedia) -> None:
        """Receive the payload type the answer chose, from the address it named."""
        self.follow(media)
        self.last_packet_at = time.monotonic()

    def follow(self, media: NegotiatedMedia) -> None:
        """Take a re-INVITE's new address, payload type or hold into account."""
        self._format = _ReceivingFormat(
            payload_type=media.payload_type,
            telephone_event_payload_type=media.telephone_event_payload_type,
            telephone_event_clock_rate=media.telephone_event_clock_rate,
            remote_rtp_address=media.remote_rtp_address,
        )
        if media.remote_rtp_address is not None:
            self._accepted_sources.add(media.remote_rtp_address[0])

    async def payloads(self) -> AsyncIterator[bytes]:
        """The audio payloads in sequence order, until ``close`` (once: a second reader gets what is left)."""
        while True:
            payload = await self._payloads.get()
            if payload is None:
                return
            yield payload

    def close(self) -> None:
        """Release the socket and end ``payloads()`` after what is already received (idempotent)."""
        if self._closed:
            return
        self._closed = True
        for payload in self._reorder.flush():
            self._deliver(payload)
        self._payloads.put_nowait(None)
        if self._transport is not None:
            self._transport.close()

    # asyncio.DatagramProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport (Python 3.11's selector transport does not subclass DatagramTransport).
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if self._closed or self._format is None or str(addr[0]) not in self._accepted_sources:
            return
        if is_rtcp(data):
            return  # reports about the stream, not audio (RTCP multiplexed on the RTP port)
        try:
            packet = RtpPacket.parse(data)
        except ValueError:
            return
        self.last_packet_at = time.monotonic()
        self.packets_received += 1
        if packet.payload_type != self._format.payload_type:
            return  # telephone-events, comfort noise: not audio
        if packet.ssrc != self._source_ssrc:
            # A new source (the far end's re-INVITE, a transfer): its sequence numbers start elsewhere.
            for payload in self._reorder.flush():
                self._deliver(payload)
            self._source_ssrc = packet.ssrc
        for payload in self._reorder.push(packet.sequence_number, packet.payload):
            self._deliver(payload)

    def error_received(self, exc: Exception) -> None:
        logger.debug("RTP socket error: %s", exc)

    def _deliver(self, payload: bytes) -> None:
        if self._payloads.qsize() >= AUDIO_BACKLOG:
            self._payloads.get_nowait()
            logger.warning("call audio is not being read: dropped the oldest payload")
        self._payloads.put_nowait(payload)

    # DTMF

    async def send_dtmf(self, digits: str) -> None:
        """Send ``digits`` as RFC 4733 events paced in real time; ``,`` waits 0.5 s. One string at a time."""
        normalized = valid_dtmf(digits)
        async with self._dtmf_lock:
            for character in normalized:
                if self._closed:
                    return
                if character == DTMF_PAUSE:
                    await asyncio.sleep(DTMF_PAUSE_SECONDS)
                    continue
                await self._send_event(DTMF_EVENT_CODES[character])
                await asyncio.sleep(DTMF_GAP_SECONDS)

    async def _send_event(self, event_code: int) -> None:
        media = self._format
        if media is None or media.remote_rtp_address is None or media.telephone_event_payload_type is None:
            logger.warning("DTMF not sent: the far end accepts no telephone-events now")
            return
        clock_rate = media.telephone_event_clock_rate
        start = self._media_timestamp(clock_rate)
        step = round(DTMF_PACKET_SECONDS * clock_rate)
        tone = round(DTMF_TONE_SECONDS * clock_rate)
        duration = step
        marker = 1
        while duration < tone:
            self._send_event_packet(event_code, start, duration, end=False, marker=marker)
            marker = 0
            duration += step
            await asyncio.sleep(DTMF_PACKET_SECONDS)
        for _ in range(DTMF_END_REPEATS):
            self._send_event_packet(event_code, start, tone, end=True, marker=marker)
            marker = 0

    def _send_event_packet(self, event_code: int, timestamp: int, duration: int, *, end: bool, marker: int) -> None:
        media = self._format
        if self._closed or self._transport is None or media is None or media.remote_rtp_address is None:
            return
        assert media.telephone_event_payload_type is not None
        event = DtmfEvent(event=event_code, end=end, volume=DTMF_VOLUME, duration=duration)
        packet = RtpPacket(
            payload_type=media.telephone_event_payload_type,
            marker=marker,
            sequence_number=self._sequence_number,
            timestamp=timestamp,
            ssrc=self._ssrc,
            payload=event.serialize(),
        )
        self._sequence_number = (self._sequence_number + 1) & 0xFFFF
        self._transport.sendto(packet.serialize(), media.remote_rtp_address)

    def _media_timestamp(self, clock_rate: int) -> int:
        return (self._timestamp_base + round((time.monotonic() - self._opened_at) * clock_rate)) & 0xFFFFFFFF
