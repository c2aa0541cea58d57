"""Signed webhooks: the engine signs each job-status callback, job-watcher refuses any it cannot verify.

``X-Parley-Signature: sha256=<hex HMAC-SHA256 of the raw body with the shared secret>``.
"""

from __future__ import annotations

import hashlib
import hmac

SIGNATURE_HEADER = "X-Parley-Signature"


def signature(secret: str, body: bytes) -> str:
    """The header value for ``body``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signature_matches(secret: str, body: bytes, header_value: str | None) -> bool:
    """Constant-time check of a received signature header."""
    if not header_value:
        return False
    return hmac.compare_digest(signature(secret, body).encode(), header_value.strip().encode())
