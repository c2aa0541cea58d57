"""Questions: sentences that ask something, with or without a question mark.

Two layers. ``question_rule_score`` reads interrogative syntax off the parse (an auxiliary before its subject, a
wh-word before a verb, indirect forms such as "I was wondering whether"). ``question_probability`` is a logistic
regression trained on ICSI meetings (``models/questions.json``, fitted by ``parley_devtools.train_insight_models``)
that weighs the rule with the sentence's opening and closing words, so questions are found from their words and
structure when speech-to-text or a chat export has left no "?".
"""

from __future__ import annotations

import itertools
import re

from parley_engine.analysis.linear_model import Features, load_model
from parley_engine.analysis.parsed_conversation import ParsedConversation
from parley_engine.analysis.segmentation import Sentence
from parley_engine.analysis.sentence_opening import DISCOURSE_WORDS, sentence_opening

WH_WORDS = {"what", "when", "where", "who", "whom", "whose", "why", "how", "which"}
QUESTION_AUXILIARIES = {
    "do", "does", "did", "is", "are", "was", "were", "am", "can", "could", "would", "will", "should", "shall",
    "have", "has", "had", "may", "might", "must", "wo", "ca", "is'nt",
}  # fmt: skip
INDIRECT_QUESTION = re.compile(
    r"^(?:i\s+was\s+wondering|i'm\s+wondering|i\s+am\s+wondering|i\s+wonder|wondering|i'm\s+curious|i\s+am\s+curious"
    r"|curious)\s+(?:if|whether|what|how|when|why|who|where|about)\b"
    r"|^any\s+(?:idea|ideas|thoughts|update|updates|news|questions|chance|objections|concerns|feedback)\b"
    r"|^(?:can|could)\s+(?:someone|somebody|anyone|anybody)\s+(?:tell|explain|remind)\b"
    r"|^(?:tell|remind)\s+me\s+(?:what|how|when|why|where|who|if|whether)\b"
    r"|^i'd\s+(?:like|love)\s+to\s+(?:know|understand|hear)\s+(?:what|how|when|why|where|who|if|whether)\b",
    re.IGNORECASE,
)


def question_rule_score(sentence: Sentence, member_first_names: set[str]) -> float | None:
    """How surely the sentence asks something, or None when it does not."""
    span = sentence.span
    text = sentence.text
    if not any(ch.isalpha() for ch in text):
        return None
    if text.rstrip("\"' )").endswith("?"):
        return 0.95
    opening = sentence_opening(span, member_first_names)
    tokens = list(span)[opening.index :]
    words = [t for t in tokens if not t.is_punct]
    if len(words) < 2:
        return None
    rest = span[opening.index :].text
    if INDIRECT_QUESTION.search(rest):
        return 0.8
    first, second = words[0], words[1]
    if first.lower_ in {"anything", "anyone", "anybody", "any"} and (
        first.dep_ == "ROOT" or (first.head.dep_ == "ROOT" and first.head.pos_ == "NOUN")
    ):
        # Elliptical questions: "Anything that didn't go well", "Any blockers".
        return 0.7
    if first.lower_ in WH_WORDS:
        if second.lower_ in {"if", "about", "else"} or second.pos_ in {"AUX", "VERB"}:
            return 0.8 if first.lower_ not in {"when", "where"} or second.pos_ == "AUX" else None
        if first.lower_ == "how" and second.lower_ in {"many", "much", "long", "often", "far", "soon", "come"}:
            return 0.8
        if first.lower_ in {"what", "which", "whose"} and second.pos_ == "NOUN":
            # "What kind of number were you hoping for": an auxiliary before its subject, a few words in.
            for left, right in itertools.pairwise(words):
                if left.pos_ == "AUX" and right.dep_ in {"nsubj", "nsubjpass", "expl"}:
                    return 0.75
        return None
    if first.lower_ in QUESTION_AUXILIARIES and first.pos_ in {"AUX", "VERB"}:
        subject = second
        if subject.lower_ in {"n't", "not"} and len(words) > 2:
            subject = words[2]
        # The subject must follow before any pause: "Are other customers affected" but not "Will do, I'll…".
        before_pause = list(itertools.takewhile(lambda t: not t.is_punct, tokens[tokens.index(first) + 1 :]))[:4]
        if any(w.dep_ in {"nsubj", "nsubjpass", "expl"} for w in before_pause) or (
            subject.pos_ in {"PRON", "PROPN", "DET"} and subject.lower_ not in {"that", "this"} and first.lower_ != "do"
        ):
            return 0.85
        if subject.lower_ in {"you", "we", "i", "they", "he", "she", "there", "anyone", "anybody", "someone"}:
            return 0.85
    return None


TAG_WORDS = {"right", "okay", "ok", "yeah", "yes", "no", "correct", "huh", "see", "eh", "nuh", "alright", "true", "hm"}
# The rule's score from which a short exchange's sentence counts as asked by its syntax alone.
SYNTAX_QUESTION = 0.75
# How many closing words the model reads ("…, right", "… or not").
CLOSING_WORDS = 2


def question_features(sentence: Sentence, conversation: ParsedConversation) -> Features:
    """What the question model weighs: the rule's verdict, the opening and closing words, their parts of speech,
    and how the next speaker answers.

    A conversation written with punctuation says something by a missing "?"; one without says nothing, so every
    feature is named for which kind of text it was seen in ("p:" or "u:"), and the model weighs them apart.
    """
    span = sentence.span
    first_names = conversation.first_names
    opening = sentence_opening(span, first_names)
    words = [t for t in span if not t.is_punct and not t.is_space]
    content = [t for t in span[opening.index :] if not t.is_punct and not t.is_space]
    features: Features = {}
    rule = question_rule_score(sentence, first_names)
    marked = sentence.text.rstrip("\"' )").endswith("?")
    if marked:
        features["ends=?"] = 1.0
    elif rule is not None:
        features["rule"] = 1.0
        features[f"rule={rule:.2f}"] = 1.0
    lowers = [t.lower_ for t in content]
    tags = [t.pos_ for t in content]
    for n in (1, 2, 3):
        if len(lowers) >= n:
            features[f"first{n}={' '.join(lowers[:n])}"] = 1.0
            features[f"firstpos{n}={' '.join(tags[:n])}"] = 1.0
    for n in range(1, CLOSING_WORDS + 1):
        if len(words) >= n:
            features[f"last{n}={' '.join(t.lower_ for t in words[-n:])}"] = 1.0
    if words and words[0].lower_ in DISCOURSE_WORDS:
        features[f"lead={words[0].lower_}"] = 1.0
    if any(t.lower_ in WH_WORDS for t in content):
        features["wh-anywhere"] = 1.0
    if opening.vocative is not None:
        features["vocative"] = 1.0
    length = len(words)
    features[f"length={length if length < 8 else ('8-12' if length <= 12 else '13+')}"] = 1.0
    message = conversation.messages[sentence.message_index]
    if sentence.sentence_index == len(message.sentences) - 1:
        # A question is usually followed by another speaker's answer: "yeah", "no", "i think…".
        following = conversation.messages[message.index + 1 : message.index + 2]
        if not following:
            features["next=none"] = 1.0
        elif following[0].member.id == message.member.id:
            features["next=same-speaker"] = 1.0
        else:
            answer = following[0].text.lower().split()
            features[f"next-first={answer[0].strip('.,?!') if answer else ''}"] = 1.0
            if len(answer) <= 2:
                features["next-short"] = 1.0
    else:
        features["not-last-in-message"] = 1.0
    kind = "p:" if conversation.punctuated else "u:"
    return {kind + name: value for name, value in features.items()}


def question_probability(sentence: Sentence, conversation: ParsedConversation) -> float:
    return load_model("questions").probability(question_features(sentence, conversation))


def is_lone_tag(sentence: Sentence) -> bool:
    """ "Right?", "Okay?", "Yeah?": a bid for agreement, not a question anyone wants listed."""
    words = [t.lower_ for t in sentence.span if not t.is_punct and not t.is_space]
    return len(words) == 0 or (len(words) == 1 and words[0] in TAG_WORDS)


def question_threshold(conversation: ParsedConversation) -> float:
    """The decision threshold for this kind of text (chosen apart for punctuated and unpunctuated text)."""
    model = load_model("questions")
    kind = "punctuated" if conversation.punctuated else "unpunctuated"
    return float(model.metadata.get("thresholds", {}).get(kind, model.threshold))


def is_listed_question(sentence: Sentence, probability: float, conversation: ParsedConversation) -> bool:
    """A question a person wants listed: not a lone tag, and the model says so, or, in a short exchange (where a
    writer's missing "?" is a slip, not a statement), its syntax asks."""
    if is_lone_tag(sentence):
        return False
    if probability >= question_threshold(conversation):
        return True
    if conversation.is_meeting:
        return False
    rule = question_rule_score(sentence, conversation.first_names)
    return rule is not None and rule >= SYNTAX_QUESTION
