"""What the double remembers about conversations and jobs (plain in-memory records)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

JobStatus = Literal["scheduled", "in_progress", "completed", "failed"]
ConversationKind = Literal["text", "audio", "video"]
SCRIPTED_FAILURE_REASON = "scripted failure"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One submitted message (or the fixed transcript of a media file), before any "analysis"."""

    text: str
    speaker_name: str | None = None
    speaker_user_id: str | None = None
    start_time: str | None = None
    end_time: str | None = None


@dataclass(slots=True)
class Job:
    """One submission (POST or append PUT) and where it is in scheduled → in_progress → completed|failed."""

    job_id: str
    conversation_id: str
    content: list[SourceMessage]
    will_fail: bool
    webhook_url: str | None
    submitted_at: float
    body_bytes: int = 0
    status: JobStatus = "scheduled"
    reason: str | None = None
    finished_at: float | None = None

    def as_status_body(self) -> dict[str, Any]:
        """The ``GET /v1/job/{jobId}`` body."""
        body: dict[str, Any] = {"id": self.job_id, "status": self.status}
        if self.reason is not None:
            body["reason"] = self.reason
        return body


@dataclass(slots=True)
class Conversation:
    """A conversation: its jobs in submission order and the content of those that completed.

    Insights are derived only from completed jobs, so a read before completion really is incomplete, as the
    Symbl documentation warns. ``revision`` changes whenever that content does (cached bodies are dropped).
    """

    conversation_id: str
    name: str
    kind: ConversationKind
    job_ids: list[str] = field(default_factory=list)
    completed_content: list[SourceMessage] = field(default_factory=list)
    revision: int = 0
    # Time at which the last submitted job reaches its terminal state; the next job starts no earlier.
    last_terminal_due: float = 0.0
    cached_bodies: dict[str, bytes] = field(default_factory=dict)
