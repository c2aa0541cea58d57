"""Action items and follow-ups: sentences that set someone a concrete task after this moment.

``find_action`` reads the spaCy parse for commitments, requests, proposals, imperatives and assignments to a named
person, with the owner and the task verb. Which of those a person would write down is ranked by a logistic
regression trained on AMI meetings (``models/action_items.json``): see ``action_item_selection``.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from spacy.tokens import Span, Token

from parley_engine.analysis.linear_model import Features, load_model
from parley_engine.analysis.parsed_conversation import ParsedConversation
from parley_engine.analysis.questions import WH_WORDS
from parley_engine.analysis.segmentation import Sentence
from parley_engine.analysis.sentence_opening import Opening, clause_start, content_text, sentence_opening
from parley_engine.analysis.spoken_text import tidy_spoken

# Verbs that are not tasks even with "I will" in front ("I will say that…", "we'll see").
NON_TASK_VERBS = {
    "be", "see", "say", "think", "know", "mean", "guess", "suppose", "admit", "wonder", "hope", "bet", "believe",
    "feel", "like", "love", "hear", "seem", "happen", "agree", "understand", "want", "need", "wish", "imagine",
    "expect", "assume", "appreciate", "pretend", "depend", "matter", "cost", "last", "argue", "stay", "remain",
}  # fmt: skip
# Requests about the call itself ("can you share your screen") are done on the spot, not tasks.
REQUEST_IMMEDIATE_VERBS = {
    "hear", "see", "repeat", "say", "explain", "clarify", "elaborate", "tell", "describe", "walk", "share", "show",
    "speak", "go", "remind", "introduce", "read", "scroll", "zoom", "mute", "unmute", "stop", "talk", "answer",
    "expand", "wait", "hold", "hang", "thank", "excuse", "pardon", "welcome", "come", "look", "listen", "mind",
    "imagine", "consider", "bear", "trust", "enjoy", "keep", "start", "begin", "move", "continue", "jump", "let",
    "remember", "forget", "carry", "proceed", "pass", "give",
}  # fmt: skip
# "Let's…" / "let me…" mostly steer the meeting ("let's review the numbers", "let me check").
PROCEDURAL_VERBS = REQUEST_IMMEDIATE_VERBS | {
    "dive", "recap", "discuss", "review", "focus", "kick", "wrap", "pull", "open", "take", "do", "turn", "switch",
    "hop", "pause", "skip", "cover", "finish", "spend", "get", "ask", "put", "try", "use", "think", "check", "note",
    "pick", "hit", "click", "rewind", "bring", "circle",
}  # fmt: skip
# Cues that move an otherwise immediate request to after the meeting ("share the deck after the call").
LATER_CUES = re.compile(
    r"\b(?:later|after(?:wards)?|offline|tomorrow|tonight|next|by|before|end of|eod|this week|this afternoon|"
    r"monday|tuesday|wednesday|thursday|friday|weekend|asap|soon|follow|back to)\b",
    re.IGNORECASE,
)
# Replies that acknowledge ("Got it.") versus replies that accept a task ("Will do.").
ACKNOWLEDGEMENT = re.compile(r"^(?:got it|sounds good|makes sense|fair enough|no worries|thank you|thanks)\b")
SHORT_COMMITMENT = re.compile(r"^(?:will do|on it|i'm on it|i am on it|consider it done)\b")
REPORTING_VERBS = {"wonder", "ask", "know", "question", "doubt", "say", "tell", "mention", "remember", "hear", "see"}
HEDGES = {"maybe", "perhaps", "probably", "possibly", "might", "may", "could", "hopefully", "try", "ideally"}
HEDGE_PHRASES = re.compile(r"\b(?:i think|i guess|if i can|if we can|if possible|kind of|sort of|not sure)\b", re.I)
FUTURE_AUX = {"will", "shall", "'ll", "wo"}
OBLIGATION_VERBS = {"need", "have", "got"}
THIRD_PERSON_SUBJECTS = {"he", "she"}
GROUP_SUBJECTS = {"someone", "somebody", "everyone", "everybody", "anyone", "team", "y'all"}
FOLLOW_UP = re.compile(
    r"\b(?:follow(?:-|\s)?up|get\s+back\s+to|circle\s+back|reach\s+out|touch\s+base|reconnect|catch\s+up|check\s+in"
    r"|ping|loop\s+back|send\s+(?:\w+\s+){0,3}over|send\s+(?:you|him|her|them|us|me)\s+(?:an?\s+)?(?:email|invite|note"
    r"|calendar|recap|summary)|(?:schedule|set\s+up|book|arrange|organi[sz]e|put|find|grab)\b.{0,40}?\b(?:call|meeting"
    r"|sync|demo|session|time|invite|chat|slot|check-in|follow-up)|(?:call|email|text|meet)\s+(?:you|him|her|them"
    r"|again|back)|talk\s+(?:again|next|tomorrow|on|later|soon)|sync\s+(?:up|again|next|tomorrow|later|on))",
    re.IGNORECASE,
)


class ActionKind(StrEnum):
    COMMITMENT = "commitment"
    REQUEST = "request"
    PROPOSAL = "proposal"
    IMPERATIVE = "imperative"
    ASSIGNMENT = "assignment"


class OwnerRole(StrEnum):
    """Who is to do the task, before it is resolved to a member."""

    SPEAKER = "speaker"
    ADDRESSEE = "addressee"
    NAMED = "named"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class ActionFinding:
    sentence: Sentence
    kind: ActionKind
    owner: OwnerRole
    owner_name: str | None
    owner_offset: int | None
    task_verb: Token
    hedged: bool
    follow_up: bool
    score: float

    @property
    def definitive(self) -> bool:
        """A clear owner, a firm commitment or assignment, and no hedging."""
        firm = self.kind in {ActionKind.COMMITMENT, ActionKind.ASSIGNMENT, ActionKind.IMPERATIVE}
        return firm and not self.hedged and self.owner is not OwnerRole.UNKNOWN

    def action_phrase(self) -> str:
        """The task itself ("send the deck over to Tom by Friday"), Symbl's ``action_phrase``."""
        verb = self.task_verb
        skipped = {
            t.i for c in verb.children if c.dep_ in {"nsubj", "nsubjpass", "aux", "auxpass", "neg"} for t in c.subtree
        }
        tokens = [t for t in verb.subtree if t.i not in skipped and t.i >= verb.i]
        while tokens and (tokens[-1].is_punct or tokens[-1].dep_ == "cc"):
            tokens.pop()
        return "".join(t.text_with_ws for t in tokens).strip()


def _children(token: Token, *deps: str) -> list[Token]:
    return [c for c in token.children if c.dep_ in deps]


def _subject(verb: Token) -> Token | None:
    """The clause's subject, following conjunctions and control verbs upward ("I'll update it and send it")."""
    current: Token | None = verb
    while current is not None:
        subjects = _children(current, "nsubj", "nsubjpass", "expl")
        if subjects:
            return subjects[0]
        if current.dep_ in {"conj", "xcomp"} and current.head is not current:
            current = current.head
        else:
            return None
    return None


@dataclass(frozen=True)
class _Clause:
    """A verb with what governs it: subject, modality, negation, question form."""

    head: Token
    task: Token
    subject: Token | None
    modality: str | None
    negated: bool
    inverted: bool
    past: bool


def _clause(verb: Token) -> _Clause:
    auxes = _children(verb, "aux", "auxpass")
    if verb.dep_ == "conj" and not auxes and not _children(verb, "nsubj"):
        auxes = _children(verb.head, "aux", "auxpass")
    subject = _subject(verb)
    negated = bool(_children(verb, "neg"))
    aux_lowers = {a.lower_ for a in auxes} | {a.lemma_.lower() for a in auxes}
    modality: str | None = None
    if aux_lowers & FUTURE_AUX:
        modality = "will"
    else:
        for word in ("should", "must", "can", "could", "would", "might", "may", "ca"):
            if word in aux_lowers:
                modality = "can" if word == "ca" else word
                break
    past = any(a.tag_ in {"VBD"} and a.lemma_ in {"be", "do", "have"} for a in auxes) or (
        not auxes and verb.tag_ in {"VBD", "VBN"}
    )
    task = verb
    # Control verbs hand the task to their complement: "going to send", "need to fix", "be able to ship".
    for _ in range(3):
        xcomps = _children(task, "xcomp")
        if task.lemma_ == "go" and task.tag_ == "VBG" and xcomps:
            modality = modality or "will"
            task = xcomps[0]
        elif task.lemma_ in OBLIGATION_VERBS and xcomps and xcomps[0].tag_ == "VB":
            # "We'd need to…" stays conditional; "we'll need to…" / "we need to…" oblige.
            modality = modality if modality in {"will", "should", "must", "would", "could", "might"} else "need"
            task = xcomps[0]
        elif task.lemma_ in {"try", "plan", "intend", "aim", "hope", "want", "like", "love", "mind"} and xcomps:
            modality = modality or task.lemma_
            task = xcomps[0]
        elif task.lemma_ == "be" and _children(task, "acomp"):
            acomp = _children(task, "acomp")[0]
            inner = _children(acomp, "xcomp")
            if acomp.lower_ in {"able", "happy", "glad", "sure"} and inner:
                task = inner[0]
            else:
                break
        else:
            break
    if task is not verb and _children(task, "neg"):
        negated = True
    inverted = bool(auxes) and subject is not None and min(a.i for a in auxes) < subject.i
    if not auxes and subject is not None and verb.lemma_ in {"be", "do", "have"} and verb.i < subject.i:
        inverted = True
    return _Clause(verb, task, subject, modality, negated, inverted, past)


def _is_person(token: Token, member_first_names: set[str]) -> bool:
    """A name as subject: a person, or an organisation that can take a task ("Acme signs by Friday")."""
    if token.lower_ in member_first_names and token.is_title:
        return True
    return token.pos_ == "PROPN" and token.ent_type_ in {"PERSON", "ORG", ""}


def _name_span(token: Token) -> Span:
    """The full name a subject token belongs to ("Tom Baker will…")."""
    for ent in token.doc.ents:
        if ent.start <= token.i < ent.end:
            return ent
    return token.doc[token.i : token.i + 1]


def _has_later_cue(span: Span) -> bool:
    return bool(LATER_CUES.search(span.text)) or any(
        e.label_ in {"DATE", "TIME"} and not _is_greeting(e) for e in span.ents
    )


def _is_greeting(ent: Span) -> bool:
    """ "Good morning" names the time of the greeting, not of a task."""
    return ent.start > 0 and ent.doc[ent.start - 1].lower_ == "good"


def _accepted_request(acceptance: Sentence, conversation: ParsedConversation) -> Sentence | None:
    """ "Can we schedule a call with Acme?" — "Sure, let's set that up.": the task is the request just accepted."""
    message = conversation.messages[acceptance.message_index]
    if acceptance.sentence_index != 0 or message.index == 0:
        return None
    previous = conversation.messages[message.index - 1]
    if previous.member.id == message.member.id or not previous.sentences:
        return None
    request = previous.sentences[-1]
    if REQUEST_QUESTION.match(content_text(request.span, conversation.first_names)):
        return request
    return None


def _content_free(finding: ActionFinding) -> bool:
    """A task whose only object is a pronoun and that names no time ("let's set that up", "I'll do it") says what
    to do only to someone who heard what came before: not a line to write down on its own."""
    task = finding.task_verb
    objects = [c for c in task.children if c.dep_ in {"dobj", "attr", "prep", "xcomp", "ccomp", "dative", "acomp"}]
    pronoun_only = all(c.pos_ == "PRON" for c in objects)
    span = finding.sentence.span
    return (
        pronoun_only
        and not any(e.label_ in {"DATE", "TIME"} for e in span.ents)
        and len([t for t in span if t.is_alpha]) <= SHORT_TASK_WORDS
    )


def _hedged(span: Span, clause: _Clause) -> bool:
    lowers = {t.lower_ for t in span}
    if clause.inverted:
        # "Could you…" is politeness, not doubt.
        lowers -= {"could", "may"}
    offered = clause.modality == "can" and not clause.inverted
    return bool(lowers & HEDGES) or bool(HEDGE_PHRASES.search(span.text)) or clause.modality == "try" or offered


def _task_is_concrete(task: Token, span: Span, *, immediate_ok: bool, procedural: bool = False) -> bool:
    lemma = task.lemma_.lower()
    if task.pos_ not in {"VERB", "AUX"} or lemma in NON_TASK_VERBS:
        return False
    if lemma == "tell" and any(c.lower_ in {"you", "what"} for c in task.children):
        return False
    immediate = PROCEDURAL_VERBS if procedural else REQUEST_IMMEDIATE_VERBS
    if immediate_ok or lemma not in immediate or _has_later_cue(span):
        return True
    # "talk to my manager", "check with legal": someone outside the call makes it a task, not a meeting move.
    return any(
        prep.lower_ in {"with", "to"}
        and any(
            o.dep_ == "pobj" and o.lower_ not in {"you", "us", "me", "everyone"} and o.pos_ in {"NOUN", "PROPN"}
            for o in prep.children
        )
        for prep in task.children
        if prep.dep_ == "prep"
    ) and lemma in {"talk", "check", "speak", "discuss", "go", "share", "review", "ask"}


def _finding(
    sentence: Sentence,
    clause: _Clause | None,
    kind: ActionKind,
    owner: OwnerRole,
    task: Token,
    name: Span | None = None,
) -> ActionFinding:
    span = sentence.span
    hedged = _hedged(span, clause) if clause else bool({t.lower_ for t in span} & HEDGES)
    base = {
        ActionKind.COMMITMENT: 0.9,
        ActionKind.ASSIGNMENT: 0.85,
        ActionKind.REQUEST: 0.85,
        ActionKind.IMPERATIVE: 0.8,
        ActionKind.PROPOSAL: 0.75,
    }[kind]
    has_date = any(e.label_ in {"DATE", "TIME"} for e in span.ents)
    score = min(0.99, base - (0.1 if hedged else 0.0) + (0.05 if has_date else 0.0))
    return ActionFinding(
        sentence=sentence,
        kind=kind,
        owner=owner,
        owner_name=name.text if name is not None else None,
        owner_offset=(name.start_char - span.start_char) if name is not None else None,
        task_verb=task,
        hedged=hedged,
        follow_up=bool(FOLLOW_UP.search(span.text)),
        score=round(score, 2),
    )


def _let_construction(sentence: Sentence, let: Token) -> ActionFinding | None:
    """ "Let's …" (proposal), "let me …" (the speaker commits), "let me know …" (a request)."""
    span = sentence.span
    following = let.nbor(1) if let.i + 1 < len(let.doc) else None
    complements = _children(let, "ccomp", "xcomp")
    if following is None or following.lower_ not in {"'s", "us", "me", "s"} or not complements:
        return None
    target, task = following.lower_, complements[0]
    if target == "me" and task.lemma_ == "know":
        if re.search(r"\bif\s+(?:you|there)\s+(?:have|has|are|is)\s+(?:any|other)", span.text, re.I):
            return None
        return _finding(sentence, None, ActionKind.REQUEST, OwnerRole.ADDRESSEE, task)
    if not _task_is_concrete(task, span, immediate_ok=False, procedural=True):
        return None
    if target in {"'s", "us", "s"}:
        return _finding(sentence, None, ActionKind.PROPOSAL, OwnerRole.SPEAKER, task)
    if target == "me":
        return _finding(sentence, None, ActionKind.COMMITMENT, OwnerRole.SPEAKER, task)
    return None


def _imperative(sentence: Sentence, verb: Token, opening: Opening) -> ActionFinding | None:
    span = sentence.span
    subject = _subject(verb)
    if (
        subject is not None
        and opening.vocative is not None
        and subject.i in range(opening.vocative.start, opening.vocative.end)
    ):
        subject = None  # "Ben, please renew it": the parser reads the vocative as the subject.
    if verb.tag_ != "VB" or subject is not None or _children(verb, "aux", "auxpass"):
        # "Don't forget to…" and "do remember to…" are the only auxiliaries an imperative task takes.
        negation = _children(verb, "neg")
        if not (verb.lemma_ in {"forget", "hesitate"} and negation):
            return None
    lead = [t for t in span[opening.index : verb.i - span.start] if not t.is_punct]
    if any(t.lower_ not in {"please", "just", "also", "and", "then", "so", "do", "n't", "definitely"} for t in lead):
        return None
    task = verb
    xcomps = _children(verb, "xcomp")
    if verb.lemma_ in {"forget", "remember", "make"} and (xcomps or _children(verb, "ccomp")):
        if verb.lemma_ == "forget" and not _children(verb, "neg"):
            return None
        task = (xcomps or _children(verb, "ccomp"))[0]
        if verb.lemma_ == "make":
            task = verb
    elif _children(verb, "neg"):
        return None
    if verb.lemma_ == "give" and re.search(r"\b(?:sec|second|minute|moment)\b", span.text, re.I):
        return None
    if not _task_is_concrete(task, span, immediate_ok=False) and task.lemma_ not in {"make", "forget", "remember"}:
        return None
    kind = ActionKind.REQUEST if any(t.lower_ == "please" for t in span) else ActionKind.IMPERATIVE
    return _finding(sentence, None, kind, OwnerRole.ADDRESSEE, task)


def _declared(sentence: Sentence, clause: _Clause, member_first_names: set[str]) -> ActionFinding | None:
    """A clause with a subject: commitments, requests in question form, and assignments."""
    span = sentence.span
    subject = clause.subject
    if subject is None or clause.negated or clause.past:
        return None
    who = subject.lower_
    modality = clause.modality
    task = clause.task
    # "I need you to…", "I'd like you to…", "I want you to…": a request to the addressee.
    if who == "i" and clause.head.lemma_ in {"need", "want", "like"}:
        dobj = _children(clause.head, "dobj", "nsubj")
        inner = _children(clause.head, "xcomp", "ccomp")
        addressed = inner and any(c.lower_ == "you" for c in list(inner[0].children) + dobj)
        if addressed:
            if _task_is_concrete(inner[0], span, immediate_ok=False):
                return _finding(sentence, clause, ActionKind.REQUEST, OwnerRole.ADDRESSEE, inner[0])
            return None
    if who in {"i", "we"}:
        if clause.inverted:
            return None
        if modality in {"will", "need", "must"} or (modality == "should" and who == "we"):
            kind = ActionKind.COMMITMENT if modality in {"will", "need", "must"} else ActionKind.PROPOSAL
        elif (modality == "can" and who == "i") or (
            modality in {"try", "plan", "intend", "aim"} and clause.head.tag_ != "VBD"
        ):
            kind = ActionKind.COMMITMENT
        else:
            return None
        if not _task_is_concrete(task, span, immediate_ok=True):
            return None
        return _finding(sentence, clause, kind, OwnerRole.SPEAKER, task)
    if who == "you":
        if clause.inverted and modality in {"can", "could", "would", "will"}:
            if modality == "would" and clause.head.lemma_ not in {"mind", "be"} and task is clause.head:
                return None
            if not _task_is_concrete(task, span, immediate_ok=False):
                return None
            return _finding(sentence, clause, ActionKind.REQUEST, OwnerRole.ADDRESSEE, task)
        if not clause.inverted and modality in {"will", "need", "must", "should"}:
            if not _task_is_concrete(task, span, immediate_ok=False):
                return None
            return _finding(sentence, clause, ActionKind.ASSIGNMENT, OwnerRole.ADDRESSEE, task)
        return None
    if clause.inverted:
        return None
    if _is_person(subject, member_first_names):
        dated = any(e.label_ in {"DATE", "TIME"} for e in span.ents)
        if modality in {"will", "need", "must", "should"} or (modality is None and task.tag_ == "VBZ" and dated):
            if not _task_is_concrete(task, span, immediate_ok=True):
                return None
            return _finding(sentence, clause, ActionKind.ASSIGNMENT, OwnerRole.NAMED, task, _name_span(subject))
        return None
    if who in THIRD_PERSON_SUBJECTS | GROUP_SUBJECTS and modality in {"will", "need", "must", "should"}:
        if not _task_is_concrete(task, span, immediate_ok=True):
            return None
        return _finding(sentence, clause, ActionKind.ASSIGNMENT, OwnerRole.UNKNOWN, task)
    return None


def find_action(sentence: Sentence, member_first_names: set[str]) -> ActionFinding | None:
    """The first task the sentence sets someone, or None."""
    span = sentence.span
    opening = sentence_opening(span, member_first_names)
    if opening.index >= len(span):
        return None
    first = span[opening.index]
    rest = span[opening.index :].text.lower()
    if ACKNOWLEDGEMENT.match(rest):
        return None
    if SHORT_COMMITMENT.match(rest):
        return _finding(sentence, None, ActionKind.COMMITMENT, OwnerRole.SPEAKER, first)
    # Wh-questions ask about tasks ("what will you do?") without setting one; "if" clauses only suppose one.
    if first.lower_ in WH_WORDS or first.lower_ in {"if", "unless", "whether"}:
        return None
    finding: ActionFinding | None = None
    for token in span[opening.index :]:
        if token.lemma_ == "let" and token.tag_ == "VB" and not _children(token, "nsubj", "aux"):
            finding = _let_construction(sentence, token)
        elif token.pos_ in {"VERB", "AUX"} and token.dep_ in {"ROOT", "conj", "ccomp", "parataxis"}:
            if token.dep_ != "ROOT" and token.head.lemma_ == "let":
                continue
            if any(
                c.dep_ == "mark" and c.lower_ in {"if", "unless", "when", "once", "whether"} for c in token.children
            ):
                continue
            # "I was wondering whether we should…", "I don't know if we'll…" report a task, they do not set one.
            if token.dep_ == "ccomp" and token.head.lemma_ in REPORTING_VERBS:
                continue
            finding = _declared(sentence, _clause(token), member_first_names)
            if finding is None and token.i - span.start >= opening.index:
                finding = _imperative(sentence, token, opening)
        if finding is not None:
            break
    if finding is not None and opening.vocative is not None and finding.owner is OwnerRole.ADDRESSEE:
        vocative = opening.vocative
        finding = ActionFinding(
            **{
                **finding.__dict__,
                "owner": OwnerRole.NAMED,
                "owner_name": vocative.text,
                "owner_offset": vocative.start_char - span.start_char,
            }
        )
    return finding


# Parts of speech whose words say what a sentence does rather than what it is about, so the model learns "you'll
# be working on" and not the subject matter of the meetings it was trained on.
FUNCTION_POS = {"VERB", "AUX", "PRON", "ADP", "PART", "ADV", "SCONJ", "DET", "INTJ"}
LATE_MARKS = (0.7, 0.8, 0.85, 0.9, 0.95)
SHORT_TASK_WORDS = 6
REQUEST_QUESTION = re.compile(r"^(?:can|could|should|shall|would)\s+(?:we|you|someone|somebody)\b", re.IGNORECASE)
MIN_ITEMS = 2
MAX_ITEMS = 12
WINDOW_MESSAGES = 3
NEXT_MEETING = re.compile(
    r"\b(?:next (?:meeting|time|week|call)|before (?:then|the next)|for next|homework|e-?mail)", re.I
)
# Selected sentences this close, by one speaker, are one task said in pieces ("for the interface, …").
MERGE_DISTANCE = 2
# How many further messages a trailing sentence may run on into.
CONTINUATION_MESSAGES = 2
NEIGHBOUR_ACCEPTS = {"okay", "ok", "sure", "yeah", "yes", "yep", "alright", "right", "fine", "cool", "great"}


def find_actions(conversation: ParsedConversation) -> list[ActionFinding | None]:
    """The rule's reading of every sentence of the conversation, in ``conversation.sentences()`` order."""
    return [find_action(sentence, conversation.first_names) for sentence in conversation.sentences()]


def action_features(index: int, findings: list[ActionFinding | None], conversation: ParsedConversation) -> Features:
    """What the action-item model weighs for sentence ``index``: the rule's reading, where and by whom it was said,
    its function words, and how many tasks are being handed out around it (assignments come in runs)."""
    sentences = conversation.sentences()
    sentence, finding = sentences[index], findings[index]
    message = conversation.messages[sentence.message_index]
    span = sentence.span
    features: Features = {}
    if finding is None:
        features["rule=none"] = 1.0
    else:
        features[f"kind={finding.kind}"] = 1.0
        features[f"owner={finding.owner}"] = 1.0
        for flag in ("hedged", "definitive", "follow_up"):
            if getattr(finding, flag):
                features[flag] = 1.0
    if any(e.label_ in {"DATE", "TIME"} for e in span.ents):
        features["dated"] = 1.0
    # Where it falls only means something in a conversation long enough to have an agenda and a wrap-up.
    if len(conversation.messages) >= 40:
        position = conversation.relative_position(message.index)
        for mark in LATE_MARKS:
            if position >= mark:
                features[f"late>={mark}"] = 1.0
        if position < 0.1:
            features["early"] = 1.0
    if conversation.chair_id is not None and message.member.id == conversation.chair_id:
        features["chair"] = 1.0
    words = [t for t in span if not t.is_punct and not t.is_space]
    features[
        f"length={'1-3' if len(words) <= 3 else '4-7' if len(words) <= 7 else '8-15' if len(words) <= 15 else '16+'}"
    ] = 1.0
    for token in words:
        if token.pos_ in FUNCTION_POS:
            features[f"lemma={token.lemma_.lower()}"] = 1.0
    lowers = [t.lower_ for t in words]
    for left, right in itertools.pairwise(lowers):
        features[f"pair={left} {right}"] = 1.0
    following = conversation.messages[message.index + 1 : message.index + 2]
    if following and following[0].member.id != message.member.id:
        first_word = following[0].text.strip().split(" ", 1)[0].strip(".,!?").lower()
        if first_word in NEIGHBOUR_ACCEPTS:
            features["next-accepts"] = 1.0
    nearby = [
        i
        for i in range(max(0, index - 2 * WINDOW_MESSAGES), min(len(sentences), index + 2 * WINDOW_MESSAGES + 1))
        if i != index and abs(sentences[i].message_index - sentence.message_index) <= WINDOW_MESSAGES
    ]
    tasks_nearby = sum(1 for i in nearby if findings[i] is not None)
    features[f"tasks-nearby={min(tasks_nearby, 3)}"] = 1.0
    if any(NEXT_MEETING.search(sentences[i].text) for i in [*nearby, index]):
        features["next-meeting-nearby"] = 1.0
    return features


@dataclass(frozen=True)
class ActionItem:
    """A task to write down: one sentence, or adjacent sentences of one speaker that state it together."""

    sentences: list[Sentence]
    finding: ActionFinding | None
    probability: float

    @property
    def first(self) -> Sentence:
        return self.sentences[0]

    @property
    def first_key(self) -> tuple[int, int]:
        return (self.first.message_index, self.first.sentence_index)

    @property
    def text(self) -> str:
        return " ".join(s.text for s in self.sentences)

    def written_text(self, member_first_names: set[str]) -> str:
        """The task as a note-taker writes it: from its clause on ("Not yet, I will call" → "I will call"), tidied."""
        span = self.first.span
        first = span.doc[clause_start(span, member_first_names, keep_opening=True) : span.end].text.strip()
        return tidy_spoken(" ".join([first, *(s.text for s in self.sentences[1:])]))

    @property
    def follow_up(self) -> bool:
        return bool(FOLLOW_UP.search(self.text))

    @property
    def definitive(self) -> bool:
        return self.finding is not None and self.finding.definitive


def action_item_budget(word_count: int, words_per_item: float) -> int:
    """How many items a person would write down: a few per call, more as a meeting runs longer."""
    return max(MIN_ITEMS, min(MAX_ITEMS, math.ceil(word_count / words_per_item)))


def select_action_items(conversation: ParsedConversation) -> list[ActionItem]:
    """In a meeting, the sentences the model ranks as tasks, at most the budget, adjacent ones of one speaker merged;
    in a short call, every task the rules find."""
    model = load_model("action_items")
    findings = find_actions(conversation)
    scored = [
        ScoredSentence(model.probability(action_features(i, findings, conversation)), sentence, findings[i])
        for i, sentence in enumerate(conversation.sentences())
    ]
    if not conversation.is_meeting:
        # A short call is not what the model learned from (meetings whose summaries list a few tasks): every
        # explicit task the rules find in it is worth writing down.
        items = []
        for candidate in scored:
            if candidate.finding is None:
                continue
            if not _content_free(candidate.finding):
                items.append(ActionItem([candidate.sentence], candidate.finding, candidate.probability))
            elif (request := _accepted_request(candidate.sentence, conversation)) is not None:
                items.append(ActionItem([request], candidate.finding, candidate.probability))
        return items
    budget = action_item_budget(conversation.word_count, float(model.metadata["wordsPerItem"]))
    return choose_action_items(scored, conversation, model.threshold, budget)


@dataclass(frozen=True)
class ScoredSentence:
    probability: float
    sentence: Sentence
    finding: ActionFinding | None


def choose_action_items(
    scored: list[ScoredSentence], conversation: ParsedConversation, threshold: float, budget: int
) -> list[ActionItem]:
    """The ``budget`` most probable sentences over ``threshold``, in order, adjacent ones of one speaker merged."""
    ranked = sorted(
        (s for s in scored if s.probability >= threshold),
        key=lambda s: (-s.probability, s.sentence.message_index, s.sentence.sentence_index),
    )
    chosen = sorted(ranked[:budget], key=lambda s: (s.sentence.message_index, s.sentence.sentence_index))
    items: list[ActionItem] = []
    for candidate in chosen:
        sentence = candidate.sentence
        previous = items[-1] if items else None
        if (
            previous is not None
            and sentence.message_index - previous.sentences[-1].message_index <= MERGE_DISTANCE
            and conversation.messages[sentence.message_index].member.id
            == conversation.messages[previous.first.message_index].member.id
        ):
            items[-1] = ActionItem(
                [*previous.sentences, sentence],
                previous.finding or candidate.finding,
                max(previous.probability, candidate.probability),
            )
        else:
            items.append(ActionItem([sentence], candidate.finding, candidate.probability))
    return [_with_continuation(item, conversation) for item in items]


def _with_continuation(item: ActionItem, conversation: ParsedConversation) -> ActionItem:
    """The item with the speaker's next messages while its last sentence trails off ("for the interface, …")."""
    sentences = list(item.sentences)
    speaker = conversation.messages[item.first.message_index].member.id
    for _ in range(CONTINUATION_MESSAGES):
        last = sentences[-1]
        following = conversation.messages[last.message_index + 1 : last.message_index + 2]
        last_message = conversation.messages[last.message_index]
        trailing = last.sentence_index == len(last_message.sentences) - 1 and not last.text.endswith((".", "?", "!"))
        if not trailing or not following or following[0].member.id != speaker or not following[0].sentences:
            break
        sentences.append(following[0].sentences[0])
    return item if len(sentences) == len(item.sentences) else ActionItem(sentences, item.finding, item.probability)
