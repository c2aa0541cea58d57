"""Calls end to end: the engine on uvicorn dials a real SIP far end on loopback (``parley_devtools.sip_peer``) with
its own SIP user agent, hears the speech the far end plays over RTP with the real Whisper decoder and Silero VAD,
and ends every call cleanly, whichever side ends it and however: a completed or failed job with a clear reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from parley_engine.streaming.workers import Decoder, real_decoder

from parley_devtools.sip_peer import PeerBehaviour, SipPeer
from parley_devtools.speech_samples import flite_available, synthesize_samples
from tests.support.calls import calling_engine, far_end_audio, played_seconds, says_then_hangs_up
from tests.support.streaming import kind, stream_client

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite is not installed")

SAID = "Can you send me the report by Friday afternoon"


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return real_decoder()


@pytest.fixture(scope="module")
def speech() -> Iterator[bytes]:
    yield far_end_audio(synthesize_samples(SAID, "slt"))


@pytest.mark.parametrize("transport", ["udp", "tcp"])
async def test_a_call_is_transcribed_live_and_hung_up_by_stop(
    tmp_path: Path, decoder: Decoder, speech: bytes, transport: str
) -> None:
    async with (
        SipPeer(PeerBehaviour(audio=speech, codec="PCMA" if transport == "tcp" else "PCMU")) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        began = time.monotonic()
        body = await engine.start(peer.uri(transport))  # type: ignore[arg-type]
        async with stream_client(engine.host, body["connectionId"], engine.token, path="/v1/subscribe") as listener:
            await peer.wait(peer.answered)
            set_up_seconds = time.monotonic() - began
            final = await listener.until(lambda f: kind(f) == "message_response")
            assert final["messages"][0]["payload"]["content"] == f"{SAID}?"
            stopped = await engine.http.post(
                "/v1/endpoint:connect", json={"operation": "stop", "connectionId": body["connectionId"]}
            )
            assert stopped.status_code == 200
            await peer.wait(peer.bye_received)
            ended = await listener.until(lambda f: kind(f) == "call_ended")
            assert ended["message"]["data"]["cause"] == "local_hangup"
            await listener.until(lambda f: kind(f) == "conversation_completed")
        job = await engine.job(body["jobId"])
        assert job["status"] == "completed"
        assert await engine.messages(body["conversationId"]) == [f"{SAID}?"]
        assert set_up_seconds < 5  # loopback; the bounded wait, not a benchmark (benchmarks/telephony.md)


async def test_a_call_the_far_end_hangs_up_completes_with_what_was_said(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    seconds = played_seconds(speech)
    async with (
        SipPeer(says_then_hangs_up(speech)) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        body = await engine.start(peer.uri("udp"))
        job = await engine.job(body["jobId"], within=seconds + 30)
        assert job["status"] == "completed"
        assert await engine.messages(body["conversationId"]) == [f"{SAID}?"]
        assert not peer.bye_received.is_set()  # the far end hung up; the engine sent no BYE of its own


async def test_rtp_that_stops_without_a_bye_ends_the_call_and_the_engine_hangs_up(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    seconds = played_seconds(speech)
    async with (
        SipPeer(PeerBehaviour(audio=speech, stop_rtp_after_seconds=seconds)) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        body = await engine.start(peer.uri("udp"))
        async with stream_client(engine.host, body["connectionId"], engine.token, path="/v1/subscribe") as listener:
            ended = await listener.until(lambda f: kind(f) == "call_ended", within=seconds + 20)
            assert ended["message"]["data"]["cause"] == "rtp_timeout"
        await peer.wait(peer.bye_received)
        job = await engine.job(body["jobId"])
        assert job["status"] == "completed"
        assert await engine.messages(body["conversationId"]) == [f"{SAID}?"]


@pytest.mark.parametrize(("status", "reason"), [(486, "Busy Here"), (404, "Not Found")])
async def test_a_refused_call_fails_its_job_with_the_far_ends_answer(
    tmp_path: Path, decoder: Decoder, status: int, reason: str
) -> None:
    async with (
        SipPeer(PeerBehaviour(answer_status=status, answer_reason=reason)) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        body = await engine.start(peer.uri("udp"))
        job = await engine.job(body["jobId"])
        assert job["status"] == "failed"
        assert f"{status} {reason}" in job["reason"]
        # A subscriber arriving after the end is closed at once, not left waiting.
        async with stream_client(engine.host, body["connectionId"], engine.token, path="/v1/subscribe") as late:
            assert (await late.closed(within=5))[0] == 1000


async def test_a_call_nobody_answers_is_cancelled_and_fails(tmp_path: Path, decoder: Decoder) -> None:
    async with (
        SipPeer(PeerBehaviour(answer_status=None)) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        body = await engine.start(peer.uri("udp"))
        job = await engine.job(body["jobId"])
        assert job["status"] == "failed"
        assert "sip:bob@" in job["reason"]
        await peer.wait(peer.cancel_received)


async def test_a_phone_number_goes_through_the_trunk_with_digest_auth_and_dtmf(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    behaviour = PeerBehaviour(audio=speech, username="trunk-user", password="trunk-secret", algorithm="SHA-256")
    async with (
        SipPeer(behaviour) as peer,
        calling_engine(
            tmp_path,
            decoder,
            sip_trunk_uri=f"sip:{peer.host}:{peer.port};transport=tcp",
            sip_trunk_username="trunk-user",
            sip_trunk_password="trunk-secret",
        ) as engine,
    ):
        started = await engine.http.post(
            "/v1/endpoint:connect",
            json={"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "14082924837", "dtmf": "1#"}},
        )
        assert started.status_code == 201, started.text
        assert await peer.wait_for_dtmf(2) == ["1", "#"]
        assert "14082924837@" in str(peer.invites[-1].uri)
        await engine.http.post(
            "/v1/endpoint:connect", json={"operation": "stop", "connectionId": started.json()["connectionId"]}
        )
        assert (await engine.job(started.json()["jobId"]))["status"] == "completed"


async def test_parley_call_prints_the_live_transcript_until_the_far_end_hangs_up(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    from typer.testing import CliRunner

    from parley_cli.main import app

    async with (
        SipPeer(says_then_hangs_up(speech)) as peer,
        calling_engine(tmp_path, decoder) as engine,
    ):
        arguments = ["call", peer.uri("udp"), "--url", f"http://{engine.host}", "--token", engine.token]
        # The command runs its own event loop: on a thread, beside the engine and the far end on this one.
        result = await asyncio.to_thread(CliRunner().invoke, app, arguments)
    assert result.exit_code == 0, result.output
    assert f"Speaker 1: {SAID}?" in result.output
    assert "call ended: the far end hung up" in result.output
