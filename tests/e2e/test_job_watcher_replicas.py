"""Three job-watcher replicas on a real broker: a webhook reaching any replica settles the job at once.

The replicas never poll in time to matter (first poll after 600 s), so every completion seen within the test's
bounds was heard through a callback: received by the replica that owns the job's partition, or passed to it
through the jobs topic by the one that received it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from parley_job_watcher.webhooks import partition_of
from parley_shared.events import InsightsReady
from parley_shared.settings import KafkaSettings, TopicNames
from prometheus_client.parser import text_string_to_metric_families

from parley_cli.local_stack import LocalStack
from parley_cli.watching import TopicFollower
from tests.support.pipeline_stack import free_port

pytestmark = pytest.mark.e2e
PARTITIONS = 6
REPLICAS = 3
MESSAGES = [{"payload": {"content": "Shall we ship on Friday?"}, "from": {"userId": "ann@example.com", "name": "Ann"}}]


@dataclass(frozen=True)
class Watchers:
    stack: LocalStack
    topics: TopicNames
    kafka: KafkaSettings

    @property
    def urls(self) -> list[str]:
        return [self.stack.processes[f"job-watcher-{n}"].url for n in range(REPLICAS)]

    @property
    def ingest(self) -> str:
        return self.stack.processes["ingest"].url

    @property
    def double(self) -> str:
        return self.stack.processes["provider-double"].url


@pytest.fixture(scope="module")
def watchers(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Watchers]:
    run = uuid.uuid4().hex[:8]
    topics = TopicNames.prefixed(f"watchers-{run}")
    stack = LocalStack(
        log_dir=tmp_path_factory.mktemp("job-watcher-replicas"),
        env={
            "PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
            **topics.as_env(),
            "PARLEY_KAFKA__TOPIC_PARTITIONS": str(PARTITIONS),
            "PARLEY_POLL_INITIAL_SECONDS": "600",
            "PARLEY_WEBHOOK_FALLBACK_INTERVAL_SECONDS": "600",
        },
    )
    try:
        stack.start(
            "provider-double",
            port=free_port(),
            ready_path="/_double/jobs",
            extra_env={"PARLEY_DOUBLE_SCHEDULED_SECONDS": "0.2", "PARLEY_DOUBLE_PROCESSING_SECONDS": "1.5"},
        )
        stack.env["PARLEY_API_URL"] = stack.processes["provider-double"].url
        for n in range(REPLICAS):
            stack.start(
                f"job-watcher-{n}",
                service="job-watcher",
                port=free_port(),
                extra_env={"PARLEY_INSTANCE_ID": f"watchers-{run}-{n}"},
            )
        for service in ("insight-fetcher", "ingest"):
            stack.start(service, port=free_port(), extra_env={"PARLEY_INSTANCE_ID": f"watchers-{run}"})
        yield Watchers(stack, topics, KafkaSettings(bootstrap_servers=kafka_bootstrap))
    finally:
        stack.stop_all()


async def partition_owners(watchers: Watchers, *, within_seconds: float = 60.0) -> dict[int, str]:
    """Which replica owns each jobs-topic partition, once the group has settled with every replica caught up."""
    deadline = time.monotonic() + within_seconds
    async with httpx.AsyncClient(timeout=5) as client:
        while True:
            statuses = [(url, (await client.get(f"{url}/status")).json()) for url in watchers.urls]
            owners = {p: url for url, status in statuses for p in status["partitions"]}
            settled = all(status["partitions"] and not status["replayingPartitions"] for _, status in statuses)
            if settled and sorted(owners) == list(range(PARTITIONS)):
                return owners
            if time.monotonic() > deadline:
                raise AssertionError(f"the replicas never shared the partitions: {statuses}")
            await asyncio.sleep(0.5)


async def submit(watchers: Watchers, client: httpx.AsyncClient, webhook_url: str) -> dict[str, str]:
    body = {"messages": MESSAGES, "webhookUrl": webhook_url}
    response = await client.post(f"{watchers.ingest}/v1/process/text", json=body)
    assert response.status_code == 202, response.text
    accepted: dict[str, str] = response.json()
    return accepted


async def insights_of(follower: TopicFollower, job_ids: set[str], *, within_seconds: float) -> list[InsightsReady]:
    """The InsightsReady of each of ``job_ids`` (fails if they do not all arrive in time)."""
    arrived: list[InsightsReady] = []

    async def read() -> None:
        async for _, event in follower.events():
            if event.get("jobId") in job_ids:
                arrived.append(InsightsReady.model_validate(event))
                if {ready.job_id for ready in arrived} >= job_ids:
                    return

    try:
        await asyncio.wait_for(read(), within_seconds)
    except TimeoutError:
        missing = job_ids - {ready.job_id for ready in arrived}
        raise AssertionError(f"no insights within {within_seconds:g} s for jobs {sorted(missing)}") from None
    return arrived


async def webhook_counts(watchers: Watchers, client: httpx.AsyncClient) -> dict[str, float]:
    counts: dict[str, float] = {}
    for url in watchers.urls:
        for family in text_string_to_metric_families((await client.get(f"{url}/metrics")).text):
            for sample in family.samples:
                if sample.name == "parley_webhooks_received_total":
                    result = sample.labels["result"]
                    counts[result] = counts.get(result, 0.0) + sample.value
    return counts


async def test_callbacks_reaching_any_replica_settle_jobs_without_waiting_for_a_poll(watchers: Watchers) -> None:
    owners = await partition_owners(watchers)
    async with (
        TopicFollower(watchers.kafka, [watchers.topics.insights]) as insights,
        httpx.AsyncClient(timeout=30) as client,
    ):
        before = await webhook_counts(watchers, client)
        # Each job's callbacks go to one replica, whichever owns its conversation's partition.
        jobs = [
            await submit(watchers, client, f"{watchers.urls[n % REPLICAS]}/webhooks/jobs") for n in range(3 * REPLICAS)
        ]
        arrived = await insights_of(insights, {job["jobId"] for job in jobs}, within_seconds=45)
        after = await webhook_counts(watchers, client)

    assert sorted(event.job_id for event in arrived) == sorted(job["jobId"] for job in jobs)  # each exactly once
    receivers = {job["jobId"]: watchers.urls[n % REPLICAS] for n, job in enumerate(jobs)}
    elsewhere = [
        job for job in jobs if owners[partition_of(job["conversationId"], range(PARTITIONS))] != receivers[job["jobId"]]
    ]
    assert elsewhere, "some callbacks must have reached a replica that does not own the job"
    # scheduled, in_progress and completed each reached the wrong replica for those jobs, and went on through Kafka
    assert after.get("forwarded", 0) - before.get("forwarded", 0) >= 3 * len(elsewhere)
    assert after.get("unforwarded", 0) == before.get("unforwarded", 0)


async def test_a_callback_without_a_conversation_reaches_the_owner_through_every_partition(
    watchers: Watchers,
) -> None:
    owners = await partition_owners(watchers)
    async with (
        TopicFollower(watchers.kafka, [watchers.topics.insights]) as insights,
        httpx.AsyncClient(timeout=30) as client,
    ):
        # Symbl's documented callback names only the job: the double's own callbacks go nowhere here.
        job = await submit(watchers, client, "http://127.0.0.1:9/webhooks/jobs")
        owner = owners[partition_of(job["conversationId"], range(PARTITIONS))]
        stranger = next(url for url in watchers.urls if url != owner)
        for _ in range(100):
            jobs = (await client.get(f"{watchers.double}/_double/jobs")).json()["jobs"]
            if any(j["jobId"] == job["jobId"] and j["status"] == "completed" for j in jobs):
                break
            await asyncio.sleep(0.1)
        callback = await client.post(f"{stranger}/webhooks/jobs", json={"jobId": job["jobId"], "status": "completed"})
        assert callback.status_code == 202, callback.text
        assert callback.json()["action"] == "forwarded to the replica watching the job"
        [ready] = await insights_of(insights, {job["jobId"]}, within_seconds=30)

    assert ready.conversation_id == job["conversationId"]


def test_the_replicas_log_no_errors_of_their_own(watchers: Watchers) -> None:
    """aiokafka may log a coordinator still starting; Parley's own code logs no error and raises nothing."""
    for n in range(REPLICAS):
        log = watchers.stack.processes[f"job-watcher-{n}"].log_path.read_text(errors="replace")
        own_errors = [
            line
            for line in log.splitlines()
            if ('"level": "error"' in line and '"logger": "parley' in line) or "Traceback" in line
        ]
        assert not own_errors, own_errors[:5]
