"""ingest's Telephony API relay end to end: a call started through ingest is placed by a real engine (its own SIP
user agent, a real SIP far end on loopback playing speech), and what the engine recognises lands on the live topic
in order, then the call's job on the jobs topic, whichever way the call ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from parley_engine.streaming.workers import Decoder, real_decoder
from parley_ingest.calls_api import CallRelay, build_calls_router
from parley_ingest.live_api import LiveRelaySettings
from parley_shared.events import (
    JobKind,
    JobSubmitted,
    LiveMessages,
    LiveStreamEnded,
    LiveStreamEvent,
    LiveStreamStarted,
)
from parley_shared.http_errors import install_error_handlers
from parley_shared.kafka.hops import Outputs, Stream
from parley_shared.service import Emitter
from pydantic import TypeAdapter

from parley_devtools.sip_peer import PeerBehaviour, SipPeer
from parley_devtools.speech_samples import flite_available, synthesize_samples
from tests.support.calls import CallingEngine, calling_engine, far_end_audio, says_then_hangs_up
from tests.support.kafka_fakes import Publication, RecordingPublisher
from tests.support.servers import serving_asgi

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite is not installed")

LIVE, JOBS = "parley.live", "parley.jobs"
WEBHOOK = "http://127.0.0.1:8702/webhooks/jobs"
SAID = "I will send the contract to the customer tomorrow"
live_events: TypeAdapter[Any] = TypeAdapter(LiveStreamEvent)


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return real_decoder()


@pytest.fixture(scope="module")
def speech() -> Iterator[bytes]:
    yield far_end_audio(synthesize_samples(SAID, "rms"))


@dataclass
class Relay:
    url: str
    engine: CallingEngine
    publisher: RecordingPublisher
    ended: asyncio.Event

    async def connect(self, body: dict[str, Any]) -> httpx.Response:
        async with httpx.AsyncClient() as client:
            return await client.post(
                f"{self.url}/v1/endpoint:connect", json=body, headers={"x-api-key": self.engine.token}
            )

    def events(self) -> list[Any]:
        return [
            live_events.validate_json(r.value) if r.topic == LIVE else JobSubmitted.model_validate_json(r.value)
            for r in self.publisher.records
        ]


@asynccontextmanager
async def relay_to(engine: CallingEngine) -> AsyncIterator[Relay]:
    ended = asyncio.Event()

    def note_the_end(publication: Publication) -> None:
        if any(r.topic == JOBS for r in publication.records):
            ended.set()

    publisher = RecordingPublisher(on_publish=note_the_end)
    outputs = Outputs((Stream(LIVE, LiveStreamEvent, "live"), Stream[JobSubmitted](JOBS, JobSubmitted, "jobs")))
    settings = LiveRelaySettings(provider_url=f"http://{engine.host}", webhook_url=WEBHOOK)
    async with CallRelay(settings, Emitter(outputs, publisher).publish) as calls:
        app = FastAPI()
        install_error_handlers(app)
        app.include_router(build_calls_router(calls))
        async with serving_asgi(app) as base:
            yield Relay(base, engine, publisher, ended)


async def test_a_call_through_ingest_is_recorded_live_then_its_job_announced(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    async with (
        SipPeer(says_then_hangs_up(speech)) as peer,
        calling_engine(tmp_path, decoder) as engine,
        relay_to(engine) as relay,
    ):
        started = await relay.connect({"operation": "start", "endpoint": {"type": "sip", "uri": peer.uri("udp")}})
        assert started.status_code == 201, started.text
        body = started.json()
        async with asyncio.timeout(30):
            await relay.ended.wait()
        job = await engine.job(body["jobId"])
        assert job["status"] == "completed"

    events = relay.events()
    names = [type(e).__name__ for e in events]
    assert names[0] == "LiveStreamStarted" and names[-2:] == ["LiveStreamEnded", "JobSubmitted"]
    assert {e.conversation_id for e in events} == {body["conversationId"]}
    said = [m["payload"]["content"] for e in events if isinstance(e, LiveMessages) for m in e.messages]
    assert said == [f"{SAID}."]
    live = [e for e in events if not isinstance(e, JobSubmitted)]
    assert [e.sequence for e in live] == list(range(len(live)))
    assert isinstance(events[0], LiveStreamStarted) and events[0].connection_id == body["connectionId"]
    ended, submitted = events[-2:]
    assert isinstance(ended, LiveStreamEnded) and (ended.reason, ended.job_id) == ("stopped", body["jobId"])
    assert isinstance(submitted, JobSubmitted)
    assert (submitted.job_id, submitted.kind, submitted.webhook_url) == (body["jobId"], JobKind.STREAM, WEBHOOK)


async def test_a_refused_call_through_ingest_still_announces_its_failed_job(tmp_path: Path, decoder: Decoder) -> None:
    async with (
        SipPeer(PeerBehaviour(answer_status=486, answer_reason="Busy Here")) as peer,
        calling_engine(tmp_path, decoder) as engine,
        relay_to(engine) as relay,
    ):
        started = await relay.connect({"operation": "start", "endpoint": {"type": "sip", "uri": peer.uri("udp")}})
        assert started.status_code == 201, started.text
        async with asyncio.timeout(30):
            await relay.ended.wait()
        job = await engine.job(started.json()["jobId"])
        assert job["status"] == "failed" and "486 Busy Here" in job["reason"]
    names = [type(e).__name__ for e in relay.events()]
    assert names == ["LiveStreamStarted", "LiveStreamEnded", "JobSubmitted"]


async def test_stop_and_bad_input_are_relayed_and_an_unreachable_provider_is_a_502(
    tmp_path: Path, decoder: Decoder, speech: bytes
) -> None:
    async with (
        SipPeer(PeerBehaviour(audio=speech)) as peer,
        calling_engine(tmp_path, decoder) as engine,
        relay_to(engine) as relay,
    ):
        started = await relay.connect({"operation": "start", "endpoint": {"type": "sip", "uri": peer.uri("tcp")}})
        assert started.status_code == 201, started.text
        await peer.wait(peer.answered)
        stopped = await relay.connect({"operation": "stop", "connectionId": started.json()["connectionId"]})
        assert stopped.status_code == 200
        await peer.wait(peer.bye_received)
        async with asyncio.timeout(30):
            await relay.ended.wait()
        refused = await relay.connect({"operation": "start", "endpoint": {"type": "pstn", "phoneNumber": "1"}})
        assert refused.status_code == 400 and "E.164" in refused.json()["message"]
        async with httpx.AsyncClient() as client:
            not_json = await client.post(f"{relay.url}/v1/endpoint:connect", content=b"[")
        assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["message"]
    unreachable_engine = CallingEngine("127.0.0.1:9", engine.http, engine.token)
    async with relay_to(unreachable_engine) as relay:
        response = await relay.connect({"operation": "stop", "connectionId": "x"})
        assert response.status_code == 502 and "unreachable" in response.json()["message"]
