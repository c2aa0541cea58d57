"""Which URLs a server may fetch on a caller's behalf: public addresses only (no server-side request forgery).

A caller who can make a server fetch a URL can point it at the server's own network: loopback admin ports,
cloud metadata (169.254.169.254), private services. ``check_url`` refuses any URL whose host is, or resolves to,
a loopback, private, link-local, multicast, reserved or unspecified address (IPv4 or IPv6, IPv4 embedded in
IPv6 included, and the decimal, octal and hex host forms that ``inet_aton`` accepts). The host is resolved once
and every address it resolved to is checked; ``stream_checked_url`` then connects to those checked addresses
only (the name goes in ``Host`` and TLS SNI), so a DNS answer that changes between check and connect (DNS
rebinding) cannot move the request, and it re-checks every redirect target the same way.

The check is pure apart from the resolver, which callers (and tests) pass in.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# host, port -> the addresses (as text) a connection to them could reach
Resolver = Callable[[str, int], Awaitable[Sequence[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# NAT64's well-known prefix: the last 32 bits are an IPv4 address the gateway connects to.
_NAT64_PREFIX = ipaddress.IPv6Network("64:ff9b::/96")
# Shapes inet_aton accepts for one part of an IPv4 host: hex, octal (leading 0) or decimal.
_IPV4_PART = re.compile(r"0[xX][0-9a-fA-F]*|0[0-7]*|[1-9][0-9]*")
_NUMERIC_LABEL = re.compile(r"[0-9]+|0[xX][0-9a-fA-F]*")


class UnfetchableUrl(ValueError):
    """The URL may not (or cannot) be fetched; the message says why, in words for the caller."""


@dataclass(frozen=True)
class CheckedUrl:
    """A URL whose host resolved to public addresses only; connect to ``addresses``, never re-resolve ``host``."""

    url: httpx.URL
    host: str  # ASCII (IDNA) form, for the Host header and TLS SNI
    port: int
    addresses: tuple[IPAddress, ...]


async def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's resolver (``getaddrinfo``), without blocking the event loop."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def numeric_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The IPv4 address a numeric host stands for (``2130706433``, ``0177.0.0.1``, ``0x7f.1``), else ``None``.

    Resolvers read these forms the way ``inet_aton`` does, so ``ipaddress`` (dotted decimal only) would let them
    through as "names". A host whose last label is numeric but which is no valid address is refused.
    """
    labels = host.removesuffix(".").split(".")
    if not _NUMERIC_LABEL.fullmatch(labels[-1]):
        return None
    if len(labels) > 4 or not all(_IPV4_PART.fullmatch(label) for label in labels):
        raise UnfetchableUrl(f"the host {host!r} is neither a name nor a valid IPv4 address")
    numbers = [_ipv4_part(label) for label in labels]
    # Every part but the last is one byte; the last fills the remaining bytes (inet_aton's rule).
    last_limit = 256 ** (5 - len(numbers))
    if any(number > 255 for number in numbers[:-1]) or numbers[-1] >= last_limit:
        raise UnfetchableUrl(f"the host {host!r} is neither a name nor a valid IPv4 address")
    value = 0
    for number in numbers[:-1]:
        value = value * 256 + number
    value = value * last_limit + numbers[-1]
    return ipaddress.IPv4Address(value)


def _ipv4_part(label: str) -> int:
    if label[:2].lower() == "0x":
        return int(label[2:] or "0", 16)
    if len(label) > 1 and label.startswith("0"):
        return int(label, 8)
    return int(label)


def literal_address(host: str) -> IPAddress | None:
    """The address a host names literally (IPv6, with any ``%zone`` dropped, or any IPv4 form), else ``None``."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host.split("%", 1)[0])
        except ValueError:
            raise UnfetchableUrl(f"the host {host!r} is not a valid IPv6 address") from None
    return numeric_ipv4(host)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address delivers to (mapped, 6to4, Teredo, NAT64), if it carries one."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]  # the client behind the relay is where the packets end up
    if address in _NAT64_PREFIX:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_category(address: IPAddress) -> str | None:
    """Why a server must not connect to ``address`` ("loopback", "private", …), or ``None`` when it is public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            inner = address_category(embedded)
            if inner is not None:
                return inner
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"  # e.g. 100.64.0.0/10, the carrier-grade NAT range
    return None


def _refusal(verb: str, category: str, address: IPAddress, fetcher: str) -> UnfetchableUrl:
    article = "an" if category[0] in "aeiou" else "a"
    return UnfetchableUrl(f"the URL {verb} {article} {category} address {address}, which {fetcher} does not fetch")


async def check_url(
    url: str | httpx.URL,
    *,
    resolve: Resolver = system_resolver,
    allow_private: bool = False,
    fetcher: str = "this server",
) -> CheckedUrl:
    """Parse ``url``, resolve its host once and check every address; ``UnfetchableUrl`` says why not.

    ``allow_private`` lets non-public addresses through (tests and demos that serve media from loopback);
    the URL is still resolved once and pinned. ``fetcher`` names the refuser in messages ("this engine").
    """
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except (httpx.InvalidURL, ValueError) as error:
        raise UnfetchableUrl(f"the URL is not valid: {error}") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise UnfetchableUrl(f"only http and https URLs are fetched, not {parsed.scheme or 'a relative URL'!r}")
    host = parsed.raw_host.decode("ascii").lower()
    if not host:
        raise UnfetchableUrl("the URL has no host")
    port = port or DEFAULT_PORTS[parsed.scheme]

    literal = literal_address(host)
    if literal is not None:
        category = address_category(literal)
        if category is not None and not allow_private:
            raise _refusal("points to", category, literal, fetcher)
        return CheckedUrl(url=parsed, host=host, port=port, addresses=(literal,))

    name = host.removesuffix(".")
    if not allow_private and (name == "localhost" or name.endswith(".localhost")):
        # Reserved for loopback (RFC 6761) whatever the local resolver says.
        raise UnfetchableUrl(f"the URL names the local host {host!r}, which {fetcher} does not fetch")
    try:
        answers = await resolve(host, port)
    except OSError as error:
        raise UnfetchableUrl(f"the host {host!r} could not be resolved: {error}") from None
    addresses: list[IPAddress] = []
    for answer in answers:
        address = ipaddress.ip_address(answer.split("%", 1)[0])
        category = address_category(address)
        # One bad answer refuses the URL: the connection could otherwise be steered to it.
        if category is not None and not allow_private:
            raise _refusal("resolves to", category, address, fetcher)
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnfetchableUrl(f"the host {host!r} resolved to no address")
    return CheckedUrl(url=parsed, host=host, port=port, addresses=tuple(addresses))


def _pinned_request(
    client: httpx.AsyncClient,
    target: CheckedUrl,
    address: IPAddress,
    *,
    method: str = "GET",
    content: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout_seconds: float | None = None,
) -> httpx.Request:
    """A request for ``target.url`` sent to ``address``, with the name kept for ``Host`` and TLS (SNI, certificate)."""
    default_port = DEFAULT_PORTS[target.url.scheme]
    name = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal keeps its brackets
    host_header = name if target.port == default_port else f"{name}:{target.port}"
    extensions = {"sni_hostname": target.host} if target.url.scheme == "https" else {}
    return client.build_request(
        method,
        target.url.copy_with(host=str(address), port=target.port),
        content=content,
        headers={**(headers or {}), "Host": host_header},
        extensions=extensions,
        timeout=httpx.USE_CLIENT_DEFAULT if timeout_seconds is None else timeout_seconds,
    )


async def _send_pinned(
    client: httpx.AsyncClient, target: CheckedUrl, *, stream: bool = True, **request: Any
) -> httpx.Response:
    """The response from the first checked address that accepts a connection (opened, when ``stream``)."""
    failure: httpx.TransportError | None = None
    for address in target.addresses:
        try:
            pinned = _pinned_request(client, target, address, **request)
            return await client.send(pinned, stream=stream, follow_redirects=False)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            failure = error  # e.g. "localhost" answered ::1 first and the server listens on 127.0.0.1 only
    assert failure is not None  # check_url never returns an empty address list
    raise failure


@asynccontextmanager
async def stream_checked_url(
    client: httpx.AsyncClient,
    url: str,
    *,
    resolve: Resolver = system_resolver,
    allow_private: bool = False,
    fetcher: str = "this server",
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[httpx.Response]:
    """GET ``url`` as a stream, connecting only to checked addresses and checking every redirect target.

    Raises ``UnfetchableUrl`` for a refused URL (or too many redirects) and httpx errors for network failures.
    The response of the last hop is yielded whatever its status; the caller decides what a 4xx means.
    """
    current: str | httpx.URL = url
    for _hop in range(max_redirects + 1):
        target = await check_url(current, resolve=resolve, allow_private=allow_private, fetcher=fetcher)
        response = await _send_pinned(client, target)
        location = response.headers.get("location")
        if response.status_code in REDIRECT_STATUSES and location:
            await response.aclose()
            # Join against the URL as the caller wrote it, not the pinned address the request went to.
            current = target.url.join(location)
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    raise UnfetchableUrl(f"the URL redirected more than {max_redirects} times")


async def post_checked_url(
    client: httpx.AsyncClient,
    url: str,
    *,
    content: bytes,
    headers: dict[str, str],
    timeout_seconds: float,
    resolve: Resolver = system_resolver,
    fetcher: str = "this server",
) -> httpx.Response:
    """POST ``content`` to ``url`` (a callback), connecting only to checked public addresses; redirects are not
    followed. Raises ``UnfetchableUrl`` for a refused URL and httpx errors for network failures."""
    target = await check_url(url, resolve=resolve, fetcher=fetcher)
    return await _send_pinned(
        client, target, stream=False, method="POST", content=content, headers=headers, timeout_seconds=timeout_seconds
    )
