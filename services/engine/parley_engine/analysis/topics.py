"""Key phrases of a conversation, ranked, with a one-level parent/child hierarchy.

Candidates are spaCy noun chunks trimmed to their content words. A phrase scores by how often it is said, how
widely its head noun recurs (the conversation keeps returning to it) and how specific it is (multi-word phrases
and rare words beat "thing" and "time"), TF-IDF style with the conversation's messages as documents. A child
topic shares its parent's head noun or contains the parent's words ("pricing" > "enterprise pricing tier").
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from spacy.tokens import Span

from parley_engine.analysis.identity import stable_numeric_id
from parley_engine.analysis.segmentation import TimedMessage
from parley_engine.analysis.sentiment import sentiment_body
from parley_engine.redaction.words import REDACTION_TAG

# Nouns too general to be a topic on their own.
GENERIC_NOUNS = {
    "thing", "stuff", "lot", "way", "time", "today", "something", "anything", "everything", "nothing", "people",
    "guy", "question", "bit", "kind", "sort", "point", "idea", "meeting", "call", "minute", "second", "day", "week",
    "month", "year", "one", "yeah", "okay", "part", "end", "side", "sense", "number", "problem", "issue", "place",
    "case", "fact", "deal", "job", "look", "chance", "moment", "morning", "afternoon", "everyone", "everybody",
    "someone", "anyone", "team", "folk", "hour", "update", "word", "line", "note", "start", "couple", "piece",
    "option", "step", "item", "list", "tomorrow", "yesterday", "monday", "tuesday", "wednesday",
    "thursday", "friday", "plan", "work", "answer", "reason", "version", "area", "level", "person", "top",
    "half", "rest", "thank", "thanks", "hi", "hello", "bye", "um", "uh", "hmm", "right", "sure", "yes", "mind",
    "quarter", "detail", "track", "good", "great", "name", "i", "we", "you",
}  # fmt: skip
TRIM_ADJECTIVES = {
    "whole", "other", "same", "good", "great", "big", "little", "small", "new", "old", "last", "next", "first",
    "quick", "real", "few", "many", "much", "more", "most", "own", "sure", "different", "certain", "main", "such",
    "nice", "bad", "best", "better", "only", "entire", "current", "overall", "actual", "whatever", "various",
    "specific", "particular", "several", "huge", "tiny", "key",
}  # fmt: skip
MAX_PHRASE_WORDS = 4
BACKCHANNELS = {"yep", "yeah", "yes", "okay", "ok", "alright", "wow", "oh", "uh", "um", "huh", "mhm", "hmm", "mm"}
BACKCHANNEL_SHAPE = re.compile(r"(?:m+-?h*m+|u+h+-?h*u+h+|h+m+|uh-huh|mm-hmm)")


@dataclass
class _Candidate:
    key: str
    head: str
    words: tuple[str, ...]
    surfaces: Counter[str] = field(default_factory=Counter)
    message_indexes: set[int] = field(default_factory=set)
    count: int = 0

    @property
    def text(self) -> str:
        return self.surfaces.most_common(1)[0][0]


def _trimmed(chunk: Span) -> Span | None:
    start, end = chunk.start, chunk.end
    doc = chunk.doc
    while start < end and (
        doc[start].is_stop
        or doc[start].pos_ in {"DET", "PRON", "NUM", "PUNCT", "PART", "ADP", "CCONJ", "INTJ", "ADV", "SYM"}
        or doc[start].lower_ in TRIM_ADJECTIVES
        or doc[start].like_num
    ):
        start += 1
    while end > start and (doc[end - 1].pos_ not in {"NOUN", "PROPN"} or doc[end - 1].is_stop):
        end -= 1
    if end <= start or end - start > MAX_PHRASE_WORDS:
        return None
    span = doc[start:end]
    if any(t.is_punct and t.text != "-" for t in span) or any(t.ent_type_ in {"DATE", "TIME", "PERSON"} for t in span):
        return None
    # Transcribed speech tags backchannels ("Yep", "Mm-hmm") as nouns; they are never what a meeting is about.
    if any(t.pos_ == "INTJ" or t.lower_ in BACKCHANNELS or BACKCHANNEL_SHAPE.fullmatch(t.lower_) for t in span):
        return None
    return span


def _phrase_candidates(messages: list[TimedMessage]) -> dict[str, _Candidate]:
    candidates: dict[str, _Candidate] = {}
    for message in messages:
        if message.doc is None:
            continue
        for chunk in message.doc.noun_chunks:
            span = _trimmed(chunk)
            # A redacted value ("[PERSON]") is nobody's topic.
            if span is None or any(REDACTION_TAG.fullmatch(token.text) for token in span):
                continue
            words = tuple(t.lemma_.lower() for t in span)
            if len(words) == 1 and (words[0] in GENERIC_NOUNS or len(words[0]) < 3):
                continue
            key = " ".join(words)
            candidate = candidates.setdefault(key, _Candidate(key, span[-1].lemma_.lower(), words))
            surface = "".join(
                (t.text if t.pos_ == "PROPN" or t.text.isupper() else t.lower_) + t.whitespace_ for t in span
            ).strip()
            candidate.surfaces[surface] += 1
            candidate.message_indexes.add(message.index)
            candidate.count += 1
    return candidates


def _scores(candidates: dict[str, _Candidate], message_count: int) -> dict[str, float]:
    head_messages: defaultdict[str, set[int]] = defaultdict(set)
    word_counts: Counter[str] = Counter()
    for candidate in candidates.values():
        head_messages[candidate.head] |= candidate.message_indexes
        for word in candidate.words:
            word_counts[word] += candidate.count
    scores: dict[str, float] = {}
    for key, candidate in candidates.items():
        spread = len(candidate.message_indexes)
        head_spread = len(head_messages[candidate.head])
        # Saying a phrase in several messages matters more than repeating it in one.
        frequency = spread + 0.3 * (candidate.count - spread) + 0.5 * (head_spread - spread)
        specificity = {1: 1.0, 2: 1.6, 3: 1.8}.get(len(candidate.words), 1.7)
        if candidate.head in GENERIC_NOUNS:
            specificity *= 0.5
        # Rarity across messages, as in TF-IDF, damped so recurring agenda items are not punished much.
        rarity = 1.0 + 0.25 * math.log((1 + message_count) / (1 + head_spread))
        scores[key] = frequency * specificity * rarity
    return scores


def _is_child(child: _Candidate, parent: _Candidate) -> bool:
    if child.key == parent.key:
        return False
    contains = set(parent.words) < set(child.words)
    return contains or (child.head == parent.head and len(child.words) > len(parent.words))


def extract_topics(
    messages: list[TimedMessage], message_scores: list[float], conversation_id: str, *, limit: int = 10
) -> list[dict[str, Any]]:
    """Ranked topics with scores 0..1; roots first by score, each followed by its children."""
    candidates = _phrase_candidates(messages)
    if not candidates:
        return []
    scores = _scores(candidates, len(messages))
    ranked = sorted(candidates.values(), key=lambda c: (-scores[c.key], c.key))
    # A phrase said once in a long conversation is noise, not a topic.
    minimum_spread = 2 if len(messages) >= 8 else 1
    ranked = [c for c in ranked if len(c.message_indexes) >= minimum_spread or c.count >= 2] or ranked[:3]
    root_limit = max(3, min(limit, len(messages) // 6 + 2))
    roots: list[_Candidate] = []
    children: dict[str, list[_Candidate]] = defaultdict(list)
    for candidate in ranked:
        parent = next((root for root in roots if _is_child(candidate, root)), None)
        if parent is not None:
            if len(children[parent.key]) < 3:
                children[parent.key].append(candidate)
            continue
        if any(_is_child(root, candidate) or root.head == candidate.head for root in roots):
            continue
        if len(roots) < root_limit:
            roots.append(candidate)
    top = max(scores[r.key] for r in roots)
    topics: list[dict[str, Any]] = []
    for root in roots:
        for candidate, parent in [(root, None), *((child, root) for child in children[root.key])]:
            indexes = sorted(candidate.message_indexes)
            polarity = fmean(message_scores[i] for i in indexes) if indexes else 0.0
            topics.append(
                {
                    "id": stable_numeric_id(conversation_id, "topic", candidate.key),
                    "text": candidate.text,
                    "type": "topic",
                    "score": round(min(1.0, scores[candidate.key] / top), 4),
                    "messageIds": [messages[i].id for i in indexes],
                    "sentiment": sentiment_body(polarity),
                    "parentRefs": [] if parent is None else [{"type": "topic", "text": parent.text}],
                }
            )
    return topics
