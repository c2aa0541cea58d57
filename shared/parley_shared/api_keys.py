"""API keys for a service's HTTP API: the setting that holds them and the FastAPI dependency that checks them.

A caller sends one of the configured keys as ``Authorization: Bearer <key>`` or ``x-api-key: <key>``. With no
keys configured the check is off (development and the demo); a deployment sets ``PARLEY_API_KEYS``.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Annotated

from fastapi import Depends
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, SecretStr
from pydantic_settings import NoDecode

from parley_shared.http_errors import ApiProblem
from parley_shared.settings import split_commas

# A settings field type: ``api_keys: ApiKeys = ()``, given as ``PARLEY_API_KEYS=key-a,key-b``. NoDecode keeps
# pydantic-settings from expecting JSON.
ApiKeys = Annotated[tuple[SecretStr, ...], NoDecode, BeforeValidator(split_commas)]

_bearer = HTTPBearer(auto_error=False, description="an API key as a bearer token")
_api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="an API key")


def _digest(key: str) -> bytes:
    # Comparing fixed-length digests keeps the comparison's time independent of the keys' lengths too.
    return hashlib.sha256(key.encode()).digest()


class ApiKeyCheck:
    """A FastAPI dependency that lets a request through only with one of ``keys`` (anything, when none).

    Apply it to a router: ``APIRouter(dependencies=[Depends(ApiKeyCheck(settings.api_keys))])``. A refused
    request gets 401 ``{"message": …}`` (through ``install_error_handlers``); the presented key is never echoed.
    """

    def __init__(self, keys: Iterable[SecretStr]) -> None:
        self._digests = tuple(_digest(key.get_secret_value()) for key in keys)

    def __repr__(self) -> str:
        return f"ApiKeyCheck({len(self._digests)} key(s))"

    @property
    def enabled(self) -> bool:
        return bool(self._digests)

    def accepts(self, candidate: str) -> bool:
        """Whether ``candidate`` is one of the keys, compared against every key in constant time."""
        presented = _digest(candidate)
        matched = False
        for digest in self._digests:
            matched |= hmac.compare_digest(digest, presented)
        return matched

    async def __call__(
        self,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        api_key: Annotated[str | None, Depends(_api_key_header)],
    ) -> None:
        if not self.enabled:
            return
        presented = [key for key in (bearer.credentials if bearer else None, api_key) if key]
        if not presented:
            raise ApiProblem(401, "this API needs an API key: send 'Authorization: Bearer <key>' or 'x-api-key: <key>'")
        if not any(self.accepts(key) for key in presented):
            raise ApiProblem(401, "the API key is not valid")
