"""All pending jobs in one timer heap; the polling policy that decides when each is next checked.

One heap for every job (never a task per job) keeps 100,000 pending jobs in tens of megabytes and one timer.
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class PollPolicy:
    """Polls back off exponentially, with jitter that only stretches, so a 60 s job costs at most 6 polls."""

    initial_seconds: float = 1.0
    factor: float = 2.0
    max_interval_seconds: float = 60.0
    jitter: float = 0.1
    webhook_fallback_interval_seconds: float = 45.0
    deadline_seconds: float = 6 * 3600.0

    def delay(self, polls_done: int, *, webhooks_arriving: bool, rng: random.Random) -> float:
        """Seconds until the next poll of a job already polled ``polls_done`` times."""
        if webhooks_arriving:
            # The webhook channel works for this job: polling is only the safety net for a lost final call.
            base = self.webhook_fallback_interval_seconds
        else:
            base = self.initial_seconds
            # Multiply step by step and stop at the cap: factor**polls_done would overflow on long-lived jobs.
            for _ in range(polls_done):
                if base >= self.max_interval_seconds:
                    break
                base *= self.factor
            base = min(self.max_interval_seconds, base)
        return base * (1.0 + rng.uniform(0.0, self.jitter))


@dataclass(slots=True)
class PendingJob:
    job_id: str
    conversation_id: str
    request_id: str
    submitted_at: float
    partition: int
    offset: int
    deadline: float
    polls: int = 0
    trace_parent: str | None = None  # the W3C traceparent of its JobSubmitted: the conversation's trace
    webhooks_arriving: bool = False
    final_status_reported: bool = False  # a webhook said completed/failed; confirm rather than wait
    due: float = 0.0
    # The heap entry that is current for this job; None while the job is handed out for a check.
    token: int | None = None


@dataclass
class PollScheduler:
    """Pending jobs by id, and a heap of (due time, sequence, job id) with lazy removal of stale entries."""

    policy: PollPolicy = field(default_factory=PollPolicy)
    rng: random.Random = field(default_factory=random.Random)
    _jobs: dict[str, PendingJob] = field(default_factory=dict)
    _heap: list[tuple[float, int, str]] = field(default_factory=list)
    _sequence: itertools.count[int] = field(default_factory=itertools.count)

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def get(self, job_id: str) -> PendingJob | None:
        return self._jobs.get(job_id)

    @property
    def timer_entries(self) -> int:
        """Entries in the timer heap, stale ones included: what the heap costs in memory (bounded by the rebuild)."""
        return len(self._heap)

    def jobs(self) -> list[PendingJob]:
        return list(self._jobs.values())

    def add(self, job: PendingJob, now: float) -> bool:
        """Start watching ``job``; the first poll is due ``initial_seconds`` after submission. False if known."""
        if job.job_id in self._jobs:
            return False
        self._jobs[job.job_id] = job
        first_due = job.submitted_at + self.policy.delay(0, webhooks_arriving=False, rng=self.rng)
        self.schedule(job, max(first_due, now))
        return True

    def schedule(self, job: PendingJob, due: float) -> None:
        job.due = due
        job.token = next(self._sequence)
        heapq.heappush(self._heap, (due, job.token, job.job_id))
        # Stale entries (superseded due times, removed jobs) are skipped when popped; rebuild if they pile up.
        if len(self._heap) > 4 * len(self._jobs) + 1024:
            self._heap = [(j.due, j.token, j.job_id) for j in self._jobs.values() if j.token is not None]
            heapq.heapify(self._heap)

    def _current(self, token: int, job_id: str) -> PendingJob | None:
        job = self._jobs.get(job_id)
        return job if job is not None and job.token == token else None

    def schedule_next_poll(self, job: PendingJob, now: float) -> None:
        delay = self.policy.delay(job.polls, webhooks_arriving=job.webhooks_arriving, rng=self.rng)
        self.schedule(job, min(now + delay, max(job.deadline, now)))

    def remove(self, job_id: str) -> PendingJob | None:
        return self._jobs.pop(job_id, None)

    def next_due(self) -> float | None:
        while self._heap:
            due, token, job_id = self._heap[0]
            if self._current(token, job_id) is not None:
                return due
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float, limit: int) -> list[PendingJob]:
        """Jobs whose poll is due, earliest first, at most ``limit``; each is handed out until rescheduled."""
        due_jobs: list[PendingJob] = []
        while self._heap and len(due_jobs) < limit:
            due, token, job_id = self._heap[0]
            if due > now:
                break
            heapq.heappop(self._heap)
            job = self._current(token, job_id)
            if job is not None:
                job.token = None
                due_jobs.append(job)
        return due_jobs
