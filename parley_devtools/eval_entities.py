"""Score the engine's entities on hand-labelled real meeting text and write evaluation/entities/results.md.

Run: ``.venv/bin/python -m parley_devtools.eval_entities`` (scores the labelled samples), ``--draw``,
``--draw-second`` or ``--draw-third`` (print the unlabelled draws the labels were written on) or ``--tuning``
(prints what the engine returns on the tuning meetings, which the rules are developed against).

Meetings are split by a hash of the meeting series (an AMI series such as ES2005a-d is one team, so it is held
out or tuned on as a whole): one series in five is held out for the labelled samples, never tuned on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from parley_engine.analysis import TextAnalyzer
from parley_engine.conversation import AnalysisOptions, Speaker, Utterance

from evaluation.corpora.scoring import Counts

COMMAND = ".venv/bin/python -m parley_devtools.eval_entities"
REPOSITORY = Path(__file__).resolve().parent.parent
ENTITIES_DIR = REPOSITORY / "evaluation" / "entities"
SAMPLE_FILES = {
    "First sample (sample.json)": ENTITIES_DIR / "sample.json",
    "Second sample (second_sample.json)": ENTITIES_DIR / "second_sample.json",
    "Third sample (third_sample.json)": ENTITIES_DIR / "third_sample.json",
}
DATA_DIR = Path("/work/shared/data")
# A Monday, so that weekday names resolve both ways (the previous Friday is the 20th, the next one the 27th).
CONVERSATION_START = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HELD_OUT_SHARE = 5  # one series in five
TARGET_PRECISION = 0.9
# How many utterances the sample takes from each held-out meeting, by corpus.
PER_MEETING = {"ami": 3, "icsi": 12, "parliament": 20}
# The second sample: the utterances that come next in the same order, drawn and labelled after the rules were
# developed, so that one estimate is untouched by looking at the first sample's mistakes.
SECOND_PER_MEETING = {"ami": 3, "icsi": 8, "parliament": 12}
# The third sample: the utterances after the second's, drawn and labelled blind to the engine, with the rules
# unchanged since the second sample.
THIRD_PER_MEETING = {"ami": 3, "icsi": 8, "parliament": 12}
# The draws in order: each takes the candidates right after the previous one's.
DRAWS = (PER_MEETING, SECOND_PER_MEETING, THIRD_PER_MEETING)
MIN_WORDS, MAX_WORDS = 4, 45

# Cues that a text may name an entity, independent of the engine (the sample must not be chosen by what the
# engine finds, or recall would be flattered): digits, number, weekday and month words, date and time words,
# money and percent words, and capitalised words that do not start a sentence.
_CUE_WORDS = re.compile(
    r"\b(?:\d|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|twenty|thirty|forty|fifty|hundred|"
    r"thousand|million|billion|half|dozen|monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|"
    r"february|march|april|may|june|july|august|september|october|november|december|today|tomorrow|yesterday|"
    r"tonight|morning|afternoon|evening|week|weeks|month|months|year|years|hour|hours|minute|minutes|o'clock|"
    r"percent|per cent|dollars?|euros?|pounds?|cents?)\b|[$€£%]",
    re.IGNORECASE,
)
_INNER_CAPITAL = re.compile(r"(?<![.?!]\s)(?<!^)\b(?!I\b|I'|OK\b|Okay\b)[A-Z][a-zA-Z]+")
_MARKUP = re.compile(r"\{[a-z]+\}")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.?!;:]|'(?:s|ll|re|ve|d|m)\b|n't\b)")
_SENTENCE_END = re.compile(r"(?<!\bMr)(?<!\bMrs)(?<!\bMs)(?<!\bDr)(?<!\bHon)(?<!\bSt)(?<=[.?!])\s+(?=[A-Z\"'])")
_AMI_MEETING = re.compile(r"(?:ES|IS|TS)\d{4}[a-d]")


def meeting_series(meeting: str) -> str:
    """The unit the split is made on: an AMI series without its session letter, otherwise the meeting."""
    return meeting[:-1] if _AMI_MEETING.fullmatch(meeting) else meeting


def is_held_out(meeting: str) -> bool:
    digest = hashlib.sha256(meeting_series(meeting).encode()).hexdigest()
    return int(digest, 16) % HELD_OUT_SHARE == 0


def corpus_of(meeting: str) -> str:
    if _AMI_MEETING.fullmatch(meeting):
        return "ami"
    return "parliament" if meeting.startswith(("covid_", "education_")) else "icsi"


def clean_transcript_text(text: str) -> str:
    """QMSum's text as speech-to-text gives it: no ``{vocalsound}`` markup, no space before "," or "'s"."""
    text = _MARKUP.sub(" ", text).replace("\xa0", " ")
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", text)
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r"^[,.?!;:\s]+", "", text)


@dataclass(frozen=True)
class SourceUtterance:
    meeting: str
    source: str
    speaker: str
    text: str


def speaker_display_name(meeting: str, speaker: str) -> str:
    """The name the engine is given: AMI and ICSI speakers are anonymous (as after diarization), MPs are named."""
    if corpus_of(meeting) == "parliament":
        return speaker
    return f"Speaker {speaker.split()[-1]}"


def meeting_utterances(meeting: str, data_dir: Path) -> list[SourceUtterance]:
    """One meeting's utterances: AMI dialogue acts, QMSum turns of ICSI meetings, sentences of parliament turns."""
    if corpus_of(meeting) == "ami":
        path = data_dir / "ami-actions-train" / f"{meeting}.json"
        if not path.exists():
            return []
        acts = json.loads(path.read_text())["messages"]
        return [
            SourceUtterance(meeting, "ami-actions-train", speaker_display_name(meeting, a["speaker"]), a["text"])
            for a in acts
        ]
    paths = sorted((data_dir / "qmsum-dev").glob(f"*/{meeting}.json"))
    if not paths:
        return []
    turns = json.loads(paths[0].read_text())["meeting_transcripts"]
    utterances = []
    for turn in turns:
        text = clean_transcript_text(turn["content"])
        speaker = speaker_display_name(meeting, turn["speaker"])
        pieces = _SENTENCE_END.split(text) if corpus_of(meeting) == "parliament" else [text]
        utterances += [SourceUtterance(meeting, "qmsum-dev", speaker, piece) for piece in pieces if piece]
    return utterances


def all_meetings(data_dir: Path) -> list[str]:
    names = {p.stem for p in (data_dir / "qmsum-dev").glob("*/*.json")}
    names |= {p.stem for p in (data_dir / "ami-actions-train").glob("*.json")}
    return sorted(names)


def may_name_an_entity(text: str) -> bool:
    words = len(text.split())
    return MIN_WORDS <= words <= MAX_WORDS and bool(_CUE_WORDS.search(text) or _INNER_CAPITAL.search(text))


def draw(meetings: list[str], data_dir: Path, *, which: int = 1) -> Iterator[SourceUtterance]:
    """A deterministic draw of cue-bearing utterances: each meeting's candidates in the order of their hash.

    ``which`` (1, 2 or 3) picks the draw: each takes the candidates that come right after the previous draw's, in
    the same order, as many as its entry in ``DRAWS`` says for the meeting's corpus.
    """
    if not 1 <= which <= len(DRAWS):
        raise ValueError(f"there are {len(DRAWS)} draws, not {which}")
    for meeting in meetings:
        seen: set[str] = set()
        candidates = []
        for utterance in meeting_utterances(meeting, data_dir):
            if utterance.text not in seen and may_name_an_entity(utterance.text):
                seen.add(utterance.text)
                candidates.append(utterance)
        candidates.sort(key=lambda u: hashlib.sha256(f"{meeting}:{u.text}".encode()).hexdigest())
        corpus = corpus_of(meeting)
        start = sum(sizes[corpus] for sizes in DRAWS[: which - 1])
        yield from candidates[start : start + DRAWS[which - 1][corpus]]


@dataclass(frozen=True)
class Mention:
    """One returned entity in one utterance: the spoken text at its offset and the Symbl type.

    ``text`` is None when the words cannot be told: a group keeps one text for all its mentions and Symbl's
    messageRefs carry only an offset, so a date grouped under "Friday" may have been said as "end of the week".
    """

    offset: int
    text: str | None
    type: str


def spoken_at(text: str, offset: int, group_texts: tuple[str, str]) -> str | None:
    """The words of one mention of a grouped entity, when its group's text or value ("Suzy Davies") was said
    there, whole or as the first name ("Suzy")."""
    rest = text[offset:]
    text_of_group, value = group_texts
    value_words = value.split()
    # A person's value is the speaker's full name ("Hefin David AM"), said whole or in part ("Hefin David").
    candidates = {text_of_group} | {" ".join(value_words[:count]) for count in range(1, len(value_words) + 1)}
    fitting = [c for c in candidates if re.match(re.escape(c) + r"(?!\w)", rest, re.IGNORECASE)]
    return rest[: len(max(fitting, key=len))] if fitting else None


def returned_mentions(analyzer: TextAnalyzer, utterances: list[SourceUtterance], data_dir: Path) -> list[list[Mention]]:
    """The engine's entities in each of ``utterances``, each meeting analysed whole, as the API would see it.

    The whole meeting matters: every speaker's name is known to the engine, and a name read as a person in one
    sentence is a person in the others.
    """
    by_utterance: list[list[Mention]] = [[] for _ in utterances]
    wanted: dict[str, dict[tuple[str, str], int]] = {}
    for index, utterance in enumerate(utterances):
        wanted.setdefault(utterance.meeting, {})[(utterance.speaker, utterance.text)] = index
    for meeting, wanted_here in wanted.items():
        whole = meeting_utterances(meeting, data_dir)
        sampled_at: dict[int, int] = {}
        for position, utterance in enumerate(whole):
            wanted_index = wanted_here.get((utterance.speaker, utterance.text))
            if wanted_index is not None and wanted_index not in sampled_at.values():
                sampled_at[position] = wanted_index
        if len(sampled_at) != len(wanted_here):
            raise ValueError(f"{meeting}: some sampled utterances are no longer in the data")
        conversation = [
            Utterance(id=str(10**15 + position), text=u.text, speaker=Speaker(name=u.speaker))
            for position, u in enumerate(whole)
        ]
        insights = analyzer.analyze(
            conversation,
            AnalysisOptions(detect_entities=True),
            conversation_id=str(4 * 10**15 + int(hashlib.sha256(meeting.encode()).hexdigest()[:8], 16)),
            conversation_start=CONVERSATION_START,
        )
        for entity in insights.entities:
            for ref in entity["messageRefs"]:
                position = int(ref["id"]) - 10**15
                if position not in sampled_at:
                    continue
                spoken = spoken_at(whole[position].text, ref["offset"], (entity["text"], entity["value"]))
                by_utterance[sampled_at[position]].append(Mention(ref["offset"], spoken, entity["type"]))
    return by_utterance


@dataclass(frozen=True)
class LabelledEntity:
    texts: tuple[str, ...]
    types: tuple[str, ...]

    def accepts(self, mention: Mention, utterance_text: str) -> bool:
        """Same type and same span; for a mention whose words cannot be told, a span that starts where it does."""
        if mention.type not in self.types:
            return False
        if mention.text is not None:
            return mention.text.lower() in {text.lower() for text in self.texts}
        said_there = utterance_text[mention.offset :].lower()
        return any(said_there.startswith(text.lower()) for text in self.texts)


@dataclass(frozen=True)
class LabelledUtterance:
    utterance: SourceUtterance
    entities: list[LabelledEntity]


def load_sample(path: Path) -> list[LabelledUtterance]:
    body = json.loads(path.read_text())
    return [
        LabelledUtterance(
            SourceUtterance(u["meeting"], u["source"], u["speaker"], u["text"]),
            [
                LabelledEntity((e["text"], *e.get("also", [])), (e["type"], *e.get("alsoType", [])))
                for e in u["entities"]
            ],
        )
        for u in body["utterances"]
    ]


@dataclass
class Score:
    by_type: dict[str, Counts] = field(default_factory=dict)
    false_positives: list[tuple[LabelledUtterance, Mention]] = field(default_factory=list)
    false_negatives: list[tuple[LabelledUtterance, LabelledEntity]] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self, type_: str) -> Counts:
        return self.by_type.setdefault(type_, Counts())

    @property
    def total(self) -> Counts:
        total = Counts()
        for counts in self.by_type.values():
            total += counts
        return total


def score(sample: list[LabelledUtterance], returned: list[list[Mention]]) -> Score:
    """Match each returned mention to at most one unmatched label of its utterance."""
    result = Score()
    for labelled, mentions in zip(sample, returned, strict=True):
        unmatched = list(labelled.entities)
        for entity in unmatched:
            result.counts(entity.types[0]).labelled += 1
        for mention in mentions:
            counts = result.counts(mention.type)
            counts.predicted += 1
            match = next((e for e in unmatched if e.accepts(mention, labelled.utterance.text)), None)
            if match is None:
                result.false_positives.append((labelled, mention))
                continue
            unmatched.remove(match)
            counts.right += 1
            result.counts(match.types[0]).found += 1
        result.false_negatives += [(labelled, entity) for entity in unmatched]
    return result


def _ratio(numerator: int, denominator: int) -> str:
    return f"{numerator / denominator:.3f}" if denominator else "n/a"


def _summary_lines(name: str, result: Score, utterances: int) -> list[str]:
    total = result.total
    lines = [
        f"## {name}",
        "",
        f"{utterances} utterances, {total.labelled} labelled entities. "
        f"**Precision {_ratio(total.right, total.predicted)}** ({total.right}/{total.predicted}); "
        f"**recall {_ratio(total.found, total.labelled)}** ({total.found}/{total.labelled}).",
        "",
        "| type | returned | correct | precision | labelled | found | recall |",
        "|---|---|---|---|---|---|---|",
    ]
    for type_, counts in sorted(result.by_type.items()):
        lines.append(
            f"| {type_} | {counts.predicted} | {counts.right} | {_ratio(counts.right, counts.predicted)} "
            f"| {counts.labelled} | {counts.found} | {_ratio(counts.found, counts.labelled)} |"
        )
    return [*lines, ""]


def _mistake_lines(name: str, result: Score) -> list[str]:
    lines = [f"### {name}: returned but not labelled (false positives)", ""]
    for labelled, mention in result.false_positives:
        said = mention.text or f"{labelled.utterance.text[mention.offset : mention.offset + 24]}…"
        lines.append(f"- {labelled.utterance.meeting}: **{said}** as {mention.type} — {labelled.utterance.text}")
    lines += ["", f"### {name}: labelled but not returned (misses)", ""]
    for labelled, entity in result.false_negatives:
        lines.append(
            f"- {labelled.utterance.meeting}: **{entity.texts[0]}** ({entity.types[0]}) — {labelled.utterance.text}"
        )
    return [*lines, ""]


def report(samples: dict[str, tuple[Score, int]], seconds: float, words: int) -> str:
    """The results page: each sample's precision and recall, overall and per type, then every mistake."""
    lines = [
        "# Entity evaluation (held-out real meetings)",
        "",
        f"Command: `{COMMAND}`  ",
        f"Each held-out meeting is analysed whole ({words} words in {seconds:.1f} s) with the conversation starting "
        f"{CONVERSATION_START:%A %d %B %Y}; only the sampled utterances are scored. Target precision "
        f"{TARGET_PRECISION}. See `README.md` for how the samples were drawn and labelled.",
        "",
    ]
    for name, (result, utterances) in samples.items():
        lines += _summary_lines(name, result, utterances)
    lines += ["## Mistakes", ""]
    for name, (result, _) in samples.items():
        lines += _mistake_lines(name, result)
    return "\n".join(lines)


def print_tuning_entities(analyzer: TextAnalyzer, data_dir: Path) -> None:
    """What the engine returns on the tuning meetings, most frequent first per type, to read for mistakes."""
    utterances = list(draw([m for m in all_meetings(data_dir) if not is_held_out(m)], data_dir))
    mentions = returned_mentions(analyzer, utterances, data_dir)
    frequency = Counter((m.type, (m.text or "?").lower()) for per_utterance in mentions for m in per_utterance)
    by_type: dict[str, list[str]] = {}
    for (type_, text), count in frequency.most_common():
        by_type.setdefault(type_, []).append(f"{text} ({count})" if count > 1 else text)
    print(f"{len(utterances)} tuning utterances")
    for type_, texts in sorted(by_type.items()):
        print(f"\n## {type_} ({sum(c for (t, _), c in frequency.items() if t == type_)})\n" + "; ".join(texts))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the tuning data directory")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--draw", action="store_true", help="print the held-out draw the labels were written on")
    mode.add_argument("--draw-second", action="store_true", help="print the second held-out draw")
    mode.add_argument("--draw-third", action="store_true", help="print the third held-out draw")
    mode.add_argument("--tuning", action="store_true", help="print the entities returned on the tuning meetings")
    arguments = parser.parse_args()
    which = 1 if arguments.draw else 2 if arguments.draw_second else 3 if arguments.draw_third else None
    if which is not None:
        held_out = [m for m in all_meetings(arguments.data) if is_held_out(m)]
        for utterance in draw(held_out, arguments.data, which=which):
            print(json.dumps({"meeting": utterance.meeting, "speaker": utterance.speaker, "text": utterance.text}))
        return
    analyzer = TextAnalyzer()
    if arguments.tuning:
        print_tuning_entities(analyzer, arguments.data)
        return
    samples = {name: load_sample(path) for name, path in SAMPLE_FILES.items()}
    utterances = [labelled.utterance for sample in samples.values() for labelled in sample]
    started = time.perf_counter()
    returned = returned_mentions(analyzer, utterances, arguments.data)
    seconds = time.perf_counter() - started
    results: dict[str, tuple[Score, int]] = {}
    offset = 0
    for name, sample in samples.items():
        results[name] = (score(sample, returned[offset : offset + len(sample)]), len(sample))
        offset += len(sample)
    combined = [labelled for sample in samples.values() for labelled in sample]
    results["All samples"] = (score(combined, returned), len(combined))
    words = sum(
        len(u.text.split())
        for meeting in {u.meeting for u in utterances}
        for u in meeting_utterances(meeting, arguments.data)
    )
    text = report(results, seconds, words)
    print(text)
    (ENTITIES_DIR / "results.md").write_text(text)
    print(f"wrote {ENTITIES_DIR / 'results.md'}")


if __name__ == "__main__":
    main()
