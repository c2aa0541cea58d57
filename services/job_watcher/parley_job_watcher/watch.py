"""Watching provider jobs until each ends, and announcing exactly one outcome per job.

Plain domain code: it is handed the provider client, a publisher and the clock, and knows nothing of faststream
or HTTP. Completions arrive by webhook (confirmed with ``GET /v1/job/{jobId}`` before acting) or by polling, in
any order and any number of times; the first confirmed terminal status wins and the job leaves the scheduler at
once, so no second outcome can be produced. Outcomes are published in batches, each in one transaction with its
``JobResolved`` markers and the jobs-topic offsets that became safe to commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Collection
from datetime import UTC, datetime
from typing import Any, Literal

from aiokafka import TopicPartition
from parley_shared.events import DeadLetter, JobCompleted, JobFailed, JobResolved, JobStatusReported, JobSubmitted
from parley_shared.kafka.hops import Outputs, RecordPosition
from parley_shared.kafka.publishing import AtomicPublisher, OutgoingRecord
from parley_shared.logs import bind_ids
from parley_shared.provider import JobNotFound, JobStatus, ProviderError
from parley_shared.provider.ports import JobApi
from parley_shared.tracing import continuing_trace
from pydantic import BaseModel

from parley_job_watcher.metrics import status_polled
from parley_job_watcher.progress import PartitionProgress
from parley_job_watcher.scheduler import PendingJob, PollScheduler

logger = logging.getLogger("parley.job_watcher")

TERMINAL = {JobStatus.COMPLETED, JobStatus.FAILED}
# What ``on_webhook`` answers for a job this replica neither watches nor knows settled: its owner may be another
# replica, so the callback goes to the jobs topic (``JobStatusReported``) for whichever replica owns it.
NOT_WATCHED_HERE = "not watched here"


class RecentIds:
    """A bounded set: the most recent ``capacity`` ids."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._ids: OrderedDict[str, Any] = OrderedDict()

    def add(self, key: str, value: Any = True) -> None:
        self._ids[key] = value
        self._ids.move_to_end(key)
        if len(self._ids) > self._capacity:
            self._ids.popitem(last=False)

    def pop(self, key: str) -> Any:
        return self._ids.pop(key, None)

    def __contains__(self, key: object) -> bool:
        return key in self._ids


class JobWatch:
    """The owner of the jobs topic's events (a ``Feed``): it writes outcomes when jobs settle, and commits the
    jobs-topic offsets with them, up to the oldest job still pending."""

    def __init__(
        self,
        *,
        provider: JobApi,
        publisher: AtomicPublisher,
        outputs: Outputs,
        jobs_topic: str,
        group_id: str,
        scheduler: PollScheduler,
        max_concurrent_polls: int = 64,
        settled_jobs_remembered: int = 200_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._publisher = publisher
        self._outputs = outputs
        self._jobs_topic = jobs_topic
        self._group_id = group_id
        self.scheduler = scheduler
        self._clock = clock
        self._polls = asyncio.Semaphore(max_concurrent_polls)
        self.partitions: dict[int, PartitionProgress] = {}
        # Job ids whose outcome is published, so a repeated JobSubmitted is ignored (about 180 bytes each).
        self._settled = RecentIds(settled_jobs_remembered)
        # Statuses reported before the job's JobSubmitted was read (or copies for jobs other replicas watch).
        self._early_webhooks = RecentIds(max(1, settled_jobs_remembered // 4))
        self._outbox: list[OutgoingRecord] = []
        self._outbox_events: list[BaseModel] = []  # the events of those records, counted once committed
        self._outbox_jobs: list[str] = []  # the jobs whose outcomes are in the outbox
        self._outbox_has_work = asyncio.Event()
        self._scheduler_changed = asyncio.Event()
        self._offsets_dirty = False
        self._checks: set[asyncio.Task[None]] = set()
        self._flushing = asyncio.Lock()
        self.status_polls = 0
        self.webhooks_received = 0

    # ---- partitions ---------------------------------------------------------------------------------------

    def assign(self, partition: int, committed: int, end: int) -> None:
        self.partitions[partition] = PartitionProgress(next_offset=committed, end_at_assignment=end)

    async def hand_over(self, partitions: Collection[int]) -> None:
        """Before a rebalance moves ``partitions``: settle nothing more of theirs, commit what is settled, forget them.

        Their new owner rebuilds the pending jobs from the last committed offset. It must find every outcome this
        replica settled already committed (with its JobResolved marker), or it would settle those jobs again: so
        their checks stop first, then the outbox is committed (after any transaction still in flight), and only then
        does the rebalance go on. If that commit fails, those outcomes are dropped and the new owner settles them.
        """
        revoked = set(partitions)
        for job in self.scheduler.jobs():
            if job.partition in revoked:
                self.scheduler.remove(job.job_id)  # a check under way finds it gone and settles nothing
        try:
            await self.flush()
        except Exception as error:
            logger.warning("could not publish outcomes before losing partitions (%s)", error)
            self.drop_unpublished()
        for partition in revoked:
            self.partitions.pop(partition, None)

    def owns(self, partition: int) -> bool:
        """Whether this replica reads that jobs-topic partition now."""
        return partition in self.partitions

    def commit_positions(self) -> dict[TopicPartition, int]:
        return {TopicPartition(self._jobs_topic, p): progress.safe_offset() for p, progress in self.partitions.items()}

    # ---- input ----------------------------------------------------------------------------------------------

    def on_event(self, event: JobSubmitted | JobResolved | JobStatusReported, position: RecordPosition) -> None:
        if isinstance(event, JobSubmitted):
            self.on_submitted(event, position.partition, position.offset, trace_parent=position.trace_parent)
        elif isinstance(event, JobResolved):
            self.on_resolved(event, position.partition, position.offset)
        else:
            self.on_status_reported(event, position.partition, position.offset)

    def on_unreadable(self, letter: DeadLetter, position: RecordPosition) -> None:
        self.on_record_seen(position.partition, position.offset)
        self._queue([letter])

    def on_record_seen(self, partition: int, offset: int) -> None:
        progress = self.partitions.setdefault(partition, PartitionProgress())
        progress.seen(offset)
        self._offsets_dirty = True

    def on_submitted(
        self, event: JobSubmitted, partition: int, offset: int, *, trace_parent: str | None = None
    ) -> None:
        self.on_record_seen(partition, offset)
        if event.job_id in self._settled or event.job_id in self.scheduler:
            return  # a repeated JobSubmitted (ingest republishes on retries)
        job = PendingJob(
            job_id=event.job_id,
            conversation_id=event.conversation_id,
            request_id=event.request_id,
            submitted_at=event.submitted_at.timestamp(),
            partition=partition,
            offset=offset,
            deadline=event.submitted_at.timestamp() + self.scheduler.policy.deadline_seconds,
            trace_parent=trace_parent,
        )
        self.scheduler.add(job, self._clock())
        self.partitions[partition].hold(offset)
        early = self._early_webhooks.pop(event.job_id)
        if early is not None:
            self._apply_webhook(job, early)
        self._scheduler_changed.set()

    def on_resolved(self, event: JobResolved, partition: int, offset: int) -> None:
        """A marker replayed from the jobs topic: this job was settled before (by us or a previous owner)."""
        self.on_record_seen(partition, offset)
        self._settled.add(event.job_id)
        job = self.scheduler.remove(event.job_id)
        if job is not None:
            self.partitions[job.partition].release(job.offset)

    def on_status_reported(self, event: JobStatusReported, partition: int, offset: int) -> None:
        """A callback another replica received (or this one, not watching the job then), read from the jobs topic."""
        self.on_record_seen(partition, offset)
        self._hear(event.job_id, JobStatus(event.status), forwarded=True)

    def on_webhook(self, job_id: str, status: JobStatus) -> str:
        """A provider callback received over HTTP; returns what was done with it (for the HTTP response), or
        ``NOT_WATCHED_HERE`` when the caller must forward it to the job's owner through the jobs topic."""
        self.webhooks_received += 1
        return self._hear(job_id, status, forwarded=False)

    def _hear(self, job_id: str, status: JobStatus, *, forwarded: bool) -> str:
        """Callbacks can arrive in any order: a late ``in_progress`` must never undo a ``completed`` already heard."""
        if job_id in self._settled:
            return "already settled"
        job = self.scheduler.get(job_id)
        if job is None:
            if not forwarded:
                return NOT_WATCHED_HERE
            self.note_early(job_id, status)
            return "noted before the job was seen"
        self._apply_webhook(job, status)
        return "checking" if status in TERMINAL else "noted"

    def note_early(self, job_id: str, status: JobStatus) -> None:
        """Keep a status heard before the job's JobSubmitted was read, until it is (a final status wins)."""
        earlier = self._early_webhooks.pop(job_id)
        self._early_webhooks.add(job_id, earlier if earlier in TERMINAL else status)

    def _apply_webhook(self, job: PendingJob, status: JobStatus) -> None:
        job.webhooks_arriving = True
        if status in TERMINAL:
            job.final_status_reported = True
            if job.token is None:
                return  # being checked right now; _check looks again if that check saw an older status
            self.scheduler.schedule(job, self._clock())  # confirm at once with GET /v1/job
        elif not job.final_status_reported and job.token is not None:
            self.scheduler.schedule_next_poll(job, self._clock())
        self._scheduler_changed.set()

    # ---- polling --------------------------------------------------------------------------------------------

    async def run_polling(self) -> None:
        """The one timer loop: wait for the earliest due job, check every due job, repeat."""
        while True:
            now = self._clock()
            next_due = self.scheduler.next_due()
            if next_due is None or next_due > now:
                self._scheduler_changed.clear()
                timeout = None if next_due is None else next_due - now
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._scheduler_changed.wait(), timeout=timeout)
                continue
            for job in self.scheduler.pop_due(now, limit=1000):
                progress = self.partitions.get(job.partition)
                if progress is not None and progress.replaying:
                    # Its JobResolved marker may still be ahead in the partition: check once caught up.
                    self.scheduler.schedule(job, now + 0.2)
                    continue
                await self._polls.acquire()
                check = asyncio.create_task(self._check(job))
                self._checks.add(check)
                check.add_done_callback(self._checks.discard)

    async def _check(self, job: PendingJob) -> None:
        # Each check is a span of the conversation's trace, so its GET /v1/job and its outcome show there.
        with continuing_trace(job.trace_parent, "check job status", attributes={"parley.poll": job.polls + 1}):
            bind_ids(conversation_id=job.conversation_id, job_id=job.job_id, request_id=job.request_id)
            await self._check_in_trace(job)

    async def _check_in_trace(self, job: PendingJob) -> None:
        try:
            if job.job_id not in self.scheduler:
                return
            now = self._clock()
            try:
                self.status_polls += 1
                status_polled()
                state = await self._provider.get_job(job.job_id)
            except JobNotFound:
                self._settle(job, failure="the provider does not know this job", detected_by="poll")
                return
            except ProviderError as error:
                logger.warning("status of job %s unavailable (%s); will retry", job.job_id, error)
                job.polls += 1
                self._reschedule_or_expire(job, now)
                return
            job.polls += 1
            if job.job_id not in self.scheduler:
                return  # settled meanwhile by another check
            if state.status is JobStatus.COMPLETED:
                self._settle(job, detected_by="webhook" if job.webhooks_arriving else "poll")
            elif state.status is JobStatus.FAILED:
                self._settle(job, failure=state.reason or "the provider reported the job failed", detected_by="poll")
            else:
                self._reschedule_or_expire(job, now)
        finally:
            self._polls.release()

    def _reschedule_or_expire(self, job: PendingJob, now: float) -> None:
        if now >= job.deadline:
            self._settle(job, failure="deadline", detected_by="poll")
        elif job.final_status_reported:
            # A final webhook came while this check was answered with an older status: look again shortly.
            self.scheduler.schedule(job, now + 0.05)
            self._scheduler_changed.set()
        else:
            self.scheduler.schedule_next_poll(job, now)
            self._scheduler_changed.set()

    # ---- output ---------------------------------------------------------------------------------------------

    def _settle(self, job: PendingJob, *, detected_by: Literal["webhook", "poll"], failure: str | None = None) -> None:
        """Take the job out of the scheduler (so nothing can settle it again) and queue its outcome."""
        if self.scheduler.remove(job.job_id) is None:
            return
        self._settled.add(job.job_id)
        if failure is None:
            logger.info("job completed after %d poll(s), detected by %s", job.polls, detected_by)
        else:
            logger.info("job failed after %d poll(s): %s", job.polls, failure)
        submitted_at = datetime.fromtimestamp(job.submitted_at, UTC)
        outcome: JobCompleted | JobFailed
        if failure is None:
            outcome = JobCompleted(
                request_id=job.request_id,
                conversation_id=job.conversation_id,
                job_id=job.job_id,
                submitted_at=submitted_at,
                detected_by=detected_by,
            )
        else:
            outcome = JobFailed(
                request_id=job.request_id,
                conversation_id=job.conversation_id,
                job_id=job.job_id,
                submitted_at=submitted_at,
                reason=failure,
            )
        marker = JobResolved(
            request_id=job.request_id,
            conversation_id=job.conversation_id,
            job_id=job.job_id,
            outcome="completed" if failure is None else "failed",
        )
        self._queue([outcome, marker])
        self._outbox_jobs.append(job.job_id)
        self.partitions[job.partition].release(job.offset)
        self._offsets_dirty = True

    def drop_unpublished(self) -> None:
        """Forget queued outcomes that could not be published: the partitions' next owner settles those jobs.

        They are no longer settled as far as this replica knows, so if it gets a partition back it watches them again.
        """
        for job_id in self._outbox_jobs:
            self._settled.pop(job_id)
        self._outbox_jobs.clear()
        self._outbox.clear()
        self._outbox_events.clear()
        self._outbox_has_work.clear()

    def _queue(self, events: list[BaseModel]) -> None:
        """Queue events (outcomes, markers, dead letters) for the next transaction, in the current trace."""
        self._outbox.extend(self._outputs.records(events))
        self._outbox_events.extend(events)
        self._outbox_has_work.set()

    async def flush(self) -> None:
        """Publish everything queued, with the offsets now safe to commit, in one transaction (returns once every
        transaction begun before it has ended too)."""
        async with self._flushing:
            await self._flush()

    async def _flush(self) -> None:
        records, self._outbox = self._outbox, []
        events, self._outbox_events = self._outbox_events, []
        settled_jobs, self._outbox_jobs = self._outbox_jobs, []
        self._outbox_has_work.clear()
        dirty, self._offsets_dirty = self._offsets_dirty, False
        if not records and not dirty:
            return
        try:
            await self._publisher.publish(records, consumed=self.commit_positions(), group_id=self._group_id)
        except BaseException:
            self._outbox[:0] = records  # keep them, in order, for the next try
            self._outbox_events[:0] = events
            self._outbox_jobs[:0] = settled_jobs
            self._offsets_dirty = True
            raise
        self._outputs.committed(events)

    async def run_publishing(self, *, idle_commit_seconds: float = 1.0) -> None:
        """Group commit: one transaction for everything settled while the previous one was in flight."""
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._outbox_has_work.wait(), timeout=idle_commit_seconds)
            try:
                await self.flush()
            except Exception as error:
                logger.error("could not publish outcomes (%s); retrying", error)
                await asyncio.sleep(1.0)
