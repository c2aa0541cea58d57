"""Measures PII redaction on labelled sentences from Presidio's data generator; writes evaluation/redaction/results.md.

``.venv/bin/python -m parley_devtools.eval_redaction`` (``--split tuning`` for the part the recognizers were tuned on,
``--samples N`` per set). Sentences come from ``presidio_evaluator``'s ``PresidioSentenceFaker``, filled with
people, companies, cards, ids and addresses of English-speaking countries (the generator's fake-person records
for the US, UK, Canada, Australia and New Zealand; Faker's street addresses), in two sets of templates written for
calls, meetings and chat: ``templates-tuning.txt`` (tuned on) and ``templates-heldout.txt`` (reported, never tuned
on), each filled with its own random seed.

Each sentence is scored in two forms:
- **chat**: as generated;
- **speech-to-text**: as the engine's recognizer would write it down: the sentence spoken by flite and transcribed
  by the engine's Whisper (``--speech N`` sentences; slower). A value counts as redacted when none of it survives in
  the redacted transcript (its digits, or its words of three letters or more), counted over the values the
  unredacted transcript kept (a value the recognizer already lost cannot leak).

Recall is per labelled value: redacted when every alphanumeric token of it is inside a redacted span (of any
kind: a card number redacted as a bank account is still gone). Precision is per redacted token: inside a labelled
value of a kind Parley redacts (labels Parley does not redact, such as job titles or bare dates, count neither way).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from parley_engine.redaction.options import PiiType
from parley_engine.redaction.redactor import Finding, Redactor

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "evaluation" / "redaction"
COUNTRIES = ("United States", "United Kingdom", "Canada", "Australia", "New Zealand")
SEEDS = {"tuning": 1401, "heldout": 2402}
# The generator's labels → the kind Parley redacts them as; None: not PII Parley redacts (neutral).
LABEL_KINDS: dict[str, PiiType | None] = {
    "PERSON": PiiType.PERSON,
    "ORGANIZATION": PiiType.ORGANIZATION,
    "GPE": PiiType.LOCATION,
    "STREET_ADDRESS": PiiType.ADDRESS,
    "PHONE_NUMBER": PiiType.PHONE_NUMBER,
    "EMAIL_ADDRESS": PiiType.EMAIL_ADDRESS,
    "CREDIT_CARD": PiiType.CREDIT_CARD_NUMBER,
    "IBAN_CODE": PiiType.IBAN,
    "US_SSN": PiiType.US_SOCIAL_SECURITY_NUMBER,
    "US_ITIN": PiiType.NATIONAL_ID,
    "US_PASSPORT": PiiType.PASSPORT_NUMBER,
    "US_DRIVER_LICENSE": PiiType.DRIVERS_LICENSE,
    "DATE_OF_BIRTH": PiiType.DATE_OF_BIRTH,
    "IP_ADDRESS": PiiType.IP_ADDRESS,
}
STRUCTURED = {
    PiiType.PHONE_NUMBER,
    PiiType.EMAIL_ADDRESS,
    PiiType.CREDIT_CARD_NUMBER,
    PiiType.IBAN,
    PiiType.US_SOCIAL_SECURITY_NUMBER,
    PiiType.NATIONAL_ID,
    PiiType.PASSPORT_NUMBER,
    PiiType.DRIVERS_LICENSE,
    PiiType.DATE_OF_BIRTH,
    PiiType.IP_ADDRESS,
}
NAMES_AND_ADDRESSES = {PiiType.PERSON, PiiType.ADDRESS}
TARGETS = {"structured identifiers": 0.95, "names and addresses": 0.85}
TOKEN = re.compile(r"[A-Za-z0-9]+")


@dataclass
class Labelled:
    text: str
    values: list[tuple[int, int, str]]  # start, end, generator label


@dataclass
class Tally:
    found: Counter[PiiType] = field(default_factory=Counter)
    total: Counter[PiiType] = field(default_factory=Counter)
    redacted_tokens: int = 0
    redacted_in_pii: int = 0
    misses: dict[PiiType, list[str]] = field(default_factory=lambda: defaultdict(list))
    false_alarms: list[str] = field(default_factory=list)

    def recall(self, kinds: set[PiiType]) -> tuple[float, int]:
        total = sum(self.total[k] for k in kinds)
        return (sum(self.found[k] for k in kinds) / total if total else float("nan")), total

    @property
    def precision(self) -> float:
        return self.redacted_in_pii / self.redacted_tokens if self.redacted_tokens else float("nan")


def generate(split: str, samples: int) -> list[Labelled]:
    """Labelled sentences from the split's templates, reproducibly (its own seed)."""
    from presidio_evaluator.data_generator import PresidioSentenceFaker
    from presidio_evaluator.data_generator.faker_extensions.providers import (
        IpAddressProvider,
        OrganizationProvider,
        UsDriverLicenseProvider,
    )
    from presidio_evaluator.data_generator.presidio_sentence_faker import load_fake_person_df

    records = load_fake_person_df()
    records = records[records["country"].isin(COUNTRIES)]
    mapping = {
        **PresidioSentenceFaker.ENTITY_TYPE_MAPPING,
        "date_of_birth": "DATE_OF_BIRTH",
        "passport_number": "US_PASSPORT",
        "itin": "US_ITIN",
        "street_address": "STREET_ADDRESS",
    }
    templates = [line.strip() for line in (FOLDER / f"templates-{split}.txt").read_text().splitlines() if line.strip()]
    random.seed(SEEDS[split])  # the generator picks templates with the module's random
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        faker = PresidioSentenceFaker(
            "en_US",
            lower_case_ratio=0.0,
            sentence_templates=templates,
            entity_providers=[IpAddressProvider, OrganizationProvider, UsDriverLicenseProvider],
            base_records=records,
            entity_type_mapping=mapping,
            random_seed=SEEDS[split],
        )
        generated = faker.generate_new_fake_sentences(num_samples=samples)
    return [
        Labelled(sample.full_text, [(s.start_position, s.end_position, s.entity_type) for s in sample.spans])
        for sample in generated
    ]


def score(sentences: list[Labelled], findings: list[list[Finding]], tally: Tally) -> None:
    for sentence, found in zip(sentences, findings, strict=True):
        covered = [(f.start, f.end) for f in found]

        def inside(start: int, end: int, spans: list[tuple[int, int]]) -> bool:
            return any(s <= start and end <= e for s, e in spans)

        scored = []
        for start, end, label in sentence.values:
            kind = LABEL_KINDS.get(label)
            if kind is None:
                continue
            scored.append((start, end))
            value = sentence.text[start:end]
            tokens = [(start + m.start(), start + m.end()) for m in TOKEN.finditer(value)]
            tally.total[kind] += 1
            if tokens and all(inside(s, e, covered) for s, e in tokens):
                tally.found[kind] += 1
            else:
                tally.misses[kind].append(f"{value!r} in {sentence.text!r}")
        neutral = [(s, e) for s, e, label in sentence.values if LABEL_KINDS.get(label) is None]
        for finding in found:
            for match in TOKEN.finditer(sentence.text[finding.start : finding.end]):
                start, end = finding.start + match.start(), finding.start + match.end()
                if inside(start, end, neutral):
                    continue
                tally.redacted_tokens += 1
                if inside(start, end, scored):
                    tally.redacted_in_pii += 1
                else:
                    tally.false_alarms.append(f"{sentence.text[finding.start : finding.end]!r} ({finding.kind.value})")


def spoken(sentences: list[Labelled], redactor: Redactor) -> Tally:
    """Speak each sentence with flite, transcribe it with the engine's recognizer, redact, look for leaks."""
    from parley_engine.redaction.options import RedactionOptions
    from parley_engine.speech import SpeechRecognizer
    from parley_engine.speech.options import SpeechOptions

    recognizer = SpeechRecognizer()
    options = RedactionOptions(enabled=True)
    tally = Tally()
    with tempfile.TemporaryDirectory() as folder:
        for index, sentence in enumerate(sentences):
            wav = Path(folder) / f"{index}.wav"
            subprocess.run(["flite", "-voice", "slt", "-t", sentence.text, "-o", str(wav)], check=True)
            utterances = recognizer.transcribe(wav, SpeechOptions(), first_message_index=0, id_prefix="1000000000")
            heard = " ".join(u.text for u in utterances)
            redacted = " ".join(u.text for u in redactor.redact(utterances, options, hash_key=b"evaluation"))
            for start, end, label in sentence.values:
                kind = LABEL_KINDS.get(label)
                if kind is None:
                    continue
                marks = _marks(sentence.text[start:end])
                if not marks or not all(_present(mark, heard) for mark in marks):
                    continue  # the recognizer did not write the value down: nothing to leak
                tally.total[kind] += 1
                if any(_present(mark, redacted) for mark in marks):
                    tally.misses[kind].append(f"{sentence.text[start:end]!r} in {redacted!r}")
                else:
                    tally.found[kind] += 1
    return tally


def _marks(value: str) -> list[str]:
    """What of a value would identify it in a transcript: its run of digits, else its words of 3+ letters."""
    digits = "".join(re.findall(r"\d", value))
    if len(digits) >= 4:
        return [digits]
    return [w.lower() for w in re.findall(r"[A-Za-z]{3,}", value)]


def _present(mark: str, transcript: str) -> bool:
    if mark.isdigit():
        return mark in "".join(re.findall(r"\d", transcript))
    return re.search(rf"\b{re.escape(mark)}\b", transcript.lower()) is not None


def report_lines(name: str, tally: Tally) -> list[str]:
    lines = [f"### {name}", "", "| kind | recall | values |", "|---|---|---|"]
    for kind in PiiType:
        if tally.total[kind]:
            lines.append(f"| {kind.value} | {tally.found[kind] / tally.total[kind]:.3f} | {tally.total[kind]} |")
    lines += ["", "| group | recall | target | result |", "|---|---|---|---|"]
    for group, kinds in (("structured identifiers", STRUCTURED), ("names and addresses", NAMES_AND_ADDRESSES)):
        recall, total = tally.recall(kinds)
        target = TARGETS[group]
        lines.append(
            f"| {group} ({total} values) | {recall:.3f} | ≥ {target} | {'pass' if recall >= target else 'MISS'} |"
        )
    if tally.redacted_tokens:
        lines.append(
            f"| precision (per redacted token, {tally.redacted_tokens} tokens) | {tally.precision:.3f} | reported | — |"
        )
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=["heldout", "tuning"], default="heldout")
    parser.add_argument("--samples", type=int, default=1500, help="chat sentences")
    parser.add_argument("--speech", type=int, default=120, help="sentences spoken and transcribed (0: none)")
    parser.add_argument("--show-misses", type=int, default=0, help="print up to N misses per kind (tuning only)")
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args(argv)

    redactor = Redactor()
    sentences = generate(args.split, args.samples)
    started = time.perf_counter()
    findings = redactor.find([s.text for s in sentences], PiiType)
    seconds = time.perf_counter() - started
    words = sum(len(s.text.split()) for s in sentences)
    chat = Tally()
    score(sentences, findings, chat)
    speech = spoken(sentences[: args.speech], redactor) if args.speech else None

    if args.show_misses and args.split == "tuning":
        for kind, misses in chat.misses.items():
            print(f"-- {kind.value}: {len(misses)} missed", file=sys.stderr)
            for miss in misses[: args.show_misses]:
                print("   ", miss, file=sys.stderr)
        print(f"-- false alarms: {len(chat.false_alarms)}", file=sys.stderr)
        for alarm in Counter(chat.false_alarms).most_common(args.show_misses):
            print("   ", alarm, file=sys.stderr)
        for kind, misses in (speech.misses if speech else {}).items():
            print(f"-- spoken {kind.value}: {len(misses)} leaked", file=sys.stderr)
            for miss in misses[: args.show_misses]:
                print("   ", miss, file=sys.stderr)

    lines = [
        "# PII redaction: recall and precision on generated, labelled sentences",
        "",
        f"- command: `.venv/bin/python -m parley_devtools.eval_redaction --split {args.split} "
        f"--samples {args.samples} --speech {args.speech}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"- set: `templates-{args.split}.txt`, {len(sentences)} sentences, {words} words, seed {SEEDS[args.split]}",
        f"- redaction speed: {seconds:.2f} s for {words} words ({seconds / words * 10_000:.2f} s per 10,000 words), "
        "one process",
        "",
        *report_lines("chat text", chat),
    ]
    if speech is not None:
        lines += report_lines(f"speech-to-text (flite voice slt → Whisper base, {args.speech} sentences)", speech)
    lines += ["How it is scored: see the docstring of `parley_devtools/eval_redaction.py`.", ""]
    text = "\n".join(lines)
    output = args.output or FOLDER / ("results.md" if args.split == "heldout" else "results-tuning.md")
    output.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
