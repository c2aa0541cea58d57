"""A scripted Streaming API peer: it answers a client's frames with Symbl's, as the engine does, without speech."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from parley_ingest.live import is_stop_request
from websockets.asyncio.server import ServerConnection


def wrapped(kind: str, **fields: Any) -> str:
    return json.dumps({"type": "message", "message": {"type": kind, **fields}})


def message_response(text: str) -> str:
    return json.dumps(
        {"type": "message_response", "messages": [{"id": f"m-{text}", "payload": {"content": text}, "from": {}}]}
    )


@dataclass
class ScriptedProvider:
    """Answers like the engine: the start frames, a message and an insight per audio frame, and at the stop the
    completion frames and close 1000. ``hang_up_after_audio`` drops the connection instead (a provider crash)."""

    hang_up_after_audio: int | None = None
    handshakes: list[dict[str, str]] = field(default_factory=list)
    received: list[str | bytes] = field(default_factory=list)
    stopped: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, connection: ServerConnection) -> None:
        request = connection.request
        assert request is not None
        self.handshakes.append({"path": request.path, **dict(request.headers.raw_items())})
        audio = 0
        async for frame in connection:
            self.received.append(frame)
            if isinstance(frame, bytes):
                audio += 1
                if audio == self.hang_up_after_audio:
                    connection.transport.abort()  # no close frame: the provider crashed
                    return
                await connection.send(message_response(f"sentence {audio}"))
                await connection.send(
                    json.dumps({"type": "insight_response", "insights": [{"id": f"i-{audio}", "type": "question"}]})
                )
            elif is_stop_request(frame):
                self.stopped.set()
                await connection.send(wrapped("conversation_completed", conversationId="5815", data={"jobId": "job-1"}))
                await connection.send(wrapped("recognition_stopped"))
                await connection.close(1000)
                return
            elif json.loads(frame).get("type") == "start_request":
                await connection.send(
                    wrapped("conversation_created", data={"conversationId": "5815", "jobId": "job-1"})
                )
                await connection.send(wrapped("started_listening"))
                await connection.send(wrapped("recognition_started", data={"conversationId": "5815"}))


def echo_offered(connection: ServerConnection, offered: Any) -> Any:
    """Like the engine: the token a client offers as its subprotocol is echoed."""
    return offered[0] if offered else None


def refusing(status: int) -> Any:
    def process_request(connection: ServerConnection, request: Any) -> Any:
        return connection.respond(status, json.dumps({"message": "Token validation failed for provided token."}))

    return process_request
