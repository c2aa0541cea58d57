"""The fault-injection run: Parley under a misbehaving engine, killed services and a restarted broker.

    .venv/bin/python -m parley_devtools.fault_run [--conversations N] [--seconds S] [--small] [--keep]

Starts a Kafka broker of its own (own ports and temp dir), the engine in fault mode (``parley_engine.faults``:
429s, 500s, answers slower than the services' 2 s client timeout, lost, duplicated and out-of-order webhooks)
and ingest, job-watcher and insight-fetcher as separate processes with webhooks on. It streams N short text
conversations, half through ingest's HTTP API (with ``Idempotency-Key``, retried until accepted) and half as
``ProcessRequested`` on the requests topic; meanwhile it SIGKILLs each service at random moments (at least 3 times
each) and restarts it, and restarts the broker once on the same data dir. It then waits (bounded) for the pipeline
to settle and checks, with a read_committed consumer from the beginning of the topics:

- every accepted request ended in exactly one ``InsightsReady``, ``JobFailed`` or dead letter with a reason;
- no jobId has two ``InsightsReady`` (nor two outcomes on the completions topic);
- the gate: no Conversation API call reached the engine before its job completed (the engine's ``/_faults/log``).

It prints the figures and exits 1 when a check fails. The full run writes them to ``benchmarks/faults.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import random
import secrets
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from parley_shared.events import MediaKind, ProcessRequested
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.settings import KafkaSettings, TopicNames

from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings
from parley_cli.local_stack import LocalStack
from parley_cli.watching import TopicFollower
from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.observing import text_body
from parley_devtools.bench.stacks import free_port
from parley_devtools.provider_double.gate import CONVERSATION_READ_PREFIX, gate_violations

log = logging.getLogger(__name__)

SERVICES = ("ingest", "job-watcher", "insight-fetcher")
OUTCOME_EVENTS = ("InsightsReady", "JobFailed", "DeadLetter")
RESULTS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.md"
CLIENT_TIMEOUT_SECONDS = 2.0
# What the engine injects: per API call and per webhook delivery.
ENGINE_FAULTS = {
    "PARLEY_ENGINE_FAULTS_ENABLED": "true",
    "PARLEY_ENGINE_FAULTS_THROTTLE_SHARE": "0.03",
    "PARLEY_ENGINE_FAULTS_RETRY_AFTER_SECONDS": "1",
    "PARLEY_ENGINE_FAULTS_ERROR_SHARE": "0.02",
    "PARLEY_ENGINE_FAULTS_DELAY_SHARE": "0.01",
    "PARLEY_ENGINE_FAULTS_DELAY_SECONDS": "3",
    "PARLEY_ENGINE_FAULTS_WEBHOOK_DROP_SHARE": "0.05",
    "PARLEY_ENGINE_FAULTS_WEBHOOK_DUPLICATE_SHARE": "0.05",
    "PARLEY_ENGINE_FAULTS_WEBHOOK_DELAY_SHARE": "0.05",
    "PARLEY_ENGINE_FAULTS_WEBHOOK_DELAY_SECONDS": "2",
}
# How long one HTTP submission is retried (ingest may be down or waiting for the broker) before it counts as refused.
SUBMIT_DEADLINE_SECONDS = 120.0
SUBMISSIONS_IN_FLIGHT = 32


@dataclass(frozen=True)
class FaultRunSize:
    conversations: int
    seconds: float  # the window in which conversations are streamed and processes are killed
    kills_per_service: int
    settle_seconds: float  # how long the pipeline may take to finish after the window

    @property
    def label(self) -> str:
        return f"{self.conversations} conversations in {self.seconds:g} s"


FULL = FaultRunSize(conversations=1000, seconds=300, kills_per_service=3, settle_seconds=300)
SMALL = FaultRunSize(conversations=60, seconds=70, kills_per_service=3, settle_seconds=90)


@dataclass
class FaultRunReport:
    """The figures of one run; ``failures()`` lists the checks that did not hold."""

    size: FaultRunSize
    seed: int
    accepted: dict[str, str] = field(default_factory=dict)  # requestId → "http" or "kafka"
    refused: list[str] = field(default_factory=list)
    http_retries: int = 0
    kills: Counter[str] = field(default_factory=Counter)
    broker_restarts: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    missing: list[str] = field(default_factory=list)
    several_outcomes: dict[str, list[str]] = field(default_factory=dict)
    dead_letters_without_reason: int = 0
    dead_letter_reasons: Counter[str] = field(default_factory=Counter)
    duplicate_insights: list[str] = field(default_factory=list)
    duplicate_completions: list[str] = field(default_factory=list)
    engine_calls: int = 0
    engine_jobs: int = 0
    first_read_after_completion: list[float] = field(default_factory=list)  # seconds, per conversation
    conversation_reads: int = 0
    gate_violations: list[dict[str, Any]] = field(default_factory=list)
    chaos_seconds: float = 0.0
    settle_seconds: float = 0.0
    wall_seconds: float = 0.0
    work_dir: Path | None = None

    def failures(self) -> list[str]:
        problems = []
        if self.missing:
            problems.append(f"{len(self.missing)} accepted request(s) without an outcome, e.g. {self.missing[:3]}")
        if self.several_outcomes:
            sample = dict(list(self.several_outcomes.items())[:3])
            problems.append(f"{len(self.several_outcomes)} request(s) with more than one outcome, e.g. {sample}")
        if self.dead_letters_without_reason:
            problems.append(f"{self.dead_letters_without_reason} dead letter(s) without a reason")
        if self.duplicate_insights:
            problems.append(
                f"{len(self.duplicate_insights)} jobId(s) with two InsightsReady: {self.duplicate_insights[:3]}"
            )
        if self.duplicate_completions:
            problems.append(
                f"{len(self.duplicate_completions)} jobId(s) with two outcomes on completions: "
                f"{self.duplicate_completions[:3]}"
            )
        if self.gate_violations:
            problems.append(f"{len(self.gate_violations)} gate violation(s), e.g. {self.gate_violations[:2]}")
        if self.kills and min(self.kills[s] for s in SERVICES) < self.size.kills_per_service:
            problems.append(f"fewer kills than planned: {dict(self.kills)}")
        if self.broker_restarts < 1:
            problems.append("the broker was not restarted")
        if not self.accepted:
            problems.append("no request was accepted")
        return problems

    def rows(self) -> list[tuple[str, str]]:
        by_channel = Counter(self.accepted.values())
        kills = ", ".join(f"{service} {self.kills[service]}" for service in SERVICES)
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults_injected.items())) or "none"
        outcomes = ", ".join(f"{kind} {self.outcomes[kind]}" for kind in OUTCOME_EVENTS)
        reasons = "; ".join(f"{reason} (x{count})" for reason, count in self.dead_letter_reasons.most_common(5))
        return [
            ("conversations streamed", f"{self.size.conversations} over {self.size.seconds:g} s"),
            (
                "accepted",
                f"{len(self.accepted)} (HTTP {by_channel['http']}, Kafka {by_channel['kafka']}); "
                f"refused {len(self.refused)}; HTTP retries {self.http_retries}",
            ),
            ("SIGKILLs (each followed by a restart)", f"{sum(self.kills.values())}: {kills}"),
            ("broker restarts (stop + start on the same data dir)", str(self.broker_restarts)),
            ("faults injected by the engine", f"{sum(self.faults_injected.values())}: {faults}"),
            ("engine API calls logged (Conversation API reads)", f"{self.engine_calls} ({self.conversation_reads})"),
            ("engine jobs (more than accepted: submissions that timed out, then retried)", str(self.engine_jobs)),
            ("first Conversation API read after its job completed (min / median / max)", self._read_delays()),
            ("outcomes", outcomes),
            ("dead-letter reasons", reasons or "none"),
            ("accepted requests without an outcome", str(len(self.missing))),
            ("requests with more than one outcome", str(len(self.several_outcomes))),
            ("jobIds with two InsightsReady", str(len(self.duplicate_insights))),
            ("jobIds with two completions", str(len(self.duplicate_completions))),
            ("gate violations (Conversation API read before completion)", str(len(self.gate_violations))),
            (
                "wall time",
                f"{self.wall_seconds:.0f} s (chaos window {self.chaos_seconds:.0f} s, "
                f"settling {self.settle_seconds:.0f} s)",
            ),
        ]

    def _read_delays(self) -> str:
        delays = sorted(self.first_read_after_completion)
        if not delays:
            return "none"
        return f"{delays[0]:.2f} / {delays[len(delays) // 2]:.2f} / {delays[-1]:.2f} s"

    def render(self) -> str:
        lines = ["| figure | value |", "|---|---|"]
        lines += [f"| {name} | {value} |" for name, value in self.rows()]
        failures = self.failures()
        lines.append("")
        lines.append("Result: " + ("PASS, every check held." if not failures else "FAIL"))
        lines += [f"- {problem}" for problem in failures]
        return "\n".join(lines)


@dataclass
class FaultyPipeline:
    """The broker, the engine in fault mode and the three services, all this run's own."""

    kafka: LocalKafka
    stack: LocalStack
    topics: TopicNames
    service_env: dict[str, dict[str, str]]

    @property
    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap)

    def url(self, name: str) -> str:
        return self.stack.processes[name].url

    def kill_and_restart(self, name: str) -> None:
        port = self.stack.processes[name].port
        self.stack.stop(name, kill=True)
        self.stack.start(name, port=port, extra_env=self.service_env.get(name), timeout=120)

    def restart_broker(self) -> None:
        self.kafka.stop(timeout=30)
        self.kafka.start(stop_with_parent=True)

    def stop(self) -> None:
        self.stack.stop_all()
        self.kafka.stop()


def start_faulty_pipeline(work_dir: Path, run_id: str, seed: int) -> FaultyPipeline:
    kafka = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), data_dir=work_dir / "kafka", heap="768m")
    )
    kafka.start(stop_with_parent=True)
    topics = TopicNames.prefixed(f"faults-{run_id}")
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        **topics.as_env(),
        "PARLEY_KAFKA__TOPIC_PARTITIONS": "3",
        "PARLEY_LOG_LEVEL": "INFO",
        "PARLEY_INSTANCE_ID": f"faults-{run_id}",
        "PARLEY_WEBHOOK_SECRET": secrets.token_hex(16),
        # The services give up on an engine call after 2 s; the engine's injected delay is 3 s.
        "PARLEY_PROVIDER__TIMEOUT_SECONDS": f"{CLIENT_TIMEOUT_SECONDS:g}",
        # Lost final webhooks are caught by polling: keep that safety net short so the run settles quickly.
        "PARLEY_POLL_INITIAL_SECONDS": "0.5",
        "PARLEY_POLL_MAX_INTERVAL_SECONDS": "5",
        "PARLEY_WEBHOOK_FALLBACK_INTERVAL_SECONDS": "5",
    }
    stack = LocalStack(log_dir=work_dir / "logs", env=env)
    pipeline = FaultyPipeline(kafka, stack, topics, service_env={})
    watcher_port = free_port()
    try:
        engine = stack.start(
            "engine",
            port=free_port(),
            timeout=120,
            extra_env={
                **ENGINE_FAULTS,
                # The engine calls back only public addresses and the job-watcher it trusts.
                "PARLEY_TRUSTED_WEBHOOK_URLS": f"http://127.0.0.1:{watcher_port}/webhooks/jobs",
                "PARLEY_ENGINE_FAULTS_SEED": str(seed),
                "PARLEY_ENGINE_DATA_DIR": str(work_dir / "engine-data"),
                "PARLEY_WORKERS": "1",
                # Only injected 429s: the run paces its submissions instead.
                "PARLEY_MAX_CONCURRENT_JOBS": "5000",
            },
        )
        stack.env["PARLEY_API_URL"] = engine.url
        watcher = stack.start("job-watcher", port=watcher_port, timeout=120)
        stack.start("insight-fetcher", port=free_port(), timeout=120)
        pipeline.service_env["ingest"] = {"PARLEY_WEBHOOK_URL": f"{watcher.url}/webhooks/jobs"}
        stack.start("ingest", port=free_port(), extra_env=pipeline.service_env["ingest"], timeout=120)
    except BaseException:
        pipeline.stop()
        raise
    return pipeline


class RequestPublisher:
    """Publishes ProcessRequested records, starting a fresh producer when the broker went away under it."""

    def __init__(self, kafka: KafkaSettings) -> None:
        self._kafka = kafka
        self._producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def _current(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(**aiokafka_options(self._kafka), enable_idempotence=True, linger_ms=5)
                await producer.start()
                self._producer = producer
            return self._producer

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        async with self._lock:
            if self._producer is producer:
                self._producer = None
        with contextlib.suppress(Exception):
            await producer.stop()

    async def publish(self, topic: str, key: bytes, value: bytes, *, deadline: float) -> bool:
        while time.monotonic() < deadline:
            producer: AIOKafkaProducer | None = None
            try:
                producer = await self._current()
                await asyncio.wait_for(await producer.send(topic, value, key=key), 30)
                return True
            except (KafkaError, OSError, TimeoutError) as error:
                log.info("publish failed (%s); retrying with a fresh producer", error)
                if producer is not None:
                    await self._discard(producer)
                await asyncio.sleep(1.0)
        return False

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()


async def stream_conversations(
    pipeline: FaultyPipeline, size: FaultRunSize, run_id: str, report: FaultRunReport
) -> None:
    """N conversations spread over the window, even ones over HTTP and odd ones over Kafka."""
    interval = size.seconds * 0.85 / max(1, size.conversations)
    in_flight = asyncio.Semaphore(SUBMISSIONS_IN_FLIGHT)
    publisher = RequestPublisher(pipeline.kafka_settings)
    ingest = pipeline.url("ingest")
    tasks: list[asyncio.Task[None]] = []

    async def over_http(client: httpx.AsyncClient, n: int) -> None:
        request_id = f"faults-{run_id}-http-{n}"
        deadline = time.monotonic() + SUBMIT_DEADLINE_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            attempt += 1
            try:
                response = await client.post(
                    "/v1/process/text", json=text_body(n, words="fault run"), headers={"Idempotency-Key": request_id}
                )
            except httpx.HTTPError:
                status = None
            else:
                status = response.status_code
                if status == 202:
                    report.accepted[request_id] = "http"
                    report.http_retries += attempt - 1
                    return
                if 400 <= status < 500 and status not in (408, 429):
                    log.warning("ingest refused %s: %s %s", request_id, status, response.text[:200])
                    break
            await asyncio.sleep(min(5.0, 0.25 * 2 ** min(attempt, 5)))
        report.http_retries += attempt - 1
        report.refused.append(request_id)

    async def over_kafka(n: int) -> None:
        request_id = f"faults-{run_id}-kafka-{n}"
        command = ProcessRequested(
            request_id=request_id,
            kind=MediaKind.TEXT,
            name=f"fault run conversation {n}",
            messages=text_body(n, words="fault run")["messages"],
        )
        deadline = time.monotonic() + SUBMIT_DEADLINE_SECONDS
        if await publisher.publish(pipeline.topics.requests, request_id.encode(), command.to_wire(), deadline=deadline):
            report.accepted[request_id] = "kafka"
        else:
            report.refused.append(request_id)

    async def bounded(submit: Callable[[], Awaitable[None]]) -> None:
        async with in_flight:
            await submit()

    started = time.monotonic()
    async with httpx.AsyncClient(base_url=ingest, timeout=30) as client:
        try:
            for n in range(size.conversations):
                await asyncio.sleep(max(0.0, started + n * interval - time.monotonic()))
                submit = (lambda n=n: over_http(client, n)) if n % 2 == 0 else (lambda n=n: over_kafka(n))
                tasks.append(asyncio.create_task(bounded(submit)))
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await publisher.close()


async def run_chaos(pipeline: FaultyPipeline, size: FaultRunSize, rng: random.Random, report: FaultRunReport) -> None:
    """SIGKILL + restart each service ``kills_per_service`` times and restart the broker once, at random moments.

    The window is cut into one slot per action and each action happens at a random moment of its slot, so the
    kills spread over the whole window (the broker restart takes a slot in the middle).
    """
    targets = [service for service in SERVICES for _ in range(size.kills_per_service)]
    rng.shuffle(targets)
    targets.insert(len(targets) // 2, "broker")
    slot = 0.85 * size.seconds / len(targets)
    plan = [(0.05 * size.seconds + (i + rng.uniform(0.1, 0.9)) * slot, target) for i, target in enumerate(targets)]
    started = time.monotonic()
    for at, target in plan:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        moment = time.monotonic() - started
        if target == "broker":
            log.info("t=%.1fs: restarting the broker", moment)
            await asyncio.to_thread(pipeline.restart_broker)
            report.broker_restarts += 1
        else:
            log.info("t=%.1fs: SIGKILL %s", moment, target)
            await asyncio.to_thread(pipeline.kill_and_restart, target)
            report.kills[target] += 1


async def collect_outcomes(
    pipeline: FaultyPipeline, report: FaultRunReport, *, settle_seconds: float
) -> dict[str, list[dict[str, Any]]]:
    """Events by type from the beginning of the output topics, until each accepted request has an outcome (bounded),
    then a few seconds more so that late duplicates are seen too."""
    topics = [pipeline.topics.completions, pipeline.topics.insights, pipeline.topics.dead_letters]
    seen: dict[str, list[dict[str, Any]]] = {}
    finished: set[str] = set()
    expected = set(report.accepted)

    async def read(follower: TopicFollower, until_done: bool) -> None:
        async for _, event in follower.events():
            kind = event.get("eventType") or ("DeadLetter" if "sourceTopic" in event else "?")
            seen.setdefault(kind, []).append(event)
            if kind in OUTCOME_EVENTS and event.get("requestId"):
                finished.add(event["requestId"])
            if until_done and expected <= finished:
                return

    async with TopicFollower(pipeline.kafka_settings, topics, from_beginning=True) as follower:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(follower, True), settle_seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(read(follower, False), 10.0)
    return seen


def check_outcomes(seen: dict[str, list[dict[str, Any]]], report: FaultRunReport) -> None:
    by_request: dict[str, list[str]] = {}
    for kind in OUTCOME_EVENTS:
        for event in seen.get(kind, []):
            report.outcomes[kind] += 1
            if kind == "DeadLetter":
                reason = str(event.get("reason") or "").strip()
                if not reason:
                    report.dead_letters_without_reason += 1
                report.dead_letter_reasons[f"{event.get('service')}: {reason[:80]}"] += 1
            request_id = event.get("requestId")
            if request_id:
                by_request.setdefault(request_id, []).append(kind)
    report.missing = sorted(request_id for request_id in report.accepted if request_id not in by_request)
    report.several_outcomes = {
        request_id: kinds
        for request_id, kinds in by_request.items()
        if request_id in report.accepted and len(kinds) > 1
    }
    insights = Counter(event["jobId"] for event in seen.get("InsightsReady", []))
    report.duplicate_insights = sorted(job for job, count in insights.items() if count > 1)
    completions = Counter(event["jobId"] for kind in ("JobCompleted", "JobFailed") for event in seen.get(kind, []))
    report.duplicate_completions = sorted(job for job, count in completions.items() if count > 1)


async def check_gate(pipeline: FaultyPipeline, report: FaultRunReport) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        response = await client.get(pipeline.url("engine") + "/_faults/log")
        response.raise_for_status()
        fault_log = response.json()
    calls = fault_log["calls"]
    report.faults_injected = fault_log["injected"]
    report.engine_calls = len(calls)
    report.conversation_reads = sum(1 for call in calls if call["path"].startswith(CONVERSATION_READ_PREFIX))
    report.gate_violations = gate_violations(calls, fault_log["transitions"])
    completed = {t["conversationId"]: t["t"] for t in fault_log["transitions"] if t["status"] == "completed"}
    report.engine_jobs = sum(1 for t in fault_log["transitions"] if t["status"] == "scheduled")
    first_read: dict[str, float] = {}
    for call in calls:
        if call["method"] == "GET" and call["path"].startswith(CONVERSATION_READ_PREFIX):
            conversation_id = call["path"][len(CONVERSATION_READ_PREFIX) :].split("/")[0]
            first_read[conversation_id] = min(first_read.get(conversation_id, call["t"]), call["t"])
    # Shows the clocks agree: small positive gaps (a negative one would also be a gate violation).
    report.first_read_after_completion = [t - completed[c] for c, t in first_read.items() if c in completed]


async def run_faults(size: FaultRunSize, work_dir: Path, *, seed: int | None = None) -> FaultRunReport:
    """One whole fault-injection run in ``work_dir`` (broker data, engine data, logs); returns its figures."""
    seed = seed if seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    run_id = uuid.uuid4().hex[:8]
    report = FaultRunReport(size=size, seed=seed, work_dir=work_dir)
    began = time.monotonic()
    pipeline = await asyncio.to_thread(start_faulty_pipeline, work_dir, run_id, seed)
    try:
        chaos_began = time.monotonic()
        await asyncio.gather(
            stream_conversations(pipeline, size, run_id, report), run_chaos(pipeline, size, rng, report)
        )
        settle_began = time.monotonic()
        report.chaos_seconds = settle_began - chaos_began
        seen = await collect_outcomes(pipeline, report, settle_seconds=size.settle_seconds)
        report.settle_seconds = time.monotonic() - settle_began
        check_outcomes(seen, report)
        await check_gate(pipeline, report)
    finally:
        await asyncio.to_thread(pipeline.stop)
    report.wall_seconds = time.monotonic() - began
    return report


def results_markdown(report: FaultRunReport, command: str) -> str:
    machine = describe_machine()
    faults = ", ".join(
        f"{key.removeprefix('PARLEY_ENGINE_FAULTS_').lower()}={value}" for key, value in ENGINE_FAULTS.items()
    )
    return "\n".join(
        [
            "# Fault-injection run",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- seed: {report.seed}",
            f"- machine: nproc {machine['nproc']}, {machine['memory_gib']} GiB memory, {machine['cpu_model']} "
            f"({machine['os']}, Python {machine['python']})",
            f"- engine fault mode: {faults}; services' provider timeout {CLIENT_TIMEOUT_SECONDS:g} s",
            "",
            "## Figures",
            "",
            report.render(),
            "",
        ]
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--conversations", type=int, help="conversations to stream (default 1000, small 60)")
    parser.add_argument("--seconds", type=float, help="length of the streaming and kill window")
    parser.add_argument("--small", action="store_true", help="about 60 conversations in about 3 minutes")
    parser.add_argument("--seed", type=int, help="seed of the kill schedule and the engine's fault dice")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (logs, broker and engine data)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # The broker restart makes the clients retry loudly; the run's own progress lines are what matter here.
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    size = SMALL if args.small else FULL
    size = FaultRunSize(
        conversations=args.conversations or size.conversations,
        seconds=args.seconds or size.seconds,
        kills_per_service=size.kills_per_service,
        settle_seconds=size.settle_seconds,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="parley-faults-"))
    print(f"fault run: {size.label}, work dir {work_dir}", flush=True)
    report = asyncio.run(run_faults(size, work_dir, seed=args.seed))
    print(report.render(), flush=True)
    failed = bool(report.failures())
    if not args.small:
        command = ".venv/bin/python -m parley_devtools.fault_run " + shlex.join(sys.argv[1:] if argv is None else argv)
        RESULTS_PATH.write_text(results_markdown(report, command.strip()))
        print(f"written to {RESULTS_PATH}")
    if args.keep or failed:
        print(f"logs and data kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
