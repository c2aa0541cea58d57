"""PollPolicy and PollScheduler: delays, jitter, heap order and stale entries, all on a simulated clock."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from parley_job_watcher.scheduler import PendingJob, PollPolicy, PollScheduler


class FixedDraw(random.Random):
    """A random source whose ``uniform(a, b)`` always lands at the same fraction of the way from a to b."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction


def pending(job_id: str, *, submitted_at: float = 0.0, deadline: float = 6 * 3600.0) -> PendingJob:
    return PendingJob(
        job_id=job_id,
        conversation_id=f"conv-{job_id}",
        request_id=f"req-{job_id}",
        submitted_at=submitted_at,
        partition=0,
        offset=0,
        deadline=submitted_at + deadline,
    )


# ---- PollPolicy ------------------------------------------------------------------------------------------------


def test_delays_grow_by_the_factor_and_stop_at_the_cap() -> None:
    policy = PollPolicy(initial_seconds=1.0, factor=2.0, max_interval_seconds=60.0, jitter=0.0)
    delays = [policy.delay(n, webhooks_arriving=False, rng=FixedDraw(0.5)) for n in range(9)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]


def test_a_job_whose_webhooks_arrive_is_polled_at_the_fallback_interval() -> None:
    policy = PollPolicy(webhook_fallback_interval_seconds=120.0, jitter=0.0)
    assert policy.delay(0, webhooks_arriving=True, rng=FixedDraw(0.5)) == 120.0
    assert policy.delay(7, webhooks_arriving=True, rng=FixedDraw(0.5)) == 120.0


@given(
    polls_done=st.integers(min_value=0, max_value=40),
    fraction=st.floats(min_value=0.0, max_value=1.0),
    webhooks=st.booleans(),
)
def test_jitter_only_stretches_a_delay(polls_done: int, fraction: float, webhooks: bool) -> None:
    policy = PollPolicy(jitter=0.1)
    unjittered = PollPolicy(jitter=0.0).delay(polls_done, webhooks_arriving=webhooks, rng=FixedDraw(0.0))
    delay = policy.delay(polls_done, webhooks_arriving=webhooks, rng=FixedDraw(fraction))
    assert unjittered <= delay <= unjittered * 1.1 + 1e-9


def test_jitter_with_a_real_random_source_never_shortens() -> None:
    policy = PollPolicy(jitter=0.1)
    rng = random.Random(7)
    delays = [policy.delay(3, webhooks_arriving=False, rng=rng) for _ in range(1_000)]
    assert min(delays) >= 8.0
    assert max(delays) <= 8.8
    assert max(delays) - min(delays) > 0.4  # it does spread the polls out


def test_a_job_polled_very_many_times_waits_the_max_interval() -> None:
    policy = PollPolicy(jitter=0.0)
    assert policy.delay(1_100, webhooks_arriving=False, rng=FixedDraw(0.0)) == policy.max_interval_seconds


# ---- cost of a job, simulated --------------------------------------------------------------------------------


def polls_to_see_completion(job_seconds: float, rng: random.Random) -> int:
    """Drive the scheduler as the watch does: pop the due job, poll it, schedule the next poll."""
    scheduler = PollScheduler(rng=rng)
    job = pending("j")
    scheduler.add(job, now=0.0)
    polls = 0
    while True:
        now = scheduler.next_due()
        assert now is not None
        assert scheduler.pop_due(now, limit=10) == [job]
        polls += 1
        job.polls += 1
        if now >= job_seconds:
            return polls
        scheduler.schedule_next_poll(job, now)


@pytest.mark.parametrize("fraction", [0.0, 0.5, 1.0])
def test_a_60_second_job_costs_at_most_6_polls(fraction: float) -> None:
    assert polls_to_see_completion(60.0, FixedDraw(fraction)) <= 6


def test_a_60_second_job_costs_at_most_6_polls_with_random_jitter() -> None:
    assert max(polls_to_see_completion(60.0, random.Random(seed)) for seed in range(200)) <= 6


def test_the_next_poll_is_never_after_the_deadline() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0))
    job = pending("j", deadline=10.0)
    scheduler.add(job, now=0.0)
    job.polls = 5  # the next delay would be 32 s
    scheduler.schedule_next_poll(job, now=3.0)
    assert scheduler.next_due() == 10.0


# ---- the heap -----------------------------------------------------------------------------------------------


def test_the_first_poll_is_due_initial_seconds_after_submission() -> None:
    scheduler = PollScheduler(policy=PollPolicy(initial_seconds=1.0, jitter=0.0))
    job = pending("j", submitted_at=100.0)
    assert scheduler.add(job, now=100.2)
    assert scheduler.next_due() == 101.0
    # A job read long after its submission (a replay) is due at once, not in the past.
    late = pending("late", submitted_at=50.0)
    scheduler.add(late, now=100.2)
    assert late.due == 100.2


def test_adding_a_known_job_again_is_refused() -> None:
    scheduler = PollScheduler()
    assert scheduler.add(pending("j"), now=0.0)
    assert not scheduler.add(pending("j"), now=0.0)
    assert len(scheduler) == 1


def test_pop_due_returns_due_jobs_earliest_first_up_to_the_limit() -> None:
    scheduler = PollScheduler(policy=PollPolicy(initial_seconds=1.0, jitter=0.0))
    for name, due in zip("abcde", [5.0, 1.0, 3.0, 2.0, 9.0], strict=True):
        scheduler.add(pending(name, submitted_at=due - 1.0), now=0.0)

    assert [j.job_id for j in scheduler.pop_due(now=4.0, limit=2)] == ["b", "d"]
    assert [j.job_id for j in scheduler.pop_due(now=4.0, limit=10)] == ["c"]
    assert scheduler.pop_due(now=4.0, limit=10) == []
    assert scheduler.next_due() == 5.0
    assert [j.job_id for j in scheduler.pop_due(now=100.0, limit=10)] == ["a", "e"]


def test_a_rescheduled_job_is_popped_at_its_new_time_only() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0))
    job = pending("j")
    scheduler.add(job, now=0.0)  # due at 1.0
    scheduler.schedule(job, 50.0)
    assert scheduler.next_due() == 50.0
    assert scheduler.pop_due(now=10.0, limit=10) == []
    assert scheduler.pop_due(now=50.0, limit=10) == [job]
    assert scheduler.next_due() is None


def test_a_removed_job_is_never_popped() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0))
    scheduler.add(pending("gone"), now=0.0)
    scheduler.add(pending("kept", submitted_at=2.0), now=0.0)
    assert scheduler.remove("gone") is not None
    assert "gone" not in scheduler
    assert scheduler.next_due() == 3.0
    assert [j.job_id for j in scheduler.pop_due(now=100.0, limit=10)] == ["kept"]
    assert scheduler.remove("gone") is None


def test_a_job_scheduled_twice_for_the_same_time_is_popped_once() -> None:
    scheduler = PollScheduler()
    job = pending("j")
    scheduler.add(job, now=0.0)
    scheduler.schedule(job, 5.0)
    scheduler.schedule(job, 5.0)
    assert scheduler.pop_due(now=5.0, limit=10) == [job]


def test_a_job_handed_out_is_not_handed_out_again_after_a_heap_rebuild() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0))
    checking = pending("checking")
    other = pending("other")
    scheduler.add(checking, now=0.0)
    scheduler.add(other, now=0.0)
    assert scheduler.pop_due(now=1.0, limit=1) == [checking]  # being polled now
    for step in range(1_100):  # many webhooks for another job pile stale entries up until the heap is rebuilt
        scheduler.schedule(other, 1_000.0 + step)
    assert scheduler.pop_due(now=1.0, limit=10) == []


def test_many_reschedules_keep_the_heap_correct() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0))
    jobs = [pending(f"j{i}", submitted_at=float(i)) for i in range(10)]
    for job in jobs:
        scheduler.add(job, now=0.0)
    for round_ in range(500):  # enough stale entries to trigger the rebuild
        for job in jobs:
            scheduler.schedule(job, 10_000.0 + round_ + int(job.job_id[1:]) / 100)
    assert scheduler.timer_entries < 4 * len(jobs) + 1024 + 1
    popped = scheduler.pop_due(now=1e9, limit=100)
    assert [j.job_id for j in popped] == [f"j{i}" for i in range(10)]


def test_100_000_jobs_are_added_and_popped_in_due_order() -> None:
    scheduler = PollScheduler(policy=PollPolicy(jitter=0.0), rng=random.Random(1))
    rng = random.Random(2)
    count = 100_000
    for i in range(count):
        assert scheduler.add(pending(f"job-{i}", submitted_at=rng.uniform(0, 3600)), now=0.0)
    assert len(scheduler) == count

    popped: list[PendingJob] = []
    while batch := scheduler.pop_due(now=10_000.0, limit=1_000):
        assert len(batch) <= 1_000
        popped.extend(batch)
    assert len(popped) == count
    assert len({j.job_id for j in popped}) == count
    dues = [j.due for j in popped]
    assert dues == sorted(dues)
