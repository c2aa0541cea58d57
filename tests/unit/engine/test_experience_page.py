"""The Experience page's parts as plain logic: its URL tokens, its colours, its charts and what it shows."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from parley_engine.conversation import ConversationInsights, Speaker, Utterance
from parley_engine.experience.charts import sentiment, talk_time, topics_over_time
from parley_engine.experience.page import Player, Tuning, conversation_page, render_page
from parley_engine.experience.request import sounds_like_audio, url_origin
from parley_engine.experience.signing import ExpiredLink, ForgedLink, PageGrant, PageSigner
from parley_engine.experience.theme import (
    GRAPHIC_CONTRAST,
    TEXT_CONTRAST,
    Theme,
    contrast_ratio,
    readable_text,
    relative_luminance,
)
from parley_engine.experience.timeline import Timeline, clock
from parley_engine.store import ConversationRow

from tests.support.experience_pages import meeting_insights

GRANT = PageGrant(conversation_id="1234567890123456", name="verbose-text-summary", expires_at=2_000_000_000)
hex_colors = st.from_regex(r"#[0-9a-f]{6}", fullmatch=True)


# The URL token


def test_a_token_opens_to_the_grant_it_was_made_from() -> None:
    signer = PageSigner(b"k" * 32)
    grant = GRANT.model_copy(update={"logo": "https://x.example/l.png", "font": "Fira Sans", "background": "#000"})
    assert signer.open(signer.sign(grant), now=1_999_999_999) == grant
    # Same key, same grant, same token: nothing random, nothing stored.
    assert signer.sign(grant) == PageSigner(b"k" * 32).sign(grant)


def test_a_token_stops_at_its_expiry_and_one_without_expiry_never_does() -> None:
    signer = PageSigner(b"k" * 32)
    with pytest.raises(ExpiredLink) as expired:
        signer.open(signer.sign(GRANT), now=2_000_000_000)
    assert expired.value.expired_at == 2_000_000_000
    forever = GRANT.model_copy(update={"expires_at": None})
    assert signer.open(signer.sign(forever), now=time.time() + 1e9) == forever


def test_every_changed_character_is_a_forgery() -> None:
    signer = PageSigner(b"k" * 32)
    token = signer.sign(GRANT)
    for position, character in enumerate(token):
        if character == ".":
            continue
        for replacement in ("A", "B"):
            if replacement != character:
                forged = token[:position] + replacement + token[position + 1 :]
                with pytest.raises(ForgedLink):
                    signer.open(forged, now=0)


def test_another_engines_token_is_a_forgery() -> None:
    with pytest.raises(ForgedLink):
        PageSigner(b"k" * 32).open(PageSigner(b"other" * 8).sign(GRANT), now=0)


def test_a_signed_payload_that_is_not_a_grant_is_refused_as_forged() -> None:
    signer = PageSigner(b"k" * 32)
    payload = "bm90IGpzb24"  # "not json"
    token = f"{payload}.{signer.sign(GRANT).split('.')[1]}"
    with pytest.raises(ForgedLink):
        signer.open(token, now=0)


@given(st.text(max_size=200))
def test_no_input_breaks_the_token_check(token: str) -> None:
    with pytest.raises(ForgedLink):
        PageSigner(b"k" * 32).open(token, now=0)


# Colours


def test_contrast_follows_wcag() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#777777", "#ffffff") == pytest.approx(4.48, abs=0.01)
    assert relative_luminance("#fff") == pytest.approx(1.0)
    assert readable_text("#0A2136") == "#ffffff"
    assert readable_text("#ffff00") == "#111827"


@given(hex_colors, hex_colors, hex_colors)
def test_every_custom_colour_gives_readable_text_and_visible_marks(background: str, topics: str, insights: str) -> None:
    theme = Theme.from_colors(background, topics, insights)
    text_pairs = [
        (theme.text, theme.background),
        (theme.muted, theme.background),
        (theme.surface_text, theme.surface),
        (theme.surface_muted, theme.surface),
        (theme.topics_text, theme.topics),
        (theme.insights_text, theme.insights),
        (theme.topics_ink, theme.surface),
        (theme.insights_ink, theme.surface),
        (theme.surface_text, theme.highlight),
        (theme.surface_text, theme.topic_highlight),
    ]
    for text, behind in text_pairs:
        assert contrast_ratio(text, behind) >= TEXT_CONTRAST, (text, behind)
    marks = [theme.border, theme.positive, theme.negative, theme.focus, *theme.speakers]
    for mark in marks:
        assert contrast_ratio(mark, theme.surface) >= GRAPHIC_CONTRAST, mark
    assert contrast_ratio(theme.focus, theme.background) >= GRAPHIC_CONTRAST
    assert theme.background == background and theme.topics == topics  # the caller's colours are used as given


def test_a_colour_that_reads_well_is_kept_and_one_that_does_not_is_adjusted() -> None:
    theme = Theme.from_colors(None, "#1d4ed8", "#ffff00")
    assert theme.topics_ink == "#1d4ed8"  # already 6.7:1 on white
    assert theme.insights_ink != "#ffff00"  # yellow on white is 1.07:1
    assert theme.insights_text == "#111827"  # dark text on the yellow chips


# Timeline and charts


def test_clock() -> None:
    assert [clock(0), clock(65.9), clock(3725)] == ["0:00", "1:05", "1:02:05"]


def utterances(*spoken: tuple[str, float, float, str]) -> list[Utterance]:
    return [
        Utterance(id=f"{n:016d}", text=text, speaker=Speaker(name=name), start_offset=start, end_offset=end)
        for n, (name, start, end, text) in enumerate(spoken, start=1)
    ]


CALL = utterances(
    ("Sara", 0.0, 10.0, "Great to have you, I will send the launch notes."),
    ("Tom", 10.0, 14.0, "Is the pricing final?"),
    ("Sara", 15.0, 30.0, "There is a bug in pricing, next week we fix it."),
    ("Tom", 30.0, 40.0, "Good, the launch can wait."),
)


def test_talk_time_is_each_speakers_share_from_the_analytics_or_else_the_messages() -> None:
    insights = meeting_insights(CALL, "1")
    timeline = Timeline(insights.messages)
    from_analytics = talk_time(timeline, insights.analytics["members"])
    assert [(s.speaker, s.seconds, s.percent) for s in from_analytics.shares] == [("Sara", 25.0, 64), ("Tom", 14.0, 36)]
    assert sum(s.share for s in from_analytics.shares) == pytest.approx(1.0)
    from_messages = talk_time(timeline, [])
    assert [(s.speaker, s.seconds) for s in from_messages.shares] == [("Sara", 25.0), ("Tom", 14.0)]
    assert "Sara 64%" in from_messages.description


def test_sentiment_points_sit_where_and_how_they_were_said() -> None:
    chart = sentiment(Timeline(meeting_insights(CALL, "1").messages))
    assert [point.mood for point in chart.points] == ["positive", "neutral", "negative", "positive"]
    xs = [point.x for point in chart.points]
    assert xs == sorted(xs) and xs[0] == 12 and xs[-1] < 600 - 12
    assert chart.points[0].y < chart.zero_y < chart.points[2].y  # up is positive
    assert len(chart.average_line.split()) == len(chart.points)
    assert "2 positive, 1 neutral and 1 negative" in chart.description


def test_topics_over_time_mark_when_each_topic_was_said() -> None:
    insights = meeting_insights(CALL, "1")
    tracks = {track.topic: track for track in topics_over_time(Timeline(insights.messages), insights.topics)}
    assert tracks["pricing"].marks == (25.0, 37.5)  # at 10 s and 15 s of 40 s
    assert tracks["launch"].marks == (0.0, 75.0)
    assert tracks["launch"].first_message_id == CALL[0].id


def test_messages_without_times_follow_one_another() -> None:
    timeline = Timeline([{"id": "a", "text": "x", "from": {}}, {"id": "b", "text": "y", "from": {"name": "B"}}])
    assert [(line.start, line.speaker) for line in timeline.lines] == [(0.0, "Unknown speaker"), (1.0, "B")]


# What the page shows


def row(**values: Any) -> ConversationRow:
    defaults: dict[str, Any] = {
        "id": "1234567890123456",
        "name": "Launch review",
        "source": "text",
        "start_time": datetime(2026, 11, 23, 16, 0),
        "end_time": None,
    }
    return ConversationRow(**{**defaults, **values})


def test_insights_keep_the_moment_they_were_said() -> None:
    page = conversation_page(row(), meeting_insights(CALL, "1"), GRANT, player=None, processing=False)
    assert [(item.text, item.moment and item.moment.clock) for item in page.action_items] == [
        ("Great to have you, Sara will send the launch notes.", "0:00")
    ]
    assert page.questions[0].moment is not None and page.questions[0].moment.message_id == CALL[1].id
    assert page.summary[0].moment is None  # a summary line that names no message
    assert page.summary[1].moment is not None and page.summary[1].moment.seconds == 30.0
    assert page.attendees == ("Sara", "Tom")
    assert page.duration == "0:40"
    assert page.time_marks == ("0:00", "0:10", "0:20", "0:30", "0:40")


def test_tuning_filters_and_orders() -> None:
    insights = meeting_insights(CALL, "1")
    strict = conversation_page(
        row(), insights, GRANT, player=None, processing=False, tuning=Tuning(min_score=0.85, topics_order="position")
    )
    assert strict.action_items == () and len(strict.questions) == 1  # 0.8 and 0.9
    assert [topic.text for topic in strict.topics] == ["launch", "pricing"]
    hidden = conversation_page(
        row(), insights, GRANT, player=None, processing=False, tuning=Tuning(topics_enabled=False)
    )
    assert hidden.topics == () and hidden.topic_tracks == ()


def test_an_empty_conversation_still_renders() -> None:
    page = conversation_page(row(name=""), ConversationInsights(), GRANT, player=None, processing=True)
    html = render_page(page, assets_path="assets", nonce="n0nce")
    assert "<h1>Conversation 1234567890123456</h1>" in html
    assert "Nothing has been said yet." in html and "No action items were found." in html
    assert "still being processed" in html


def test_a_player_is_named_by_its_kind() -> None:
    player = Player("1234/media", "video")
    page = conversation_page(row(), meeting_insights(CALL, "1"), GRANT, player=player, processing=False)
    html = render_page(page, assets_path="assets", nonce="n0nce")
    assert '<video id="player" controls preload="metadata" playsinline src="1234/media">' in html
    assert html.count('class="clock" data-seek=') == len(CALL)  # every line's time plays from there


def test_media_urls() -> None:
    assert url_origin("HTTPS://Media.Example.com:8443/a/b.mp4?x=1") == "https://media.example.com:8443"
    assert url_origin("http://[::1]:8080/a.wav") == "http://[::1]:8080"
    assert sounds_like_audio("https://x.example/call.MP3?sig=1")
    assert not sounds_like_audio("https://x.example/call.mp4")
