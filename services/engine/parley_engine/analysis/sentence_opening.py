"""Where a sentence's content starts: the fillers, discourse words and vocative a speaker opens with.

"So um, Tom, can you send it" has its content at "can"; every detector reads sentences from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from spacy.tokens import Span

# An answer before the clause ("Not yet, …", "Of course, …") is at most this many words.
ANSWER_WORDS = 3
# Words that open a sentence without carrying its structure ("So um, okay, can you…").
DISCOURSE_WORDS = {
    "so", "and", "but", "okay", "ok", "alright", "well", "um", "umm", "uhm", "uh", "erm", "er", "oh", "yeah",
    "yes", "yep", "yup", "no", "nope", "right", "also", "then", "now", "sure", "great", "cool", "perfect",
    "actually", "anyway", "anyways", "hey", "hi", "hello", "thanks", "basically", "honestly", "like", "hmm", "mm",
    "ah", "fine", "awesome", "alrighty", "gotcha", "totally", "absolutely", "definitely", "or", "plus", "just",
    "quick", "question", "one", "last", "thing", "sounds", "good", "excellent", "wonderful", "sorry",
}  # fmt: skip


@dataclass(frozen=True)
class Opening:
    """Where a sentence's content starts once fillers and a vocative are skipped."""

    index: int
    vocative: Span | None


def sentence_opening(span: Span, member_first_names: set[str]) -> Opening:
    vocative: Span | None = None
    i = 0
    tokens = list(span)
    while i < len(tokens):
        token = tokens[i]
        lower = token.lower_
        if token.is_punct or token.is_space or lower in DISCOURSE_WORDS or token.pos_ == "INTJ":
            i += 1
            continue
        # "Maria, could you…" / "Okay Tom, send…": a name followed by a comma addresses someone.
        end = i
        while end < len(tokens) and tokens[end].pos_ == "PROPN":
            end += 1
        is_name = end > i and (tokens[i].ent_type_ == "PERSON" or lower in member_first_names)
        if is_name and end < len(tokens) and tokens[end].text == ",":
            vocative = span[i:end]
            i = end + 1
            continue
        break
    if vocative is None and len(tokens) >= 3:
        # "…by Friday, Tom?" — a trailing vocative.
        end = len(tokens)
        while end > 0 and tokens[end - 1].is_punct:
            end -= 1
        start = end
        while start > 0 and tokens[start - 1].pos_ == "PROPN":
            start -= 1
        if start < end and start > 0 and tokens[start - 1].text == ",":
            candidate = span[start:end]
            if candidate[0].ent_type_ == "PERSON" or candidate[0].lower_ in member_first_names:
                vocative = candidate
    return Opening(i, vocative)


def content_text(span: Span, member_first_names: set[str]) -> str:
    """The sentence without its opening fillers and vocative ("So um, Tom, can you…" → "can you…")."""
    opening = sentence_opening(span, member_first_names)
    if opening.index >= len(span):
        return span.text.strip()
    return span.doc[span.start + opening.index : span.end].text.strip()


def clause_start(span: Span, member_first_names: set[str], *, keep_opening: bool = False) -> int:
    """Where the sentence's clause starts: after its opening words (unless ``keep_opening``: a vocative or "please"
    says who is asked and how) and any verbless answer before a comma ("Not yet, I will call them" → "I will…")."""
    start = span.start if keep_opening else span.start + sentence_opening(span, member_first_names).index
    for token in span.doc[start : min(span.end, start + ANSWER_WORDS + 1)]:
        if token.pos_ in {"VERB", "AUX", "PROPN"}:
            break
        if token.text == "," and token.i + 1 < span.end:
            return token.i + 1
    return start
