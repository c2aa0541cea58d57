"""Short, dense calls (the hand-written evaluation set, evaluation/meetings) keep the rules' behaviour: every explicit
question and task listed. The quality figures on real meetings are evaluation/corpora/results.md."""

from __future__ import annotations

from parley_engine.analysis import TextAnalyzer

from evaluation.scorer import EVALUATION_SET, TARGETS, evaluate, load_meetings


def test_questions_and_action_items_meet_their_targets_on_the_evaluation_set() -> None:
    meetings = load_meetings(EVALUATION_SET)
    assert sum(len(m.utterances) for m in meetings) >= 300
    evaluation = evaluate(TextAnalyzer(), meetings)
    for kind, target in TARGETS.items():
        counts = evaluation.counts[kind]
        assert counts.precision >= target, (kind, counts)
        assert counts.recall >= target, (kind, counts)
