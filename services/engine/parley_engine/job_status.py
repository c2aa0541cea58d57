"""A job's lifecycle as the Async and Job APIs show it: its kinds, its statuses and the webhook body of a change."""

from __future__ import annotations

import json
from typing import Literal

JobStatus = Literal["scheduled", "in_progress", "completed", "failed"]
ACTIVE_STATUSES: tuple[JobStatus, ...] = ("scheduled", "in_progress")
# Jobs a caller submitted through the Async API; the engine's own maintenance jobs (re-attributing speakers)
# share the queue so they run in order with them, but never count against the caller's concurrency limit.
PUBLIC_JOB_KINDS = ("text", "audio", "video", "audio_url", "video_url", "streaming")


def job_status_body(job_id: str, status: str, conversation_id: str) -> str:
    """The webhook body; Symbl documented ``jobId`` but its blog shows ``id``, so both are sent."""
    return json.dumps(
        {"jobId": job_id, "id": job_id, "status": status, "conversationId": conversation_id}, separators=(",", ":")
    )
