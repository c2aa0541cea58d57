"""``python -m parley_devtools.provider_double``: serve the double on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from typing import Any

import uvicorn
import uvloop

from parley_devtools.provider_double.app import create_app
from parley_devtools.provider_double.config import DoubleConfig


def parse_overrides(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line options that were given; they override ``PARLEY_DOUBLE_*`` settings."""
    parser = argparse.ArgumentParser(prog="python -m parley_devtools.provider_double", description=__doc__)
    parser.add_argument("--port", type=int, help="TCP port on 127.0.0.1; 0 picks a free one (default 8790)")
    parser.add_argument("--app-id", help="the accepted appId")
    parser.add_argument("--app-secret", help="the accepted appSecret")
    parser.add_argument("--scheduled-seconds", type=float, help="delay before a job is in_progress")
    parser.add_argument("--processing-seconds", type=float, help="delay from in_progress to completed/failed")
    parser.add_argument("--fail-marker", help='jobs whose name or content contains this fail ("#fail")')
    parser.add_argument(
        "--drop-webhooks", action="store_true", default=None, help="never call webhooks (polling must notice)"
    )
    parser.add_argument("--webhook-timeout-seconds", type=float, help="timeout of one webhook POST")
    parser.add_argument("--token-ttl-seconds", type=int, help="lifetime of an access token")
    return {key: value for key, value in vars(parser.parse_args(argv)).items() if value is not None}


async def serve(config: DoubleConfig) -> None:
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            host="127.0.0.1",
            port=config.port,
            http="httptools",
            log_level="warning",
            access_log=False,
            lifespan="on",
        )
    )
    serving = asyncio.create_task(server.serve())
    # uvicorn offers no "started" event, only a flag; poll it briefly so the ready line carries the real port.
    while not server.started and not serving.done():  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    if server.started:
        port = server.servers[0].sockets[0].getsockname()[1]
        print(f"provider double listening on http://127.0.0.1:{port}", flush=True)
    await serving


def main(argv: list[str] | None = None) -> None:
    config = DoubleConfig(**parse_overrides(argv))
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(serve(config))


if __name__ == "__main__":
    main()
