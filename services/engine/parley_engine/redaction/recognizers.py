"""Recognizers Parley adds to Presidio's: street addresses, dates of birth, identifiers as speech-to-text writes
them down, and e-mail without a network call.

Presidio finds names, organisations and places with spaCy, and structured identifiers with patterns validated by
their checksums (Luhn for cards, IBAN's mod 97, SSN's invalid ranges). It has no street-address recognizer for
English and no notion of a date of birth (only of dates, most of which a meeting needs to keep: "by Friday"), and
its checksums reject most numbers read aloud and written down by a recognizer ("89-370-400-4405-320-1300").
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
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
# A house number as people write it ("1235", "12b") and as speech-to-text writes one read out with the number of a
# flat or a long street number ("9,32543", "3807-41235", "5959267", "717a8").
_HOUSE_NUMBER = r"\d(?:[\d,-]{0,9}\d)?[a-z]?(?:\d{1,3})?"
STREET_ADDRESS = re.compile(
    rf"\b{_HOUSE_NUMBER}(?:\s+(?:[nsew]\.?|north|south|east|west))?"
    # The street's name ends in a word, not a bare number: "3 point 5 point" is a decimal read out, not a place.
    rf"(?:(?:\s+[a-z0-9][\w'.-]*){{0,3}}?\s+(?=[\w'.-]*[a-z])[a-z0-9][\w'.-]*\s+(?:{_SUFFIX})\b\.?{_DIRECTION}?{_UNIT}?"
    rf"{_CITY_TAIL}?"
    # No suffix heard, but a unit after the street's words: "3807-41235 honey succulent suite 100".
    rf"|(?:\s+[a-z][\w'.-]*){{1,4}}?{_UNIT}{_CITY_TAIL}?)",
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
    rf"[0-3]?\d(?:[/.-]|\s*slash\s*)[0-3]?\d(?:[/.-]|\s*slash\s*)(?:19|20)?\d\d"  # 7/21/1986, 21.07.86
    rf"|\d{{3,4}}(?:-|\s*slash\s*)(?:19|20)\d\d"  # "720 slash 1991", "817-1977": a date read out, as written down
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
# A whole date in digits ("7/20/1991", "720 slash 1991") whose year makes its subject at least this old: read out
# on a call it is nearly always a date of birth, and speech-to-text often mishears the "DOB" said before it.
NUMERIC_FULL_DATE = re.compile(
    r"(?:[0-3]?\d(?:[/.-]|\s*slash\s*)[0-3]?\d|\d{3,4})(?:[/.-]|\s*slash\s*)(?:19|20)\d\d"  # 7/20/1991, 720 slash 1991
    r"|(?:19|20)\d\d-[01]\d-[0-3]\d",  # 1991-07-20
    re.IGNORECASE,
)
_YEAR = re.compile(r"(?:19|20)\d\d")
MIN_AGE_YEARS = 13


class _NamedByWordsBefore(EntityRecognizer):
    """A recognizer of values that the words said just before them name: no model to load, English only."""

    ENTITIES: ClassVar[list[str]]

    def __init__(self) -> None:
        super().__init__(supported_entities=self.ENTITIES, name=type(self).__name__, supported_language="en")

    def load(self) -> None:
        pass

    @staticmethod
    def words_before(text: str, start: int, chars: int) -> str:
        return text[max(0, start - chars) : start]

    @staticmethod
    def words_after(text: str, end: int, chars: int) -> str:
        """Up to ``chars`` characters after ``end``, to the end of the sentence: "…, that's my social"."""
        return re.split(r"[.!?](?:\s|$)", text[end : end + chars])[0]


class DateOfBirthRecognizer(_NamedByWordsBefore):
    """A date with "born", "birthday", "date of birth" or "DOB" shortly before or after it in the same sentence;
    or, with a lower score, a whole date in digits old enough to be someone's birth date."""

    ENTITIES: ClassVar[list[str]] = ["DATE_OF_BIRTH"]

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        found = []
        for match in DATE_FORMS.finditer(text):
            before = re.split(r"[.!?]\s", self.words_before(text, match.start(), BIRTH_CONTEXT_CHARS))[-1]
            after = self.words_after(text, match.end(), BIRTH_CONTEXT_CHARS)
            start = match.start() + (len(match.group()) - len(match.group().lstrip()))
            if BIRTH_WORDS.search(before) or BIRTH_WORDS.search(after):
                found.append(RecognizerResult("DATE_OF_BIRTH", start, match.end(), 0.85))
            elif self._old_enough(match.group()):
                found.append(RecognizerResult("DATE_OF_BIRTH", start, match.end(), 0.5))
        return found

    @staticmethod
    def _old_enough(date: str) -> bool:
        if NUMERIC_FULL_DATE.fullmatch(date.strip()) is None:
            return False
        year = int(_YEAR.findall(date)[-1])
        return 1900 <= year <= datetime.now(UTC).year - MIN_AGE_YEARS


# The public-suffix snapshot inside tldextract's package: no fetch from publicsuffix.org at run time.
_OFFLINE_SUFFIXES = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)


_OCTET = r"(?:25[0-5]|2[0-4]\d|1?\d?\d)"


class SpokenIpAddressRecognizer(PatternRecognizer):
    """An IPv4 address read out and written down word for word: "10 dot 20 dot 30 dot 40"."""

    def __init__(self) -> None:
        super().__init__(
            supported_entity="IP_ADDRESS",
            name="SpokenIpAddressRecognizer",
            patterns=[Pattern("dotted quad, spoken", rf"\b{_OCTET}(?:\s*dot\s*{_OCTET}|\.{_OCTET}){{3}}\b", 0.6)],
            global_regex_flags=re.IGNORECASE,
        )

    def validate_result(self, pattern_text: str) -> bool:
        # Presidio's own recognizer has the written form ("10.20.30.40"); this one needs a "dot" said aloud ("point"
        # reads decimals and versions: "3 point 5").
        return re.search(r"dot", pattern_text, re.IGNORECASE) is not None


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


# A run of digits as speech-to-text writes an identifier read out: groups joined by spaces, dashes, dots or
# commas, and letters among them ("10226-222.74", "GD89I UFH7156…", "889-1814-09"); at least seven digits in all.
_SPOKEN_RUN = re.compile(r"\b[0-9a-z]*\d[0-9a-z]*(?:[ .,:/-]{1,2}[0-9a-z]*\d[0-9a-z]*){0,8}\b", re.IGNORECASE)
# Amounts ("1,500,000", "2.5") and years are numbers a meeting keeps.
_AMOUNT = re.compile(r"\$?\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,6}\.\d{1,2}")
MIN_SPOKEN_DIGITS = 7
# The length of a US social security or taxpayer number.
NATIONAL_ID_DIGITS = 9
# From this many digits a number is an account: an IBAN read out ("89-370-400-4405-320-1300"), which no card
# (at most 19, and checked by Luhn) and few order numbers reach.
ACCOUNT_DIGITS = 18
# A North American phone number read out in its groups: "450, 613, 6555".
PHONE_GROUPS = re.compile(r"\d{3}[ .,-]{1,2}\d{3}[ .,-]{1,2}\d{4}")
# What the words around a read-out number say it is; the first kind whose words appear wins.
SPOKEN_NUMBER_CONTEXT: dict[str, tuple[str, ...]] = {
    "CREDIT_CARD": ("card", "visa", "mastercard", "amex"),
    "US_SSN": ("social", "ssn", "security number"),
    "IBAN_CODE": ("iban",),
    "US_BANK_NUMBER": ("account", "routing", "transfer", "wire"),
    "US_PASSPORT": ("passport",),
    "US_DRIVER_LICENSE": ("license", "licence"),
    "US_ITIN": ("itin", "tax id", "taxpayer"),
    "IP_ADDRESS": ("ip", "server", "gateway", "vpn", "host", "requests from", "ping", "firewall", "allow", "whitelist"),
    "DATE_OF_BIRTH": ("born", "birth", "dob"),
    "PHONE_NUMBER": ("phone", "call", "cell", "mobile", "reach", "text me", "line", "extension", "contact"),
}
SPOKEN_CONTEXT_CHARS = 60


class SpokenNumberRecognizer(_NamedByWordsBefore):
    """An identifier read out and written down by speech-to-text, named by the words said around it.

    Checksums and formats cannot vouch for what a recognizer made of digits read aloud, so the words before the
    number decide what it is ("my passport number is 889-1814-09"), or failing those the rest of its sentence
    ("889-1814-09, that's the passport"); a long number with no such words is left alone, unless its shape alone
    says what it is (``_kind_by_shape``).
    """

    ENTITIES: ClassVar[list[str]] = list(SPOKEN_NUMBER_CONTEXT)

    def analyze(
        self, text: str, entities: list[str], nlp_artifacts: NlpArtifacts | None = None
    ) -> list[RecognizerResult]:
        found = []
        for match in _SPOKEN_RUN.finditer(text):
            value = match.group()
            if sum(c.isdigit() for c in value) < MIN_SPOKEN_DIGITS or _AMOUNT.fullmatch(value):
                continue
            # A name said first is surest; the rest of a sentence often names the next thing ("… and the member
            # number is on the card"), so it, like the shape alone, scores lower.
            before = self.words_before(text, match.start(), SPOKEN_CONTEXT_CHARS).lower()
            if kind := _named_kind(before, entities):
                found.append(RecognizerResult(kind, match.start(), match.end(), 0.6))
                continue
            after = self.words_after(text, match.end(), SPOKEN_CONTEXT_CHARS).lower()
            if kind := _named_kind(after, entities) or _kind_by_shape(value, entities):
                found.append(RecognizerResult(kind, match.start(), match.end(), 0.45))
        return found


def _named_kind(words: str, entities: list[str]) -> str | None:
    """The first kind asked for whose naming words appear in ``words``."""
    return next(
        (
            kind
            for kind, names in SPOKEN_NUMBER_CONTEXT.items()
            if kind in entities and any(re.search(rf"\b{re.escape(name)}", words) for name in names)
        ),
        None,
    )


def _kind_by_shape(value: str, entities: list[str]) -> str | None:
    """What a number no words name is by its shape alone: the "SSN", "ITIN", "IBAN" or "phone" said with it misheard
    ("the item is 952-758124", "the Abin is…"), nine digits are a social security or taxpayer number, eighteen or
    more an account, and ten in groups of 3, 3 and 4 a phone number, far more often than anything else."""
    digits = sum(c.isdigit() for c in value)
    if digits == NATIONAL_ID_DIGITS and value[:1].isdigit():
        return next((kind for kind in ("US_SSN", "US_ITIN") if kind in entities), None)
    if digits >= ACCOUNT_DIGITS:
        return next((kind for kind in ("IBAN_CODE", "US_BANK_NUMBER") if kind in entities), None)
    if PHONE_GROUPS.fullmatch(value) and "PHONE_NUMBER" in entities:
        return "PHONE_NUMBER"
    return None
