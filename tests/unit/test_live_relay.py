"""ingest's Streaming API relay over real sockets: a WebSocket client, ingest's routes under uvicorn, and a scripted
provider speaking Symbl's frames. What is recognised lands on the live topic in order, and the stream's job on the
jobs topic when it ends, whichever side ends it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
import websockets
from fastapi import FastAPI
from parley_ingest.live import LiveStreamRecorder, is_stop_request, with_pipeline_options
from parley_ingest.live_api import LiveRelaySettings, build_live_router
from parley_shared.events import (
    JobKind,
    JobSubmitted,
    LiveInsights,
    LiveMessages,
    LiveStreamEnded,
    LiveStreamEvent,
    LiveStreamStarted,
)
from parley_shared.kafka.hops import Outputs, Stream
from parley_shared.service import Emitter
from pydantic import TypeAdapter
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosedError, InvalidStatus

from tests.support.kafka_fakes import Publication, RecordingPublisher
from tests.support.scripted_streaming import ScriptedProvider, echo_offered, message_response, refusing, wrapped
from tests.support.servers import serving_asgi, serving_websocket

LIVE, JOBS = "parley.live", "parley.jobs"
WEBHOOK = "http://127.0.0.1:8702/webhooks/jobs"
TOKEN = "stream-token"
live_events: TypeAdapter[Any] = TypeAdapter(LiveStreamEvent)


def committed_events(publisher: RecordingPublisher) -> list[Any]:
    """The events the relay committed, in order, read back from their records."""
    return [
        live_events.validate_json(r.value) if r.topic == LIVE else JobSubmitted.model_validate_json(r.value)
        for r in publisher.records
    ]


@dataclass
class Relay:
    url: str
    provider: ScriptedProvider
    publisher: RecordingPublisher
    ended: asyncio.Event

    def events(self) -> list[Any]:
        return committed_events(self.publisher)


@pytest.fixture
async def relay(request: pytest.FixtureRequest) -> AsyncIterator[Relay]:
    provider = ScriptedProvider(**getattr(request, "param", {}))
    ended = asyncio.Event()

    def note_the_end(publication: Publication) -> None:
        if any(r.topic == JOBS or b'"LiveStreamEnded"' in r.value for r in publication.records):
            ended.set()

    publisher = RecordingPublisher(on_publish=note_the_end)
    outputs = Outputs((Stream(LIVE, LiveStreamEvent, "live"), Stream[JobSubmitted](JOBS, JobSubmitted, "jobs")))
    async with serving_websocket(provider, select_subprotocol=echo_offered) as (provider_ws, _):
        settings = LiveRelaySettings(
            provider_url=provider_ws.replace("ws://", "http://"), webhook_url=WEBHOOK, stop_timeout_seconds=5
        )
        app = FastAPI()
        app.include_router(build_live_router(settings, Emitter(outputs, publisher).publish))
        async with serving_asgi(app) as base:
            yield Relay(base.replace("http://", "ws://"), provider, publisher, ended)


START = json.dumps(
    {"type": "start_request", "insightTypes": ["question"], "speaker": {"userId": "a@x.io", "name": "Ana"}}
)


async def start_with_one_answered_frame(client: Any) -> None:
    """start_request, its three start frames, one audio frame and its two answers (message and insight)."""
    await client.send(START)
    for _ in range(3):
        await client.recv()
    await client.send(b"\x00" * 1024)
    await client.recv()
    await client.recv()


async def stream_ends(relay: Relay) -> None:
    """Until the stream's end is committed (the last thing the relay publishes)."""
    async with asyncio.timeout(10):
        await relay.ended.wait()


async def test_a_stream_is_relayed_both_ways_and_recorded_in_order(relay: Relay) -> None:
    url = f"{relay.url}/v1/realtime/insights/conn-1?source=python_sdk"
    headers = {"x-api-key": TOKEN, "Authorization": f"Bearer {TOKEN}"}
    async with websockets.connect(url, additional_headers=headers) as client:
        await client.send(START)
        first = [json.loads(await client.recv()) for _ in range(3)]
        for _ in range(2):
            await client.send(b"\x00\x01" * 512)
        seen = [json.loads(await client.recv()) for _ in range(4)]
        await client.send("{'type': 'stop_request'}")  # the Python SDK's stop, as it sends it
        last = [json.loads(frame) async for frame in client]
        assert client.close_code == 1000
    await stream_ends(relay)

    assert [f["message"]["type"] for f in first] == ["conversation_created", "started_listening", "recognition_started"]
    assert [f["type"] for f in seen] == ["message_response", "insight_response"] * 2
    assert [f["message"]["type"] for f in last] == ["conversation_completed", "recognition_stopped"]
    # The provider got the client's token, path and query, and the start_request with ingest's webhook added.
    [handshake] = relay.provider.handshakes
    assert handshake["path"] == "/v1/realtime/insights/conn-1?source=python_sdk"
    assert handshake["x-api-key"] == TOKEN
    assert handshake["authorization"] == f"Bearer {TOKEN}"  # as ingest received it (lower-cased by the ASGI server)
    start = json.loads(relay.provider.received[0])
    assert start["webhookUrl"] == WEBHOOK and start["speaker"] == {"userId": "a@x.io", "name": "Ana"}
    assert relay.provider.received[1:3] == [b"\x00\x01" * 512] * 2

    events = relay.events()
    assert [type(e).__name__ for e in events] == [
        "LiveStreamStarted",
        "LiveMessages",
        "LiveInsights",
        "LiveMessages",
        "LiveInsights",
        "LiveStreamEnded",
        "JobSubmitted",
    ]
    live = [e for e in events if not isinstance(e, JobSubmitted)]
    assert [e.sequence for e in live] == list(range(6))
    assert {e.conversation_id for e in events} == {"5815"}
    assert {e.connection_id for e in live} == {"conn-1"}
    assert isinstance(events[0], LiveStreamStarted) and events[0].speaker == {"userId": "a@x.io", "name": "Ana"}
    assert isinstance(events[1], LiveMessages) and events[1].messages[0]["payload"]["content"] == "sentence 1"
    assert isinstance(events[2], LiveInsights) and events[2].insights[0]["type"] == "question"
    ended, submitted = events[-2:]
    assert isinstance(ended, LiveStreamEnded) and (ended.reason, ended.job_id) == ("stopped", "job-1")
    assert isinstance(submitted, JobSubmitted)
    assert (submitted.job_id, submitted.kind, submitted.webhook_url) == ("job-1", JobKind.STREAM, WEBHOOK)
    # The end of the stream and its job are committed together; keys keep one conversation on one partition.
    assert [r.topic for r in relay.publisher.publications[-1].records] == [LIVE, JOBS]
    assert {r.key for r in relay.publisher.records} == {b"5815"}


async def test_the_offered_subprotocol_and_query_token_reach_the_provider_and_the_echo_comes_back(
    relay: Relay,
) -> None:
    url = f"{relay.url}/v1/streaming/conn-2?access_token={TOKEN}"
    async with websockets.connect(url, subprotocols=[websockets.Subprotocol(TOKEN)]) as client:
        assert client.subprotocol == TOKEN
        await client.send("__PING__")
    [handshake] = relay.provider.handshakes
    assert handshake["path"] == f"/v1/streaming/conn-2?access_token={TOKEN}"
    assert handshake["Sec-WebSocket-Protocol"] == TOKEN


async def test_a_client_that_leaves_without_stopping_is_stopped_on_its_behalf(relay: Relay) -> None:
    async with websockets.connect(f"{relay.url}/v1/streaming/conn-3") as client:
        await start_with_one_answered_frame(client)
    # The client is gone; the relay asks the provider to finish, so what it recognised is kept.
    await stream_ends(relay)
    assert relay.provider.stopped.is_set()
    events = relay.events()
    ended = next(e for e in events if isinstance(e, LiveStreamEnded))
    assert ended.reason == "client_disconnected"
    assert [type(e).__name__ for e in events][-2:] == ["LiveStreamEnded", "JobSubmitted"]
    assert sum(isinstance(e, LiveMessages) for e in events) == 1


@pytest.mark.parametrize("relay", [{"hang_up_after_audio": 2}], indirect=True)
async def test_a_provider_that_drops_the_stream_ends_it_with_an_error_frame_and_keeps_its_job(relay: Relay) -> None:
    async with websockets.connect(f"{relay.url}/v1/streaming/conn-4") as client:
        await start_with_one_answered_frame(client)
        await client.send(b"\x00" * 1024)
        frames = []
        with pytest.raises(ConnectionClosedError):  # a close other than 1000 is an error to the client
            while True:
                frames.append(json.loads(await client.recv()))
        assert client.close_code == 1011
    assert frames[-1]["type"] == "error" and frames[-1]["message"] == "provider_disconnected"
    await stream_ends(relay)
    events = relay.events()
    ended = next(e for e in events if isinstance(e, LiveStreamEnded))
    assert (ended.reason, ended.job_id) == ("provider_disconnected", "job-1")
    assert isinstance(events[-1], JobSubmitted)


async def test_a_refused_handshake_is_refused_to_the_client_with_the_providers_status() -> None:
    provider = ScriptedProvider()
    publisher = RecordingPublisher()
    async with serving_websocket(provider, process_request=refusing(401)) as (provider_ws, _):
        settings = LiveRelaySettings(provider_url=provider_ws.replace("ws://", "http://"), webhook_url=None)
        app = FastAPI()
        app.include_router(build_live_router(settings, Emitter(Outputs(()), publisher).publish))
        async with serving_asgi(app) as base:
            with pytest.raises(InvalidStatus) as refused:
                await websockets.connect(base.replace("http://", "ws://") + "/v1/streaming/conn-5")
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body or b"{}") == {
        "message": "Token validation failed for provided token."
    }
    assert publisher.publications == []


async def test_an_unreachable_provider_is_a_502_with_a_json_body() -> None:
    settings = LiveRelaySettings(provider_url="http://127.0.0.1:9", webhook_url=None)
    app = FastAPI()
    app.include_router(build_live_router(settings, Emitter(Outputs(()), RecordingPublisher()).publish))
    async with serving_asgi(app) as base:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(base.replace("http://", "ws://") + "/v1/streaming/conn-6")
    assert refused.value.response.status_code == 502
    assert "unreachable" in json.loads(refused.value.response.body or b"{}")["message"]


async def test_a_publish_that_fails_is_retried_in_order_and_nothing_is_lost() -> None:
    publisher = RecordingPublisher(failures=[ConnectionError("the broker is unreachable")] * 3)
    delays: list[float] = []

    async def no_wait(seconds: float) -> None:
        delays.append(seconds)

    outputs = Outputs((Stream(LIVE, LiveStreamEvent, "live"), Stream[JobSubmitted](JOBS, JobSubmitted, "jobs")))
    recorder = LiveStreamRecorder("conn-7", Emitter(outputs, publisher).publish, webhook_url=None, sleep=no_wait)
    recorder.start()
    recorder.provider_sent(wrapped("conversation_created", data={"conversationId": "77", "jobId": "job-7"}))
    recorder.provider_sent(message_response("one"))
    recorder.provider_sent(message_response("two"))
    await recorder.finish("stopped")

    assert len(delays) == 3
    kinds = [type(e).__name__ for e in committed_events(publisher)]
    assert kinds == ["LiveStreamStarted", "LiveMessages", "LiveMessages", "LiveStreamEnded", "JobSubmitted"]
    assert [r.topic for r in publisher.records] == [LIVE, LIVE, LIVE, LIVE, JOBS]


def test_only_a_start_request_without_a_webhook_gets_ingests() -> None:
    assert json.loads(with_pipeline_options(START, WEBHOOK))["webhookUrl"] == WEBHOOK
    own = json.dumps({"type": "start_request", "webhookUrl": "http://mine.example/hook"})
    assert with_pipeline_options(own, WEBHOOK) == own
    assert with_pipeline_options('{"type": "stop_request"}', WEBHOOK) == '{"type": "stop_request"}'
    assert with_pipeline_options("__PING__", WEBHOOK) == "__PING__"
    assert with_pipeline_options(START, None) == START


def test_every_stop_spelling_is_a_stop() -> None:
    for text in ('{"type":"stop_request"}', "{'type': 'stop_request'}", '{"type": "stop_recognition"}'):
        assert is_stop_request(text), text
    assert not is_stop_request(START)
    assert not is_stop_request("__PING__")


@dataclass
class RefusingStart(ScriptedProvider):
    """Refuses every start_request the way the engine does: an error frame, then close 1008."""

    async def __call__(self, connection: ServerConnection) -> None:
        async for frame in connection:
            self.received.append(frame)
            await connection.send(json.dumps({"type": "error", "message": "invalid_start_request", "details": "x"}))
            await connection.close(1008, "invalid start_request")
            return


async def test_a_providers_deliberate_close_code_and_error_frame_reach_the_client() -> None:
    provider = RefusingStart()
    publisher = RecordingPublisher()
    async with serving_websocket(provider) as (provider_ws, _):
        settings = LiveRelaySettings(provider_url=provider_ws.replace("ws://", "http://"), webhook_url=None)
        app = FastAPI()
        app.include_router(build_live_router(settings, Emitter(Outputs(()), publisher).publish))
        async with (
            serving_asgi(app) as base,
            websockets.connect(base.replace("http://", "ws://") + "/v1/streaming/conn-9") as client,
        ):
            await client.send('{"type": "start_request", "config": {"speechRecognition": {"encoding": "FLAC"}}}')
            frames = []
            with pytest.raises(ConnectionClosedError):
                while True:
                    frames.append(json.loads(await client.recv()))
    assert client.close_code == 1008
    assert frames == [{"type": "error", "message": "invalid_start_request", "details": "x"}]
    assert publisher.publications == []  # no conversation was created: nothing to record


async def test_a_provider_frame_the_events_cannot_hold_is_passed_over_not_fatal() -> None:
    publisher = RecordingPublisher()
    outputs = Outputs((Stream(LIVE, LiveStreamEvent, "live"), Stream[JobSubmitted](JOBS, JobSubmitted, "jobs")))
    recorder = LiveStreamRecorder("conn-10", Emitter(outputs, publisher).publish, webhook_url=None)
    recorder.start()
    recorder.provider_sent(wrapped("conversation_created", data={"conversationId": "not an id!"}))
    recorder.provider_sent(wrapped("conversation_created", data={"conversationId": "10", "jobId": "job-10"}))
    recorder.provider_sent(json.dumps({"type": "message_response", "messages": ["not a message object"]}))
    recorder.provider_sent(message_response("kept"))
    await recorder.finish("stopped")

    kinds = [type(e).__name__ for e in committed_events(publisher)]
    assert kinds == ["LiveStreamStarted", "LiveMessages", "LiveStreamEnded", "JobSubmitted"]
    assert recorder.conversation_id == "10"


def test_the_pipelines_redaction_replaces_the_clients_in_the_start_request() -> None:
    policy = {"enabled": True, "substitution": "hash"}
    own = json.dumps({"type": "start_request", "redaction": {"enabled": False}})
    assert json.loads(with_pipeline_options(own, None, policy))["redaction"] == policy
    both = json.loads(with_pipeline_options(START, WEBHOOK, policy))
    assert both["redaction"] == policy and both["webhookUrl"] == WEBHOOK
    assert with_pipeline_options('{"type": "stop_request"}', WEBHOOK, policy) == '{"type": "stop_request"}'
