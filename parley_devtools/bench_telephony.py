"""The Telephony API benchmark: call set-up time, transcript latency after speech, and concurrent calls in real time.

    .venv/bin/python -m parley_devtools.bench_telephony [--calls 1,2,4] [--sentences 4]

A real engine process (``python -m parley_engine``, its default settings but for dialing loopback) on a loopback
port; for each count in ``--calls``, that many SIP far ends (``parley_devtools.sip_peer``) on loopback, each
answering the engine's INVITE and playing its own conversation of held-apart sentences
(``evaluation/speech/held_out_sentences.txt``, one flite voice per call) as G.711 µ-law RTP in real time, with a
second of silence between sentences, then hanging up. Every call is started at once with ``POST /v1/endpoint:connect``
and followed on its ``resultWebSocketUrl``. Measured beside the Streaming API's targets:

1. call set-up: from the start request to the far end's answer being received (200 OK sent; the INVITE, the
   conversation and its job made before it), p50 and max;
2. final-result latency: from the moment the far end sent the last audible sample of a sentence to the arrival of
   the final ``message_response`` that holds it, p50 and p99 over every sentence of every call;
3. concurrent calls held in real time: the largest count whose every sentence came back final, with the p50 and p99
   latencies within the Streaming API's targets.

Results go to ``benchmarks/telephony.md`` (command, date, machine) and the raw numbers to ``benchmarks/telephony.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shlex
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

from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.report import Metric, percentile, render_table, summarize, write_results
from parley_devtools.bench.stacks import free_port
from parley_devtools.bench_streaming import (
    FINAL_P50_TARGET,
    FINAL_P99_TARGET,
    Recording,
    build_recording,
    signed_in_when_up,
    start_engine,
)
from parley_devtools.eval_speech import read_sentences
from parley_devtools.sip_peer import PeerBehaviour, SipPeer
from parley_devtools.speech_samples import ALL_VOICES

REPO_ROOT = Path(__file__).resolve().parent.parent
SENTENCES = REPO_ROOT / "evaluation" / "speech" / "held_out_sentences.txt"
RATE = 16_000
SET_UP_TARGET = 1.0  # seconds from the request to the answer, on loopback


@dataclass
class CallRun:
    recording: Recording
    peer: SipPeer | None = None
    requested_at: float = 0.0
    answered_at: float | None = None
    finals: list[tuple[float, str]] = field(default_factory=list)  # (arrival, sentence text)
    ended: dict[str, Any] = field(default_factory=dict)

    @property
    def set_up_seconds(self) -> float | None:
        return None if self.answered_at is None else self.answered_at - self.requested_at

    def latencies(self) -> list[float]:
        """Per sentence: the arrival of the first final after its last audible sample left the far end, minus that
        moment (a sentence with no final before the next one ends has none)."""
        assert self.peer is not None
        started = self.peer.playback_started_at
        if started is None:
            return []
        # The far end plays 8-kHz audio resampled from the 16-kHz recording: its clock is the recording's.
        ends = [started + end for _, end in self.recording.spans]
        out = []
        for index, end in enumerate(ends):
            limit = ends[index + 1] if index + 1 < len(ends) else float("inf")
            arrivals = [arrival for arrival, _ in self.finals if end < arrival < limit]
            if arrivals:
                out.append(min(arrivals) - end)
        return out


def far_end_pcm(recording: Recording) -> bytes:
    at_8k = np.interp(
        np.arange(recording.samples.size // 2) * 2.0, np.arange(recording.samples.size), recording.samples
    )
    return bytes((np.clip(at_8k, -1, 1) * 32767).astype("<i2").tobytes())


async def run_call(http: httpx.AsyncClient, token: str, run: CallRun) -> None:
    loop = asyncio.get_running_loop()
    pcm = far_end_pcm(run.recording)
    behaviour = PeerBehaviour(audio=pcm, codec="PCMU", hang_up_after_seconds=len(pcm) / 16000 + 2.0)
    async with SipPeer(behaviour) as peer:
        run.peer = peer
        run.requested_at = loop.time()
        started = await http.post(
            "/v1/endpoint:connect", json={"operation": "start", "endpoint": {"type": "sip", "uri": peer.uri("udp")}}
        )
        started.raise_for_status()
        body = started.json()
        async with websockets.connect(body["resultWebSocketUrl"], additional_headers={"x-api-key": token}) as results:

            async def answered() -> None:
                await peer.answered.wait()
                run.answered_at = loop.time()

            answering = asyncio.create_task(answered())
            async with asyncio.timeout(len(pcm) / 16000 + 120):
                async for raw in results:
                    frame = json.loads(raw)
                    message = frame.get("message") or {}
                    if frame.get("type") == "message_response":
                        for sent in frame["messages"]:
                            run.finals.append((loop.time(), sent["payload"]["content"]))
                    elif frame.get("type") == "message" and message.get("type") == "call_ended":
                        run.ended = message.get("data") or {}
            answering.cancel()


# The far ends are on loopback, which the engine refuses to dial by default; more calls than its defaults allow.
ENGINE_ENV = {
    "PARLEY_ALLOW_PRIVATE_MEDIA_URLS": "true",
    "PARLEY_TELEPHONY_MAX_CALLS": "16",
    "PARLEY_STREAMING_MAX_STREAMS": "16",
}


async def run_benchmark(call_counts: list[int], sentences_per_call: int, work: Path) -> dict[int, list[CallRun]]:
    sentences = read_sentences(SENTENCES)

    def recording(index: int) -> Recording:
        chosen = [sentences[(index * sentences_per_call + j) % len(sentences)] for j in range(sentences_per_call)]
        return build_recording(chosen, ALL_VOICES[index % len(ALL_VOICES)])

    port = free_port()
    engine = start_engine(port, work, ENGINE_ENV)
    rounds: dict[int, list[CallRun]] = {}
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            token = await signed_in_when_up(http)
            # Warm-up: one short call, so the live workers have loaded their models before the clock runs.
            await run_call(http, token, CallRun(build_recording([sentences[0]], "slt")))
            for count in call_counts:
                runs = [CallRun(recording(i)) for i in range(count)]
                await asyncio.gather(*(run_call(http, token, run) for run in runs))
                rounds[count] = runs
    finally:
        engine.terminate()
        engine.wait(30)
    return rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", default="1,2,4", help="comma-separated counts of concurrent calls, one round each")
    parser.add_argument("--sentences", type=int, default=4)
    parser.add_argument("--output-dir", type=Path, default=REPO_ROOT / "benchmarks")
    args = parser.parse_args()
    counts = [int(c) for c in args.calls.split(",")]
    started_at, wall = datetime.now(UTC), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="parley-bench-telephony-") as scratch:
        rounds = asyncio.run(run_benchmark(counts, args.sentences, Path(scratch)))
    per_round: dict[str, Any] = {}
    held = 0
    for count, runs in rounds.items():
        latency = [x for run in runs for x in run.latencies()]
        expected = sum(len(run.recording.spans) for run in runs)
        set_up = [s for run in runs if (s := run.set_up_seconds) is not None]
        in_real_time = (
            len(latency) == expected
            and bool(latency)
            and percentile(latency, 0.5) <= FINAL_P50_TARGET
            and percentile(latency, 0.99) <= FINAL_P99_TARGET
        )
        if in_real_time:
            held = max(held, count)
        per_round[str(count)] = {
            "latency": summarize(latency),
            "set_up": summarize(set_up),
            "sentences": f"{len(latency)} of {expected}",
            "in_real_time": in_real_time,
            "ended": [run.ended for run in runs],
            "transcripts": [[text for _, text in run.finals] for run in runs],
        }
    first = rounds[counts[0]]
    set_up_all = [s for runs in rounds.values() for run in runs if (s := run.set_up_seconds) is not None]
    single = [x for run in first for x in run.latencies()]
    metrics = [
        Metric(
            "call set-up (request → answered), p50",
            f"{percentile(set_up_all, 0.5) * 1000:.0f} ms",
            f"≤ {SET_UP_TARGET:g} s",
            percentile(set_up_all, 0.5) <= SET_UP_TARGET,
        ),
        Metric(
            "call set-up, max",
            f"{max(set_up_all) * 1000:.0f} ms",
            f"≤ {SET_UP_TARGET:g} s",
            max(set_up_all) <= SET_UP_TARGET,
        ),
        Metric(
            f"final result after the speaker stops, {counts[0]} call(s), p50",
            f"{percentile(single, 0.5):.2f} s",
            f"≤ {FINAL_P50_TARGET} s",
            percentile(single, 0.5) <= FINAL_P50_TARGET,
        ),
        Metric(
            f"final result after the speaker stops, {counts[0]} call(s), p99",
            f"{percentile(single, 0.99):.2f} s",
            f"≤ {FINAL_P99_TARGET} s",
            percentile(single, 0.99) <= FINAL_P99_TARGET,
        ),
    ]
    for count in counts[1:]:
        latency = [x for run in rounds[count] for x in run.latencies()]
        metrics.append(
            Metric(
                f"final result after the speaker stops, {count} calls at once, p50 / p99",
                f"{percentile(latency, 0.5):.2f} / {percentile(latency, 0.99):.2f} s",
                f"≤ {FINAL_P50_TARGET} / {FINAL_P99_TARGET} s",
                percentile(latency, 0.5) <= FINAL_P50_TARGET and percentile(latency, 0.99) <= FINAL_P99_TARGET,
            )
        )
    metrics.append(
        Metric(
            "concurrent calls held in real time (every sentence final, p50 and p99 within target)",
            str(held),
            "reported",
            None,
        )
    )
    print(render_table(metrics))
    command = ".venv/bin/python -m parley_devtools.bench_telephony" + (
        " " + shlex.join(sys.argv[1:]) if sys.argv[1:] else ""
    )
    notes = [
        f"Rounds of {', '.join(map(str, counts))} concurrent calls over SIP/UDP on loopback, each far end playing "
        f"{args.sentences} held-apart sentences in its own flite voice as PCMU at 8 kHz, 1 s of silence between "
        "sentences, then hanging up.",
        "The engine ran with its default settings (PARLEY_STREAMING_WORKERS = the usable cores) but for dialing "
        "loopback; the far ends and the clients ran in one process on the same machine.",
        "Latency is measured from the far end's clock when the sentence's last audible sample was sent; it includes "
        "the VAD's end-of-speech wait (0.5 s of silence) and the final decode (beam 5).",
    ]

    @dataclass
    class Size:
        calls: list[int]
        sentences_per_call: int

    write_results(
        args.output_dir,
        "telephony",
        title="Telephony API benchmark",
        command=command,
        started_at=started_at,
        wall_seconds=time.perf_counter() - wall,
        quick=False,
        machine=describe_machine(),
        size=Size(counts, args.sentences),
        metrics=metrics,
        results={"rounds": per_round, "held_in_real_time": held},
        notes=notes,
    )


if __name__ == "__main__":
    main()
