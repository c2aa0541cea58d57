"""Symbl's application auth: ``POST /oauth2/token:generate`` and the access-token check on every other path.

Tokens are HS256 JWTs signed with a key kept in the database, so they stay valid across restarts and replicas
and checking one needs no database read. Asking again while a token is valid returns that same token with its
remaining lifetime, as Symbl does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from parley_shared.http_errors import ApiProblem
from parley_shared.validation import describe_validation_error
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from parley_engine.settings import EngineSettings
from parley_engine.store import Store

TOKEN_REJECTED = "Token validation failed for provided token."


class TokenRequest(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    type: str = Field(description='always "application"')
    app_id: str = Field(alias="appId")
    app_secret: str = Field(alias="appSecret")


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenAuthority:
    """Issues and checks access tokens for the one application the engine is configured with."""

    def __init__(self, settings: EngineSettings, store: Store, signing_key: bytes) -> None:
        self._settings = settings
        self._store = store
        self._key = signing_key

    def credentials_match(self, app_id: str, app_secret: str) -> bool:
        # Both comparisons always run, so timing reveals neither which part was wrong nor how much matched.
        id_ok = hmac.compare_digest(app_id.encode(), self._settings.app_id.encode())
        secret_ok = hmac.compare_digest(app_secret.encode(), self._settings.app_secret.get_secret_value().encode())
        return id_ok and secret_ok

    async def token_for(self, app_id: str) -> tuple[str, int]:
        """The current token and its remaining seconds, minting a new one when there is none or it is nearly spent."""
        now = datetime.now(UTC)
        current = await self._store.current_token(app_id)
        if current is not None and self.verify(current.token, grace_seconds=0):
            remaining = int((current.expires_at - now).total_seconds())
            if remaining >= 60:
                return current.token, remaining
        expires_at = (now + timedelta(seconds=self._settings.token_ttl_seconds)).replace(microsecond=0)
        token = self.sign_token(app_id, expires_at)
        await self._store.save_token(app_id, token, expires_at)
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


def presented_token(request: Request) -> str | None:
    """The token in any of the forms Symbl accepts: ``Authorization: Bearer``, ``x-api-key``, ``?access_token=``."""
    authorization = request.headers.get("authorization")
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return request.headers.get("x-api-key") or request.query_params.get("access_token") or None


async def require_access_token(request: Request) -> None:
    authority: TokenAuthority = request.app.state.token_authority
    token = presented_token(request)
    if token is None or not authority.verify(token):
        raise ApiProblem(401, TOKEN_REJECTED)


AccessChecked = Annotated[None, Depends(require_access_token)]


def build_auth_router() -> APIRouter:
    router = APIRouter(tags=["authentication"])

    @router.post("/oauth2/token:generate", summary="Generate an access token for an application")
    async def generate_token(request: Request) -> dict[str, Any]:
        raw = await request.body()
        try:
            body = TokenRequest.model_validate_json(raw or b"{}")
        except ValidationError as error:
            raise ApiProblem(400, f"invalid token request: {describe_validation_error(error)}") from None
        if body.type != "application":
            raise ApiProblem(400, 'invalid token request: type: only "application" is supported')
        authority: TokenAuthority = request.app.state.token_authority
        if not authority.credentials_match(body.app_id, body.app_secret):
            raise ApiProblem(401, "The appId or appSecret is not valid.")
        token, expires_in = await authority.token_for(body.app_id)
        return {"accessToken": token, "expiresIn": expires_in}

    return router
