"""check_url and stream_checked_url with a fake resolver and httpx.MockTransport: no packet leaves the process."""

from __future__ import annotations

from collections.abc import Sequence

import httpx
import pytest
from parley_shared.url_safety import UnfetchableUrl, check_url, post_checked_url, stream_checked_url

PUBLIC_V4 = "93.184.216.34"
PUBLIC_V6 = "2606:2800:220:1:248:1893:25c8:1946"


class FakeResolver:
    """Answers from a table, one answer list per call in turn (so a second lookup can "rebind"), and counts."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self._answers = answers
        self.lookups: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.lookups.append((host, port))
        turns = self._answers.get(host)
        if not turns:
            raise OSError(f"no such host {host}")
        return turns.pop(0) if len(turns) > 1 else turns[0]


def resolver(**answers: str | list[str]) -> FakeResolver:
    """``resolver(**{"media.example": "1.2.3.4"})``: each host always answers the same."""
    table = {host: [[value] if isinstance(value, str) else list(value)] for host, value in answers.items()}
    return FakeResolver(table)


@pytest.mark.parametrize(
    ("url", "category", "address"),
    [
        ("http://127.0.0.1/a.wav", "loopback", "127.0.0.1"),
        ("http://10.0.0.5/a.wav", "private", "10.0.0.5"),
        ("http://172.16.3.4:8080/a.wav", "private", "172.16.3.4"),
        ("http://192.168.1.1/a.wav", "private", "192.168.1.1"),
        ("http://169.254.169.254/latest/meta-data/", "link-local", "169.254.169.254"),
        ("http://224.0.0.1/a.wav", "multicast", "224.0.0.1"),
        ("http://0.0.0.0/a.wav", "unspecified", "0.0.0.0"),
        ("http://100.64.0.1/a.wav", "non-public", "100.64.0.1"),
        ("http://[::1]/a.wav", "loopback", "::1"),
        ("http://[fd12:3456::1]/a.wav", "private", "fd12:3456::1"),
        ("http://[fe80::1%25eth0]/a.wav", "link-local", "fe80::1"),
        ("http://[ff02::1]/a.wav", "multicast", "ff02::1"),
        ("http://[::]/a.wav", "unspecified", "::"),
        ("http://[::ffff:127.0.0.1]/a.wav", "loopback", "::ffff:7f00:1"),
        ("http://[::ffff:10.0.0.5]/a.wav", "private", "::ffff:a00:5"),
        ("http://[2002:a00:5::1]/a.wav", "private", "2002:a00:5::1"),  # 6to4 around 10.0.0.5
        ("http://[64:ff9b::a9fe:a9fe]/a.wav", "link-local", "64:ff9b::a9fe:a9fe"),  # NAT64 to 169.254.169.254
        # The host forms inet_aton (and so getaddrinfo) reads as IPv4.
        ("http://2130706433/a.wav", "loopback", "127.0.0.1"),
        ("http://0x7f000001/a.wav", "loopback", "127.0.0.1"),
        ("http://0x7f.1/a.wav", "loopback", "127.0.0.1"),
        ("http://127.1/a.wav", "loopback", "127.0.0.1"),
        ("http://012.0.0.5./a.wav", "private", "10.0.0.5"),
        ("http://167772165/a.wav", "private", "10.0.0.5"),
    ],
)
async def test_literal_non_public_addresses_are_refused_without_a_lookup(url: str, category: str, address: str) -> None:
    resolve = resolver()
    with pytest.raises(UnfetchableUrl) as refused:
        await check_url(url, resolve=resolve, fetcher="this engine")
    assert str(refused.value) == (
        f"the URL points to {'an' if category[0] in 'aeiou' else 'a'} {category} address {address}, "
        "which this engine does not fetch"
    )
    assert resolve.lookups == []


async def test_names_resolving_to_a_private_address_are_refused_with_the_address() -> None:
    with pytest.raises(UnfetchableUrl) as refused:
        await check_url("https://intranet.example/a.wav", resolve=resolver(**{"intranet.example": "10.0.0.5"}))
    assert str(refused.value) == "the URL resolves to a private address 10.0.0.5, which this server does not fetch"


@pytest.mark.parametrize(
    "answers",
    [
        [PUBLIC_V4, "127.0.0.1"],  # one bad answer among good ones could still be the one connected to
        ["::ffff:192.168.0.10"],
        ["fe80::1%eth0"],
        [PUBLIC_V6, "fc00::5"],
    ],
)
async def test_any_non_public_answer_refuses_the_name(answers: list[str]) -> None:
    with pytest.raises(UnfetchableUrl, match="resolves to"):
        await check_url("http://media.example/a.wav", resolve=resolver(**{"media.example": answers}))


async def test_localhost_names_are_refused_whatever_the_resolver_says() -> None:
    resolve = resolver(**{"localhost": PUBLIC_V4, "api.localhost": PUBLIC_V4})
    for url in ("http://localhost:8700/", "http://LOCALHOST./", "http://api.localhost/"):
        with pytest.raises(UnfetchableUrl, match="local host"):
            await check_url(url, resolve=resolve)
    assert resolve.lookups == []


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("file:///etc/passwd", "only http and https"),
        ("gopher://media.example/", "only http and https"),
        ("http://1.2.3.4.5/a.wav", "neither a name nor a valid IPv4 address"),
        ("http://256.1/a.wav", "neither a name nor a valid IPv4 address"),
        ("http://1.2.3.256/a.wav", "not valid"),
        ("http://media.123/a.wav", "neither a name nor a valid IPv4 address"),
        ("http://0177.0.0.1/a.wav", "not valid"),
        ("http://[::1/a.wav", "not valid"),
        ("http://nowhere.example/a.wav", "could not be resolved"),
    ],
)
async def test_unusable_urls_are_refused_with_a_reason(url: str, problem: str) -> None:
    with pytest.raises(UnfetchableUrl, match=problem):
        await check_url(url, resolve=resolver())


async def test_public_names_resolve_once_to_the_addresses_to_connect_to() -> None:
    resolve = resolver(**{"media.example": [PUBLIC_V4, PUBLIC_V6, PUBLIC_V4]})
    checked = await check_url("https://Media.Example/talk.mp4?sig=1", resolve=resolve)
    assert checked.host == "media.example"
    assert checked.port == 443
    assert [str(a) for a in checked.addresses] == [PUBLIC_V4, PUBLIC_V6]
    assert resolve.lookups == [("media.example", 443)]


async def test_allow_private_lets_loopback_and_private_addresses_through() -> None:
    checked = await check_url("http://127.0.0.1:9/a.wav", resolve=resolver(), allow_private=True)
    assert [str(a) for a in checked.addresses] == ["127.0.0.1"]
    named = await check_url(
        "http://files.internal/a.wav", resolve=resolver(**{"files.internal": "10.0.0.5"}), allow_private=True
    )
    assert [str(a) for a in named.addresses] == ["10.0.0.5"]


# --- fetching: the request goes to the checked address only -------------------------------------------


def recording_transport(
    answer: dict[str, httpx.Response],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """Answers by the host the request was sent to (an address, once pinned); records every request."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return answer.get(request.url.host, httpx.Response(599))

    return httpx.MockTransport(handle), seen


async def test_the_request_goes_to_the_checked_address_with_the_name_in_host_and_sni() -> None:
    transport, seen = recording_transport({PUBLIC_V4: httpx.Response(200, content=b"RIFF")})
    # A rebinding resolver: public for the check, loopback for any later lookup.
    resolve = FakeResolver({"media.example": [[PUBLIC_V4], ["127.0.0.1"]]})
    async with (
        httpx.AsyncClient(transport=transport) as client,
        stream_checked_url(client, "https://media.example:8443/a.wav?x=1", resolve=resolve) as response,
    ):
        assert await response.aread() == b"RIFF"
    assert resolve.lookups == [("media.example", 8443)]
    [request] = seen
    assert str(request.url) == f"https://{PUBLIC_V4}:8443/a.wav?x=1"
    assert request.headers["host"] == "media.example:8443"
    assert request.extensions["sni_hostname"] == "media.example"


async def test_each_redirect_target_is_checked_before_it_is_requested() -> None:
    transport, seen = recording_transport(
        {PUBLIC_V4: httpx.Response(302, headers={"Location": "http://metadata.example/latest/meta-data/"})}
    )
    resolve = resolver(**{"media.example": PUBLIC_V4, "metadata.example": "169.254.169.254"})
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(UnfetchableUrl, match=r"link-local address 169\.254\.169\.254"):
            async with stream_checked_url(client, "http://media.example/a.wav", resolve=resolve):
                pass
    assert [r.url.host for r in seen] == [PUBLIC_V4]


async def test_relative_redirects_to_public_hosts_are_followed_and_bounded() -> None:
    transport, seen = recording_transport(
        {
            PUBLIC_V4: httpx.Response(307, headers={"Location": "/moved.wav"}),
        }
    )
    resolve = resolver(**{"media.example": PUBLIC_V4})
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(UnfetchableUrl, match="redirected more than 2 times"):
            async with stream_checked_url(client, "http://media.example/a.wav", resolve=resolve, max_redirects=2):
                pass
    assert [str(r.url) for r in seen] == [
        f"http://{PUBLIC_V4}/a.wav",
        f"http://{PUBLIC_V4}/moved.wav",
        f"http://{PUBLIC_V4}/moved.wav",
    ]
    assert {r.headers["host"] for r in seen} == {"media.example"}


async def test_a_redirect_to_a_public_host_is_fetched_from_that_host() -> None:
    cdn = "151.101.1.1"
    transport, seen = recording_transport(
        {
            PUBLIC_V4: httpx.Response(301, headers={"Location": "https://cdn.example/a.wav"}),
            cdn: httpx.Response(200, content=b"media"),
        }
    )
    resolve = resolver(**{"media.example": PUBLIC_V4, "cdn.example": cdn})
    async with (
        httpx.AsyncClient(transport=transport) as client,
        stream_checked_url(client, "http://media.example/a.wav", resolve=resolve) as response,
    ):
        assert response.status_code == 200
        assert await response.aread() == b"media"
    assert [(r.url.host, r.headers["host"]) for r in seen] == [(PUBLIC_V4, "media.example"), (cdn, "cdn.example")]


async def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        if request.url.host == PUBLIC_V6:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, content=b"ok")

    resolve = resolver(**{"media.example": [PUBLIC_V6, PUBLIC_V4]})
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handle)) as client,
        stream_checked_url(client, "http://media.example/a.wav", resolve=resolve) as response,
    ):
        assert await response.aread() == b"ok"
    assert seen == [PUBLIC_V6, PUBLIC_V4]


async def test_a_callback_is_posted_to_the_checked_address_and_a_rebound_name_is_refused() -> None:
    transport, seen = recording_transport({PUBLIC_V4: httpx.Response(202)})
    resolve = FakeResolver({"hooks.example": [[PUBLIC_V4], ["10.1.2.3"]]})
    async with httpx.AsyncClient(transport=transport) as client:
        answered = await post_checked_url(
            client,
            "https://hooks.example/jobs",
            content=b'{"status":"completed"}',
            headers={"Content-Type": "application/json"},
            timeout_seconds=2.0,
            resolve=resolve,
        )
        # The same name, now resolving into the private network: refused before any connection.
        with pytest.raises(UnfetchableUrl, match=r"private address 10\.1\.2\.3"):
            await post_checked_url(
                client, "https://hooks.example/jobs", content=b"{}", headers={}, timeout_seconds=2.0, resolve=resolve
            )
    assert answered.status_code == 202
    [request] = seen
    assert (request.method, str(request.url), request.headers["host"]) == (
        "POST",
        f"https://{PUBLIC_V4}/jobs",
        "hooks.example",
    )
    assert request.content == b'{"status":"completed"}'
