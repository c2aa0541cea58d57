"""A real engine that places calls with its own SIP user agent, for the Telephony API's end-to-end tests (the engine's
and ingest's relay): on uvicorn at a loopback port, the real decoder and VAD, fakes for the whole-conversation
analysis, short answer and RTP timeouts."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from parley_engine.app import create_app
from parley_engine.streaming.workers import Decoder

from parley_devtools.sip_peer import PeerBehaviour
from tests.support.engine import FakeAnalyzer, FakeRecognizer, engine_settings
from tests.support.streaming import serve_app


def far_end_audio(samples: npt.NDArray[np.float32]) -> bytes:
    """16-kHz speech as a SIP far end plays it: 16-bit PCM at 8 kHz, half a second of silence before, one after."""
    at_8k = np.interp(np.arange(samples.size // 2) * 2.0, np.arange(samples.size), samples)
    pcm = (np.clip(at_8k, -1, 1) * 32767).astype("<i2").tobytes()
    return bytes(8000) + pcm + bytes(16000)


def played_seconds(audio: bytes) -> float:
    """How long a far end plays ``audio`` (16-bit PCM at 8 kHz)."""
    return len(audio) / 16000


def says_then_hangs_up(audio: bytes) -> PeerBehaviour:
    """A far end that plays ``audio`` and hangs up half a second after it ends."""
    return PeerBehaviour(audio=audio, hang_up_after_seconds=played_seconds(audio) + 0.5)


@dataclass
class CallingEngine:
    host: str
    http: httpx.AsyncClient
    token: str

    async def start(self, uri: str, **fields: Any) -> dict[str, Any]:
        started = await self.http.post(
            "/v1/endpoint:connect", json={"operation": "start", "endpoint": {"type": "sip", "uri": uri}, **fields}
        )
        assert started.status_code == 201, started.text
        body: dict[str, Any] = started.json()
        return body

    async def job(self, job_id: str, within: float = 30) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                body: dict[str, Any] = (await self.http.get(f"/v1/job/{job_id}")).json()
                if body["status"] in ("completed", "failed"):
                    return body
                await asyncio.sleep(0.05)

    async def messages(self, conversation_id: str) -> list[str]:
        body = (await self.http.get(f"/v1/conversations/{conversation_id}/messages")).json()
        return [m["text"] for m in body["messages"]]


@asynccontextmanager
async def calling_engine(tmp_path: Path, decoder: Decoder, **overrides: Any) -> AsyncIterator[CallingEngine]:
    settings = engine_settings(tmp_path, sip_answer_timeout_seconds=2.0, sip_rtp_timeout_seconds=2.0, **overrides)
    app = create_app(
        settings, analyzer_factory=FakeAnalyzer, recognizer_factory=FakeRecognizer, decoder_factory=lambda: decoder
    )
    async with serve_app(app) as host, httpx.AsyncClient(base_url=f"http://{host}") as http:
        credentials = {"type": "application", "appId": "test-app", "appSecret": "test-secret"}
        token = (await http.post("/oauth2/token:generate", json=credentials)).json()["accessToken"]
        http.headers["x-api-key"] = token
        yield CallingEngine(host, http, token)
