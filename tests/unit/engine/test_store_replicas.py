"""Several engine replicas on one PostgreSQL database: leases, claims, take-over, admission, idempotency keys.

Each "replica" is a Store and a JobRunner of its own (its own connection pool and replica id) in this process,
over fake analysis workers, all on one throwaway PostgreSQL server (parley_devtools/postgres_server.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from parley_engine.conversation import ConversationInsights
from parley_engine.identifiers import new_conversation_id, new_job_id
from parley_engine.jobs import JobRunner
from parley_engine.settings import EngineSettings
from parley_engine.store import (
    IdempotencyClaim,
    IdempotencyKeyTaken,
    JobLeaseLost,
    NewConversation,
    NewJob,
    Store,
    TooManyJobs,
    utc_now,
)
from parley_engine.workers import ThreadWorkers

from parley_devtools.postgres_server import PostgresServer
from tests.support.engine import FakeAnalyzer, FakeRecognizer, Gate, engine_settings


@pytest.fixture
def database_url(postgres: PostgresServer) -> str:
    return postgres.create_database()


def text_job(label: str, job_id: str | None = None) -> NewJob:
    """A text job of one message whose content is ``label``, so a conversation's messages show which jobs ran."""
    message = {"payload": {"content": label}, "from": {"name": "Ann"}}
    return NewJob(id=job_id or new_job_id(), kind="text", options={}, input_json=[message])


def new_conversation() -> NewConversation:
    cid = new_conversation_id()
    return NewConversation(id=cid, name=cid, source="text", start_time=utc_now())


@dataclass
class Replica:
    store: Store
    runner: JobRunner

    @property
    def replica_id(self) -> str:
        return self.runner.replica_id


async def start_replica(
    database_url: str, settings: EngineSettings, analyzer: FakeAnalyzer, *, lease_seconds: float
) -> Replica:
    store = await Store.open(database_url)
    runner = JobRunner(
        store.jobs,
        store.conversations,
        ThreadWorkers(FakeRecognizer, lambda: analyzer),
        settings,
        lease_seconds=lease_seconds,
    )
    await runner.start()
    return Replica(store, runner)


@asynccontextmanager
async def replica(
    database_url: str, settings: EngineSettings, analyzer: FakeAnalyzer, *, lease_seconds: float = 30.0
) -> AsyncIterator[Replica]:
    started = await start_replica(database_url, settings, analyzer, lease_seconds=lease_seconds)
    try:
        yield started
    finally:
        await started.runner.stop()
        await started.store.close()


async def wait_until(condition: Callable[[], Awaitable[bool]], what: str, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def job_state(store: Store, job_id: str) -> tuple[str, str | None]:
    row = await store.jobs.job(job_id)
    assert row is not None
    return row.status, row.claimed_by


async def texts(store: Store, conversation_id: str) -> list[str]:
    return [utterance.text for utterance in await store.conversations.utterances(conversation_id)]


async def test_two_replicas_run_every_job_once_in_conversation_order(database_url: str, tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, workers=2, dispatch_poll_seconds=0.02)
    analyzer = FakeAnalyzer()  # shared: it sees every analysis either replica runs, and their overlaps
    async with (
        replica(database_url, settings, analyzer) as first,
        replica(database_url, settings, analyzer) as second,
    ):
        conversations: list[str] = []
        for number in range(10):
            opener, other = (first, second) if number % 2 else (second, first)
            conversation = new_conversation()
            opening = text_job("opening")
            await opener.store.jobs.submit_job(
                text_job(opening.id, opening.id), new_conversation=conversation, max_active_jobs=100
            )
            conversations.append(conversation.id)
            # Appends through both replicas at once: they must still get distinct, gapless sequence numbers.
            appends = [text_job("append") for _ in range(3)]
            await asyncio.gather(
                *(
                    replica_.store.jobs.submit_job(text_job(job.id, job.id), conversation_id=conversation.id)
                    for replica_, job in zip([first, other, other], appends, strict=True)
                )
            )

        async def all_finished() -> bool:
            return await first.store.jobs.count_active_jobs() == 0

        await wait_until(all_finished, "40 jobs to finish")

        claimers: set[str | None] = set()
        for cid in conversations:
            jobs = await first.store.jobs.conversation_jobs(cid)
            assert [job.sequence for job in jobs] == [1, 2, 3, 4]
            assert {job.status for job in jobs} == {"completed"}
            claimers.update(job.claimed_by for job in jobs)
            # Each job's message once, in submission (sequence) order: nothing ran twice or out of turn.
            assert await texts(second.store, cid) == [job.id for job in jobs]
            assert [count for conversation, count, _ in analyzer.calls if conversation == cid] == [1, 2, 3, 4]
            assert analyzer.max_concurrent[cid] == 1
        assert claimers == {first.replica_id, second.replica_id}


async def test_a_dead_replicas_job_is_taken_over_when_its_lease_runs_out(database_url: str, tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, workers=1, dispatch_poll_seconds=0.02)
    gate = Gate()
    dead = await start_replica(database_url, settings, FakeAnalyzer(gate=gate), lease_seconds=2.0)
    try:
        conversation = new_conversation()
        running, waiting = text_job("running"), text_job("waiting")
        await dead.store.jobs.submit_job(text_job(running.id, running.id), new_conversation=conversation)
        await dead.store.jobs.submit_job(text_job(waiting.id, waiting.id), conversation_id=conversation.id)
        assert await asyncio.to_thread(gate.entered.wait, 10)
        await dead.runner.stop(release_jobs=False)  # the replica dies mid-job: no hand-back, no renewal
        assert await job_state(dead.store, running.id) == ("in_progress", dead.replica_id)

        survivor_analyzer = FakeAnalyzer()
        async with replica(database_url, settings, survivor_analyzer, lease_seconds=2.0) as survivor:
            # Starting next to a job whose lease still holds takes nothing.
            assert await job_state(survivor.store, running.id) == ("in_progress", dead.replica_id)

            async def both_completed() -> bool:
                states = [await job_state(survivor.store, job_id) for job_id in (running.id, waiting.id)]
                return all(status == "completed" for status, _ in states)

            await wait_until(both_completed, "the survivor to take over and finish both jobs")
            assert await job_state(survivor.store, running.id) == ("completed", survivor.replica_id)
            assert await texts(survivor.store, conversation.id) == [running.id, waiting.id]
            assert [count for _, count, _ in survivor_analyzer.calls] == [1, 2]

            # The dead replica's stuck analysis finishing late commits nothing.
            gate.opened.set()
            await asyncio.sleep(0.3)
            assert await texts(survivor.store, conversation.id) == [running.id, waiting.id]
    finally:
        gate.opened.set()
        await dead.store.close()


async def test_restarting_one_replica_leaves_the_others_running_jobs_alone(database_url: str, tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, workers=1, dispatch_poll_seconds=0.02)
    restarted_gate, steady_gate = Gate(), Gate()
    try:
        restarted = await start_replica(database_url, settings, FakeAnalyzer(gate=restarted_gate), lease_seconds=30)
        handed_back = text_job("handed back")
        first_conversation = new_conversation()
        await restarted.store.jobs.submit_job(
            text_job(handed_back.id, handed_back.id), new_conversation=first_conversation
        )
        assert await asyncio.to_thread(restarted_gate.entered.wait, 10)

        async with replica(database_url, settings, FakeAnalyzer(gate=steady_gate)) as steady:
            kept = text_job("kept")
            second_conversation = new_conversation()
            await steady.store.jobs.submit_job(text_job(kept.id, kept.id), new_conversation=second_conversation)
            assert await asyncio.to_thread(steady_gate.entered.wait, 10)
            assert await job_state(steady.store, kept.id) == ("in_progress", steady.replica_id)

            await restarted.runner.stop()
            await restarted.store.close()
            # A clean stop hands back only its own job.
            assert await job_state(steady.store, handed_back.id) == ("scheduled", None)
            assert await job_state(steady.store, kept.id) == ("in_progress", steady.replica_id)

            async with replica(database_url, settings, FakeAnalyzer()) as again:
                assert await job_state(again.store, kept.id) == ("in_progress", steady.replica_id)

                async def handed_back_completed() -> bool:
                    return (await job_state(again.store, handed_back.id))[0] == "completed"

                await wait_until(handed_back_completed, "the restarted replica to run the job it handed back")
                assert await job_state(again.store, handed_back.id) == ("completed", again.replica_id)
                assert await job_state(again.store, kept.id) == ("in_progress", steady.replica_id)

                steady_gate.opened.set()

                async def kept_completed() -> bool:
                    return (await job_state(again.store, kept.id))[0] == "completed"

                await wait_until(kept_completed, "the steady replica to finish its job")
                assert await job_state(again.store, kept.id) == ("completed", steady.replica_id)
                assert await texts(again.store, first_conversation.id) == [handed_back.id]
                assert await texts(again.store, second_conversation.id) == [kept.id]
    finally:
        restarted_gate.opened.set()
        steady_gate.opened.set()


async def test_only_the_lease_holder_commits_a_job(database_url: str) -> None:
    slow, fast = await Store.open(database_url), await Store.open(database_url)
    try:
        conversation = new_conversation()
        job = text_job("contested")
        await slow.jobs.submit_job(job, new_conversation=conversation)
        claimed = await slow.jobs.claim_next_job(claimed_by="slow", lease_seconds=0.2)
        assert claimed is not None and claimed.claimed_by == "slow"
        assert await fast.jobs.reschedule_abandoned_jobs() == 0  # the lease still holds
        assert await fast.jobs.claim_next_job(claimed_by="fast", lease_seconds=30) is None

        await asyncio.sleep(0.4)  # "slow" stalls past its lease
        assert await fast.jobs.reschedule_abandoned_jobs() == 1
        taken = await fast.jobs.claim_next_job(claimed_by="fast", lease_seconds=30)
        assert taken is not None and taken.id == job.id

        assert await slow.jobs.renew_leases("slow", {job.id}, 30) == {job.id}
        with pytest.raises(JobLeaseLost):
            await slow.jobs.complete_job(
                job.id,
                new_utterances=[],
                insights=ConversationInsights(),
                analysis_options={},
                end_time=None,
                claimed_by="slow",
            )
        assert await slow.jobs.fail_job(job.id, "too slow", claimed_by="slow") is False
        assert await fast.jobs.renew_leases("fast", {job.id}, 30) == set()
        status = await fast.jobs.complete_job(
            job.id,
            new_utterances=[],
            insights=ConversationInsights(),
            analysis_options={},
            end_time=None,
            claimed_by="fast",
        )
        assert status == "completed"
        assert await job_state(fast, job.id) == ("completed", "fast")
    finally:
        await slow.close()
        await fast.close()


async def test_the_active_job_limit_holds_across_replicas(database_url: str) -> None:
    stores = [await Store.open(database_url) for _ in range(2)]
    try:

        async def submit(store: Store) -> bool:
            try:
                await store.jobs.submit_job(text_job("limited"), new_conversation=new_conversation(), max_active_jobs=5)
            except TooManyJobs:
                return False
            return True

        accepted = await asyncio.gather(*(submit(stores[n % 2]) for n in range(24)))
        assert sum(accepted) == 5
        assert await stores[0].jobs.count_active_jobs() == 5
        # Maintenance jobs are the engine's own: never refused, never counted.
        listed = await stores[1].conversations.list_conversations(
            limit=1, offset=0, descending=False, start_after=None, start_before=None
        )
        cid = listed[0].id
        speakers = NewJob(id=new_job_id(), kind="speakers", options={}, input_json=[])
        await stores[1].jobs.submit_job(speakers, conversation_id=cid, max_active_jobs=5)
        assert await stores[0].jobs.count_active_jobs() == 5
    finally:
        for store in stores:
            await store.close()


async def test_one_idempotency_key_racing_through_replicas_records_one_job(database_url: str) -> None:
    stores = [await Store.open(database_url) for _ in range(2)]
    claim = IdempotencyClaim("racing-key", "POST", "/v1/process/text", expired_before=utc_now() - timedelta(hours=1))
    try:

        async def submit(store: Store) -> str | None:
            try:
                row = await store.jobs.submit_job(
                    text_job("keyed"), new_conversation=new_conversation(), max_active_jobs=50, idempotency=claim
                )
            except IdempotencyKeyTaken:
                return None
            return row.id

        created = [job_id for job_id in await asyncio.gather(*(submit(stores[n % 2]) for n in range(8))) if job_id]
        assert len(created) == 1
        recorded = await stores[1].jobs.idempotency_key("racing-key", expired_before=claim.expired_before)
        assert recorded is not None and recorded.job_id == created[0]
        assert await stores[0].jobs.count_active_jobs() == 1
    finally:
        for store in stores:
            await store.close()
