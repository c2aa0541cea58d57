"""Utterance-level precision and recall of the analyzer's questions and action items against hand labels.

An utterance counts as predicted-positive when any question (or action item / follow-up) references its
message; it is labelled positive when a person marked it so in the meeting file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from parley_engine.analysis import TextAnalyzer
from parley_engine.analysis.identity import stable_numeric_id
from parley_engine.conversation import AnalysisOptions, Speaker, Utterance

EVALUATION_DIR = Path(__file__).resolve().parent
EVALUATION_SET = EVALUATION_DIR / "meetings"
TUNING_SET = EVALUATION_DIR / "tuning"
TARGETS = {"questions": 0.9, "actionItems": 0.8}


@dataclass(frozen=True)
class LabelledUtterance:
    speaker: str
    text: str
    question: bool
    action_item: bool


@dataclass(frozen=True)
class Meeting:
    name: str
    title: str
    date: datetime
    utterances: list[LabelledUtterance]


def load_meetings(directory: Path) -> list[Meeting]:
    meetings = []
    for path in sorted(directory.glob("*.json")):
        body = json.loads(path.read_text())
        utterances = [
            LabelledUtterance(u["speaker"], u["text"], bool(u["question"]), bool(u["actionItem"]))
            for u in body["utterances"]
        ]
        date = datetime.fromisoformat(body["date"].replace("Z", "+00:00"))
        meetings.append(Meeting(path.stem, body["title"], date, utterances))
    return meetings


@dataclass
class Counts:
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0

    @property
    def precision(self) -> float:
        predicted = self.true_positives + self.false_positives
        return self.true_positives / predicted if predicted else 1.0

    @property
    def recall(self) -> float:
        labelled = self.true_positives + self.false_negatives
        return self.true_positives / labelled if labelled else 1.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def add(self, *, labelled: bool, predicted: bool) -> None:
        if labelled and predicted:
            self.true_positives += 1
        elif predicted:
            self.false_positives += 1
        elif labelled:
            self.false_negatives += 1


@dataclass(frozen=True)
class Mistake:
    meeting: str
    kind: str  # "questions" or "actionItems"
    error: str  # "false positive" or "false negative"
    speaker: str
    text: str


@dataclass
class Evaluation:
    counts: dict[str, Counts] = field(default_factory=lambda: {"questions": Counts(), "actionItems": Counts()})
    mistakes: list[Mistake] = field(default_factory=list)
    utterances: int = 0
    seconds: float = 0.0


def evaluate(analyzer: TextAnalyzer, meetings: list[Meeting]) -> Evaluation:
    import time

    evaluation = Evaluation()
    for meeting in meetings:
        conversation_id = stable_numeric_id("evaluation", "conversation", meeting.name)
        utterances = [
            Utterance(
                id=stable_numeric_id(conversation_id, "message", index),
                text=u.text,
                speaker=Speaker(name=u.speaker),
            )
            for index, u in enumerate(meeting.utterances)
        ]
        started = time.perf_counter()
        insights = analyzer.analyze(
            utterances, AnalysisOptions(), conversation_id=conversation_id, conversation_start=meeting.date
        )
        evaluation.seconds += time.perf_counter() - started
        asked = {i for q in insights.questions for i in q["messageIds"]}
        tasked = {i for item in insights.action_items + insights.follow_ups for i in item["messageIds"]}
        for labelled, utterance in zip(meeting.utterances, utterances, strict=True):
            evaluation.utterances += 1
            for kind, label, predicted in (
                ("questions", labelled.question, utterance.id in asked),
                ("actionItems", labelled.action_item, utterance.id in tasked),
            ):
                evaluation.counts[kind].add(labelled=label, predicted=predicted)
                if label != predicted:
                    error = "false negative" if label else "false positive"
                    evaluation.mistakes.append(Mistake(meeting.name, kind, error, labelled.speaker, labelled.text))
    return evaluation
