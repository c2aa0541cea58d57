"""Replacing found PII in an utterance's text and words, keeping word timings (no Presidio here: light to import).

A redacted speech utterance keeps one word per redacted span (the tag), timed from the first to the last word it
replaced: those times are what ``redactAudio`` silences.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

from parley_engine.conversation import Utterance, Word
from parley_engine.redaction.options import PiiType, RedactionOptions

# What replaces a value: its kind's tag, with a hash of the value after an underscore for ``"hash"``.
REDACTION_TAG = re.compile(r"\[[A-Z][A-Z_]*[A-Z](?:_[0-9a-f]{10})?\]")


@dataclass(frozen=True)
class Finding:
    """A span of PII in a text: ``text[start:end]`` is of ``kind``."""

    start: int
    end: int
    kind: PiiType
    score: float


class Substitution:
    """What replaces a value: its tag, or its tag and a keyed hash of it (the same value, the same replacement)."""

    def __init__(self, options: RedactionOptions, hash_key: bytes) -> None:
        self._hashed = options.substitution == "hash"
        self._key = hash_key

    def __call__(self, kind: PiiType, value: str) -> str:
        if not self._hashed:
            return f"[{kind.value}]"
        # Case and spacing do not make another person or card.
        normal = " ".join(value.lower().split())
        digest = hmac.new(self._key, f"{kind.value}:{normal}".encode(), hashlib.sha256).hexdigest()[:10]
        return f"[{kind.value}_{digest}]"


def redacted_text(text: str, findings: Sequence[Finding], tag: Substitution) -> str:
    pieces, cursor = [], 0
    for finding in findings:
        pieces.append(text[cursor : finding.start])
        pieces.append(tag(finding.kind, text[finding.start : finding.end]))
        cursor = finding.end
    pieces.append(text[cursor:])
    return "".join(pieces)


def redacted_utterance(utterance: Utterance, findings: Sequence[Finding], tag: Substitution) -> Utterance:
    if not findings:
        return utterance
    text = redacted_text(utterance.text, findings, tag)
    if not utterance.words:
        return utterance.model_copy(update={"text": text})
    return utterance.model_copy(update={"text": text, "words": _redacted_words(utterance, findings, tag)})


def _redacted_words(utterance: Utterance, findings: Sequence[Finding], tag: Substitution) -> list[Word]:
    """The words, each run of words a finding touches replaced by one word: the tag, spanning their times.

    Words are found in the text in order; a word the text does not contain (it never happens with the engine's own
    transcripts) is kept as it is.
    """
    words = utterance.words or []
    spans: list[tuple[int, int] | None] = []
    cursor = 0
    for word in words:
        token = word.word.strip()
        at = utterance.text.find(token, cursor) if token else -1
        spans.append(None if at < 0 else (at, at + len(token)))
        if at >= 0:
            cursor = at + len(token)
    result: list[Word] = []
    index = 0
    for finding in findings:
        covered = [
            i for i, span in enumerate(spans) if span is not None and span[0] < finding.end and span[1] > finding.start
        ]
        if not covered:
            continue
        result.extend(words[index : covered[0]])
        first, last = words[covered[0]], words[covered[-1]]
        value = utterance.text[finding.start : finding.end]
        result.append(
            Word(
                word=tag(finding.kind, value),
                start_offset=first.start_offset,
                end_offset=last.end_offset,
                score=min((w.score for w in words[covered[0] : covered[-1] + 1] if w.score is not None), default=None),
            )
        )
        index = covered[-1] + 1
    result.extend(words[index:])
    return result


def redacted_spans(original: Utterance, redacted: Utterance) -> list[tuple[float, float]]:
    """The times (seconds) of the words redaction replaced in a speech utterance: what ``redactAudio`` silences."""
    if not original.words or not redacted.words or original.words == redacted.words:
        return []
    kept = {(w.word, w.start_offset, w.end_offset) for w in original.words}
    return [
        (w.start_offset, w.end_offset) for w in redacted.words if (w.word, w.start_offset, w.end_offset) not in kept
    ]
