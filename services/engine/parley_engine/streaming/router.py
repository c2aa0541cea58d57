"""The Streaming API's WebSocket routes: the thin edge between a socket and a ``StreamSession``.

``/v1/streaming/{connectionId}`` and ``/v1/realtime/insights/{connectionId}`` (the path every Symbl SDK uses) carry
a live stream; ``/v1/subscribe/{connectionId}`` lets listeners receive a copy of its frames. The token may come as
``?access_token=`` (or ``?accessToken=``), ``x-api-key``, ``Authorization: Bearer`` or the WebSocket subprotocol
(the JS and Web SDKs), whose offered value is echoed, as their handshake requires. A bad token gets an error
frame and close 1008; past ``PARLEY_STREAMING_MAX_STREAMS`` the upgrade is answered with HTTP 429. A second socket
on a ``connectionId`` another socket is serving gets an error frame (``connection_in_use``) and close 1008; one on
a ``connectionId`` whose stream waits for its client (``noConnectionTimeout``) takes that stream back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import MutableMapping
from typing import Any, NamedTuple

from fastapi import APIRouter, WebSocket
from fastapi.responses import JSONResponse
from parley_engine.auth import TOKEN_REJECTED
from parley_engine.dependencies import EngineComponents
from parley_engine.settings import EngineSettings
from parley_engine.streaming import frames
from parley_engine.streaming.hub import ConnectionInUse, Outbox, SlowReader, StreamSink, TooManyStreams
from parley_engine.streaming.session import (
    INTERNAL_ERROR,
    NORMAL_CLOSURE,
    POLICY_VIOLATION,
    CloseStream,
    StreamSession,
)
from parley_engine.webhooks import webhook_refusal
from starlette.websockets import WebSocketDisconnect, WebSocketState

log = logging.getLogger(__name__)
GOING_AWAY = 1001


class Closing(NamedTuple):
    """How a stream's socket ends: its close code and reason, and how long its stream waits for the client to come
    back (0: the stream has ended)."""

    code: int
    reason: str
    reconnect_window: float = 0.0


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
            ticket = service.hub.admit(connectionId)
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
        if not hub.subscribe(connectionId, outbox):
            await _close(websocket, NORMAL_CLOSURE, "stream ended")
            return
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
    hub = service.hub
    try:
        session = hub.claim(connection_id)
    except ConnectionInUse:
        message = f"connection {connection_id} is already streaming on another socket: use another connectionId"
        for frame in frames.error_frames(message, "connection_in_use"):
            await websocket.send_json(frame)
        await _close(websocket, POLICY_VIOLATION, "connection_in_use")
        return
    outbox = Outbox(settings.streaming_send_queue_frames, settings.streaming_send_timeout_seconds)
    sink = StreamSink(outbox, hub, connection_id)
    closing = Closing(NORMAL_CLOSURE, "stream ended")
    try:
        if session is None:
            session = service.new_session(
                connection_id,
                sink,
                settings,
                summary_base_url=str(websocket.base_url).replace("ws", "http", 1).rstrip("/"),
                webhook_refusal=lambda url: webhook_refusal(url, settings),
            )
        else:
            await session.rejoin(sink)
        closing = await _run(websocket, session, outbox, settings)
    finally:
        if session is not None and closing.reconnect_window > 0:
            # Its frames still reach the subscribers while the stream waits for its client.
            session.disconnect(StreamSink(None, hub, connection_id))
            hub.wait_for_reconnect(connection_id, session, closing.reconnect_window)
        else:
            try:
                if session is not None:
                    await session.end()  # already ended on every ordinary way out; this covers the others
            finally:
                hub.stream_ended(connection_id)
    await _close(websocket, closing.code, closing.reason)


async def _run(websocket: WebSocket, session: StreamSession, outbox: Outbox, settings: EngineSettings) -> Closing:
    """Read the client's frames into the session and write its frames out, until one side is done."""
    connection_id = session.connection_id
    writer = asyncio.create_task(outbox.run(websocket), name=f"stream-{connection_id}-writer")
    reader = asyncio.create_task(_read(websocket, session, outbox, settings), name=f"stream-{connection_id}-reader")
    try:
        done, _ = await asyncio.wait({writer, reader}, return_when=asyncio.FIRST_COMPLETED)
        if reader in done:
            closing = reader.result()
            outbox.close()
            # The reader has decided how the stream goes on; a client too slow or gone by now changes nothing.
            with contextlib.suppress(SlowReader, WebSocketDisconnect, OSError):
                await writer
            return closing
        if not isinstance(writer.exception(), SlowReader):
            # The socket closed under the writer: the reader sees the client leave too, and decides what follows.
            return await reader
        # The writer gave up on a slow reader: stop reading it too; its conversation still completes.
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader
        await session.end()
        return Closing(POLICY_VIOLATION, "client too slow")
    except Exception:
        log.exception("stream %s failed", connection_id)
        await session.end()
        return Closing(INTERNAL_ERROR, "internal error")
    finally:
        for task in (writer, reader):
            task.cancel()


async def _read(websocket: WebSocket, session: StreamSession, outbox: Outbox, settings: EngineSettings) -> Closing:
    """Feed the client's frames to the session until it stops, leaves, times out or breaks the protocol."""
    deadline = session.began_at + settings.streaming_max_duration_seconds
    try:
        while True:
            now = time.monotonic()
            if session.state == "connected":
                wait = settings.streaming_start_timeout_seconds
            elif (pause_deadline := session.pause_deadline) is not None:
                wait = pause_deadline - now
            else:
                wait = settings.streaming_idle_timeout_seconds
            wait = min(wait, deadline - now)
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    message: MutableMapping[str, Any] = await websocket.receive()
            except TimeoutError:
                return await _timed_out(session, time.monotonic() >= deadline, settings)
            if message["type"] == "websocket.disconnect":
                return await _client_gone(session)
            text, data = message.get("text"), message.get("bytes")
            if text == frames.PING:
                outbox.send_text(frames.PONG)
            elif text is not None:
                await session.receive_text(text)
            elif data is not None:
                await session.receive_audio(data)
    except CloseStream as close:
        await session.end()
        return Closing(close.code, close.reason)
    except WebSocketDisconnect:
        return await _client_gone(session)


async def _client_gone(session: StreamSession) -> Closing:
    """The socket dropped without a stop: a started stream waits ``noConnectionTimeout`` for its client to come
    back; any other ends now."""
    window = session.reconnect_window
    if window <= 0:
        await session.end()
    return Closing(NORMAL_CLOSURE, "client left", window)


async def _timed_out(session: StreamSession, over_time: bool, settings: EngineSettings) -> Closing:
    if session.state == "connected":
        seconds = settings.streaming_start_timeout_seconds
        session.report_error("start_timeout", f"no start_request within {seconds:g} s")
        # A socket that came back to a waiting stream but never restarted it leaves the stream waiting again.
        return Closing(POLICY_VIOLATION, "no start_request", session.reconnect_window)
    if over_time:
        seconds = settings.streaming_max_duration_seconds
        session.report_error("max_duration", f"the stream reached its maximum duration of {seconds:g} s")
    elif session.state == "paused":
        session.report_error(
            "stop_request_timeout", "no start_request within disconnectOnStopRequestTimeout of the stop_request"
        )
    else:
        seconds = settings.streaming_idle_timeout_seconds
        session.report_error("idle_timeout", f"no frame received for {seconds:g} s")
    await session.complete()
    return Closing(NORMAL_CLOSURE, "stream ended")
