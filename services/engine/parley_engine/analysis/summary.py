"""An extractive summary that reads like one: each topic segment's central sentence, decisions and action items,
lightly rewritten into the third person ("I'll fix the bug by Wednesday" → "Mike will fix the bug by Wednesday.").

Segments come from a TextTiling-style pass: a boundary falls where the words of the messages before a gap stop
resembling the words after it. The central sentence of a segment is the one most similar (TF-IDF cosine) to the
rest of the segment, which skips greetings and filler that a "first sentences" summary would pick.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np
from spacy.tokens import Span

from parley_engine.analysis.insights import ActionFinding, ActionKind, OwnerRole, content_text
from parley_engine.analysis.segmentation import Sentence, TimedMessage

CONTENT_POS = {"NOUN", "PROPN", "VERB", "ADJ", "NUM"}
DECISION = re.compile(
    r"\b(?:we(?:'ve| have)? (?:decided|agreed)|(?:the )?decision is|let's go with|we(?:'ll| will| are|'re) going with"
    r"|we(?:'ll| will) go with|agreed on|final decision|we settled on)\b",
    re.IGNORECASE,
)
MIN_CENTRAL_WORDS = 7
MAX_ACTION_LINES = 10
MAX_DECISION_LINES = 5
MAX_SEGMENTS = 12
WINDOW = 3


@dataclass(frozen=True)
class SummaryLine:
    text: str
    message_ids: list[str]
    order: tuple[int, int]


def _content_words(span: Span) -> list[str]:
    return [t.lemma_.lower() for t in span if t.pos_ in CONTENT_POS and not t.is_stop and t.is_alpha]


def _tfidf(bags: list[list[str]]) -> np.ndarray:
    vocabulary: dict[str, int] = {}
    for bag in bags:
        for word in bag:
            vocabulary.setdefault(word, len(vocabulary))
    matrix = np.zeros((len(bags), max(1, len(vocabulary))))
    for row, bag in enumerate(bags):
        for word in bag:
            matrix[row, vocabulary[word]] += 1.0
    document_frequency = (matrix > 0).sum(axis=0)
    matrix *= np.log((1 + len(bags)) / (1 + document_frequency)) + 1.0
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.asarray(matrix / np.where(norms == 0, 1.0, norms))


def topic_segments(messages: list[TimedMessage], *, min_length: int = 4) -> list[list[TimedMessage]]:
    """Consecutive runs of messages about one thing."""
    if len(messages) <= 2 * min_length:
        return [messages] if messages else []
    vectors = _tfidf([_content_words(m.doc[:]) if m.doc is not None else [] for m in messages])
    gaps: list[float] = []
    for gap in range(1, len(messages)):
        before = vectors[max(0, gap - WINDOW) : gap].sum(axis=0)
        after = vectors[gap : gap + WINDOW].sum(axis=0)
        denominator = float(np.linalg.norm(before) * np.linalg.norm(after))
        gaps.append(float(before @ after) / denominator if denominator else 0.0)
    threshold = float(np.mean(gaps) - 0.5 * np.std(gaps))
    boundaries: list[int] = []
    for gap in sorted(range(1, len(messages)), key=lambda g: gaps[g - 1]):
        if gaps[gap - 1] > threshold:
            break
        if all(abs(gap - b) >= min_length for b in boundaries) and min_length <= gap <= len(messages) - min_length:
            boundaries.append(gap)
    edges = [0, *sorted(boundaries), len(messages)]
    return [messages[a:b] for a, b in itertools.pairwise(edges)]


def _conjugated(verb: str) -> str:
    """Third-person singular of a base-form verb, for "I think" → "Maria thinks"."""
    irregular = {"have": "has", "be": "is", "do": "does", "go": "goes", "am": "is", "'m": "is", "'ve": "has"}
    if verb in irregular:
        return irregular[verb]
    if re.search(r"(?:s|sh|ch|x|z|o)$", verb):
        return verb + "es"
    if re.search(r"[^aeiou]y$", verb):
        return verb[:-1] + "ies"
    return verb + "s"


def _finish(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip().rstrip(",;:-")
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!" else text.rstrip("?") + "."


def _replace_speaker_pronouns(text: str, speaker: str) -> str:
    text = re.sub(r"\bmy\b", f"{speaker}'s", text, flags=re.IGNORECASE)
    text = re.sub(r"\bme\b", speaker, text, flags=re.IGNORECASE)
    return re.sub(r"\bI\b", speaker, text)


def rewrite_action(finding: ActionFinding, speaker: str, assignee: str, member_first_names: set[str]) -> str:
    """The action item as a summary line with its owner as the subject."""
    text = content_text(finding.sentence.span, member_first_names)
    owner = assignee
    patterns: list[tuple[str, str]] = []
    if finding.kind in {ActionKind.COMMITMENT, ActionKind.PROPOSAL}:
        subject = owner
        patterns = [
            (
                r"^(?:i|we)\s*(?:'ll|will|shall|am going to|'m going to|'re going to|are going to|'m gonna|are gonna"
                r"|need to|have to|must|can|should|'d like to|plan to|'m planning to)\s+",
                f"{subject} will ",
            ),
            (r"^let(?:'s| us)\s+", "The team will " if finding.kind is ActionKind.PROPOSAL else f"{subject} will "),
            (r"^let me\s+", f"{subject} will "),
        ]
    elif finding.kind in {ActionKind.REQUEST, ActionKind.IMPERATIVE, ActionKind.ASSIGNMENT}:
        patterns = [
            (
                r"^(?:\w+,\s*)?(?:can|could|would|will)\s+you\s+(?:please\s+)?(?:be able to\s+|mind\s+)?",
                f"{owner} will ",
            ),
            (
                r"^(?:you|you guys)\s*(?:'ll|will|need to|have to|should|must|are going to|'re going to)\s+",
                f"{owner} will ",
            ),
            (r"^let me know\s+", f"{owner} will let {speaker} know "),
            (r"^(?:please\s+)?(?:just\s+)?(?=[a-z])", f"{owner} will "),
        ]
        if finding.kind is ActionKind.ASSIGNMENT and finding.owner is not OwnerRole.ADDRESSEE:
            patterns = []
    rewritten = text
    for pattern, replacement in patterns:
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            rest = text[match.end() :]
            if (
                rest[:1].isupper()
                and not rest.startswith("I ")
                and rest.split(" ", 1)[0].lower() not in member_first_names
            ):
                rest = rest[0].lower() + rest[1:]
            candidate = text[: match.start()] + replacement + rest
            rewritten = candidate
            break
    rewritten = re.sub(r"\bmind\s+(\w+)ing\b", r"\1", rewritten) if "mind" in rewritten else rewritten
    rewritten = re.sub(r",?\s*please\b", "", rewritten, flags=re.IGNORECASE)
    if finding.owner is OwnerRole.ADDRESSEE or finding.kind in {ActionKind.REQUEST, ActionKind.IMPERATIVE}:
        rewritten = re.sub(r"\byour\b", f"{owner}'s", rewritten, flags=re.IGNORECASE)
    return _finish(_replace_speaker_pronouns(rewritten, speaker))


def rewrite_statement(sentence: Sentence, speaker: str, member_first_names: set[str]) -> str:
    """A central or decision sentence in the third person."""
    span = sentence.span
    text = content_text(span, member_first_names)
    match = re.match(r"^(I|we)(?:\s+|(?='))(\S+)\s*", text, flags=re.IGNORECASE)
    if match:
        subject = speaker if match.group(1).lower() == "i" else "the team"
        verb = match.group(2)
        tokens = {t.text.lower(): t for t in span}
        token = tokens.get(verb.lower())
        if subject == speaker and token is not None and token.tag_ in {"VBP"}:
            verb = _conjugated(token.lower_ if token.lower_ not in {"'m", "am"} else "am")
        elif subject == speaker and verb.lower() in {"'m", "am"}:
            verb = "is"
        elif subject == "the team" and verb.lower() == "'re":
            verb = "are"
        elif verb.startswith("'"):
            verb = {"'ve": "have" if subject == "the team" else "has", "'ll": "will", "'d": "would"}.get(
                verb.lower(), verb
            )
        text = f"{subject} {verb} {text[match.end() :]}"
        return _finish(_replace_speaker_pronouns(text, speaker))
    if DECISION.search(text):
        return _finish(_replace_speaker_pronouns(re.sub(r"\bwe\b", "the team", text, flags=re.I), speaker))
    lowered = text[0].lower() + text[1:] if text and span[0].pos_ != "PROPN" else text
    return _finish(f"{speaker} noted that {_replace_speaker_pronouns(lowered, speaker)}")


def build_summary(
    messages: list[TimedMessage],
    actions: list[tuple[ActionFinding, str]],
    question_sentences: set[tuple[int, int]],
    member_first_names: set[str],
) -> list[SummaryLine]:
    """Summary lines in conversation order; ``actions`` pairs each finding with its assignee's name."""
    lines: dict[tuple[int, int], SummaryLine] = {}
    action_keys = {(f.sentence.message_index, f.sentence.sentence_index) for f, _ in actions}
    # A summary names the firmest tasks, not every one: definitive first, then by score, then in order.
    ranked = sorted(actions, key=lambda pair: (not pair[0].definitive, -pair[0].score, pair[0].sentence.message_index))
    for finding, assignee in ranked[:MAX_ACTION_LINES]:
        message = messages[finding.sentence.message_index]
        key = (finding.sentence.message_index, finding.sentence.sentence_index)
        text = rewrite_action(finding, message.member.name, assignee, member_first_names)
        lines[key] = SummaryLine(text, [message.id], key)
    for message in messages:
        for sentence in message.sentences:
            key = (message.index, sentence.sentence_index)
            decisions = sum(1 for line in lines.values() if line.order not in action_keys)
            if decisions >= MAX_DECISION_LINES:
                break
            if key not in lines and key not in question_sentences and DECISION.search(sentence.text):
                text = rewrite_statement(sentence, message.member.name, member_first_names)
                lines[key] = SummaryLine(text, [message.id], key)
    for segment in topic_segments(messages, min_length=max(4, len(messages) // MAX_SEGMENTS)):
        candidates = [
            s
            for m in segment
            for s in m.sentences
            if (m.index, s.sentence_index) not in question_sentences
            and (m.index, s.sentence_index) not in action_keys
            and len(_content_words(s.span)) >= 3
            and sum(1 for t in s.span if t.is_alpha) >= MIN_CENTRAL_WORDS
        ]
        if not candidates:
            continue
        vectors = _tfidf([_content_words(s.span) for s in candidates])
        centrality = (vectors @ vectors.T).sum(axis=1)
        best = candidates[int(np.argmax(centrality))]
        key = (best.message_index, best.sentence_index)
        if key not in lines:
            message = messages[best.message_index]
            lines[key] = SummaryLine(
                rewrite_statement(best, message.member.name, member_first_names), [message.id], key
            )
    return sorted(lines.values(), key=lambda line: line.order)
