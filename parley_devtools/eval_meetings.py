"""Score the engine's insights on real meetings, through its HTTP API exactly as a client would use it.

Run: ``.venv/bin/python -m parley_devtools.eval_meetings`` (the held-apart part of every corpus; writes
``evaluation/corpora/results.md``), ``--split tune`` to look at the tuning part, ``--corpus ami`` for one corpus,
``--api-url http://…`` to score an engine that is already running instead of starting one.

Each meeting is submitted with ``POST /v1/process/text`` (one message per corpus unit, with its speaker and
times), the job is awaited with ``GET /v1/job/{jobId}``, and the Conversation API's answers are scored by
``evaluation.corpora.scoring``. Targets are the ones the engine is held to on the corpora's unseen test splits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from parley_engine.analysis.linear_model import load_model
from parley_engine.analysis.questions import TAG_WORDS

from evaluation.corpora.meetings import (
    DEFAULT_DATA_DIR,
    Meeting,
    Split,
    ami_action_meetings,
    mrda_meetings,
    qmsum_meetings,
)
from evaluation.corpora.scoring import Counts, SummaryScores, rouge1_f1, score_action_items, score_topics, score_units
from parley_devtools.bench_engine import EngineClient, EngineProcess, expect, wait_healthy

COMMAND = ".venv/bin/python -m parley_devtools.eval_meetings"
RESULTS = Path(__file__).resolve().parents[1] / "evaluation" / "corpora" / "results.md"
# AMI and ICSI carry no dates; every meeting is held on one Monday morning so relative dates resolve the same way.
MEETING_DATE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
IN_FLIGHT = 3
TARGETS = {
    "action items precision": 0.30,
    "action items recall": 0.50,
    "action items per meeting / human count": 3.0,
    "questions recall, unpunctuated": 0.80,
    "questions precision, unpunctuated": 0.85,
    "questions recall, punctuated": 0.90,
    "questions precision, punctuated": 0.85,
    "summary ROUGE-1 F1": 0.30,
    "summary length / reference": 2.0,
}


@dataclass
class Scores:
    action_items: Counts = field(default_factory=Counts)
    follow_ups: Counts = field(default_factory=Counts)
    items_per_meeting: list[int] = field(default_factory=list)
    human_items_per_meeting: list[int] = field(default_factory=list)
    questions: dict[bool, Counts] = field(default_factory=lambda: {True: Counts(), False: Counts()})
    # The same, against the labelled questions that are not lone tags ("right?"), which the engine never lists.
    questions_without_tags: dict[bool, Counts] = field(default_factory=lambda: {True: Counts(), False: Counts()})
    summary: SummaryScores = field(default_factory=SummaryScores)
    topics: Counts = field(default_factory=Counts)
    examples: dict[str, list[str]] = field(default_factory=dict)
    meetings: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def text_body(meeting: Meeting) -> dict[str, Any]:
    """The Async API body a client sends for a transcript: one message per utterance, timed where times exist."""
    messages = []
    for utterance in meeting.utterances:
        message: dict[str, Any] = {"payload": {"content": utterance.text}, "from": {"name": utterance.speaker}}
        if utterance.start is not None and utterance.end is not None:
            message["duration"] = {
                "startTime": (MEETING_DATE + timedelta(seconds=utterance.start)).isoformat(),
                "endTime": (MEETING_DATE + timedelta(seconds=max(utterance.end, utterance.start))).isoformat(),
            }
        messages.append(message)
    return {"name": meeting.name, "messages": messages, "conversationDate": MEETING_DATE.isoformat()}


async def analysed(client: EngineClient, meeting: Meeting, endpoints: Iterable[str]) -> dict[str, Any]:
    """Submit the meeting, wait for its job, and read the endpoints (plus ``messages``, to map ids to units)."""
    job = await client.submit_text(text_body(meeting))
    await client.wait_for_job(job["jobId"])
    bodies: dict[str, Any] = {}
    for endpoint in ["messages", *endpoints]:
        url = f"{client.url}/v1/conversations/{job['conversationId']}/{endpoint}"
        async with client.session.get(url, headers=client.headers) as response:
            await expect(response, 200, f"GET …/{endpoint}")
            bodies[endpoint] = await response.json()
    messages = bodies["messages"]["messages"]
    if len(messages) != len(meeting.utterances):
        raise RuntimeError(f"{meeting.name}: sent {len(meeting.utterances)} messages, the engine kept {len(messages)}")
    bodies["unitOf"] = {m["id"]: u.unit_id for m, u in zip(messages, meeting.utterances, strict=True)}
    return bodies


def score_ami(meeting: Meeting, bodies: dict[str, Any], scores: Scores) -> None:
    unit_of = bodies["unitOf"]
    linked = set(meeting.labels["actionActs"])
    items = bodies["action-items"]["actionItems"]
    scores.action_items += score_action_items([{unit_of[i] for i in item["messageIds"]} for item in items], linked)
    follow_ups = bodies["follow-ups"]["followUps"]
    scores.follow_ups += score_action_items([{unit_of[i] for i in f["messageIds"]} for f in follow_ups], linked)
    scores.items_per_meeting.append(len(items))
    scores.human_items_per_meeting.append(len(meeting.labels["actionSentences"]))
    if len(scores.examples.setdefault("action items", [])) < 4:
        lines = [f"**{meeting.name}**: human summary: " + " ".join(meeting.labels["actionSentences"])]
        lines += [f"  - {item.get('assignee', {}).get('name', '?')}: {item['text']}" for item in items]
        scores.examples["action items"].append("\n".join(lines))


def score_mrda(meeting: Meeting, bodies: dict[str, Any], scores: Scores, *, punctuated: bool) -> None:
    unit_of = bodies["unitOf"]
    predicted = {unit_of[i] for question in bodies["questions"]["questions"] for i in question["messageIds"]}
    labelled = set(meeting.labels["questionUnits"])
    scores.questions[punctuated] += score_units(predicted, labelled)
    tags = {u.unit_id for u in meeting.utterances if u.text.strip(" .?!,").lower() in TAG_WORDS}
    scores.questions_without_tags[punctuated] += score_units(predicted - tags, labelled - tags)


def score_qmsum(meeting: Meeting, bodies: dict[str, Any], scores: Scores) -> None:
    roots = [t["text"] for t in bodies["topics"]["topics"] if not t.get("parentRefs")]
    scores.topics += score_topics(roots, meeting.labels["topics"])
    reference = meeting.labels["summary"]
    if reference is None:
        return
    summary = " ".join(line["text"] for line in bodies["summary"]["summary"])
    scores.summary.rouge1.append(rouge1_f1(summary, reference))
    scores.summary.length_ratios.append(len(summary.split()) / max(1, len(reference.split())))
    scores.summary.words.append(len(summary.split()))
    if len(scores.examples.setdefault("summaries", [])) < 3:
        scores.examples["summaries"].append(
            f"**{meeting.name}** ({meeting.words} words)\n\n  - engine: {summary}\n  - human: {reference}"
        )


async def run(
    api_url: str, data_dir: Path, split: Split, corpora: list[str], limit: int | None, scores: Scores
) -> None:
    jobs: list[tuple[Meeting, list[str], Any]] = []

    def add(meetings: Iterable[Meeting], endpoints: list[str], scorer: Any) -> None:
        chosen = list(meetings)[:limit]
        if chosen:
            scores.meetings[chosen[0].corpus + ("" if scorer is not score_mrda_unpunctuated else " (unpunctuated)")] = (
                len(chosen)
            )
        jobs.extend((meeting, endpoints, scorer) for meeting in chosen)

    if "ami" in corpora:
        add(ami_action_meetings(data_dir, split), ["action-items", "follow-ups"], score_ami)
    if "mrda" in corpora:
        add(mrda_meetings(data_dir, split, punctuated=True), ["questions"], score_mrda_punctuated)
        add(mrda_meetings(data_dir, split, punctuated=False), ["questions"], score_mrda_unpunctuated)
    if "qmsum" in corpora:
        add(qmsum_meetings(data_dir, split), ["summary", "topics"], score_qmsum)
    started = time.perf_counter()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as session:
        client = EngineClient(session, api_url)
        await client.authenticate()
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def one(meeting: Meeting, endpoints: list[str], scorer: Any) -> None:
            async with gate:
                bodies = await analysed(client, meeting, endpoints)
            scorer(meeting, bodies, scores)
            print(f"  scored {meeting.corpus} {meeting.name}", flush=True)

        await asyncio.gather(*(one(*job) for job in jobs))
    scores.seconds = time.perf_counter() - started


def score_mrda_punctuated(meeting: Meeting, bodies: dict[str, Any], scores: Scores) -> None:
    score_mrda(meeting, bodies, scores, punctuated=True)


def score_mrda_unpunctuated(meeting: Meeting, bodies: dict[str, Any], scores: Scores) -> None:
    score_mrda(meeting, bodies, scores, punctuated=False)


def figures(scores: Scores) -> dict[str, float]:
    """Every headline figure by the name its target has."""
    result: dict[str, float] = {}
    if scores.items_per_meeting:
        result["action items precision"] = scores.action_items.precision
        result["action items recall"] = scores.action_items.recall
        ratios = [n / max(1, h) for n, h in zip(scores.items_per_meeting, scores.human_items_per_meeting, strict=True)]
        result["action items per meeting / human count"] = statistics.median(ratios)
        result["follow-ups precision"] = scores.follow_ups.precision
        result["follow-ups recall"] = scores.follow_ups.recall
    for punctuated, counts in scores.questions.items():
        if counts.labelled:
            condition = "punctuated" if punctuated else "unpunctuated"
            result[f"questions recall, {condition}"] = counts.recall
            result[f"questions precision, {condition}"] = counts.precision
            result[f"questions recall, {condition}, lone tags not counted"] = scores.questions_without_tags[
                punctuated
            ].recall
    if scores.summary.rouge1:
        result["summary ROUGE-1 F1"] = statistics.fmean(scores.summary.rouge1)
        result["summary length / reference"] = statistics.median(scores.summary.length_ratios)
        result["summary words, median"] = statistics.median(scores.summary.words)
        result["topics recall (topic_list)"] = scores.topics.recall
        result["topics precision (topic_list)"] = scores.topics.precision
    return result


def met(name: str, value: float) -> str:
    if name not in TARGETS:
        return "—"
    target = TARGETS[name]
    upper_bound = name.endswith("/ human count") or name.endswith("/ reference")
    ok = value <= target if upper_bound else value >= target
    return f"{'≤' if upper_bound else '≥'} {target:g}: {'yes' if ok else 'no'}"


def report(scores: Scores, split: Split, command: str) -> str:
    lines = [
        "# Insights on real meetings",
        "",
        f"Command: `{command}`  ",
        f"Part: **{split.value}** ({'held apart, never tuned on' if split is Split.CHECK else 'the tuning part'}); "
        f"meetings: {', '.join(f'{k} {v}' for k, v in scores.meetings.items())}; "
        f"{scores.seconds:.0f} s through the engine's HTTP API.",
        "",
        "How each figure is scored: `evaluation/corpora/scoring.py`. The targets are the engine's on the corpora's "
        "unseen test splits; these are the tuning folders' held-apart part.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
    ]
    for name, value in figures(scores).items():
        lines.append(f"| {name} | {value:.3f} | {met(name, value)} |")
    if scores.items_per_meeting:
        lines += [
            "",
            f"Action items: {sum(scores.items_per_meeting)} returned over {len(scores.items_per_meeting)} meetings "
            f"(human summaries: {sum(scores.human_items_per_meeting)} action sentences, "
            f"{scores.action_items.labelled} linked acts).",
        ]
    lines += [
        "",
        "## The models behind these figures",
        "",
        "Trained on the tuning parts only (`.venv/bin/python -m parley_devtools.train_insight_models`); their "
        "out-of-fold figures on those parts, as stored with each model:",
        "",
    ]
    for name in ("questions", "action_items"):
        model = load_model(name)
        lines.append(f"- `{name}`: {json.dumps(model.metadata.get('outOfFold'))}")
    for title, examples in scores.examples.items():
        lines += ["", f"## Examples: {title}", ""]
        for example in examples:
            lines += [example, ""]
    return "\n".join(lines).rstrip() + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--split", choices=[s.value for s in Split], default=Split.CHECK.value)
    parser.add_argument("--corpus", action="append", choices=["ami", "mrda", "qmsum"], help="default: all three")
    parser.add_argument("--limit", type=int, help="at most this many meetings of each corpus")
    parser.add_argument("--api-url", help="an engine that is already running (default: start one)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    arguments = parser.parse_args()
    split = Split(arguments.split)
    corpora = arguments.corpus or ["ami", "mrda", "qmsum"]
    scores = Scores()
    engine: EngineProcess | None = None
    with tempfile.TemporaryDirectory(prefix="parley-eval-") as data:
        try:
            api_url = arguments.api_url
            if api_url is None:
                engine = EngineProcess(Path(data))
                engine.launch()
                asyncio.run(_healthy(engine))
                api_url = engine.url
            asyncio.run(run(api_url, arguments.data_dir, split, corpora, arguments.limit, scores))
        finally:
            if engine is not None:
                engine.stop()
    command = (
        COMMAND
        + "".join(f" --corpus {c}" for c in arguments.corpus or [])
        + (f" --split {split.value}" if split is not Split.CHECK else "")
    )
    text = report(scores, split, command)
    print(text)
    if split is Split.CHECK and arguments.corpus is None and arguments.limit is None:
        RESULTS.write_text(text)
        print(f"wrote {RESULTS}")


async def _healthy(engine: EngineProcess) -> None:
    async with aiohttp.ClientSession() as session:
        await wait_healthy(engine, session)


if __name__ == "__main__":
    main()
