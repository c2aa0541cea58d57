"""Two ingest replicas in front of one real engine: the same requestId through both gives one provider job.

Each replica's ledger knows only what it submitted itself (or read back at start-up), so the second replica calls
the provider too; the requestId it sends as ``Idempotency-Key`` makes the engine answer with the first job.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from parley_shared.settings import TopicNames

from parley_cli.local_stack import LocalStack

pytestmark = pytest.mark.e2e
MESSAGES = [{"payload": {"content": "Shall we ship on Friday?"}, "from": {"userId": "ann@example.com", "name": "Ann"}}]
CREDENTIALS = {"type": "application", "appId": "parley-dev", "appSecret": "parley-dev-secret"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Replicas:
    engine: str
    ingests: tuple[str, str]


@pytest.fixture(scope="module")
def replicas(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    work = tmp_path_factory.mktemp("ingest-replicas")
    stacks = [LocalStack(log_dir=work / name) for name in ("engine", "ingest-a", "ingest-b")]
    try:
        engine = stacks[0].start(
            "engine", port=free_port(), timeout=120, extra_env={"PARLEY_ENGINE_DATA_DIR": str(work / "data")}
        )
        topics = TopicNames.prefixed(f"replicas-{uuid.uuid4().hex[:8]}")
        env = {"PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap, "PARLEY_API_URL": engine.url, **topics.as_env()}
        ingests = [
            stack.start("ingest", port=free_port(), extra_env={**env, "PARLEY_INSTANCE_ID": f"replica-{name}"}).url
            for stack, name in zip(stacks[1:], "ab", strict=True)
        ]
        yield Replicas(engine.url, (ingests[0], ingests[1]))
    finally:
        for stack in reversed(stacks):
            stack.stop_all()


async def submit(ingest: str, request_id: str) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=ingest, timeout=30) as client:
        response = await client.post(
            "/v1/process/text", json={"messages": MESSAGES}, headers={"Idempotency-Key": request_id}
        )
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted


async def engine_conversations(engine: str) -> list[str]:
    async with httpx.AsyncClient(base_url=engine, timeout=30) as client:
        token = (await client.post("/oauth2/token:generate", json=CREDENTIALS)).json()["accessToken"]
        listed = (await client.get("/v1/conversations", headers={"x-api-key": token})).json()
    return [conversation["id"] for conversation in listed["conversations"]]


async def test_one_request_id_through_two_ingest_replicas_is_one_engine_job(replicas: Replicas, tmp_path: Path) -> None:
    first, second = replicas.ingests
    together = await asyncio.gather(submit(first, "replicas-together"), submit(second, "replicas-together"))
    one_after_another = [await submit(first, "replicas-in-turn"), await submit(second, "replicas-in-turn")]

    for pair in (together, one_after_another):
        assert pair[0]["jobId"] == pair[1]["jobId"]
        assert pair[0]["conversationId"] == pair[1]["conversationId"]
    assert together[0]["jobId"] != one_after_another[0]["jobId"]
    assert sorted(await engine_conversations(replicas.engine)) == sorted(
        {together[0]["conversationId"], one_after_another[0]["conversationId"]}
    )
