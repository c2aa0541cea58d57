"""Symbl's official Python SDK (PyPI ``symbl``), unchanged, against Parley's engine: only the host differs.

The SDK builds its API clients when it is imported, from ``symbl_rest.Configuration``'s default, so a program
moving off Symbl's hosted API sets that default's host before ``import symbl``; nothing else changes.
"""

from __future__ import annotations

import importlib
import json
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import symbl_rest
from parley_shared.settings import TopicNames

from parley_cli.local_stack import LocalStack

pytestmark = pytest.mark.e2e
SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CREDENTIALS = {"app_id": "parley-dev", "app_secret": "parley-dev-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def sdk(engine_url: str) -> Any:
    if "symbl" in sys.modules:
        pytest.fail("symbl was imported before its host was set; this module must import it first")
    return importlib.import_module("symbl")


@pytest.fixture(scope="module")
def engine_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    work = tmp_path_factory.mktemp("symbl-sdk")
    stack = LocalStack(log_dir=work)
    try:
        engine = stack.start(
            "engine", port=free_port(), timeout=120, extra_env={"PARLEY_ENGINE_DATA_DIR": str(work / "data")}
        )
        # The one change a Symbl SDK user makes: the host.
        configuration = symbl_rest.Configuration()
        configuration.host = engine.url
        symbl_rest.Configuration.set_default(configuration)
        yield engine.url
    finally:
        stack.stop_all()


def wait_completed(engine_url: str, conversation: Any, seconds: float = 60) -> None:
    """The SDK's own wait sleeps 30 s before its first poll; read the job status directly instead."""
    wait_job_completed(engine_url, conversation.get_job_id(), seconds)


def wait_job_completed(engine_url: str, job_id: str, seconds: float = 60) -> None:
    token = httpx.post(
        f"{engine_url}/oauth2/token:generate",
        json={"type": "application", "appId": CREDENTIALS["app_id"], "appSecret": CREDENTIALS["app_secret"]},
    ).json()["accessToken"]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = httpx.get(f"{engine_url}/v1/job/{job_id}", headers={"x-api-key": token}).json()
        if status["status"] in ("completed", "failed"):
            assert status["status"] == "completed", status
            return
        time.sleep(0.2)
    raise AssertionError("the job did not complete in time")


def test_the_official_sdk_processes_text_and_reads_insights(engine_url: str, sdk: Any) -> None:
    meeting = json.loads((SAMPLES / "meeting.json").read_text())
    conversation = sdk.Text.process(payload=meeting, credentials=CREDENTIALS, wait=False)
    wait_completed(engine_url, conversation)

    messages = conversation.get_messages().messages
    assert [m.text for m in messages][:2] == [
        "Good morning everyone, let's get started with the launch review.",
        "Did the pricing page go live on Friday?",
    ]
    action_items = conversation.get_action_items().action_items
    assert any(item.assignee.name == "Mike" and item.due_by for item in action_items)
    questions = [q.text for q in conversation.get_questions().questions]
    assert "Did the pricing page go live on Friday?" in questions
    assert {m.name for m in conversation.get_members().members} == {"Natalia", "Mike", "Priya"}
    assert conversation.get_topics().topics
    assert conversation.get_analytics().metrics


def test_the_official_sdk_uploads_audio(engine_url: str, sdk: Any) -> None:
    options = json.loads((SAMPLES / "support-call.ogg.options.json").read_text())
    conversation = sdk.Audio.process_file(
        file_path=str(SAMPLES / "support-call.ogg"), credentials=CREDENTIALS, wait=False, parameters=options
    )
    wait_completed(engine_url, conversation, seconds=120)
    transcript = " ".join(m.text for m in conversation.get_messages().messages).lower()
    assert "incident report" in transcript
    assert {m.name for m in conversation.get_members().members} == {"Sara", "Tom"}


@pytest.fixture(scope="module")
def ingest_url(engine_url: str, kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Parley's ingest in front of the engine: it relays the Streaming API and publishes each stream on Kafka."""
    work = tmp_path_factory.mktemp("symbl-sdk-ingest")
    topics = TopicNames.prefixed(f"sdk-{uuid.uuid4().hex[:8]}")
    env = {"PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PARLEY_API_URL": engine_url, **topics.as_env()}
    stack = LocalStack(log_dir=work, env=env)
    try:
        yield stack.start("ingest", port=free_port()).url
    finally:
        stack.stop_all()


@pytest.mark.parametrize("through", ["engine", "ingest"])
def test_the_official_sdk_streams_live_audio(
    engine_url: str, sdk: Any, through: str, request: pytest.FixtureRequest
) -> None:
    """``symbl.Streaming`` unchanged but for its WebSocket host (hard-coded in the SDK, so patched like REST's),
    straight to the engine or through Parley's ingest."""
    from parley_devtools.speech_samples import flite_available, synthesize_samples

    assert flite_available(), "flite speaks the test sentence: scripts/bootstrap installs it"
    streaming_module = importlib.import_module("symbl.streaming_api.StreamingApi")
    ws_host = engine_url if through == "engine" else request.getfixturevalue("ingest_url")
    host = ws_host.removeprefix("http://")
    vars(streaming_module)["SYMBL_STREAMING_API_FORMAT"] = f"ws://{host}/v1/realtime/insights/{{}}?source=python_sdk"

    received: list[dict[str, Any]] = []
    completed = threading.Event()
    answered = threading.Event()

    def on_message(frame: dict[str, Any]) -> None:
        received.append(frame)
        if frame["message"]["type"] == "conversation_completed":
            completed.set()

    def on_message_response(frame: dict[str, Any]) -> None:
        received.append(frame)
        answered.set()

    connection = sdk.Streaming.start_connection(
        credentials=CREDENTIALS,
        speaker={"userId": "natalia@example.com", "name": "Natalia"},
        insight_types=["question", "action_item"],
        config={"speechRecognition": {"sampleRateHertz": 16000}},
    )
    connection.subscribe(
        {"message": on_message, "message_response": on_message_response, "insight_response": received.append}
    )
    speech = synthesize_samples("Can you send the incident report to the whole team by Friday", "slt")
    audio = (speech * 32767).astype("<i2").tobytes() + bytes(32000)
    for offset in range(0, len(audio), 8192):
        connection.send_audio(audio[offset : offset + 8192])
    assert answered.wait(60), received
    connection.stop()  # the SDK's stop frame is a Python repr, not JSON
    assert completed.wait(60), received

    finished = next(f["message"] for f in received if f.get("message", {}).get("type") == "conversation_completed")
    assert finished["conversationId"] == connection.conversation.get_conversation_id()
    wait_job_completed(engine_url, finished["jobId"], seconds=120)
    messages = connection.conversation.get_messages().messages
    assert "incident report" in " ".join(m.text for m in messages).lower()
    assert messages[0]._from.name == "Natalia"
    questions = [q.text for q in connection.conversation.get_questions().questions]
    assert any("incident report" in q.lower() for q in questions)
