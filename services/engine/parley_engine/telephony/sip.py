"""The engine's SIP user agent: dials a SIP URI as a UAC (UDP or TCP), listens to the call's RTP, sends DTMF.

Built on aiosipua (SIP messages, digest authentication, dialogs, SDP) and aiortp (RTP packet formats); see
docs/telephony-sip.md for why those and what the glue in ``sip_signalling`` and ``sip_media`` adds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from aiosipua import SipDigestAuth, SipResponse
from aiosipua.dialog import DialogState
from aiosipua.incoming_call import IncomingCall
from aiosipua.outgoing_call import OutgoingCall
from parley_engine.telephony.ports import (
    CallAudio,
    CallEnd,
    CallFailed,
    DialRequest,
    EndCause,
    SipCall,
    SipDialer,
    Transport,
)
from parley_engine.telephony.sip_media import RtpMediaStream, valid_dtmf
from parley_engine.telephony.sip_sdp import (
    NegotiatedMedia,
    SupportedCodec,
    build_answer,
    build_offer,
    negotiate,
    supported_codec,
)
from parley_engine.telephony.sip_signalling import DialogEvents, SignallingStack

logger = logging.getLogger(__name__)

# After a CANCEL, how long to wait for the far end's final answer (487) so it can be ACKed.
CANCEL_SETTLE_SECONDS = 2.0
# While the far end holds the call (no RTP expected), how often the RTP watchdog looks again.
HOLD_CHECK_SECONDS = 1.0


def _uri_host(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class SipUserAgentCall(SipCall):
    """An answered call: its dialog on the signalling stack, its RTP stream, and how it ended."""

    def __init__(
        self,
        *,
        stack: SignallingStack,
        outgoing: OutgoingCall,
        media: RtpMediaStream,
        negotiated: NegotiatedMedia,
        rtp_timeout_seconds: float,
        media_address: str,
        on_finished: Callable[[SipUserAgentCall], None],
    ) -> None:
        self._stack = stack
        self._outgoing = outgoing
        self._media = media
        self._negotiated = negotiated
        self._audio_format = negotiated.codec.audio
        self._rtp_timeout_seconds = rtp_timeout_seconds
        self._media_address = media_address
        self._on_finished = on_finished
        self._end: asyncio.Future[CallEnd] = asyncio.get_running_loop().create_future()
        self._rtp_watchdog = asyncio.create_task(self._watch_rtp(), name=f"sip-rtp-watchdog-{outgoing.call_id}")

    @property
    def call_id(self) -> str:
        return self._outgoing.call_id

    @property
    def audio_format(self) -> CallAudio:
        return self._audio_format

    def audio(self) -> AsyncIterator[bytes]:
        return self._media.payloads()

    async def send_dtmf(self, digits: str) -> None:
        valid_dtmf(digits)
        if self._end.done():
            return
        await self._media.send_dtmf(digits)

    async def hang_up(self) -> None:
        if self._end.done():
            return
        self._send_bye()
        self._finish("local_hangup", "the engine hung up")

    async def ended(self) -> CallEnd:
        return await asyncio.shield(self._end)

    def remote_hung_up(self) -> None:
        """The far end's BYE (aiosipua already answered it 200 OK)."""
        self._finish("remote_hangup", "the far end hung up")

    def answer_reinvite(self, reinvite: IncomingCall) -> None:
        """The far end's re-INVITE: keep the codec in use, follow its new address or hold, answer with our SDP."""
        offer = reinvite.sdp_offer
        # An offerless re-INVITE asks for our offer; the codec in use, as now, is it.
        negotiated = self._negotiated if offer is None else negotiate(offer, [self._negotiated.codec])
        if negotiated is None:
            reinvite.reject(488, "Not Acceptable Here")
            return
        reinvite.accept(build_answer(negotiated, self._media_address, self._media.port))
        resumed = negotiated.far_end_sends and not self._negotiated.far_end_sends
        self._negotiated = negotiated
        self._media.follow(negotiated)
        if resumed:
            self._media.start(negotiated)  # the RTP timeout counts again from the resume, not from the hold

    def _send_bye(self) -> None:
        if self._outgoing.dialog.state == DialogState.CONFIRMED:
            bye = self._stack.uac.send_bye(self._outgoing.dialog, self._outgoing.remote_addr)
            self._stack.resend_until_answered(bye, self._outgoing.remote_addr)

    def _finish(self, cause: EndCause, reason: str) -> None:
        if self._end.done():
            return
        self._end.set_result(CallEnd(cause=cause, reason=reason))
        if asyncio.current_task() is not self._rtp_watchdog:
            self._rtp_watchdog.cancel()
        self._media.close()
        self._stack.forget(self.call_id)
        self._on_finished(self)

    async def _watch_rtp(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._end.done():
            if not self._negotiated.far_end_sends:
                self._media.last_packet_at = loop.time()
                await asyncio.sleep(HOLD_CHECK_SECONDS)
                continue
            silent_until = self._media.last_packet_at + self._rtp_timeout_seconds
            if loop.time() >= silent_until:
                self._send_bye()
                self._finish("rtp_timeout", f"no RTP for {self._rtp_timeout_seconds:g} s")
                return
            await asyncio.sleep(silent_until - loop.time())


class SipUserAgent(SipDialer):
    """Dials calls over UDP and TCP from one SIP socket each (opened on first use), RTP on one socket per call.

    ``bind_address`` is where the SIP and RTP sockets listen; ``advertised_address`` is the address written in the
    Via, Contact and SDP (behind NAT, the public one; by default the bind address).
    """

    def __init__(
        self, *, bind_address: str = "127.0.0.1", advertised_address: str | None = None, user_agent: str = "Parley"
    ) -> None:
        self._bind_address = bind_address
        self._advertised_address = advertised_address
        self._user_agent = user_agent
        self._stacks: dict[Transport, SignallingStack] = {}
        self._stack_lock = asyncio.Lock()
        self._calls: set[SipUserAgentCall] = set()
        self._closed = False

    async def dial(self, request: DialRequest) -> SipCall:
        if self._closed:
            raise CallFailed("the SIP user agent is closed")
        try:
            codecs = [supported_codec(name) for name in request.codecs]
        except ValueError as error:
            raise CallFailed(str(error)) from None
        stack = await self._stack(request.transport)
        media = await RtpMediaStream.open(self._bind_address, frozenset({request.host_address}))
        try:
            return await self._invite(stack, request, media, codecs)
        except BaseException:
            media.close()
            raise

    async def close(self) -> None:
        self._closed = True
        for call in list(self._calls):
            await call.hang_up()
        async with self._stack_lock:
            for stack in self._stacks.values():
                await stack.stop()
            self._stacks.clear()

    async def _stack(self, transport: Transport) -> SignallingStack:
        async with self._stack_lock:
            if transport not in self._stacks:
                self._stacks[transport] = await SignallingStack.start(
                    transport,
                    self._bind_address,
                    advertised_address=self._advertised_address,
                    user_agent=self._user_agent,
                )
            return self._stacks[transport]

    async def _invite(
        self, stack: SignallingStack, request: DialRequest, media: RtpMediaStream, codecs: list[SupportedCodec]
    ) -> SipCall:
        remote = (request.host_address, request.port)
        try:
            async with asyncio.timeout(request.answer_timeout_seconds):
                await stack.connect(remote)
        except (OSError, TimeoutError) as error:
            raise CallFailed(f"could not connect to {request.host_address}:{request.port} over TCP: {error}") from None

        address = self._advertised_address or stack.signalling_address[0]
        credentials = request.credentials
        outgoing = stack.uac.send_invite(
            f"sip:{request.from_user}@{_uri_host(address)}",
            request.uri,
            remote,
            sdp_offer=build_offer(request.codecs, address, media.port),
            auth=SipDigestAuth(credentials.username, credentials.password) if credentials else None,
            user_agent=self._user_agent,
        )
        outcome: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def fail(failure: CallFailed) -> None:
            if not outcome.done():
                outcome.set_exception(failure)

        def realm_refused(response: SipResponse) -> None:
            fail(
                CallFailed(
                    f"{response.status_code} {response.reason_phrase} (the challenge is not for realm "
                    f"{credentials.realm if credentials else None!r})",
                    status=response.status_code,
                )
            )

        outgoing.on_answer = lambda _call: None if outcome.done() else outcome.set_result(None)
        outgoing.on_rejected = lambda _call, status, reason: fail(CallFailed(f"{status} {reason}", status=status))
        events = DialogEvents(
            request_uri=outgoing.invite.uri,
            destination=remote,
            on_bye=lambda: None,
            on_reinvite=lambda reinvite: reinvite.reject(491, "Request Pending"),
            realm=credentials.realm if credentials else None,
            on_realm_refused=realm_refused,
        )
        stack.register(outgoing.call_id, events)
        retransmission = asyncio.create_task(stack.retransmit_invite(outgoing, events))
        try:
            async with asyncio.timeout(request.answer_timeout_seconds):
                await outcome
        except TimeoutError:
            await self._cancel(stack, outgoing, events)
            raise CallFailed(f"no answer within {request.answer_timeout_seconds:g} s", timed_out=True) from None
        except CallFailed:
            stack.forget(outgoing.call_id)
            raise
        except asyncio.CancelledError:
            if outgoing.dialog.state == DialogState.EARLY:
                stack.resend_until_answered(stack.uac.send_cancel(outgoing), remote)
            stack.forget(outgoing.call_id)
            raise
        finally:
            retransmission.cancel()

        answer = outgoing.sdp_answer
        negotiated = negotiate(answer, codecs) if answer else None
        if negotiated is None:
            stack.uac.send_bye(outgoing.dialog, remote)
            stack.forget(outgoing.call_id)
            raise CallFailed("the far end answered without any codec the engine offered")
        media.start(negotiated)
        call = SipUserAgentCall(
            stack=stack,
            outgoing=outgoing,
            media=media,
            negotiated=negotiated,
            rtp_timeout_seconds=request.rtp_timeout_seconds,
            media_address=address,
            on_finished=self._calls.discard,
        )
        events.on_bye = call.remote_hung_up
        events.on_reinvite = call.answer_reinvite
        self._calls.add(call)
        logger.info("SIP call %s answered (%s)", call.call_id, negotiated.codec.name)
        return call

    async def _cancel(self, stack: SignallingStack, outgoing: OutgoingCall, events: DialogEvents) -> None:
        """CANCEL the ringing INVITE and give the far end a moment to answer 487, which is then ACKed."""
        if outgoing.dialog.state == DialogState.EARLY:
            events.final_answer.clear()
            stack.resend_until_answered(stack.uac.send_cancel(outgoing), outgoing.remote_addr)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CANCEL_SETTLE_SECONDS):
                    await events.final_answer.wait()
        stack.forget(outgoing.call_id)
