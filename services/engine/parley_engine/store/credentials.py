"""The engine's auth secrets: the key that signs access tokens, and the current token of each application."""

from __future__ import annotations

import secrets
from datetime import datetime

from parley_engine.store.database import Database
from parley_engine.store.schema import AccessTokenRow, EngineSecretRow


class CredentialStore:
    def __init__(self, database: Database) -> None:
        self._database = database

    async def signing_key(self) -> bytes:
        """The key that signs access tokens, created once and kept in the database so tokens survive restarts."""
        async with self._database.write() as session:
            row = await session.get(EngineSecretRow, "token_signing_key")
            if row is None:
                row = EngineSecretRow(name="token_signing_key", value=secrets.token_hex(32))
                session.add(row)
            return bytes.fromhex(row.value)

    async def current_token(self, app_id: str) -> AccessTokenRow | None:
        async with self._database.read() as session:
            return await session.get(AccessTokenRow, app_id)

    async def save_token(self, app_id: str, token: str, expires_at: datetime) -> None:
        async with self._database.write() as session:
            row = await session.get(AccessTokenRow, app_id)
            if row is None:
                session.add(AccessTokenRow(app_id=app_id, token=token, expires_at=expires_at))
            else:
                row.token, row.expires_at = token, expires_at
