"""The Telephony API's calls: each one a SIP call whose audio feeds a live stream, from dial to conversation.

``start`` checks the endpoint (a SIP URI whose host must be public unless ``PARLEY_ALLOW_PRIVATE_MEDIA_URLS``; a
phone number only through the configured trunk), opens the stream's conversation and job at once (the 201 carries
the ``conversationId``) and dials in the background. The stream is the Streaming API's own ``StreamSession``, fed
the call's RTP payloads instead of a socket's binary frames, so its live frames reach ``/v1/subscribe/{id}`` (and
``resultWebSocketUrl``) exactly as a stream's do, and the finished call is analysed, stored and reported to its
job's webhook like any stream. A call never answered (refused, busy, no answer) fails its job with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from parley_engine.settings import EngineSettings
from parley_engine.streaming.frames import StreamSpeaker
from parley_engine.streaming.hub import StreamSink, TooManyStreams
from parley_engine.streaming.service import StreamingService
from parley_engine.streaming.session import CloseStream, StreamSession
from parley_engine.telephony.ports import CallEnd, CallFailed, DialRequest, SipCall, SipCredentials, SipDialer
from parley_engine.telephony.request import (
    ConnectResponse,
    PstnEndpoint,
    SipAddress,
    StartCall,
    parse_sip_uri,
)
from parley_engine.webhooks import webhook_refusal
from parley_shared.http_errors import ApiProblem
from parley_shared.url_safety import Resolver, UnfetchableUrl, check_url, system_resolver

log = logging.getLogger(__name__)

# What the call's stream is told its audio is until the far end has chosen a codec (then a modify_request).
FIRST_ENCODING = {"encoding": "MULAW", "sampleRateHertz": 8000}
SDP_CODECS = {"OPUS": "opus", "PCMU": "PCMU", "MULAW": "PCMU", "PCMA": "PCMA"}


@dataclass
class Call:
    session: StreamSession
    response: ConnectResponse  # what start answered (and stop answers again)
    ticket: object  # the hub's admission, given back when the call ends
    task: asyncio.Task[None] | None = None
    answered: SipCall | None = None
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def connection_id(self) -> str:
        return self.response.connection_id


class TelephonyCalls:
    def __init__(
        self,
        settings: EngineSettings,
        dialer: SipDialer,
        streaming: StreamingService,
        *,
        resolve: Resolver = system_resolver,
    ) -> None:
        self._settings = settings
        self._dialer = dialer
        self._streaming = streaming
        self._resolve = resolve
        self._calls: dict[str, Call] = {}

    @property
    def active_calls(self) -> int:
        return len(self._calls)

    # ---- the API's operations ---------------------------------------------------------------------------------

    async def start(self, request: StartCall, *, base_url: str) -> ConnectResponse:
        if len(self._calls) >= self._settings.telephony_max_calls:
            raise ApiProblem(
                429, f"This engine holds at most {self._settings.telephony_max_calls} calls at once. Try again later."
            )
        dial = await self._dial_request(request)
        if request.webhook_url:
            refusal = await webhook_refusal(request.webhook_url, self._settings, resolve=self._resolve)
            if refusal is not None:
                raise ApiProblem(400, f"invalid request: {refusal}")
        hub = self._streaming.hub
        connection_id = str(uuid.uuid4())
        try:
            ticket = hub.admit(connection_id)
        except TooManyStreams as refused:
            raise ApiProblem(
                429, f"This engine serves at most {refused} live streams at once, calls included. Try again later."
            ) from None
        hub.claim(connection_id)
        # The call's subscribers are its only listeners: no socket of its own.
        sink = StreamSink(None, hub, connection_id)
        session = self._streaming.new_session(connection_id, sink, self._settings, summary_base_url=base_url)
        try:
            await session.receive_text(json.dumps(self._start_request(request)))
        except CloseStream as refused:
            hub.stream_ended(connection_id)
            hub.release(ticket)
            raise ApiProblem(400, f"invalid request: {refused.reason}") from None
        assert session.conversation_id is not None and session.job_id is not None
        websocket_base = base_url.replace("http", "ws", 1)
        response = ConnectResponse(
            event_url=f"{base_url}/v1/event/{connection_id}",
            result_web_socket_url=f"{websocket_base}/v1/subscribe/{connection_id}",
            connection_id=connection_id,
            conversation_id=session.conversation_id,
            job_id=session.job_id,
        )
        call = Call(session, response, ticket)
        self._calls[connection_id] = call
        dtmf = request.endpoint.dtmf if isinstance(request.endpoint, PstnEndpoint) else None
        call.task = asyncio.create_task(self._run(call, dial, dtmf), name=f"call-{connection_id}")
        log.info("call %s: dialing %s for conversation %s", connection_id, dial.uri, response.conversation_id)
        return response

    async def stop(self, connection_id: str) -> ConnectResponse:
        call = self._calls.get(connection_id)
        if call is None:
            raise ApiProblem(404, f"no call with connectionId {connection_id!r} is in progress on this engine")
        call.stop_requested.set()
        if call.answered is not None:
            await call.answered.hang_up()
        return call.response

    def speaker_event(self, connection_id: str, kind: str, speaker: StreamSpeaker) -> None:
        """``started_speaking``: the sentences from now on are ``speaker``'s; ``stopped_speaking``: no longer."""
        call = self._calls.get(connection_id)
        if call is None:
            raise ApiProblem(404, f"no call with connectionId {connection_id!r} is in progress on this engine")
        if kind == "started_speaking":
            call.session.speaker_changed(speaker)
        else:
            call.session.speaker_changed(None)

    async def close(self) -> None:
        """The engine is stopping: hang up every call; each ends its conversation as a hang-up does."""
        for call in list(self._calls.values()):
            call.stop_requested.set()
            if call.answered is not None:
                with contextlib.suppress(Exception):
                    await call.answered.hang_up()
        tasks = [call.task for call in self._calls.values() if call.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        await self._dialer.close()

    # ---- one call ---------------------------------------------------------------------------------------------

    async def _run(self, call: Call, dial: DialRequest, dtmf: str | None) -> None:
        session, hub = call.session, self._streaming.hub
        try:
            answered = await self._answered(call, dial)
            if answered is None:
                return
            call.answered = answered
            if call.stop_requested.is_set():
                await answered.hang_up()
            audio = answered.audio_format
            if audio.encoding != "MULAW":
                modify = {"encoding": audio.encoding, "sampleRateHertz": audio.sample_rate}
                await session.receive_text(json.dumps({"type": "modify_request", "speechRecognition": modify}))
            sending_dtmf = asyncio.create_task(answered.send_dtmf(dtmf)) if dtmf else None
            end = await self._listen(answered, session)
            if sending_dtmf is not None:
                sending_dtmf.cancel()
            log.info("call %s ended: %s (%s)", call.connection_id, end.cause, end.reason)
            session.report_status("call_ended", {"cause": end.cause, "reason": end.reason})
            await session.complete()
        except CloseStream as closed:
            log.warning("call %s: its stream refused the call's audio (%s)", call.connection_id, closed.reason)
            await self._hang_up(call)
            await session.end()
        except Exception:
            log.exception("call %s failed", call.connection_id)
            await self._hang_up(call)
            await session.end()
        finally:
            self._calls.pop(call.connection_id, None)
            hub.stream_ended(call.connection_id)
            hub.release(call.ticket)

    async def _answered(self, call: Call, dial: DialRequest) -> SipCall | None:
        """The answered call, or None once its job has failed (refused, not answered, stopped while ringing)."""
        dialing = asyncio.create_task(self._dialer.dial(dial))
        stopping = asyncio.create_task(call.stop_requested.wait())
        try:
            await asyncio.wait({dialing, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not dialing.done():
            dialing.cancel()
            with contextlib.suppress(asyncio.CancelledError, CallFailed):
                await dialing
            await call.session.fail("call_stopped", "the call was stopped before the far end answered")
            return None
        try:
            return dialing.result()
        except CallFailed as failure:
            kind = "call_not_answered" if failure.timed_out else "call_failed"
            await call.session.fail(kind, f"the call to {dial.uri} failed: {failure.reason}")
            return None
        except Exception as error:
            # The SIP user agent broke (a socket it could not open, a bug): the job fails and says so.
            log.exception("call %s: dialing failed", call.connection_id)
            await call.session.fail("call_failed", f"the call to {dial.uri} could not be placed: {error}")
            return None

    async def _listen(self, answered: SipCall, session: StreamSession) -> CallEnd:
        """Feed the call's audio to the stream until the call ends (or reaches the streams' maximum duration)."""
        try:
            async with asyncio.timeout(self._settings.streaming_max_duration_seconds):
                async for payload in answered.audio():
                    await session.receive_audio(payload)
        except TimeoutError:
            await answered.hang_up()
            return CallEnd("max_duration", "the call reached the maximum duration of a stream")
        return await answered.ended()

    async def _hang_up(self, call: Call) -> None:
        if call.answered is not None:
            with contextlib.suppress(Exception):
                await call.answered.hang_up()

    # ---- building blocks --------------------------------------------------------------------------------------

    async def _dial_request(self, request: StartCall) -> DialRequest:
        """Where to dial, checked: the SIP URI (or the trunk, for a phone number) and its resolved, allowed host."""
        settings = self._settings
        endpoint = request.endpoint
        if isinstance(endpoint, PstnEndpoint):
            if not settings.sip_trunk_uri:
                raise ApiProblem(
                    400,
                    "invalid request: endpoint.type pstn needs a SIP trunk, and this engine has none configured "
                    "(PARLEY_SIP_TRUNK_URI): dial a sip endpoint instead",
                )
            trunk = parse_sip_uri(settings.sip_trunk_uri)
            address = SipAddress(endpoint.phone_number, trunk.host, trunk.port, trunk.transport)
            credentials = _credentials(settings.sip_trunk_username, settings.sip_trunk_password)
        else:
            address = parse_sip_uri(endpoint.uri)
            credentials = _credentials(settings.sip_username, settings.sip_password)
        try:
            checked = await check_url(
                f"http://{_bracketed(address.host)}:{address.port}/",
                resolve=self._resolve,
                allow_private=settings.allow_private_media_urls,
                fetcher="this engine's SIP user agent",
            )
        except UnfetchableUrl as error:
            message = str(error).replace("the URL", "the SIP URI")
            raise ApiProblem(
                400, f"invalid request: endpoint: {message} (PARLEY_ALLOW_PRIVATE_MEDIA_URLS allows it for local use)"
            ) from None
        codecs: tuple[str, ...] = ("PCMU", "PCMA", "opus")
        preferred = None if isinstance(endpoint, PstnEndpoint) else endpoint.audio_config
        if preferred is not None and preferred.encoding:
            first = SDP_CODECS[preferred.encoding.upper()]
            codecs = (first, *(c for c in codecs if c != first))
        return DialRequest(
            uri=address.uri(),
            transport=address.transport,
            host_address=str(checked.addresses[0]),
            port=address.port,
            credentials=credentials,
            answer_timeout_seconds=settings.sip_answer_timeout_seconds,
            rtp_timeout_seconds=settings.sip_rtp_timeout_seconds,
            codecs=codecs,
        )

    @staticmethod
    def _start_request(request: StartCall) -> dict[str, Any]:
        start: dict[str, Any] = {
            "type": "start_request",
            "insightTypes": request.insight_types,
            "config": {"speechRecognition": FIRST_ENCODING, "languageCode": request.languages[0]},
            "meetingTitle": request.session_name,
        }
        if request.custom_vocabulary:
            start["customVocabulary"] = request.custom_vocabulary
        if request.trackers:
            start["trackers"] = [t.model_dump() for t in request.trackers]
        if request.redaction is not None:
            start["redaction"] = request.redaction.model_dump(mode="json", by_alias=True)
        if request.webhook_url:
            start["webhookUrl"] = request.webhook_url
        return start


def _credentials(username: str | None, password: Any) -> SipCredentials | None:
    if not username or password is None:
        return None
    return SipCredentials(username=username, password=password.get_secret_value())


def _bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host
