"""ingest's Streaming API: Symbl's WebSocket paths, relayed to the provider frame for frame.

A client points at ingest with only the host changed. Its token (``access_token`` query, ``x-api-key`` or
``Authorization`` header, or the offered subprotocol) goes to the provider as it came, so the provider decides who
may stream; the subprotocol the provider echoes is echoed to the client. A handshake the provider refuses is
refused to the client with the provider's status and a JSON body. Every frame passes through unchanged, except that
a ``start_request`` without a ``webhookUrl`` gets ingest's (``PARLEY_WEBHOOK_URL``), so job-watcher hears when the
stream's conversation is ready.

A client that goes away without ``stop_request`` is stopped on its behalf, so the provider finishes what it heard;
a provider that goes away ends the client's stream with an error frame and close code 1011 (a provider that closes
on purpose, such as for a refused ``start_request``, passes its own code on). Either way the recorder publishes the
end of the stream and its job (``parley_ingest.live``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import websockets
from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from parley_ingest.live import EndReason, LiveStreamRecorder, Publish, with_pipeline_options

logger = logging.getLogger("parley.ingest.live")

STREAMING_PATHS = ("/v1/streaming/{connection_id}", "/v1/realtime/insights/{connection_id}")
# A client that left without stop_request: how long the provider may take to finish and close.
DEFAULT_STOP_TIMEOUT_SECONDS = 30.0
# Symbl documents 8,192-byte audio chunks; clients send more in practice. Larger frames are the provider's to refuse.
MAX_FRAME_BYTES = 1 << 20


@dataclass(frozen=True)
class LiveRelaySettings:
    provider_url: str  # the provider's REST base URL; its WebSocket base is the same host with ws(s)://
    webhook_url: str | None
    stop_timeout_seconds: float = DEFAULT_STOP_TIMEOUT_SECONDS
    redaction: dict[str, Any] | None = None  # the pipeline's redaction option, put in every start_request


def websocket_url(provider_url: str, path: str, query: str) -> str:
    scheme, host, base, _, _ = urlsplit(provider_url)
    return urlunsplit(("wss" if scheme == "https" else "ws", host, base.rstrip("/") + path, query, ""))


def offered_subprotocol(client: WebSocket) -> str | None:
    offered = client.headers.get("sec-websocket-protocol")
    return offered.split(",")[0].strip() if offered else None


def _error_frame(message: str, details: str) -> str:
    """Both error shapes Symbl's SDKs read: the Go and Web SDKs the top level, the JS SDK the wrapped message."""
    return json.dumps({"type": "error", "message": message, "details": details})


def build_live_router(settings: LiveRelaySettings, publish: Publish) -> APIRouter:
    """The streaming paths; ``publish`` commits a stream's events (``parley.live``, and its job at the end)."""
    router = APIRouter()

    async def relay(client: WebSocket, connection_id: str) -> None:
        path = client.url.path
        subprotocol = offered_subprotocol(client)
        # The token wherever the client put it: header, query (passed on with the path) or subprotocol.
        headers = {k: v for k, v in client.headers.items() if k.lower() in ("x-api-key", "authorization")}
        upstream_url = websocket_url(settings.provider_url, path, client.url.query)
        try:
            upstream = await websockets.connect(
                upstream_url,
                additional_headers=headers,
                subprotocols=[Subprotocol(subprotocol)] if subprotocol else None,
                max_size=MAX_FRAME_BYTES,
                compression=None,
            )
        except InvalidStatus as refused:
            status = refused.response.status_code
            body = refused.response.body or b""
            try:
                content = json.loads(body) if body else {"message": f"the provider refused the stream ({status})"}
            except ValueError:
                content = {"message": body.decode(errors="replace")[:500]}
            await client.send_denial_response(JSONResponse(content, status_code=status))
            return
        except (OSError, TimeoutError, InvalidHandshake) as error:
            logger.warning("the provider's Streaming API is unreachable: %s", error)
            await client.send_denial_response(
                JSONResponse({"message": "the provider's Streaming API is unreachable, try again later"}, 502)
            )
            return
        # The token in the subprotocol was good enough for the provider: echo it, as Symbl's JS SDK requires.
        await client.accept(subprotocol=upstream.subprotocol or subprotocol)
        recorder = LiveStreamRecorder(connection_id, publish, webhook_url=settings.webhook_url)
        recorder.start()
        reason = await _pump(client, upstream, recorder, settings)
        await recorder.finish(reason)

    for path in STREAMING_PATHS:
        router.add_api_websocket_route(path, relay)
    return router


async def _pump(
    client: WebSocket, upstream: ClientConnection, recorder: LiveStreamRecorder, settings: LiveRelaySettings
) -> EndReason:
    """Relay both ways until the stream ends; say which side ended it."""

    async def from_client() -> None:
        try:
            while True:
                message = await client.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:
                    text = message["text"]
                    recorder.client_sent(text)
                    await upstream.send(with_pipeline_options(text, recorder.webhook_url, settings.redaction))
                elif message.get("bytes") is not None:
                    await upstream.send(message["bytes"])
        except (WebSocketDisconnect, ConnectionClosed):
            return

    async def from_provider() -> None:
        with contextlib.suppress(ConnectionClosed):
            async for frame in upstream:
                if isinstance(frame, str):
                    recorder.provider_sent(frame)
                    if client.client_state is WebSocketState.CONNECTED:
                        with contextlib.suppress(Exception):
                            await client.send_text(frame)

    client_side = asyncio.create_task(from_client())
    provider_side = asyncio.create_task(from_provider())
    done, _ = await asyncio.wait({client_side, provider_side}, return_when=asyncio.FIRST_COMPLETED)
    if provider_side in done:
        client_side.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await client_side
        if recorder.completed:  # the provider finished the conversation: after a stop, or its own limits
            await _close(client, 1000, None)
            return "stopped"
        code = upstream.close_code
        if code is not None and code not in (1005, 1006):
            # The provider closed on purpose (a refused start_request, an oversize frame…) and said why in an error
            # frame already relayed: the client gets the same code.
            await _close(client, code, None)
        else:
            await _close(client, 1011, _error_frame("provider_disconnected", "the provider ended the stream"))
        return "provider_disconnected"
    # The client went away: finish on its behalf, so the provider keeps everything it recognised.
    if not recorder.stop_requested:
        with contextlib.suppress(ConnectionClosed):
            await upstream.send(json.dumps({"type": "stop_request"}))
    try:
        await asyncio.wait_for(provider_side, settings.stop_timeout_seconds)
    except TimeoutError:
        logger.warning(
            "the provider did not finish the stream within %.0fs of the client leaving", settings.stop_timeout_seconds
        )
    await upstream.close()
    return "stopped" if recorder.stop_requested else "client_disconnected"


async def _close(client: WebSocket, code: int, error: str | None) -> None:
    if client.client_state is not WebSocketState.CONNECTED:
        return
    with contextlib.suppress(Exception):
        if error is not None:
            await client.send_text(error)
        await client.close(code)
