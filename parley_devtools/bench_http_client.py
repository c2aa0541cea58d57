"""Side-by-side requests/s of aiohttp, plain httpx, httpx on the aiohttp transport, and ProviderClient.

Every conversation costs Parley about a dozen provider calls, so the HTTP client's request rate bounds the
pipeline. This starts a small Starlette app under uvicorn (uvloop, httptools) in a subprocess on 127.0.0.1,
then measures every client against it in one run, at several numbers of requests in flight.

    .venv/bin/python -m parley_devtools.bench_http_client --requests 4000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from parley_shared.provider import InsightEndpoint, ProviderClient
from parley_shared.settings import ProviderSettings
from pydantic import SecretStr

DEFAULT_IN_FLIGHT = [1, 8, 64]
CONNECTIONS = 100
WARMUP_REQUESTS = 50
BENCH_CONVERSATION_ID = "5815170693595136"
MESSAGES_BODY = {
    "messages": [
        {
            "id": "6412283618000896",
            "text": "Hi Mike, the new platform is ready.",
            "from": {"name": "Natalia"},
        },
        {"id": "5756524412862464", "text": "Great, let's ship it on Friday.", "from": {"name": "Mike"}},
    ]
}

RequestOnce = Callable[[], Awaitable[Any]]


# --- the server (runs in the subprocess) ---------------------------------------------------------------


def _serve(fd: int) -> None:
    """Serve the bench app on an inherited listening socket until terminated."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    token = {"accessToken": "bench-token", "expiresIn": 86400}
    messages = json.dumps(MESSAGES_BODY).encode()

    async def generate_token(request: Request) -> JSONResponse:
        return JSONResponse(token)

    async def read_messages(request: Request) -> Response:
        return Response(messages, media_type="application/json")

    app = Starlette(
        routes=[
            Route("/oauth2/token:generate", generate_token, methods=["POST"]),
            Route("/v1/conversations/{conversation_id}/messages", read_messages),
        ]
    )
    config = uvicorn.Config(app, loop="uvloop", http="httptools", log_level="warning", access_log=False)
    listener = socket.socket(fileno=fd)
    uvicorn.Server(config).run(sockets=[listener])


@contextlib.contextmanager
def bench_server() -> Iterator[str]:
    """A subprocess serving the bench app on a free 127.0.0.1 port; yields its base URL, stops it on exit."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    process = subprocess.Popen(
        [sys.executable, "-m", "parley_devtools.bench_http_client", "--serve-fd", str(fd)],
        pass_fds=[fd],
    )
    listener.close()  # the child holds its own copy
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the clients -------------------------------------------------------------------------------------


async def _measure(request_once: RequestOnce, requests: int, in_flight: int) -> float:
    """Requests/s of ``requests`` calls with ``in_flight`` workers pulling from one shared count."""
    for _ in range(WARMUP_REQUESTS):
        await request_once()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await request_once()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return requests / (time.perf_counter() - started)


async def _aiohttp_rate(url: str, requests: int, in_flight: int) -> float:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:

        async def request_once() -> Any:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.json()

        return await _measure(request_once, requests, in_flight)


async def _httpx_rate(url: str, requests: int, in_flight: int, transport: httpx.AsyncBaseTransport | None) -> float:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, transport=transport) as client:

        async def request_once() -> Any:
            response = await client.get(url)
            response.raise_for_status()
            return response.json()

        return await _measure(request_once, requests, in_flight)


async def _provider_client_rate(base_url: str, requests: int, in_flight: int) -> float:
    settings = ProviderSettings(
        url=base_url,
        app_id="bench",
        app_secret=SecretStr("bench-secret"),
        max_connections=CONNECTIONS,
        max_concurrent_jobs=CONNECTIONS,
    )
    async with ProviderClient(settings) as provider:
        await provider.generate_token()  # seeded before timing, as in a long-running service

        async def request_once() -> Any:
            return await provider.get_insight(BENCH_CONVERSATION_ID, InsightEndpoint.MESSAGES)

        return await _measure(request_once, requests, in_flight)


async def _run(base_url: str, requests: int, in_flight: list[int]) -> list[dict[str, Any]]:
    url = f"{base_url}{InsightEndpoint.MESSAGES.path(BENCH_CONVERSATION_ID)}?sentiment=true"
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    clients: dict[str, Callable[[int], Awaitable[float]]] = {
        "aiohttp ClientSession": lambda n: _aiohttp_rate(url, requests, n),
        "httpx AsyncClient": lambda n: _httpx_rate(url, requests, n, None),
        "httpx + AiohttpTransport": lambda n: _httpx_rate(url, requests, n, AiohttpTransport(limits=limits)),
        "ProviderClient.get_insight": lambda n: _provider_client_rate(base_url, requests, n),
    }
    rows: list[dict[str, Any]] = []
    for name, rate_at in clients.items():
        rows.append({"client": name, "rps": {level: await rate_at(level) for level in in_flight}})
    reference = rows[0]["rps"]
    for row in rows:
        row["ratio"] = {level: row["rps"][level] / reference[level] for level in in_flight}
    return rows


def run_client_benchmark(requests: int = 4000, in_flight: list[int] | None = None) -> list[dict[str, Any]]:
    """Measure every client against one local server; one row per client.

    Each row is ``{"client": name, "rps": {in_flight: requests/s}, "ratio": {in_flight: rps / aiohttp's}}``.
    The client side runs on uvloop, like the services.
    """
    import uvloop

    levels = list(in_flight or DEFAULT_IN_FLIGHT)
    with bench_server() as base_url, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(base_url, requests, levels))


def render_markdown(rows: list[dict[str, Any]], in_flight: list[int]) -> str:
    header = "| client | " + " | ".join(f"{level} in flight" for level in in_flight) + " |"
    divider = "|---|" + "---|" * len(in_flight)
    lines = [header, divider]
    for row in rows:
        cells = [f"{row['rps'][level]:,.0f} ({row['ratio'][level]:.0%})" for level in in_flight]
        lines.append(f"| {row['client']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="timed requests per client and level")
    parser.add_argument("--in-flight", type=int, nargs="+", default=DEFAULT_IN_FLIGHT, help="concurrency levels")
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)  # internal: the server subprocess
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        _serve(args.serve_fd)
        return
    rows = run_client_benchmark(args.requests, args.in_flight)
    print(f"Requests/s for {args.requests:,} GETs per cell (percentage of aiohttp in brackets):\n")
    print(render_markdown(rows, args.in_flight))


if __name__ == "__main__":
    main()
