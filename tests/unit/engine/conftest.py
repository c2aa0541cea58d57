"""Fixtures of the engine's tests: a throwaway PostgreSQL server, started once per run and only when asked for."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from parley_devtools.postgres_server import PostgresServer, PostgresUnavailable, start_postgres, stop_postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    try:
        server = start_postgres()
    except PostgresUnavailable as error:
        pytest.skip(str(error))
    try:
        yield server
    finally:
        stop_postgres(server)
