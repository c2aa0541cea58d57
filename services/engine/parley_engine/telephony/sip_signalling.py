"""The engine's SIP signalling on one transport (UDP or TCP): aiosipua's UAC (INVITE, digest retry, ACK for 2xx,
BYE, CANCEL) and UAS (answers the far end's BYE, re-INVITE and OPTIONS) on one socket, plus what aiosipua 0.7 leaves
out for a UAC, filled in here where the messages pass:

- the ACK of a non-2xx final answer to an INVITE (RFC 3261 §17.1.1.3), so a refusing UDP peer stops retransmitting it;
- retransmission of an INVITE over UDP until the far end answers anything (Timer A, RFC 3261 §17.1.1.2), and of a
  BYE or CANCEL until it is answered or 32 s have passed (Timer E and F, §17.1.2.2);
- ``SIP/2.0/TCP`` in the Via of requests sent over TCP (aiosipua writes ``UDP`` there whatever the transport);
- the remote target of the dialog from the 2xx's Contact (ACK and BYE go to the far end's Contact URI);
- a realm check when the credentials name one (aiosipua answers any realm's challenge).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from aiosipua import SipRequest, SipResponse, SipUAC, SipUAS
from aiosipua.headers import parse_auth, stringify_uri
from aiosipua.incoming_call import IncomingCall
from aiosipua.outgoing_call import OutgoingCall
from aiosipua.transport import SipTransport, TcpSipTransport, UdpSipTransport, _UdpProtocol
from parley_engine.telephony.ports import Transport

logger = logging.getLogger(__name__)

# RFC 3261 §17.1.1.1: the first retransmission after T1, doubling up to T2.
T1_SECONDS = 0.5
T2_SECONDS = 4.0
# Timer F: how long a BYE or CANCEL over UDP is resent without an answer before it is given up on (64 T1).
NON_INVITE_TIMEOUT_SECONDS = 64 * T1_SECONDS


class _DatagramProtocol(_UdpProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # aiosipua asserts an asyncio.DatagramTransport here, which Python 3.11's selector transport is not a subclass
        # of (the assertion is logged as an error on every bind); ``start`` keeps the transport instead.
        pass


class _UdpTransport(UdpSipTransport):
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: _DatagramProtocol(self), local_addr=self.local_addr)
        self._udp_transport = transport
        # Bound on port 0: learn the port the system chose, for Via and Contact (aiosipua keeps the socket private).
        assert self._udp_transport is not None
        self.local_addr = self._udp_transport.get_extra_info("sockname")[:2]


class _TcpTransport(TcpSipTransport):
    async def start(self) -> None:
        await super().start()
        assert self._server is not None
        self.local_addr = self._server.sockets[0].getsockname()[:2]

    def connected_to(self, address: tuple[str, int]) -> bool:
        return address in self._connections

    def send(self, message: SipRequest | SipResponse, addr: tuple[str, int]) -> None:
        if isinstance(message, SipRequest):
            vias = message.headers.get("via")
            if vias and vias[0].startswith("SIP/2.0/UDP "):
                message.headers.remove("Via")
                message.headers.append("Via", "SIP/2.0/TCP " + vias[0].removeprefix("SIP/2.0/UDP "))
                for via in vias[1:]:
                    message.headers.append("Via", via)
        super().send(message, addr)


@dataclass
class DialogEvents:
    """Where the stack sends what happens to one call (the dialer's call object registers these)."""

    request_uri: str  # the INVITE's
    destination: tuple[str, int]  # where the INVITE went
    on_bye: Callable[[], None]
    on_reinvite: Callable[[IncomingCall], None]
    realm: str | None = None  # answer only this realm's challenge
    on_realm_refused: Callable[[SipResponse], None] | None = None
    answered_branches: set[str] = field(default_factory=set)  # INVITE branches the far end answered anything to
    final_answer: asyncio.Event = field(default_factory=asyncio.Event)  # set by each final answer to an INVITE


class SignallingStack:
    """One transport's SIP socket with aiosipua's UAC and UAS on it; calls are told apart by Call-ID."""

    def __init__(self, transport: SipTransport, *, advertised_address: str | None, user_agent: str) -> None:
        self.transport = transport
        self._advertised_address = advertised_address
        self.uac = SipUAC(transport)
        self.uas = SipUAS(transport, user_agent=user_agent, uac=self.uac)
        self.uas.on_bye = self._bye
        self.uas.on_reinvite = self._reinvite
        self._dialogs: dict[str, DialogEvents] = {}
        # Branches of the BYEs and CANCELs sent over UDP that the far end has not answered yet, and the tasks
        # resending them: an answer takes its branch out, so nothing is kept once a request is answered or given up.
        self._unanswered: set[str] = set()
        self._resending: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls, transport: Transport, bind_address: str, *, advertised_address: str | None, user_agent: str
    ) -> SignallingStack:
        sip_transport: SipTransport = (
            _UdpTransport(local_addr=(bind_address, 0))
            if transport == "udp"
            else _TcpTransport(local_addr=(bind_address, 0))
        )
        stack = cls(sip_transport, advertised_address=advertised_address, user_agent=user_agent)
        await stack.uas.start()
        if advertised_address is not None:
            stack.uac.advertised_addr = (advertised_address, sip_transport.local_addr[1])
            stack.uas.advertised_addr = stack.uac.advertised_addr
        # Messages pass through here before aiosipua sees them (see the module's docstring).
        library_dispatch = sip_transport.on_message
        assert library_dispatch is not None

        def observe_then_dispatch(message: SipRequest | SipResponse, source: tuple[str, int]) -> None:
            if isinstance(message, SipResponse):
                stack._note_answer(message)
                if not stack._observe_response(message):
                    return
            library_dispatch(message, source)

        sip_transport.on_message = observe_then_dispatch
        return stack

    @property
    def reliable(self) -> bool:
        return isinstance(self.transport, TcpSipTransport)

    @property
    def signalling_address(self) -> tuple[str, int]:
        """The address in our Via and Contact headers."""
        return self.uac.advertised_addr or self.transport.local_addr

    async def connect(self, remote: tuple[str, int]) -> None:
        """Open the TCP connection to the far end (once; UDP needs none)."""
        if isinstance(self.transport, _TcpTransport) and not self.transport.connected_to(remote):
            await self.transport.connect(remote)

    def register(self, call_id: str, events: DialogEvents) -> None:
        self._dialogs[call_id] = events

    def forget(self, call_id: str) -> None:
        self._dialogs.pop(call_id, None)

    async def retransmit_invite(self, call: OutgoingCall, events: DialogEvents) -> None:
        """Resend the current INVITE over UDP until the far end answers it (cancelled by the dialer when done)."""
        if self.reliable:
            return
        interval = T1_SECONDS
        while True:
            await asyncio.sleep(interval)
            invite = call.invite
            branch = invite.via[0].branch if invite.via else None
            if branch is None or branch in events.answered_branches:
                interval = T1_SECONDS  # answered; a digest retry's new INVITE starts its own timer
                continue
            self.transport.send(invite, call.remote_addr)
            interval = min(interval * 2, T2_SECONDS)

    def resend_until_answered(self, request: SipRequest, destination: tuple[str, int]) -> None:
        """Resend a BYE or CANCEL just sent over UDP until the far end answers it (TCP delivers it once)."""
        if self.reliable or not request.via or not request.via[0].branch:
            return
        branch = request.via[0].branch
        self._unanswered.add(branch)
        task = asyncio.create_task(self._resend(request, branch, destination))
        self._resending.add(task)
        task.add_done_callback(self._resending.discard)

    async def _resend(self, request: SipRequest, branch: str, destination: tuple[str, int]) -> None:
        interval, waited = T1_SECONDS, 0.0
        try:
            while waited < NON_INVITE_TIMEOUT_SECONDS:
                await asyncio.sleep(interval)
                waited += interval
                if branch not in self._unanswered:
                    return
                self.transport.send(request, destination)
                interval = min(interval * 2, T2_SECONDS)
        finally:
            self._unanswered.discard(branch)
        logger.warning("no answer to %s %s within %g s", request.method, request.call_id, NON_INVITE_TIMEOUT_SECONDS)

    def _note_answer(self, response: SipResponse) -> None:
        cseq = response.cseq
        if cseq is not None and cseq.method.upper() in ("BYE", "CANCEL") and response.via and response.via[0].branch:
            self._unanswered.discard(response.via[0].branch)

    def _bye(self, call: IncomingCall, request: SipRequest) -> None:
        events = self._dialogs.get(call.call_id)
        if events is not None:
            events.on_bye()

    def _reinvite(self, call: IncomingCall) -> None:
        events = self._dialogs.get(call.call_id)
        if events is None:
            call.reject(481, "Call/Transaction Does Not Exist")
        else:
            events.on_reinvite(call)

    async def stop(self) -> None:
        self._dialogs.clear()
        for task in list(self._resending):
            task.cancel()
        await asyncio.gather(*self._resending, return_exceptions=True)
        await self.uas.stop()

    def _observe_response(self, response: SipResponse) -> bool:
        """Note and complete what aiosipua leaves out; False: the library must not see this response."""
        cseq = response.cseq
        events = self._dialogs.get(response.call_id or "")
        if cseq is None or cseq.method.upper() != "INVITE" or events is None:
            return True
        vias = response.via
        if vias and vias[0].branch:
            events.answered_branches.add(vias[0].branch)
        status = response.status_code
        if status >= 200:
            events.final_answer.set()
        if 200 <= status < 300:
            call = self.uac.get_call(response.call_id or "")
            contacts = response.contact
            if call is not None and contacts:
                call.dialog.remote_target = stringify_uri(contacts[0].uri)
            return True
        if status >= 300:
            self._acknowledge_failure(response, events)
        if status in (401, 407) and events.realm is not None:
            header = "WWW-Authenticate" if status == 401 else "Proxy-Authenticate"
            challenge = response.get_header(header)
            realm = parse_auth(challenge).params.get("realm") if challenge else None
            if realm != events.realm:
                if events.on_realm_refused is not None:
                    events.on_realm_refused(response)
                return False
        return True

    def _acknowledge_failure(self, response: SipResponse, events: DialogEvents) -> None:
        """ACK a non-2xx final answer: same branch as the INVITE, To with the far end's tag (RFC 3261 §17.1.1.3)."""
        vias = response.headers.get("via")
        cseq = response.cseq
        if not vias or cseq is None:
            return
        ack = SipRequest(method="ACK", uri=events.request_uri)
        ack.headers.append("Via", vias[0])
        for name in ("From", "To", "Call-ID"):
            value = response.headers.get_first(name)
            if value:
                ack.headers.set_single(name, value)
        ack.headers.set_single("CSeq", f"{cseq.seq} ACK")
        ack.headers.set_single("Max-Forwards", "70")
        self.transport.send(ack, events.destination)
