"""A conversation's messages as a timeline: who said what, from when to when (seconds from its start).

The player's position, the charts' x axes and every "jump to this moment" use these times. Messages without times
(text submitted without durations) follow one another a second apart, so their order still reads left to right.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

UNKNOWN_SPEAKER = "Unknown speaker"


def clock(seconds: float) -> str:
    """``1:05`` or ``1:02:05``."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _seconds(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0 else None


def speaker_name(sender: Any) -> str:
    if isinstance(sender, dict):
        for key in ("name", "userId", "email"):
            if isinstance(sender.get(key), str) and sender[key].strip():
                return str(sender[key]).strip()
    return UNKNOWN_SPEAKER


@dataclass(frozen=True)
class Line:
    id: str
    speaker: str
    speaker_index: int
    start: float
    end: float
    text: str
    polarity: float | None

    @property
    def clock(self) -> str:
        return clock(self.start)


class Timeline:
    def __init__(self, messages: list[dict[str, Any]]) -> None:
        speakers: dict[str, int] = {}
        member_names: dict[str, str] = {}
        lines: list[Line] = []
        previous_end = 0.0
        for message in messages:
            sender = message.get("from")
            speaker = speaker_name(sender)
            speakers.setdefault(speaker, len(speakers))
            if isinstance(sender, dict) and isinstance(sender.get("id"), str):
                member_names.setdefault(sender["id"], speaker)
            start = _seconds(message.get("timeOffset"))
            duration = _seconds(message.get("duration"))
            if start is None:
                start, duration = previous_end, 1.0
            end = start + (duration or 0.0)
            previous_end = max(previous_end, end)
            sentiment = message.get("sentiment")
            polarity = sentiment.get("polarity", {}).get("score") if isinstance(sentiment, dict) else None
            lines.append(
                Line(
                    id=str(message.get("id", len(lines))),
                    speaker=speaker,
                    speaker_index=speakers[speaker],
                    start=start,
                    end=end,
                    text=str(message.get("text", "")),
                    polarity=float(polarity) if isinstance(polarity, int | float) else None,
                )
            )
        self.lines = tuple(lines)
        self.speakers = tuple(speakers)
        self._speaker_indexes = speakers
        self._member_names = member_names
        self._by_id = {line.id: line for line in lines}

    @property
    def end(self) -> float:
        return max((line.end for line in self.lines), default=0.0)

    def line(self, message_id: str) -> Line | None:
        return self._by_id.get(message_id)

    def lines_of(self, message_ids: Any) -> list[Line]:
        """The lines of these message ids (unknown ids left out), earliest first."""
        if not isinstance(message_ids, list):
            return []
        found = [line for line in (self._by_id.get(str(i)) for i in message_ids) if line is not None]
        return sorted(found, key=lambda line: line.start)

    def speaker_index(self, speaker: str) -> int:
        return self._speaker_indexes.get(speaker, len(self._speaker_indexes))

    def speaker_named(self, member_id: Any, name: Any) -> str | None:
        """The speaker a member (of the analytics or the members list) is on this timeline."""
        if isinstance(member_id, str) and member_id in self._member_names:
            return self._member_names[member_id]
        if isinstance(name, str) and name in self._speaker_indexes:
            return name
        return None
