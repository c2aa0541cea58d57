"""A live stream outlives its engine: the engine process (``python -m parley_engine``, real Whisper and analysis) is
SIGKILLed mid-stream, restarted on the same data directory, and completes the stream's job from the sentences it had
stored before the kill, webhook included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from parley_devtools.speech_samples import flite_available, synthesize_samples
from tests.support.engine import http_server
from tests.support.streaming import pcm16, silence, start_request, stream_client

pytestmark = pytest.mark.skipif(not flite_available(), reason="flite is not installed")

STATEMENT = "I will follow up with the vendor tomorrow"
QUESTION = "Can you send me the report by Friday afternoon"
CREDENTIALS = {"type": "application", "appId": "test-app", "appSecret": "test-secret"}
# Loading Whisper and the analysis models in fresh worker processes on two busy cores.
STARTUP_SECONDS = 120.0
# Short, so the restarted engine finds the killed stream's job abandoned within seconds.
LEASE_SECONDS = 1.5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class EngineProcess:
    """``python -m parley_engine`` in its own process group, so a kill takes its worker processes with it."""

    process: asyncio.subprocess.Process
    host: str
    log_path: Path

    async def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a node failure would: no shutdown code runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        async with asyncio.timeout(30):
            await self.process.wait()

    def log_tail(self) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-40:])


async def start_engine(data_dir: Path, log_path: Path) -> EngineProcess:
    port = free_port()
    env = {
        **os.environ,
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_ENGINE_DATA_DIR": str(data_dir),
        "PARLEY_APP_ID": CREDENTIALS["appId"],
        "PARLEY_APP_SECRET": CREDENTIALS["appSecret"],
        "PARLEY_JOB_LEASE_SECONDS": str(LEASE_SECONDS),
        "PARLEY_DISPATCH_POLL_SECONDS": "0.1",
        "PARLEY_WORKERS": "1",
        "PARLEY_STREAMING_WORKERS": "1",
        "PARLEY_WEBHOOK_BACKOFF_BASE_SECONDS": "0.1",
        # The webhook receiver listens on loopback.
        "PARLEY_ALLOW_PRIVATE_MEDIA_URLS": "true",
        "PARLEY_LOG_FORMAT": "console",
    }
    with log_path.open("ab") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "parley_engine",
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    engine = EngineProcess(process, f"127.0.0.1:{port}", log_path)
    try:
        async with asyncio.timeout(STARTUP_SECONDS), httpx.AsyncClient() as http:
            while True:
                assert process.returncode is None, f"the engine exited with {process.returncode}:\n{engine.log_tail()}"
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"http://{engine.host}/readyz", timeout=1.0)).status_code == 200:
                        return engine
                await asyncio.sleep(0.1)
    except BaseException:
        await engine.kill()
        raise


@asynccontextmanager
async def running_engine(data_dir: Path, log_path: Path) -> AsyncIterator[EngineProcess]:
    engine = await start_engine(data_dir, log_path)
    try:
        yield engine
    finally:
        if engine.process.returncode is None:
            await engine.kill()


@asynccontextmanager
async def engine_api(engine: EngineProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://{engine.host}", timeout=30) as http:
        http.headers["x-api-key"] = (await http.post("/oauth2/token:generate", json=CREDENTIALS)).json()["accessToken"]
        yield http


async def finished_job_status(http: httpx.AsyncClient, job_id: str) -> str:
    while True:
        status = str((await http.get(f"/v1/job/{job_id}")).json()["status"])
        if status in ("completed", "failed"):
            return status
        await asyncio.sleep(0.1)


@dataclass
class WebhookReceiver:
    statuses: list[str] = field(default_factory=list)
    completed: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        status = json.loads(await request.read())["status"]
        self.statuses.append(status)
        if status == "completed":
            self.completed.set()
        return web.Response(status=200)


@pytest.fixture(scope="module")
def speech() -> Iterator[dict[str, Any]]:
    yield {"statement": synthesize_samples(STATEMENT, "rms"), "question": synthesize_samples(QUESTION, "slt")}


async def test_a_stream_whose_engine_is_killed_is_completed_by_the_restarted_engine_with_what_was_recognized(
    tmp_path: Path, speech: dict[str, Any]
) -> None:
    data_dir = tmp_path / "data"
    hooks = WebhookReceiver()
    async with http_server({"/hook": hooks.handle}) as hook_base:
        async with running_engine(data_dir, tmp_path / "engine-1.log") as engine, engine_api(engine) as http:
            token = str(http.headers["x-api-key"])
            async with stream_client(engine.host, "doomed", token) as client:
                await client.send_json(start_request(webhookUrl=f"{hook_base}/hook"))
                created = (await client.until_kind("conversation_created"))["message"]["data"]
                conversation_id, job_id = created["conversationId"], created["jobId"]
                await client.send_audio(pcm16(speech["statement"]) + silence(1.0))
                heard = (await client.until_kind("message_response", within=STARTUP_SECONDS))["messages"]
                assert (await http.get(f"/v1/job/{job_id}")).json()["status"] == "in_progress"
                # The next sentence is still being spoken when the engine dies.
                await client.send_audio(pcm16(speech["question"][: len(speech["question"]) // 2]))
                await engine.kill()

        async with running_engine(data_dir, tmp_path / "engine-2.log") as engine, engine_api(engine) as http:
            async with asyncio.timeout(STARTUP_SECONDS):
                status = await finished_job_status(http, job_id)
            assert status == "completed", engine.log_tail()
            messages = (await http.get(f"/v1/conversations/{conversation_id}/messages")).json()["messages"]
            assert [(m["id"], m["text"]) for m in messages] == [(m["id"], m["payload"]["content"]) for m in heard]
            assert heard[0]["payload"]["content"] == f"{STATEMENT}."
            async with asyncio.timeout(10):
                await hooks.completed.wait()
    assert hooks.statuses[:2] == ["scheduled", "in_progress"] and hooks.statuses[-1] == "completed"
