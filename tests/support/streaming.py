"""A Streaming API test client (the ``websockets`` package) and a real server for an app on a loopback port.

Every wait is bounded and waits on a frame or a close, never on time passing. Shared by the engine's streaming tests
and anything that relays the same WebSocket API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import uvicorn
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

Frame = dict[str, Any]
TokenCarrier = Literal["query", "x-api-key", "subprotocol", "bearer", "none"]
START_TIMEOUT = 30.0


@asynccontextmanager
async def serve_app(app: Any) -> AsyncIterator[str]:
    """The ASGI app (lifespan included) on uvicorn at an ephemeral loopback port; yields ``127.0.0.1:<port>``."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    async with asyncio.timeout(START_TIMEOUT):
        while not server.started:
            if task.done():
                task.result()
                raise AssertionError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def kind(frame: Frame) -> str:
    """A frame's kind: the platform message's own type (``conversation_created`` …) or the top-level type."""
    if frame.get("type") == "message":
        return str(frame["message"]["type"])
    return str(frame.get("type"))


@dataclass
class StreamClient:
    """One WebSocket connection; ``received`` keeps every text frame in order (``__PONG__`` as the string)."""

    connection: ClientConnection
    received: list[Frame | str] = field(default_factory=list)

    async def send_json(self, value: Any) -> None:
        await self.connection.send(json.dumps(value))

    async def send_text(self, text: str) -> None:
        await self.connection.send(text)

    async def send_audio(self, pcm: bytes, *, frame_bytes: int = 8192) -> None:
        for offset in range(0, len(pcm), frame_bytes):
            await self.connection.send(pcm[offset : offset + frame_bytes])

    async def next(self, within: float = 30.0) -> Frame | str:
        async with asyncio.timeout(within):
            raw = await self.connection.recv()
        assert isinstance(raw, str), "the server must send text frames only"
        frame: Frame | str = raw if raw == "__PONG__" else json.loads(raw)
        self.received.append(frame)
        return frame

    async def until(self, predicate: Callable[[Frame], bool], within: float = 30.0) -> Frame:
        """Read frames until one matches (bounded by ``within`` seconds in all)."""
        async with asyncio.timeout(within):
            while True:
                frame = await self.next(within)
                if isinstance(frame, dict) and predicate(frame):
                    return frame

    async def until_kind(self, wanted: str, within: float = 30.0) -> Frame:
        return await self.until(lambda frame: kind(frame) == wanted, within)

    async def closed(self, within: float = 30.0) -> tuple[int | None, str]:
        """Read until the server closes; the close code and reason."""
        async with asyncio.timeout(within):
            try:
                while True:
                    await self.next(within)
            except ConnectionClosed as closed:
                received = closed.rcvd
                return (received.code, received.reason) if received else (None, "")

    def kinds(self) -> list[str]:
        return [kind(f) if isinstance(f, dict) else f for f in self.received]


@asynccontextmanager
async def stream_client(
    host: str,
    connection_id: str,
    token: str | None,
    *,
    carrier: TokenCarrier = "query",
    path: str = "/v1/realtime/insights",
) -> AsyncIterator[StreamClient]:
    """A connection to ``ws://{host}{path}/{connection_id}`` with the token carried as Symbl's clients carry it."""
    url = f"ws://{host}{path}/{connection_id}"
    headers: dict[str, str] = {}
    subprotocols = None
    if token is not None and carrier == "query":
        url += f"?access_token={token}"
    elif token is not None and carrier == "x-api-key":
        headers["x-api-key"] = token
    elif token is not None and carrier == "bearer":
        headers["Authorization"] = f"Bearer {token}"
    elif token is not None and carrier == "subprotocol":
        subprotocols = [token]
    async with websockets.connect(
        url,
        additional_headers=headers,
        subprotocols=subprotocols,  # type: ignore[arg-type]
        open_timeout=START_TIMEOUT,
        max_size=None,
    ) as connection:
        yield StreamClient(connection)


def start_request(sample_rate: int = 16000, **fields: Any) -> Frame:
    """A ``start_request`` as the JS SDK writes one; ``fields`` override or add top-level keys."""
    request: Frame = {
        "type": "start_request",
        "insightTypes": ["question", "action_item", "follow_up"],
        "config": {
            "confidenceThreshold": 0.5,
            "languageCode": "en-US",
            "speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": sample_rate},
        },
        "speaker": {"userId": "natalia@example.com", "name": "Natalia"},
    }
    request.update(fields)
    return request


def pcm16(samples: npt.NDArray[np.float32], rate: int = 16000, source_rate: int = 16000) -> bytes:
    """float32 samples at ``source_rate`` as LINEAR16 bytes at ``rate`` (linear interpolation when they differ)."""
    if rate != source_rate:
        positions = np.arange(int(samples.size * rate / source_rate)) * source_rate / rate
        samples = np.interp(positions, np.arange(samples.size), samples).astype(np.float32)
    return bytes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


def silence(seconds: float, rate: int = 16000) -> bytes:
    return bytes(int(seconds * rate) * 2)
