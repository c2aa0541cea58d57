"""The Streaming API benchmark: live speech-to-text latency, interim cadence, concurrency and accuracy.

    .venv/bin/python -m parley_devtools.bench_streaming [--streams 4] [--sentences 8]

A real engine process (``python -m parley_engine``, its default settings) on a loopback port; ``--streams``
WebSocket clients at once, each streaming a different conversation of held-apart sentences
(``evaluation/speech/held_out_sentences.txt``) in a different flite voice, paced in real time in 8,192-byte LINEAR16
frames (0.256 s at 16 kHz), with a second of silence between sentences. Measured beside the targets of the issue:

1. final-result latency: from the moment the last audible sample of a sentence was sent (the speaker stopped) to
   the arrival of the final ``recognition_result`` that holds it; p50 and p99 over every sentence of every stream;
2. interim cadence: the longest gaps between successive ``recognition_result`` frames while someone speaks (from
   one second into a sentence to its end);
3. real time: whether every stream's sender kept its schedule and the finals kept up (the latencies above);
4. word error rate of the streams' final transcripts against the same recordings sent to the Async API
   (``POST /v1/process/audio``) on the same engine.

Results go to ``benchmarks/streaming.md`` (command, date, machine) and the raw numbers to ``benchmarks/streaming.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import websockets
from parley_shared.settings import DEVELOPMENT_APP_ID, DEVELOPMENT_APP_SECRET

from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.report import Metric, percentile, render_table, summarize, write_results
from parley_devtools.bench.stacks import free_port
from parley_devtools.eval_speech import read_sentences, word_error_rate
from parley_devtools.speech_samples import ALL_VOICES, audible_span, synthesize_samples, write_wav

REPO_ROOT = Path(__file__).resolve().parent.parent
SENTENCES = REPO_ROOT / "evaluation" / "speech" / "held_out_sentences.txt"
RATE = 16_000
FRAME_BYTES = 8192
PAUSE_SECONDS = 1.0
FINAL_P50_TARGET, FINAL_P99_TARGET, INTERIM_GAP_TARGET, WER_MARGIN = 1.0, 2.0, 1.0, 0.03


@dataclass
class Recording:
    text: str
    samples: np.ndarray
    spans: list[tuple[float, float]]  # audible start and end of each sentence, seconds


@dataclass
class StreamRun:
    recording: Recording
    started: float = 0.0  # wall clock of the first audio sample
    results: list[tuple[float, dict[str, Any]]] = field(default_factory=list)  # (arrival, recognition_result)
    send_lag: float = 0.0  # how far the sender fell behind its real-time schedule, at worst

    def finals(self) -> list[tuple[float, dict[str, Any]]]:
        return [(t, m) for t, m in self.results if m["isFinal"]]


def build_recording(sentences: list[str], voice: str) -> Recording:
    pieces, spans, cursor = [np.zeros(int(0.5 * RATE), np.float32)], [], 0.5
    for sentence in sentences:
        speech = synthesize_samples(sentence, voice)
        first, last = audible_span(speech)
        spans.append((cursor + first / RATE, cursor + last / RATE))
        pieces += [speech, np.zeros(int(PAUSE_SECONDS * RATE), np.float32)]
        cursor += speech.size / RATE + PAUSE_SECONDS
    return Recording(" ".join(sentences), np.concatenate(pieces), spans)


def word_seconds(value: dict[str, str]) -> float:
    return int(value["seconds"]) + int(value["nanos"]) / 1e9


async def stream(host: str, token: str, run: StreamRun, connection_id: str) -> None:
    pcm = (np.clip(run.recording.samples, -1, 1) * 32767).astype("<i2").tobytes()
    async with websockets.connect(f"ws://{host}/v1/realtime/insights/{connection_id}?access_token={token}") as ws:
        start = {
            "type": "start_request",
            "insightTypes": ["question", "action_item", "follow_up"],
            "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": RATE}},
        }
        await ws.send(json.dumps(start))

        async def receive() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                message = frame.get("message") or {}
                if frame.get("type") == "message" and message.get("type") == "recognition_result":
                    run.results.append((time.perf_counter(), message))

        receiver = asyncio.create_task(receive())
        run.started = time.perf_counter()
        for offset in range(0, len(pcm), FRAME_BYTES):
            due = run.started + offset / 2 / RATE
            if (wait := due - time.perf_counter()) > 0:
                await asyncio.sleep(wait)
            run.send_lag = max(run.send_lag, time.perf_counter() - due)
            await ws.send(pcm[offset : offset + FRAME_BYTES])
        await ws.send(json.dumps({"type": "stop_request"}))
        async with asyncio.timeout(60):
            await receiver


def latencies(run: StreamRun) -> list[float]:
    """Per sentence: arrival of the first final that reaches its end, minus when its last sample was sent."""
    out = []
    finals = run.finals()
    for _, end in run.recording.spans:
        arrivals = [
            t
            for t, m in finals
            if (words := m["payload"]["raw"]["alternatives"][0]["words"])
            and word_seconds(words[-1]["endTime"]) >= end - 0.6
        ]
        if arrivals:
            out.append(min(arrivals) - (run.started + end))
    return out


def interim_gaps(run: StreamRun) -> list[float]:
    gaps = []
    arrivals = [t for t, _ in run.results]
    for start, end in run.recording.spans:
        window_start, window_end = run.started + start + 1.0, run.started + end
        if window_end <= window_start:
            continue
        inside = [t for t in arrivals if window_start < t < window_end]
        points = [window_start, *inside, window_end]
        gaps += [b - a for a, b in itertools.pairwise(points)]
    return gaps


def transcript(run: StreamRun) -> str:
    return " ".join(m["punctuated"]["transcript"] for _, m in run.finals())


def start_engine(port: int, data_dir: Path, extra_env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_ENGINE_DATA_DIR": str(data_dir),
        "PARLEY_LOG_LEVEL": "WARNING",
        **(extra_env or {}),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "parley_engine"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(data_dir / "engine.log").open("wb"),
    )


async def signed_in_when_up(http: httpx.AsyncClient) -> str:
    """Wait (up to two minutes) for the engine behind ``http`` to answer, then sign ``http`` in; the token."""
    async with asyncio.timeout(120):
        while True:
            try:
                if (await http.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    credentials = {"type": "application", "appId": DEVELOPMENT_APP_ID, "appSecret": DEVELOPMENT_APP_SECRET}
    token = str((await http.post("/oauth2/token:generate", json=credentials)).json()["accessToken"])
    http.headers["x-api-key"] = token
    return token


async def async_transcript(http: httpx.AsyncClient, wav: bytes) -> str:
    job = (await http.post("/v1/process/audio", content=wav, headers={"Content-Type": "audio/wav"})).json()
    async with asyncio.timeout(600):
        while True:  # polled like any Async API client; the engine has no push to wait on here
            if (await http.get(f"/v1/job/{job['jobId']}")).json()["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.5)
    messages = (await http.get(f"/v1/conversations/{job['conversationId']}/messages")).json()["messages"]
    return " ".join(m["text"] for m in messages)


async def run_benchmark(streams: int, sentences_per_stream: int, work: Path) -> dict[str, Any]:
    sentences = read_sentences(SENTENCES)
    recordings = [
        build_recording(
            [sentences[(i * sentences_per_stream + j) % len(sentences)] for j in range(sentences_per_stream)],
            ALL_VOICES[i % len(ALL_VOICES)],
        )
        for i in range(streams)
    ]
    port = free_port()
    engine = start_engine(port, work)
    host = f"127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=f"http://{host}", timeout=60) as http:
            token = await signed_in_when_up(http)
            # Warm-up: one short stream, so the live workers have loaded their models before the clock runs.
            await stream(host, token, StreamRun(build_recording([sentences[0]], "slt")), "warm-up")
            runs = [StreamRun(r) for r in recordings]
            await asyncio.gather(*(stream(host, token, run, f"bench-{i}") for i, run in enumerate(runs)))
            async_texts = []
            for i, recording in enumerate(recordings):
                path = write_wav(work / f"stream-{i}.wav", recording.samples[np.newaxis, :])
                async_texts.append(await async_transcript(http, await asyncio.to_thread(path.read_bytes)))
    finally:
        engine.terminate()
        engine.wait(30)
    return {"runs": runs, "async_texts": async_texts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=4)
    parser.add_argument("--sentences", type=int, default=8)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks")
    args = parser.parse_args()
    started_at, wall = datetime.now(UTC), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parley-bench-streaming-") as scratch:
        outcome = asyncio.run(run_benchmark(args.streams, args.sentences, Path(scratch)))
    runs: list[StreamRun] = outcome["runs"]
    latency = [x for run in runs for x in latencies(run)]
    gaps = [x for run in runs for x in interim_gaps(run)]
    expected = sum(len(run.recording.spans) for run in runs)
    stream_wer = [word_error_rate(run.recording.text, transcript(run)) for run in runs]
    async_wer = [
        word_error_rate(run.recording.text, text) for run, text in zip(runs, outcome["async_texts"], strict=True)
    ]
    live, batch = float(np.mean(stream_wer)), float(np.mean(async_wer))
    worst_lag = max(run.send_lag for run in runs)
    p50, p99 = percentile(latency, 0.5), percentile(latency, 0.99)
    max_gap = max(gaps) if gaps else float("nan")
    metrics = [
        Metric(
            "final result after the speaker stops, p50",
            f"{p50:.2f} s",
            f"≤ {FINAL_P50_TARGET} s",
            p50 <= FINAL_P50_TARGET,
        ),
        Metric(
            "final result after the speaker stops, p99",
            f"{p99:.2f} s",
            f"≤ {FINAL_P99_TARGET} s",
            p99 <= FINAL_P99_TARGET,
        ),
        Metric("sentences with a final result", f"{len(latency)} of {expected}", "all", len(latency) == expected),
        Metric(
            "gap between results while speaking, p99",
            f"{percentile(gaps, 0.99):.2f} s",
            f"≤ {INTERIM_GAP_TARGET} s",
            percentile(gaps, 0.99) <= INTERIM_GAP_TARGET,
        ),
        Metric(
            "gap between results while speaking, max",
            f"{max_gap:.2f} s",
            f"≤ {INTERIM_GAP_TARGET} s",
            max_gap <= INTERIM_GAP_TARGET,
        ),
        Metric(
            "concurrent streams held in real time (worst sender lag)",
            f"{len(runs)} ({worst_lag * 1000:.0f} ms)",
            "≥ 4",
            len(runs) >= 4 and worst_lag < 0.5 and p99 <= FINAL_P99_TARGET,
        ),
        Metric(
            "word error rate, Streaming API", f"{live:.1%}", f"≤ Async + {WER_MARGIN:.0%}", live <= batch + WER_MARGIN
        ),
        Metric("word error rate, Async API (same audio)", f"{batch:.1%}", "baseline", None),
    ]
    print(render_table(metrics))
    command = ".venv/bin/python -m parley_devtools.bench_streaming" + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    notes = [
        f"{len(runs)} streams at once, each {args.sentences} held-apart sentences in one flite voice "
        f"({', '.join(ALL_VOICES[: len(runs)])}), {PAUSE_SECONDS:g} s of silence between sentences, paced in real "
        f"time in {FRAME_BYTES}-byte frames.",
        "The engine ran with its default settings (PARLEY_STREAMING_WORKERS = the usable cores), the client on the "
        "same machine.",
        "Latency is measured from the wall-clock moment the sentence's last audible sample was sent; it includes the "
        "VAD's end-of-speech wait (0.5 s of silence) and the final decode (beam 5).",
        "Word error rates are the mean over the streams, normalised as in `parley_devtools.eval_speech`.",
    ]
    results = {
        "latency": summarize(latency),
        "gaps": summarize(gaps),
        "stream_wer": stream_wer,
        "async_wer": async_wer,
        "send_lag": [run.send_lag for run in runs],
        "transcripts": [transcript(run) for run in runs],
        "async_transcripts": outcome["async_texts"],
    }

    @dataclass
    class Size:
        streams: int
        sentences_per_stream: int

    write_results(
        args.output_dir,
        "streaming",
        title="Streaming API benchmark",
        command=command,
        started_at=started_at,
        wall_seconds=time.perf_counter() - wall,
        quick=False,
        machine=describe_machine(),
        size=Size(len(runs), args.sentences),
        metrics=metrics,
        results=results,
        notes=notes,
    )


if __name__ == "__main__":
    main()
