"""Side-by-side requests/s of aiohttp, plain httpx, httpx on the aiohttp transport, and ProviderClient.

Every conversation costs Parley about a dozen provider calls, so the HTTP client's request rate bounds the
pipeline. This starts a small Starlette app under uvicorn (uvloop, httptools) in a subprocess on 127.0.0.1,
then measures every client against it in one run, at several numbers of requests in flight: the rate, and the
CPU this process spent per request (the server's is not counted; it moves less than the rate when something
else shares the machine). Tracing is set up as in the services (spans made, none recorded or exported); logging
is left alone until the last part.

Then it measures the CPU insight-fetcher's own work costs per conversation: its handler (nine Conversation API
reads through ProviderClient, with the service's hooks and logging) and the encoding of the InsightsReady record,
over the provider double's bodies for a two-message conversation. The Kafka consume and the transaction around
it are not included.

    .venv/bin/python -m parley_devtools.bench_http_client --requests 4000 --conversations 1000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from opentelemetry.trace import SpanKind
from parley_insight_fetcher.fetching import InsightFetcher
from parley_insight_fetcher.metrics import SERVICE
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_shared.events import InsightsReady, JobCompleted
from parley_shared.kafka.hops import Stream
from parley_shared.logs import ParleyLogHandler, configure_logging
from parley_shared.provider import InsightEndpoint, ProviderClient
from parley_shared.provider.metrics import provider_error_counter
from parley_shared.settings import ProviderSettings
from parley_shared.tracing import OtelSettings, configure_tracing, continuing_trace
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


@dataclass(frozen=True)
class Measured:
    """One client at one number in flight: its rate, and the CPU this process spent per request."""

    requests_per_second: float
    cpu_microseconds_per_request: float


# --- the server (runs in the subprocess) ---------------------------------------------------------------


def conversation_insight_bodies() -> dict[str, bytes]:
    """The provider double's Conversation API bodies for a two-message conversation, by path segment."""
    from parley_devtools.provider_double.insights import build_insight
    from parley_devtools.provider_double.records import Conversation, SourceMessage

    conversation = Conversation(
        conversation_id=BENCH_CONVERSATION_ID,
        name="bench conversation",
        kind="text",
        completed_content=[
            SourceMessage("Hello, this is conversation 7. The new platform is ready.", "Ana", "ana@example.com"),
            SourceMessage("Will you send the report by Friday?", "Ben", "ben@example.com"),
        ],
    )
    segments = {endpoint.path(BENCH_CONVERSATION_ID).rsplit("/", 1)[1] for endpoint in InsightEndpoint}
    return {segment: json.dumps(build_insight(conversation, segment)).encode() for segment in segments}


def _serve(fd: int) -> None:
    """Serve the bench app on an inherited listening socket until terminated."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    token = {"accessToken": "bench-token", "expiresIn": 86400}
    messages = json.dumps(MESSAGES_BODY).encode()
    insights = conversation_insight_bodies()

    async def generate_token(request: Request) -> JSONResponse:
        return JSONResponse(token)

    async def read_messages(request: Request) -> Response:
        return Response(messages, media_type="application/json")

    async def read_insight(request: Request) -> Response:
        return Response(insights[request.path_params["segment"]], media_type="application/json")

    app = Starlette(
        routes=[
            Route("/oauth2/token:generate", generate_token, methods=["POST"]),
            Route(f"/v1/conversations/{BENCH_CONVERSATION_ID}/messages", read_messages),
            Route("/v1/conversations/{conversation_id}/{segment}", read_insight),
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


async def _measure(request_once: RequestOnce, requests: int, in_flight: int) -> Measured:
    """``requests`` calls with ``in_flight`` workers pulling from one shared count."""
    for _ in range(WARMUP_REQUESTS):
        await request_once()
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await request_once()

    cpu_started, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    cpu, elapsed = time.process_time() - cpu_started, time.perf_counter() - started
    return Measured(requests / elapsed, cpu / requests * 1e6)


async def _aiohttp_rate(url: str, requests: int, in_flight: int) -> Measured:
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONNECTIONS)) as session:

        async def request_once() -> Any:
            async with session.get(url) as response:
                response.raise_for_status()
                return await response.json()

        return await _measure(request_once, requests, in_flight)


async def _httpx_rate(url: str, requests: int, in_flight: int, transport: httpx.AsyncBaseTransport | None) -> Measured:
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(limits=limits, transport=transport) as client:

        async def request_once() -> Any:
            response = await client.get(url)
            response.raise_for_status()
            return response.json()

        return await _measure(request_once, requests, in_flight)


async def _provider_client_rate(base_url: str, requests: int, in_flight: int) -> Measured:
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
    clients: dict[str, Callable[[int], Awaitable[Measured]]] = {
        "aiohttp ClientSession": lambda n: _aiohttp_rate(url, requests, n),
        "httpx AsyncClient": lambda n: _httpx_rate(url, requests, n, None),
        "httpx + AiohttpTransport": lambda n: _httpx_rate(url, requests, n, AiohttpTransport(limits=limits)),
        "ProviderClient.get_insight": lambda n: _provider_client_rate(base_url, requests, n),
    }
    rows: list[dict[str, Any]] = []
    for name, rate_at in clients.items():
        measured = {level: await rate_at(level) for level in in_flight}
        rows.append(
            {
                "client": name,
                "rps": {level: m.requests_per_second for level, m in measured.items()},
                "cpu_us": {level: m.cpu_microseconds_per_request for level, m in measured.items()},
            }
        )
    reference = rows[0]["rps"]
    for row in rows:
        row["ratio"] = {level: row["rps"][level] / reference[level] for level in in_flight}
    return rows


# --- insight-fetcher's CPU per conversation --------------------------------------------------------------


async def _insight_fetcher_cpu(base_url: str, conversations: int) -> dict[str, float]:
    """CPU-seconds per 1000 conversations of insight-fetcher's handler plus the encoding of its record.

    Built as ``parley_insight_fetcher.app`` builds it (the error-counting hook, the reads per conversation,
    ``conversations_in_flight`` handled at once, each in a task and under a span of its own as the hop does),
    logging at INFO as JSON lines (sent to /dev/null here).
    """
    settings = InsightFetcherSettings(
        provider=ProviderSettings(url=base_url, app_id="bench", app_secret=SecretStr("bench-secret"))
    )
    output: Stream[InsightsReady] = Stream(settings.topics.insights, InsightsReady, "the bench's InsightsReady")
    submitted_at = datetime.now(UTC)
    async with ProviderClient(settings.provider, on_response=provider_error_counter(SERVICE)) as provider:
        fetcher = InsightFetcher(provider, reads_in_flight=settings.reads_per_conversation)

        async def handle(n: int) -> None:
            completed = JobCompleted(
                request_id=f"request-{n}",
                conversation_id=str(n),
                job_id=f"job-{n}",
                submitted_at=submitted_at,
                detected_by="webhook",
            )
            # The hop handles each record under a span of its own, which the provider calls' spans join.
            with continuing_trace(None, "fetch insights", kind=SpanKind.CONSUMER):
                for ready in await fetcher.insights_for(completed):
                    output.record(ready)

        async def handle_all(first: int, count: int) -> None:
            remaining = iter(range(first, first + count))

            async def worker() -> None:
                for n in remaining:
                    await asyncio.create_task(handle(n))  # a task per record, like the hop

            await asyncio.gather(*(worker() for _ in range(settings.conversations_in_flight)))

        await handle_all(0, WARMUP_REQUESTS)
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        await handle_all(WARMUP_REQUESTS, conversations)
        cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
    return {"cpu_seconds_per_1000": cpu / conversations * 1000, "conversations_per_second": conversations / wall}


def _log_like_a_service() -> None:
    """JSON log lines at INFO, as a service writes them, sent to /dev/null."""
    configure_logging("INFO", "json")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, ParleyLogHandler):
            handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process


def run_client_benchmark(requests: int = 4000, in_flight: list[int] | None = None) -> list[dict[str, Any]]:
    """Measure every client against one local server; one row per client.

    Each row is ``{"client": name, "rps": {in_flight: requests/s}, "ratio": {in_flight: rps / aiohttp's},
    "cpu_us": {in_flight: client CPU µs per request}}``. The client side runs on uvloop, like the services.
    """
    import uvloop

    levels = list(in_flight or DEFAULT_IN_FLIGHT)
    configure_tracing(SERVICE, OtelSettings(traces_exporter="none"))
    with bench_server() as base_url, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(base_url, requests, levels))


def run_insight_fetcher_benchmark(conversations: int = 1000) -> dict[str, float]:
    """insight-fetcher's CPU per conversation against one local server (see ``_insight_fetcher_cpu``).

    Logging is set up as in a service, for the rest of the process: run it after the clients' rows, where httpx
    would log each request at INFO.
    """
    import uvloop

    configure_tracing(SERVICE, OtelSettings(traces_exporter="none"))
    _log_like_a_service()
    with bench_server() as base_url, asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_insight_fetcher_cpu(base_url, conversations))


def render_markdown(rows: list[dict[str, Any]], in_flight: list[int]) -> str:
    header = "| client | " + " | ".join(f"{level} in flight" for level in in_flight) + " |"
    divider = "|---|" + "---|" * len(in_flight)
    lines = [header, divider]
    for row in rows:
        cells = [
            f"{row['rps'][level]:,.0f} ({row['ratio'][level]:.0%}), {row['cpu_us'][level]:.0f} µs"
            for level in in_flight
        ]
        lines.append(f"| {row['client']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=4000, help="timed requests per client and level")
    parser.add_argument("--in-flight", type=int, nargs="+", default=DEFAULT_IN_FLIGHT, help="concurrency levels")
    parser.add_argument(
        "--conversations", type=int, default=1000, help="conversations for insight-fetcher's CPU (0: skip it)"
    )
    parser.add_argument("--serve-fd", type=int, help=argparse.SUPPRESS)  # internal: the server subprocess
    args = parser.parse_args(argv)
    if args.serve_fd is not None:
        _serve(args.serve_fd)
        return
    rows = run_client_benchmark(args.requests, args.in_flight)
    print(
        f"Requests/s for {args.requests:,} GETs per cell (percentage of aiohttp in brackets), "
        "and the client's CPU per request:\n"
    )
    print(render_markdown(rows, args.in_flight))
    if args.conversations > 0:
        fetcher = run_insight_fetcher_benchmark(args.conversations)
        print(
            f"\ninsight-fetcher, {args.conversations:,} conversations: "
            f"{fetcher['cpu_seconds_per_1000']:.2f} CPU-seconds per 1000 conversations "
            f"({fetcher['conversations_per_second']:,.0f} conversations/s)"
        )


if __name__ == "__main__":
    main()
