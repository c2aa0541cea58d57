"""How ``ProviderClient`` puts one attempt on the wire: a request in, the provider's whole answer out.

``AiohttpExchange`` is the production path: aiohttp's ``ClientSession`` itself. Going through httpx first
(its ``Request``, ``URL``, ``Headers`` and ``Response`` objects, cookie extraction, and an INFO log line per
request) cost three times aiohttp's own work per request, and every conversation costs about a dozen
requests (``parley_devtools/bench_http_client.py`` measures both). ``HttpxExchange`` sends through an
httpx transport the caller hands in (``httpx.MockTransport`` in tests), so fakes written against httpx keep
working through ``ProviderClient``'s public API.

Both give back an ``Answer`` for any HTTP status and raise ``ExchangeFailed`` when no answer came, saying
whether the request can have reached the provider; the retry rules live in ``ProviderClient``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass

import aiohttp
import httpx

# What a request carries: nothing, bytes encoded once per call, or the caller's one-shot upload stream.
RequestBody = bytes | AsyncIterable[bytes] | None

# Idle connections are closed after this long. aiohttp's default (15 s) outlives the provider's own keep-alive
# (uvicorn's, the engine's, is 5 s), so requests would often be sent on connections the server has already closed;
# closing at exactly the server's 5 s still races it (a submission sent as the server hangs up cannot be retried:
# it may have been processed). One second short of it leaves the closing to this side.
KEEPALIVE_SECONDS = 4.0


@dataclass(frozen=True, slots=True)
class Answer:
    """The provider's answer to one attempt, read to the end."""

    status: int
    reason: str
    retry_after: str | None
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class ExchangeFailed(Exception):
    """No answer came: a timeout, a connection failure, or a URL that cannot be used.

    ``failure`` is the name of the underlying exception (``ClientConnectorError``, ``SocketTimeoutError``,
    ``ReadTimeout``...), the word metrics and messages show. ``request_not_sent`` is true only when no byte of
    the request can have reached the provider (the connection was never opened).
    """

    def __init__(self, failure: str, *, request_not_sent: bool, url_unusable: bool = False) -> None:
        super().__init__(failure)
        self.failure = failure
        self.request_not_sent = request_not_sent
        self.url_unusable = url_unusable


class Exchange(ABC):
    """One HTTP attempt at a time, over a connection pool the exchange owns."""

    @abstractmethod
    async def send(self, method: str, url: str, headers: Mapping[str, str], body: RequestBody) -> Answer:
        """Send one request to the absolute ``url`` (path and query already encoded) and read its answer."""

    @abstractmethod
    async def aclose(self) -> None:
        """Close the pool's connections."""


class AiohttpExchange(Exchange):
    """aiohttp's ``ClientSession``, opened on the first request (it must be made inside the running loop).

    aiohttp itself sends a GET or a PUT once more when its connection breaks before the answer (RFC 9112
    §9.3.1 allows it for idempotent methods); it never does so for a POST.
    """

    def __init__(self, *, max_connections: int, timeout_seconds: float) -> None:
        self._max_connections = max_connections
        # httpx's single timeout bounded waiting for a pooled connection, connecting, and each read; never the
        # whole exchange (a large answer may take longer than one read).
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=timeout_seconds, sock_connect=timeout_seconds, sock_read=timeout_seconds
        )
        self._session: aiohttp.ClientSession | None = None

    def _open_session(self) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=KEEPALIVE_SECONDS,
            # The same certificate authorities as before (certifi's, through httpx), not the system's.
            ssl=httpx.create_ssl_context(),
        )
        # The provider's API sets no cookies that matter; a real jar would parse and match them per request.
        return aiohttp.ClientSession(connector=connector, timeout=self._timeout, cookie_jar=aiohttp.DummyCookieJar())

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: RequestBody) -> Answer:
        session = self._session
        if session is None:
            session = self._session = self._open_session()
        try:
            async with session.request(method, url, headers=headers, data=body, allow_redirects=False) as response:
                content = await response.read()
                return Answer(response.status, response.reason or "", response.headers.get("Retry-After"), content)
        except (aiohttp.InvalidURL, aiohttp.NonHttpUrlClientError) as exc:
            raise ExchangeFailed(type(exc).__name__, request_not_sent=True, url_unusable=True) from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # Only a connection that was never opened proves the provider saw nothing; a disconnect or a read
            # timeout may come after the provider acted on the request.
            not_sent = isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
            raise ExchangeFailed(type(exc).__name__, request_not_sent=not_sent) from exc

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


class HttpxExchange(Exchange):
    """Requests through an httpx transport given by the caller (a test's ``httpx.MockTransport``)."""

    def __init__(self, transport: httpx.AsyncBaseTransport, *, timeout_seconds: float) -> None:
        self._http = httpx.AsyncClient(
            transport=transport, timeout=httpx.Timeout(timeout_seconds), follow_redirects=False
        )

    async def send(self, method: str, url: str, headers: Mapping[str, str], body: RequestBody) -> Answer:
        try:
            response = await self._http.request(method, url, headers=headers, content=body)
        except httpx.TransportError as exc:
            raise ExchangeFailed(
                _httpx_failure_name(exc),
                request_not_sent=_httpx_request_was_not_sent(exc),
                url_unusable=isinstance(exc, httpx.UnsupportedProtocol),
            ) from exc
        retry_after = response.headers.get("Retry-After")
        return Answer(response.status_code, response.reason_phrase, retry_after, response.content)

    async def aclose(self) -> None:
        await self._http.aclose()


def _httpx_request_was_not_sent(exc: httpx.TransportError) -> bool:
    """Whether the failure happened before any byte of the request could reach the provider.

    ``httpx_aiohttp`` maps every aiohttp connection error (a server disconnect mid-response included) to
    ``httpx.ConnectTimeout``, so look at the aiohttp cause when there is one.
    """
    cause = exc.__cause__
    if isinstance(cause, aiohttp.ClientError | TimeoutError):
        return isinstance(cause, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout | httpx.UnsupportedProtocol)


def _httpx_failure_name(exc: httpx.TransportError) -> str:
    """The most telling exception name: ``httpx_aiohttp`` reports a refused connection as ``ConnectTimeout``."""
    cause = exc.__cause__
    return type(cause if isinstance(cause, aiohttp.ClientError) else exc).__name__
