"""The Streaming API over a real WebSocket: the engine on uvicorn at a loopback port, the real Whisper decoder and
Silero VAD on flite speech, the fake analyzer (so live insights are predictable), the real store, runner and webhooks.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from aiohttp import web
from fastapi import FastAPI
from parley_engine.app import create_app
from parley_engine.dependencies import EngineComponents
from parley_engine.store import JobRow
from parley_engine.streaming.hub import Outbox, SlowReader, StreamHub, TooManyStreams
from parley_engine.streaming.workers import Decoder, real_decoder
from websockets.exceptions import InvalidStatus

from parley_devtools.speech_samples import flite_available, synthesize_samples
from tests.support.engine import FakeAnalyzer, FakeRecognizer, engine_settings, http_server
from tests.support.streaming import kind, pcm16, silence, start_request, stream_client

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite is not installed")

QUESTION = "Can you send me the report by Friday afternoon"
STATEMENT = "I will follow up with the vendor tomorrow"


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return real_decoder()


@pytest.fixture(scope="module")
def speech() -> Iterator[dict[str, np.ndarray]]:
    yield {"question": synthesize_samples(QUESTION, "slt"), "statement": synthesize_samples(STATEMENT, "rms")}


@dataclass
class Engine:
    host: str
    token: str
    http: httpx.AsyncClient
    analyzer: FakeAnalyzer
    app: FastAPI

    @property
    def components(self) -> EngineComponents:
        components: EngineComponents = self.app.state.components
        return components

    async def job(self, job_id: str, statuses: tuple[str, ...] = ("completed", "failed")) -> dict[str, Any]:
        async with asyncio.timeout(20):
            while True:
                body: dict[str, Any] = (await self.http.get(f"/v1/job/{job_id}")).json()
                if body["status"] in statuses:
                    return body
                await asyncio.sleep(0.02)


@asynccontextmanager
async def streaming_engine(tmp_path: Path, decoder: Decoder, **overrides: Any) -> AsyncIterator[Engine]:
    from tests.support.streaming import serve_app

    analyzer = FakeAnalyzer()
    settings = engine_settings(tmp_path, **overrides)
    app = create_app(
        settings, analyzer_factory=lambda: analyzer, recognizer_factory=FakeRecognizer, decoder_factory=lambda: decoder
    )
    async with serve_app(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        credentials = {"type": "application", "appId": "test-app", "appSecret": "test-secret"}
        token = (await http.post("/oauth2/token:generate", json=credentials)).json()["accessToken"]
        http.headers["x-api-key"] = token
        yield Engine(host, token, http, analyzer, app)


@dataclass
class Hooks:
    bodies: list[dict[str, Any]] = field(default_factory=list)
    completed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        self.bodies.append(body)
        if body["status"] == "completed":
            self.completed.set()
        return web.Response(status=200)


async def test_a_stream_is_answered_in_symbls_frames_and_order_and_becomes_a_conversation(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    hooks = Hooks()
    async with (
        http_server({"/hook": hooks.handle}) as hook_base,
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "c29tZS1pZA==", engine.token) as client,
    ):
        # 44.1 kHz, the Python SDK's default rate, resampled by the engine.
        await client.send_json(start_request(44100, webhookUrl=f"{hook_base}/hook"))
        await client.send_audio(pcm16(speech["question"], 44100) + silence(1.0, 44100))
        await client.send_audio(pcm16(speech["statement"], 44100) + silence(1.0, 44100))
        await client.until(lambda f: kind(f) == "message_response" and "vendor" in json.dumps(f))
        await client.send_text("{'type': 'stop_request'}")  # the Python SDK's stop frame, not JSON
        code, _ = await client.closed()

        assert code == 1000
        kinds = client.kinds()
        assert kinds[:3] == ["conversation_created", "started_listening", "recognition_started"]
        assert kinds[-2:] == ["conversation_completed", "recognition_stopped"]
        assert "recognition_result" in kinds and "insight_response" in kinds and "topic_response" in kinds
        frames = [f for f in client.received if isinstance(f, dict)]
        finals = [f["message"] for f in frames if kind(f) == "recognition_result" and f["message"]["isFinal"]]
        assert [f["punctuated"]["transcript"] for f in finals] == [f"{QUESTION}?", f"{STATEMENT}."]
        first_final = kinds.index("recognition_result", kinds.index("recognition_started"))
        assert kinds.index("message_response") > first_final
        messages = [m for f in frames if kind(f) == "message_response" for m in f["messages"]]
        assert messages[0]["from"]["userId"] == "natalia@example.com"
        insights = [i for f in frames if kind(f) == "insight_response" for i in f["insights"]]
        assert [(i["type"], i["payload"]["content"]) for i in insights] == [("question", f"{QUESTION}?")]
        assert insights[0]["messageReference"]["id"] == messages[0]["id"]

        conversation_id = frames[0]["message"]["data"]["conversationId"]
        completed = frames[-2]["message"]
        assert completed["conversationId"] == completed["data"]["conversationId"] == conversation_id
        assert (await engine.job(completed["jobId"]))["status"] == "completed"
        stored = (await engine.http.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
        assert [(m["id"], m["text"]) for m in stored] == [(m["id"], m["payload"]["content"]) for m in messages]
        questions = (await engine.http.get(f"/v1/conversations/{conversation_id}/questions")).json()["questions"]
        assert [q["text"] for q in questions] == [f"{QUESTION}?"]
        async with asyncio.timeout(10):
            await hooks.completed.wait()
        assert [b["status"] for b in hooks.bodies] == ["scheduled", "in_progress", "completed"]
        assert {b["conversationId"] for b in hooks.bodies} == {conversation_id}


async def test_the_streams_job_is_in_progress_from_the_start_and_each_final_sentence_is_stored_as_it_comes(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    # A lease this short would run out mid-stream (and the sweep schedule the job for analysis) unless renewed.
    lease = 0.6
    async with (
        streaming_engine(tmp_path, decoder, job_lease_seconds=lease) as engine,
        stream_client(engine.host, "held", engine.token) as client,
    ):
        jobs = engine.components.store.jobs
        await client.send_json(start_request())
        created = (await client.until_kind("conversation_created"))["message"]["data"]
        started = (await client.until_kind("recognition_started"))["message"]["data"]
        conversation_id, job_id = created["conversationId"], created["jobId"]
        assert started == created
        assert (await engine.http.get(f"/v1/job/{job_id}")).json() == {"id": job_id, "status": "in_progress"}

        first = await jobs.job(job_id)
        assert first is not None and first.lease_until is not None
        first_lease_until = first.lease_until

        async def renewed_twice_or_lost() -> JobRow:
            while True:
                row = await jobs.job(job_id)
                assert row is not None
                if row.claimed_by != first.claimed_by or row.lease_until is None:
                    return row
                if (row.lease_until - first_lease_until).total_seconds() >= 2 * lease:
                    return row
                await asyncio.sleep(0.05)

        async with asyncio.timeout(10):
            row = await renewed_twice_or_lost()
        # Past its first lease the stream still holds the job: renewed, not swept up by the job runner.
        assert (row.status, row.claimed_by, row.started_at) == ("in_progress", first.claimed_by, first.started_at)

        await client.send_audio(pcm16(speech["statement"]) + silence(1.0))
        response = await client.until_kind("message_response")
        stored = await engine.components.store.conversations.utterances(conversation_id)
        assert [(u.id, u.text) for u in stored] == [(m["id"], m["payload"]["content"]) for m in response["messages"]]
        assert (await engine.http.get(f"/v1/job/{job_id}")).json()["status"] == "in_progress"

        await client.send_json({"type": "stop_request"})
        assert (await client.closed())[0] == 1000
        completed = next(f for f in client.received if isinstance(f, dict) and kind(f) == "conversation_completed")
        assert completed["message"]["jobId"] == completed["message"]["data"]["jobId"] == job_id
        assert (await engine.job(job_id))["status"] == "completed"
        messages = (await engine.http.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
        assert [m["text"] for m in messages] == [u.text for u in stored]


@pytest.mark.parametrize("carrier", ["query", "x-api-key", "subprotocol", "bearer"])
async def test_every_token_carrier_is_accepted_and_an_offered_subprotocol_echoed(
    tmp_path: Path, decoder: Decoder, carrier: Any
) -> None:
    async with (
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "carrier", engine.token, carrier=carrier, path="/v1/streaming") as client,
    ):
        if carrier == "subprotocol":
            assert client.connection.subprotocol == engine.token
        await client.send_text("__PING__")
        assert await client.next() == "__PONG__"
        await client.send_json(start_request())
        assert await client.until(lambda frame: True) == client.received[-1]
        assert client.kinds()[-1] == "conversation_created"


@pytest.mark.parametrize("token", [None, "not-a-token"])
async def test_a_missing_or_wrong_token_gets_an_error_frame_and_1008(
    tmp_path: Path, decoder: Decoder, token: str | None
) -> None:
    async with streaming_engine(tmp_path, decoder) as engine, stream_client(engine.host, "x", token) as client:
        code, _ = await client.closed()
    assert code == 1008
    assert client.kinds() == ["error", "error"]
    assert client.received[0] == {
        "type": "error",
        "message": "Token validation failed for provided token.",
        "details": "unauthorized",
    }


BAD_STARTS: list[tuple[str, Any, str]] = [
    ("not json", "start_request please", "invalid_frame"),
    ("no type", {"config": {}}, "invalid_frame"),
    ("bad threshold", start_request(config={"confidenceThreshold": 7}), "invalid_start_request"),
    ("encoding", start_request(config={"speechRecognition": {"encoding": "AAC"}}), "invalid_start_request"),
    ("rate", start_request(4000), "invalid_start_request"),
    ("language", start_request(config={"languageCode": "fr-FR"}), "invalid_start_request"),
    ("reconnect window", start_request(noConnectionTimeout=1801), "invalid_start_request"),
    ("negative reconnect window", start_request(noConnectionTimeout=-1), "invalid_start_request"),
    ("pause timeout", start_request(disconnectOnStopRequestTimeout=1801), "invalid_start_request"),
    ("negative pause timeout", start_request(disconnectOnStopRequestTimeout=-5), "invalid_start_request"),
]


@pytest.mark.parametrize(("case", "first", "details"), BAD_STARTS, ids=[case for case, _, _ in BAD_STARTS])
async def test_bad_input_gets_an_error_frame_and_1008(
    tmp_path: Path, decoder: Decoder, case: str, first: Any, details: str
) -> None:
    async with streaming_engine(tmp_path, decoder) as engine, stream_client(engine.host, "x", engine.token) as client:
        await (client.send_text(first) if isinstance(first, str) else client.send_json(first))
        code, _ = await client.closed()
    assert code == 1008
    errors = [f for f in client.received if isinstance(f, dict) and f["type"] == "error"]
    assert errors and errors[0]["details"] == details, client.received


async def test_a_webhook_url_into_the_engines_network_is_refused_unless_trusted(
    tmp_path: Path, decoder: Decoder
) -> None:
    trusted = "http://127.0.0.1:9/trusted/"
    overrides = {"allow_private_media_urls": False, "trusted_webhook_urls": trusted}
    async with streaming_engine(tmp_path, decoder, **overrides) as engine:
        async with stream_client(engine.host, "private-hook", engine.token) as client:
            await client.send_json(start_request(webhookUrl="http://127.0.0.1:9/hook"))
            code, reason = await client.closed()
            errors = [f for f in client.received if isinstance(f, dict) and f["type"] == "error"]
        async with stream_client(engine.host, "trusted-hook", engine.token) as trusted_client:
            await trusted_client.send_json(start_request(webhookUrl=f"{trusted}jobs"))
            await trusted_client.until(lambda f: kind(f) == "recognition_started")
            await trusted_client.send_json({"type": "stop_request"})
            trusted_code, _ = await trusted_client.closed()
    assert (code, reason) == (1008, "invalid_start_request")
    assert "loopback address 127.0.0.1" in errors[0]["message"]
    assert "PARLEY_TRUSTED_WEBHOOK_URLS" in errors[0]["message"]
    assert trusted_code == 1000


async def test_audio_before_start_a_repeated_start_and_an_oversize_frame_are_refused(
    tmp_path: Path, decoder: Decoder
) -> None:
    async with streaming_engine(tmp_path, decoder, streaming_max_frame_bytes=4096) as engine:
        async with stream_client(engine.host, "a", engine.token) as client:
            await client.send_audio(silence(0.1))
            assert await client.closed() == (1008, "audio_before_start")
        async with stream_client(engine.host, "b", engine.token) as client:
            await client.send_json(start_request())
            await client.send_json(start_request())
            assert await client.closed() == (1008, "repeated_start")
            assert client.kinds()[-2:] == ["error", "error"]
        async with stream_client(engine.host, "c", engine.token) as client:
            await client.send_json(start_request())
            await client.send_audio(silence(0.5), frame_bytes=8000)
            code, _ = await client.closed()
            assert code == 1009
            assert client.kinds()[-2:] == ["error", "error"]


async def test_a_silent_client_is_told_and_closed_cleanly(tmp_path: Path, decoder: Decoder) -> None:
    overrides = {"streaming_start_timeout_seconds": 0.3, "streaming_idle_timeout_seconds": 0.3}
    async with streaming_engine(tmp_path, decoder, **overrides) as engine:
        async with stream_client(engine.host, "quiet", engine.token) as client:
            assert await client.closed() == (1008, "no start_request")
        async with stream_client(engine.host, "idle", engine.token) as client:
            await client.send_json(start_request())
            code, _ = await client.closed()
            assert code == 1000
            assert client.kinds()[3:] == ["error", "error", "conversation_completed", "recognition_stopped"]


async def test_past_the_stream_limit_the_upgrade_is_answered_429_and_others_go_on(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    async with (
        streaming_engine(tmp_path, decoder, streaming_max_streams=1) as engine,
        stream_client(engine.host, "one", engine.token) as first,
    ):
        await first.send_json(start_request())
        await first.until_kind("recognition_started")
        with pytest.raises(InvalidStatus) as refused:
            async with stream_client(engine.host, "two", engine.token):
                pass
        assert refused.value.response.status_code == 429
        assert json.loads(refused.value.response.body or b"{}")["statusCode"] == 429
        await first.send_audio(pcm16(speech["statement"]) + silence(1.0))
        await first.until_kind("message_response")


async def test_a_subscriber_receives_the_streams_frames(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    async with (
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "shared", engine.token, path="/v1/subscribe") as listener,
        stream_client(engine.host, "shared", engine.token) as speaker,
    ):
        await listener.send_text("__PING__")
        assert await listener.next() == "__PONG__"
        await speaker.send_json(start_request())
        await speaker.send_audio(pcm16(speech["statement"]) + silence(1.0))
        await speaker.until_kind("message_response")
        await speaker.send_json({"type": "stop_request"})
        assert (await speaker.closed())[0] == 1000
        assert (await listener.closed())[0] == 1000
    assert listener.received[1:] == speaker.received


async def test_paused_with_disconnect_on_stop_request_false_and_resumed(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    async with streaming_engine(tmp_path, decoder) as engine, stream_client(engine.host, "p", engine.token) as client:
        await client.send_json(start_request(disconnectOnStopRequest=False, disconnectOnStopRequestTimeout=60))
        await client.send_audio(pcm16(speech["statement"]) + silence(1.0))
        await client.send_json({"type": "stop_request"})
        await client.until_kind("recognition_stopped")
        await client.send_json(start_request(disconnectOnStopRequest=True))
        await client.until_kind("recognition_started")
        await client.send_json({"type": "stop_request"})
        assert (await client.closed())[0] == 1000
    kinds = client.kinds()
    assert kinds.count("conversation_created") == 1 and kinds.count("started_listening") == 2
    assert kinds.index("message_response") < kinds.index("recognition_stopped")


@pytest.mark.parametrize("seconds", [0, 1])
async def test_a_paused_socket_is_closed_after_its_disconnect_on_stop_request_timeout(
    tmp_path: Path, decoder: Decoder, seconds: int
) -> None:
    # PARLEY_STREAMING_IDLE_TIMEOUT_SECONDS stays at 30 minutes: only the start_request's timeout can close it.
    async with streaming_engine(tmp_path, decoder) as engine, stream_client(engine.host, "p", engine.token) as client:
        await client.send_json(start_request(disconnectOnStopRequest=False, disconnectOnStopRequestTimeout=seconds))
        job_id = (await client.until_kind("recognition_started"))["message"]["data"]["jobId"]
        await client.send_json({"type": "stop_request"})
        assert await client.closed(within=10) == (1000, "stream stopped" if seconds == 0 else "stream ended")
        assert (await engine.job(job_id))["status"] == "completed"
    after_start = client.kinds()[3:]
    if seconds == 0:
        assert after_start == ["conversation_completed", "recognition_stopped"]
    else:
        assert after_start == ["recognition_stopped", "error", "error", "conversation_completed", "recognition_stopped"]
        assert client.received[4]["details"] == "stop_request_timeout"  # type: ignore[index]


async def test_a_client_that_reconnects_within_no_connection_timeout_continues_its_conversation_and_job(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    lease = 0.6
    async with (
        streaming_engine(tmp_path, decoder, job_lease_seconds=lease) as engine,
        stream_client(engine.host, "again", engine.token, path="/v1/subscribe") as listener,
    ):
        jobs = engine.components.store.jobs
        async with stream_client(engine.host, "again", engine.token) as first:
            await first.send_json(start_request(noConnectionTimeout=30))
            created = (await first.until_kind("conversation_created"))["message"]["data"]
            await first.send_audio(pcm16(speech["statement"]) + silence(1.0))
            before = (await first.until_kind("message_response"))["messages"]
        # Gone without a stop_request: the stream goes on holding its job, lease after lease, for its client.
        job_id = created["jobId"]
        gone = await jobs.job(job_id)
        assert gone is not None and gone.lease_until is not None
        gone_lease_until = gone.lease_until

        async def renewed_twice_or_lost() -> JobRow:
            while True:
                row = await jobs.job(job_id)
                assert row is not None
                if row.claimed_by != gone.claimed_by or row.lease_until is None:
                    return row
                if (row.lease_until - gone_lease_until).total_seconds() >= 2 * lease:
                    return row
                await asyncio.sleep(0.05)

        async with asyncio.timeout(10):
            row = await renewed_twice_or_lost()
        assert (row.status, row.claimed_by) == ("in_progress", gone.claimed_by)

        async with stream_client(engine.host, "again", engine.token) as second:
            # The JS SDK sends its start_request again when it reconnects.
            await second.send_json(start_request(noConnectionTimeout=30))
            started = (await second.until_kind("recognition_started"))["message"]["data"]
            assert second.kinds() == ["conversation_created", "started_listening", "recognition_started"]
            assert second.received[0]["message"]["data"] == started == created  # type: ignore[index]
            await second.send_audio(pcm16(speech["question"]) + silence(1.0))
            after = (await second.until_kind("message_response"))["messages"]
            await second.send_json({"type": "stop_request"})
            assert (await second.closed())[0] == 1000
        completed = next(f for f in second.received if isinstance(f, dict) and kind(f) == "conversation_completed")
        assert completed["message"]["conversationId"] == created["conversationId"]
        assert completed["message"]["jobId"] == job_id

        assert [m["payload"]["content"] for m in before + after] == [f"{STATEMENT}.", f"{QUESTION}?"]
        assert len({m["id"] for m in before + after}) == 2
        assert after[0]["duration"]["timeOffset"] > before[-1]["duration"]["timeOffset"]
        assert (await engine.job(job_id))["status"] == "completed"
        conversation = f"/v1/conversations/{created['conversationId']}/messages"
        stored = (await engine.http.get(conversation)).json()["messages"]
        assert [(m["id"], m["text"]) for m in stored] == [(m["id"], m["payload"]["content"]) for m in before + after]
        # The subscriber heard both sockets and was closed only when the stream ended.
        assert (await listener.closed())[0] == 1000
    heard = [k for k in listener.kinds() if k != "__PONG__"]
    assert heard.count("conversation_created") == 2 and heard.count("message_response") == 2
    assert heard[-2:] == ["conversation_completed", "recognition_stopped"]


@pytest.mark.parametrize("window", [None, 1], ids=["no window (default)", "window runs out"])
async def test_without_a_reconnect_within_no_connection_timeout_the_stream_ends_and_its_job_completes(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray], window: int | None
) -> None:
    hooks = Hooks()
    reconnect = {} if window is None else {"noConnectionTimeout": window}
    async with (
        http_server({"/hook": hooks.handle}) as hook_base,
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "gone", engine.token, path="/v1/subscribe") as listener,
    ):
        async with stream_client(engine.host, "gone", engine.token) as client:
            await client.send_json(start_request(webhookUrl=f"{hook_base}/hook", **reconnect))
            created = (await client.until_kind("conversation_created"))["message"]["data"]
            await client.send_audio(pcm16(speech["statement"]) + silence(1.0))
            heard = (await client.until_kind("message_response"))["messages"]
        assert (await engine.job(created["jobId"]))["status"] == "completed"
        stored = (await engine.http.get(f"/v1/conversations/{created['conversationId']}/messages")).json()
        assert [(m["id"], m["text"]) for m in stored["messages"]] == [(m["id"], m["payload"]["content"]) for m in heard]
        async with asyncio.timeout(10):
            await hooks.completed.wait()
        assert (await listener.closed())[0] == 1000
        if window:  # a window that runs out completes the stream as a timeout does, for the subscribers to see
            assert listener.kinds()[-2:] == ["conversation_completed", "recognition_stopped"]
        # The connectionId is free again: a socket on it now starts another conversation.
        async with stream_client(engine.host, "gone", engine.token) as late:
            await late.send_json(start_request())
            fresh = (await late.until_kind("conversation_created"))["message"]["data"]
        assert fresh["conversationId"] != created["conversationId"]


async def test_a_second_live_socket_on_a_connection_id_is_refused_and_the_first_goes_on(
    tmp_path: Path, decoder: Decoder, speech: dict[str, np.ndarray]
) -> None:
    async with (
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "busy", engine.token, path="/v1/subscribe") as listener,
        stream_client(engine.host, "busy", engine.token) as first,
    ):
        await first.send_json(start_request(noConnectionTimeout=30))
        await first.until_kind("recognition_started")
        async with stream_client(engine.host, "busy", engine.token) as second:
            assert await second.closed() == (1008, "connection_in_use")
        assert second.kinds() == ["error", "error"]
        assert second.received[0]["details"] == "connection_in_use"  # type: ignore[index]
        await first.send_audio(pcm16(speech["statement"]) + silence(1.0))
        await first.until_kind("message_response")
        await first.send_json({"type": "stop_request"})
        assert (await first.closed())[0] == 1000
        assert (await listener.closed())[0] == 1000
    assert listener.received == first.received


@dataclass
class FakeStream:
    completed: bool = False

    async def complete(self) -> None:
        self.completed = True


async def test_a_waiting_stream_counts_against_the_limit_and_is_ended_when_the_engine_stops() -> None:
    hub = StreamHub[FakeStream](max_streams=1)
    stream = FakeStream()
    assert hub.claim("w") is None
    hub.wait_for_reconnect("w", stream, 1800)
    with pytest.raises(TooManyStreams):
        hub.admit("other")
    hub.release(hub.admit("w"))  # a socket on the waiting stream's own connectionId is let in to take it back
    async with asyncio.timeout(5):
        await hub.end_waiting_streams()
    assert stream.completed and hub.active_streams == 0
    assert hub.claim("w") is None  # free again, for a new stream


class StuckSocket:
    async def send_text(self, data: str) -> None:
        await asyncio.Event().wait()


async def test_a_slow_reader_is_detected_without_blocking_the_sender() -> None:
    stalled = Outbox(limit=100, send_timeout=0.05)
    stalled.send_text("first")
    with pytest.raises(SlowReader):
        await stalled.run(StuckSocket())
    flooded = Outbox(limit=3, send_timeout=10)
    for n in range(5):
        flooded.send_text(str(n))  # never blocks, however far behind the client is
    assert flooded.overflowed
    with pytest.raises(SlowReader):
        await flooded.run(StuckSocket())


def said_text(value: Any) -> Iterator[str]:
    """Every transcript, word and message text in a frame or message body, however deep."""
    if isinstance(value, dict):
        for key, item in value.items():
            if key in ("transcript", "word", "text", "content") and isinstance(item, str):
                yield item
            else:
                yield from said_text(item)
    elif isinstance(value, list):
        for item in value:
            yield from said_text(item)
    elif isinstance(value, str) and value.startswith(("[", "{")):
        # Nested JSON, as the words of a message travel in its "words" string.
        try:
            yield from said_text(json.loads(value))
        except ValueError:
            return


async def test_a_redacted_stream_sends_stores_and_reports_only_redacted_words(tmp_path: Path, decoder: Decoder) -> None:
    said = "Please call me on 415 555 2671 tomorrow"
    async with (
        streaming_engine(tmp_path, decoder) as engine,
        stream_client(engine.host, "cmVkYWN0ZWQ=", engine.token) as client,
    ):
        await client.send_json(start_request(16000, redaction={"enabled": True, "entityTypes": ["PHONE_NUMBER"]}))
        await client.send_audio(pcm16(synthesize_samples(said, "slt")) + silence(1.0, 16000))
        await client.until(lambda f: kind(f) == "message_response")
        await client.send_json({"type": "stop_request"})
        await client.closed()

        frames = [f for f in client.received if isinstance(f, dict)]
        results = [f["message"] for f in frames if kind(f) == "recognition_result"]
        finals = [r["punctuated"]["transcript"] for r in results if r["isFinal"]]
        assert finals and all("[PHONE_NUMBER]" in text for text in finals), finals
        # Interim results, final results, their words and the messages: no digit of the number in anything said
        # (read from the text fields only: a timestamp such as 12:21:45.555 is no leak).
        sent = " ".join(said_text([f for f in frames if kind(f) in ("recognition_result", "message_response")]))
        for digits in ("415", "555", "2671"):
            assert digits not in sent
        conversation_id = frames[0]["message"]["data"]["conversationId"]
        assert (await engine.job(frames[0]["message"]["data"]["jobId"]))["status"] == "completed"
        stored = await engine.http.get(f"/v1/conversations/{conversation_id}/messages", params={"verbose": "true"})
        [message] = stored.json()["messages"]
        assert "[PHONE_NUMBER]" in message["text"] and "2671" not in " ".join(said_text(message))
