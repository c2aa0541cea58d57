"""A scriptable far-end SIP user agent on loopback, for the tests of the engine's SIP user agent and Telephony API and
for the telephony benchmark (``parley_devtools.bench_telephony``).

    async with SipPeer(PeerBehaviour(audio=pcm, hang_up_after_seconds=2.0)) as peer:
        call = await dialer.dial(DialRequest(uri=peer.uri("udp"), transport="udp", host_address=peer.host,
                                             port=peer.port))
        ...
        await peer.wait(peer.bye_received)

It listens on UDP and TCP on the same free port, answers one INVITE at a time as ``PeerBehaviour`` says (200 and
play PCM as PCMU/PCMA RTP in real time, 20 ms packets; a refusal; ringing forever; a digest challenge), can hang up,
stop its RTP or send a re-INVITE after a delay, and records what it received (INVITEs, CANCEL, BYE, ACKs, DTMF).
aiosipua parses and serializes the messages and aiortp the RTP; the UAS behaviour is written here, since a test peer
must misbehave on purpose (never answer, go silent) where a library UAS would not.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from aiortp import DtmfEvent, RtpPacket
from aiortp.codecs import PcmaCodec, PcmuCodec
from aiosipua import SipRequest, SipResponse, parse_sdp
from aiosipua.headers import parse_auth, stringify_uri
from aiosipua.transport import SipTransport, TcpSipTransport, UdpSipTransport, _UdpProtocol

PEER_HOST = "127.0.0.1"
PEER_REALM = "parley-test"
FRAME_SAMPLES = 160  # 20 ms at 8 kHz
FRAME_SECONDS = 0.02
TELEPHONE_EVENT_PAYLOAD_TYPE = 101
EVENT_DIGITS = "0123456789*#ABCD"
G711_PAYLOAD_TYPES = {"PCMU": 0, "PCMA": 8}


@dataclass(frozen=True)
class PeerBehaviour:
    """What the peer does with an INVITE. ``answer_status`` None: ring forever (the caller must CANCEL)."""

    answer_status: int | None = 200
    answer_reason: str = "OK"
    audio: bytes = b""  # 16-bit little-endian PCM at 8 kHz, played once after answering
    codec: Literal["PCMU", "PCMA"] | None = None  # None: the first of them in the offer
    hang_up_after_seconds: float | None = None  # send BYE this long after answering
    stop_rtp_after_seconds: float | None = None  # stop sending RTP (no BYE) this long after answering
    reinvite_after_seconds: float | None = None  # send a re-INVITE moving the RTP to a new port
    username: str | None = None  # with password: require digest authentication
    password: str | None = None
    algorithm: Literal["MD5", "SHA-256"] = "MD5"
    lose_first_bye: bool = False  # drop the engine's first BYE and first CANCEL unanswered, as a lossy UDP path would


@dataclass
class PeerCall:
    """The peer's side of the current call (one at a time)."""

    invite: SipRequest
    source: tuple[str, int]
    transport: SipTransport
    local_tag: str
    codec: str = "PCMU"
    remote_rtp: tuple[str, int] | None = None
    rtp: asyncio.DatagramTransport | None = None
    local_cseq: int = 0
    ended: bool = False
    tasks: list[asyncio.Task[None]] = field(default_factory=list)


class _DatagramProtocol(_UdpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        pass  # aiosipua's assertion fails on Python 3.11's selector transport; _UdpTransport.start keeps it


class _UdpTransport(UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _DatagramProtocol(self), local_addr=self.local_addr)
        self._udp_transport = transport


class _RtpReceiver(asyncio.DatagramProtocol):
    def __init__(self, on_packet: Callable[[RtpPacket], None]) -> None:
        self._on_packet = on_packet

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        with contextlib.suppress(ValueError):
            self._on_packet(RtpPacket.parse(data))


class SipPeer:
    """The far end. Public record: ``invites``, ``acks``, ``dtmf_digits``, ``sent_payloads``, and the events
    ``answered``, ``ack_received``, ``cancel_received``, ``bye_received``, ``reinvite_answered``, ``call_over``."""

    def __init__(self, behaviour: PeerBehaviour | None = None) -> None:
        self.behaviour = behaviour or PeerBehaviour()
        self.host = PEER_HOST
        self.port = 0
        self.invites: list[SipRequest] = []
        self.acks: list[SipRequest] = []
        self.byes_received = 0  # every copy of the engine's BYE, lost ones included
        self.cancels_received = 0
        self.dtmf_digits: list[str] = []
        self.sent_payloads: list[bytes] = []  # the encoded audio payloads sent, in order
        self.playback_started_at: float | None = None  # the event loop's clock when the first audio packet left
        self.answered = asyncio.Event()
        self.ack_received = asyncio.Event()
        self._dtmf_arrived = asyncio.Event()
        self.cancel_received = asyncio.Event()
        self.bye_received = asyncio.Event()  # a BYE from the engine
        self.reinvite_answered = asyncio.Event()
        self.call_over = asyncio.Event()  # the dialog ended either way
        self._udp: _UdpTransport | None = None
        self._tcp: TcpSipTransport | None = None
        self._call: PeerCall | None = None
        self._nonce = secrets.token_hex(8)
        self._last_event_timestamp: int | None = None

    # The API the tests use

    def uri(self, transport: Literal["udp", "tcp"], user: str = "bob") -> str:
        suffix = ";transport=tcp" if transport == "tcp" else ""
        return f"sip:{user}@{self.host}:{self.port}{suffix}"

    @staticmethod
    async def wait(event: asyncio.Event, within_seconds: float = 5.0) -> None:
        """Wait for one of the peer's events; TimeoutError after ``within_seconds``."""
        async with asyncio.timeout(within_seconds):
            await event.wait()

    async def wait_for_dtmf(self, count: int, within_seconds: float = 5.0) -> list[str]:
        """The DTMF digits received, once there are ``count``; TimeoutError after ``within_seconds``."""
        async with asyncio.timeout(within_seconds):
            while len(self.dtmf_digits) < count:
                self._dtmf_arrived.clear()
                await self._dtmf_arrived.wait()
        return list(self.dtmf_digits)

    async def __aenter__(self) -> SipPeer:
        for _attempt in range(20):
            udp = _UdpTransport(local_addr=(self.host, 0))
            udp.on_message = self._on_message
            await udp.start()
            assert udp._udp_transport is not None
            port = int(udp._udp_transport.get_extra_info("sockname")[1])
            tcp = TcpSipTransport(local_addr=(self.host, port))
            tcp.on_message = self._on_tcp_message
            try:
                await tcp.start()
            except OSError:
                await udp.stop()
                continue
            udp.local_addr = tcp.local_addr = (self.host, port)
            self._udp, self._tcp, self.port = udp, tcp, port
            return self
        raise RuntimeError("no free port for both UDP and TCP")

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._call is not None:
            self._end_call(self._call)
        if self._tcp is not None:
            await self._tcp.stop()
        if self._udp is not None:
            await self._udp.stop()

    # Signalling

    def _on_tcp_message(self, message: SipRequest | SipResponse, source: tuple[str, int]) -> None:
        assert self._tcp is not None
        self._dispatch(message, source, self._tcp)

    def _on_message(self, message: SipRequest | SipResponse, source: tuple[str, int]) -> None:
        assert self._udp is not None
        self._dispatch(message, source, self._udp)

    def _dispatch(self, message: SipRequest | SipResponse, source: tuple[str, int], transport: SipTransport) -> None:
        if isinstance(message, SipResponse):
            self._on_response(message)
            return
        method = message.method.upper()
        to = message.to_addr
        if method == "INVITE" and not (to and to.tag):
            self._on_invite(message, source, transport)
        elif method == "INVITE":
            self._respond(message, transport, 200, "OK")
        elif method == "ACK":
            self.acks.append(message)
            self.ack_received.set()
        elif method == "CANCEL":
            self.cancels_received += 1
            if self.behaviour.lose_first_bye and self.cancels_received == 1:
                return
            self.cancel_received.set()
            self._respond(message, transport, 200, "OK")
            if self._call is not None and self._call.invite.call_id == message.call_id:
                self._respond(self._call.invite, transport, 487, "Request Terminated", tag=self._call.local_tag)
                self._end_call(self._call)
        elif method == "BYE":
            self.byes_received += 1
            if self.behaviour.lose_first_bye and self.byes_received == 1:
                return
            self.bye_received.set()
            self._respond(message, transport, 200, "OK")
            if self._call is not None:
                self._end_call(self._call)
        else:
            self._respond(message, transport, 200, "OK")

    def _on_invite(self, invite: SipRequest, source: tuple[str, int], transport: SipTransport) -> None:
        self.invites.append(invite)
        behaviour = self.behaviour
        if behaviour.username is not None:
            verdict = self._check_credentials(invite)
            if verdict == "missing":
                challenge = f'Digest realm="{PEER_REALM}", nonce="{self._nonce}", algorithm={behaviour.algorithm}'
                self._respond(
                    invite, transport, 401, "Unauthorized", extra={"WWW-Authenticate": challenge + ', qop="auth"'}
                )
                return
            if verdict == "wrong":
                self._respond(invite, transport, 403, "Forbidden")
                return
        call = PeerCall(invite=invite, source=source, transport=transport, local_tag=secrets.token_hex(4))
        self._call = call
        self._respond(invite, transport, 100, "Trying")
        self._respond(invite, transport, 180, "Ringing", tag=call.local_tag)
        if behaviour.answer_status is None:
            return
        if behaviour.answer_status >= 300:
            self._respond(invite, transport, behaviour.answer_status, behaviour.answer_reason, tag=call.local_tag)
            self._end_call(call)
            return
        call.tasks.append(asyncio.create_task(self._answer(call)))

    def _check_credentials(self, invite: SipRequest) -> Literal["ok", "missing", "wrong"]:
        header = invite.get_header("Authorization")
        if not header:
            return "missing"
        params = parse_auth(header, credentials=True).params
        hash_name = "sha256" if self.behaviour.algorithm == "SHA-256" else "md5"

        def digest(text: str) -> str:
            return hashlib.new(hash_name, text.encode()).hexdigest()

        ha1 = digest(f"{self.behaviour.username}:{PEER_REALM}:{self.behaviour.password}")
        ha2 = digest(f"INVITE:{params.get('uri', '')}")
        if params.get("qop") == "auth":
            expected = digest(f"{ha1}:{self._nonce}:{params.get('nc')}:{params.get('cnonce')}:auth:{ha2}")
        else:
            expected = digest(f"{ha1}:{self._nonce}:{ha2}")
        ok = params.get("username") == self.behaviour.username and params.get("response") == expected
        return "ok" if ok else "wrong"

    async def _answer(self, call: PeerCall) -> None:
        offer = parse_sdp(call.invite.text)
        audio = offer.audio
        offered = [codec.encoding_name.upper() for codec in audio.codecs] if audio else []
        call.codec = self.behaviour.codec or next(name for name in offered if name in G711_PAYLOAD_TYPES)
        call.remote_rtp = offer.rtp_address
        call.rtp = await self._open_rtp()
        self._respond(
            call.invite,
            call.transport,
            200,
            "OK",
            tag=call.local_tag,
            sdp=self._sdp(call.codec, call.rtp),
        )
        self.answered.set()
        behaviour = self.behaviour
        call.tasks.append(asyncio.create_task(self._play(call)))
        if behaviour.hang_up_after_seconds is not None:
            call.tasks.append(asyncio.create_task(self._after(behaviour.hang_up_after_seconds, self._hang_up, call)))
        if behaviour.reinvite_after_seconds is not None:
            call.tasks.append(asyncio.create_task(self._after(behaviour.reinvite_after_seconds, self._reinvite, call)))

    async def _after(self, seconds: float, action: Callable[[PeerCall], Awaitable[None]], call: PeerCall) -> None:
        await asyncio.sleep(seconds)
        if not call.ended:
            await action(call)

    async def _hang_up(self, call: PeerCall) -> None:
        self._send_in_dialog(call, "BYE")
        self._end_call(call)

    async def _reinvite(self, call: PeerCall) -> None:
        old = call.rtp
        call.rtp = await self._open_rtp()
        if old is not None:
            old.close()
        self._send_in_dialog(call, "INVITE", sdp=self._sdp(call.codec, call.rtp))

    def _on_response(self, response: SipResponse) -> None:
        call = self._call
        cseq = response.cseq
        if call is None or cseq is None or cseq.method.upper() != "INVITE" or response.status_code < 200:
            return
        ack = self._request(call, "ACK", cseq=cseq.seq)
        call.transport.send(ack, call.source)
        if response.status_code == 200:
            self.reinvite_answered.set()

    def _respond(
        self,
        request: SipRequest,
        transport: SipTransport,
        status: int,
        reason: str,
        *,
        tag: str | None = None,
        sdp: str | None = None,
        extra: dict[str, str] | None = None,
    ) -> None:
        response = SipResponse(status_code=status, reason_phrase=reason)
        for via in request.headers.get("via"):
            response.headers.append("Via", via)
        for name in ("From", "Call-ID", "CSeq"):
            value = request.headers.get_first(name)
            if value:
                response.headers.set_single(name, value)
        to = request.headers.get_first("to") or ""
        if tag is None and status != 100 and "tag=" not in to:
            tag = secrets.token_hex(4)
        if tag is not None and "tag=" not in to:
            to += f";tag={tag}"
        response.headers.set_single("To", to)
        response.headers.set_single("Contact", f"<sip:peer@{self.host}:{self.port}>")
        for name, value in (extra or {}).items():
            response.headers.set_single(name, value)
        if sdp is not None:
            response.text = sdp
            response.headers.set_single("Content-Type", "application/sdp")
        transport.send_reply(response)

    def _request(self, call: PeerCall, method: str, *, cseq: int | None = None) -> SipRequest:
        invite = call.invite
        contacts = invite.contact
        target = stringify_uri(contacts[0].uri) if contacts else invite.uri
        request = SipRequest(method=method, uri=target)
        protocol = "TCP" if isinstance(call.transport, TcpSipTransport) else "UDP"
        branch = "z9hG4bK" + secrets.token_hex(8)
        request.headers.append("Via", f"SIP/2.0/{protocol} {self.host}:{self.port};branch={branch};rport")
        request.headers.set_single("From", f"{invite.headers.get_first('to')};tag={call.local_tag}")
        request.headers.set_single("To", invite.headers.get_first("from") or "")
        request.headers.set_single("Call-ID", invite.call_id or "")
        if cseq is None:
            call.local_cseq += 1
            cseq = call.local_cseq
        request.headers.set_single("CSeq", f"{cseq} {method}")
        request.headers.set_single("Max-Forwards", "70")
        request.headers.set_single("Contact", f"<sip:peer@{self.host}:{self.port}>")
        return request

    def _send_in_dialog(self, call: PeerCall, method: str, *, sdp: str | None = None) -> None:
        request = self._request(call, method)
        if sdp is not None:
            request.text = sdp
            request.headers.set_single("Content-Type", "application/sdp")
        call.transport.send(request, call.source)

    def _end_call(self, call: PeerCall) -> None:
        if call.ended:
            return
        call.ended = True
        current = asyncio.current_task()
        for task in call.tasks:
            if task is not current:
                task.cancel()
        if call.rtp is not None:
            call.rtp.close()
        self.call_over.set()

    # Media

    async def _open_rtp(self) -> asyncio.DatagramTransport:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _RtpReceiver(self._on_rtp), local_addr=(self.host, 0)
        )
        return transport

    def _sdp(self, codec: str, rtp: asyncio.DatagramTransport) -> str:
        port = rtp.get_extra_info("sockname")[1]
        payload_type = G711_PAYLOAD_TYPES[codec]
        return (
            f"v=0\r\no=peer 1 {secrets.randbelow(10**6)} IN IP4 {self.host}\r\ns=peer\r\nc=IN IP4 {self.host}\r\n"
            f"t=0 0\r\nm=audio {port} RTP/AVP {payload_type} {TELEPHONE_EVENT_PAYLOAD_TYPE}\r\n"
            f"a=rtpmap:{payload_type} {codec}/8000\r\n"
            f"a=rtpmap:{TELEPHONE_EVENT_PAYLOAD_TYPE} telephone-event/8000\r\n"
            f"a=fmtp:{TELEPHONE_EVENT_PAYLOAD_TYPE} 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
        )

    def _on_rtp(self, packet: RtpPacket) -> None:
        if packet.payload_type != TELEPHONE_EVENT_PAYLOAD_TYPE:
            return
        event = DtmfEvent.parse(packet.payload)
        if event.end and packet.timestamp != self._last_event_timestamp:
            self._last_event_timestamp = packet.timestamp
            self.dtmf_digits.append(EVENT_DIGITS[event.event] if event.event < len(EVENT_DIGITS) else "?")
            self._dtmf_arrived.set()

    async def _play(self, call: PeerCall) -> None:
        """Send the behaviour's audio as 20 ms RTP packets in real time, from whichever socket is current."""
        codec = PcmuCodec() if call.codec == "PCMU" else PcmaCodec()
        payload_type = G711_PAYLOAD_TYPES[call.codec]
        pcm = self.behaviour.audio
        frame_bytes = FRAME_SAMPLES * 2
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.playback_started_at = started
        ssrc, sequence, timestamp = secrets.randbits(32), secrets.randbits(16), secrets.randbits(32)
        stop_after = self.behaviour.stop_rtp_after_seconds
        for index, offset in enumerate(range(0, len(pcm) - frame_bytes + 1, frame_bytes)):
            if stop_after is not None and loop.time() - started >= stop_after:
                return
            payload = codec.encode(pcm[offset : offset + frame_bytes])
            packet = RtpPacket(
                payload_type=payload_type,
                marker=1 if index == 0 else 0,
                sequence_number=(sequence + index) & 0xFFFF,
                timestamp=(timestamp + index * FRAME_SAMPLES) & 0xFFFFFFFF,
                ssrc=ssrc,
                payload=payload,
            )
            if call.rtp is not None and call.remote_rtp is not None and not call.rtp.is_closing():
                call.rtp.sendto(packet.serialize(), call.remote_rtp)
                self.sent_payloads.append(payload)
            await asyncio.sleep(max(0.0, started + (index + 1) * FRAME_SECONDS - loop.time()))
