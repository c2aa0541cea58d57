"""Due dates, sentiment buckets, analytics arithmetic and tracker matching on crafted inputs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_engine.analysis import TextAnalyzer
from parley_engine.analysis.analytics import compute_analytics, merge_intervals
from parley_engine.analysis.dates import iso_utc, resolve_moment
from parley_engine.analysis.identity import MemberDirectory
from parley_engine.analysis.segmentation import settle_timings
from parley_engine.analysis.sentiment import sentiment_body, suggested_sentiment
from parley_engine.analysis.trackers import edit_distance
from parley_engine.conversation import AnalysisOptions, Speaker, Tracker, Utterance

WEDNESDAY = datetime(2024, 7, 10, 15, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("phrase", "expected"),
    [
        ("Friday", "2024-07-12T00:00:00.000Z"),
        ("by tomorrow", "2024-07-11T00:00:00.000Z"),
        ("end of August", "2024-08-31T00:00:00.000Z"),
        ("mid November", "2024-11-15T00:00:00.000Z"),
        ("EOD", "2024-07-10T17:00:00.000Z"),
        ("next week", "2024-07-15T00:00:00.000Z"),
        ("end of the month", "2024-07-31T00:00:00.000Z"),
        ("3pm tomorrow", "2024-07-11T15:00:00.000Z"),
        ("end of March", "2025-03-31T00:00:00.000Z"),
    ],
)
def test_due_dates_resolve_relative_to_the_conversation_start(phrase: str, expected: str) -> None:
    moment = resolve_moment(phrase, WEDNESDAY)
    assert moment is not None and iso_utc(moment) == expected


def test_phrases_that_name_no_date_resolve_to_nothing() -> None:
    assert resolve_moment("later", WEDNESDAY) is None
    assert resolve_moment("we", WEDNESDAY) is None


@pytest.mark.parametrize(
    ("score", "bucket"),
    [(-0.31, "negative"), (-0.3, "neutral"), (0.0, "neutral"), (0.3, "neutral"), (0.3001, "positive")],
)
def test_sentiment_thresholds_follow_symbl(score: float, bucket: str) -> None:
    assert suggested_sentiment(score) == bucket
    assert sentiment_body(score) == {"polarity": {"score": round(score, 4)}, "suggested": bucket}


def timed(name: str, start: float, end: float, text: str = "one two three four five") -> Utterance:
    return Utterance(id=f"{10**15 + int(start * 10)}", text=text, speaker=Speaker(name=name), start_offset=start,
                     end_offset=end)  # fmt: skip


def test_analytics_arithmetic_on_crafted_timings() -> None:
    # Ana 0-10 and 20-30; Ben 8-14 (2 s overlap with Ana); silence 14-20 (6 s) over a 30 s span.
    utterances = [timed("Ana", 0, 10), timed("Ben", 8, 14), timed("Ana", 20, 30)]
    directory = MemberDirectory("4000000000000001")
    members = [directory.member_for(u.speaker) for u in utterances]
    analytics = compute_analytics(settle_timings(utterances, members), list(directory.members.values()))
    metrics = {m["type"]: m for m in analytics["metrics"]}
    assert metrics["total_silence"] == {"type": "total_silence", "percent": 20.0, "seconds": 6.0}
    assert metrics["total_talk_time"]["seconds"] == 24.0
    assert metrics["total_overlap"]["seconds"] == 2.0
    ana, ben = analytics["members"]
    assert ana["talkTime"] == {"percentage": 66.67, "seconds": 20.0}
    assert ana["listenTime"]["seconds"] == 4.0  # Ben talks 6 s, 2 of them over Ana
    assert ana["pace"]["wpm"] == 30  # 10 words in 20 s
    assert ana["overlap"]["overlapDuration"] == 2.0
    assert ana["overlap"]["overlappingMembers"][0] | {"id": None} == {
        "id": None, "name": "Ben", "userId": None, "percent": 10.0, "seconds": 2.0,
    }  # fmt: skip
    assert ben["talkTime"]["seconds"] == 6.0 and ben["overlap"]["overlappingMembers"][0]["percent"] == 33.33


def test_merge_intervals_joins_touching_and_nested_intervals() -> None:
    assert merge_intervals([(5, 6), (0, 2), (1, 3), (3, 4), (10, 10)]) == [(0, 4), (5, 6)]


def test_missing_timings_are_laid_end_to_end_at_150_words_per_minute() -> None:
    utterances = [Utterance(id="1000000000000001", text=" ".join(["word"] * 15)), timed("Ben", 30, 31)]
    directory = MemberDirectory("c")
    messages = settle_timings(utterances, [directory.member_for(u.speaker) for u in utterances])
    assert (messages[0].start, messages[0].end, messages[0].timings_estimated) == (0.0, 6.0, True)
    assert messages[1].timings_estimated is False
    assert messages[0].words[-1].end_offset == pytest.approx(6.0)


def test_edit_distance_stops_past_its_limit() -> None:
    assert edit_distance("kubernetes", "kubernets", 2) == 1
    assert edit_distance("pricing", "pricing", 1) == 0
    assert edit_distance("contract", "banana", 1) == 2


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def test_trackers_match_lemmas_exactly_and_misspellings_fuzzily(analyzer: TextAnalyzer) -> None:
    utterances = [
        Utterance(id="1000000000000001", text="The contracts for Acme are ready.", speaker=Speaker(name="Ana")),
        Utterance(id="1000000000000002", text="Can you restart the kubernets cluster?", speaker=Speaker(name="Ben")),
        Utterance(id="1000000000000003", text="Nothing else today.", speaker=Speaker(name="Ana")),
    ]
    options = AnalysisOptions(
        trackers=[
            Tracker(name="Legal", vocabulary=["contract"]),
            Tracker(name="Infra", vocabulary=["Kubernetes"]),
            Tracker(name="Unused", vocabulary=["invoice"]),
        ]
    )
    trackers = analyzer.analyze(utterances, options, conversation_id="5", conversation_start=WEDNESDAY).trackers
    by_name = {t["name"]: t for t in trackers}
    assert set(by_name) == {"Legal", "Infra"}
    legal = by_name["Legal"]["matches"][0]
    assert legal["value"] == "contract"
    assert legal["messageRefs"] == [
        {"id": "1000000000000001", "text": "The contracts for Acme are ready.", "offset": 4}
    ]
    infra = by_name["Infra"]["matches"][0]
    assert infra["messageRefs"][0]["offset"] == -1
    assert [ref["type"] for ref in infra["insightRefs"]] == ["question", "action_item"]
