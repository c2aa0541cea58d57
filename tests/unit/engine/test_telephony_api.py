"""The Telephony API (``POST /v1/endpoint:connect``) over a scripted SIP dialer: the engine on uvicorn at a loopback
port, the real Whisper decoder and Silero VAD on flite speech, the real store, runner and webhooks.

The dialer stands in for the SIP user agent (``parley_engine.telephony.sip``, tested against a real SIP peer in
``test_sip_user_agent.py`` and end to end in ``test_telephony_calls.py``): it answers, refuses or never answers as
scripted, and plays G.711 µ-law payloads as a call's RTP would carry them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import numpy.typing as npt
import pytest
from parley_engine.app import create_app
from parley_engine.settings import EngineSettings
from parley_engine.streaming.workers import Decoder, real_decoder
from parley_engine.telephony.ports import CallAudio, CallEnd, CallFailed, DialRequest, SipCall

from parley_devtools.speech_samples import flite_available, synthesize_samples
from tests.support.engine import FakeAnalyzer, FakeRecognizer, engine_settings
from tests.support.streaming import kind, serve_app, stream_client

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite is not installed")

SAID = "Can you send me the report by Friday afternoon"
PACKET_BYTES = 160  # 20 ms of 8-kHz G.711


def mulaw(samples: npt.NDArray[np.float32], source_rate: int = 16000) -> bytes:
    """float32 speech as 8-kHz G.711 µ-law (the encoder of ITU-T G.711, in numpy)."""
    positions = np.arange(int(samples.size * 8000 / source_rate)) * source_rate / 8000
    pcm = np.interp(positions, np.arange(samples.size), samples)
    linear = (np.clip(pcm, -1, 1) * 32767).astype(np.int32)
    sign = np.where(linear < 0, 0x80, 0)
    magnitude = np.minimum(np.abs(linear), 32635) + 0x84
    exponent = np.floor(np.log2(magnitude)).astype(np.int32) - 7
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    return bytes((~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8).tobytes())


def opus_packets(samples: npt.NDArray[np.float32], source_rate: int = 16000) -> list[bytes]:
    """float32 speech as 20-ms Opus packets at 48 kHz, as a call's RTP carries them (libopus, through PyAV)."""
    at_48k = np.interp(
        np.arange(samples.size * 48000 // source_rate) * source_rate / 48000, np.arange(samples.size), samples
    )
    pcm = (np.clip(at_48k, -1, 1) * 32767).astype(np.int16)
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.AudioCodecContext)
    encoder.sample_rate, encoder.layout, encoder.format, encoder.bit_rate = 48000, "mono", "s16", 32000
    packets: list[bytes] = []
    for start in range(0, pcm.size - 960 + 1, 960):
        frame = av.AudioFrame.from_ndarray(pcm[np.newaxis, start : start + 960], format="s16", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        packets += [bytes(packet) for packet in encoder.encode(frame)]
    return packets + [bytes(packet) for packet in encoder.encode(None)]


@dataclass
class ScriptedCall(SipCall):
    payloads: list[bytes]
    end: CallEnd = field(default_factory=lambda: CallEnd("remote_hangup", "the far end hung up"))
    hung_up: asyncio.Event = field(default_factory=asyncio.Event)
    dtmf: list[str] = field(default_factory=list)
    dtmf_sent: asyncio.Event = field(default_factory=asyncio.Event)
    hold_open: bool = False  # after the audio, wait for hang_up (as a call whose far end keeps listening)
    codec: CallAudio = field(default_factory=lambda: CallAudio("MULAW", 8000))

    @property
    def audio_format(self) -> CallAudio:
        return self.codec

    async def audio(self) -> AsyncIterator[bytes]:
        for payload in self.payloads:
            if self.hung_up.is_set():
                return
            yield payload
            await asyncio.sleep(0)
        if self.hold_open:
            await self.hung_up.wait()
            self.end = CallEnd("local_hangup", "stopped")

    async def send_dtmf(self, digits: str) -> None:
        self.dtmf.append(digits)
        self.dtmf_sent.set()

    async def hang_up(self) -> None:
        self.hung_up.set()

    async def ended(self) -> CallEnd:
        return self.end


@dataclass
class ScriptedDialer:
    """Answers each dial with the next scripted outcome: a ``ScriptedCall``, a ``CallFailed``, or None (rings on)."""

    outcomes: list[ScriptedCall | Exception | None] = field(default_factory=list)
    dialed: list[DialRequest] = field(default_factory=list)
    cancelled: int = 0
    closed: bool = False

    async def dial(self, request: DialRequest) -> SipCall:
        self.dialed.append(request)
        outcome = self.outcomes.pop(0)
        if outcome is None:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled += 1
                raise
        if isinstance(outcome, Exception):
            raise outcome
        assert outcome is not None
        return outcome

    async def close(self) -> None:
        self.closed = True


@dataclass
class Engine:
    host: str
    http: httpx.AsyncClient
    token: str
    dialer: ScriptedDialer

    async def connect(self, body: dict[str, Any]) -> httpx.Response:
        return await self.http.post("/v1/endpoint:connect", json=body)

    async def job(self, job_id: str) -> dict[str, Any]:
        """The job once it has finished (bounded)."""
        async with asyncio.timeout(30):
            while True:
                body: dict[str, Any] = (await self.http.get(f"/v1/job/{job_id}")).json()
                if body["status"] in ("completed", "failed"):
                    return body
                await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return real_decoder()


@pytest.fixture(scope="module")
def speech() -> Iterator[bytes]:
    yield mulaw(synthesize_samples(SAID, "slt")) + mulaw(np.zeros(16000, np.float32))


@asynccontextmanager
async def telephony_engine(
    tmp_path: Path, decoder: Decoder, dialer: ScriptedDialer, **overrides: Any
) -> AsyncIterator[Engine]:
    settings: EngineSettings = engine_settings(tmp_path, **overrides)
    app = create_app(
        settings,
        analyzer_factory=FakeAnalyzer,
        recognizer_factory=FakeRecognizer,
        decoder_factory=lambda: decoder,
        dialer_factory=lambda _: dialer,
    )
    async with serve_app(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        credentials = {"type": "application", "appId": "test-app", "appSecret": "test-secret"}
        token = (await http.post("/oauth2/token:generate", json=credentials)).json()["accessToken"]
        http.headers["x-api-key"] = token
        yield Engine(host, http, token, dialer)


def sip_start(uri: str = "sip:support@127.0.0.1:5099", **fields: Any) -> dict[str, Any]:
    return {"operation": "start", "endpoint": {"type": "sip", "uri": uri}, **fields}


def packets(audio: bytes) -> list[bytes]:
    return [audio[i : i + PACKET_BYTES] for i in range(0, len(audio), PACKET_BYTES)]


# ---- a call, live and afterwards ----------------------------------------------------------------------------------


async def test_an_answered_call_is_heard_live_and_becomes_a_conversation(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    call = ScriptedCall(packets(speech), hold_open=True)
    async with telephony_engine(tmp_path, decoder, ScriptedDialer([call])) as engine:
        started = await engine.connect(sip_start(data={"session": {"name": "Support line"}}, pushSpeakerEvents=True))
        assert started.status_code == 201, started.text
        body = started.json()
        assert set(body) == {"eventUrl", "resultWebSocketUrl", "connectionId", "conversationId", "jobId"}
        connection_id = body["connectionId"]
        assert body["resultWebSocketUrl"] == f"ws://{engine.host}/v1/subscribe/{connection_id}"
        assert body["eventUrl"] == f"http://{engine.host}/v1/event/{connection_id}"
        [dialed] = engine.dialer.dialed
        assert (dialed.uri, dialed.host_address, dialed.port, dialed.transport) == (
            "sip:support@127.0.0.1:5099",
            "127.0.0.1",
            5099,
            "udp",
        )

        pushed = await engine.http.post(
            f"/v1/event/{connection_id}",
            json={"type": "started_speaking", "user": {"userId": "jane@example.com", "name": "Jane"}},
        )
        assert pushed.status_code == 202, pushed.text
        async with stream_client(engine.host, connection_id, engine.token, path="/v1/subscribe") as listener:
            final = await listener.until(lambda f: kind(f) == "message_response")
            assert final["messages"][0]["payload"]["content"] == f"{SAID}?"
            assert final["messages"][0]["from"]["name"] == "Jane"
            stopped = await engine.connect({"operation": "stop", "connectionId": connection_id})
            assert stopped.status_code == 200, stopped.text
            assert stopped.json()["conversationId"] == body["conversationId"]
            ended = await listener.until(lambda f: kind(f) == "call_ended")
            assert ended["message"]["data"]["cause"] == "local_hangup"
            await listener.until(lambda f: kind(f) == "conversation_completed")
            assert (await listener.closed())[0] == 1000
        assert call.hung_up.is_set()

        job = await engine.job(body["jobId"])
        assert job["status"] == "completed"
        messages = (await engine.http.get(f"/v1/conversations/{body['conversationId']}/messages")).json()["messages"]
        assert [(m["text"], m["from"]["name"]) for m in messages] == [(f"{SAID}?", "Jane")]
        conversation = (await engine.http.get(f"/v1/conversations/{body['conversationId']}")).json()
        assert conversation["name"] == "Support line"


async def test_a_call_the_far_end_hangs_up_completes_its_job(tmp_path: Path, decoder: Decoder, speech: bytes) -> None:
    call = ScriptedCall(packets(speech))
    async with telephony_engine(tmp_path, decoder, ScriptedDialer([call])) as engine:
        body = (await engine.connect(sip_start())).json()
        job = await engine.job(body["jobId"])
        assert job["status"] == "completed"
        messages = (await engine.http.get(f"/v1/conversations/{body['conversationId']}/messages")).json()["messages"]
        assert [m["text"] for m in messages] == [f"{SAID}?"]
        stop = await engine.connect({"operation": "stop", "connectionId": body["connectionId"]})
        assert stop.status_code == 404  # over already
        assert "no call" in stop.json()["message"]


async def test_a_call_that_chose_opus_is_decoded_as_opus(tmp_path: Path, decoder: Decoder) -> None:
    samples = synthesize_samples(SAID, "slt")
    call = ScriptedCall(
        opus_packets(np.concatenate([samples, np.zeros(16000, np.float32)])), codec=CallAudio("OPUS", 48000)
    )
    async with telephony_engine(tmp_path, decoder, ScriptedDialer([call])) as engine:
        body = (
            await engine.connect(
                sip_start(
                    endpoint={
                        "type": "sip",
                        "uri": "sip:a@127.0.0.1",
                        "audioConfig": {"encoding": "OPUS", "sampleRate": 48000},
                    }
                )
            )
        ).json()
        assert (await engine.job(body["jobId"]))["status"] == "completed"
        messages = (await engine.http.get(f"/v1/conversations/{body['conversationId']}/messages")).json()["messages"]
        assert [m["text"] for m in messages] == [f"{SAID}?"]
    assert engine.dialer.dialed[0].codecs[0] == "opus"  # the endpoint's audioConfig comes first in the offer


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (CallFailed("486 Busy Here", status=486), "486 Busy Here"),
        (CallFailed("404 Not Found", status=404), "404 Not Found"),
        (CallFailed("no answer within 60 s", timed_out=True), "no answer within 60 s"),
        (OSError("no free UDP port"), "could not be placed: no free UDP port"),
    ],
)
async def test_a_call_never_answered_fails_its_job_with_the_reason(
    tmp_path: Path, decoder: Decoder, failure: Exception, expected: str
) -> None:
    async with telephony_engine(tmp_path, decoder, ScriptedDialer([failure])) as engine:
        body = (await engine.connect(sip_start())).json()
        job = await engine.job(body["jobId"])
        assert job["status"] == "failed"
        assert expected in job["reason"] and "sip:support@127.0.0.1:5099" in job["reason"]


async def test_a_call_stopped_while_ringing_is_cancelled_and_its_job_fails(tmp_path: Path, decoder: Decoder) -> None:
    dialer = ScriptedDialer([None])
    async with telephony_engine(tmp_path, decoder, dialer) as engine:
        body = (await engine.connect(sip_start())).json()
        assert (await engine.connect({"operation": "stop", "connectionId": body["connectionId"]})).status_code == 200
        job = await engine.job(body["jobId"])
        assert job["status"] == "failed"
        assert "stopped before the far end answered" in job["reason"]
        assert dialer.cancelled == 1
    assert dialer.closed


async def test_dtmf_digits_go_to_a_pstn_call_through_the_trunk(tmp_path: Path, decoder: Decoder) -> None:
    call = ScriptedCall([], hold_open=True)
    dialer = ScriptedDialer([call])
    async with telephony_engine(
        tmp_path,
        decoder,
        dialer,
        sip_trunk_uri="sip:gateway.test:5080;transport=tcp",
        sip_trunk_username="trunk-user",
        sip_trunk_password="trunk-secret",
    ) as engine:
        # gateway.test does not resolve here: the trunk host is checked like any endpoint's.
        refused = await engine.connect(
            {"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "14082924837", "dtmf": ",,123#"}}
        )
        assert refused.status_code == 400
        assert "could not be resolved" in refused.json()["message"]
    async with telephony_engine(
        tmp_path,
        decoder,
        dialer,
        sip_trunk_uri="sip:127.0.0.1:5080;transport=tcp",
        sip_trunk_username="trunk-user",
        sip_trunk_password="trunk-secret",
    ) as engine:
        started = await engine.connect(
            {"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "14082924837", "dtmf": ",,123#"}}
        )
        assert started.status_code == 201, started.text
        async with asyncio.timeout(10):
            await call.dtmf_sent.wait()
        await engine.connect({"operation": "stop", "connectionId": started.json()["connectionId"]})
        await engine.job(started.json()["jobId"])
    dialed = dialer.dialed[-1]
    assert (dialed.uri, dialed.transport, dialed.port) == ("sip:14082924837@127.0.0.1:5080;transport=tcp", "tcp", 5080)
    assert dialed.credentials is not None and dialed.credentials.username == "trunk-user"
    assert call.dtmf == [",,123#"]


# ---- bad input and limits ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"operation": "dial"}, "operation: must be 'start' or 'stop'"),
        ({"operation": "start"}, "endpoint"),
        ({"operation": "start", "endpoint": {"type": "sip", "uri": "http://example.com"}}, "is not a SIP URI"),
        ({"operation": "start", "endpoint": {"type": "sip", "uri": "sips:a@example.com"}}, "TLS"),
        ({"operation": "start", "endpoint": {"type": "sip", "uri": "sip:a@example.com;transport=sctp"}}, "sctp"),
        ({"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "+1 408 292"}}, "E.164"),
        ({"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "14082924837", "dtmf": "12x"}}, "dtmf"),
        ({"operation": "start", "endpoint": {"type": "fax", "uri": "x"}}, "endpoint"),
        (sip_start(languages=["fr-FR"]), "English only"),
        (sip_start(timezone="Mars/Olympus"), "unknown timezone"),
        (sip_start(insightTypes=["gossip"]), "unknown insightTypes"),
        (
            sip_start(actions=[{"invokeOn": "stop", "name": "sendSummaryEmail", "parameters": {"emails": ["a@b.c"]}}]),
            "sends no e-mail",
        ),
        ({"operation": "stop"}, "connectionId"),
        (sip_start("sip:support@127.0.0.1:5099", webhookUrl="ftp://example.com/hook"), "webhookUrl"),
    ],
)
async def test_bad_requests_get_a_400_that_says_what_is_wrong(
    tmp_path: Path, decoder: Decoder, body: dict[str, Any], says: str
) -> None:
    async with telephony_engine(tmp_path, decoder, ScriptedDialer()) as engine:
        response = await engine.connect(body)
        assert response.status_code == 400, response.text
        assert says in response.json()["message"]
        assert engine.dialer.dialed == []


async def test_not_json_unauthorized_unknown_stops_and_events_are_refused(tmp_path: Path, decoder: Decoder) -> None:
    async with telephony_engine(tmp_path, decoder, ScriptedDialer()) as engine:
        not_json = await engine.http.post(
            "/v1/endpoint:connect", content=b"{oops", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
        anonymous = await httpx.AsyncClient(base_url=f"http://{engine.host}").post(
            "/v1/endpoint:connect", json=sip_start()
        )
        assert anonymous.status_code == 401
        unknown = await engine.connect({"operation": "stop", "connectionId": "no-such-call"})
        assert unknown.status_code == 404 and "no-such-call" in unknown.json()["message"]
        event = {"type": "started_speaking", "user": {"name": "Jane"}}
        assert (await engine.http.post("/v1/event/no-such-call", json=event)).status_code == 404
        wrong = await engine.http.post("/v1/event/no-such-call", json={"type": "shouted", "user": {"name": "Jane"}})
        assert wrong.status_code == 400


async def test_a_sip_host_in_the_engines_network_is_refused_unless_allowed(tmp_path: Path, decoder: Decoder) -> None:
    async with telephony_engine(tmp_path, decoder, ScriptedDialer(), allow_private_media_urls=False) as engine:
        for uri in ("sip:a@127.0.0.1", "sip:a@10.1.2.3:5060", "sip:a@localhost", "sip:a@[::1]:5070"):
            response = await engine.connect(sip_start(uri))
            assert response.status_code == 400, uri
            assert "PARLEY_ALLOW_PRIVATE_MEDIA_URLS" in response.json()["message"]
        assert engine.dialer.dialed == []


async def test_past_the_call_limit_a_call_is_refused_429(tmp_path: Path, decoder: Decoder) -> None:
    dialer = ScriptedDialer([None, None])
    async with telephony_engine(tmp_path, decoder, dialer, telephony_max_calls=1) as engine:
        first = await engine.connect(sip_start())
        assert first.status_code == 201
        second = await engine.connect(sip_start())
        assert second.status_code == 429
        assert "at most 1 calls" in second.json()["message"]
        await engine.connect({"operation": "stop", "connectionId": first.json()["connectionId"]})
        await engine.job(first.json()["jobId"])
        third = await engine.connect(sip_start())
        assert third.status_code == 201
