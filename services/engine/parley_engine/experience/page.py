"""What the Experience page shows, built from a conversation's stored insights and the page's grant, and its HTML.

``conversation_page`` is plain data (tested without a browser); ``render_page`` fills the package's Jinja template,
which escapes every value. Every insight keeps the moment it was said (its first message), which the page's script
uses to move the player and show the transcript line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from typing import Any, Literal

import jinja2

from parley_engine.conversation import ConversationInsights
from parley_engine.experience.charts import Sentiment, TalkTime, TopicTrack, sentiment, talk_time, topics_over_time
from parley_engine.experience.signing import PageGrant
from parley_engine.experience.theme import Theme
from parley_engine.experience.timeline import Line, Timeline, clock, speaker_name
from parley_engine.store import ConversationRow

ASSETS = ("page.css", "page.js", "favicon.svg")
SYSTEM_FONTS = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'


@dataclass(frozen=True)
class Moment:
    """When something was said: its first message and that message's start."""

    message_id: str
    seconds: float

    @property
    def clock(self) -> str:
        return clock(self.seconds)


@dataclass(frozen=True)
class Item:
    """A summary line, an action item, a question or a follow-up."""

    text: str
    details: tuple[str, ...]
    moment: Moment | None


@dataclass(frozen=True)
class Topic:
    text: str
    score: float
    moment: Moment | None
    message_ids: tuple[str, ...]


@dataclass(frozen=True)
class Tracker:
    name: str
    mentions: int
    moment: Moment | None


@dataclass(frozen=True)
class Player:
    url: str
    kind: Literal["audio", "video"]


@dataclass(frozen=True)
class Tuning:
    """Symbl's summary-page query parameters (``insights.minScore``, ``topics.enabled``, ``topics.orderBy``)."""

    min_score: float = 0.0
    topics_enabled: bool = True
    topics_order: Literal["score", "position"] = "score"


@dataclass(frozen=True)
class ConversationPage:
    conversation_id: str
    experience: str
    title: str
    started: datetime | None
    duration_seconds: float
    attendees: tuple[str, ...]
    summary: tuple[Item, ...]
    action_items: tuple[Item, ...]
    questions: tuple[Item, ...]
    follow_ups: tuple[Item, ...]
    topics: tuple[Topic, ...]
    trackers: tuple[Tracker, ...]
    transcript: tuple[Line, ...]
    speakers: tuple[str, ...]
    talk_time: TalkTime
    sentiment: Sentiment
    topic_tracks: tuple[TopicTrack, ...]
    player: Player | None
    processing: bool
    expires_at: datetime | None
    theme: Theme
    font_family: str
    logo: str | None
    favicon: str | None
    topics_enabled: bool = True
    time_marks: tuple[str, ...] = field(default=())

    @property
    def duration(self) -> str:
        return clock(self.duration_seconds)


def _moment(timeline: Timeline, message_ids: Any) -> Moment | None:
    lines = timeline.lines_of(message_ids)
    return Moment(lines[0].id, lines[0].start) if lines else None


def _score(item: dict[str, Any]) -> float:
    score = item.get("score")
    return float(score) if isinstance(score, int | float) else 1.0


def _due(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        due = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return f"due {due:%a} {due.day} {due:%b %Y}"


def _item(timeline: Timeline, body: dict[str, Any]) -> Item:
    details: list[str] = []
    assignee = body.get("assignee")
    if isinstance(assignee, dict) and speaker_name(assignee) != speaker_name(None):
        details.append(f"assigned to {speaker_name(assignee)}")
    if (due := _due(body.get("dueBy"))) is not None:
        details.append(due)
    if isinstance(body.get("from"), dict) and speaker_name(body["from"]) != speaker_name(None):
        details.append(f"said by {speaker_name(body['from'])}")
    return Item(str(body.get("text", "")), tuple(details), _moment(timeline, body.get("messageIds")))


def _summary_line(timeline: Timeline, body: dict[str, Any]) -> Item:
    refs = body.get("messageRefs")
    ids = [ref.get("id") for ref in refs if isinstance(ref, dict)] if isinstance(refs, list) else []
    return Item(str(body.get("text", "")), (), _moment(timeline, ids))


def _trackers(timeline: Timeline, trackers: list[dict[str, Any]]) -> tuple[Tracker, ...]:
    found = []
    for tracker in trackers:
        matches = tracker.get("matches") if isinstance(tracker.get("matches"), list) else []
        refs = [ref for match in matches or [] if isinstance(match, dict) for ref in match.get("messageRefs") or []]
        ids = [ref.get("id") for ref in refs if isinstance(ref, dict)]
        found.append(Tracker(str(tracker.get("name", "")), len(refs), _moment(timeline, ids)))
    return tuple(found)


def _attendees(insights: ConversationInsights, timeline: Timeline) -> tuple[str, ...]:
    named = [speaker_name(member) for member in insights.members]
    return tuple(dict.fromkeys([name for name in named if name != speaker_name(None)] or timeline.speakers))


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def conversation_page(
    row: ConversationRow,
    insights: ConversationInsights,
    grant: PageGrant,
    *,
    player: Player | None,
    processing: bool,
    tuning: Tuning = Tuning(),
) -> ConversationPage:
    timeline = Timeline(insights.messages)
    end_time = _naive_utc(row.end_time) if row.end_time else None
    start_time = _naive_utc(row.start_time) if row.start_time else None
    duration = timeline.end
    if not duration and start_time and end_time:
        duration = max(0.0, (end_time - start_time).total_seconds())

    def insights_of(items: list[dict[str, Any]]) -> tuple[Item, ...]:
        return tuple(_item(timeline, item) for item in items if _score(item) >= tuning.min_score)

    topics = [
        Topic(
            str(topic.get("text", "")),
            _score(topic),
            _moment(timeline, topic.get("messageIds")),
            tuple(line.id for line in timeline.lines_of(topic.get("messageIds"))),
        )
        for topic in insights.topics
    ]
    if tuning.topics_order == "position":
        topics.sort(key=lambda topic: topic.moment.seconds if topic.moment else float("inf"))
    else:
        topics.sort(key=lambda topic: topic.score, reverse=True)
    theme = Theme.from_colors(grant.background, grant.topics_color, grant.insights_color)
    span = timeline.end
    return ConversationPage(
        conversation_id=row.id,
        experience=grant.name,
        title=row.name or f"Conversation {row.id}",
        started=start_time,
        duration_seconds=duration,
        attendees=_attendees(insights, timeline),
        summary=tuple(_summary_line(timeline, line) for line in insights.summary),
        action_items=insights_of(insights.action_items),
        questions=insights_of(insights.questions),
        follow_ups=insights_of(insights.follow_ups),
        topics=tuple(topics) if tuning.topics_enabled else (),
        trackers=_trackers(timeline, insights.trackers),
        transcript=timeline.lines,
        speakers=timeline.speakers,
        talk_time=talk_time(timeline, insights.analytics.get("members") or []),
        sentiment=sentiment(timeline),
        topic_tracks=topics_over_time(timeline, insights.topics) if tuning.topics_enabled else (),
        player=player,
        processing=processing,
        expires_at=datetime.fromtimestamp(grant.expires_at, UTC) if grant.expires_at is not None else None,
        theme=theme,
        font_family=f'"{grant.font}", {SYSTEM_FONTS}' if grant.font else SYSTEM_FONTS,
        logo=grant.logo,
        favicon=grant.favicon,
        topics_enabled=tuning.topics_enabled,
        time_marks=tuple(clock(span * quarter / 4) for quarter in range(5)) if span else (),
    )


@cache
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("parley_engine.experience", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["asset_version"] = asset_version
    return environment


def asset(name: str) -> bytes:
    """One of the page's shipped assets (``ASSETS``)."""
    if name not in ASSETS:
        raise KeyError(name)
    return resources.files("parley_engine.experience").joinpath("assets", name).read_bytes()


@cache
def asset_version(name: str) -> str:
    """A short hash of an asset's content, so its URL changes when it does and it can be cached for long."""
    return hashlib.sha256(asset(name)).hexdigest()[:12]


def render_page(page: ConversationPage, *, assets_path: str, nonce: str) -> str:
    """The page's HTML; ``assets_path`` is where its assets are, relative to the page; ``nonce`` allows its style."""
    template = _environment().get_template("page.html")
    return template.render(page=page, theme=page.theme, assets=assets_path, nonce=nonce)


def render_refusal(*, status: int, title: str, message: str, assets_path: str) -> str:
    """The page shown instead when a page URL grants nothing (forged, expired, conversation gone)."""
    template = _environment().get_template("refused.html")
    return template.render(status=status, title=title, message=message, assets=assets_path)
