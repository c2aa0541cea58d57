"""RequestLedger: one provider call per requestId, shared by concurrent duplicates, failures not remembered."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import pytest
from parley_ingest.ledger import RequestLedger
from parley_shared.events import JobSubmitted, MediaKind
from parley_shared.provider import ProviderUnavailable


def submitted(request_id: str, job_id: str) -> JobSubmitted:
    return JobSubmitted(request_id=request_id, conversation_id="5815170693595136", job_id=job_id, kind=MediaKind.TEXT)


@dataclass
class FakeSubmit:
    """Stands in for the provider call: counts calls, can be held at a gate, can fail the first calls."""

    request_id: str
    failures: list[BaseException] = field(default_factory=list)
    gate: asyncio.Event | None = None
    calls: int = 0

    async def __call__(self) -> JobSubmitted:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.failures:
            raise self.failures.pop(0)
        return submitted(self.request_id, f"job-{self.calls}")


async def test_the_same_request_twice_submits_once() -> None:
    ledger = RequestLedger()
    submit = FakeSubmit("req-1")

    first, first_new = await ledger.once("req-1", submit)
    second, second_new = await ledger.once("req-1", submit)

    assert submit.calls == 1
    assert (first_new, second_new) == (True, False)
    assert second == first
    assert ledger.get("req-1") == first


async def test_different_requests_submit_separately() -> None:
    ledger = RequestLedger()
    a, b = FakeSubmit("req-a"), FakeSubmit("req-b")
    await ledger.once("req-a", a)
    await ledger.once("req-b", b)
    assert (a.calls, b.calls) == (1, 1)
    assert len(ledger) == 2


async def test_concurrent_duplicates_share_one_call() -> None:
    ledger = RequestLedger()
    submit = FakeSubmit("req-1", gate=asyncio.Event())

    callers = [asyncio.create_task(ledger.once("req-1", submit)) for _ in range(5)]
    for _ in range(3):  # let the callers and the provider call get going
        await asyncio.sleep(0)
    assert submit.calls == 1
    assert not any(c.done() for c in callers)  # the duplicates wait for the first call
    assert submit.gate is not None
    submit.gate.set()
    results = await asyncio.gather(*callers)

    assert submit.calls == 1
    assert len({job.job_id for job, _ in results}) == 1
    assert sorted(new for _, new in results) == [False, False, False, False, True]


async def test_a_failure_is_not_remembered() -> None:
    ledger = RequestLedger()
    submit = FakeSubmit("req-1", failures=[ProviderUnavailable("POST /v1/process/text: 503", status=503, attempts=6)])

    with pytest.raises(ProviderUnavailable):
        await ledger.once("req-1", submit)
    assert ledger.get("req-1") is None

    job, new = await ledger.once("req-1", submit)
    assert submit.calls == 2
    assert new
    assert ledger.get("req-1") == job


async def test_concurrent_duplicates_of_a_failing_call_all_see_the_failure_and_a_retry_calls_again() -> None:
    ledger = RequestLedger()
    error = ProviderUnavailable("POST /v1/process/text: timeout", status=None, attempts=6)
    submit = FakeSubmit("req-1", failures=[error], gate=asyncio.Event())

    callers = [asyncio.create_task(ledger.once("req-1", submit)) for _ in range(3)]
    await asyncio.sleep(0)
    assert submit.gate is not None
    submit.gate.set()
    outcomes = await asyncio.gather(*callers, return_exceptions=True)

    assert outcomes == [error, error, error]
    assert submit.calls == 1
    _, new = await ledger.once("req-1", submit)
    assert new
    assert submit.calls == 2


async def test_the_oldest_requests_are_forgotten_beyond_capacity() -> None:
    ledger = RequestLedger(capacity=2)
    submits = {rid: FakeSubmit(rid) for rid in ("req-a", "req-b", "req-c")}
    for rid, submit in submits.items():
        await ledger.once(rid, submit)

    assert len(ledger) == 2
    assert ledger.get("req-a") is None
    await ledger.once("req-c", submits["req-c"])
    assert submits["req-c"].calls == 1  # still remembered
    _, new = await ledger.once("req-a", submits["req-a"])
    assert new
    assert submits["req-a"].calls == 2  # forgotten, so submitted again


async def test_a_remembered_submission_from_the_jobs_topic_is_not_submitted_again() -> None:
    ledger = RequestLedger()
    earlier = submitted("req-1", "job-from-before-the-restart")
    ledger.remember(earlier)
    submit = FakeSubmit("req-1")

    job, new = await ledger.once("req-1", submit)

    assert submit.calls == 0
    assert (job, new) == (earlier, False)


async def test_remembering_again_refreshes_a_request_against_eviction() -> None:
    ledger = RequestLedger(capacity=2)
    ledger.remember(submitted("req-a", "job-a"))
    ledger.remember(submitted("req-b", "job-b"))
    ledger.remember(submitted("req-a", "job-a"))
    ledger.remember(submitted("req-c", "job-c"))
    assert ledger.get("req-a") is not None
    assert ledger.get("req-b") is None


def test_a_full_ledger_holds_its_bound_in_memory() -> None:
    """Each remembered request costs a few hundred bytes, not a whole event model, and the bound holds."""
    import tracemalloc

    ledger = RequestLedger(capacity=5_000)
    tracemalloc.start()
    try:
        for n in range(5_000):
            ledger.remember(submitted(f"req-{n:06d}-{'x' * 24}", f"9b1deb4d-3b7d-4bad-9bdd-{n:012d}"))
        full, _ = tracemalloc.get_traced_memory()
        for n in range(5_000, 15_000):
            ledger.remember(submitted(f"req-{n:06d}-{'x' * 24}", f"9b1deb4d-3b7d-4bad-9bdd-{n:012d}"))
        after_churn, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(ledger) == 5_000
    assert full / 5_000 < 700, f"{full / 5_000:.0f} bytes per remembered request"
    assert after_churn < full * 1.1, "replacing old entries must not grow the ledger"
    # What is kept is still the whole announcement.
    again = ledger.get("req-014999-" + "x" * 24)
    assert again is not None and again.job_id == "9b1deb4d-3b7d-4bad-9bdd-000000014999"
