"""Score the engine's questions and action items on the labelled meetings and write evaluation/results.md.

Run: ``.venv/bin/python -m parley_devtools.eval_insights`` (the held-out evaluation set) or
``--tuning`` (the set rules are developed against; never writes results.md).
"""

from __future__ import annotations

import argparse
import time

from parley_engine.analysis import TextAnalyzer

from evaluation.scorer import EVALUATION_DIR, EVALUATION_SET, TARGETS, TUNING_SET, Evaluation, evaluate, load_meetings

COMMAND = ".venv/bin/python -m parley_devtools.eval_insights"


def report(evaluation: Evaluation, set_name: str) -> str:
    lines = [
        f"# Insight evaluation ({set_name})",
        "",
        f"Command: `{COMMAND}`  ",
        f"Utterances: {evaluation.utterances}; analysis time {evaluation.seconds:.2f} s in total (warm).",
        "",
        "| insight | precision | recall | F1 | TP | FP | FN | target (P and R) | met |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for kind, counts in evaluation.counts.items():
        target = TARGETS[kind]
        met = counts.precision >= target and counts.recall >= target
        lines.append(
            f"| {kind} | {counts.precision:.3f} | {counts.recall:.3f} | {counts.f1:.3f} | {counts.true_positives} "
            f"| {counts.false_positives} | {counts.false_negatives} | {target} | {'yes' if met else 'no'} |"
        )
    lines += ["", "## Mistakes", ""]
    for mistake in evaluation.mistakes:
        lines.append(f"- {mistake.meeting} / {mistake.kind} / {mistake.error}: {mistake.speaker}: {mistake.text}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tuning", action="store_true", help="score the tuning set instead of the evaluation set")
    arguments = parser.parse_args()
    started = time.perf_counter()
    analyzer = TextAnalyzer()
    print(f"analyzer loaded in {time.perf_counter() - started:.2f} s")
    set_name, directory = ("tuning set", TUNING_SET) if arguments.tuning else ("evaluation set", EVALUATION_SET)
    evaluation = evaluate(analyzer, load_meetings(directory))
    text = report(evaluation, set_name)
    print(text)
    if not arguments.tuning:
        (EVALUATION_DIR / "results.md").write_text(text)
        print(f"wrote {EVALUATION_DIR / 'results.md'}")


if __name__ == "__main__":
    main()
