"""Secure by default: a server that others can reach does not start open.

Every Parley server binds 127.0.0.1 unless told otherwise, and there it may run without credentials (``make demo``,
development). Told to listen on any other address (``0.0.0.0`` in a container), it refuses to start while a
credential that guards it is missing or is the published development one: ingest without API keys, job-watcher
without the webhook secret, the engine with the development appSecret or without a webhook secret. Each refusal
names the setting to give; ``PARLEY_ALLOW_OPEN_ACCESS=true`` overrides it for a network you trust completely.

The interactive API documents (``/docs``, ``/redoc``, ``/openapi.json``) are served only when
``PARLEY_API_DOCS=true``: they map every route for whoever finds them.
"""

from __future__ import annotations

import ipaddress
from typing import Any

LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


def listens_beyond_loopback(host: str) -> bool:
    """Whether a server bound to ``host`` can be reached from other machines (any name but localhost counts)."""
    name = host.strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return False
    try:
        return not ipaddress.ip_address(name).is_loopback
    except ValueError:
        return True  # a host name or interface address: reachable by whoever can resolve it


def refuse_open_access(service: str, host: str, missing: list[str], *, allow_open_access: bool) -> None:
    """Raise ``ValueError`` (a settings validation error) when ``service`` would listen on ``host`` beyond
    loopback with the guards in ``missing`` absent, unless open access is explicitly allowed."""
    if not missing or allow_open_access or not listens_beyond_loopback(host):
        return
    raise ValueError(
        f"{service} would listen on {host}, beyond loopback, without {'; without '.join(missing)}. "
        "Set them (docker compose: scripts/compose-env writes generated ones to .env; Helm generates them), bind "
        "PARLEY_HTTP_HOST=127.0.0.1, or set PARLEY_ALLOW_OPEN_ACCESS=true on a network you trust completely"
    )


def api_document_routes(enabled: bool) -> dict[str, Any]:
    """``FastAPI(**api_document_routes(settings.api_docs))``: the document routes, or none of them."""
    if enabled:
        return {}
    return {"docs_url": None, "redoc_url": None, "openapi_url": None}
