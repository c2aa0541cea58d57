"""Tracker vocabulary found in messages: exact wording, other forms of the same words, and near misspellings.

Matches on the text or on spaCy lemmas ("renewed" for "renewal" no, "contracts" for "contract" yes) carry the
character offset in the message; edit-distance matches (transcription slips such as "kubernetes"/"kubernets")
carry offset -1, Symbl's mark of a fuzzy match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spacy.tokens import Doc

from parley_engine.analysis.identity import stable_numeric_id
from parley_engine.analysis.segmentation import TimedMessage
from parley_engine.conversation import Tracker

FUZZY_MIN_LENGTH = 5


def edit_distance(first: str, second: str, limit: int) -> int:
    """Levenshtein distance, giving up (returning limit + 1) once it must exceed ``limit``."""
    if abs(len(first) - len(second)) > limit:
        return limit + 1
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        if min(current) > limit:
            return limit + 1
        previous = current
    return previous[-1]


def allowed_edits(word: str) -> int:
    if len(word) < FUZZY_MIN_LENGTH:
        return 0
    return 1 if len(word) < 9 else 2


@dataclass(frozen=True)
class _Phrase:
    value: str
    lowers: tuple[str, ...]
    lemmas: tuple[str, ...]


def _phrase(value: str, doc: Doc) -> _Phrase:
    tokens = [t for t in doc if not t.is_punct]
    return _Phrase(value, tuple(t.lower_ for t in tokens), tuple(t.lemma_.lower() for t in tokens))


def _find(doc: Doc, phrase: _Phrase) -> tuple[bool, int] | None:
    """(found, offset): offset -1 when only a fuzzy match was found; None when absent."""
    tokens = [t for t in doc if not t.is_punct]
    size = len(phrase.lowers)
    fuzzy = False
    for start in range(len(tokens) - size + 1):
        window = tokens[start : start + size]
        if all(
            t.lower_ == w or t.lemma_.lower() == lemma
            for t, w, lemma in zip(window, phrase.lowers, phrase.lemmas, strict=True)
        ):
            return True, window[0].idx
        if not fuzzy and all(
            edit_distance(t.lower_, w, allowed_edits(w)) <= allowed_edits(w)
            for t, w in zip(window, phrase.lowers, strict=True)
        ):
            fuzzy = True
    return (True, -1) if fuzzy else None


def tracker_vocabulary(trackers: list[Tracker]) -> list[str]:
    """Every distinct vocabulary phrase, as the caller must parse them for ``detect_trackers``."""
    return list(dict.fromkeys(v.strip() for tracker in trackers for v in tracker.vocabulary if v.strip()))


def detect_trackers(
    trackers: list[Tracker],
    messages: list[TimedMessage],
    insights: list[dict[str, Any]],
    vocabulary_docs: dict[str, Doc],
    conversation_id: str,
) -> list[dict[str, Any]]:
    """Symbl's ``trackers-detected`` body: trackers with at least one match.

    ``vocabulary_docs`` holds every vocabulary phrase parsed by the caller (who owns the shared pipeline).
    """
    detected: list[dict[str, Any]] = []
    by_message: dict[str, list[dict[str, Any]]] = {}
    for insight in insights:
        for message_id in insight["messageIds"]:
            by_message.setdefault(message_id, []).append(insight)
    for tracker in trackers:
        matches: list[dict[str, Any]] = []
        for value in dict.fromkeys(v.strip() for v in tracker.vocabulary if v.strip()):
            phrase = _phrase(value, vocabulary_docs[value])
            if not phrase.lowers:
                continue
            message_refs: list[dict[str, Any]] = []
            insight_refs: list[dict[str, Any]] = []
            for message in messages:
                if message.doc is None:
                    continue
                found = _find(message.doc, phrase)
                if found is None:
                    continue
                message_refs.append({"id": message.id, "text": message.text, "offset": found[1]})
                for insight in by_message.get(message.id, []):
                    position = insight["text"].lower().find(value.lower()) if found[1] >= 0 else -1
                    insight_refs.append(
                        {"id": insight["id"], "text": insight["text"], "offset": position, "type": insight["type"]}
                    )
            if message_refs:
                matches.append(
                    {"type": "vocabulary", "value": value, "messageRefs": message_refs, "insightRefs": insight_refs}
                )
        if matches:
            detected.append(
                {
                    "id": stable_numeric_id(conversation_id, "tracker", tracker.name),
                    "name": tracker.name,
                    "matches": matches,
                }
            )
    return detected
