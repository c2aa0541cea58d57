"""ingest's Telephony API: ``POST /v1/endpoint:connect`` relayed to the provider, and each call's live results on
``parley.live``.

A ``start`` goes to the provider with ingest's job webhook (``PARLEY_WEBHOOK_URL``, unless the client named one) and
the pipeline's redaction, and with the client's token as it came (as the Streaming API relay does: the provider
decides who may call). Its 201 comes back to the client unchanged. ingest then subscribes to the call's
``resultWebSocketUrl`` with the same token and records what the provider recognises, exactly as for a relayed
stream (``LiveStreamRecorder``): ``parley.live`` events in order while the call lasts, then ``LiveStreamEnded`` and
the call's ``JobSubmitted`` in one transaction, so job-watcher watches the call's job and one ``InsightsReady`` (or
``JobFailed``, for a call nobody answered) follows. ``stop`` and everything else is relayed as it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import httpx
import websockets
from fastapi import APIRouter, Request
from fastapi.responses import Response
from parley_shared.http_errors import ApiProblem, json_object_body
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from parley_ingest.live import EndReason, LiveStreamRecorder, Publish, with_pipeline_fields
from parley_ingest.live_api import LiveRelaySettings, websocket_url

logger = logging.getLogger("parley.ingest.calls")

AUTH_HEADERS = ("x-api-key", "authorization")
# How long a relayed call may last before ingest stops listening for its end (the engine's streams end by 4 h).
MAX_CALL_SECONDS = 4 * 3600 + 600


class CallRelay:
    """The calls ingest relayed and is recording; ``close`` ends every recording (what is recorded is published)."""

    def __init__(self, settings: LiveRelaySettings, publish: Publish, http: httpx.AsyncClient | None = None) -> None:
        self._settings = settings
        self._publish = publish
        self._http = http or httpx.AsyncClient(timeout=httpx.Timeout(30.0))
        self._recordings: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> CallRelay:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    async def connect(self, request: Request) -> Response:
        body = await json_object_body(request)
        headers = {k: v for k, v in request.headers.items() if k.lower() in AUTH_HEADERS}
        starting = body.get("operation") == "start"
        if starting:
            body = with_pipeline_fields(body, self._settings.webhook_url, self._settings.redaction)
        try:
            answer = await self._http.post(
                f"{self._settings.provider_url.rstrip('/')}/v1/endpoint:connect", json=body, headers=headers
            )
        except httpx.HTTPError as error:
            logger.warning("the provider's Telephony API is unreachable: %s", error)
            raise ApiProblem(502, "the provider's Telephony API is unreachable, try again later") from None
        if starting and answer.status_code == 201:
            self._record(answer.json(), headers)
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    def _record(self, started: dict[str, Any], headers: dict[str, str]) -> None:
        connection_id = str(started.get("connectionId") or "")
        if not connection_id or not started.get("conversationId"):
            logger.warning("the provider started a call without naming its connection and conversation: not recorded")
            return
        task = asyncio.create_task(self._recording(started, headers), name=f"call {connection_id}")
        self._recordings.add(task)
        task.add_done_callback(self._recordings.discard)

    async def _recording(self, started: dict[str, Any], headers: dict[str, str]) -> None:
        connection_id = str(started["connectionId"])
        recorder = LiveStreamRecorder(connection_id, self._publish, webhook_url=self._settings.webhook_url)
        recorder.start()
        # The subscription opens after the provider announced the conversation: announce it as the stream did.
        created = {"conversationId": str(started["conversationId"]), "jobId": started.get("jobId")}
        announced = {"type": "message", "message": {"type": "conversation_created", "data": created}}
        recorder.provider_sent(json.dumps(announced))
        reason: EndReason = "provider_disconnected"
        try:
            reason = await self._listen(connection_id, recorder, headers)
        except Exception:
            logger.exception("call %s: recording its live results failed", connection_id)
        finally:
            await recorder.finish(reason)

    async def _listen(self, connection_id: str, recorder: LiveStreamRecorder, headers: dict[str, str]) -> EndReason:
        """Record the call's frames until the provider closes the subscription (the call's stream has ended)."""
        url = websocket_url(self._settings.provider_url, f"/v1/subscribe/{connection_id}", "")
        try:
            subscription = await websockets.connect(url, additional_headers=headers, compression=None)
        except (InvalidHandshake, OSError, TimeoutError) as error:
            logger.warning("call %s: could not subscribe to its results (%s)", connection_id, error)
            return "provider_disconnected"
        async with subscription:
            try:
                async with asyncio.timeout(MAX_CALL_SECONDS):
                    async for frame in subscription:
                        if isinstance(frame, str):
                            recorder.provider_sent(frame)
            except ConnectionClosed:
                return "provider_disconnected"
            except TimeoutError:
                logger.warning("call %s: still going after %d s; no longer recorded", connection_id, MAX_CALL_SECONDS)
        return "stopped"

    async def close(self) -> None:
        """Stop recording (the service is stopping): the calls go on at the provider, whose webhook reports them."""
        for task in list(self._recordings):
            task.cancel()
        await asyncio.gather(*self._recordings, return_exceptions=True)
        await self._http.aclose()


def build_calls_router(relay: CallRelay) -> APIRouter:
    router = APIRouter(tags=["telephony"])

    @router.post("/v1/endpoint:connect", summary="Symbl's Telephony API, relayed to the provider")
    async def connect(request: Request) -> Response:
        return await relay.connect(request)

    return router
