"""Messages with timings, split into parsed sentences: the structure every analysis step reads.

Text messages often arrive without timings; they are laid end to end at a speaking pace of ~150 words per minute
so analytics and word timings still have something sensible to work with (and are marked as estimated).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pysbd
from spacy.tokens import Doc, Span

from parley_engine.analysis.identity import Member
from parley_engine.conversation import Utterance, Word

WORDS_PER_MINUTE = 150.0
MIN_ESTIMATED_SECONDS = 1.0


@dataclass
class Sentence:
    """One sentence of a message: its parse and where it sits in the message text."""

    span: Span
    message_index: int
    sentence_index: int

    @property
    def text(self) -> str:
        return self.span.text.strip()

    @property
    def offset(self) -> int:
        """Character offset of the sentence in its message."""
        return self.span.start_char


@dataclass
class TimedMessage:
    """An input utterance with settled timings, its member and its parse."""

    index: int
    utterance: Utterance
    member: Member
    start: float
    end: float
    words: list[Word]
    timings_estimated: bool
    doc: Doc | None = None
    sentences: list[Sentence] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.utterance.id

    @property
    def text(self) -> str:
        return self.utterance.text


def spoken_seconds(text: str) -> float:
    """How long ``text`` takes to say at the assumed pace."""
    return max(MIN_ESTIMATED_SECONDS, len(text.split()) * 60.0 / WORDS_PER_MINUTE)


def spread_words(text: str, start: float, end: float) -> list[Word]:
    """Word timings for a message that has none: its time divided in proportion to word length."""
    tokens = text.split()
    if not tokens:
        return []
    weights = [len(token) + 1 for token in tokens]
    scale = (end - start) / sum(weights)
    words: list[Word] = []
    cursor = start
    for token, weight in zip(tokens, weights, strict=True):
        words.append(Word(word=token, start_offset=round(cursor, 3), end_offset=round(cursor + weight * scale, 3)))
        cursor += weight * scale
    return words


def settle_timings(utterances: list[Utterance], members: list[Member]) -> list[TimedMessage]:
    """Give every utterance a start and end: its own, or estimated from where the previous one ended."""
    messages: list[TimedMessage] = []
    previous_end = 0.0
    for index, (utterance, member) in enumerate(zip(utterances, members, strict=True)):
        start, end = utterance.start_offset, utterance.end_offset
        estimated = start is None or end is None
        if start is None and end is None:
            start = previous_end
            end = start + spoken_seconds(utterance.text)
        elif start is None:
            assert end is not None
            start = max(0.0, end - spoken_seconds(utterance.text))
        elif end is None:
            end = start + spoken_seconds(utterance.text)
        assert start is not None and end is not None
        end = max(end, start)
        words = utterance.words or spread_words(utterance.text, start, end)
        messages.append(TimedMessage(index, utterance, member, start, end, list(words), estimated))
        previous_end = max(previous_end, end)
    return messages


class SentenceBoundaries:
    """A spaCy component that fixes sentence starts from pysbd before the parser runs.

    pysbd handles abbreviations, decimals and ellipses better than the small parser, and fixing every token's
    ``is_sent_start`` keeps sentence splits identical run to run.
    """

    def __init__(self) -> None:
        self.segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)

    def __call__(self, doc: Doc) -> Doc:
        starts = sorted(
            span.start for span in self.segmenter.segment(doc.text) if doc.text[span.start : span.end].strip()
        )
        pointer = 0
        for token in doc:
            if token.i == 0:
                token.is_sent_start = True
                continue
            # A sentence starts at the first token at or after a pysbd boundary (boundaries may fall on spaces).
            previous_end = doc[token.i - 1].idx + len(doc[token.i - 1].text)
            while pointer < len(starts) and starts[pointer] < previous_end:
                pointer += 1
            token.is_sent_start = pointer < len(starts) and starts[pointer] <= token.idx
        return doc
