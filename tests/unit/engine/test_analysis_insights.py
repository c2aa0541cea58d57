"""Questions, action items, follow-ups, topics, entities, summary and determinism on small crafted conversations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from parley_engine.analysis import TextAnalyzer
from parley_engine.conversation import AnalysisOptions, ConversationInsights, CustomEntity, Speaker, Utterance

START = datetime(2024, 7, 10, 15, 0, tzinfo=UTC)  # a Wednesday


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def conversation(*lines: tuple[str, str]) -> list[Utterance]:
    return [
        Utterance(
            id=f"{1000000000000000 + index}", text=text, speaker=Speaker(name=name, user_id=f"{name.lower()}@x.io")
        )
        for index, (name, text) in enumerate(lines)
    ]


def analyze(analyzer: TextAnalyzer, *lines: tuple[str, str], **options: object) -> ConversationInsights:
    return analyzer.analyze(
        conversation(*lines), AnalysisOptions(**options), conversation_id="4000000000000001", conversation_start=START
    )


def texts(items: list[dict]) -> list[str]:
    return [item["text"] for item in items]


@pytest.mark.parametrize(
    "text",
    [
        "Did the customer renew their contract",
        "Are other customers affected",
        "What is blocking you on the rate limiter",
        "How many dispatchers are we talking about",
        "I was wondering whether we should move the launch",
        "Which option do we pick",
        "Can you hear me okay?",
    ],
)
def test_questions_with_and_without_question_mark(analyzer: TextAnalyzer, text: str) -> None:
    insights = analyze(analyzer, ("Ana", text), ("Ben", "Sure."))
    assert texts(insights.questions) == [text]
    assert insights.questions[0]["type"] == "question"
    assert insights.questions[0]["from"]["name"] == "Ana"


@pytest.mark.parametrize(
    "text",
    ["When we ship, the numbers will improve.", "What we need is more time.", "I know how it works.", "Do it later."],
)
def test_statements_are_not_questions(analyzer: TextAnalyzer, text: str) -> None:
    assert analyze(analyzer, ("Ana", text)).questions == []


def test_each_question_sentence_is_reported_once(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "Is it ready? Is it tested? It looks good."))
    assert texts(insights.questions) == ["Is it ready?", "Is it tested?"]


@pytest.mark.parametrize(
    ("text", "assignee"),
    [
        ("I'll send the deck over by Friday.", "Ana"),
        ("I'm going to run the migration on the replica today.", "Ana"),
        ("Can you review the pull request?", "Ben"),
        ("Please renew the certificate this week.", "Ben"),
        ("Ben, please renew the certificate this week.", "Ben"),
        ("Send me the contracts before end of August.", "Ben"),
        ("Let's roll back the driver tonight.", "Ana"),
        ("Tom will review the terms.", "Tom"),
        ("Tom reviews the terms by Wednesday.", "Tom"),
        ("We need to open an incident for this.", "Ana"),
    ],
)
def test_action_items_and_their_assignees(analyzer: TextAnalyzer, text: str, assignee: str) -> None:
    insights = analyze(analyzer, ("Ana", text), ("Ben", "Okay."))
    assert texts(insights.action_items) == [text]
    assert insights.action_items[0]["assignee"]["name"] == assignee
    assert insights.action_items[0]["messageIds"] == ["1000000000000000"]


@pytest.mark.parametrize(
    "text",
    [
        "I will say that the dashboards are a mess.",
        "We will see how it goes.",
        "I'm going to be honest, it was a slog.",
        "Let's start with the updates.",
        "Let me show you the dispatcher view.",
        "We could also try mob programming.",
        "I sent the invoice yesterday.",
        "The partner API might slip to next quarter.",
        "Got it.",
    ],
)
def test_non_actions_are_not_action_items(analyzer: TextAnalyzer, text: str) -> None:
    assert analyze(analyzer, ("Ana", text), ("Ben", "Okay.")).action_items == []


def test_definitive_and_hedged_action_items(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer, ("Ana", "I'll fix the login bug by Wednesday."), ("Ben", "Maybe I'll look at the cluster tomorrow.")
    )
    by_text = {item["text"]: item for item in insights.action_items}
    assert by_text["I'll fix the login bug by Wednesday."]["definitive"] is True
    assert by_text["Maybe I'll look at the cluster tomorrow."]["definitive"] is False


def test_due_date_is_resolved_relative_to_the_conversation(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "I'll send the contracts by Friday."), ("Ben", "Thanks."))
    assert insights.action_items[0]["dueBy"] == "2024-07-12T00:00:00.000Z"


def test_vocative_assignee_is_a_person_entity_of_the_item(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "Ben, could you update the ticket?"), ("Ben", "Sure."))
    item = insights.action_items[0]
    assert item["assignee"] == {"name": "Ben", "email": "ben@x.io"}
    assert item["entities"] == [
        {"type": "person", "text": "Ben", "offset": 0, "value": {"assignee": True, "name": "Ben"}}
    ]


def test_follow_ups_are_action_items_about_future_contact(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Ana", "Let's schedule a follow-up call next week."),
        ("Ben", "I'll get back to you on the integration by Friday."),
        ("Ana", "I'll fix the bug."),
    )
    assert texts(insights.follow_ups) == [
        "Let's schedule a follow-up call next week.",
        "I'll get back to you on the integration by Friday.",
    ]
    assert all(item["type"] == "follow_up" for item in insights.follow_ups)
    assert "I'll fix the bug." in texts(insights.action_items)


def test_action_phrases_only_when_asked(analyzer: TextAnalyzer) -> None:
    line = ("Ana", "I'll send the deck to Tom by Friday.")
    assert analyze(analyzer, line).messages[0]["phrases"] == []
    phrases = analyze(analyzer, line, detect_phrases=True).messages[0]["phrases"]
    assert phrases == [{"type": "action_phrase", "text": "send the deck to Tom by Friday"}]


def test_messages_get_estimated_timings_and_sentiment(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "This is great, I love it."), ("Ben", "This is terrible and broken."))
    first, second = insights.messages
    assert first["timeOffset"] == 0.0 and first["duration"] == pytest.approx(6 * 60 / 150)
    assert second["timeOffset"] == pytest.approx(first["duration"])
    assert first["startTime"] == "2024-07-10T15:00:00.000Z"
    assert first["sentiment"]["suggested"] == "positive" and second["sentiment"]["suggested"] == "negative"
    assert [w["word"] for w in first["words"]] == ["This", "is", "great,", "I", "love", "it."]


def test_entities_group_mentions_and_use_speaker_names(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Natalia", "Mike, the Acme contract is worth $50,000 and renews on Friday."),
        ("Mike", "Thanks Natalia, I'll call Acme tomorrow."),
        entities=[CustomEntity(custom_type="Product", text="contract")],
    )
    by_key = {(e["type"], e["value"]): e for e in insights.entities}
    assert ("person", "Mike") in by_key and ("person", "Natalia") in by_key
    assert len(by_key[("organization", "Acme")]["messageRefs"]) == 2
    assert ("money", "50000 USD") in by_key
    assert ("date", "2024-07-12") in by_key
    custom = [e for e in insights.entities if e["type"] == "custom"]
    assert custom[0]["customType"] == "Product" and custom[0]["messageRefs"][0]["offset"] == 15


def test_topics_rank_recurring_phrases_with_a_hierarchy(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Ana", "The pricing page is confusing for new customers."),
        ("Ben", "Agreed, the pricing tiers are hard to compare."),
        ("Ana", "The enterprise pricing tier needs a clearer description."),
        ("Ben", "Also the onboarding flow loses people on the second screen."),
        ("Ana", "The onboarding flow redesign tested well."),
    )
    assert insights.topics, "expected topics"
    scores = [t["score"] for t in insights.topics if not t["parentRefs"]]
    assert scores == sorted(scores, reverse=True) and all(0 < s <= 1 for s in scores)
    roots = {t["text"] for t in insights.topics if not t["parentRefs"]}
    assert any("pricing" in text for text in roots)
    children = [t for t in insights.topics if t["parentRefs"]]
    assert all(child["parentRefs"][0]["text"] in roots for child in children)


def test_summary_rewrites_action_items_in_the_third_person(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Ana", "The login bug is still blocking two enterprise customers from signing in."),
        ("Mike", "I'll fix the login bug by Wednesday."),
        ("Ana", "We decided to keep the launch date in November."),
    )
    summary = texts(insights.summary)
    assert "Mike will fix the login bug by Wednesday." in summary
    assert "The team decided to keep the launch date in November." in summary
    assert all(line["messageRefs"] for line in insights.summary)
    by_text = {line["text"]: line["messageRefs"] for line in insights.summary}
    assert by_text["Mike will fix the login bug by Wednesday."] == [{"id": insights.messages[1]["id"]}]


def test_analysis_is_deterministic(analyzer: TextAnalyzer) -> None:
    lines = [("Ana", "Can you send the report by Friday?"), ("Ben", "Yes, I'll send it tomorrow. Is that okay?")]
    assert analyze(analyzer, *lines).model_dump() == analyze(analyzer, *lines).model_dump()
    ids = [item["id"] for item in analyze(analyzer, *lines).action_items]
    assert all(len(i) == 16 and i.isdigit() for i in ids)


def test_members_have_stable_uuid5_ids(analyzer: TextAnalyzer) -> None:
    members = analyze(analyzer, ("Ana", "Hello."), ("Ben", "Hi."), ("Ana", "Bye.")).members
    assert [m["name"] for m in members] == ["Ana", "Ben"]
    assert members[0]["id"][14] == "5" and members[0]["email"] == "ana@x.io"


def test_greetings_agenda_talk_and_bare_agreement_are_not_action_items(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Natalia", "Good morning everyone, let's get started with the launch review."),
        ("Priya", "Can we also schedule a follow-up call with the Acme team next Monday?"),
        ("Natalia", "Sure, let's set that up."),
    )
    # The bare "let's set that up" accepts the request before it: that request is the task written down.
    assert texts(insights.action_items) == ["Can we also schedule a follow-up call with the Acme team next Monday?"]
    assert texts(insights.follow_ups) == texts(insights.action_items)


def test_lone_tags_are_not_listed_as_questions(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "The rollout went fine."), ("Ana", "Right?"), ("Ben", "Is it live in Europe?"))
    assert texts(insights.questions) == ["Is it live in Europe?"]


def test_action_item_text_reads_as_written_not_as_said(analyzer: TextAnalyzer) -> None:
    insights = analyze(analyzer, ("Ana", "Um so I'll I'll send the uh the deck by Friday,"), ("Ben", "Okay."))
    assert texts(insights.action_items) == ["I'll send the deck by Friday."]


def test_summary_retells_central_points_as_reported_speech(analyzer: TextAnalyzer) -> None:
    lines = [
        ("Ana", "We're gonna need a bigger battery for the remote control because the current battery drains fast."),
        ("Ben", "The battery in the remote control is the part customers complain about most."),
        ("Ana", "I am worried that a bigger battery makes the remote control too heavy for older customers."),
    ]
    summary = texts(analyze(analyzer, *lines).summary)
    assert summary[0].startswith("The conversation was mainly about ") and "battery" in summary[0]
    reported = [line for line in summary if " said that " in line]
    assert reported, summary
    assert all(line.endswith(".") and "I " not in line and "gonna" not in line for line in reported)
    assert "Ana said that the team was going to need a bigger battery" in " ".join(reported)


def _long_unpunctuated_meeting(*lines: tuple[str, str]) -> list[tuple[str, str]]:
    """A meeting past the models' 1,000-word mark, as speech-to-text without punctuation would give it."""
    filler = [
        ("Ana", "so the numbers from last week look about the same as the week before"),
        ("Ben", "yeah the traffic on the new landing page is still growing slowly"),
        ("Cleo", "and the support queue went down a little after the release on monday"),
    ]
    return [*filler * 30, *lines, *filler * 5]


def test_questions_are_found_from_their_words_when_speech_to_text_left_no_question_marks(
    analyzer: TextAnalyzer,
) -> None:
    lines = _long_unpunctuated_meeting(
        ("Ana", "do you think we can ship the new pricing page before the holidays"),
        ("Ben", "i think we can ship the new pricing page before the holidays"),
        ("Cleo", "are we still blocked on the migration of the billing service"),
    )
    asked = texts(analyze(analyzer, *lines).questions)
    assert "do you think we can ship the new pricing page before the holidays" in asked
    assert "are we still blocked on the migration of the billing service" in asked
    assert "i think we can ship the new pricing page before the holidays" not in asked


def test_an_answer_before_a_task_is_not_part_of_what_is_written_down(analyzer: TextAnalyzer) -> None:
    insights = analyze(
        analyzer,
        ("Tom", "Did the customer get the refund?"),
        ("Sara", "Not yet, I will call them tomorrow morning and confirm the refund."),
    )
    assert texts(insights.action_items) == ["I will call them tomorrow morning and confirm the refund."]
    assert "Sara will call them tomorrow morning and confirm the refund." in texts(insights.summary)
