"""What the Telephony API needs of a SIP user agent: dial a URI, receive the call's audio, send DTMF, hang up.

``parley_engine.telephony.sip`` implements it on a SIP library; the Telephony API (``telephony.calls``) only
sees these types, so its tests can use a scripted dialer and the SIP tests need no engine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

Transport = Literal["udp", "tcp"]
# How a call ended: the engine hung up (stop), the far end did (BYE), the far end's RTP stopped without a BYE, the
# call's maximum duration passed, or the SIP dialog broke (an error the reason explains).
EndCause = Literal["local_hangup", "remote_hangup", "rtp_timeout", "max_duration", "error"]


@dataclass(frozen=True)
class SipCredentials:
    """Digest authentication for the INVITE (RFC 8760 / 2617: MD5 and SHA-256)."""

    username: str
    password: str
    realm: str | None = None  # None: answer whatever realm the challenge names


@dataclass(frozen=True)
class DialRequest:
    uri: str  # sip:user@host[:port][;transport=tcp], as the Telephony API received it (or the trunk's, for PSTN)
    transport: Transport
    host_address: str  # the far end's IP address, resolved and checked by the caller (never re-resolved)
    port: int
    from_user: str = "parley"
    display_name: str = "Parley"
    credentials: SipCredentials | None = None
    answer_timeout_seconds: float = 60.0  # no final answer by then: CANCEL, and CallFailed("timeout")
    rtp_timeout_seconds: float = 30.0  # no RTP for this long after answer (no BYE): the call ends, rtp_timeout
    codecs: tuple[str, ...] = ("PCMU", "PCMA", "opus")  # offered in this order of preference


@dataclass(frozen=True)
class CallAudio:
    """The codec the far end chose: ``encoding`` is the Streaming API's name for the payloads ``audio`` yields."""

    encoding: Literal["MULAW", "ALAW", "OPUS"]
    sample_rate: int


@dataclass(frozen=True)
class CallEnd:
    cause: EndCause
    reason: str  # for people: "the far end hung up", "no RTP for 30 s", the SIP error


class CallFailed(Exception):
    """The call was never answered: refused (``status`` 486, 404, 603 …), timed out, or unreachable."""

    def __init__(self, reason: str, *, status: int | None = None, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason, self.status, self.timed_out = reason, status, timed_out


class SipCall(Protocol):
    """An answered call. ``audio`` yields the RTP payloads in sequence order until the call ends, then stops;
    ``ended`` (awaitable once) says how it ended."""

    @property
    def audio_format(self) -> CallAudio: ...

    def audio(self) -> AsyncIterator[bytes]: ...

    async def send_dtmf(self, digits: str) -> None:
        """RFC 4733 telephone-events for 0-9, *, #, A-D; ``,`` pauses 0.5 s (Symbl's dtmf string)."""

    async def hang_up(self) -> None:
        """Send BYE (idempotent; nothing once the far end has hung up)."""

    async def ended(self) -> CallEnd: ...


class SipDialer(Protocol):
    async def dial(self, request: DialRequest) -> SipCall:
        """INVITE ``request.uri`` and return once the call is answered (200 OK, ACK sent); raises CallFailed."""

    async def close(self) -> None:
        """Hang up every call still up and release the sockets."""
