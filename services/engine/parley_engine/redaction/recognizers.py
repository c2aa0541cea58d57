"""Recognizers Parley adds to Presidio's: street addresses, dates of birth, and e-mail without a network call.

Presidio finds names, organisations and places with spaCy, and structured identifiers with patterns validated by
their checksums (Luhn for cards, IBAN's mod 97, SSN's invalid ranges). It has no street-address recognizer for
English and no notion of a date of birth (only of dates, most of which a meeting needs to keep: "by Friday").
"""

from __future__ import annotations

import re
from typing import ClassVar

import tldextract
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts
from presidio_analyzer.predefined_recognizers import CreditCardRecognizer, EmailRecognizer, NhsRecognizer

# The USPS street suffixes (Publication 28, appendix C1) people say and write, with their common abbreviations.
STREET_SUFFIXES = (  # noqa: SIM905 (a word list reads better as words)
    "alley allee aly avenue ave av boulevard blvd bypass byp causeway cswy center ctr circle cir close court ct "
    "courts cove cv crescent cres crossing xing drive dr drives expressway expy extension ext freeway fwy "
    "gardens gdns gateway gtwy glen gln green grn grove grv harbor hbr heights hts highway hwy hill hl hills hls "
    "hollow holw junction jct lane ln loop mall manor mnr manors mews motorway parkway pkwy park pass path pike "
    "pkwy place pl plaza plz point pt port prt ridge rdg road rd roads rds route rte row run square sq sqs "
    "station sta stravenue stra street st streets sts terrace ter trace trce trail trl turnpike tpke via viaduct "
    "vista vis walk way ways parade pde esplanade esp quay rise vale view promenade approach broadway circuit "
    "concourse wynd"
).split()
_SUFFIX = "|".join(sorted(set(STREET_SUFFIXES), key=len, reverse=True))
_UNIT = r"(?:,?\s+(?:apt|apartment|suite|ste|unit|floor|fl|room|rm|#)\.?\s*#?\s*[0-9a-z]{1,6})"
# ", Springfield, IL 62704": a city of capitalised words (or capitals), then a state or country and a ZIP code.
_PLACE = r"(?-i:[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*){0,3})"
_CITY_TAIL = rf"(?:,\s*{_PLACE}(?:,\s*{_PLACE})?(?:\s+\d{{5}}(?:-\d{{4}})?)?)"
_DIRECTION = r"(?:\s+(?:north|south|east|west|n|s|e|w|nw|ne|sw|se)\b\.?)"
STREET_ADDRESS = re.compile(
    rf"\b\d{{1,6}}[a-z]?(?:\s+(?:[nsew]\.?|north|south|east|west))?"
    rf"(?:\s+[a-z0-9][\w'.-]*){{1,4}}?\s+(?:{_SUFFIX})\b\.?{_DIRECTION}?{_UNIT}?{_CITY_TAIL}?",
    re.IGNORECASE,
)
# "P.O. Box 123", "PO box 4471".
PO_BOX = r"\bp\.?\s?o\.?\s+box\s+\d{1,6}\b"


class StreetAddressRecognizer(PatternRecognizer):
    """A house number, up to four words and a street suffix, then a unit and a city, state and ZIP if they follow."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="STREET_ADDRESS",
            name="StreetAddressRecognizer",
            patterns=[
                # A house number, a street and its suffix is an address more surely than spaCy's guess that part of
                # it is a place or an organisation: it outscores them where they overlap.
                Pattern("street address", STREET_ADDRESS.pattern, 0.86),
                Pattern("post office box", PO_BOX, 0.6),
            ],
            context=["address", "live", "lives", "located", "ship", "send", "mail", "deliver", "office", "at"],
            global_regex_flags=re.IGNORECASE,
        )


_MONTHS = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?|sep(?:t(?:ember)?)?|"
    r"oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?"
)
_DAY = r"(?:[0-3]?\d)(?:st|nd|rd|th)?"
DATE_FORMS = re.compile(
    rf"\b(?:"
    rf"[0-3]?\d[/.-][0-3]?\d[/.-](?:19|20)?\d\d"  # 7/21/1986, 21.07.86
    rf"|(?:19|20)\d\d-[01]\d-[0-3]\d"  # 1986-07-21
    rf"|{_MONTHS}\s+{_DAY}(?:,?\s+(?:19|20)\d\d)?"  # July 21st, 1986
    rf"|(?:the\s+)?{_DAY}\s+(?:of\s+)?{_MONTHS}(?:,?\s+(?:19|20)\d\d)?"  # 21 July 1986, the 21st of July
    rf"|(?:in\s+)?(?:19|20)\d\d"  # (born) in 1986
    rf")\b",
    re.IGNORECASE,
)
BIRTH_WORDS = re.compile(r"\b(?:born|birth|birthday|birthdate|dob|d\.o\.b)\b", re.IGNORECASE)
# How far before a date its "born" or "date of birth" may be.
BIRTH_CONTEXT_CHARS = 48


class DateOfBirthRecognizer(EntityRecognizer):
    """A date with "born", "birthday", "date of birth" or "DOB" shortly before it, and no sentence end between."""

    ENTITIES: ClassVar[list[str]] = ["DATE_OF_BIRTH"]

    def __init__(self) -> None:
        super().__init__(supported_entities=self.ENTITIES, name="DateOfBirthRecognizer", supported_language="en")

    def load(self) -> None:
        pass

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        found = []
        for match in DATE_FORMS.finditer(text):
            before = text[max(0, match.start() - BIRTH_CONTEXT_CHARS) : match.start()]
            before = re.split(r"[.!?]\s", before)[-1]
            if BIRTH_WORDS.search(before):
                start = match.start() + (len(match.group()) - len(match.group().lstrip()))
                found.append(RecognizerResult("DATE_OF_BIRTH", start, match.end(), 0.85))
        return found


# The public-suffix snapshot inside tldextract's package: no fetch from publicsuffix.org at run time.
_OFFLINE_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


class OfflineEmailRecognizer(EmailRecognizer):
    """Presidio's e-mail recognizer, whose domain check would otherwise download the public suffix list."""

    def validate_result(self, pattern_text: str) -> bool:
        return _OFFLINE_SUFFIXES(pattern_text).fqdn != ""


class AnyCardNumberRecognizer(CreditCardRecognizer):
    """Card numbers of every length the networks issue (12 to 19 digits, grouped or not) that pass the Luhn check.

    Presidio's own patterns know the classic Visa, Mastercard, Amex and Discover prefixes and lengths, not
    Mastercard's 2-series, 19-digit Visa, Maestro or Diners' 14-digit numbers.
    """

    def __init__(self) -> None:
        super().__init__(
            patterns=[Pattern("12 to 19 digits", r"\b\d(?:[ -]?\d){11,18}\b", 0.5)],
            name="AnyCardNumberRecognizer",
        )


class SpokenOfNhsRecognizer(NhsRecognizer):
    """An NHS number only where "NHS" or "health" is said near it.

    Its ten digits in 3-3-4 groups with a mod-11 check are also one US phone number in eleven, which Presidio would
    otherwise call an NHS number with full confidence: a passing checksum keeps the pattern's modest score instead,
    and the context lifts it.
    """

    def __init__(self) -> None:
        super().__init__(
            patterns=[Pattern("NHS (medium)", r"\b([0-9]{3})[- ]?([0-9]{3})[- ]?([0-9]{4})\b", 0.3)],
            context=["nhs", "health", "national health", "patient", "hospital", "gp"],
        )

    def validate_result(self, pattern_text: str) -> bool | None:  # type: ignore[override]  # None: keep the score
        return None if super().validate_result(pattern_text) else False
