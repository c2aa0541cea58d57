"""Named entities grouped by (type, value), with the request's custom entities.

The small spaCy model mixes up people and organisations; the conversation's own speaker names are the best
evidence of who is a person, so a per-conversation ``EntityRuler`` marks them before grouping.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from spacy.language import Language
from spacy.matcher import PhraseMatcher
from spacy.pipeline import EntityRuler
from spacy.tokens import Doc

from parley_engine.analysis.dates import date_phrase, iso_utc, resolve_moment
from parley_engine.analysis.segmentation import TimedMessage
from parley_engine.conversation import CustomEntity

SPACY_TO_SYMBL = {
    "PERSON": "person",
    "ORG": "organization",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
    "DATE": "date",
    "TIME": "time",
    "CARDINAL": "number",
    "QUANTITY": "number",
    "MONEY": "money",
    "PERCENT": "percent",
}
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "fifteen": 15, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "hundred": 100, "thousand": 1000, "million": 1_000_000, "billion": 1_000_000_000,
}  # fmt: skip
SCALE_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "thousand": 1e3, "million": 1e6, "billion": 1e9, "grand": 1e3}
CURRENCIES = {"$": "USD", "€": "EUR", "£": "GBP", "dollar": "USD", "euro": "EUR", "pound": "GBP", "buck": "USD"}
# Words the small model labels as entities in speech but that never are ("Um", "Yeah").
NOT_ENTITIES = {"um", "uh", "yeah", "okay", "ok", "hi", "hey", "thanks", "bye", "wow", "hmm"}


def speaker_ruler(nlp: Language, names: Iterable[str]) -> EntityRuler | None:
    """An EntityRuler (outside the shared pipeline, so conversations do not race) labelling speakers PERSON."""
    patterns: list[dict[str, Any]] = []
    for name in sorted({n.strip() for n in names if n and n.strip()}):
        parts = name.split()
        patterns.append({"label": "PERSON", "pattern": [{"LOWER": part.lower()} for part in parts]})
        if len(parts) > 1 and len(parts[0]) > 1:
            patterns.append({"label": "PERSON", "pattern": [{"LOWER": parts[0].lower()}]})
    if not patterns:
        return None
    ruler = EntityRuler(nlp, overwrite_ents=True)
    ruler.add_patterns(patterns)
    return ruler


def _number_value(text: str) -> float | None:
    cleaned = text.lower().replace(",", "").strip()
    match = re.search(r"(\d+(?:\.\d+)?)\s*(k|m|b|thousand|million|billion|grand)?\b", cleaned)
    if match:
        return float(match.group(1)) * SCALE_SUFFIXES.get(match.group(2) or "", 1.0)
    total, current = 0.0, 0.0
    found = False
    for word in re.findall(r"[a-z]+", cleaned):
        if word not in NUMBER_WORDS:
            continue
        found = True
        value = NUMBER_WORDS[word]
        if value >= 1000:
            total += max(current, 1) * value
            current = 0
        elif value == 100:
            current = max(current, 1) * 100
        else:
            current += value
    return total + current if found else None


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def entity_value(label: str, text: str, conversation_start: datetime) -> str:
    """The normalised ``value`` Symbl shows next to the spoken ``text``."""
    if label == "DATE":
        moment = resolve_moment(text, conversation_start)
        return moment.date().isoformat() if moment else text
    if label == "TIME":
        moment = resolve_moment(text, conversation_start)
        return iso_utc(moment) if moment else text
    if label in {"CARDINAL", "QUANTITY", "PERCENT"}:
        number = _number_value(text)
        return _format_number(number) if number is not None else text
    if label == "MONEY":
        number = _number_value(text)
        lowered = text.lower()
        currency = next((code for mark, code in CURRENCIES.items() if mark in lowered), "USD")
        return f"{_format_number(number)} {currency}" if number is not None else text
    return text


@dataclass
class _Group:
    type: str
    value: str
    text: str
    custom_type: str | None = None
    refs: list[dict[str, Any]] = field(default_factory=list)

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "value": self.value, "text": self.text, "messageRefs": self.refs}
        if self.custom_type is not None:
            body = {"type": "custom", "customType": self.custom_type, **{k: v for k, v in body.items() if k != "type"}}
        return body


def _person_value(text: str, speaker_names: list[str]) -> str:
    lowered = text.lower()
    for name in speaker_names:
        if name.lower() == lowered or name.split()[0].lower() == lowered:
            return name
    return text


def extract_entities(
    messages: list[TimedMessage],
    conversation_start: datetime,
    speaker_names: list[str],
    custom: list[CustomEntity],
    nlp: Language,
    *,
    detect: bool,
) -> list[dict[str, Any]]:
    """Entities of the whole conversation, grouped by (type, value) in order of first mention."""
    groups: dict[tuple[str, str, str | None], _Group] = {}

    def add(key_type: str, value: str, text: str, message: TimedMessage, offset: int, custom_type: str | None) -> None:
        key = (key_type, value.lower(), custom_type)
        group = groups.setdefault(key, _Group(key_type, value, text, custom_type))
        ref = {"id": message.id, "text": message.text, "offset": offset}
        if ref not in group.refs:
            group.refs.append(ref)

    matcher = _custom_matcher(nlp, custom)
    for message in messages:
        doc = message.doc
        if doc is None:
            continue
        if detect:
            for ent in doc.ents:
                symbl_type = SPACY_TO_SYMBL.get(ent.label_)
                if symbl_type is None or ent.text.lower() in NOT_ENTITIES or not ent.text.strip():
                    continue
                if ent.label_ == "PERSON":
                    value = _person_value(ent.text, speaker_names)
                else:
                    phrase = date_phrase(ent) if ent.label_ in {"DATE", "TIME"} else ent.text
                    value = entity_value(ent.label_, phrase, conversation_start)
                add(symbl_type, value, ent.text, message, ent.start_char, None)
        if matcher is not None:
            for match_id, start, end in matcher(doc):
                entity = custom[int(nlp.vocab.strings[match_id].split(":", 1)[1])]
                span = doc[start:end]
                add("custom", entity.value or entity.text, span.text, message, span.start_char, entity.custom_type)
    return [group.body() for group in groups.values()]


def _custom_matcher(nlp: Language, custom: list[CustomEntity]) -> PhraseMatcher | None:
    if not custom:
        return None
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    for index, entity in enumerate(custom):
        matcher.add(f"custom:{index}", [nlp.make_doc(entity.text)])
    return matcher


def mark_speakers(docs: Iterable[Doc], ruler: EntityRuler | None) -> None:
    """Apply the speaker-name ruler to already-parsed docs in place."""
    if ruler is None:
        return
    for doc in docs:
        ruler(doc)
