"""How each insight is scored against the corpora's human labels.

- Summary: ROUGE-1 F1 on lower-cased ``[a-z0-9]+`` tokens, no stemming, the summary lines exactly as returned,
  joined; and the summary's length over the reference's.
- Action items (AMI): an item is right when a message it references is a dialogue act linked to a sentence of the
  human summary's actions; precision = right items / items, recall = linked acts covered / linked acts.
- Questions (MRDA): per unit, predicted when any question references its message.
- Topics (QMSum ``topic_list``): a reference topic is found when a returned topic shares a content word with it
  (lower-cased, stop words dropped, a plural "s" folded); recall = reference topics found / reference topics,
  precision = returned topics that find one / returned topics.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

TOKEN = re.compile(r"[a-z0-9]+")
# Function words carry no topic; the list is the usual English one, short on purpose.
STOP_WORDS = frozenset(
    {
        "a", "an", "the", "and", "or", "but", "of", "to", "in", "on", "at", "for", "with", "about", "from", "by", "as",
        "is", "are", "was", "were", "be", "been", "being", "it", "its", "this", "that", "these", "those", "there",
        "their", "they", "them", "we", "our", "us", "you", "your", "i", "me", "my", "he", "she", "his", "her", "what",
        "which", "who", "whom", "how", "why", "when", "where", "do", "does", "did", "doing", "done", "have", "has",
        "had", "having", "can", "could", "would", "should", "will", "shall", "may", "might", "must", "not", "no", "so",
        "than", "then", "too", "very", "just", "also", "into", "over", "under", "up", "down", "out", "off", "more",
        "most", "some", "any", "all", "each", "other", "such", "only", "own", "same", "both", "few", "many", "much",
        "one", "two", "different", "new", "way", "ways", "use", "using", "used",
    }
)  # fmt: skip


def tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


def rouge1_f1(candidate: str, reference: str) -> float:
    candidate_counts, reference_counts = Counter(tokens(candidate)), Counter(tokens(reference))
    overlap = sum((candidate_counts & reference_counts).values())
    if not overlap:
        return 0.0
    precision = overlap / sum(candidate_counts.values())
    recall = overlap / sum(reference_counts.values())
    return 2 * precision * recall / (precision + recall)


@dataclass
class Counts:
    """Precision and recall from counts; with nothing predicted (or nothing labelled) the ratio is undefined: 0."""

    right: int = 0
    predicted: int = 0
    found: int = 0
    labelled: int = 0

    @property
    def precision(self) -> float:
        return self.right / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.labelled if self.labelled else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0

    def __iadd__(self, other: Counts) -> Counts:
        self.right += other.right
        self.predicted += other.predicted
        self.found += other.found
        self.labelled += other.labelled
        return self


def score_action_items(item_units: list[set[str]], linked_units: set[str]) -> Counts:
    """``item_units``: for each returned item, the corpus units its messages are."""
    covered = set().union(*item_units) & linked_units if item_units else set()
    return Counts(
        right=sum(1 for units in item_units if units & linked_units),
        predicted=len(item_units),
        found=len(covered),
        labelled=len(linked_units),
    )


def score_units(predicted_units: set[str], labelled_units: set[str]) -> Counts:
    """Unit-level detection (questions): each unit counted once, whatever number of items point at it."""
    right = len(predicted_units & labelled_units)
    return Counts(right=right, predicted=len(predicted_units), found=right, labelled=len(labelled_units))


def content_words(text: str) -> set[str]:
    return {word[:-1] if len(word) > 3 and word.endswith("s") else word for word in tokens(text)} - STOP_WORDS


def score_topics(returned: list[str], references: list[str]) -> Counts:
    returned_words = [content_words(topic) for topic in returned]
    reference_words = [content_words(topic) for topic in references]
    return Counts(
        right=sum(1 for words in returned_words if any(words & reference for reference in reference_words)),
        predicted=len(returned),
        found=sum(1 for reference in reference_words if any(reference & words for words in returned_words)),
        labelled=len(references),
    )


@dataclass
class SummaryScores:
    rouge1: list[float] = field(default_factory=list)
    length_ratios: list[float] = field(default_factory=list)
    words: list[int] = field(default_factory=list)
