"""The page's three charts, as numbers ready to draw: the template turns them into inline SVG.

Talk time per speaker (each speaker's share of all talk), sentiment across the conversation (each message's
polarity, and a running average), topics over time (where in the conversation each topic's messages were said).
Positions are in the SVG's own units; every chart also has a one-sentence description for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass

from parley_engine.experience.timeline import Timeline, clock

SENTIMENT_WIDTH = 600
SENTIMENT_HEIGHT = 200
_SENTIMENT_MARGIN = 12
_AVERAGE_OVER = 5
TOPIC_TRACK_WIDTH = 100
MOST_TOPICS_DRAWN = 8


@dataclass(frozen=True)
class TalkShare:
    speaker: str
    speaker_index: int
    seconds: float
    share: float

    @property
    def percent(self) -> int:
        return round(100 * self.share)

    @property
    def bar_width(self) -> float:
        return round(100 * self.share, 2)


@dataclass(frozen=True)
class TalkTime:
    shares: tuple[TalkShare, ...]

    @property
    def description(self) -> str:
        return "; ".join(f"{s.speaker} {s.percent}% ({clock(s.seconds)})" for s in self.shares)


@dataclass(frozen=True)
class SentimentPoint:
    message_id: str
    seconds: float
    polarity: float
    x: float
    y: float

    @property
    def mood(self) -> str:
        return "positive" if self.polarity > 0.05 else "negative" if self.polarity < -0.05 else "neutral"


@dataclass(frozen=True)
class Sentiment:
    points: tuple[SentimentPoint, ...]
    average_line: str
    zero_y: float
    width: int = SENTIMENT_WIDTH
    height: int = SENTIMENT_HEIGHT

    @property
    def description(self) -> str:
        if not self.points:
            return "No sentiment was measured."
        moods = [point.mood for point in self.points]
        counts = {mood: moods.count(mood) for mood in ("positive", "neutral", "negative")}
        lowest = min(self.points, key=lambda point: point.polarity)
        highest = max(self.points, key=lambda point: point.polarity)
        return (
            f"{counts['positive']} positive, {counts['neutral']} neutral and {counts['negative']} negative messages; "
            f"most positive at {clock(highest.seconds)}, most negative at {clock(lowest.seconds)}."
        )


@dataclass(frozen=True)
class TopicTrack:
    topic: str
    marks: tuple[float, ...]
    first_seconds: float
    first_message_id: str

    @property
    def description(self) -> str:
        return f"{self.topic}: said {len(self.marks)} times, first at {clock(self.first_seconds)}"


def talk_time(timeline: Timeline, analytics_members: list[dict[str, object]]) -> TalkTime:
    """Seconds per speaker from the analytics when it has them, else from the messages' own durations."""
    seconds: dict[str, float] = {}
    for member in analytics_members:
        talk = member.get("talkTime")
        speaker = timeline.speaker_named(member.get("id"), member.get("name"))
        if isinstance(talk, dict) and isinstance(talk.get("seconds"), int | float) and speaker is not None:
            seconds[speaker] = seconds.get(speaker, 0.0) + float(talk["seconds"])
    if not seconds or not any(seconds.values()):
        seconds = {}
        for line in timeline.lines:
            seconds[line.speaker] = seconds.get(line.speaker, 0.0) + max(0.0, line.end - line.start)
    total = sum(seconds.values())
    shares = [
        TalkShare(speaker, timeline.speaker_index(speaker), spoken, spoken / total if total > 0 else 0.0)
        for speaker, spoken in seconds.items()
    ]
    return TalkTime(tuple(sorted(shares, key=lambda share: share.seconds, reverse=True)))


def sentiment(timeline: Timeline) -> Sentiment:
    usable = [(line, line.polarity) for line in timeline.lines if line.polarity is not None]
    span = timeline.end or 1.0
    inner_width = SENTIMENT_WIDTH - 2 * _SENTIMENT_MARGIN
    half_height = SENTIMENT_HEIGHT / 2 - _SENTIMENT_MARGIN

    def x_of(seconds: float) -> float:
        return round(_SENTIMENT_MARGIN + inner_width * min(1.0, seconds / span), 1)

    def y_of(polarity: float) -> float:
        return round(SENTIMENT_HEIGHT / 2 - half_height * max(-1.0, min(1.0, polarity)), 1)

    points = tuple(
        SentimentPoint(line.id, line.start, polarity, x_of(line.start), y_of(polarity)) for line, polarity in usable
    )
    averaged = []
    for index, point in enumerate(points):
        window = points[max(0, index - _AVERAGE_OVER // 2) : index + _AVERAGE_OVER // 2 + 1]
        averaged.append(f"{point.x},{y_of(sum(p.polarity for p in window) / len(window))}")
    return Sentiment(points, " ".join(averaged), y_of(0.0))


def topics_over_time(timeline: Timeline, topics: list[dict[str, object]]) -> tuple[TopicTrack, ...]:
    span = timeline.end or 1.0
    tracks = []
    for topic in topics[:MOST_TOPICS_DRAWN]:
        lines = timeline.lines_of(topic.get("messageIds"))
        if not lines:
            continue
        marks = tuple(round(TOPIC_TRACK_WIDTH * min(1.0, line.start / span), 2) for line in lines)
        tracks.append(TopicTrack(str(topic.get("text", "")), marks, lines[0].start, lines[0].id))
    return tuple(tracks)
