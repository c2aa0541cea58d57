"""Loading the three tuning corpora into one shape: a meeting is a list of timed, attributed utterances.

Split rule: a quarter of each corpus, chosen by a hash of its name, is held apart (``check``); the rest is for
tuning (``tune``). AMI splits by scenario series (ES2008a to ES2008d stay together, so a series' running topics
and people cannot leak from tuning into checking); QMSum uses its own ``val`` folder as the held-apart part.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
AMI_ROLES = {"PM": "Project Manager", "ID": "Industrial Designer", "UI": "User Interface", "ME": "Marketing"}
# QMSum transcripts mark noises and disfluencies with tags ({vocalsound}, {disfmarker}); a client's transcript
# would not carry them, and the corpus spaces punctuation off its words ("Yeah , we").
CORPUS_TAG = re.compile(r"\{[a-z_]+\}")
SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([.,?!;:%]|'(?:re|s|ll|ve|d|m)\b|n't\b)")
SPACED_HYPHEN = re.compile(r"(?<=\w) - (?=\w)")
PUNCTUATION = re.compile(r"[.,?!;:\"]")


class Split(StrEnum):
    TUNE = "tune"
    CHECK = "check"


@dataclass(frozen=True)
class Utterance:
    speaker: str
    text: str
    start: float | None = None
    end: float | None = None
    # The corpus's id for the unit (an AMI dialogue act, an MRDA unit): what labels refer to.
    unit_id: str = ""


@dataclass(frozen=True)
class Meeting:
    name: str
    corpus: str
    utterances: list[Utterance]
    labels: dict[str, Any] = field(default_factory=dict)

    @property
    def words(self) -> int:
        return sum(len(u.text.split()) for u in self.utterances)


def held_apart(name: str) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest(), 16) % 4 == 0


def _in_split(name: str, split: Split | None) -> bool:
    return split is None or held_apart(name) == (split is Split.CHECK)


def ami_action_meetings(data_dir: Path, split: Split | None) -> Iterator[Meeting]:
    """AMI meetings, one utterance per dialogue act; labels: the acts linked to the summary's actions."""
    for path in sorted((data_dir / "ami-actions-train").glob("*.json")):
        body = json.loads(path.read_text())
        if not _in_split(body["meeting"][:6], split):
            continue
        speakers = {letter: AMI_ROLES.get(info["role"], letter) for letter, info in body["speakers"].items()}
        utterances = [
            Utterance(speakers.get(act["speaker"], act["speaker"]), act["text"], act["start"], act["end"],
                      act["dialogueActId"])
            for act in body["messages"]
            if act["text"].strip()
        ]  # fmt: skip
        linked = sorted({act for link in body["actionLinks"] for act in link["dialogueActIds"]})
        labels = {"actionActs": linked, "actionSentences": body["summary"]["actions"]}
        yield Meeting(body["meeting"], "ami", utterances, labels)


def mrda_meetings(data_dir: Path, split: Split | None, *, punctuated: bool) -> Iterator[Meeting]:
    """ICSI MRDA meetings, one utterance per labelled unit; labels: the units tagged as questions.

    ``punctuated=False`` strips the transcribers' punctuation, as most speech-to-text output and chat exports lack it.
    """
    for path in sorted((data_dir / "mrda-train").glob("*.json")):
        body = json.loads(path.read_text())
        if not _in_split(body["meeting"], split):
            continue
        utterances = []
        questions = []
        for index, unit in enumerate(body["messages"]):
            text = unit["text"] if punctuated else re.sub(r"\s+", " ", PUNCTUATION.sub(" ", unit["text"])).strip()
            if not text:
                continue
            unit_id = f"{body['meeting']}.{index}"
            utterances.append(Utterance(unit["speaker"], text, unit["start"], unit["end"], unit_id))
            if unit["isQuestion"]:
                questions.append(unit_id)
        suffix = "" if punctuated else "-unpunctuated"
        yield Meeting(body["meeting"] + suffix, "mrda", utterances, {"questionUnits": questions})


def qmsum_meetings(data_dir: Path, split: Split | None) -> Iterator[Meeting]:
    """QMSum meetings, one utterance per turn; labels: the whole-meeting summary and the topic list."""
    folders = {Split.TUNE: ["train"], Split.CHECK: ["val"], None: ["train", "val"]}[split]
    for folder in folders:
        for path in sorted((data_dir / "qmsum-dev" / folder).glob("*.json")):
            body = json.loads(path.read_text())
            references = [
                q["answer"] for q in body["general_query_list"] if "summarize the whole meeting" in q["query"].lower()
            ]
            utterances = []
            for index, turn in enumerate(body["meeting_transcripts"]):
                text = SPACE_BEFORE_PUNCTUATION.sub(r"\1", CORPUS_TAG.sub(" ", turn["content"]))
                text = SPACED_HYPHEN.sub("-", text)
                text = re.sub(r"\s+", " ", text).strip()
                if any(ch.isalnum() for ch in text):
                    utterances.append(Utterance(turn["speaker"], text, unit_id=str(index)))
            labels = {
                "summary": references[0] if references else None,
                "topics": [t["topic"] for t in body["topic_list"]],
            }
            yield Meeting(path.stem, "qmsum", utterances, labels)
