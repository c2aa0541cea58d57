"""A summary a person would write: what the meeting was about, the points made and by whom, what was decided and
who will do what, in the third person, as reported speech, its length growing with the conversation.

- The overview names the conversation's leading topics ("The meeting was mainly about …").
- Points are the sentences most central to the conversation (their content words are the ones it keeps coming back
  to, lightly favouring longer sentences), skipping questions and anything that repeats an earlier point; each is
  retold as reported speech: "we're going to need a bigger battery" → "Marketing said that the team was going to
  need a bigger battery." Only whole clauses (a subject and a verb) are retold, so every line is a sentence.
- Decisions and the firmest action items are rewritten with their owner as subject ("Mike will fix the bug").
- The topics not yet named close it ("The team also discussed …").

Tuned on QMSum's training meetings (ROUGE-1 against the human "summarize the whole meeting" answers); the figures
on the held-apart meetings are in ``evaluation/corpora/results.md``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from spacy.tokens import Span, Token

from parley_engine.analysis.action_items import ActionFinding, ActionItem, ActionKind, OwnerRole
from parley_engine.analysis.parsed_conversation import ParsedConversation
from parley_engine.analysis.segmentation import Sentence
from parley_engine.analysis.sentence_opening import clause_start, content_text
from parley_engine.analysis.spoken_text import tidy_spoken
from parley_engine.redaction.words import REDACTION_TAG

CONTENT_POS = {"NOUN", "PROPN", "VERB", "ADJ", "NUM"}
DECISION = re.compile(
    r"\b(?:we(?:'ve| have)? (?:decided|agreed)|(?:the )?decision is|let's go with|we(?:'ll| will| are|'re) going with"
    r"|we(?:'ll| will) go with|agreed on|final decision|we settled on)\b",
    re.IGNORECASE,
)
MIN_POINT_WORDS = 8
# A point longer than this is a ramble, however central; a reader gives up on it.
MAX_POINT_WORDS = 45
MAX_ACTION_LINES = 3
MAX_DECISION_LINES = 3
OVERVIEW_TOPICS = 4
CLOSING_TOPICS = 3
# How much a point may share with the points already chosen before it only repeats them.
REPEATS = 0.6
# Centrality divides by length to this power: long sentences carry more, but not in proportion.
LENGTH_DAMPING = 0.3
# Reported speech moves the speaker's tense one step back ("is" → "was", "will" → "would").
BACKSHIFT = {
    "is": "was", "are": "were", "am": "was", "'s": "was", "'re": "were", "'m": "was", "will": "would",
    "'ll": "would", "wo": "would", "can": "could", "ca": "could", "shall": "should", "have": "had", "'ve": "had",
    "has": "had", "do": "did", "does": "did",
}  # fmt: skip
# The speaker's own words in the third person: "I" becomes "they", "we" becomes "the team".
PERSON_SHIFT = {
    "i": "they", "me": "them", "my": "their", "mine": "theirs", "myself": "themselves", "we": "the team",
    "us": "the team", "our": "the team's", "ours": "the team's", "ourselves": "the team",
}  # fmt: skip
# spaCy splits "gonna" into "gon" + "na"; written, they are "going to".
# A rewritten task that still carries the spoken form it was rewritten from ("will you're gonna get that").
UNCLEAN_TASK = re.compile(r"\b(?:you|you're|i|i'm|we|we're|will|'ll)\b|'ll\b", re.IGNORECASE)
FINITE = {"VBZ", "VBP", "MD", "VBD"}
SPOKEN_FORMS = {"gon": "going", "wan": "want", "got": "got", "gonna": "going to", "wanna": "want to"}


@dataclass(frozen=True)
class SummaryLine:
    text: str
    message_ids: list[str]
    order: tuple[int, int]


def summary_word_budget(word_count: int) -> int:
    """About a human meeting summary: two or three lines for a short call, 60 to 150 words for a long meeting."""
    return int(min(150, max(40, 40 + word_count / 100)))


def _content_words(span: Span) -> list[str]:
    return [t.lemma_.lower() for t in span if t.pos_ in CONTENT_POS and not t.is_stop and t.is_alpha]


def _is_clause(span: Span) -> bool:
    root = span.root
    return root.pos_ in {"VERB", "AUX"} and any(c.dep_ in {"nsubj", "nsubjpass", "expl"} for c in root.children)


def _shifted(token: Token) -> str:
    lower = token.lower_
    previous = token.doc[token.i - 1].lower_ if token.i > 0 else ""
    if lower in PERSON_SHIFT and token.pos_ == "PRON":
        return PERSON_SHIFT[lower]
    if lower == "na" and previous in {"gon", "wan"}:
        return "to"
    if lower in SPOKEN_FORMS and token.i + 1 < len(token.doc) and token.doc[token.i + 1].lower_ == "na":
        return SPOKEN_FORMS[lower]
    if lower == "was" and previous == "i":
        return "were"
    if lower in BACKSHIFT and (token.pos_ == "AUX" or token.lemma_ in {"be", "have", "do"}) and token.tag_ in FINITE:
        if lower in {"'s", "is"} and token.lemma_ not in {"be"}:
            return "had" if token.lemma_ == "have" else token.text
        shifted = BACKSHIFT[lower]
        if shifted == "were" and previous == "we":
            return "was"  # "we're" → "the team was"
        # "they was" → "they were": the shifted "I" is plural in form.
        if shifted == "was" and token.i > 0 and token.doc[token.i - 1].lower_ in {"i", "you", "they"}:
            return "were"
        return shifted
    return token.text


def reported(span: Span, speaker: str, member_first_names: set[str]) -> str | None:
    """The sentence as reported speech ("Anna said that the team would …"), or None if it is not a clause or is too
    long to read as one point."""
    if not _is_clause(span) or sum(1 for t in span if t.is_alpha) > MAX_POINT_WORDS:
        return None
    start = clause_start(span, member_first_names)
    words: list[str] = []
    for token in span.doc[start : span.end]:
        text = _shifted(token)
        glued = token.i > start and not token.doc[token.i - 1].whitespace_ and text == token.text and text != "to"
        if words and glued:
            words[-1] += text
        else:
            words.append(text)
    body = tidy_spoken(" ".join(words))
    if len(body.split()) < 4 or body.endswith("?"):
        return None
    first, rest = body.split(" ", 1)
    kept_as_is = first == "I" or first.upper() == first or REDACTION_TAG.fullmatch(first)
    if not (kept_as_is or (first.istitle() and first.lower() in member_first_names)):
        first = first.lower()
    return f"{speaker} said that {first} {rest}"


def _task_line(item: ActionItem, speaker: str, assignee: str, first_names: set[str]) -> str | None:
    """ "Mike will fix the bug by Wednesday." where the rule read the task cleanly, else the sentence reported."""
    if item.finding is not None:
        text = tidy_spoken(rewrite_action(item.finding, speaker, assignee, first_names))
        if text.startswith(f"{assignee} will ") and not UNCLEAN_TASK.search(text[len(assignee) + 6 :]):
            return text
    return reported(item.first.span, speaker, first_names)


def _decision_line(sentence: Sentence, speaker: str, first_names: set[str]) -> str | None:
    """ "The team decided to …" when the team said so in those words, else the sentence reported."""
    text = tidy_spoken(rewrite_statement(sentence, speaker, first_names))
    if re.match(r"The team (?:decided|agreed|(?:has|had|have) (?:decided|agreed))\b", text):
        return text
    return reported(sentence.span, speaker, first_names)


def _topic_list(topics: list[str]) -> str:
    return topics[0] if len(topics) == 1 else ", ".join(topics[:-1]) + " and " + topics[-1]


def _central_points(
    conversation: ParsedConversation, excluded: set[tuple[int, int]], budget: int
) -> list[tuple[Sentence, str]]:
    """The most central retellable sentences, best first, until ``budget`` words."""
    candidates = [
        s
        for s in conversation.sentences()
        if (s.message_index, s.sentence_index) not in excluded
        and sum(1 for t in s.span if t.is_alpha) >= MIN_POINT_WORDS
    ]
    frequency: Counter[str] = Counter(w for s in candidates for w in set(_content_words(s.span)))

    def centrality(sentence: Sentence) -> float:
        words = set(_content_words(sentence.span))
        length = sum(1 for t in sentence.span if t.is_alpha)
        return sum(math.log1p(frequency[w]) for w in words) / length**LENGTH_DAMPING

    chosen: list[tuple[Sentence, str]] = []
    covered: set[str] = set()
    used = 0
    for sentence in sorted(candidates, key=lambda s: (-centrality(s), s.message_index, s.sentence_index)):
        if used >= budget:
            break
        words = set(_content_words(sentence.span))
        if not words or len(words & covered) / len(words) > REPEATS:
            continue
        message = conversation.messages[sentence.message_index]
        text = reported(sentence.span, message.member.name, conversation.first_names)
        if text is None:
            continue
        chosen.append((sentence, text))
        covered |= words
        used += len(text.split())
    return chosen


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
    span = finding.sentence.span
    text = span.doc[clause_start(span, member_first_names) : span.end].text.strip()
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
    conversation: ParsedConversation,
    actions: list[tuple[ActionItem, str]],
    question_sentences: set[tuple[int, int]],
    topics: list[dict[str, Any]],
) -> list[SummaryLine]:
    """Summary lines: the overview, then points, decisions and tasks in conversation order, then the other topics.

    ``actions`` pairs each selected action item with its assignee's name; ``topics`` are the conversation's root
    topics, best first.
    """
    messages = conversation.messages
    first_names = conversation.first_names
    budget = summary_word_budget(conversation.word_count)
    lines: dict[tuple[int, int], SummaryLine] = {}
    topic_texts = [str(t["text"]) for t in topics]
    overview = topic_texts[:OVERVIEW_TOPICS]
    if overview:
        kind = "meeting" if len(messages) >= 40 else "conversation"
        refs = [str(i) for t in topics[:OVERVIEW_TOPICS] for i in t.get("messageIds", [])[:1]]
        lines[(-1, 0)] = SummaryLine(f"The {kind} was mainly about {_topic_list(overview)}.", refs, (-1, 0))
    action_keys = {item.first_key for item, _ in actions}
    # The firmest tasks, not every one: definitive first, then by how sure the model is, then in order.
    ranked = sorted(actions, key=lambda pair: (not pair[0].definitive, -pair[0].probability, pair[0].first_key))
    for item, assignee in ranked[:MAX_ACTION_LINES]:
        message = messages[item.first.message_index]
        text = _task_line(item, message.member.name, assignee, first_names)
        if text is not None:
            lines[item.first_key] = SummaryLine(text, [message.id], item.first_key)
    decisions = 0
    for sentence in conversation.sentences():
        key = (sentence.message_index, sentence.sentence_index)
        if decisions >= MAX_DECISION_LINES:
            break
        if key not in lines and key not in question_sentences and DECISION.search(sentence.text):
            message = messages[sentence.message_index]
            text = _decision_line(sentence, message.member.name, first_names)
            if text is not None:
                lines[key] = SummaryLine(text, [message.id], key)
                decisions += 1
    used = sum(len(line.text.split()) for line in lines.values())
    excluded = question_sentences | action_keys | set(lines)
    for sentence, text in _central_points(conversation, excluded, budget - used):
        key = (sentence.message_index, sentence.sentence_index)
        lines[key] = SummaryLine(text, [messages[sentence.message_index].id], key)
    closing = topic_texts[OVERVIEW_TOPICS : OVERVIEW_TOPICS + CLOSING_TOPICS]
    if closing and len(messages) >= 40:
        end = (len(messages), 0)
        refs = [str(i) for t in topics[OVERVIEW_TOPICS : OVERVIEW_TOPICS + CLOSING_TOPICS] for i in t["messageIds"][:1]]
        lines[end] = SummaryLine(f"The team also discussed {_topic_list(closing)}.", refs, end)
    return sorted(lines.values(), key=lambda line: line.order)
