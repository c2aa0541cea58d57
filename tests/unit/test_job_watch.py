"""JobWatch on virtual time: a fake provider, a recording publisher, and an event loop whose clock skips ahead.

The watch's timer loop (``run_polling``) runs as a real asyncio task; the loop's clock jumps to the next timer
whenever nothing is ready, so hours of polling take milliseconds and nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi import FastAPI
from parley_job_watcher.scheduler import PollPolicy
from parley_job_watcher.watch import NOT_WATCHED_HERE, JobWatch
from parley_job_watcher.webhooks import partition_of, webhook_router
from parley_shared.events import JobCompleted, JobFailed
from parley_shared.http_errors import install_error_handlers
from parley_shared.provider import JobStatus

from tests.support.job_watch import (
    GROUP,
    TOPICS,
    FakeJobApi,
    FixedDraw,
    ForwardedCallbacks,
    ProviderJob,
    last_committed,
    make_watch,
    markers,
    only_outcome,
    outcomes,
    polling,
    reported,
    resolved,
    submitted,
)
from tests.support.kafka_fakes import HeldPublisher, Publication, RecordingPublisher
from tests.support.virtual_time import START, VirtualClock, run_in_virtual_time

# ---- cost of a job ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_a_60_second_job_costs_at_most_6_polls_without_webhooks(fraction: float) -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 60)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, rng=FixedDraw(fraction))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(300)
        await watch.flush()

        polls = provider.calls_for("job-a")
        assert 1 <= len(polls) <= 6
        assert polls[-1] >= START + 60
        assert polls[-1] <= START + 60 * 1.2  # seen within one (stretched) interval of finishing
        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobCompleted)
        assert outcome.detected_by == "poll"
        assert outcome.conversation_id == "conv-job-a"
        assert outcome.request_id == "req-job-a"

    run_in_virtual_time(scenario)


def test_a_60_second_job_costs_at_most_2_polls_with_webhooks() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 60)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(0.05)
            assert watch.on_webhook("job-a", JobStatus.SCHEDULED) == "noted"
            await asyncio.sleep(60 - 0.05)
            assert watch.on_webhook("job-a", JobStatus.COMPLETED) == "checking"
            await asyncio.sleep(600)
        await watch.flush()

        polls = provider.calls_for("job-a")
        assert 1 <= len(polls) <= 2
        assert polls[-1] == pytest.approx(START + 60)  # confirmed as soon as the webhook came
        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobCompleted)
        assert outcome.detected_by == "webhook"

    run_in_virtual_time(scenario)


# ---- exactly one outcome -----------------------------------------------------------------------------------


def test_a_webhook_racing_a_poll_gives_one_outcome() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 0.9)}, latency=0.5)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, rng=FixedDraw(0.0))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(1.2)  # the first poll (at +1.0) is in flight until +1.5
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            await asyncio.sleep(600)
        await watch.flush()

        # The webhook came while a check was in flight: no second concurrent check, one outcome.
        assert len(provider.calls_for("job-a")) == 1
        assert isinstance(only_outcome(publisher), JobCompleted)

    run_in_virtual_time(scenario)


def test_a_final_webhook_during_a_check_that_saw_an_older_status_is_confirmed_at_once() -> None:
    async def scenario(clock: VirtualClock) -> None:
        # The fake answers with the status at reply time: the poll sent at +1.0 replies in_progress at +1.5.
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 1.55)}, latency=0.5)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, rng=FixedDraw(0.0))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(1.3)
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            await asyncio.sleep(1.0)
            settled_by = clock.now
            await asyncio.sleep(600)
        await watch.flush()

        calls = provider.calls_for("job-a")
        assert len(calls) == 2 and calls[1] < settled_by, "confirmed right after the stale check, not minutes later"
        assert isinstance(only_outcome(publisher), JobCompleted)

    run_in_virtual_time(scenario)


def test_webhooks_out_of_order_do_not_delay_the_completion() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 5)}, latency=0.01)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, rng=FixedDraw(0.0))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(5.5)
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            watch.on_webhook("job-a", JobStatus.IN_PROGRESS)  # a late, older callback
            watch.on_webhook("job-a", JobStatus.SCHEDULED)
            await asyncio.sleep(1.0)
            assert isinstance(only_outcome(await flushed(watch, publisher)), JobCompleted)

    run_in_virtual_time(scenario)


def test_an_early_final_webhook_is_not_overwritten_by_a_later_older_one() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)}, latency=0.01)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, rng=FixedDraw(0.0))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            # Both before its JobSubmitted was read (forwarded by the replica that received them).
            watch.on_status_reported(reported("job-a", JobStatus.COMPLETED), partition=0, offset=0)
            watch.on_status_reported(reported("job-a", JobStatus.IN_PROGRESS), partition=0, offset=1)
            watch.on_submitted(submitted("job-a", START), partition=0, offset=2)
            await asyncio.sleep(0.2)  # well before the first scheduled poll at +1 s
            assert isinstance(only_outcome(await flushed(watch, publisher)), JobCompleted)

    run_in_virtual_time(scenario)


async def flushed(watch: JobWatch, publisher: RecordingPublisher) -> RecordingPublisher:
    await watch.flush()
    return publisher


def test_a_repeated_webhook_gives_one_outcome() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 10)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(10)
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            await asyncio.sleep(0.5)
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            await asyncio.sleep(30)
            assert watch.on_webhook("job-a", JobStatus.COMPLETED) == "already settled"
            await asyncio.sleep(600)
        await watch.flush()

        assert isinstance(only_outcome(publisher), JobCompleted)
        assert watch.webhooks_received == 3

    run_in_virtual_time(scenario)


def test_a_job_submitted_again_after_settlement_is_ignored() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 2)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(100)
            await watch.flush()
            polls_before = len(provider.calls)
            watch.on_submitted(submitted("job-a", START), partition=0, offset=1)  # ingest republished it
            await asyncio.sleep(1_000)
        await watch.flush()

        assert len(provider.calls) == polls_before
        assert "job-a" not in watch.scheduler
        assert isinstance(only_outcome(publisher), JobCompleted)
        assert last_committed(publisher, 0) == 2  # the repeat holds nothing back

    run_in_virtual_time(scenario)


def test_an_early_webhook_is_applied_when_the_job_arrives() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            assert watch.on_webhook("job-a", JobStatus.COMPLETED) == NOT_WATCHED_HERE  # forwarded, then read back:
            watch.on_status_reported(reported("job-a", JobStatus.COMPLETED), partition=0, offset=0)
            await asyncio.sleep(5)
            assert provider.calls == []
            arrived = clock.now
            watch.on_submitted(submitted("job-a", START), partition=0, offset=1)
            await asyncio.sleep(600)
        await watch.flush()

        assert provider.calls_for("job-a") == [arrived]  # checked at once, not after the first poll interval
        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobCompleted)
        assert outcome.detected_by == "webhook"

    run_in_virtual_time(scenario)


# ---- failures ---------------------------------------------------------------------------------------------


def test_a_failed_job_gives_job_failed_with_the_provider_reason() -> None:
    async def scenario(clock: VirtualClock) -> None:
        job = ProviderJob(finishes_at=START + 5, final=JobStatus.FAILED, reason="the audio could not be decoded")
        provider = FakeJobApi(clock, {"job-a": job})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(600)
        await watch.flush()

        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobFailed)
        assert outcome.reason == "the audio could not be decoded"
        assert markers(publisher)[0].outcome == "failed"

    run_in_virtual_time(scenario)


def test_a_job_not_finished_by_its_deadline_fails_with_reason_deadline() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob()})  # never finishes
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, policy=PollPolicy(deadline_seconds=900))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(899)
            await watch.flush()
            assert outcomes(publisher) == []
            await asyncio.sleep(3_600)
        await watch.flush()

        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobFailed)
        assert outcome.reason == "deadline"
        assert provider.calls_for("job-a")[-1] == pytest.approx(START + 900)  # not later than the deadline

    run_in_virtual_time(scenario)


def test_a_job_the_provider_does_not_know_fails() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock)  # knows no job
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(600)
        await watch.flush()

        assert len(provider.calls) == 1
        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobFailed)
        assert "does not know" in outcome.reason

    run_in_virtual_time(scenario)


def test_an_unavailable_provider_is_polled_again_later() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 3)}, unavailable_until=START + 20)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(600)
        await watch.flush()

        assert len(provider.calls) >= 3
        assert isinstance(only_outcome(publisher), JobCompleted)

    run_in_virtual_time(scenario)


def test_a_job_polled_more_than_1024_times_still_fails_at_its_deadline() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob()})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher, policy=PollPolicy(deadline_seconds=20 * 3600))
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(21 * 3600)
        await watch.flush()

        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobFailed)
        assert outcome.reason == "deadline"

    run_in_virtual_time(scenario)


# ---- partitions and offsets ----------------------------------------------------------------------------------


def test_a_job_in_a_replaying_partition_is_not_polled_until_caught_up() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=3)  # offsets 0..2 were written before we took the partition over
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            watch.on_webhook("job-a", JobStatus.COMPLETED)
            await asyncio.sleep(60)
            assert provider.calls == []
            caught_up = clock.now
            watch.on_record_seen(0, 2)
            await asyncio.sleep(60)
        await watch.flush()

        assert len(provider.calls) == 1
        assert caught_up <= provider.calls[0][1] <= caught_up + 1
        assert isinstance(only_outcome(publisher), JobCompleted)

    run_in_virtual_time(scenario)


def test_a_replayed_job_resolved_removes_the_pending_job() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=2)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(5)
            watch.on_resolved(resolved("job-a"), partition=0, offset=1)
            await asyncio.sleep(600)
        await watch.flush()

        assert provider.calls == []
        assert "job-a" not in watch.scheduler
        assert outcomes(publisher) == []
        assert last_committed(publisher, 0) == 2
        # The job's webhook, arriving late, does nothing either.
        assert watch.on_webhook("job-a", JobStatus.COMPLETED) == "already settled"

    run_in_virtual_time(scenario)


def test_committed_offsets_never_pass_a_pending_job() -> None:
    # Polls at about +1, +3, +7, +15, +31, +63, +123, +183, +243: job-1 is seen at +3, job-0 at +15.
    finishes = {"job-0": 10.0, "job-1": 2.0, "job-2": 200.0, "job-3": 20.0}

    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {job: ProviderJob(finishes_at=START + t) for job, t in finishes.items()})
        violations: list[str] = []
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)

        def check(publication: Publication) -> None:
            committed = publication.consumed.get(TopicPartition(TOPICS.jobs, 0))
            still_pending = [j.offset for j in watch.scheduler.jobs() if j.partition == 0]
            if committed is not None and still_pending and committed > min(still_pending):
                violations.append(f"committed {committed} while offset {min(still_pending)} is pending")

        publisher.on_publish = check
        watch.assign(0, committed=0, end=0)
        publishing = asyncio.create_task(watch.run_publishing(idle_commit_seconds=1.0))
        async with polling(watch):
            for offset, job in enumerate(finishes):
                watch.on_submitted(submitted(job, START), partition=0, offset=offset)
            await asyncio.sleep(5)
            assert last_committed(publisher, 0) == 0  # job-1 is done, job-0 is not
            await asyncio.sleep(15)
            assert last_committed(publisher, 0) == 2  # job-0 and job-1 done, job-2 is not
            await asyncio.sleep(600)
        publishing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await publishing

        assert violations == []
        assert last_committed(publisher, 0) == 4
        assert sorted(o.job_id for o in outcomes(publisher)) == sorted(finishes)
        assert all(p.group_id == GROUP for p in publisher.publications)

    run_in_virtual_time(scenario)


def test_a_failed_flush_keeps_the_records_for_the_next_try() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START), "job-b": ProviderJob(START)})
        publisher = RecordingPublisher(failures=[ConnectionError("the broker is unreachable")])
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            watch.on_submitted(submitted("job-b", START), partition=0, offset=1)
            await asyncio.sleep(30)
        with pytest.raises(ConnectionError):
            await watch.flush()
        assert publisher.publications == []
        await watch.flush()
        await watch.flush()  # nothing left: no second copy

        assert len(publisher.publications) == 1
        published = publisher.publications[0]
        assert [r.topic for r in published.records] == [TOPICS.completions, TOPICS.jobs] * 2
        assert sorted(o.job_id for o in outcomes(publisher)) == ["job-a", "job-b"]
        assert published.consumed == {TopicPartition(TOPICS.jobs, 0): 2}

    run_in_virtual_time(scenario)


def test_revoking_a_partition_drops_its_jobs() -> None:
    async def scenario(clock: VirtualClock) -> None:
        jobs = {"job-p0": ProviderJob(finishes_at=START + 5), "job-p1": ProviderJob(finishes_at=START + 5)}
        provider = FakeJobApi(clock, jobs)
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        watch.assign(1, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-p0", START), partition=0, offset=0)
            watch.on_submitted(submitted("job-p1", START), partition=1, offset=0)
            await asyncio.sleep(0.5)
            await watch.hand_over([0])
            await asyncio.sleep(600)
        await watch.flush()

        assert provider.calls_for("job-p0") == []
        assert "job-p0" not in watch.scheduler
        assert [o.job_id for o in outcomes(publisher)] == ["job-p1"]
        assert set(watch.commit_positions()) == {TopicPartition(TOPICS.jobs, 1)}

    run_in_virtual_time(scenario)


def test_a_partition_is_handed_over_only_after_every_outcome_settled_in_it_is_committed() -> None:
    """The new owner must find each outcome already settled here committed, or it settles the job a second time."""

    async def scenario(clock: VirtualClock) -> None:
        jobs = {name: ProviderJob(finishes_at=START + t) for name, t in [("job-x", 1), ("job-y", 10), ("job-z", 1e6)]}
        provider = FakeJobApi(clock, jobs)
        publisher = HeldPublisher(held=1)
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            for offset, job in enumerate(jobs):
                watch.on_submitted(submitted(job, START), partition=0, offset=offset)
            await asyncio.sleep(5)
            in_flight = asyncio.create_task(watch.flush())  # job-x's outcome, its transaction still open
            await publisher.committing.wait()
            await asyncio.sleep(20)  # job-y settles meanwhile: queued for the next transaction

            handing_over = asyncio.create_task(watch.hand_over([0]))
            await asyncio.sleep(1)
            assert not handing_over.done(), "the rebalance went on while an outcome was still being committed"
            publisher.release.set()
            await asyncio.gather(in_flight, handing_over)

        assert [o.job_id for o in outcomes(publisher)] == ["job-x", "job-y"]
        assert last_committed(publisher, 0) == 2  # job-z, pending, is its new owner's from offset 2
        assert "job-z" not in watch.scheduler
        assert watch.commit_positions() == {}

    run_in_virtual_time(scenario)


def test_a_job_whose_outcome_was_dropped_is_watched_again_when_its_partition_returns() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)})
        publisher = RecordingPublisher(failures=[ConnectionError("the broker is unreachable")])
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(30)
            # A rebalance while Kafka is unreachable: the settled outcome cannot be committed, so it is dropped.
            await watch.hand_over([0])
            assert publisher.publications == []
            # The partition comes back to this watcher; nothing was committed, so the job is read again.
            watch.assign(0, committed=0, end=1)
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(600)
        await watch.flush()

        assert isinstance(only_outcome(publisher), JobCompleted)

    run_in_virtual_time(scenario)


# ---- the webhook endpoint ------------------------------------------------------------------------------------


def webhook_app(
    watch: JobWatch, *, forward: ForwardedCallbacks | None = None, partitions: set[int] | None = None, **options: Any
) -> FastAPI:
    """The webhook router as job-watcher mounts it, forwarding into ``forward`` over a jobs topic of 3 partitions."""
    app = FastAPI()
    install_error_handlers(app)
    jobs_partitions = {0, 1, 2} if partitions is None else partitions
    router = webhook_router(
        watch, forward=forward or ForwardedCallbacks(), jobs_partitions=lambda: jobs_partitions, **options
    )
    app.include_router(router)
    return app


async def test_the_webhook_endpoint_accepts_id_or_job_id() -> None:
    clock = VirtualClock(START)
    watch = make_watch(clock, FakeJobApi(clock), RecordingPublisher())
    watch.assign(0, committed=0, end=0)
    watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
    watch.on_submitted(submitted("job-b", START), partition=0, offset=1)
    app = webhook_app(watch)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        by_job_id = await client.post("/webhooks/jobs", json={"jobId": "job-a", "status": "completed"})
        by_id = await client.post("/webhooks/jobs", json={"id": "job-b", "status": "in_progress"})
        without_id = await client.post("/webhooks/jobs", json={"status": "completed"})
        unknown_status = await client.post("/webhooks/jobs", json={"id": "job-c", "status": "exploded"})

    assert by_job_id.status_code == 202
    assert by_job_id.json() == {"jobId": "job-a", "action": "checking"}
    assert by_id.status_code == 202
    assert by_id.json() == {"jobId": "job-b", "action": "noted"}
    assert without_id.status_code == 400 and "jobId" in without_id.json()["message"]
    assert unknown_status.status_code == 400
    assert watch.webhooks_received == 2


async def test_a_callback_for_a_job_watched_elsewhere_goes_to_its_owner_through_the_jobs_topic() -> None:
    clock = VirtualClock(START)
    watch = make_watch(clock, FakeJobApi(clock), RecordingPublisher())
    forward = ForwardedCallbacks()
    app = webhook_app(watch, forward=forward)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        named = await client.post(
            "/webhooks/jobs", json={"jobId": "job-a", "conversationId": "conv-job-a", "status": "completed"}
        )
        unnamed = await client.post("/webhooks/jobs", json={"id": "job-b", "status": "completed"})

    assert named.status_code == unnamed.status_code == 202
    assert named.json()["action"] == "forwarded to the replica watching the job"
    # Keyed by the conversation, it lands on the partition of the job's JobSubmitted ...
    first, *copies = forward.reports
    assert (first.job_id, first.conversation_id, first.partition, first.status) == (
        "job-a",
        "conv-job-a",
        None,
        "completed",
    )
    # ... and without one, a copy goes to every partition: the owner reads one of them.
    assert [(r.job_id, r.conversation_id, r.partition) for r in copies] == [("job-b", None, p) for p in (0, 1, 2)]
    assert "job-a" not in watch.scheduler and watch.webhooks_received == 2


async def test_a_callback_for_a_partition_read_here_is_kept_here_until_its_job_arrives() -> None:
    clock = VirtualClock(START)
    watch = make_watch(clock, FakeJobApi(clock), RecordingPublisher())
    own = partition_of("conv-job-a", {0, 1, 2})
    watch.assign(own, committed=0, end=0)
    forward = ForwardedCallbacks()
    app = webhook_app(watch, forward=forward)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        kept = await client.post(
            "/webhooks/jobs", json={"jobId": "job-a", "conversationId": "conv-job-a", "status": "completed"}
        )
        elsewhere = await client.post(
            "/webhooks/jobs",
            json={"jobId": "job-b", "conversationId": next_conversation_elsewhere(own), "status": "completed"},
        )

    assert kept.json()["action"] == "noted before the job was seen"
    assert elsewhere.json()["action"] == "forwarded to the replica watching the job"
    assert [report.job_id for report in forward.reports] == ["job-b"]
    watch.on_submitted(submitted("job-a", START), partition=own, offset=0)
    assert watch.scheduler.next_due() == START  # checked at once: the kept callback said completed


def next_conversation_elsewhere(partition: int) -> str:
    """A conversation id whose records go to another partition of a 3-partition jobs topic."""
    return next(f"conv-{n}" for n in range(100) if partition_of(f"conv-{n}", {0, 1, 2}) != partition)


async def test_a_callback_that_cannot_be_forwarded_is_refused_so_the_provider_sends_it_again() -> None:
    clock = VirtualClock(START)
    provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START)})
    publisher = RecordingPublisher()
    watch = make_watch(clock, provider, publisher)
    forward = ForwardedCallbacks()
    forward.failing = True
    app = webhook_app(watch, forward=forward)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        refused = await client.post("/webhooks/jobs", json={"jobId": "job-a", "status": "completed"})
        no_partitions_yet = await client.post(
            "/webhooks/jobs", json={"jobId": "job-b", "status": "completed"}
        )  # failing too: the broker is down

    assert refused.status_code == 503 and "retry" in refused.json()["message"]
    assert no_partitions_yet.status_code == 503
    assert forward.reports == []
    # Kept here in case this replica is the owner: the job is checked at once when its JobSubmitted is read.
    watch.assign(0, committed=0, end=0)
    watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
    assert watch.scheduler.next_due() == START


async def test_before_the_jobs_topic_is_known_a_callback_for_an_unwatched_job_is_refused() -> None:
    clock = VirtualClock(START)
    watch = make_watch(clock, FakeJobApi(clock), RecordingPublisher())
    forward = ForwardedCallbacks()
    app = webhook_app(watch, forward=forward, partitions=set())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        refused = await client.post("/webhooks/jobs", json={"jobId": "job-a", "status": "completed"})

    assert refused.status_code == 503
    assert forward.reports == []


def test_a_forwarded_callback_read_by_the_owner_settles_the_job_at_once_and_its_offset_is_committed() -> None:
    async def scenario(clock: VirtualClock) -> None:
        provider = FakeJobApi(clock, {"job-a": ProviderJob(finishes_at=START + 30)})
        publisher = RecordingPublisher()
        watch = make_watch(clock, provider, publisher)
        watch.assign(0, committed=0, end=0)
        async with polling(watch):
            watch.on_submitted(submitted("job-a", START), partition=0, offset=0)
            await asyncio.sleep(30)
            polls_before = len(provider.calls_for("job-a"))
            heard = clock.now
            watch.on_status_reported(reported("job-a", JobStatus.COMPLETED), partition=0, offset=1)
            # a copy for another job that this replica does not watch: noted, and holds nothing back
            watch.on_status_reported(reported("job-z", JobStatus.COMPLETED, partition=0), partition=0, offset=2)
            await asyncio.sleep(0.5)
            await watch.flush()

        assert provider.calls_for("job-a")[polls_before:] == [heard]  # confirmed at once, not at the next poll
        outcome = only_outcome(publisher)
        assert isinstance(outcome, JobCompleted) and outcome.detected_by == "webhook"
        assert last_committed(publisher, 0) == 3
        assert provider.calls_for("job-z") == []

    run_in_virtual_time(scenario)


async def test_with_a_secret_only_correctly_signed_callbacks_are_accepted() -> None:
    from parley_shared.webhook_signatures import SIGNATURE_HEADER, signature
    from pydantic import SecretStr

    watch = make_watch(VirtualClock(START), FakeJobApi(VirtualClock(START)), RecordingPublisher())
    app = webhook_app(watch, secret=SecretStr("shared-webhook-secret"))
    body = b'{"jobId": "job-a", "status": "completed"}'
    headers = {"Content-Type": "application/json"}
    good = signature("shared-webhook-secret", body)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        unsigned = await client.post("/webhooks/jobs", content=body, headers=headers)
        forged = await client.post(
            "/webhooks/jobs", content=body, headers={**headers, SIGNATURE_HEADER: signature("guessed", body)}
        )
        tampered = await client.post(
            "/webhooks/jobs",
            content=body.replace(b"job-a", b"job-b"),
            headers={**headers, SIGNATURE_HEADER: good},
        )
        signed = await client.post(
            "/webhooks/jobs",
            content=body,
            headers={**headers, SIGNATURE_HEADER: good},
        )

    assert [unsigned.status_code, forged.status_code, tampered.status_code] == [401, 401, 401]
    assert "X-Parley-Signature" in unsigned.json()["message"]
    assert signed.status_code == 202
    assert watch.webhooks_received == 1, "refused callbacks never reach the watch"


async def test_status_needs_an_api_key_when_keys_are_configured() -> None:
    from pydantic import SecretStr

    watch = make_watch(VirtualClock(START), FakeJobApi(VirtualClock(START)), RecordingPublisher())
    app = webhook_app(watch, api_keys=[SecretStr("operator-key-1")])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://watcher.test") as client:
        anonymous = await client.get("/status")
        wrong = await client.get("/status", headers={"x-api-key": "operator-key-2"})
        allowed = await client.get("/status", headers={"Authorization": "Bearer operator-key-1"})

    assert (anonymous.status_code, wrong.status_code) == (401, 401)
    assert "message" in anonymous.json() and "operator-key" not in wrong.text
    assert allowed.status_code == 200 and allowed.json()["pendingJobs"] == 0
