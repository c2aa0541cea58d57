"""The real-meeting evaluation scores what it says it scores (evaluation/corpora/scoring.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation.corpora.meetings import Split, ami_action_meetings, held_apart, mrda_meetings, qmsum_meetings
from evaluation.corpora.scoring import rouge1_f1, score_action_items, score_topics, score_units


def test_rouge1_counts_lower_cased_alphanumeric_tokens_without_stemming() -> None:
    assert rouge1_f1("The team discussed the remote.", "the TEAM discussed the remote") == 1.0
    # "buttons" and "button" differ: no stemming. 3 of 4 tokens overlap on either side.
    assert rouge1_f1("the red buttons work", "the red button work") == pytest.approx(0.75)
    assert rouge1_f1("", "anything") == 0.0


def test_action_item_precision_counts_items_and_recall_counts_linked_acts() -> None:
    counts = score_action_items([{"a1", "a2"}, {"x"}, {"a1"}], {"a1", "a2", "a3"})
    assert (counts.right, counts.predicted) == (2, 3)
    assert (counts.found, counts.labelled) == (2, 3)
    assert counts.precision == pytest.approx(2 / 3) and counts.recall == pytest.approx(2 / 3)


def test_units_are_counted_once_however_many_items_point_at_them() -> None:
    counts = score_units({"u1", "u2"}, {"u2", "u3"})
    assert (counts.precision, counts.recall) == (0.5, 0.5)


def test_a_topic_is_found_by_a_shared_content_word_not_a_stop_word() -> None:
    counts = score_topics(["remote controls", "the meeting"], ["Design of the remote control", "Budget of the project"])
    assert (counts.right, counts.predicted, counts.found, counts.labelled) == (1, 2, 1, 2)


def _write(path: Path, body: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(body))


def test_loaders_split_by_series_and_strip_punctuation_on_request(tmp_path: Path) -> None:
    acts = [
        {"speaker": "A", "start": 1.0, "end": 2.0, "text": "I'll send it.", "dialogueActId": "d1"},
        {"speaker": "B", "start": 2.0, "end": 3.0, "text": " ", "dialogueActId": "d2"},
    ]
    for name in ("ES2008a", "ES2008b", "ES2002a"):
        _write(
            tmp_path / "ami-actions-train" / f"{name}.json",
            {
                "meeting": name,
                "speakers": {"A": {"role": "PM"}, "B": {"role": "ID"}},
                "messages": acts,
                "summary": {"actions": ["The PM will send it."]},
                "actionLinks": [{"sentence": "The PM will send it.", "dialogueActIds": ["d1"]}],
            },
        )
    series_apart = {name[:6] for name in ("ES2008a", "ES2002a") if held_apart(name[:6])}
    checked = [m.name for m in ami_action_meetings(tmp_path, Split.CHECK)]
    tuned = [m.name for m in ami_action_meetings(tmp_path, Split.TUNE)]
    assert sorted(checked + tuned) == ["ES2002a", "ES2008a", "ES2008b"]
    assert all(name[:6] in series_apart for name in checked) and not any(n[:6] in series_apart for n in tuned)
    meeting = next(ami_action_meetings(tmp_path, None))
    assert [u.speaker for u in meeting.utterances] == ["Project Manager"]  # the blank act is not sent
    assert meeting.labels["actionActs"] == ["d1"]

    _write(
        tmp_path / "mrda-train" / "Bmr001.json",
        {
            "meeting": "Bmr001",
            "messages": [
                {"speaker": "me1", "start": 0, "end": 1, "text": "is it on?", "isQuestion": True},
                {"speaker": "me2", "start": 1, "end": 2, "text": "yes, it is.", "isQuestion": False},
            ],
        },
    )
    bare = next(mrda_meetings(tmp_path, None, punctuated=False))
    assert [u.text for u in bare.utterances] == ["is it on", "yes it is"]
    assert bare.labels["questionUnits"] == [bare.utterances[0].unit_id]

    _write(
        tmp_path / "qmsum-dev" / "val" / "Bed002.json",
        {
            "meeting_transcripts": [{"speaker": "Grad A", "content": "We do n't {disfmarker} we 're done ."}],
            "topic_list": [{"topic": "Wrap up"}],
            "general_query_list": [{"query": "Summarize the whole meeting", "answer": "They finished."}],
        },
    )
    qmsum = next(qmsum_meetings(tmp_path, Split.CHECK))
    assert qmsum.utterances[0].text == "We don't we're done."
    assert qmsum.labels == {"summary": "They finished.", "topics": ["Wrap up"]}
    assert list(qmsum_meetings(tmp_path, Split.TUNE)) == []
