"""The pipeline benchmark: Parley end to end on a real Kafka broker with the provider double, in one run.

    .venv/bin/python -m parley_devtools.bench_pipeline [--quick]

Measures, beside a baseline that waits like the official Symbl Python SDK (sleep 30 s, then GET /v1/job every
30 s, then read the Conversation API itself):

1. completion → insights latency (the double's ``completedAt`` → the benchmark's read_committed consumer reads
   the InsightsReady), with an instant provider, for jobs submitted with a webhook and for jobs without one; and
   again with 3 replicas of each service, each job's webhooks going to one job-watcher replica whatever owns it;
2. ``GET /v1/job`` calls per job for jobs that take 60 s (a second stack whose double is slow);
3. conversations/s sustained end to end: ProcessRequested commands published as fast as possible, timed from
   the first publish to the last InsightsReady, with the CPU each process used;
4. the provider client's request rate at 64 in flight against raw aiohttp (``bench_http_client``);
5. job-watcher's memory with 100,000 pending jobs, and the time to recover them after a SIGKILL.

The slow stack's jobs and the SDK-style waiters run in the background while the other phases run. Results go to
``benchmarks/pipeline.md`` (with the command, date and machine) and the raw numbers to ``benchmarks/pipeline.json``.
``--quick`` shrinks every count and shortens the slow jobs to 15 s so the whole command takes about two minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import logging
import multiprocessing
import os
import shlex
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import uvloop
from aiokafka import AIOKafkaProducer
from parley_shared.events import JobSubmitted, MediaKind, ProcessRequested
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.kafka.topics import ensure_topics
from parley_shared.settings import KafkaSettings
from prometheus_client.parser import text_string_to_metric_families

from parley_cli.local_kafka import LocalKafka
from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.observing import DoubleApi, InsightsArrivals, text_body, wait_like_the_sdk
from parley_devtools.bench.report import (
    Metric,
    percentile,
    render_table,
    summarize,
    write_results,
)
from parley_devtools.bench.stacks import (
    BenchStack,
    new_stack,
    start_broker,
    start_double,
    start_pipeline,
    start_replicated_pipeline,
    tree_cpu_seconds,
    tree_rss_bytes,
)
from parley_devtools.bench_http_client import run_client_benchmark

CLIENT_IN_FLIGHT = 64
REPLICAS = 3
# Its children are the services and the broker, each counted on its own row.
BENCH_PROCESS = "benchmark process (itself)"
# Targets of issue 2 item 9.
WEBHOOK_P99_TARGET = 0.250
POLLING_P99_TARGET = 2.0
WEBHOOK_CALLS_TARGET = 2
POLLING_CALLS_TARGET = 6
RATE_TARGET = 200.0
CLIENT_RATIO_TARGET = 0.5
RSS_TARGET_BYTES = 300 * 2**20
RECOVERY_TARGET = 15.0


@dataclass(frozen=True)
class BenchSize:
    latency_jobs: int  # per kind (with a webhook, polling only)
    latency_rate: float  # submissions per second per kind
    sdk_jobs: int
    slow_seconds: float
    slow_jobs: int  # per kind
    conversations: int
    client_requests: int
    pending_jobs: int
    overall_timeout: float


FULL = BenchSize(200, 20.0, 3, 60.0, 20, 5000, 4000, 100_000, 1200.0)
QUICK = BenchSize(40, 20.0, 2, 15.0, 10, 1000, 2000, 10_000, 420.0)


# --- 1. completion → insights latency -------------------------------------------------------------------


async def measure_latency(
    stack: BenchStack, arrivals: InsightsArrivals, double: DoubleApi, session: aiohttp.ClientSession, size: BenchSize
) -> dict[str, Any]:
    """Submit through ingest's HTTP API at a steady pace (open loop) and time each job's completion → insights."""
    ingest = stack.url("ingest")
    webhook_url = f"{stack.url('job-watcher')}/webhooks/jobs"
    jobs: dict[str, list[str]] = {"webhook": [], "polling": []}

    async def submit(kind: str, n: int) -> None:
        body = text_body(n, words=f"latency {kind}")
        if kind == "webhook":
            body["webhookUrl"] = webhook_url
        async with session.post(f"{ingest}/v1/process/text", json=body) as response:
            if response.status != 202:
                raise RuntimeError(f"ingest refused a submission: {response.status} {await response.text()}")
            jobs[kind].append((await response.json())["jobId"])

    loop = asyncio.get_running_loop()
    started = loop.time()
    submissions = []
    for n in range(size.latency_jobs):
        submissions += [asyncio.create_task(submit(kind, n)) for kind in jobs]
        await asyncio.sleep(max(0.0, started + (n + 1) / size.latency_rate - loop.time()))
    await asyncio.gather(*submissions)
    everything = {job for kind_jobs in jobs.values() for job in kind_jobs}
    missing = await arrivals.wait_for(everything, within_seconds=60.0)
    completed = await double.completed_at()
    latencies = {
        kind: [
            arrivals.by_job[job] - completed[job] for job in kind_jobs if job in arrivals.by_job and job in completed
        ]
        for kind, kind_jobs in jobs.items()
    }
    return {
        "webhook": summarize(latencies["webhook"]),
        "polling": summarize(latencies["polling"]),
        "webhook_stages": latency_stages(jobs["webhook"], arrivals, completed),
        "polling_stages": latency_stages(jobs["polling"], arrivals, completed),
        "missing": len(missing),
        "raw": latencies,
    }


async def measure_replicated_latency(
    stack: BenchStack, arrivals: InsightsArrivals, double: DoubleApi, session: aiohttp.ClientSession, size: BenchSize
) -> dict[str, Any]:
    """``REPLICAS`` of each service: submissions spread over the ingest replicas, and each job's webhooks sent to
    one job-watcher replica in turn, so most reach a replica that does not own the job's partition (as behind a
    Kubernetes Service)."""
    ingests = [stack.url(f"ingest-{n}") for n in range(REPLICAS)]
    watchers = [stack.url(f"job-watcher-{n}") for n in range(REPLICAS)]
    await wait_for_shared_partitions(session, watchers)
    jobs: list[str] = []

    async def submit(n: int) -> None:
        body = {**text_body(n, words="replicated latency"), "webhookUrl": f"{watchers[n % REPLICAS]}/webhooks/jobs"}
        async with session.post(f"{ingests[(n + 1) % REPLICAS]}/v1/process/text", json=body) as response:
            if response.status != 202:
                raise RuntimeError(f"ingest refused a submission: {response.status} {await response.text()}")
            jobs.append((await response.json())["jobId"])

    before = await webhook_results(session, watchers)
    loop = asyncio.get_running_loop()
    started = loop.time()
    submissions = []
    for n in range(size.latency_jobs):
        submissions.append(asyncio.create_task(submit(n)))
        await asyncio.sleep(max(0.0, started + (n + 1) / size.latency_rate - loop.time()))
    await asyncio.gather(*submissions)
    missing = await arrivals.wait_for(set(jobs), within_seconds=60.0)
    completed = await double.completed_at()
    after = await webhook_results(session, watchers)
    latencies = [arrivals.by_job[job] - completed[job] for job in jobs if job in arrivals.by_job and job in completed]
    return {
        "replicas": REPLICAS,
        "latency": summarize(latencies),
        "stages": latency_stages(jobs, arrivals, completed),
        "webhooks": {result: after.get(result, 0.0) - before.get(result, 0.0) for result in after},
        "missing": len(missing),
        "raw": latencies,
    }


async def wait_for_shared_partitions(
    session: aiohttp.ClientSession, watchers: list[str], *, within_seconds: float = 90.0
) -> None:
    """Until the job-watcher replicas have shared the jobs topic's partitions and none is still re-reading one."""
    deadline = time.monotonic() + within_seconds
    while True:
        statuses = []
        for url in watchers:
            async with session.get(f"{url}/status") as response:
                statuses.append(await response.json())
        if all(status["partitions"] and not status["replayingPartitions"] for status in statuses):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"job-watcher replicas never shared the partitions: {statuses}")
        await asyncio.sleep(0.5)


async def webhook_results(session: aiohttp.ClientSession, watchers: list[str]) -> dict[str, float]:
    """parley_webhooks_received_total by result, summed over the job-watcher replicas."""
    totals: dict[str, float] = {}
    for url in watchers:
        async with session.get(f"{url}/metrics") as response:
            text = await response.text()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "parley_webhooks_received_total":
                    result = sample.labels["result"]
                    totals[result] = totals.get(result, 0.0) + sample.value
    return totals


def latency_stages(jobs: list[str], arrivals: InsightsArrivals, completed: dict[str, float]) -> dict[str, Any]:
    """Where the time goes: provider completion → job-watcher's JobCompleted.completedAt (detect) →
    InsightsReady.occurredAt (publish the outcome, consume it, read nine insights) → read here (publish, consume)."""
    detect, fetch, deliver = [], [], []
    for job in jobs:
        if job in arrivals.stages and job in completed:
            seen, built = arrivals.stages[job]
            detect.append(seen - completed[job])
            fetch.append(built - seen)
            deliver.append(arrivals.by_job[job] - built)
    return {"detect": summarize(detect), "fetch": summarize(fetch), "deliver": summarize(deliver)}


def describe_stages(stages: dict[str, Any]) -> str:
    return ", ".join(
        f"{name} {stats['p50'] * 1000:.0f}/{stats['p99'] * 1000:.0f} ms"
        for name, stats in stages.items()
        if stats["count"]
    )


async def sdk_baseline_latency(double: DoubleApi, size: BenchSize) -> dict[str, Any]:
    """The SDK-style waiter on the instant double: its completion → insights-read time."""
    results = await asyncio.gather(
        *(wait_like_the_sdk(double, text_body(900_000 + n, words="sdk baseline")) for n in range(size.sdk_jobs))
    )
    completed = await double.completed_at()
    latencies = [r.insights_read_at - completed[r.job_id] for r in results if r.job_id in completed]
    return {**summarize(latencies), "raw": latencies}


# --- 2. status calls per 60 s job --------------------------------------------------------------------------


async def measure_status_calls(
    stack: BenchStack, arrivals: InsightsArrivals, double: DoubleApi, session: aiohttp.ClientSession, size: BenchSize
) -> dict[str, Any]:
    """Slow jobs with and without webhooks, and the SDK-style waiter; GET /v1/job calls per job at the double."""
    ingest = stack.url("ingest")
    webhook_url = f"{stack.url('job-watcher')}/webhooks/jobs"

    async def submit(kind: str, n: int) -> tuple[str, str]:
        body = text_body(n, words=f"slow {kind}")
        if kind == "webhook":
            body["webhookUrl"] = webhook_url
        async with session.post(f"{ingest}/v1/process/text", json=body) as response:
            if response.status != 202:
                raise RuntimeError(f"ingest refused a submission: {response.status} {await response.text()}")
            return kind, (await response.json())["jobId"]

    sdk = asyncio.gather(
        *(wait_like_the_sdk(double, text_body(800_000 + n, words="sdk slow")) for n in range(size.sdk_jobs))
    )
    submitted = await asyncio.gather(
        *(submit(kind, n) for n in range(size.slow_jobs) for kind in ("webhook", "polling"))
    )
    missing = await arrivals.wait_for({job for _, job in submitted}, within_seconds=size.slow_seconds + 90.0)
    sdk_results = await asyncio.wait_for(sdk, timeout=size.slow_seconds + 120.0)
    await asyncio.sleep(2.0)  # a poll after the outcome would still count
    counts = await double.status_calls_by_job()
    per_kind = {kind: [counts[job] for k, job in submitted if k == kind] for kind in ("webhook", "polling")}
    sdk_counts = [counts[r.job_id] for r in sdk_results]
    return {
        "job_seconds": size.slow_seconds,
        "webhook": {"mean": _mean(per_kind["webhook"]), "max": max(per_kind["webhook"]), "raw": per_kind["webhook"]},
        "polling": {"mean": _mean(per_kind["polling"]), "max": max(per_kind["polling"]), "raw": per_kind["polling"]},
        "sdk": {"mean": _mean(sdk_counts), "max": max(sdk_counts), "raw": sdk_counts},
        "missing": len(missing),
    }


def _mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else float("nan")


# --- 3. sustained conversations/s ------------------------------------------------------------------------


async def measure_throughput(
    stack: BenchStack,
    arrivals: InsightsArrivals,
    pids: dict[str, int],
    size: BenchSize,
    run_id: str,
    *,
    webhooks: bool,
) -> dict[str, Any]:
    """Publish N ProcessRequested as fast as possible (each with a webhookUrl, or none: polling only); time from
    the first publish to the last InsightsReady, and the CPU each process used meanwhile."""
    label = "webhook" if webhooks else "polling"
    options = {"webhookUrl": f"{stack.url('job-watcher')}/webhooks/jobs"} if webhooks else {}
    commands = [
        ProcessRequested(
            request_id=f"rate-{label}-{run_id}-{n}",
            kind=MediaKind.TEXT,
            name=f"rate conversation {n}",
            messages=text_body(n, words=f"rate {label}")["messages"],
            options=options,
        )
        for n in range(size.conversations)
    ]
    wires = [(command.request_id.encode(), command.to_wire()) for command in commands]
    ids = {command.request_id for command in commands}
    producer = AIOKafkaProducer(
        **aiokafka_options(stack.kafka), linger_ms=5, max_batch_size=1 << 20, enable_idempotence=True
    )
    await producer.start()
    try:
        cpu_before = {name: tree_cpu_seconds(pid, children=name != BENCH_PROCESS) for name, pid in pids.items()}
        first_publish = time.time()
        sent = [await producer.send(stack.topics.requests, value, key=key) for key, value in wires]
        await asyncio.gather(*sent)
        published = time.time()
        # Generous for 200/s, yet short of job-watcher's 120 s webhook fallback poll: a job stuck until that poll
        # shows as missing rather than silently dragging the rate down.
        window = 30.0 + size.conversations / 50
        missing = await arrivals.wait_for(ids, by="request", within_seconds=window)
        cpu_after = {name: tree_cpu_seconds(pid, children=name != BENCH_PROCESS) for name, pid in pids.items()}
        measured = time.time() - first_publish
    finally:
        await producer.stop()
    arrived = sorted(arrivals.by_request[i] for i in ids if i in arrivals.by_request)
    elapsed = (arrived[-1] - first_publish) if arrived else float("nan")
    # The middle 80 % of arrivals: the rate once the pipeline is full, without start-up and drain.
    low, high = percentile(arrived, 0.10), percentile(arrived, 0.90)
    middle_rate = 0.8 * len(arrived) / (high - low) if arrived and high > low else float("nan")
    cpu = {name: cpu_after[name] - cpu_before[name] for name in pids}
    return {
        "webhooks": webhooks,
        "conversations": size.conversations,
        "arrived": len(arrived),
        "missing": len(missing),
        "window_seconds": window,
        "publish_seconds": published - first_publish,
        "elapsed_seconds": elapsed,
        "rate": len(arrived) / elapsed if arrived else 0.0,
        "middle_rate": middle_rate,
        "cpu_seconds": cpu,
        "cpu_window_seconds": measured,
        "cpu_share": {name: seconds / measured for name, seconds in cpu.items()},
    }


def render_cpu(throughput: dict[str, Any]) -> str:
    lines = ["| process | CPU seconds | average cores |", "|---|---|---|"]
    for name, seconds in sorted(throughput["cpu_seconds"].items(), key=lambda item: -item[1]):
        lines.append(f"| {name} | {seconds:.1f} | {throughput['cpu_share'].get(name, 0.0):.2f} |")
    return "\n".join(lines)


def render_cpus(results: dict[str, Any]) -> str:
    return "\n\n".join(
        f"{title}:\n\n{render_cpu(results[key])}"
        for title, key in (("Polling only", "throughput_polling"), ("With webhooks", "throughput_webhook"))
    )


# --- 4. provider client request rate -----------------------------------------------------------------------


async def measure_client_rate(size: BenchSize) -> dict[str, Any]:
    # In a fresh process, so this process's event loop and its Kafka consumers do not share the GIL with it.
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn) as pool:
        rows = await asyncio.get_running_loop().run_in_executor(
            pool, run_client_benchmark, size.client_requests, [CLIENT_IN_FLIGHT]
        )
    by_client = {row["client"]: row for row in rows}
    aiohttp_rps = by_client["aiohttp ClientSession"]["rps"][CLIENT_IN_FLIGHT]
    provider_rps = by_client["ProviderClient.get_insight"]["rps"][CLIENT_IN_FLIGHT]
    return {
        "in_flight": CLIENT_IN_FLIGHT,
        "requests": size.client_requests,
        "aiohttp_rps": aiohttp_rps,
        "provider_client_rps": provider_rps,
        "ratio": provider_rps / aiohttp_rps,
        "rows": [{"client": row["client"], "rps": row["rps"][CLIENT_IN_FLIGHT]} for row in rows],
    }


# --- 5. 100,000 pending jobs -------------------------------------------------------------------------------


async def create_pending_jobs(
    stack: BenchStack, double: DoubleApi, count: int, run_id: str, *, in_flight: int = 64
) -> float:
    """Create ``count`` slow jobs at the double and a JobSubmitted for each on the jobs topic; seconds taken."""
    started = time.monotonic()
    await ensure_topics(stack.kafka, stack.topics)
    producer = AIOKafkaProducer(
        **aiokafka_options(stack.kafka), linger_ms=20, max_batch_size=1 << 20, enable_idempotence=True
    )
    await producer.start()
    next_n = 0
    sent: list[asyncio.Future[Any]] = []

    async def worker() -> None:
        nonlocal next_n
        while next_n < count:
            n, next_n = next_n, next_n + 1
            accepted = await double.submit_text(text_body(n, words="pending"))
            submitted = JobSubmitted(
                request_id=f"pending-{run_id}-{n}",
                conversation_id=accepted["conversationId"],
                job_id=accepted["jobId"],
                kind=MediaKind.TEXT,
            )
            sent.append(
                await producer.send(stack.topics.jobs, submitted.to_wire(), key=submitted.conversation_id.encode())
            )

    try:
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return time.monotonic() - started


async def wait_until_watching(
    watcher_url: str, session: aiohttp.ClientSession, pending: int, partitions: int, *, within_seconds: float
) -> dict[str, Any]:
    """Poll job-watcher's /status until it holds ``pending`` jobs, owns every partition and replays none."""
    deadline = time.monotonic() + within_seconds
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            async with session.get(f"{watcher_url}/status", timeout=aiohttp.ClientTimeout(total=2)) as response:
                status = await response.json()
        except (aiohttp.ClientError, TimeoutError):
            status = {}
        if (
            status.get("pendingJobs") == pending
            and len(status.get("partitions", [])) == partitions
            and not status.get("replayingPartitions")
        ):
            return status
        await asyncio.sleep(0.05)
    raise TimeoutError(f"job-watcher did not settle on {pending} pending jobs within {within_seconds:.0f}s: {status}")


async def measure_pending_jobs(
    stack: BenchStack, session: aiohttp.ClientSession, size: BenchSize, run_id: str
) -> dict[str, Any]:
    """job-watcher's RSS with N pending jobs, and how long a SIGKILLed one takes to hold them all again."""
    url = await asyncio.to_thread(start_double, stack, processing_seconds=3600)
    double = DoubleApi(url, session)
    creation = await create_pending_jobs(stack, double, size.pending_jobs, run_id)
    partitions = stack.kafka.topic_partitions
    # No status polls during the measurement: the first one would be due ten minutes after submission.
    started = time.monotonic()
    await asyncio.to_thread(stack.start, "job-watcher", extra_env={"PARLEY_POLL_INITIAL_SECONDS": "600"})
    await wait_until_watching(stack.url("job-watcher"), session, size.pending_jobs, partitions, within_seconds=180)
    first_load = time.monotonic() - started
    await asyncio.sleep(1.0)  # let the first transaction and any garbage settle before reading memory
    rss = tree_rss_bytes(stack.pids()["job-watcher"])
    killed = time.monotonic()
    await asyncio.to_thread(stack.restart, "job-watcher", kill=True)
    process_ready = time.monotonic() - killed
    status = await wait_until_watching(
        stack.url("job-watcher"), session, size.pending_jobs, partitions, within_seconds=180
    )
    recovery = time.monotonic() - killed
    rss_after_restart = tree_rss_bytes(stack.pids()["job-watcher"])
    return {
        "pending_jobs": size.pending_jobs,
        "creation_seconds": creation,
        "first_load_seconds": first_load,
        "rss_bytes": rss,
        "rss_after_restart_bytes": rss_after_restart,
        "restart_process_ready_seconds": process_ready,
        "recovery_seconds": recovery,
        "status_polls_after_restart": status.get("statusPolls"),
    }


async def measure_with_replicas(
    run_id: str,
    bootstrap: str,
    partitions: int,
    work_dir: Path,
    session: aiohttp.ClientSession,
    size: BenchSize,
    stacks: list[BenchStack],
) -> dict[str, Any]:
    """A stack of its own with ``REPLICAS`` of each service on an instant double, stopped once measured."""
    replicated = new_stack("replicated", run_id, bootstrap, partitions=partitions, log_root=work_dir)
    stacks.append(replicated)
    double_url = await asyncio.to_thread(start_double, replicated, processing_seconds=0)
    await asyncio.to_thread(start_replicated_pipeline, replicated, REPLICAS)
    arrivals = InsightsArrivals(replicated.kafka, replicated.topics.insights)
    await arrivals.start()
    try:
        return await measure_replicated_latency(replicated, arrivals, DoubleApi(double_url, session), session, size)
    finally:
        await arrivals.stop()
        await asyncio.to_thread(replicated.stop)


# --- the run --------------------------------------------------------------------------------------------------


async def run_benchmark(size: BenchSize, partitions: int, work_dir: Path) -> dict[str, Any]:
    run_id = uuid.uuid4().hex[:8]
    kafka: LocalKafka | None = None
    stacks: list[BenchStack] = []
    results: dict[str, Any] = {"run_id": run_id, "partitions": partitions}
    try:
        kafka = await asyncio.to_thread(start_broker, work_dir / "kafka")
        bootstrap = kafka.bootstrap
        instant = new_stack("instant", run_id, bootstrap, partitions=partitions, log_root=work_dir)
        slow = new_stack("slow", run_id, bootstrap, partitions=partitions, log_root=work_dir)
        stacks += [instant, slow]
        instant_url = await asyncio.to_thread(start_double, instant, processing_seconds=0)
        await asyncio.to_thread(start_pipeline, instant)
        slow_url = await asyncio.to_thread(start_double, slow, processing_seconds=size.slow_seconds)
        await asyncio.to_thread(start_pipeline, slow)
        connector = aiohttp.TCPConnector(limit=200)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
            instant_double, slow_double = DoubleApi(instant_url, session), DoubleApi(slow_url, session)
            instant_arrivals = InsightsArrivals(instant.kafka, instant.topics.insights)
            slow_arrivals = InsightsArrivals(slow.kafka, slow.topics.insights)
            await instant_arrivals.start()
            await slow_arrivals.start()
            try:
                _say(f"slow jobs ({size.slow_seconds:g} s) and SDK-style waiters started in the background")
                slow_phase = asyncio.create_task(measure_status_calls(slow, slow_arrivals, slow_double, session, size))
                sdk_phase = asyncio.create_task(sdk_baseline_latency(instant_double, size))
                _say("1. completion → insights latency")
                results["latency"] = await measure_latency(instant, instant_arrivals, instant_double, session, size)
                _say(f"1b. completion → insights with {REPLICAS} replicas of each service")
                results["replicated_latency"] = await measure_with_replicas(
                    run_id, bootstrap, partitions, work_dir, session, size, stacks
                )
                _say(f"3. sustained rate, polling only: {size.conversations} conversations")
                pids = {f"{name} (instant)": pid for name, pid in instant.pids().items()}
                pids["kafka broker"] = int(kafka.pid_file.read_text())
                pids[BENCH_PROCESS] = os.getpid()
                results["throughput_polling"] = await measure_throughput(
                    instant, instant_arrivals, pids, size, run_id, webhooks=False
                )
                _say(f"3. sustained rate with webhooks: {size.conversations} conversations")
                results["throughput_webhook"] = await measure_throughput(
                    instant, instant_arrivals, pids, size, run_id, webhooks=True
                )
                _say("4. provider client vs aiohttp")
                results["client"] = await measure_client_rate(size)
                _say("waiting for the SDK-style waiters and the slow jobs")
                results["sdk_latency"] = await sdk_phase
                results["status_calls"] = await slow_phase
            finally:
                await instant_arrivals.stop()
                await slow_arrivals.stop()
            for stack in stacks:
                await asyncio.to_thread(stack.stop)
            _say(f"5. job-watcher with {size.pending_jobs:,} pending jobs")
            pending = new_stack("pending", run_id, bootstrap, partitions=partitions, log_root=work_dir)
            stacks.append(pending)
            results["pending"] = await measure_pending_jobs(pending, session, size, run_id)
    finally:
        for stack in stacks:
            await asyncio.to_thread(stack.stop)
        if kafka is not None:
            await asyncio.to_thread(kafka.stop)
    return results


def build_metrics(results: dict[str, Any]) -> list[Metric]:
    latency, sdk, calls = results["latency"], results["sdk_latency"], results["status_calls"]
    client, pending = results["client"], results["pending"]
    job_seconds = calls["job_seconds"]
    return [
        Metric(
            "completion → insights, with webhooks (p50 / p99)",
            f"{latency['webhook']['p50'] * 1000:.0f} ms / {latency['webhook']['p99'] * 1000:.0f} ms"
            f" (n={latency['webhook']['count']})",
            "p99 ≤ 250 ms",
            latency["webhook"]["p99"] <= WEBHOOK_P99_TARGET,
        ),
        Metric(
            "… of which, with webhooks (p50/p99)",
            describe_stages(latency["webhook_stages"]),
            "where the time goes",
            None,
        ),
        Metric(
            "completion → insights, polling only (p50 / p99)",
            f"{latency['polling']['p50']:.2f} s / {latency['polling']['p99']:.2f} s (n={latency['polling']['count']})",
            "p99 ≤ 2 s",
            latency["polling"]["p99"] <= POLLING_P99_TARGET,
        ),
        Metric(
            "completion → insights, SDK-style waiter (baseline)",
            f"{sdk['p50']:.1f} s median, {sdk['max']:.1f} s max (n={sdk['count']})",
            "baseline",
            None,
        ),
        Metric(
            f"GET /v1/job per {job_seconds:g} s job, with webhooks (mean / max)",
            f"{calls['webhook']['mean']:.2f} / {calls['webhook']['max']}",
            "≤ 2",
            calls["webhook"]["max"] <= WEBHOOK_CALLS_TARGET,
        ),
        Metric(
            f"GET /v1/job per {job_seconds:g} s job, polling only (mean / max)",
            f"{calls['polling']['mean']:.2f} / {calls['polling']['max']}",
            "≤ 6",
            calls["polling"]["max"] <= POLLING_CALLS_TARGET,
        ),
        Metric(
            f"GET /v1/job per {job_seconds:g} s job, SDK-style waiter (baseline)",
            f"{calls['sdk']['mean']:.2f} / {calls['sdk']['max']}",
            "baseline",
            None,
        ),
        replicated_metric(results["replicated_latency"]),
        Metric(
            "… of which, with replicas (p50/p99)",
            describe_stages(results["replicated_latency"]["stages"]),
            "where the time goes",
            None,
        ),
        *(rate_metric(results[key]) for key in ("throughput_polling", "throughput_webhook")),
        Metric(
            f"ProviderClient vs aiohttp, {client['in_flight']} in flight",
            f"{client['provider_client_rps']:,.0f} vs {client['aiohttp_rps']:,.0f} req/s ({client['ratio']:.0%})",
            "≥ 50 %",
            client["ratio"] >= CLIENT_RATIO_TARGET,
        ),
        Metric(
            f"job-watcher RSS with {pending['pending_jobs']:,} pending jobs",
            f"{pending['rss_bytes'] / 2**20:.0f} MB"
            f" (after restart {pending['rss_after_restart_bytes'] / 2**20:.0f} MB)",
            "≤ 300 MB",
            pending["rss_bytes"] <= RSS_TARGET_BYTES,
        ),
        Metric(
            f"job-watcher recovery of {pending['pending_jobs']:,} pending jobs after SIGKILL",
            f"{pending['recovery_seconds']:.1f} s (process up in {pending['restart_process_ready_seconds']:.1f} s)",
            "≤ 15 s",
            pending["recovery_seconds"] <= RECOVERY_TARGET,
        ),
    ]


def replicated_metric(replicated: dict[str, Any]) -> Metric:
    latency, webhooks = replicated["latency"], replicated["webhooks"]
    forwarded, accepted = webhooks.get("forwarded", 0.0), webhooks.get("accepted", 0.0)
    return Metric(
        f"completion → insights, {replicated['replicas']} replicas of each service, webhooks to any replica"
        " (p50 / p99)",
        f"{latency['p50'] * 1000:.0f} ms / {latency['p99'] * 1000:.0f} ms (n={latency['count']};"
        f" callbacks: {forwarded:.0f} forwarded through parley.jobs, {accepted:.0f} taken directly)",
        "p99 ≤ 250 ms",
        replicated["missing"] == 0 and latency["p99"] <= WEBHOOK_P99_TARGET,
    )


def rate_metric(rate: dict[str, Any]) -> Metric:
    how = "with webhooks" if rate["webhooks"] else "polling only"
    value = f"{rate['rate']:.0f}/s (middle 80 %: {rate['middle_rate']:.0f}/s)"
    if rate["missing"]:
        value += f"; {rate['missing']} still missing {rate['window_seconds']:.0f} s after the first publish"
    return Metric(
        f"conversations/s end to end, {how} ({rate['arrived']}/{rate['conversations']} in"
        f" {rate['elapsed_seconds']:.1f} s)",
        value,
        "≥ 200/s",
        rate["missing"] == 0 and rate["rate"] >= RATE_TARGET,
    )


def build_notes(results: dict[str, Any], size: BenchSize, quick: bool) -> list[str]:
    latency, rate, pending = results["latency"], results["throughput_polling"], results["pending"]
    rate_webhook = results["throughput_webhook"]
    notes = [
        f"Latency: {size.latency_jobs} jobs with a webhookUrl in the body and {size.latency_jobs} without, submitted"
        f" through ingest's HTTP API at {size.latency_rate:g}/s each, instant provider; ingest has no"
        " PARLEY_WEBHOOK_URL. Latency is the double's completedAt → the InsightsReady read by this process"
        " (read_committed).",
        f"Replicas: a stack of its own with {REPLICAS} replicas each of ingest, job-watcher and insight-fetcher (own"
        f" transactional ids, one consumer group per service) on an instant double; {size.latency_jobs} jobs"
        f" submitted at {size.latency_rate:g}/s through the ingest replicas in turn, job n's webhookUrl naming"
        f" job-watcher replica n mod {REPLICAS}, so about two thirds of callbacks reach a replica that does not own"
        " the job and are forwarded through parley.jobs. The double is instant, so a job's callbacks arrive before"
        " ingest has committed its JobSubmitted: no replica watches the job yet, and even its owner forwards them.",
        f"Status calls: {size.slow_jobs} jobs with and {size.slow_jobs} without webhooks on a second stack whose"
        f" double takes {size.slow_seconds:g} s per job; counted in that double's call log.",
        f"Sustained rate: {rate['conversations']} ProcessRequested published as fast as possible (in"
        f" {rate['publish_seconds']:.1f} s; {rate_webhook['publish_seconds']:.1f} s for the run with a webhookUrl in"
        f" each command's options) to {results['partitions']} partitions; the slow stack's jobs and the SDK waiters"
        " were running in the background. CPU is measured from the first publish to the last InsightsReady (or"
        " the end of the wait).",
        f"Pending jobs: {pending['pending_jobs']:,} jobs created at a double with 3600 s jobs and their JobSubmitted"
        f" published in {pending['creation_seconds']:.0f} s; job-watcher (PARLEY_POLL_INITIAL_SECONDS=600) first"
        f" loaded them in {pending['first_load_seconds']:.1f} s. Recovery is timed from the SIGKILL to /status"
        " showing every job pending, every partition owned and none replaying.",
    ]
    if latency["missing"] or rate["missing"] or rate_webhook["missing"] or results["status_calls"]["missing"]:
        notes.append(
            f"Missing InsightsReady: latency {latency['missing']}, rate {rate['missing']} (polling only)"
            f" and {rate_webhook['missing']} (webhooks),"
            f" status calls {results['status_calls']['missing']}."
        )
    if rate_webhook["missing"] and not rate["missing"]:
        notes.append(
            "With webhooks some jobs wait for job-watcher's 120 s webhook fallback poll although their 'completed'"
            " webhook arrived: the double posts a job's webhooks concurrently, and a non-terminal status arriving"
            " after 'completed' replaces the immediate confirmation (JobWatch.on_webhook / _apply_webhook)."
        )
    if quick:
        notes.append(
            f"--quick: smaller counts, and the slow jobs take {size.slow_seconds:g} s instead of 60 s (fewer polls"
            " are needed, and the SDK-style waiter's first check at 30 s already finds them done)."
        )
    return notes


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small counts and 15 s slow jobs (about 2 minutes)")
    parser.add_argument(
        "--partitions",
        type=int,
        default=KafkaSettings().topic_partitions,
        help="PARLEY_KAFKA__TOPIC_PARTITIONS for the benchmark's topics",
    )
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"), help="where pipeline.md/.json go")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    command = shlex.join([".venv/bin/python", "-m", "parley_devtools.bench_pipeline", *(argv or sys.argv[1:])])
    started_at = datetime.now(UTC)
    started = time.monotonic()
    work_dir = Path(tempfile.mkdtemp(prefix="parley-bench-"))
    _say(f"service logs in {work_dir}")
    # aiokafka warns on every retried produce to a topic whose leader is still being elected; only noise here.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)

    async def bounded() -> dict[str, Any]:
        async with asyncio.timeout(size.overall_timeout):
            return await run_benchmark(size, args.partitions, work_dir)

    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            results = runner.run(bounded())
    except BaseException:
        shutil.rmtree(work_dir / "kafka", ignore_errors=True)
        _say(f"the benchmark failed; service logs are in {work_dir}")
        raise
    shutil.rmtree(work_dir / "kafka", ignore_errors=True)
    wall = time.monotonic() - started
    machine = describe_machine()
    metrics = build_metrics(results)
    notes = build_notes(results, size, args.quick)
    print()
    print(render_table(metrics))
    print()
    print(render_cpus(results))
    print(f"\nwall time {wall:.0f} s")
    page, data = write_results(
        args.output_dir,
        "pipeline",
        title="Pipeline benchmark",
        command=command,
        started_at=started_at,
        wall_seconds=wall,
        quick=args.quick,
        machine=machine,
        size=size,
        metrics=metrics,
        results=results,
        notes=notes,
        sections=[("CPU during the sustained-rate phase", render_cpus(results))],
    )
    _say(f"wrote {page} and {data}")


if __name__ == "__main__":
    main()
