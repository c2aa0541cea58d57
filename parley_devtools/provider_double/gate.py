"""The delivery guarantee "read insights only after the job completed", checked from the double's logs."""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

CONVERSATION_READ_PREFIX = "/v1/conversations/"


@dataclass(slots=True)
class _JobTimes:
    job_id: str
    submitted_at: float
    completed_at: float | None = None


@dataclass(slots=True)
class _ConversationJobs:
    jobs: list[_JobTimes] = field(default_factory=list)
    submission_times: list[float] = field(default_factory=list)


def _jobs_by_conversation(transitions: list[dict[str, Any]]) -> dict[str, _ConversationJobs]:
    by_job: dict[str, _JobTimes] = {}
    by_conversation: dict[str, _ConversationJobs] = {}
    for transition in sorted(transitions, key=lambda record: record["t"]):
        job_id = transition["jobId"]
        if transition["status"] == "scheduled" and job_id not in by_job:
            job = by_job[job_id] = _JobTimes(job_id, transition["t"])
            jobs = by_conversation.setdefault(transition["conversationId"], _ConversationJobs())
            jobs.jobs.append(job)
            jobs.submission_times.append(job.submitted_at)
        elif transition["status"] == "completed" and job_id in by_job:
            by_job[job_id].completed_at = transition["t"]
    return by_conversation


def gate_violations(calls: list[dict[str, Any]], transitions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every Conversation API read made while the conversation's latest job was not yet completed.

    A read at time t of conversation C violates the gate if the latest job of C submitted at or before t had
    not completed by t (a failed job never completes). A read of a conversation that has jobs, none submitted
    by t, is a violation too; reads of conversations the double never saw (answered 404) are not. Each
    violation is the call record plus ``pendingJobId`` (None when no job had been submitted yet).
    """
    by_conversation = _jobs_by_conversation(transitions)
    violations: list[dict[str, Any]] = []
    for call in calls:
        if call.get("method") != "GET" or not call.get("path", "").startswith(CONVERSATION_READ_PREFIX):
            continue
        path_id = call["path"][len(CONVERSATION_READ_PREFIX) :].split("/")[0]
        conversation_id = call.get("conversationId") or path_id
        jobs = by_conversation.get(conversation_id)
        if jobs is None:
            continue
        read_at = call["t"]
        latest = bisect.bisect_right(jobs.submission_times, read_at) - 1
        if latest < 0:
            violations.append({**call, "pendingJobId": None})
            continue
        job = jobs.jobs[latest]
        if job.completed_at is None or job.completed_at > read_at:
            violations.append({**call, "pendingJobId": job.job_id})
    return violations
