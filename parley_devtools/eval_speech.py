"""Speech-to-text evaluation: word error rate, speed and memory of the engine's recognizer on flite speech.

Run: ``.venv/bin/python -m parley_devtools.eval_speech`` (needs ``flite``). For each voice the meeting-style
sentences in ``evaluation/speech/sentences.txt`` become one long recording (short pauses between sentences),
plus one conversation that rotates the voices sentence by sentence. Each recording is transcribed with the
engine's ``SpeechRecognizer`` and compared with the script; the report goes to ``evaluation/speech/results.md``.
"""

from __future__ import annotations

import argparse
import platform
import re
import resource
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from parley_devtools.speech_samples import VOICES, Turn, flite_available, synthesize_conversation

REPO_ROOT = Path(__file__).resolve().parent.parent
EVALUATION_DIR = REPO_ROOT / "evaluation" / "speech"
ID_PREFIX = "1000000000"

_ONES = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
]
_ONES += ["seventeen", "eighteen", "nineteen"]
_TENS = ["_", "_", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"1st": "first", "2nd": "second", "3rd": "third", "4th": "fourth", "5th": "fifth", "10th": "tenth"}


def number_words(number: int) -> str:
    """English words for 0-999,999 ("4012" → "four thousand twelve"), enough for meeting speech."""
    if number < 20:
        return _ONES[number]
    if number < 100:
        tens, ones = divmod(number, 10)
        return _TENS[tens] + (f" {_ONES[ones]}" if ones else "")
    if number < 1000:
        hundreds, rest = divmod(number, 100)
        return f"{_ONES[hundreds]} hundred" + (f" {number_words(rest)}" if rest else "")
    thousands, rest = divmod(number, 1000)
    return f"{number_words(thousands)} thousand" + (f" {number_words(rest)}" if rest else "")


def normalize_words(text: str) -> list[str]:
    """Lower-case words without punctuation; digits, times and percentages spelled out as a speaker says them.

    Whisper writes "12%" and "10:30" where the script says "twelve percent" and "ten thirty"; both are right.
    """
    text = text.lower().replace("%", " percent ").replace("-", " ")
    text = re.sub(r"(\d):(\d\d)", r"\1 \2", text)
    text = re.sub(r"(?<=\d),(?=\d{3})", "", text)
    for ordinal, word in _ORDINALS.items():
        text = re.sub(rf"\b{ordinal}\b", word, text)
    text = re.sub(r"\d+", lambda match: f" {number_words(int(match.group()))} " if len(match.group()) < 7 else "", text)
    text = re.sub(r"[^a-z0-9' ]+", " ", text)
    return [word.strip("'") for word in text.split() if word.strip("'")]


def word_edit_distance(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions turning ``reference`` into ``hypothesis`` (dynamic programming)."""
    previous = list(range(len(hypothesis) + 1))
    for i, ref_word in enumerate(reference, start=1):
        current = [i]
        for j, hyp_word in enumerate(hypothesis, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ref_word != hyp_word)))
        previous = current
    return previous[-1]


def word_error_rate(reference: str, hypothesis: str) -> float:
    """WER after ``normalize_words``: edits divided by the number of reference words."""
    reference_words = normalize_words(reference)
    if not reference_words:
        raise ValueError("the reference has no words")
    return word_edit_distance(reference_words, normalize_words(hypothesis)) / len(reference_words)


@dataclass(frozen=True)
class RecordingResult:
    name: str
    audio_seconds: float
    transcribe_seconds: float
    reference_words: int
    word_errors: int
    utterances: int
    sentences: int

    @property
    def wer(self) -> float:
        return self.word_errors / self.reference_words

    @property
    def real_time_factor(self) -> float:
        return self.transcribe_seconds / self.audio_seconds


def read_sentences(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def evaluate(
    sentences: list[str], voices: Sequence[str], *, beam_size: int, cpu_threads: int
) -> tuple[list[RecordingResult], float]:
    """Transcribe one recording per voice and a rotating-voice conversation; returns results and model load time."""
    from parley_engine.speech import SpeechOptions, SpeechRecognizer

    started = time.perf_counter()
    recognizer = SpeechRecognizer(beam_size=beam_size, cpu_threads=cpu_threads)
    load_seconds = time.perf_counter() - started

    recordings = {voice: [Turn(voice, sentence) for sentence in sentences] for voice in voices}
    recordings["mixed voices"] = [Turn(voices[index % len(voices)], text) for index, text in enumerate(sentences)]
    reference = " ".join(sentences)
    reference_words = normalize_words(reference)
    results = []
    with tempfile.TemporaryDirectory(prefix="parley-eval-speech-") as scratch:
        for name, turns in recordings.items():
            wav_path = Path(scratch) / f"{name.replace(' ', '-')}.wav"
            placed = synthesize_conversation(turns, wav_path)
            started = time.perf_counter()
            utterances = recognizer.transcribe(wav_path, SpeechOptions(), id_prefix=ID_PREFIX)
            elapsed = time.perf_counter() - started
            hypothesis = " ".join(utterance.text for utterance in utterances)
            results.append(
                RecordingResult(
                    name=name,
                    audio_seconds=placed[-1].end,
                    transcribe_seconds=elapsed,
                    reference_words=len(reference_words),
                    word_errors=word_edit_distance(reference_words, normalize_words(hypothesis)),
                    utterances=len(utterances),
                    sentences=len(sentences),
                )
            )
            print(f"{name:>14}: WER {results[-1].wer:6.1%}  RTF {results[-1].real_time_factor:.3f}", flush=True)
    return results, load_seconds


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes), flite children excluded."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def render_report(
    results: list[RecordingResult], *, load_seconds: float, peak_mb: float, beam_size: int, command: str
) -> str:
    total_errors = sum(result.word_errors for result in results)
    total_words = sum(result.reference_words for result in results)
    audio = sum(result.audio_seconds for result in results)
    busy = sum(result.transcribe_seconds for result in results)
    rows = [
        f"| {r.name} | {r.audio_seconds:.0f} s | {r.wer:.1%} | {r.real_time_factor:.3f} "
        f"| {r.utterances} / {r.sentences} |"
        for r in results
    ]
    verdict_rtf = "meets" if busy / audio <= 0.06 else "MISSES"
    verdict_memory = "meets" if peak_mb <= 1536 else "MISSES"
    return "\n".join(
        [
            "# Speech-to-text evaluation",
            "",
            f"Command: `{command}`",
            "",
            f"Recognizer: faster-whisper, Whisper tiny.en (int8, CPU), beam {beam_size}, VAD on, word timestamps. "
            f"Machine: {platform.machine()}, {platform.python_implementation()} {platform.python_version()}, "
            f"{_cpu_count()} CPUs.",
            "",
            "Speech: the sentences in `sentences.txt` synthesized with Debian `flite`, 0.6 s pauses, 16 kHz mono; one "
            "recording per voice and one that rotates the voices sentence by sentence. WER is computed after "
            "lower-casing, removing punctuation and spelling out digits (so `12%` matches `twelve percent`).",
            "",
            "| recording | audio | WER | real-time factor | utterances / sentences |",
            "|---|---|---|---|---|",
            *rows,
            "",
            f"**Overall WER: {total_errors / total_words:.1%}** ({total_errors} errors in {total_words} words).",
            "",
            f"**Real-time factor: {busy / audio:.3f}** ({busy:.1f} s to transcribe {audio:.0f} s, decoding included; "
            f"target ≤ 0.06: {verdict_rtf}). Model load: {load_seconds:.1f} s.",
            "",
            f"**Peak memory (RSS): {peak_mb:.0f} MB** (target ≤ 1.5 GB: {verdict_memory}).",
            "",
            "Timings vary by tens of percent between runs on a shared machine.",
            "",
        ]
    )


def _cpu_count() -> int:
    import os

    return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sentences", type=Path, default=EVALUATION_DIR / "sentences.txt")
    parser.add_argument("--voices", nargs="+", default=list(VOICES), choices=VOICES)
    parser.add_argument("--beam-size", type=int, default=1)
    parser.add_argument("--cpu-threads", type=int, default=0)
    parser.add_argument("--output", type=Path, default=EVALUATION_DIR / "results.md")
    parser.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    args = parser.parse_args(argv)
    if not flite_available():
        parser.error("flite is not installed (apt-get install flite)")

    results, load_seconds = evaluate(
        read_sentences(args.sentences), args.voices, beam_size=args.beam_size, cpu_threads=args.cpu_threads
    )
    command = ".venv/bin/python -m parley_devtools.eval_speech" + (
        f" {' '.join(argv)}" if argv else _command_arguments()
    )
    report = render_report(
        results, load_seconds=load_seconds, peak_mb=peak_rss_mb(), beam_size=args.beam_size, command=command
    )
    if args.no_write:
        print(report)
    else:
        args.output.write_text(report, encoding="utf-8")
        print(f"wrote {args.output}")
        print(report)
    return 0


def _command_arguments() -> str:
    import sys

    return "".join(f" {argument}" for argument in sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
