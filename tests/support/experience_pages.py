"""Helpers for the Experience page's tests: a meeting whose insights point at its messages, a WAV to play, and
Debian's Chromium driven by Playwright (Playwright's own browser download is never used).

No tests here.
"""

from __future__ import annotations

import io
import math
import struct
import uuid
import wave
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

from parley_engine.conversation import AnalysisOptions, ConversationInsights, Utterance
from playwright.async_api import Browser, async_playwright

from parley_devtools.chromium import CHROMIUM, CHROMIUM_ARGS
from tests.support.engine import FakeAnalyzer


@asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


def _timed(start: str, end: str) -> dict[str, str]:
    return {"startTime": f"2026-11-23T16:00:{start}Z", "endTime": f"2026-11-23T16:00:{end}Z"}


MEETING_MESSAGES: list[dict[str, Any]] = [
    {
        "payload": {"content": "Good morning, this is a great start to the launch review."},
        "from": {"userId": "natalia@example.com", "name": "Natalia"},
        "duration": _timed("00.000", "05.000"),
    },
    {
        "payload": {"content": "Did the pricing page go live on Friday?"},
        "from": {"userId": "mike@example.com", "name": "Mike"},
        "duration": _timed("06.000", "09.000"),
    },
    {
        "payload": {"content": "It went live, but the checkout still has a bug with discount codes."},
        "from": {"userId": "natalia@example.com", "name": "Natalia"},
        "duration": _timed("10.000", "15.000"),
    },
    {
        "payload": {"content": "I will fix the discount code bug by Wednesday."},
        "from": {"userId": "mike@example.com", "name": "Mike"},
        "duration": _timed("16.000", "20.000"),
    },
    {
        "payload": {"content": "Great, and I will send the launch notes to marketing."},
        "from": {"userId": "priya@example.com", "name": "Priya"},
        "duration": _timed("21.000", "25.000"),
    },
    {
        "payload": {"content": "Let us check the pricing numbers again next week."},
        "from": {"userId": "natalia@example.com", "name": "Natalia"},
        "duration": _timed("26.000", "29.500"),
    },
]

_TOPIC_WORDS = ("discount", "pricing", "launch")
_MOODS = {"great": 0.7, "good": 0.4, "bug": -0.6}


class MeetingAnalyzer(FakeAnalyzer):
    """``meeting_insights`` in place of the plain fake's."""

    def analyze(
        self,
        utterances: list[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        self.calls.append((conversation_id, len(utterances), options))
        return meeting_insights(utterances, conversation_id)


def meeting_insights(utterances: list[Utterance], conversation_id: str) -> ConversationInsights:
    """Insights that name their messages, as the real analyzer's do: each sentence with "will" is an action item of
    its speaker, each "?" a question, each of a few words a topic; "great", "good" and "bug" move sentiment."""
    names = list(dict.fromkeys(u.speaker.name or "Unknown" for u in utterances))
    members = {name: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conversation_id}/{name}")) for name in names}

    def sender(u: Utterance) -> dict[str, Any]:
        name = u.speaker.name or "Unknown"
        return {"id": members[name], "name": name, "userId": u.speaker.user_id}

    def polarity(text: str) -> float:
        return sum(score for word, score in _MOODS.items() if word in text.lower())

    messages: list[dict[str, Any]] = [
        {
            "id": u.id,
            "text": u.text,
            "from": sender(u),
            "timeOffset": u.start_offset,
            "duration": (u.end_offset or 0.0) - (u.start_offset or 0.0),
            "conversationId": conversation_id,
            "phrases": [],
            "sentiment": {"polarity": {"score": polarity(u.text)}, "suggested": "neutral"},
        }
        for u in utterances
    ]
    talk: dict[str, float] = {}
    for u in utterances:
        talk[u.speaker.name or "Unknown"] = talk.get(u.speaker.name or "Unknown", 0.0) + (
            (u.end_offset or 0.0) - (u.start_offset or 0.0)
        )
    return ConversationInsights(
        messages=messages,
        topics=[
            {
                "id": f"t{n}",
                "text": word,
                "type": "topic",
                "score": 0.9 - n / 10,
                "messageIds": [u.id for u in utterances if word in u.text.lower()],
            }
            for n, word in enumerate(_TOPIC_WORDS)
            if any(word in u.text.lower() for u in utterances)
        ],
        questions=[
            {"id": f"q{u.id}", "text": u.text, "type": "question", "score": 0.9, "messageIds": [u.id]}
            for u in utterances
            if u.text.endswith("?")
        ],
        action_items=[
            {
                "id": f"a{u.id}",
                "text": u.text.replace("I will", f"{u.speaker.name} will"),
                "type": "action_item",
                "score": 0.8,
                "messageIds": [u.id],
                "from": sender(u),
                "assignee": sender(u),
                "dueBy": "2026-11-25T17:00:00Z" if "Wednesday" in u.text else None,
            }
            for u in utterances
            if " will " in f" {u.text} "
        ],
        follow_ups=[
            {"id": f"f{u.id}", "text": u.text, "type": "follow_up", "score": 0.7, "messageIds": [u.id]}
            for u in utterances
            if "next week" in u.text
        ],
        summary=[
            {"id": "s1", "text": "The pricing page is live; a checkout bug remains.", "messageRefs": []},
            {"id": "s2", "text": utterances[-1].text, "messageRefs": [{"id": utterances[-1].id}]},
        ],
        analytics={
            "metrics": [],
            "members": [
                {"id": members[name], "name": name, "talkTime": {"seconds": seconds}} for name, seconds in talk.items()
            ],
        },
        members=[{"id": members[name], "name": name, "email": None} for name in names],
    )


def wav_bytes(seconds: float, rate: int = 8000) -> bytes:
    """A quiet 440 Hz tone: media the browser can play and seek."""
    frames = int(seconds * rate)
    samples = (int(3000 * math.sin(2 * math.pi * 440 * n / rate)) for n in range(frames))
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(b"".join(struct.pack("<h", sample) for sample in samples))
    return buffer.getvalue()
