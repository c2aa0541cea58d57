"""The Telephony API's routes: ``POST /v1/endpoint:connect`` (start or stop a call) and the call's ``eventUrl``.

A started call answers 201 with Symbl's body (``connectionId``, ``conversationId``, ``eventUrl``,
``resultWebSocketUrl``) as soon as its conversation exists; the dialing goes on in the background, and its live
frames (the Streaming API's) reach whoever subscribes to ``resultWebSocketUrl``. ``stop`` hangs up (200, the same
body). ``eventUrl`` takes speaker events (``started_speaking`` / ``stopped_speaking`` with the ``user``), which name
the speaker of the sentences recognized from then on.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from parley_engine.async_api import invalid
from parley_engine.auth import require_access_token
from parley_engine.dependencies import ComponentsDep
from parley_engine.streaming.frames import StreamSpeaker
from parley_engine.telephony.calls import TelephonyCalls
from parley_engine.telephony.request import ConnectRequest, StartCall
from parley_shared.http_errors import ApiProblem, json_object_body
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class SpeakerEvent(BaseModel):
    """Symbl's ``SpeakerEvent`` (the SDKs' ``pushEventOnConnection``)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: Literal["started_speaking", "stopped_speaking"]
    user: StreamSpeaker
    timestamp: str | None = None


def _calls(components: ComponentsDep) -> TelephonyCalls:
    return components.telephony


CallsDep = Annotated[TelephonyCalls, Depends(_calls)]


def build_telephony_router() -> APIRouter:
    router = APIRouter(tags=["telephony"], dependencies=[Depends(require_access_token)])

    @router.post(
        "/v1/endpoint:connect",
        summary="Dial into a call over SIP (or a phone number through the SIP trunk) and listen; or stop it",
        status_code=201,
        responses={
            200: {"description": "the call was stopped"},
            400: {"description": "invalid request, or an endpoint the engine will not dial"},
            404: {"description": "stop: no such call in progress"},
            429: {"description": "too many calls at once"},
        },
    )
    async def connect(request: Request, calls: CallsDep, components: ComponentsDep) -> JSONResponse:
        body = await json_object_body(request)
        if body.get("operation") not in ("start", "stop"):
            raise ApiProblem(400, "invalid request: operation: must be 'start' or 'stop'")
        try:
            wanted = ConnectRequest.model_validate({"request": body}).request
        except ValidationError as error:
            raise invalid(error) from None
        if isinstance(wanted, StartCall):
            base = (components.settings.public_base_url or str(request.base_url)).rstrip("/")
            started = await calls.start(wanted, base_url=base)
            return JSONResponse(started.model_dump(by_alias=True), status_code=201)
        stopped = await calls.stop(wanted.connection_id)
        return JSONResponse(stopped.model_dump(by_alias=True), status_code=200)

    @router.post(
        "/v1/event/{connectionId}",
        summary="Push a speaker event (started_speaking / stopped_speaking) onto a call",
        status_code=202,
    )
    async def push_event(connectionId: str, request: Request, calls: CallsDep) -> dict[str, str]:
        body = await json_object_body(request)
        try:
            event = SpeakerEvent.model_validate(body)
        except ValidationError as error:
            raise invalid(error) from None
        if not (event.user.name or event.user.user_id):
            raise ApiProblem(400, "invalid request: user: give a name or a userId")
        calls.speaker_event(connectionId, event.type, event.user)
        return {"status": "accepted"}

    return router
