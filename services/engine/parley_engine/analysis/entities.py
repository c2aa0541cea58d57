"""Named entities grouped by (type, value), with the request's custom entities.

The small spaCy model mixes up people and organisations; the conversation's own speaker names are the best
evidence of who is a person, so a per-conversation ``EntityRuler`` marks them before grouping.

The model's spans are then judged the way a reader of the entity list would judge them: a name must be written
as one and not stand for a thing ("the Bill", "Welsh children"); a number must be a quantity, not "one" standing
for a noun or the "eight" of "function F8"; a date must be a day or period that can be placed on the calendar
(``dates.calendar_entity``). Within one conversation a name keeps one sense.
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
from spacy.tokens import Doc, Span, Token

from parley_engine.analysis.dates import calendar_entity, is_duration, is_plain_number
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
NAME_LABELS = {"PERSON", "ORG", "GPE", "LOC", "FAC"}
NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8, "nine": 9,
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19, "twenty": 20, "thirty": 30, "forty": 40, "fifty": 50,
    "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90, "hundred": 100, "thousand": 1000,
    "million": 1_000_000, "billion": 1_000_000_000, "dozen": 12,
}  # fmt: skip
SCALE_WORDS = {"hundred", "thousand", "million", "billion"}
SCALE_SUFFIXES = {"k": 1e3, "m": 1e6, "b": 1e9, "thousand": 1e3, "million": 1e6, "billion": 1e9, "grand": 1e3}
CURRENCIES = {
    "$": "USD", "€": "EUR", "£": "GBP", "dollar": "USD", "euro": "EUR", "pound": "GBP", "buck": "USD",
    "cent": "USD", "quid": "GBP", "pence": "GBP", "penny": "GBP",
}  # fmt: skip
CURRENCY_SYMBOLS = {"$", "€", "£"}
CURRENCY_WORDS = {
    "dollar", "dollars", "euro", "euros", "pound", "pounds", "cent", "cents", "buck", "bucks", "quid", "pence",
}  # fmt: skip
# Words the small model labels as entities in speech but that never are ("Um", "Yeah").
NOT_ENTITIES = {
    "um", "uh", "yeah", "okay", "ok", "hi", "hey", "thanks", "bye", "wow", "hmm", "mm", "mhm", "alright", "yep",
    "yes", "no", "right", "sorry", "gosh", "huh", "oh", "ah", "eh", "hm", "laughter", "wanna", "gonna",
}  # fmt: skip
# Words in front of an amount that are not part of it ("about $5,000", "up to 12 Euros").
APPROXIMATORS = {
    "about", "around", "approximately", "roughly", "nearly", "almost", "some", "over", "under", "just", "only",
    "up", "to", "at", "least", "most", "more", "less", "than", "as", "much", "many", "an", "extra", "another",
    "additional", "a", "further", "of", "the", "between", "from",
}  # fmt: skip
# Words between two amounts of a range ("fifteen and twenty five", "£1 million to £26 million").
RANGE_JOINERS = {"and", "or", "to", "through"}
NUMBER_JOINERS = RANGE_JOINERS | {"point", "a", "-", "/"}
# Titles and honorifics that belong to no one's name.
TITLES = {
    "mr", "mrs", "ms", "miss", "mx", "dr", "prof", "professor", "hon", "right", "sir", "dame", "lord", "lady", "am",
    "mp", "mla", "mpp", "madam", "madame", "chair", "minister", "the", "rev",
}  # fmt: skip
# Speaker labels that are no name at all ("Speaker 1", "Unknown Speaker").
SPEAKER_LABELS = {
    "speaker", "unknown", "guest", "host", "participant", "caller", "agent", "customer", "user", "moderator",
    "interviewer", "interviewee", "presenter", "attendee", "member", "person",
}  # fmt: skip
# Words that make an "organisation" a role ("Minister of Health", "Industrial Designer", "Auditor General").
ROLES = {
    "minister", "secretary", "auditor", "chair", "chairman", "chairwoman", "director", "president", "manager",
    "designer", "officer", "commissioner", "speaker", "clerk", "deputy", "chief", "head", "governor", "leader",
    "member", "expert", "engineer", "vice",
}  # fmt: skip
# Words that make a "person" an organisation ("Jesus College", "Qualifications Wales", "Acme Inc").
ORGANISATION_NOUNS = {
    "college", "university", "universities", "council", "committee", "association", "board", "trust", "agency",
    "department", "ministry", "school", "schools", "hospital", "bank", "company", "inc", "ltd", "llc", "corp",
    "foundation", "institute", "society", "union", "party", "network", "group", "wales", "england", "scotland",
    "government", "services", "qualifications", "consortium", "commission", "authority", "office",
}  # fmt: skip
# Nouns whose following number names one of them ("item 2") even when the tagger reads the noun as a verb.
IDENTIFIED_NOUNS = {
    "item", "note", "page", "paragraph", "section", "chapter", "slide", "step", "option", "question", "room",
    "channel", "channels", "version", "amendment", "amendments", "clause", "article", "level", "stage", "phase",
    "line", "figure", "table", "appendix", "participant", "speaker", "number", "mic", "track", "episode", "season",
    "part", "point", "group", "team", "floor",
}  # fmt: skip
ARTICLES = {"the", "a", "an", "this", "that", "these"}
_TRAILING_PUNCTUATION = {".", ",", ";", ":", "!", "?", "'", '"', "-", "—", ")", "("}
_PERCENT = re.compile(r"%|\bper\s*cents?\b|\bpercents?\b", re.IGNORECASE)


@dataclass(frozen=True)
class FoundEntity:
    """One mention as Symbl reports it: its type, its normalised value and the span that was said."""

    type: str
    value: str
    span: Span


def _name_parts(name: str) -> list[str]:
    """The words of a speaker's name that are a person's names: no parenthesis, title or speaker label."""
    without_asides = re.sub(r"\([^()]*\)|\([^()]*$", " ", re.sub(r"\([^()]*\([^()]*\)[^()]*\)", " ", name))
    parts = re.findall(r"[^\W\d_][\w'\u2019-]*", without_asides)
    if any(part.lower() in SPEAKER_LABELS for part in parts):
        return []  # "Speaker 1", "Unknown Speaker": a label, not a name
    return [part for part in parts if part.lower() not in TITLES and len(part) > 1]


def _name_pattern(part: str) -> dict[str, Any]:
    # Names are matched as written, capitalised: lower-case "bill", "mark" or "will" are words, not Bill.
    spellings = sorted({part, part[:1].upper() + part[1:], part.upper()})
    return {"ORTH": {"IN": spellings}}


def speaker_ruler(nlp: Language, names: Iterable[str]) -> EntityRuler | None:
    """An EntityRuler (outside the shared pipeline, so conversations do not race) labelling speakers PERSON."""
    patterns: list[dict[str, Any]] = []
    stop_words = nlp.Defaults.stop_words
    for name in sorted({n.strip() for n in names if n and n.strip()}):
        parts = _name_parts(name)
        if not parts:
            continue
        patterns.append({"label": "PERSON", "pattern": [_name_pattern(part) for part in parts]})
        if len(parts) > 1 and parts[0].lower() not in stop_words:
            patterns.append({"label": "PERSON", "pattern": [_name_pattern(parts[0])]})
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
    total, current, decimals = 0.0, 0.0, ""
    found = after_point = False
    for word in re.findall(r"[a-z]+", cleaned):
        if word == "point" and found:
            after_point = True
            continue
        if word not in NUMBER_WORDS:
            continue
        found = True
        value = NUMBER_WORDS[word]
        if after_point:
            decimals += str(value) if value < 10 else ""
        elif value >= 1000:
            total += max(current, 1) * value
            current = 0
        elif value == 100:
            current = max(current, 1) * 100
        else:
            current += value
    if not found:
        return None
    return total + current + (float(f"0.{decimals}") if decimals else 0.0)


def _format_number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:g}"


def _trim(span: Span, leading: set[str]) -> Span:
    """The span without leading ``leading`` words ("a" of "a hundred" stays), trailing possessives and punctuation."""
    start, end = span.start, span.end
    while start < end - 1 and span.doc[start].lower_ in leading:
        if span.doc[start].lower_ in {"a", "an"} and span.doc[start + 1].lower_ in SCALE_WORDS | {"dozen"}:
            break
        start += 1
    while end > start + 1 and (span.doc[end - 1].tag_ == "POS" or span.doc[end - 1].text in _TRAILING_PUNCTUATION):
        end -= 1
    return span.doc[start:end]


def _written_as_name(span: Span) -> bool:
    """A name is a capitalised proper noun; in a transcript written all in lower case there is no telling."""
    if not any(character.isupper() for character in span.doc.text):
        return True
    return any(token.pos_ == "PROPN" and (token.is_title or token.is_upper) for token in span)


def _stands_for_a_thing(span: Span) -> bool:
    """ "the Bill", "Welsh children", "the Wiener filter": a word with an article or before a noun is no one's name."""
    root = span.root
    if root.dep_ in {"compound", "amod", "nmod"} and root.head.pos_ == "NOUN" and root.head.i >= span.end:
        return True
    first = span[0] if span[0].pos_ == "DET" else span.doc[span.start - 1] if span.start > 0 else None
    return first is not None and first.tag_ == "DT" and first.lower_ in ARTICLES


def _name_entity(ent: Span, speaker_names: list[str]) -> FoundEntity | None:
    span = _trim(ent, {"the", "a", "an"} | (TITLES if ent.label_ == "PERSON" else set()))
    if not _written_as_name(span) or all(token.lower_.rstrip(".") in TITLES for token in span):
        return None
    if span.start_char > 0 and span.doc.text[span.start_char - 1] in {"'", "\u2019"}:
        return None  # "'Kay", "'Cause": a clipped word, not a name
    if ent.label_ == "ORG" and (span[0].lower_ in ROLES or span[-1].lower_ in ROLES):
        return None  # "Minister of Health", "Industrial Designer": a role
    if ent.label_ != "PERSON":
        return FoundEntity(SPACY_TO_SYMBL[ent.label_], span.text, span)
    if any(token.lower_ in ORGANISATION_NOUNS for token in span):
        return FoundEntity("organization", span.text, span)  # "Jesus College", "Universities Wales"
    if _stands_for_a_thing(ent) or any(character.isdigit() for character in span.text):
        return None  # "the Bill", "Bill S-204"
    return FoundEntity("person", _person_value(span.text, speaker_names), span)


def _is_identifier(span: Span) -> bool:
    """ "channel one", "function F_ eight", "note 3": a number that follows the noun it names is a label."""
    before = span.start - 1
    while before >= 0 and span.doc[before].text in {"_", "-", "#", "no", "No", "number"}:
        before -= 1
    if before < 0:
        return False
    noun = span.doc[before]
    return noun.lower_ in IDENTIFIED_NOUNS or (noun.tag_ in {"NN", "NNS", "NNP", "NNPS"} and not noun.is_stop)


def _is_pronoun_one(span: Span) -> bool:
    """ "which one", "the first one", "one of them", "one thing", "one would think": "one" standing for a noun."""
    if len(span) != 1 or span[0].lower_ != "one":
        return False
    token = span[0]
    if any(child.dep_ in {"det", "amod", "prep", "compound", "poss"} for child in token.children):
        return True
    previous = token.doc[token.i - 1].lower_ if token.i > 0 else ""
    return token.dep_ not in {"attr", "pobj", "conj", "appos"} or previous in ARTICLES | {"no"}


def _widened(span: Span) -> Span:
    """The amount with what spaCy leaves outside it: the "$" of "$5,000", "per cent", the "Euros" of "twelve Euros"."""
    doc = span.doc
    start, end = span.start, span.end
    if start > 0 and doc[start - 1].text in CURRENCY_SYMBOLS:
        start -= 1
    following = doc[end : end + 2].text.lower()
    if following.startswith(("%", "percent")):
        end += 1
    elif following.startswith("per cent"):
        end += 2
    elif end < len(doc) and doc[end].lower_ in CURRENCY_WORDS:
        end += 1
    return doc[start:end]


def _is_amount_token(token: Token) -> bool:
    return token.like_num or any(character.isdigit() for character in token.text)


def _range_parts(span: Span) -> list[Span]:
    """ "fifteen and twenty five", "five, six, eight" -> one amount each; "two hundred and fifty" and "twelve and a
    half" stay one, while "five hundred and two thousand" is two (the second is no part of a hundred)."""
    parts: list[Span] = []
    start = span.start
    for token in span:
        if (token.lower_ not in RANGE_JOINERS and token.text != ",") or token.i in {span.start, span.end - 1}:
            continue
        left, right = span.doc[token.i - 1], span.doc[token.i + 1]
        rest = {t.lower_ for t in span.doc[token.i + 1 : span.end]}
        if token.lower_ == "and" and (
            right.lower_ in {"a", "half"} or (left.lower_ in SCALE_WORDS and not rest & SCALE_WORDS)
        ):
            continue
        left_is_amount = _is_amount_token(left) or left.lower_ in CURRENCY_WORDS
        if left_is_amount and (_is_amount_token(right) or right.text in CURRENCY_SYMBOLS):
            parts.append(span.doc[start : token.i])
            start = token.i + 1
    parts.append(span.doc[start : span.end])
    return parts


def _amount_entities(ent: Span) -> list[FoundEntity]:
    """The numbers, amounts of money and percentages of a CARDINAL/QUANTITY/MONEY/PERCENT span (two for a range)."""
    span = _trim(_widened(ent), APPROXIMATORS)
    has_currency = any(token.lower_ in CURRENCY_WORDS or token.text in CURRENCY_SYMBOLS for token in span)
    label = "MONEY" if has_currency else ent.label_
    if label == "QUANTITY" and is_duration(span):
        return []  # "five hundred milliseconds": an amount of time, which Symbl has no type for
    if label in {"CARDINAL", "DATE", "TIME"} and not all(
        token.like_num or token.is_punct or token.lower_ in NUMBER_WORDS or token.lower_ in NUMBER_JOINERS
        for token in span
    ):
        return []  # "1a", or a cut-off word ("sixt", "mor") the model read as a number
    if _PERCENT.search(span.text):
        number = _number_value(span.text)
        return [] if number is None else [FoundEntity("percent", _format_number(number), span)]
    parts = _range_parts(span)
    if label == "MONEY" and not all(
        any(token.lower_ in CURRENCY_WORDS or token.text in CURRENCY_SYMBOLS for token in part) for part in parts
    ):
        parts = [span]  # "twelve to fifteen Euros": the currency belongs to both, keep the range whole
    found = []
    for part in parts:
        number = _number_value(_range_parts(part)[0].text)  # a range kept whole is worth its lower end
        if number is None:
            continue
        lowered = part.text.lower()
        currency = next((code for mark, code in CURRENCIES.items() if mark in lowered), None)
        if label == "MONEY" and currency is not None:
            found.append(FoundEntity("money", f"{_format_number(number)} {currency}", part))
        elif not _is_pronoun_one(part) and not _is_identifier(part):
            found.append(FoundEntity("number", _format_number(number), part))  # "500,000" said with no currency too
    return found


def symbl_entities(ent: Span, conversation_start: datetime, speaker_names: list[str]) -> list[FoundEntity]:
    """What a spaCy entity is in Symbl's terms: usually one entity, two for a range, none for a false alarm."""
    if ent.label_ not in SPACY_TO_SYMBL or all(
        token.is_punct or token.is_space or token.lower_ in NOT_ENTITIES or token.pos_ == "INTJ" for token in ent
    ):
        return []
    if ent.label_ in NAME_LABELS:
        found = _name_entity(ent, speaker_names)
        return [found] if found is not None else []
    if ent.label_ in {"DATE", "TIME"} and not is_plain_number(ent):
        placed = calendar_entity(ent, conversation_start)
        return [FoundEntity(placed[0], placed[1], ent)] if placed is not None else []
    return _amount_entities(ent)


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
        parts = _name_parts(name) or name.split()
        if name.lower() == lowered or " ".join(parts).lower() == lowered or (parts and parts[0].lower() == lowered):
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

    found_by_message = [
        [found for ent in message.doc.ents for found in symbl_entities(ent, conversation_start, speaker_names)]
        if detect and message.doc is not None
        else []
        for message in messages
    ]
    senses = _NameSenses.of(messages, found_by_message) if detect else _NameSenses({}, set())
    matcher = _custom_matcher(nlp, custom)
    for message, found_here in zip(messages, found_by_message, strict=True):
        for found in found_here:
            judged = senses.judge(found)
            if judged is not None:
                add(judged.type, judged.value, judged.span.text, message, judged.span.start_char, None)
        if matcher is not None and message.doc is not None:
            for match_id, start, end in matcher(message.doc):
                entity = custom[int(nlp.vocab.strings[match_id].split(":", 1)[1])]
                span = message.doc[start:end]
                add("custom", entity.value or entity.text, span.text, message, span.start_char, entity.custom_type)
    return [group.body() for group in groups.values()]


@dataclass(frozen=True)
class _NameSenses:
    """One sense per conversation: what the conversation as a whole says each name is.

    A name the model reads as a person somewhere is that person everywhere, not a place or a company ("Hefin" is
    a GPE in one sentence and a PERSON in the next); a name said with an article or before a noun somewhere ("a
    'no deal' Brexit", "the Aurora task") is nobody's name anywhere.
    """

    person_values: dict[str, str]
    not_people: set[str]

    @classmethod
    def of(cls, messages: list[TimedMessage], found_by_message: list[list[FoundEntity]]) -> _NameSenses:
        people = [found for found_here in found_by_message for found in found_here if found.type == "person"]
        # Only full names, and first names of full names, are evidence enough: the model also calls "Estyn"
        # (an inspectorate) a person, and a single word would turn it into one everywhere.
        person_values = {found.span.text.lower(): found.value for found in people if len(found.span) > 1}
        person_values |= {
            found.span[0].lower_: found.value
            for found in people
            if len(found.span) > 1 and found.span[0].lower_ not in person_values
        }
        not_people = {
            _trim(ent, {"the", "a", "an"}).text.lower()
            for message in messages
            if message.doc is not None
            for ent in message.doc.ents
            if ent.label_ == "PERSON" and _stands_for_a_thing(ent)
        }
        return cls(person_values, not_people)

    def judge(self, found: FoundEntity) -> FoundEntity | None:
        text = found.span.text.lower()
        if found.type == "person" and text in self.not_people:
            return None
        if found.type in {"organization", "location"} and text in self.person_values and text not in self.not_people:
            return FoundEntity("person", self.person_values[text], found.span)
        return found


def _custom_matcher(nlp: Language, custom: list[CustomEntity]) -> PhraseMatcher | None:
    if not custom:
        return None
    matcher = PhraseMatcher(nlp.vocab, attr="LOWER")
    for index, entity in enumerate(custom):
        matcher.add(f"custom:{index}", [nlp.make_doc(entity.text)])
    return matcher


def mark_speakers(docs: Iterable[Doc], ruler: EntityRuler | None) -> None:
    """Apply the speaker-name ruler to already-parsed docs in place.

    A speaker's name inside a longer name the model found stays part of it: "David" of "Trinity Saint David" and
    "Bill" of "Bill S-204" are not the speakers David and Bill, unless the rest is a title ("Kirsty Williams AM").
    """
    if ruler is None:
        return
    for doc in docs:
        matches = [
            (match_id, start, end)
            for match_id, start, end in ruler.match(doc)
            if not any(_holds_a_longer_name(ent, start, end) for ent in doc.ents)
        ]
        ruler.set_annotations(doc, matches)


def _holds_a_longer_name(ent: Span, start: int, end: int) -> bool:
    if not (ent.start <= start and end <= ent.end) or ent.end - ent.start == end - start:
        return False
    rest = [token for token in ent if not start <= token.i < end]
    return not all(token.lower_.rstrip(".") in TITLES or token.is_punct for token in rest)
