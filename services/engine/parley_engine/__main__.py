"""``python -m parley_engine``: serve the engine on ``PARLEY_HTTP_HOST``:``PARLEY_HTTP_PORT``."""

from __future__ import annotations

import uvicorn

from parley_engine.app import create_app
from parley_engine.settings import EngineSettings


def serve(settings: EngineSettings | None = None) -> None:
    settings = settings or EngineSettings()
    uvicorn.run(
        create_app(settings),
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        log_config=None,  # create_app routed every logger, uvicorn's too, through Parley's structured handler
        # Uploads are streamed to disk by the app; uvicorn must not cap or buffer them.
        timeout_keep_alive=30,
        # The Streaming API's WebSockets (uvicorn's maintained implementation; subprotocol echo, 429 denials).
        ws="websockets-sansio",
    )


if __name__ == "__main__":
    serve()
