"""Talk, listen, silence and overlap figures from message timings (Symbl's ``/analytics`` body)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from parley_engine.analysis.identity import Member
from parley_engine.analysis.segmentation import TimedMessage

Interval = tuple[float, float]


def merge_intervals(intervals: list[Interval]) -> list[Interval]:
    """The union of ``intervals`` as sorted, non-overlapping intervals."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[1] > i[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def total_length(intervals: list[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def intersection_length(first: list[Interval], second: list[Interval]) -> float:
    """Length of the intersection of two merged interval lists (linear merge walk)."""
    i = j = 0
    total = 0.0
    while i < len(first) and j < len(second):
        start = max(first[i][0], second[j][0])
        end = min(first[i][1], second[j][1])
        if end > start:
            total += end - start
        if first[i][1] < second[j][1]:
            i += 1
        else:
            j += 1
    return total


def _overlap_of_all(per_member: dict[str, list[Interval]]) -> float:
    """Seconds during which two or more members speak at once (sweep over start/end events)."""
    events: list[tuple[float, int]] = []
    for intervals in per_member.values():
        for start, end in intervals:
            events += [(start, 1), (end, -1)]
    events.sort(key=lambda event: (event[0], event[1]))
    total, active, previous = 0.0, 0, 0.0
    for moment, change in events:
        if active >= 2:
            total += moment - previous
        active += change
        previous = moment
    return total


def _percent(part: float, whole: float) -> float:
    return round(100.0 * part / whole, 2) if whole > 0 else 0.0


def compute_analytics(messages: list[TimedMessage], members: list[Member]) -> dict[str, Any]:
    """Metrics over the conversation's span (first start to last end) and per-member figures."""
    if not messages:
        return {"metrics": [], "members": []}
    per_member: dict[str, list[Interval]] = defaultdict(list)
    words: dict[str, int] = defaultdict(int)
    for message in messages:
        per_member[message.member.id].append((message.start, message.end))
        words[message.member.id] += len(message.text.split())
    merged = {member_id: merge_intervals(intervals) for member_id, intervals in per_member.items()}
    span_start = min(m.start for m in messages)
    span_end = max(m.end for m in messages)
    duration = span_end - span_start
    talk = total_length(merge_intervals([i for intervals in merged.values() for i in intervals]))
    overlap = _overlap_of_all(merged)
    silence = max(0.0, duration - talk)
    metrics = [
        {"type": "total_silence", "percent": _percent(silence, duration), "seconds": round(silence, 2)},
        {"type": "total_talk_time", "percent": _percent(talk, duration), "seconds": round(talk, 2)},
        {"type": "total_overlap", "percent": _percent(overlap, duration), "seconds": round(overlap, 2)},
    ]
    member_bodies: list[dict[str, Any]] = []
    for member in members:
        own = merged.get(member.id, [])
        own_seconds = total_length(own)
        others = merge_intervals([i for other_id, ivs in merged.items() if other_id != member.id for i in ivs])
        listen_seconds = total_length(others) - intersection_length(own, others)
        overlapping = []
        for other in members:
            if other.id == member.id:
                continue
            seconds = intersection_length(own, merged.get(other.id, []))
            if seconds > 0:
                overlapping.append(
                    {**other.as_from(), "percent": _percent(seconds, own_seconds), "seconds": round(seconds, 2)}
                )
        minutes = own_seconds / 60.0
        member_bodies.append(
            {
                **member.as_from(),
                "pace": {"wpm": round(words[member.id] / minutes) if minutes > 0 else 0},
                "talkTime": {"percentage": _percent(own_seconds, duration), "seconds": round(own_seconds, 2)},
                "listenTime": {"percentage": _percent(listen_seconds, duration), "seconds": round(listen_seconds, 2)},
                "overlap": {
                    "overlapDuration": round(intersection_length(own, others), 2),
                    "overlappingMembers": overlapping,
                },
            }
        )
    return {"metrics": metrics, "members": member_bodies}
