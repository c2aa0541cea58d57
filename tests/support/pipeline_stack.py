"""A running Parley for end-to-end tests: Kafka topics of its own, a provider and the three services as processes."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from parley_shared.settings import KafkaSettings, TopicNames

from parley_cli.local_stack import LocalStack
from parley_cli.watching import TopicFollower


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Pipeline:
    def __init__(
        self, stack: LocalStack, topics: TopicNames, kafka: KafkaSettings, extra_env: dict[str, dict[str, str]]
    ) -> None:
        self.stack, self.topics, self.kafka = stack, topics, kafka
        self.extra_env = extra_env  # per-service settings to keep when a service is restarted

    @property
    def ingest(self) -> str:
        return self.stack.processes["ingest"].url

    @property
    def double(self) -> str:
        return self.stack.processes["provider-double"].url

    def restart(self, name: str, *, kill: bool) -> None:
        service = self.stack.processes[name]
        port = service.port
        self.stack.stop(name, kill=kill)
        self.stack.start(name, port=port, extra_env=self.extra_env.get(name))


@contextmanager
def running_pipeline(
    kafka_bootstrap: str, log_dir: Path, *, provider: str = "provider-double", env: dict[str, str] | None = None
) -> Iterator[Pipeline]:
    """``provider`` is "provider-double" (scripted, with a call log) or "engine" (Parley's real engine).

    ``env`` adds settings for every process (the provider's too), such as ``OTEL_*`` variables.
    """
    run = uuid.uuid4().hex[:8]
    topics = TopicNames.prefixed(f"e2e-{run}")
    common_env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        **topics.as_env(),
        "PARLEY_KAFKA__TOPIC_PARTITIONS": "3",
        "PARLEY_LOG_LEVEL": "INFO",
        "PARLEY_POLL_INITIAL_SECONDS": "0.5",
        "PARLEY_INSTANCE_ID": f"e2e-{run}",
        **(env or {}),
    }
    if provider == "engine":
        # The engine signs its webhooks and job-watcher refuses any it cannot verify.
        common_env["PARLEY_WEBHOOK_SECRET"] = secrets.token_hex(16)
    stack = LocalStack(log_dir=log_dir, env=common_env)
    # Per-service settings kept when a service is restarted (the engine's data dir most of all).
    extra_env: dict[str, dict[str, str]] = {
        # A stream's job held by an engine that died is taken up again after this lease.
        "engine": {
            "PARLEY_ENGINE_DATA_DIR": str(log_dir / "engine-data"),
            "PARLEY_WORKERS": "1",
            "PARLEY_JOB_LEASE_SECONDS": "5",
        },
    }
    watcher_port = free_port()
    # The engine calls back only public addresses and the job-watcher it trusts.
    extra_env["engine"]["PARLEY_TRUSTED_WEBHOOK_URLS"] = f"http://127.0.0.1:{watcher_port}/webhooks/jobs"
    try:
        if provider == "engine":
            api = stack.start("engine", port=free_port(), timeout=120, extra_env=extra_env["engine"])
        else:
            api = stack.start(
                "provider-double",
                port=free_port(),
                ready_path="/_double/jobs",
                extra_env={"PARLEY_DOUBLE_SCHEDULED_SECONDS": "0.2", "PARLEY_DOUBLE_PROCESSING_SECONDS": "1.0"},
            )
        stack.env["PARLEY_API_URL"] = api.url
        watcher = stack.start("job-watcher", port=watcher_port)
        stack.start("insight-fetcher", port=free_port())
        extra_env["ingest"] = {"PARLEY_WEBHOOK_URL": f"{watcher.url}/webhooks/jobs"}
        stack.start("ingest", port=free_port(), extra_env=extra_env["ingest"])
        yield Pipeline(stack, topics, KafkaSettings(bootstrap_servers=kafka_bootstrap), extra_env)
    finally:
        stack.stop_all()


async def collect(
    follower: TopicFollower, expected_jobs: set[str], *, settle_seconds: float = 3.0, wait_seconds: float = 60.0
) -> dict[str, list[dict[str, Any]]]:
    """Events by eventType until every expected job has an outcome, then a little longer to catch duplicates."""
    seen: dict[str, list[dict[str, Any]]] = {}
    finished: set[str] = set()

    async def read(until_done: bool) -> None:
        async for _, event in follower.events():
            seen.setdefault(event.get("eventType", "?"), []).append(event)
            if event.get("eventType") in ("InsightsReady", "JobFailed", "DeadLetter"):
                finished.add(event.get("jobId") or event.get("requestId") or "?")
            if until_done and expected_jobs <= finished:
                return

    await asyncio.wait_for(read(True), wait_seconds)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(False), settle_seconds)
    return seen


def text_body(n: int, *, fail: bool = False) -> dict[str, Any]:
    marker = " #fail" if fail else ""
    return {
        "name": f"e2e conversation {n}",
        "messages": [
            {
                "payload": {"content": f"Hello, this is message one of conversation {n}.{marker}"},
                "from": {"userId": "ana@example.com", "name": "Ana"},
            },
            {
                "payload": {"content": "Will you send the report by Friday?"},
                "from": {"userId": "ben@example.com", "name": "Ben"},
            },
        ],
    }


async def submit_text(
    client: httpx.AsyncClient, body: dict[str, Any], key: str | None = None, conversation_id: str | None = None
) -> dict[str, Any]:
    headers = {"Idempotency-Key": key} if key else {}
    if conversation_id:
        response = await client.put(f"/v1/process/text/{conversation_id}", json=body, headers=headers)
    else:
        response = await client.post("/v1/process/text", json=body, headers=headers)
    assert response.status_code == 202, response.text
    accepted: dict[str, Any] = response.json()
    return accepted
