"""Entities on small crafted conversations: Symbl's types, no common words, dates read with the verb's tense."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_engine.analysis import TextAnalyzer
from parley_engine.analysis.dates import TimeDirection, resolve_moment, tense_direction
from parley_engine.conversation import AnalysisOptions, Speaker, Utterance

MONDAY = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)  # Monday 23 November 2026


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def entities(analyzer: TextAnalyzer, *lines: tuple[str, str]) -> list[dict]:
    utterances = [
        Utterance(id=f"{1000000000000000 + index}", text=text, speaker=Speaker(name=name))
        for index, (name, text) in enumerate(lines)
    ]
    insights = analyzer.analyze(
        utterances, AnalysisOptions(), conversation_id="4000000000000002", conversation_start=MONDAY
    )
    return insights.entities


def typed_texts(found: list[dict]) -> set[tuple[str, str]]:
    return {(entity["type"], entity["text"].lower()) for entity in found}


def test_a_past_question_reads_friday_as_the_friday_before_the_meeting(analyzer: TextAnalyzer) -> None:
    found = entities(analyzer, ("Ana", "Did the pricing page go live on Friday?"))
    assert [(e["type"], e["text"], e["value"]) for e in found] == [("date", "Friday", "2026-11-20")]


def test_a_future_statement_reads_friday_as_the_friday_after_the_meeting(analyzer: TextAnalyzer) -> None:
    found = entities(analyzer, ("Ana", "We'll ship it on Friday."))
    assert [(e["type"], e["text"], e["value"]) for e in found] == [("date", "Friday", "2026-11-27")]


@pytest.mark.parametrize(
    ("sentence", "direction"),
    [
        ("The report went out on Friday.", TimeDirection.PAST),
        ("It was released on Friday.", TimeDirection.PAST),
        ("It has shipped on Friday.", TimeDirection.PAST),
        ("We're going to ship it on Friday.", TimeDirection.FUTURE),
        ("We are shipping it on Friday.", TimeDirection.FUTURE),
        ("Send it to me by Friday.", TimeDirection.FUTURE),
        ("The launch is on Friday.", TimeDirection.FUTURE),
    ],
)
def test_the_governing_verb_sets_the_direction(analyzer: TextAnalyzer, sentence: str, direction: str) -> None:
    doc = analyzer.nlp(sentence)
    friday = next(ent for ent in doc.ents if ent.text == "Friday")
    assert tense_direction(friday) is direction


def test_resolve_moment_keeps_the_future_by_default_and_goes_back_when_asked() -> None:
    assert resolve_moment("Friday", MONDAY) == datetime(2026, 11, 27, tzinfo=UTC)
    assert resolve_moment("Friday", MONDAY, TimeDirection.PAST) == datetime(2026, 11, 20, tzinfo=UTC)
    assert resolve_moment("Monday", MONDAY, TimeDirection.PAST) == datetime(2026, 11, 16, tzinfo=UTC)
    assert resolve_moment("end of March", MONDAY, TimeDirection.PAST) == datetime(2026, 3, 31, tzinfo=UTC)
    assert resolve_moment("the thirty - first", MONDAY) == datetime(2026, 12, 31, tzinfo=UTC)


def test_parts_of_the_meeting_day_durations_and_fillers_are_not_entities(analyzer: TextAnalyzer) -> None:
    found = entities(
        analyzer,
        ("Ana", "Um, yeah, we talked about it this morning and the morning was busy."),
        ("Ben", "Today we only have about twelve minutes, so let's keep it short."),
        ("Ana", "Which one do you like? The red one, or one of the others?"),
    )
    assert found == []


def test_tomorrow_and_a_clock_time_are_dates_and_times(analyzer: TextAnalyzer) -> None:
    found = entities(analyzer, ("Ana", "Let's meet tomorrow at 3 pm."))
    values = {(e["type"], e["value"]) for e in found}
    assert ("date", "2026-11-24") in values or ("time", "2026-11-24T15:00:00.000Z") in values
    assert not any(e["text"].lower() in {"morning", "today"} for e in found)


def test_a_real_organisation_and_person_are_still_found(analyzer: TextAnalyzer) -> None:
    found = entities(
        analyzer,
        ("Ana", "I spoke to Sarah Jones at Microsoft about the renewal."),
        ("Ben", "Great, Sarah said the same to me in London."),
    )
    kinds = typed_texts(found)
    assert ("person", "sarah jones") in kinds
    assert ("organization", "microsoft") in kinds
    assert ("location", "london") in kinds


def test_speaker_labels_and_titles_are_not_names(analyzer: TextAnalyzer) -> None:
    found = entities(
        analyzer,
        ("Speaker 1", "The speaker system in the room is broken."),
        ("The Chair (Hon. Anthony Rota)", "The committee will hear from the minister."),
    )
    assert not any(e["type"] == "person" for e in found)


def test_money_and_percent_carry_their_symbols_and_values(analyzer: TextAnalyzer) -> None:
    found = entities(analyzer, ("Ana", "The deal is worth $50,000 and we keep 20% of it, about twelve Euros a seat."))
    values = {(e["type"], e["text"], e["value"]) for e in found}
    assert ("money", "$50,000", "50000 USD") in values
    assert ("percent", "20%", "20") in values
    assert ("money", "twelve Euros", "12 EUR") in values


def test_per_cent_is_a_percent_and_a_range_is_two_numbers(analyzer: TextAnalyzer) -> None:
    found = entities(
        analyzer,
        ("Ana", "Eighty per cent of people would pay more."),
        ("Ben", "Our users are between fifteen and twenty five."),
        # As a speaker whose first language is not English says it: "cents" is no currency here.
        ("Cai", "And fifty per cents of users use only the power button."),
    )
    values = {(e["type"], e["value"]) for e in found}
    assert ("percent", "80") in values
    assert ("percent", "50") in values
    assert not any(e["type"] == "money" for e in found)
    assert {("number", "15"), ("number", "25")} <= values


def test_numbers_that_name_something_are_not_quantities(analyzer: TextAnalyzer) -> None:
    found = entities(analyzer, ("Ana", "Press function F_ eight, then go to channel one and count three buttons."))
    assert [(e["type"], e["value"]) for e in found] == [("number", "3")]


def test_a_speakers_first_name_inside_a_longer_name_stays_part_of_it(analyzer: TextAnalyzer) -> None:
    text = "Going back to Trinity Saint David, David, are the accounts late?"
    found = entities(analyzer, ("David Blaney", "Thank you."), ("Lynne Neagle", text))
    person_offsets = {
        ref["offset"] for e in found if e["type"] == "person" for ref in e["messageRefs"] if ref["text"] == text
    }
    assert text.index(", David,") + 2 in person_offsets  # the speaker, addressed
    assert text.index("David") not in person_offsets  # the end of the university's name
