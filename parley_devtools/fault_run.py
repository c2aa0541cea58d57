"""The fault-injection run: Parley under a misbehaving engine, killed services and a restarted broker.

    .venv/bin/python -m parley_devtools.fault_run [--conversations N] [--seconds S] [--small] [--keep]
    .venv/bin/python -m parley_devtools.fault_run --replicas 3 --engines 2 [...]

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

With ``--replicas R --engines E`` it runs R replicas of each service (``ingest-0`` …, each its own
``PARLEY_INSTANCE_ID``, a restart reusing it so that it fences its predecessor) and E engines; several engines share
one throwaway PostgreSQL database and one media directory. HTTP submissions go round-robin over the ingest replicas,
ingest replica i names job-watcher replica i as its webhook, and replica i calls engine i mod E. Every process, each
engine included, is SIGKILLed and restarted, and one more check holds: no orphan, i.e. every job the engines
created is named by a ``JobSubmitted`` on the jobs topic, so some job-watcher watches it.

It prints the figures and exits 1 when a check fails. The full run writes them to ``benchmarks/faults.md``
(``benchmarks/faults-replicas.md`` with replicas).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
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
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from parley_engine.faults import FAULT_LOG_PATH
from parley_shared.events import MediaKind, ProcessRequested
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.kafka.topics import topic_partitions
from parley_shared.settings import KafkaSettings, TopicNames

from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings
from parley_cli.local_stack import LocalStack
from parley_cli.watching import TopicFollower
from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.observing import text_body
from parley_devtools.bench.stacks import free_port
from parley_devtools.postgres_server import PostgresServer, start_postgres, stop_postgres
from parley_devtools.provider_double.gate import CONVERSATION_READ_PREFIX, gate_violations

log = logging.getLogger(__name__)

SERVICES = ("ingest", "job-watcher", "insight-fetcher")
OUTCOME_EVENTS = ("InsightsReady", "JobFailed", "DeadLetter")
RESULTS_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "faults.md"
REPLICA_RESULTS_PATH = RESULTS_PATH.with_name("faults-replicas.md")
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
# Engines that get killed: a killed engine's running jobs go to another engine once their lease runs out, so keep
# the lease short (default 30 s). The run uses no live streams, so one streaming worker each instead of one per core.
KILLED_ENGINE_ENV = {"PARLEY_JOB_LEASE_SECONDS": "10", "PARLEY_STREAMING_WORKERS": "1"}


@dataclass(frozen=True)
class FaultRunSize:
    conversations: int
    seconds: float  # the window in which conversations are streamed and processes are killed
    kills_per_service: int  # SIGKILLs of each killed process (with replicas: of each replica and each engine)
    settle_seconds: float  # how long the pipeline may take to finish after the window
    replicas: int = 1  # of ingest, job-watcher and insight-fetcher each
    engines: int = 1  # more than one share a PostgreSQL database

    @property
    def replicated(self) -> bool:
        """A replica run: processes named ``ingest-0`` …, the engines killed too, orphans checked."""
        return self.replicas > 1 or self.engines > 1

    @property
    def label(self) -> str:
        label = f"{self.conversations} conversations in {self.seconds:g} s"
        if self.replicated:
            label += f", {self.replicas} replica(s) of each service and {self.engines} engine(s)"
        return label

    def process_names(self, service: str) -> list[str]:
        """The processes running ``service``: just ``ingest`` in a single-replica run, else ``ingest-0`` …"""
        if not self.replicated:
            return [service]
        count = self.engines if service == "engine" else self.replicas
        return [f"{service}-{n}" for n in range(count)]

    @property
    def kill_targets(self) -> list[str]:
        """The processes SIGKILLed ``kills_per_service`` times each: the services, and with replicas the engines."""
        services = [*SERVICES, "engine"] if self.replicated else list(SERVICES)
        return [name for service in services for name in self.process_names(service)]


FULL = FaultRunSize(conversations=1000, seconds=300, kills_per_service=3, settle_seconds=300)
SMALL = FaultRunSize(conversations=60, seconds=70, kills_per_service=3, settle_seconds=90)
FULL_REPLICAS = FaultRunSize(
    conversations=1000, seconds=300, kills_per_service=3, settle_seconds=300, replicas=3, engines=2
)
# Eleven processes killed once each plus the broker restart: about 7 s apart, each restart taking a few seconds.
SMALL_REPLICAS = FaultRunSize(
    conversations=60, seconds=90, kills_per_service=1, settle_seconds=120, replicas=3, engines=2
)


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
    jobs_submitted: int = 0  # distinct jobIds named by a JobSubmitted (checked with replicas)
    orphans: list[str] = field(default_factory=list)  # engine jobs no JobSubmitted names
    engine_logs_unread: int = 0  # engines killed without their fault log read first
    engine_log_gap_seconds: float = 0.0
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
        if self.orphans:
            problems.append(f"{len(self.orphans)} orphan engine job(s) no JobSubmitted names: {self.orphans[:5]}")
        if self.gate_violations:
            problems.append(f"{len(self.gate_violations)} gate violation(s), e.g. {self.gate_violations[:2]}")
        if self.engine_logs_unread:
            problems.append(
                f"{self.engine_logs_unread} engine(s) killed before their fault log could be read: the gate check "
                "misses their calls"
            )
        if min(self.kills[name] for name in self.size.kill_targets) < self.size.kills_per_service:
            problems.append(f"fewer kills than planned: {dict(self.kills)}")
        if self.broker_restarts < 1:
            problems.append("the broker was not restarted")
        if not self.accepted:
            problems.append("no request was accepted")
        return problems

    def rows(self) -> list[tuple[str, str]]:
        by_channel = Counter(self.accepted.values())
        kills = ", ".join(f"{name} {self.kills[name]}" for name in self.size.kill_targets)
        faults = ", ".join(f"{kind} {count}" for kind, count in sorted(self.faults_injected.items())) or "none"
        outcomes = ", ".join(f"{kind} {self.outcomes[kind]}" for kind in OUTCOME_EVENTS)
        reasons = "; ".join(f"{reason} (x{count})" for reason, count in self.dead_letter_reasons.most_common(5))
        replicas = [
            (
                "processes",
                f"{self.size.replicas} replicas each of {', '.join(SERVICES)}; {self.size.engines} engine(s)"
                + (" on one PostgreSQL database" if self.size.engines > 1 else ""),
            )
        ]
        orphans = [
            ("jobIds in a JobSubmitted on the jobs topic", str(self.jobs_submitted)),
            ("orphans (engine jobs no JobSubmitted names, so nobody watches them)", str(len(self.orphans))),
            (
                "engine call log lost to engine kills (between reading a log and the SIGKILL, upper bound)",
                f"{self.engine_log_gap_seconds * 1000:.0f} ms over {self._engine_kills()} kill(s); "
                f"logs not read {self.engine_logs_unread}",
            ),
        ]
        return [
            *(replicas if self.size.replicated else []),
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
            *(orphans if self.size.replicated else []),
            ("gate violations (Conversation API read before completion)", str(len(self.gate_violations))),
            (
                "wall time",
                f"{self.wall_seconds:.0f} s (chaos window {self.chaos_seconds:.0f} s, "
                f"settling {self.settle_seconds:.0f} s)",
            ),
        ]

    def _engine_kills(self) -> int:
        return sum(self.kills[name] for name in self.size.process_names("engine"))

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
class EngineFaultLogs:
    """The engines' ``/_faults/log`` notes, gathered into one log on the machine's one clock.

    An engine keeps its calls and injected faults in memory only, so a killed engine's notes are read just before
    its SIGKILL and every engine's once more at the end. Calls that end between that read and the kill are lost;
    ``gap_seconds`` adds up those moments (an upper bound). The transitions come from the shared database, so each
    read returns them all: the latest read of each job's status wins.
    """

    calls: list[dict[str, Any]] = field(default_factory=list)
    injected: Counter[str] = field(default_factory=Counter)
    transitions_by_job_status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    gap_seconds: float = 0.0
    unread: int = 0  # engines killed without their notes

    def add(self, fault_log: dict[str, Any]) -> None:
        self.calls.extend(fault_log["calls"])
        self.injected.update(fault_log["injected"])
        for transition in fault_log["transitions"]:
            self.transitions_by_job_status[(transition["jobId"], transition["status"])] = transition

    @property
    def transitions(self) -> list[dict[str, Any]]:
        return list(self.transitions_by_job_status.values())


@dataclass
class FaultyPipeline:
    """The broker, the engine(s) in fault mode and the services' processes, all this run's own."""

    kafka: LocalKafka
    stack: LocalStack
    topics: TopicNames
    size: FaultRunSize
    ports: dict[str, int]  # by process name; a restarted process keeps its port
    service_of: dict[str, str]  # process name → the service it runs
    process_env: dict[str, dict[str, str]]  # process name → its own variables, given again on every restart
    engine_logs: EngineFaultLogs = field(default_factory=EngineFaultLogs)

    @property
    def kafka_settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=self.kafka.bootstrap)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.ports[name]}"

    def start(self, name: str) -> None:
        self.stack.start(
            name, service=self.service_of[name], port=self.ports[name], extra_env=self.process_env[name], timeout=120
        )

    def kill_and_restart(self, name: str) -> None:
        if self.service_of[name] == "engine":
            asked = time.monotonic()
            try:
                response = httpx.get(self.url(name) + FAULT_LOG_PATH, timeout=30)
                response.raise_for_status()
                self.engine_logs.add(response.json())
            except httpx.HTTPError as error:
                log.warning("could not read %s's fault log before killing it: %s", name, error)
                self.engine_logs.unread += 1
            self.stack.stop(name, kill=True)
            self.engine_logs.gap_seconds += time.monotonic() - asked
        else:
            self.stack.stop(name, kill=True)
        self.start(name)

    async def read_engine_logs(self) -> None:
        """Add every running engine's notes to ``engine_logs`` (at the end of the run)."""
        async with httpx.AsyncClient(timeout=60) as client:
            for name in self.size.process_names("engine"):
                response = await client.get(self.url(name) + FAULT_LOG_PATH)
                response.raise_for_status()
                self.engine_logs.add(response.json())

    def restart_broker(self) -> None:
        self.kafka.stop(timeout=30)
        self.kafka.start(stop_with_parent=True)

    def stop(self) -> None:
        # Upstream first, so nothing new flows into a process that is already stopping.
        for service in (*SERVICES, "engine"):
            for name in self.size.process_names(service):
                self.stack.stop(name)
        self.stack.stop_all()
        self.kafka.stop()


def distinct_free_ports(names: list[str]) -> dict[str, int]:
    """A free loopback port for each name, no two the same (the ports are chosen before anything listens)."""
    ports: dict[str, int] = {}
    for name in names:
        port = free_port()
        while port in ports.values():
            port = free_port()
        ports[name] = port
    return ports


def start_faulty_pipeline(
    work_dir: Path, run_id: str, seed: int, size: FaultRunSize, *, database_url: str | None = None
) -> FaultyPipeline:
    """Broker, engines, then job-watchers, insight-fetchers and ingests; ``database_url`` is the engines' shared
    database (None: one engine on its own SQLite file)."""
    kafka = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), data_dir=work_dir / "kafka", heap="768m")
    )
    kafka.start(stop_with_parent=True)
    topics = TopicNames.prefixed(f"faults-{run_id}")
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap,
        **topics.as_env(),
        # Two partitions per replica: a killed replica's are shared out among the others until it is back.
        "PARLEY_KAFKA__TOPIC_PARTITIONS": str(2 * size.replicas if size.replicated else 3),
        "PARLEY_LOG_LEVEL": "INFO",
        "PARLEY_WEBHOOK_SECRET": secrets.token_hex(16),
        # The services give up on an engine call after 2 s; the engine's injected delay is 3 s.
        "PARLEY_PROVIDER__TIMEOUT_SECONDS": f"{CLIENT_TIMEOUT_SECONDS:g}",
        # Lost final webhooks are caught by polling: keep that safety net short so the run settles quickly.
        "PARLEY_POLL_INITIAL_SECONDS": "0.5",
        "PARLEY_POLL_MAX_INTERVAL_SECONDS": "5",
        "PARLEY_WEBHOOK_FALLBACK_INTERVAL_SECONDS": "5",
    }
    starting_order = ["engine", "job-watcher", "insight-fetcher", "ingest"]
    service_of = {name: service for service in starting_order for name in size.process_names(service)}
    ports = distinct_free_ports(list(service_of))
    engines = size.process_names("engine")
    watcher_webhooks = [f"http://127.0.0.1:{ports[name]}/webhooks/jobs" for name in size.process_names("job-watcher")]
    process_env: dict[str, dict[str, str]] = {}
    for n, name in enumerate(engines):
        process_env[name] = {
            **ENGINE_FAULTS,
            # The engine calls back only public addresses and the job-watchers it trusts.
            "PARLEY_TRUSTED_WEBHOOK_URLS": ",".join(watcher_webhooks),
            # Each engine rolls dice of its own (a restart rolls its engine's sequence again).
            "PARLEY_ENGINE_FAULTS_SEED": str(seed + n),
            "PARLEY_ENGINE_DATA_DIR": str(work_dir / "engine-data"),
            "PARLEY_WORKERS": "1",
            # Only injected 429s: the run paces its submissions instead.
            "PARLEY_MAX_CONCURRENT_JOBS": "5000",
            **({"PARLEY_DATABASE_URL": database_url} if database_url else {}),
            **(KILLED_ENGINE_ENV if size.replicated else {}),
        }
    for service in SERVICES:
        for n, name in enumerate(size.process_names(service)):
            process_env[name] = {
                # Its transactional id: a restart under the same one fences the killed predecessor.
                "PARLEY_INSTANCE_ID": f"faults-{run_id}-{n}" if size.replicated else f"faults-{run_id}",
                "PARLEY_API_URL": f"http://127.0.0.1:{ports[engines[n % len(engines)]]}",
                # Any job-watcher replica takes a callback (it forwards it to the job's owner through Kafka).
                **({"PARLEY_WEBHOOK_URL": watcher_webhooks[n]} if service == "ingest" else {}),
            }
    stack = LocalStack(log_dir=work_dir / "logs", env=env)
    pipeline = FaultyPipeline(kafka, stack, topics, size, ports, service_of, process_env)
    try:
        for name in service_of:
            pipeline.start(name)
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
    """N conversations spread over the window, even ones over HTTP and odd ones over Kafka.

    HTTP submissions go round-robin over the ingest replicas; a retry goes to the next replica.
    """
    interval = size.seconds * 0.85 / max(1, size.conversations)
    in_flight = asyncio.Semaphore(SUBMISSIONS_IN_FLIGHT)
    publisher = RequestPublisher(pipeline.kafka_settings)
    ingests = [pipeline.url(name) for name in size.process_names("ingest")]
    tasks: list[asyncio.Task[None]] = []

    async def over_http(client: httpx.AsyncClient, n: int) -> None:
        request_id = f"faults-{run_id}-http-{n}"
        deadline = time.monotonic() + SUBMIT_DEADLINE_SECONDS
        attempt = 0
        while time.monotonic() < deadline:
            ingest = ingests[(n // 2 + attempt) % len(ingests)]
            attempt += 1
            try:
                response = await client.post(
                    f"{ingest}/v1/process/text",
                    json=text_body(n, words="fault run"),
                    headers={"Idempotency-Key": request_id},
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
    async with httpx.AsyncClient(timeout=30) as client:
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
    """SIGKILL + restart each process ``kills_per_service`` times and restart the broker once, at random moments.

    The window is cut into one slot per action and each action happens at a random moment of its slot, so the
    kills spread over the whole window (the broker restart takes a slot in the middle).
    """
    targets = [name for name in size.kill_targets for _ in range(size.kills_per_service)]
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


async def submitted_job_ids(kafka: KafkaSettings, topic: str, *, within_seconds: float = 120.0) -> set[str]:
    """The jobIds of every committed ``JobSubmitted`` on the jobs topic, read from its beginning to its end."""
    partitions = [TopicPartition(topic, p) for p in (await topic_partitions(kafka, [topic]))[topic]]
    consumer = AIOKafkaConsumer(
        **aiokafka_options(kafka), group_id=None, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    job_ids: set[str] = set()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        # read_committed: the end is the last stable offset, past which nothing is committed yet.
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + within_seconds
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the jobs topic {topic} was not read to its end within {within_seconds:g} s")
            for records in (await consumer.getmany(timeout_ms=1000)).values():
                for record in records:
                    with contextlib.suppress(ValueError):
                        event = json.loads(record.value or b"")
                        if event.get("eventType") == "JobSubmitted" and event.get("jobId"):
                            job_ids.add(event["jobId"])
    finally:
        await consumer.stop()
    return job_ids


async def check_orphans(pipeline: FaultyPipeline, report: FaultRunReport) -> None:
    """Every job the engines created must be named by a JobSubmitted, or no job-watcher ever watches it."""
    submitted = await submitted_job_ids(pipeline.kafka_settings, pipeline.topics.jobs)
    created = {t["jobId"] for t in pipeline.engine_logs.transitions if t["status"] == "scheduled"}
    report.jobs_submitted = len(submitted)
    report.orphans = sorted(created - submitted)


async def check_gate(pipeline: FaultyPipeline, report: FaultRunReport) -> None:
    """The gate from the engines' logs (read again now: every running engine's notes join those of killed ones)."""
    await pipeline.read_engine_logs()
    engine_logs = pipeline.engine_logs
    calls, transitions = engine_logs.calls, engine_logs.transitions
    report.faults_injected = dict(engine_logs.injected)
    report.engine_logs_unread = engine_logs.unread
    report.engine_log_gap_seconds = engine_logs.gap_seconds
    report.engine_calls = len(calls)
    report.conversation_reads = sum(1 for call in calls if call["path"].startswith(CONVERSATION_READ_PREFIX))
    report.gate_violations = gate_violations(calls, transitions)
    completed = {t["conversationId"]: t["t"] for t in transitions if t["status"] == "completed"}
    report.engine_jobs = sum(1 for t in transitions if t["status"] == "scheduled")
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
    # Started on this (long-lived) thread: the server dies with the thread that started it (PR_SET_PDEATHSIG).
    postgres = start_postgres() if size.engines > 1 else None
    try:
        database_url = postgres.create_database() if postgres else None
        pipeline = await asyncio.to_thread(
            start_faulty_pipeline, work_dir, run_id, seed, size, database_url=database_url
        )
        try:
            await run_checked_window(pipeline, size, rng, run_id, report)
        finally:
            await asyncio.to_thread(pipeline.stop)
    finally:
        if postgres is not None:
            stop_keeping_log(postgres, work_dir / "logs")
    report.wall_seconds = time.monotonic() - began
    return report


def stop_keeping_log(postgres: PostgresServer, log_dir: Path) -> None:
    """Stop and delete the database server, keeping its log beside the processes' logs."""
    try:
        postgres.stop()
        log_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(OSError):
            shutil.copyfile(postgres.root / "server.log", log_dir / "postgres.log")
    finally:
        stop_postgres(postgres)


async def run_checked_window(
    pipeline: FaultyPipeline, size: FaultRunSize, rng: random.Random, run_id: str, report: FaultRunReport
) -> None:
    """Stream and kill, let the pipeline settle, then check what the topics and the engines' logs say."""
    chaos_began = time.monotonic()
    await asyncio.gather(stream_conversations(pipeline, size, run_id, report), run_chaos(pipeline, size, rng, report))
    settle_began = time.monotonic()
    report.chaos_seconds = settle_began - chaos_began
    seen = await collect_outcomes(pipeline, report, settle_seconds=size.settle_seconds)
    report.settle_seconds = time.monotonic() - settle_began
    check_outcomes(seen, report)
    await check_gate(pipeline, report)
    if size.replicated:
        await check_orphans(pipeline, report)


def results_markdown(report: FaultRunReport, command: str) -> str:
    machine = describe_machine()
    faults = ", ".join(
        f"{key.removeprefix('PARLEY_ENGINE_FAULTS_').lower()}={value}" for key, value in ENGINE_FAULTS.items()
    )
    size = report.size
    replicas = [
        f"- processes: {size.replicas} replicas each of {', '.join(SERVICES)} ({2 * size.replicas} partitions per "
        f"topic, each replica its own instance id, kept across restarts); {size.engines} engine(s)"
        + (" sharing one PostgreSQL database and media directory" if size.engines > 1 else "")
        + "; every process SIGKILLed and restarted "
        f"{size.kills_per_service} time(s), engines included; killed engines ran with "
        + ", ".join(f"{key}={value}" for key, value in KILLED_ENGINE_ENV.items()),
    ]
    return "\n".join(
        [
            "# Fault-injection run with replicas" if size.replicated else "# Fault-injection run",
            "",
            f"- command: `{command}`",
            f"- date: {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"- seed: {report.seed}",
            f"- machine: nproc {machine['nproc']}, {machine['memory_gib']} GiB memory, {machine['cpu_model']} "
            f"({machine['os']}, Python {machine['python']})",
            f"- engine fault mode: {faults}; services' provider timeout {CLIENT_TIMEOUT_SECONDS:g} s",
            *(replicas if size.replicated else []),
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
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each service (default 1)")
    parser.add_argument("--engines", type=int, default=1, help="engines; more than one share a PostgreSQL database")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    # The broker restart makes the clients retry loudly; the run's own progress lines are what matter here.
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    replicated = args.replicas > 1 or args.engines > 1
    sizes = (SMALL_REPLICAS, FULL_REPLICAS) if replicated else (SMALL, FULL)
    size = sizes[0] if args.small else sizes[1]
    size = FaultRunSize(
        conversations=args.conversations or size.conversations,
        seconds=args.seconds or size.seconds,
        kills_per_service=size.kills_per_service,
        settle_seconds=size.settle_seconds,
        replicas=args.replicas,
        engines=args.engines,
    )
    work_dir = Path(tempfile.mkdtemp(prefix="parley-faults-"))
    print(f"fault run: {size.label}, work dir {work_dir}", flush=True)
    report = asyncio.run(run_faults(size, work_dir, seed=args.seed))
    print(report.render(), flush=True)
    failed = bool(report.failures())
    if not args.small:
        command = ".venv/bin/python -m parley_devtools.fault_run " + shlex.join(sys.argv[1:] if argv is None else argv)
        results_path = REPLICA_RESULTS_PATH if replicated else RESULTS_PATH
        results_path.write_text(results_markdown(report, command.strip()))
        print(f"written to {results_path}")
    if args.keep or failed:
        print(f"logs and data kept in {work_dir}")
    else:
        shutil.rmtree(work_dir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
