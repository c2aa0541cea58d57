"""The soak: Parley at a steady rate for a long time, watching memory, consumer lag and losses.

    .venv/bin/python -m parley_devtools.soak [--minutes 30] [--rate 50] [--output-dir benchmarks]

Starts a broker of its own (free ports, a temporary data dir), the scripted provider double (jobs take 1.2 s, with
webhooks) and ingest, job-watcher and insight-fetcher as separate processes, ingest passing job-watcher's webhook
to the provider. It then publishes ``rate`` ProcessRequested commands per second to the requests topic (one in ten
submitted through ingest's HTTP API instead) for ``minutes``, open loop, and every 15 s samples each service's
resident memory (with its children) and CPU, and the lag of each consumer group (records on its input topic not
yet committed). After the load it waits (bounded) for the last InsightsReady and checks that every request has
exactly one.

The provider is the double, not the engine: the engine's real analysis of 50 conversations a second does not fit
on the 2 cores this runs on beside the services; the soak is about the services.

Two of the services keep bounded, most-recent-first memories that fill with traffic: ingest's idempotency ledger
(``PARLEY_IDEMPOTENCY_LEDGER_ENTRIES``, 100,000 requests by default) and job-watcher's settled job ids
(``PARLEY_SETTLED_JOBS_REMEMBERED``, 200,000). At 50 a second the defaults take 33 and 67 minutes to fill, longer
than the run, so memory would still be rising at its end by design. The soak therefore bounds both at
``MEMORY_BOUND_ENTRIES`` (filled within 4 minutes), so what it checks from the 5-minute mark on is that memory stays
flat once every bounded structure is full: nothing else grows. What the defaults cost when full is measured by the
unit tests (about 530 and 180 bytes an entry).

Pass criteria (each printed beside its measure):

- memory flat: each service's RSS at the end is within 10 % (or 15 MB) of its RSS at the 5-minute mark;
- lag bounded: no group's lag ever exceeds 30 s of input (``rate`` x 30 records), and every group has caught up
  (lag ≤ ``rate`` x 2) once the last insights arrived (job-watcher's lag includes the jobs still running at the
  provider and the markers it writes itself, so it is not zero while the load runs);
- nothing lost: every published request has one InsightsReady, none has two.

Results go to ``benchmarks/soak.md`` and ``benchmarks/soak.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shlex
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from parley_shared.events import MediaKind, ProcessRequested
from parley_shared.kafka.connection import aiokafka_options
from parley_shared.settings import KafkaSettings

from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings
from parley_devtools.bench.machine import describe_machine
from parley_devtools.bench.observing import text_body
from parley_devtools.bench.report import Metric, render_table, write_results
from parley_devtools.bench.stacks import BenchStack, free_port, new_stack, tree_cpu_seconds, tree_rss_bytes

log = logging.getLogger("parley.soak")

SERVICES = ("ingest", "job-watcher", "insight-fetcher")
SAMPLE_SECONDS = 15.0
RSS_BASELINE_MINUTE = 5.0
RSS_GROWTH_ALLOWED = 0.10
RSS_GROWTH_FLOOR_BYTES = 15 * 2**20
LAG_LIMIT_SECONDS = 30.0
CAUGHT_UP_SECONDS = 2.0
DRAIN_SECONDS = 180.0
HTTP_SHARE = 10  # one request in this many goes through ingest's HTTP API
MEMORY_BOUND_ENTRIES = 12_000  # see the module's docstring


@dataclass(frozen=True)
class SoakSize:
    minutes: float
    rate: float  # conversations per second
    partitions: int = 6


@dataclass
class Sample:
    """One moment of the run: seconds since the load began, and what each service and group looked like."""

    at: float
    rss_bytes: dict[str, int]
    cpu_seconds: dict[str, float]
    lag: dict[str, int]
    published: int
    arrived: int


@dataclass
class SoakRun:
    size: SoakSize
    samples: list[Sample] = field(default_factory=list)
    published: set[str] = field(default_factory=set)
    insights_per_request: Counter[str] = field(default_factory=Counter)
    http_refused: int = 0
    load_seconds: float = 0.0
    drain_seconds: float = 0.0
    insights_arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def all_arrived(self) -> bool:
        return self.published <= self.insights_per_request.keys()


# --- the stack --------------------------------------------------------------------------------------------------


def start_stack(work_dir: Path, run_id: str, partitions: int) -> tuple[LocalKafka, BenchStack]:
    kafka = LocalKafka(
        LocalKafkaSettings(port=free_port(), controller_port=free_port(), data_dir=work_dir / "kafka", heap="1g")
    )
    kafka.start(stop_with_parent=True)
    stack = new_stack("soak", run_id, kafka.bootstrap, partitions=partitions, log_root=work_dir)
    try:
        stack.start(
            "provider-double",
            extra_env={"PARLEY_DOUBLE_SCHEDULED_SECONDS": "0.2", "PARLEY_DOUBLE_PROCESSING_SECONDS": "1.0"},
        )
        stack.local.env["PARLEY_API_URL"] = stack.url("provider-double")
        stack.start("job-watcher", extra_env={"PARLEY_SETTLED_JOBS_REMEMBERED": str(MEMORY_BOUND_ENTRIES)})
        stack.start("insight-fetcher")
        stack.start(
            "ingest",
            extra_env={
                "PARLEY_WEBHOOK_URL": f"{stack.url('job-watcher')}/webhooks/jobs",
                "PARLEY_IDEMPOTENCY_LEDGER_ENTRIES": str(MEMORY_BOUND_ENTRIES),
            },
        )
    except BaseException:
        stack.stop()
        kafka.stop()
        raise
    return kafka, stack


# --- observing --------------------------------------------------------------------------------------------------


async def count_insights(kafka: KafkaSettings, topic: str, run: SoakRun) -> None:
    """Every InsightsReady on the insights topic (read_committed, from the start), counted by requestId."""
    consumer = AIOKafkaConsumer(
        topic, **aiokafka_options(kafka), group_id=None, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        async for record in consumer:
            if b'"InsightsReady"' in (record.value or b""):
                request_id = _request_id(record.value or b"")
                if request_id:
                    run.insights_per_request[request_id] += 1
                    run.insights_arrived.set()
    finally:
        await consumer.stop()


def _request_id(value: bytes) -> str | None:
    # Only the id is needed; the bundle itself is large, so this avoids parsing all of it.
    marker = b'"requestId":"'
    start = value.find(marker)
    if start < 0:
        return None
    start += len(marker)
    return value[start : value.find(b'"', start)].decode()


async def group_lags(admin: AIOKafkaAdminClient, probe: AIOKafkaConsumer, groups: dict[str, str]) -> dict[str, int]:
    """Records on each group's input topic beyond the group's committed offsets."""
    lags: dict[str, int] = {}
    for group, topic in groups.items():
        partitions = [TopicPartition(topic, p) for p in sorted(probe.partitions_for_topic(topic) or ())]
        if not partitions:
            continue
        ends = await probe.end_offsets(partitions)
        committed = await admin.list_consumer_group_offsets(group, partitions=partitions)
        lags[group] = sum(
            max(0, ends[tp] - (committed[tp].offset if tp in committed and committed[tp].offset >= 0 else 0))
            for tp in partitions
        )
    return lags


# --- the load -----------------------------------------------------------------------------------------------------


async def publish_steadily(stack: BenchStack, run: SoakRun, run_id: str, *, until: float) -> None:
    """``rate`` requests a second, open loop: each second's share is sent at its moment whatever the pipeline does."""
    producer = AIOKafkaProducer(**aiokafka_options(stack.kafka), linger_ms=5, enable_idempotence=True)
    await producer.start()
    ingest = stack.url("ingest")
    posts: set[asyncio.Task[None]] = set()
    started = time.monotonic()

    async def over_http(client: httpx.AsyncClient, request_id: str, n: int) -> None:
        response = await client.post(
            f"{ingest}/v1/process/text", json=text_body(n, words="soak"), headers={"Idempotency-Key": request_id}
        )
        if response.status_code != 202:
            run.http_refused += 1
            run.published.discard(request_id)

    try:
        async with httpx.AsyncClient(timeout=30) as client:
            n = 0
            while time.monotonic() < until:
                due = started + n / run.size.rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                request_id = f"soak-{run_id}-{n}"
                run.published.add(request_id)
                if n % HTTP_SHARE == 0:
                    post = asyncio.create_task(over_http(client, request_id, n))
                    posts.add(post)
                    post.add_done_callback(posts.discard)
                else:
                    command = ProcessRequested(
                        request_id=request_id,
                        kind=MediaKind.TEXT,
                        name=f"soak conversation {n}",
                        messages=text_body(n, words="soak")["messages"],
                    )
                    await producer.send(stack.topics.requests, command.to_wire(), key=request_id.encode())
                n += 1
            await asyncio.gather(*posts, return_exceptions=True)
    finally:
        await producer.flush()
        await producer.stop()


async def sample_while(
    stack: BenchStack, run: SoakRun, groups: dict[str, str], began: float, stop: asyncio.Event
) -> None:
    admin = AIOKafkaAdminClient(**aiokafka_options(stack.kafka))
    probe = AIOKafkaConsumer(*set(groups.values()), **aiokafka_options(stack.kafka), group_id=None)
    await admin.start()
    await probe.start()
    pids = {name: pid for name, pid in stack.pids().items() if name in SERVICES}

    async def take_sample() -> None:
        try:
            lags = await group_lags(admin, probe, groups)
        except Exception as error:  # a sample is skipped, never the run
            log.warning("lag sample failed (%s)", error)
            lags = {}
        sample = Sample(
            at=time.monotonic() - began,
            rss_bytes={name: tree_rss_bytes(pid) for name, pid in pids.items()},
            cpu_seconds={name: tree_cpu_seconds(pid) for name, pid in pids.items()},
            lag={group_service(group): lag for group, lag in lags.items()},
            published=len(run.published),
            arrived=len(run.insights_per_request),
        )
        run.samples.append(sample)
        rss = ", ".join(f"{name} {value / 2**20:.0f} MB" for name, value in sample.rss_bytes.items())
        lag = ", ".join(f"{name} {value}" for name, value in sample.lag.items())
        log.info("t=%4.0fs published %d, insights %d; RSS %s; lag %s", sample.at, sample.published, sample.arrived,
                 rss, lag)  # fmt: skip

    try:
        while not stop.is_set():
            await take_sample()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)
        await take_sample()  # the state once everything has arrived
    finally:
        await probe.stop()
        await admin.close()


def group_service(group: str) -> str:
    """The service a bench group belongs to (``bench-<run>-soak-<service>``)."""
    return next(service for service in SERVICES if group.endswith(service))


async def soak(size: SoakSize, work_dir: Path) -> SoakRun:
    run_id = uuid.uuid4().hex[:8]
    run = SoakRun(size=size)
    kafka, stack = await asyncio.to_thread(start_stack, work_dir, run_id, size.partitions)
    topics = stack.topics
    groups = {
        stack.service_env[service]["PARLEY_GROUP_ID"]: topic
        for service, topic in (
            ("ingest", topics.requests),
            ("job-watcher", topics.jobs),
            ("insight-fetcher", topics.completions),
        )
    }
    counting = asyncio.create_task(count_insights(stack.kafka, topics.insights, run))
    stop_sampling = asyncio.Event()
    try:
        began = time.monotonic()
        sampling = asyncio.create_task(sample_while(stack, run, groups, began, stop_sampling))
        await publish_steadily(stack, run, run_id, until=began + size.minutes * 60)
        run.load_seconds = time.monotonic() - began
        drain_began = time.monotonic()
        while not run.all_arrived() and (left := DRAIN_SECONDS - (time.monotonic() - drain_began)) > 0:
            run.insights_arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(run.insights_arrived.wait(), left)
        await asyncio.sleep(5.0)  # a late duplicate would show now
        run.drain_seconds = time.monotonic() - drain_began
        stop_sampling.set()
        await sampling
    finally:
        counting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await counting
        await asyncio.to_thread(stack.stop)
        await asyncio.to_thread(kafka.stop)
    return run


# --- the verdict --------------------------------------------------------------------------------------------------


def sample_near(run: SoakRun, seconds: float) -> Sample:
    return min(run.samples, key=lambda sample: abs(sample.at - seconds))


def build_metrics(run: SoakRun) -> list[Metric]:
    size = run.size
    baseline = sample_near(run, RSS_BASELINE_MINUTE * 60)
    load_end = sample_near(run, run.load_seconds)
    last = run.samples[-1]
    metrics = []
    for service in SERVICES:
        start, middle, end = run.samples[0].rss_bytes[service], baseline.rss_bytes[service], last.rss_bytes[service]
        allowed = max(middle * RSS_GROWTH_ALLOWED, RSS_GROWTH_FLOOR_BYTES)
        metrics.append(
            Metric(
                f"{service} RSS: first sample / at {RSS_BASELINE_MINUTE:g} min / end",
                f"{start / 2**20:.0f} / {middle / 2**20:.0f} / {end / 2**20:.0f} MB"
                f" ({(end - middle) / 2**20:+.1f} MB since {RSS_BASELINE_MINUTE:g} min)",
                f"end within {RSS_GROWTH_ALLOWED:.0%} (or {RSS_GROWTH_FLOOR_BYTES / 2**20:.0f} MB) of the"
                f" {RSS_BASELINE_MINUTE:g}-min figure",
                end - middle <= allowed,
            )
        )
    lag_limit = size.rate * LAG_LIMIT_SECONDS
    caught_up = size.rate * CAUGHT_UP_SECONDS
    for service in SERVICES:
        during = [sample.lag.get(service, 0) for sample in run.samples if sample.at <= run.load_seconds]
        finally_left = last.lag.get(service, 0)
        metrics.append(
            Metric(
                f"{service} consumer lag: max during the load / when it stopped / after the drain",
                f"{max(during, default=0)} / {load_end.lag.get(service, 0)} / {finally_left} records",
                f"max ≤ {lag_limit:.0f} (30 s of input); ≤ {caught_up:.0f} after the drain",
                max(during, default=0) <= lag_limit and finally_left <= caught_up,
            )
        )
    lost = run.published - run.insights_per_request.keys()
    doubled = [request for request, count in run.insights_per_request.items() if count > 1]
    metrics.append(
        Metric(
            "requests published / with one InsightsReady / lost / with two",
            f"{len(run.published):,} / {len(run.published) - len(lost) - len(doubled):,} / {len(lost)}"
            f" / {len(doubled)}",
            "0 lost, 0 with two",
            not lost and not doubled and bool(run.published),
        )
    )
    achieved = len(run.published) / run.load_seconds if run.load_seconds else 0.0
    metrics.append(
        Metric(
            "rate held",
            f"{achieved:.1f} conversations/s for {run.load_seconds / 60:.1f} min",
            f"{size.rate:g}/s for {size.minutes:g} min",
            achieved >= 0.98 * size.rate and run.load_seconds >= 0.99 * size.minutes * 60,
        )
    )
    return metrics


def cpu_section(run: SoakRun) -> str:
    first, last = run.samples[0], run.samples[-1]
    elapsed = max(1e-9, last.at - first.at)
    lines = ["| service | CPU seconds | average cores |", "|---|---|---|"]
    for service in SERVICES:
        used = last.cpu_seconds[service] - first.cpu_seconds[service]
        lines.append(f"| {service} | {used:.0f} | {used / elapsed:.2f} |")
    return "\n".join(lines)


def timeline_section(run: SoakRun) -> str:
    """Every minute or so: RSS and lag of each service."""
    header = "| t | " + " | ".join(f"{s} RSS" for s in SERVICES) + " | " + " | ".join(f"{s} lag" for s in SERVICES)
    lines = [header + " |", "|---" * (1 + 2 * len(SERVICES)) + "|"]
    shown = -60.0
    for sample in run.samples:
        if sample.at - shown < 60.0 and sample is not run.samples[-1]:
            continue
        shown = sample.at
        rss = " | ".join(f"{sample.rss_bytes[s] / 2**20:.0f} MB" for s in SERVICES)
        lag = " | ".join(str(sample.lag.get(s, "?")) for s in SERVICES)
        lines.append(f"| {sample.at / 60:.1f} min | {rss} | {lag} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--minutes", type=float, default=30.0, help="how long the load runs")
    parser.add_argument("--rate", type=float, default=50.0, help="conversations per second")
    parser.add_argument("--output-dir", type=Path, default=Path("benchmarks"), help="where soak.md/.json go")
    args = parser.parse_args(argv)
    # SIGTERM stops the run as Ctrl-C does, so the broker and the services are stopped too.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    for noisy in ("aiokafka", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    size = SoakSize(minutes=args.minutes, rate=args.rate)
    command = ".venv/bin/python -m parley_devtools.soak " + shlex.join(sys.argv[1:] if argv is None else argv)
    started_at = datetime.now(UTC)
    began = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="parley-soak-") as scratch:
        run = asyncio.run(soak(size, Path(scratch)))
    wall = time.monotonic() - began
    metrics = build_metrics(run)
    print(render_table(metrics))
    notes = [
        f"Load: {size.rate:g} ProcessRequested a second for {size.minutes:g} min on {size.partitions} partitions, one"
        f" in {HTTP_SHARE} submitted through ingest's HTTP API instead ({run.http_refused} refused); the scripted"
        " provider double (jobs take 1.2 s, webhooks on). Samples every"
        f" {SAMPLE_SECONDS:g} s; RSS counts each service process with its children.",
        "Lag is the records on a group's input topic beyond its committed offsets. job-watcher commits the jobs"
        " topic only up to its oldest pending job, so its lag includes the jobs still running at the provider.",
        f"ingest's idempotency ledger and job-watcher's settled job ids were bounded at {MEMORY_BOUND_ENTRIES:,}"
        " entries each (PARLEY_IDEMPOTENCY_LEDGER_ENTRIES, PARLEY_SETTLED_JOBS_REMEMBERED), full within 4 minutes, so"
        " the check from the 5-minute mark on is that nothing else grows; at their defaults (100,000 and 200,000)"
        " they fill after 33 and 67 minutes at this rate and then cost about 53 MB and 36 MB.",
        f"After the load, the run waited {run.drain_seconds:.0f} s for the last insights (at most"
        f" {DRAIN_SECONDS:g} s) and 5 s more for late duplicates.",
    ]
    page, data = write_results(
        args.output_dir,
        "soak",
        title="Soak",
        command=command.strip(),
        started_at=started_at,
        wall_seconds=wall,
        quick=False,
        machine=describe_machine(),
        size=size,
        metrics=metrics,
        results={"samples": [sample.__dict__ for sample in run.samples], "published": len(run.published)},
        notes=notes,
        sections=[("CPU during the run", cpu_section(run)), ("Timeline", timeline_section(run))],
    )
    print(f"wrote {page} and {data}")
    sys.exit(0 if all(metric.passed for metric in metrics) else 1)


if __name__ == "__main__":
    main()
