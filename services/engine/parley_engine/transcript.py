"""Formatted transcripts (``POST /v1/conversations/{id}/transcript``): Markdown and SRT from stored messages."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

UNKNOWN_SPEAKER = "Unknown speaker"
# Estimated speaking time of a message without timings, so SRT cues still advance sensibly.
SECONDS_PER_WORD = 0.4
MINIMUM_CUE_SECONDS = 1.0


def speaker_name(message: dict[str, Any]) -> str:
    sender = message.get("from") or {}
    return str(sender.get("name") or sender.get("userId") or sender.get("email") or UNKNOWN_SPEAKER)


def _speaker_key(message: dict[str, Any]) -> str:
    sender = message.get("from") or {}
    return str(sender.get("id") or sender.get("userId") or sender.get("name") or "")


def _highlighted(text: str, phrases: Iterable[str]) -> str:
    for phrase in sorted(set(phrases), key=len, reverse=True):
        if phrase and phrase in text and f"**{phrase}**" not in text:
            text = text.replace(phrase, f"**{phrase}**", 1)
    return text


def markdown_transcript(
    messages: Sequence[dict[str, Any]],
    *,
    create_paragraphs: bool,
    show_speaker_separation: bool,
    highlight_phrases: dict[str, list[str]] | None = None,
) -> str:
    """One paragraph per message, or per speaker turn with ``create_paragraphs``; ``**Name**:`` before each.

    ``highlight_phrases`` maps message ids to phrases to bold in that message.
    """
    highlight_phrases = highlight_phrases or {}
    turns: list[tuple[dict[str, Any], list[str]]] = []
    for message in messages:
        text = _highlighted(str(message.get("text", "")), highlight_phrases.get(str(message.get("id")), []))
        if create_paragraphs and turns and _speaker_key(turns[-1][0]) == _speaker_key(message):
            turns[-1][1].append(text)
        else:
            turns.append((message, [text]))
    paragraphs = []
    for first, texts in turns:
        body = " ".join(texts)
        paragraphs.append(f"**{speaker_name(first)}**: {body}" if show_speaker_separation else body)
    return "\n\n".join(paragraphs) + ("\n" if paragraphs else "")


def srt_timestamp(seconds: float) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d},{millis:03d}"


def srt_transcript(messages: Sequence[dict[str, Any]], *, show_speaker_separation: bool) -> str:
    """Numbered cues ``HH:MM:SS,mmm --> HH:MM:SS,mmm`` from each message's ``timeOffset`` and ``duration``."""
    cues = []
    clock = 0.0
    for number, message in enumerate(messages, start=1):
        text = str(message.get("text", ""))
        start = message.get("timeOffset")
        length = message.get("duration")
        start = float(start) if isinstance(start, int | float) else clock
        if not isinstance(length, int | float) or length <= 0:
            length = max(MINIMUM_CUE_SECONDS, len(text.split()) * SECONDS_PER_WORD)
        end = start + float(length)
        clock = max(clock, end)
        line = f"{speaker_name(message)}: {text}" if show_speaker_separation else text
        cues.append(f"{number}\n{srt_timestamp(start)} --> {srt_timestamp(end)}\n{line}\n")
    return "\n".join(cues)
