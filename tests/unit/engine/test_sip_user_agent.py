"""The engine's SIP user agent against a scripted far end on loopback, over UDP and TCP."""

from __future__ import annotations

import asyncio
import math
import struct
from collections.abc import AsyncIterator

import pytest
from aiosipua import parse_sdp
from parley_engine.telephony.ports import CallAudio, CallFailed, DialRequest, SipCall, SipCredentials, Transport
from parley_engine.telephony.sip import SipUserAgent
from parley_engine.telephony.sip_media import PayloadReorderBuffer
from parley_engine.telephony.sip_sdp import build_offer, negotiate, supported_codec

from parley_devtools.sip_peer import PeerBehaviour, SipPeer

TRANSPORTS: list[Transport] = ["udp", "tcp"]


def tone(seconds: float, frequency: float = 440.0) -> bytes:
    """16-bit PCM at 8 kHz whose samples differ from packet to packet, so a misordered payload shows."""
    count = int(8000 * seconds)
    return struct.pack(
        f"<{count}h",
        *(int(12000 * math.sin(2 * math.pi * frequency * n / 8000) * (1 + n / count)) for n in range(count)),
    )


@pytest.fixture
async def dialer() -> AsyncIterator[SipUserAgent]:
    user_agent = SipUserAgent()
    try:
        yield user_agent
    finally:
        await user_agent.close()


def request_to(peer: SipPeer, transport: Transport, **overrides: object) -> DialRequest:
    fields: dict[str, object] = {
        "uri": peer.uri(transport),
        "transport": transport,
        "host_address": peer.host,
        "port": peer.port,
        "answer_timeout_seconds": 3.0,
        "rtp_timeout_seconds": 5.0,
    }
    fields.update(overrides)
    return DialRequest(**fields)  # type: ignore[arg-type]


async def collect_audio(call: SipCall, within_seconds: float) -> bytes:
    received = bytearray()
    async with asyncio.timeout(within_seconds):
        async for payload in call.audio():
            received += payload
    return bytes(received)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_answered_call_yields_the_played_audio_until_the_far_end_hangs_up(
    dialer: SipUserAgent, transport: Transport
) -> None:
    async with SipPeer(PeerBehaviour(audio=tone(1.0), codec="PCMA", hang_up_after_seconds=1.3)) as peer:
        call = await dialer.dial(request_to(peer, transport))
        assert call.audio_format.encoding == "ALAW" and call.audio_format.sample_rate == 8000

        received = await collect_audio(call, within_seconds=5.0)
        end = await asyncio.wait_for(call.ended(), 1.0)

    played = b"".join(peer.sent_payloads)
    assert len(played) == 8000  # 1 s of A-law
    assert received in played  # in order, nothing invented; losses only at the edges
    assert len(received) >= len(played) - 4 * 160
    assert end.cause == "remote_hangup"
    assert len(peer.acks) == 1  # the 200 OK was ACKed


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_hang_up_sends_bye_and_ends_the_audio(dialer: SipUserAgent, transport: Transport) -> None:
    async with SipPeer(PeerBehaviour(audio=tone(3.0))) as peer:
        call = await dialer.dial(request_to(peer, transport))
        assert call.audio_format.encoding == "MULAW"
        audio = call.audio()
        first = await asyncio.wait_for(anext(audio), 2.0)
        assert first in peer.sent_payloads[:5]  # packets sent before the 200 OK reached us may be lost

        await call.hang_up()
        await call.hang_up()  # idempotent

        await peer.wait(peer.bye_received)
        end = await asyncio.wait_for(call.ended(), 1.0)
        remaining = [payload async for payload in audio]  # ends rather than waiting for more
    assert end.cause == "local_hangup"
    assert len(remaining) < len(peer.sent_payloads)


@pytest.mark.parametrize(("status", "reason"), [(486, "Busy Here"), (404, "Not Found")])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_refusal_is_call_failed_with_its_status(
    dialer: SipUserAgent, transport: Transport, status: int, reason: str
) -> None:
    async with SipPeer(PeerBehaviour(answer_status=status, answer_reason=reason)) as peer:
        with pytest.raises(CallFailed) as failure:
            await dialer.dial(request_to(peer, transport))
        await peer.wait(peer.ack_received)
    assert failure.value.status == status
    assert failure.value.reason == f"{status} {reason}"
    assert not failure.value.timed_out
    assert [ack.cseq.seq for ack in peer.acks if ack.cseq] == [peer.invites[0].cseq.seq if peer.invites[0].cseq else 0]


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_answer_is_cancelled_after_the_answer_timeout(dialer: SipUserAgent, transport: Transport) -> None:
    async with SipPeer(PeerBehaviour(answer_status=None)) as peer:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(CallFailed) as failure:
            await dialer.dial(request_to(peer, transport, answer_timeout_seconds=1.0))
        waited = loop.time() - started
        assert peer.cancel_received.is_set()
        await peer.wait(peer.ack_received)  # the 487 that answered the CANCEL was ACKed
    assert failure.value.timed_out
    assert 1.0 <= waited < 2.5
    assert len(peer.acks) == 1


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_rtp_stopping_without_bye_ends_the_call_and_sends_bye(dialer: SipUserAgent, transport: Transport) -> None:
    async with SipPeer(PeerBehaviour(audio=tone(5.0), stop_rtp_after_seconds=0.3)) as peer:
        call = await dialer.dial(request_to(peer, transport, rtp_timeout_seconds=0.6))
        end = await asyncio.wait_for(call.ended(), 3.0)
        await peer.wait(peer.bye_received)
    assert end.cause == "rtp_timeout"


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_digest_authentication_answers_the_challenge(
    dialer: SipUserAgent, transport: Transport, algorithm: str
) -> None:
    behaviour = PeerBehaviour(audio=tone(0.5), username="parley", password="s3cret", algorithm=algorithm)  # type: ignore[arg-type]
    async with SipPeer(behaviour) as peer:
        credentials = SipCredentials(username="parley", password="s3cret")
        call = await dialer.dial(request_to(peer, transport, credentials=credentials))
        await call.hang_up()
        await peer.wait(peer.bye_received)
    assert len(peer.invites) == 2
    assert peer.invites[0].get_header("Authorization") is None
    assert f"algorithm={algorithm}" in (peer.invites[1].get_header("Authorization") or "")


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wrong_credentials_fail_cleanly(dialer: SipUserAgent, transport: Transport) -> None:
    async with SipPeer(PeerBehaviour(username="parley", password="s3cret")) as peer:
        with pytest.raises(CallFailed) as wrong_password:
            await dialer.dial(request_to(peer, transport, credentials=SipCredentials("parley", "guess")))
        with pytest.raises(CallFailed) as no_credentials:
            await dialer.dial(request_to(peer, transport))
        with pytest.raises(CallFailed) as other_realm:
            credentials = SipCredentials("parley", "s3cret", realm="elsewhere")
            await dialer.dial(request_to(peer, transport, credentials=credentials))
    assert wrong_password.value.status == 403
    assert no_credentials.value.status == 401
    assert other_realm.value.status == 401 and "elsewhere" in other_realm.value.reason
    assert len(peer.invites) == 4  # the wrong password was tried once, not again and again


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_reinvite_is_answered_and_audio_and_dtmf_follow_the_new_address(
    dialer: SipUserAgent, transport: Transport
) -> None:
    async with SipPeer(PeerBehaviour(audio=tone(1.5), reinvite_after_seconds=0.5)) as peer:
        call = await dialer.dial(request_to(peer, transport))
        audio = call.audio()
        await peer.wait(peer.reinvite_answered, 3.0)
        sent_before = len(peer.sent_payloads)
        received_after = [await asyncio.wait_for(anext(audio), 1.0) for _ in range(sent_before + 5)]

        await call.send_dtmf(",1#")
        digits = await peer.wait_for_dtmf(2)
        await call.hang_up()
    assert received_after[-1] in peer.sent_payloads[sent_before:]  # audio from the new socket still arrives
    assert digits == ["1", "#"]


async def test_close_hangs_up_every_open_call() -> None:
    dialer = SipUserAgent()
    async with SipPeer(PeerBehaviour(audio=tone(3.0))) as udp_peer, SipPeer(PeerBehaviour(audio=tone(3.0))) as tcp_peer:
        udp_call = await dialer.dial(request_to(udp_peer, "udp"))
        tcp_call = await dialer.dial(request_to(tcp_peer, "tcp"))
        await dialer.close()
        await udp_peer.wait(udp_peer.bye_received)
        await tcp_peer.wait(tcp_peer.bye_received)
    assert (await udp_call.ended()).cause == "local_hangup"
    assert (await tcp_call.ended()).cause == "local_hangup"
    with pytest.raises(CallFailed):
        await dialer.dial(request_to(udp_peer, "udp"))


def test_reorder_buffer_releases_in_sequence_order_and_drops_duplicates() -> None:
    buffer = PayloadReorderBuffer(depth=3)
    released = [
        *buffer.push(65534, b"a"),
        *buffer.push(0, b"c"),  # 65535 is late: held back
        *buffer.push(65535, b"b"),
        *buffer.push(65535, b"b"),  # duplicate
        *buffer.push(2, b"e"),  # 1 is lost: held until three later packets wait
        *buffer.push(3, b"f"),
        *buffer.push(4, b"g"),
        *buffer.push(5, b"h"),
        *buffer.push(1, b"d"),  # too late: already skipped
    ]
    assert released == [b"a", b"b", b"c", b"e", b"f", b"g", b"h"]
    assert buffer.push(7, b"j") == []
    assert buffer.flush() == [b"j"]


def test_the_offer_keeps_the_requested_order_and_the_answer_names_the_codec() -> None:
    offer = build_offer(["opus", "PCMA"], "127.0.0.1", 40000)
    audio = offer.audio
    assert audio is not None and audio.formats == ["111", "8", "101"]
    assert "111 opus/48000/2" in audio.attributes["rtpmap"]

    answer = parse_sdp(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\n"
        "m=audio 5004 RTP/AVP 96 101\r\na=rtpmap:96 opus/48000/2\r\na=rtpmap:101 telephone-event/48000\r\n"
    )
    negotiated = negotiate(answer, [supported_codec("PCMU"), supported_codec("opus")])
    assert negotiated is not None
    assert negotiated.codec.audio == CallAudio(encoding="OPUS", sample_rate=48000)
    assert (negotiated.payload_type, negotiated.telephone_event_payload_type) == (96, 101)
    assert negotiated.remote_rtp_address == ("10.0.0.9", 5004)
    assert negotiate(answer, [supported_codec("PCMU")]) is None


async def test_a_lost_bye_is_sent_again_over_udp_until_answered(dialer: SipUserAgent) -> None:
    async with SipPeer(PeerBehaviour(audio=tone(3.0), lose_first_bye=True)) as peer:
        call = await dialer.dial(request_to(peer, "udp"))
        await call.hang_up()
        await peer.wait(peer.bye_received, within_seconds=3.0)  # the copy resent after T1
        assert peer.byes_received == 2
        await asyncio.sleep(2.5)  # a third copy would have left 1 s after the second
    assert peer.byes_received == 2, "answered: no more copies"


async def test_a_lost_cancel_is_sent_again_over_udp(dialer: SipUserAgent) -> None:
    async with SipPeer(PeerBehaviour(answer_status=None, lose_first_bye=True)) as peer:
        with pytest.raises(CallFailed):
            await dialer.dial(request_to(peer, "udp", answer_timeout_seconds=1.0))
        await peer.wait(peer.cancel_received, within_seconds=3.0)
        await peer.wait(peer.ack_received)  # the 487 the resent CANCEL brought was ACKed
    assert peer.cancels_received == 2
