"""End to end with Parley's own engine as the provider: real speech-to-text and analysis behind the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from parley_cli.watching import TopicFollower
from parley_devtools.sip_peer import SipPeer
from parley_devtools.speech_samples import synthesize_samples
from tests.support.calls import far_end_audio, says_then_hangs_up
from tests.support.pipeline_stack import Pipeline, collect, running_pipeline

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"


@pytest.fixture(scope="module")
def pipeline(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    # The engine may dial the SIP far end these tests start on loopback (it refuses non-public hosts by default).
    with running_pipeline(
        kafka_bootstrap,
        tmp_path_factory.mktemp("engine-e2e"),
        provider="engine",
        env={"PARLEY_ALLOW_PRIVATE_MEDIA_URLS": "true"},
    ) as running:
        yield running


def items(insights: dict[str, Any], key: str, inner: str) -> list[dict[str, Any]]:
    value = insights[key]
    return list(value[inner] if isinstance(value, dict) else value)


async def test_a_text_meeting_and_a_recorded_call_get_real_insights(pipeline: Pipeline) -> None:
    topics = pipeline.topics
    meeting = json.loads((SAMPLES / "meeting.json").read_text())
    audio = SAMPLES / "support-call.ogg"
    options = json.loads((SAMPLES / "support-call.ogg.options.json").read_text())
    async with (
        TopicFollower(pipeline.kafka, [topics.completions, topics.insights]) as follower,
        httpx.AsyncClient(base_url=pipeline.ingest, timeout=60) as client,
    ):
        text = (await client.post("/v1/process/text", json=meeting)).json()
        response = await client.post(
            "/v1/process/audio",
            content=audio.read_bytes(),
            headers={"Content-Type": "audio/ogg"},
            params={k: v if isinstance(v, str) else json.dumps(v) for k, v in options.items()},
        )
        assert response.status_code == 202, response.text
        call = response.json()
        seen = await collect(follower, {text["jobId"], call["jobId"]}, settle_seconds=1.0, wait_seconds=180)

    async with httpx.AsyncClient(base_url=pipeline.stack.processes["job-watcher"].url) as watcher:
        status = (await watcher.get("/status")).json()
    # Unsigned or forged callbacks are refused before they count: these were signed by the engine and verified.
    assert status["webhooksReceived"] >= 4, status
    ready = {e["jobId"]: e for e in seen["InsightsReady"]}
    meeting_insights = ready[text["jobId"]]["insights"]
    assert len(items(meeting_insights, "messages", "messages")) == 6
    assert {q["text"] for q in items(meeting_insights, "questions", "questions")} >= {
        "Did the pricing page go live on Friday?"
    }
    mike = [a for a in items(meeting_insights, "actionItems", "actionItems") if a["assignee"]["name"] == "Mike"]
    assert mike and mike[0]["dueBy"].startswith("2026-11-25"), "Wednesday after the meeting of Monday 2026-11-23"
    assert {m["name"] for m in items(meeting_insights, "members", "members")} == {"Natalia", "Mike", "Priya"}

    call_insights = ready[call["jobId"]]["insights"]
    transcript = " ".join(m["text"] for m in items(call_insights, "messages", "messages")).lower()
    assert "incident report" in transcript and "friday" in transcript
    assert {m["name"] for m in items(call_insights, "members", "members")} == {"Sara", "Tom"}
    assert any("report" in a["text"].lower() for a in items(call_insights, "actionItems", "actionItems"))


async def until_live_ended_and_ready(
    follower: TopicFollower, conversation_id: str | None, *, within: float
) -> dict[str, list[dict[str, Any]]]:
    """Every event read, by type, until the conversation's ``LiveStreamEnded`` and ``InsightsReady`` have both come
    (two topics are read side by side, so either may come first)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    async with asyncio.timeout(within):
        async for _, event in follower.events():
            seen.setdefault(event["eventType"], []).append(event)
            ours = {e["eventType"] for es in seen.values() for e in es if e["conversationId"] == conversation_id}
            if {"InsightsReady", "LiveStreamEnded"} <= ours:
                return seen
    return seen


async def test_a_live_stream_through_ingest_lands_on_the_live_topic_and_ends_in_one_insights_ready(
    pipeline: Pipeline,
) -> None:
    from parley_cli.streaming import access_token, stream_file

    topics = pipeline.topics
    engine = pipeline.stack.processes["engine"].url
    token = access_token(engine, "parley-dev", "parley-dev-secret")
    shown: list[str] = []
    async with TopicFollower(pipeline.kafka, [topics.live, topics.insights]) as follower:
        report = await stream_file(
            pipeline.ingest.replace("http://", "ws://"),
            SAMPLES / "support-call.ogg",
            token=token,
            speaker_name="Sara",
            speed=2.0,
            show=shown.append,
        )
        assert report.close_code == 1000 and report.conversation_id, (report, shown)
        seen = await until_live_ended_and_ready(follower, report.conversation_id, within=180)

    live = [e for kind, events in seen.items() if kind.startswith("Live") for e in events]
    live = [e for e in live if e["conversationId"] == report.conversation_id]
    assert [e["sequence"] for e in sorted(live, key=lambda e: e["sequence"])] == list(range(len(live)))
    kinds = [e["eventType"] for e in sorted(live, key=lambda e: e["sequence"])]
    assert kinds[0] == "LiveStreamStarted" and kinds[-1] == "LiveStreamEnded" and "LiveMessages" in kinds
    ended = next(e for e in live if e["eventType"] == "LiveStreamEnded")
    assert ended["reason"] == "stopped" and ended["jobId"]
    live_text = " ".join(
        m["payload"]["content"] for e in live if e["eventType"] == "LiveMessages" for m in e["messages"]
    )
    assert "report" in live_text.lower(), live_text
    [ready] = [e for e in seen["InsightsReady"] if e["conversationId"] == report.conversation_id]
    assert ready["jobId"] == ended["jobId"]
    transcript = " ".join(m["text"] for m in items(ready["insights"], "messages", "messages")).lower()
    assert "incident report" in transcript, transcript


async def test_a_call_through_ingest_is_heard_live_and_ends_in_one_insights_ready(pipeline: Pipeline) -> None:
    from parley_cli.calling import call_and_follow
    from parley_cli.streaming import access_token

    said = "Can you send the incident report to the customer by Friday"
    audio = far_end_audio(synthesize_samples(said, "slt"))
    topics = pipeline.topics
    token = access_token(pipeline.stack.processes["engine"].url, "parley-dev", "parley-dev-secret")
    shown: list[str] = []
    async with (
        SipPeer(says_then_hangs_up(audio)) as peer,
        TopicFollower(pipeline.kafka, [topics.live, topics.insights]) as follower,
    ):
        # What `parley call sip:…` runs, pointed at ingest: it prints the live transcript until the far end hangs up.
        report = await call_and_follow(pipeline.ingest, peer.uri("udp"), token=token, show=shown.append)
        assert report.conversation_id and not report.errors, shown
        assert report.ended.get("cause") == "remote_hangup", shown
        assert any("incident report" in line.lower() for line in shown), shown
        seen = await until_live_ended_and_ready(follower, report.conversation_id, within=120)

    live = sorted(
        (e for kind, events in seen.items() if kind.startswith("Live") for e in events),
        key=lambda e: e["sequence"],
    )
    live = [e for e in live if e["conversationId"] == report.conversation_id]
    assert live[0]["eventType"] == "LiveStreamStarted" and live[-1]["eventType"] == "LiveStreamEnded"
    [ready] = [e for e in seen["InsightsReady"] if e["conversationId"] == report.conversation_id]
    assert ready["jobId"] == live[-1]["jobId"]
    transcript = " ".join(m["text"] for m in items(ready["insights"], "messages", "messages")).lower()
    assert "incident report" in transcript, transcript
    assert items(ready["insights"], "questions", "questions"), "the sentence asks something"


JS_SDK = Path(__file__).resolve().parents[1] / "js"


@pytest.mark.parametrize("through", ["engine", "ingest"])
def test_symbls_javascript_sdk_streams_unchanged_with_only_the_host_changed(
    pipeline: Pipeline, through: str, tmp_path: Path
) -> None:
    from parley_cli.streaming import access_token, pcm_chunks

    assert (JS_SDK / "node_modules" / "@symblai" / "symbl-js").is_dir(), "run scripts/bootstrap (npm ci in tests/js)"
    engine = pipeline.stack.processes["engine"].url
    host = engine if through == "engine" else pipeline.ingest
    recording = tmp_path / "call.pcm"
    recording.write_bytes(b"".join(pcm_chunks(SAMPLES / "support-call.ogg")))
    token = access_token(engine, "parley-dev", "parley-dev-secret")

    done = subprocess.run(
        ["node", "stream.js", host, token, str(recording), "4"],
        cwd=JS_SDK,
        capture_output=True,
        text=True,
        timeout=120,
    )

    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0, (done.stdout[-2000:], done.stderr[-2000:])
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "stopped", kinds
    said = " ".join(m["payload"]["content"] for e in events if e["event"] == "messages" for m in e["data"]).lower()
    assert "incident report" in said, said
    assert any(e["event"] == "speech" and not e["data"]["isFinal"] for e in events), "interim results"
    assert any(i["type"] == "action_item" for e in events if e["event"] == "insights" for i in e["data"])
    completed = events[-1]["data"]
    assert completed["conversationId"] and completed["jobId"]


async def stream_and_insights(
    follower: TopicFollower, conversation_id: str | None, *, within: float
) -> dict[str, list[dict[str, Any]]]:
    """The conversation's events by type, once both its LiveStreamEnded and its InsightsReady arrived (the two
    topics are read side by side, so either may come first)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    async with asyncio.timeout(within):
        async for _, event in follower.events():
            if event.get("conversationId") == conversation_id:
                seen.setdefault(event["eventType"], []).append(event)
            if {"InsightsReady", "LiveStreamEnded"} <= set(seen):
                break
    return seen


async def stream_until_heard(connection: Any, chunks: Any) -> tuple[str | None, list[str]]:
    """Send audio at four times real time until a sentence comes back; the conversation and what was heard."""
    conversation_id, heard = None, []
    for chunk in chunks:
        await connection.send(chunk)
        await asyncio.sleep(0.025)
        while True:  # take whatever arrived, without waiting
            try:
                frame = json.loads(await asyncio.wait_for(connection.recv(), 0.001))
            except TimeoutError:
                break
            if frame.get("type") == "message" and frame["message"]["type"] == "conversation_created":
                conversation_id = frame["message"]["data"]["conversationId"]
            if frame.get("type") == "message_response":
                heard += [m["payload"]["content"] for m in frame["messages"]]
        if heard:
            break
    return conversation_id, heard


async def test_a_client_that_drops_mid_stream_still_ends_in_one_insights_ready(pipeline: Pipeline) -> None:
    import websockets

    from parley_cli.streaming import access_token, pcm_chunks

    topics = pipeline.topics
    token = access_token(pipeline.stack.processes["engine"].url, "parley-dev", "parley-dev-secret")
    start = {
        "type": "start_request",
        "insightTypes": ["question", "action_item"],
        "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
        "speaker": {"userId": "sara@example.com", "name": "Sara"},
    }
    url = pipeline.ingest.replace("http://", "ws://") + "/v1/streaming/dropping-client"
    async with TopicFollower(pipeline.kafka, [topics.live, topics.insights]) as follower:
        connection = await websockets.connect(url, additional_headers={"x-api-key": token})
        await connection.send(json.dumps(start))
        conversation_id, heard = await stream_until_heard(connection, pcm_chunks(SAMPLES / "support-call.ogg"))
        # Something was recognised: now the client vanishes, no stop_request, no close frame.
        connection.transport.abort()
        assert conversation_id and heard

        seen = await stream_and_insights(follower, conversation_id, within=180)

    [ended] = seen["LiveStreamEnded"]
    assert ended["reason"] == "client_disconnected" and ended["jobId"]
    [ready] = seen["InsightsReady"]
    assert ready["jobId"] == ended["jobId"]
    transcript = " ".join(m["text"] for m in items(ready["insights"], "messages", "messages"))
    assert heard[0].split()[0].strip(",.").lower() in transcript.lower(), (heard, transcript)


async def test_an_engine_killed_mid_stream_loses_nothing_it_recognised(pipeline: Pipeline) -> None:
    """The engine dies (SIGKILL) while a client streams through ingest: the client gets an error frame and 1011,
    ingest ends the stream with the job the engine named at the start, and once the engine is back the job
    completes from what was recognised before the kill, so one InsightsReady follows."""
    import websockets
    from websockets.exceptions import ConnectionClosed

    from parley_cli.streaming import access_token, pcm_chunks

    topics = pipeline.topics
    token = access_token(pipeline.stack.processes["engine"].url, "parley-dev", "parley-dev-secret")
    start = {
        "type": "start_request",
        "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": 16000}},
        "speaker": {"userId": "sara@example.com", "name": "Sara"},
    }
    url = pipeline.ingest.replace("http://", "ws://") + "/v1/streaming/engine-dies"
    async with TopicFollower(pipeline.kafka, [topics.live, topics.insights]) as follower:
        connection = await websockets.connect(url, additional_headers={"x-api-key": token})
        await connection.send(json.dumps(start))
        conversation_id, heard = await stream_until_heard(connection, pcm_chunks(SAMPLES / "support-call.ogg"))
        last = None
        assert conversation_id and heard
        pipeline.restart("engine", kill=True)  # SIGKILL, then the same engine again on its data
        with contextlib.suppress(ConnectionClosed):
            async with asyncio.timeout(30):
                while True:
                    last = json.loads(await connection.recv())
        assert connection.close_code == 1011 and last and last["type"] == "error", (connection.close_code, last)

        seen = await stream_and_insights(follower, conversation_id, within=240)

    [ended] = seen["LiveStreamEnded"]
    assert ended["reason"] == "provider_disconnected" and ended["jobId"]
    [ready] = seen["InsightsReady"]
    assert ready["jobId"] == ended["jobId"]
    transcript = " ".join(m["text"] for m in items(ready["insights"], "messages", "messages"))
    assert heard[0] in transcript, (heard, transcript)
