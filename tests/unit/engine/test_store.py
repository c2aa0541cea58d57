"""The store on a real SQLite file: job claiming order, held jobs, the webhook outbox, deletion, identifiers."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest
from parley_engine.conversation import ConversationInsights, Speaker, Utterance
from parley_engine.identifiers import message_id, new_conversation_id, new_job_id
from parley_engine.store import JobLeaseLost, NewConversation, NewJob, Store, utc_now


def conversation(cid: str) -> NewConversation:
    return NewConversation(id=cid, name=cid, source="text", start_time=utc_now() - timedelta(hours=1))


def job(number: int, webhook: str | None = None) -> NewJob:
    return NewJob(id=f"00000000-0000-4000-8000-{number:012d}", kind="text", options={}, webhook_url=webhook)


async def test_claims_are_oldest_first_and_one_at_a_time_per_conversation(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    try:
        await store.jobs.submit_job(job(1), new_conversation=conversation("1000000000000001"))
        await store.jobs.submit_job(job(2), conversation_id="1000000000000001")
        await store.jobs.submit_job(job(3), new_conversation=conversation("1000000000000002"))
        first = await store.jobs.claim_next_job()
        second = await store.jobs.claim_next_job()
        assert (first and first.id, second and second.id) == (job(1).id, job(3).id)
        assert await store.jobs.claim_next_job() is None  # job 2 waits for job 1 of its conversation
        await store.jobs.complete_job(
            job(1).id, new_utterances=[], insights=ConversationInsights(), analysis_options={}, end_time=None
        )
        third = await store.jobs.claim_next_job()
        assert third is not None and third.id == job(2).id and third.sequence == 2
        assert await store.jobs.count_active_jobs() == 2
    finally:
        await store.close()


async def test_status_changes_write_outbox_rows_and_deletion_fails_waiting_jobs(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    try:
        await store.jobs.submit_job(job(1, "http://hook"), new_conversation=conversation("1000000000000001"))
        await store.jobs.submit_job(job(2, "http://hook"), conversation_id="1000000000000001")
        await store.jobs.claim_next_job()
        await store.conversations.delete_conversation("1000000000000001")
        waiting = await store.jobs.job(job(2).id)
        assert waiting is not None and (waiting.status, waiting.reason) == ("failed", "the conversation was deleted")
        statuses = [d.job_status for d in await store.deliveries.deliveries_for_job(job(2).id)]
        assert statuses == ["scheduled", "failed"]
        status = await store.jobs.complete_job(
            job(1).id, new_utterances=[], insights=ConversationInsights(), analysis_options={}, end_time=None
        )
        assert status == "failed"  # the conversation went away while it ran
        due = await store.deliveries.due_deliveries()
        assert [d.job_id for d in due] == [job(1).id, job(2).id]  # one per job, oldest first
    finally:
        await store.close()


def test_identifiers_have_symbl_formats() -> None:
    ids = {new_conversation_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(len(i) == 16 and i.isdigit() and i[0] != "0" for i in ids)
    assert len(new_job_id()) == 36
    assert message_id("1234567890", 42) == "1234567890000042"


async def test_a_held_job_takes_utterances_while_held_and_nothing_once_its_lease_ran_out(tmp_path: Path) -> None:
    store = await Store.open(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    try:
        stream_job = NewJob(id=job(1).id, kind="streaming", options={}, webhook_url="http://hook")
        held = await store.jobs.open_held_job(
            stream_job, conversation("1000000000000001"), claimed_by="stream", lease_seconds=0.2
        )
        assert (held.status, held.claimed_by, held.sequence) == ("in_progress", "stream", 1)
        said = Utterance(id=message_id("1", 0), text="First things first.", speaker=Speaker(name="Ana"))
        await store.jobs.record_utterances(held.id, [said], claimed_by="stream")
        assert [u.text for u in await store.conversations.utterances("1000000000000001")] == [said.text]
        deliveries = await store.deliveries.deliveries_for_job(held.id)
        assert [d.job_status for d in deliveries] == ["scheduled", "in_progress"]

        # Handed over while held: the new holder has it.
        handed = await store.jobs.hand_over_job(held.id, held_by="stream", to="runner", lease_seconds=0.2)
        assert (handed.status, handed.claimed_by) == ("in_progress", "runner")
        with pytest.raises(JobLeaseLost):
            await store.jobs.record_utterances(held.id, [said], claimed_by="stream")

        # Its lease runs out unrenewed: swept up, scheduled again, and no longer anyone's to hand over or add to.
        async def swept() -> None:
            while True:
                if await store.jobs.reschedule_abandoned_jobs() == 1:
                    return
                await asyncio.sleep(0.05)

        async with asyncio.timeout(5):
            await swept()
        with pytest.raises(JobLeaseLost):
            await store.jobs.hand_over_job(held.id, held_by="runner", to="other", lease_seconds=1)
        with pytest.raises(JobLeaseLost):
            await store.jobs.record_utterances(held.id, [said], claimed_by="runner")
        reclaimed = await store.jobs.claim_next_job(claimed_by="other", lease_seconds=30)
        assert reclaimed is not None and reclaimed.id == held.id
    finally:
        await store.close()
