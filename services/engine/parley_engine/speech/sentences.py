"""Regrouping recognized words into sentences.

Whisper cuts its segments by time, so a segment often ends mid-sentence and the next begins with the rest.
Downstream analysis (questions, action items) works per message, so messages should be sentences: all words
are joined and split again after sentence-final punctuation, or at a long pause when punctuation is missing.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

# A pause this long ends a sentence even without punctuation (tiny.en sometimes omits the full stop).
SENTENCE_PAUSE_SECONDS = 1.5

_SENTENCE_END = (".", "?", "!", "…")
_CLOSING = "\"')]\u201d\u2019"  # closing quotes and brackets, typographic ones too
# Whisper writes these with a full stop that does not end the sentence.
_ABBREVIATIONS = frozenset({"mr.", "mrs.", "ms.", "dr.", "prof.", "st.", "vs.", "etc.", "e.g.", "i.e.", "inc.", "jr."})


@dataclass(frozen=True)
class RecognizedWord:
    """A word as the recognizer heard it: text with its attached punctuation, times in seconds."""

    text: str
    start: float
    end: float
    probability: float


def ends_sentence(word: str) -> bool:
    """Whether ``word`` (with its punctuation) closes a sentence."""
    bare = word.rstrip(_CLOSING)
    return bare.endswith(_SENTENCE_END) and bare.lower() not in _ABBREVIATIONS


def split_sentences(words: Iterable[RecognizedWord]) -> Iterator[list[RecognizedWord]]:
    """Group consecutive words into sentences, in order; every word lands in exactly one sentence."""
    sentence: list[RecognizedWord] = []
    for word in words:
        if sentence and word.start - sentence[-1].end >= SENTENCE_PAUSE_SECONDS:
            yield sentence
            sentence = []
        sentence.append(word)
        if ends_sentence(word.text):
            yield sentence
            sentence = []
    if sentence:
        yield sentence


def sentence_text(words: list[RecognizedWord]) -> str:
    """The sentence as text: Whisper's words carry their punctuation, so single spaces rebuild it."""
    return " ".join(word.text for word in words)
