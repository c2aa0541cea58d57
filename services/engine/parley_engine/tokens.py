"""Access tokens: HS256 JWTs signed with a key kept in the database (``CredentialStore.signing_key``).

So tokens stay valid across restarts and replicas, and checking one needs no database read. Asking again while a
token is valid returns that same token with its remaining lifetime, as Symbl does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from parley_engine.settings import EngineSettings
from parley_engine.store import CredentialStore


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Issues and checks access tokens for the one application the engine is configured with."""

    def __init__(self, settings: EngineSettings, credentials: CredentialStore, signing_key: bytes) -> None:
        self._settings = settings
        self._credentials = credentials
        self._key = signing_key

    def credentials_match(self, app_id: str, app_secret: str) -> bool:
        # Both comparisons always run, so timing reveals neither which part was wrong nor how much matched.
        id_ok = hmac.compare_digest(app_id.encode(), self._settings.app_id.encode())
        secret_ok = hmac.compare_digest(app_secret.encode(), self._settings.app_secret.get_secret_value().encode())
        return id_ok and secret_ok

    async def token_for(self, app_id: str) -> tuple[str, int]:
        """The current token and its remaining seconds, minting a new one when there is none or it is nearly spent."""
        now = datetime.now(UTC)
        current = await self._credentials.current_token(app_id)
        if current is not None and self.verify(current.token, grace_seconds=0):
            remaining = int((current.expires_at - now).total_seconds())
            if remaining >= 60:
                return current.token, remaining
        expires_at = (now + timedelta(seconds=self._settings.token_ttl_seconds)).replace(microsecond=0)
        token = self.sign_token(app_id, expires_at)
        await self._credentials.save_token(app_id, token, expires_at)
        return token, self._settings.token_ttl_seconds

    def sign_token(self, app_id: str, expires_at: datetime) -> str:
        """A new token for ``app_id`` that expires at ``expires_at`` (not recorded as the current one)."""
        issued = int(datetime.now(UTC).timestamp())
        return self._sign({"sub": app_id, "iat": issued, "exp": int(expires_at.timestamp())})

    def _sign(self, claims: dict[str, Any]) -> str:
        header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
        payload = _b64(json.dumps({**claims, "jti": secrets.token_hex(8)}, separators=(",", ":")).encode())
        signature = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
        return f"{header}.{payload}.{_b64(signature)}"

    def verify(self, token: str, *, grace_seconds: int | None = None) -> bool:
        """Whether ``token`` was signed here for the configured app and has not expired (beyond the grace)."""
        grace = self._settings.token_grace_seconds if grace_seconds is None else grace_seconds
        try:
            header, payload, signature = token.split(".")
            expected = hmac.new(self._key, f"{header}.{payload}".encode(), hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(signature)):
                return False
            claims = json.loads(_unb64(payload))
            expires = float(claims["exp"])
            subject = str(claims["sub"])
        except (ValueError, KeyError, TypeError):
            return False
        return subject == self._settings.app_id and time.time() < expires + grace
