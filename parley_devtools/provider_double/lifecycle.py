"""Jobs move scheduled → in_progress → completed|failed on a timer, and webhooks report every change.

One scheduler task drains a heap of due transitions, so ten thousand pending jobs cost ten thousand heap
entries, not ten thousand sleeping tasks. Jobs of one conversation run one after another: a job starts no
earlier than the previous job of its conversation finishes, which is how Symbl serializes appends.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import random
import time
import uuid
from typing import Any

import aiohttp

from parley_devtools.provider_double.config import DoubleConfig
from parley_devtools.provider_double.records import (
    SCRIPTED_FAILURE_REASON,
    Conversation,
    ConversationKind,
    Job,
    JobStatus,
    SourceMessage,
)

WEBHOOK_ATTEMPTS = 3


class JobLifecycle:
    """The double's whole mutable state: conversations, jobs, the transition log and webhook delivery."""

    def __init__(self, config: DoubleConfig) -> None:
        self.config = config
        self.conversations: dict[str, Conversation] = {}
        self.jobs: dict[str, Job] = {}
        # Every status change as {"t", "jobId", "conversationId", "status"}, in the order they happened.
        self.transitions: list[dict[str, Any]] = []
        self.webhooks_delivered = 0
        self.webhooks_failed = 0
        self.webhooks_dropped = 0  # not sent, on purpose (drop_webhooks)
        # (due on the monotonic clock, sequence number, jobId, status to move to); the sequence keeps ties in
        # submission order.
        self._due: list[tuple[float, int, str, JobStatus]] = []
        self._sequence = 0
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._webhook_posts: set[asyncio.Task[None]] = set()

    @property
    def started(self) -> bool:
        return self._scheduler is not None

    async def start(self) -> None:
        """Start the scheduler and the shared webhook client (idempotent)."""
        if self._scheduler is not None:
            return
        self._wake = asyncio.Event()  # bound to the loop that runs the scheduler
        # The timeout covers one exchange with the receiver, not the wait for a pooled connection in a burst.
        timeout = aiohttp.ClientTimeout(
            sock_connect=self.config.webhook_timeout_seconds, sock_read=self.config.webhook_timeout_seconds
        )
        self._session = aiohttp.ClientSession(timeout=timeout)
        self._scheduler = asyncio.create_task(self._run_scheduler(), name="provider-double-scheduler")

    async def stop(self) -> None:
        """Stop the scheduler, abandon webhook posts still in flight and close the client."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
            self._scheduler = None
        for post in list(self._webhook_posts):
            post.cancel()
        if self._webhook_posts:
            await asyncio.gather(*self._webhook_posts, return_exceptions=True)
        if self._session is not None:
            await self._session.close()
            self._session = None

    def reset(self) -> None:
        """Forget every conversation, job, pending transition and counter (issued tokens stay valid)."""
        self.conversations.clear()
        self.jobs.clear()
        self.transitions.clear()
        self._due.clear()
        self.webhooks_delivered = 0
        self.webhooks_failed = 0
        self.webhooks_dropped = 0

    def new_conversation(self, name: str | None, kind: ConversationKind) -> Conversation:
        conversation_id = self._new_conversation_id()
        conversation = Conversation(conversation_id=conversation_id, name=name or conversation_id, kind=kind)
        self.conversations[conversation_id] = conversation
        return conversation

    def submit(
        self,
        conversation: Conversation,
        content: list[SourceMessage],
        *,
        will_fail: bool,
        webhook_url: str | None,
        body_bytes: int = 0,
    ) -> Job:
        """Register a job as ``scheduled`` and plan its two later transitions."""
        if self._scheduler is None:
            raise RuntimeError("the double's scheduler is not running: use running(app) or a lifespan")
        job = Job(
            job_id=str(uuid.uuid4()),
            conversation_id=conversation.conversation_id,
            content=content,
            will_fail=will_fail,
            webhook_url=webhook_url,
            submitted_at=time.time(),
            body_bytes=body_bytes,
        )
        self.jobs[job.job_id] = job
        conversation.job_ids.append(job.job_id)
        self._record(job)

        now = time.monotonic()
        starts_at = max(now + self.config.scheduled_seconds, conversation.last_terminal_due)
        finishes_at = starts_at + self.config.processing_seconds
        conversation.last_terminal_due = finishes_at
        self._plan(starts_at, job.job_id, "in_progress")
        self._plan(finishes_at, job.job_id, "failed" if will_fail else "completed")
        return job

    def _new_conversation_id(self) -> str:
        while True:
            conversation_id = str(random.randrange(10**15, 10**16))
            if conversation_id not in self.conversations:
                return conversation_id

    def _plan(self, due: float, job_id: str, status: JobStatus) -> None:
        self._sequence += 1
        entry = (due, self._sequence, job_id, status)
        heapq.heappush(self._due, entry)
        if self._due[0] is entry:
            self._wake.set()

    async def _run_scheduler(self) -> None:
        while True:
            if not self._due:
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = self._due[0][0] - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                self._wake.clear()
                continue
            now = time.monotonic()
            while self._due and self._due[0][0] <= now:
                _, _, job_id, status = heapq.heappop(self._due)
                self._advance(job_id, status)

    def _advance(self, job_id: str, status: JobStatus) -> None:
        job = self.jobs.get(job_id)
        if job is None:  # forgotten by a reset
            return
        job.status = status
        if status in ("completed", "failed"):
            job.finished_at = time.time()
        if status == "failed":
            job.reason = SCRIPTED_FAILURE_REASON
        elif status == "completed":
            conversation = self.conversations[job.conversation_id]
            conversation.completed_content.extend(job.content)
            conversation.revision += 1
            conversation.cached_bodies.clear()
        self._record(job)

    def _record(self, job: Job) -> None:
        transition = {"jobId": job.job_id, "conversationId": job.conversation_id, "status": job.status}
        self.transitions.append({"t": time.time(), **transition})
        if job.webhook_url and self.config.drop_webhooks:
            self.webhooks_dropped += 1
        elif job.webhook_url and self._session is not None:
            body = {
                "jobId": job.job_id,
                "id": job.job_id,
                "status": job.status,
                "conversationId": job.conversation_id,
            }
            post = asyncio.create_task(self._post_webhook(job.webhook_url, body))
            self._webhook_posts.add(post)
            post.add_done_callback(self._webhook_posts.discard)

    # Fire and forget with a couple of retries, like providers that document their webhooks (and Parley's engine):
    # the receiver's answer and errors only move the counters.
    async def _post_webhook(self, url: str, body: dict[str, Any]) -> None:
        assert self._session is not None
        delivered = False
        for attempt in range(WEBHOOK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.2 * 2**attempt)
            try:
                async with self._session.post(url, json=body) as response:
                    await response.read()
                    delivered = response.status < 400
            except Exception:  # any failure to deliver (bad URL, refused, timeout) is only counted
                delivered = False
            if delivered:
                break
        if delivered:
            self.webhooks_delivered += 1
        else:
            self.webhooks_failed += 1
