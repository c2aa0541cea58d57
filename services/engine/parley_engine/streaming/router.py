"""The Streaming API's WebSocket routes: the thin edge between a socket and a ``StreamSession``.

``/v1/streaming/{connectionId}`` and ``/v1/realtime/insights/{connectionId}`` (the path every Symbl SDK uses) carry
a live stream; ``/v1/subscribe/{connectionId}`` lets listeners receive a copy of its frames. The token may come as
``?access_token=`` (or ``?accessToken=``), ``x-api-key``, ``Authorization: Bearer`` or the WebSocket subprotocol
(the JS and Web SDKs), whose offered value is echoed, as their handshake requires. A bad token gets an error
frame and close 1008; past ``PARLEY_STREAMING_MAX_STREAMS`` the upgrade is answered with HTTP 429.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import MutableMapping
from typing import Any

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from parley_engine.auth import TOKEN_REJECTED
from parley_engine.dependencies import EngineComponents
from parley_engine.settings import EngineSettings
from parley_engine.streaming import frames
from parley_engine.streaming.hub import Outbox, SlowReader, StreamSink, TooManyStreams
from parley_engine.streaming.session import (
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    CloseStream,
    SessionLimits,
    StreamSession,
)
from starlette.websockets import WebSocketDisconnect, WebSocketState

log = logging.getLogger(__name__)
GOING_AWAY = 1001


def offered_token(websocket: WebSocket) -> tuple[str | None, str | None]:
    """The presented token, and the subprotocol to echo (the first one offered, if any)."""
    offered = [p.strip() for p in websocket.scope.get("subprotocols") or [] if p.strip()]
    subprotocol = offered[0] if offered else None
    authorization = websocket.headers.get("authorization") or ""
    scheme, _, bearer = authorization.partition(" ")
    token = (
        websocket.query_params.get("access_token")
        or websocket.query_params.get("accessToken")
        or websocket.headers.get("x-api-key")
        or (bearer.strip() if scheme.lower() == "bearer" else None)
        or subprotocol
    )
    return token or None, subprotocol


def _components(websocket: WebSocket) -> EngineComponents | None:
    components: EngineComponents | None = getattr(websocket.app.state, "components", None)
    return components


async def _accept_authorized(websocket: WebSocket, components: EngineComponents) -> bool:
    """Accept the upgrade (echoing the subprotocol); a missing or wrong token is told so and closed."""
    token, subprotocol = offered_token(websocket)
    await websocket.accept(subprotocol=subprotocol)
    if token is not None and components.token_authority.verify(token):
        return True
    for frame in frames.error_frames(TOKEN_REJECTED, "unauthorized"):
        await websocket.send_json(frame)
    await websocket.close(POLICY_VIOLATION, "unauthorized")
    return False


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.application_state != WebSocketState.DISCONNECTED:
        with contextlib.suppress(Exception):
            await websocket.close(code, reason[:120])


def build_streaming_router() -> APIRouter:
    router = APIRouter(tags=["streaming"])

    @router.websocket("/v1/streaming/{connectionId}")
    @router.websocket("/v1/realtime/insights/{connectionId}")
    async def stream(websocket: WebSocket, connectionId: str) -> None:
        components = _components(websocket)
        if components is None:
            await websocket.close(INTERNAL_ERROR)
            return
        service = components.streaming
        settings = components.settings
        try:
            ticket = service.hub.admit()
        except TooManyStreams as refused:
            message = f"This engine serves at most {refused} concurrent streams. Please try again later."
            await websocket.send_denial_response(
                JSONResponse({"statusCode": 429, "message": message}, status_code=429, headers={"Retry-After": "5"})
            )
            return
        try:
            if await _accept_authorized(websocket, components):
                await _serve(websocket, connectionId, components, settings)
        finally:
            service.hub.release(ticket)
            service.hub.stream_ended(connectionId)

    @router.websocket("/v1/subscribe/{connectionId}")
    async def subscribe(websocket: WebSocket, connectionId: str) -> None:
        components = _components(websocket)
        if components is None:
            await websocket.close(INTERNAL_ERROR)
            return
        if not await _accept_authorized(websocket, components):
            return
        settings = components.settings
        outbox = Outbox(settings.streaming_send_queue_frames, settings.streaming_send_timeout_seconds)
        hub = components.streaming.hub
        hub.subscribe(connectionId, outbox)
        writer = asyncio.create_task(outbox.run(websocket))
        reader = asyncio.create_task(_listen_only(websocket, outbox))
        try:
            done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
            code, reason = NORMAL_CLOSURE, "stream ended"
            if writer in done and isinstance(writer.exception(), SlowReader):
                code, reason = POLICY_VIOLATION, "client too slow"
        finally:
            hub.unsubscribe(connectionId, outbox)
            for task in (writer, reader):
                task.cancel()
        await _close(websocket, code, reason)

    return router


async def _listen_only(websocket: WebSocket, outbox: Outbox) -> None:
    """A subscriber sends nothing but pings; it leaves by closing."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") == frames.PING:
            outbox.send_text(frames.PONG)


async def _serve(
    websocket: WebSocket, connection_id: str, components: EngineComponents, settings: EngineSettings
) -> None:
    service = components.streaming
    outbox = Outbox(settings.streaming_send_queue_frames, settings.streaming_send_timeout_seconds)
    session = StreamSession(
        connection_id,
        StreamSink(outbox, service.hub, connection_id),
        service.conversations,
        service.workers,
        service.vad_factory,
        limits=SessionLimits(
            max_frame_bytes=settings.streaming_max_frame_bytes,
            summary_base_url=str(websocket.base_url).replace("ws", "http", 1).rstrip("/"),
        ),
        segmenter_settings=service.segmenter,
    )
    writer = asyncio.create_task(outbox.run(websocket), name=f"stream-{connection_id}-writer")
    reader = asyncio.create_task(_read(websocket, session, outbox, settings), name=f"stream-{connection_id}-reader")
    code, reason = NORMAL_CLOSURE, "stream ended"
    try:
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            code, reason = reader.result()
            outbox.close()
            with contextlib.suppress(SlowReader):
                await writer
        else:
            # The writer gave up on a slow reader: stop reading it too; its conversation still completes.
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            code, reason = POLICY_VIOLATION, "client too slow"
            await session.end()
    except Exception:
        log.exception("stream %s failed", connection_id)
        code, reason = INTERNAL_ERROR, "internal error"
        await session.end()
    finally:
        for task in (writer, reader):
            task.cancel()
    await _close(websocket, code, reason)


async def _read(
    websocket: WebSocket, session: StreamSession, outbox: Outbox, settings: EngineSettings
) -> tuple[int, str]:
    """Feed the client's frames to the session until it stops, leaves, times out or breaks the protocol."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + settings.streaming_max_duration_seconds
    try:
        while True:
            if session.state == "connected":
                wait = settings.streaming_start_timeout_seconds
            else:
                wait = settings.streaming_idle_timeout_seconds
            wait = min(wait, deadline - loop.time())
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    message: MutableMapping[str, Any] = await websocket.receive()
            except TimeoutError:
                return await _timed_out(session, loop.time() >= deadline, settings)
            if message["type"] == "websocket.disconnect":
                await session.end()
                return NORMAL_CLOSURE, "client left"
            text, data = message.get("text"), message.get("bytes")
            if text == frames.PING:
                outbox.send_text(frames.PONG)
            elif text is not None:
                await session.receive_text(text)
            elif data is not None:
                await session.receive_audio(data)
    except CloseStream as close:
        await session.end()
        return close.code, close.reason
    except WebSocketDisconnect:
        await session.end()
        return NORMAL_CLOSURE, "client left"


async def _timed_out(session: StreamSession, over_time: bool, settings: EngineSettings) -> tuple[int, str]:
    if session.state == "connected":
        seconds = settings.streaming_start_timeout_seconds
        session.report_error("start_timeout", f"no start_request within {seconds:g} s")
        return POLICY_VIOLATION, "no start_request"
    if over_time:
        seconds = settings.streaming_max_duration_seconds
        session.report_error("max_duration", f"the stream reached its maximum duration of {seconds:g} s")
    else:
        seconds = settings.streaming_idle_timeout_seconds
        session.report_error("idle_timeout", f"no frame received for {seconds:g} s")
    await session.complete()
    return NORMAL_CLOSURE, "stream ended"
