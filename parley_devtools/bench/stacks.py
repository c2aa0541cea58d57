"""The benchmark's own broker and pipelines: each stack has its own double, topics, groups and transactional ids.

Several stacks share one broker without seeing each other's records or joining each other's consumer groups,
so a slow-provider stack can run beside the instant one and each can be stopped on its own.
"""

from __future__ import annotations

import socket
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from parley_shared.settings import KafkaSettings, TopicNames

from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings
from parley_cli.local_stack import LocalStack

# Not the default 9092 (a developer's broker) nor the e2e tests' ports.
BENCH_KAFKA_PORT = 19392
BENCH_CONTROLLER_PORT = 19393
PIPELINE_SERVICES = ("job-watcher", "insight-fetcher", "ingest")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_broker(data_dir: Path) -> LocalKafka:
    """A fresh broker in ``data_dir``; it dies with this process if the benchmark is killed."""
    settings = LocalKafkaSettings(
        port=BENCH_KAFKA_PORT, controller_port=BENCH_CONTROLLER_PORT, data_dir=data_dir, heap="1g"
    )
    kafka = LocalKafka(settings)
    kafka.start(stop_with_parent=True)
    return kafka


@dataclass
class BenchStack:
    """One pipeline (or part of one) on its own topics; ``local`` owns the processes."""

    name: str
    local: LocalStack
    topics: TopicNames
    kafka: KafkaSettings
    service_env: dict[str, dict[str, str]] = field(default_factory=dict)
    services: dict[str, str] = field(default_factory=dict)  # process name → the service it runs

    def url(self, service: str) -> str:
        return self.local.processes[service].url

    def start(
        self,
        name: str,
        *,
        service: str | None = None,
        port: int | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        """Start ``service`` (by default ``name``) as the process ``name``; a replica such as ``job-watcher-2``
        gets the service's settings plus its own."""
        service = service or name
        env = {**self.service_env.get(service, {}), **self.service_env.get(name, {}), **(extra_env or {})}
        self.service_env[name] = env
        ready = "/_double/jobs" if service == "provider-double" else "/healthz"
        self.local.start(name, service=service, port=port or free_port(), extra_env=env, ready_path=ready, timeout=90)
        self.services[name] = service

    def restart(self, name: str, *, kill: bool) -> None:
        port = self.local.processes[name].port
        self.local.stop(name, kill=kill)
        self.start(name, service=self.services.get(name), port=port)

    def pids(self) -> dict[str, int]:
        return {name: process.process.pid for name, process in self.local.processes.items()}

    def stop(self) -> None:
        self.local.stop_all()


def new_stack(name: str, run_id: str, bootstrap: str, *, partitions: int, log_root: Path) -> BenchStack:
    topics = TopicNames.prefixed(f"bench-{run_id}-{name}")
    env = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        **topics.as_env(),
        "PARLEY_KAFKA__TOPIC_PARTITIONS": str(partitions),
        "PARLEY_LOG_LEVEL": "WARNING",
        "PARLEY_INSTANCE_ID": f"bench-{run_id}-{name}",
    }
    # Own consumer groups per stack: a shared group would rebalance every stack whenever one member joins.
    service_env = {service: {"PARLEY_GROUP_ID": f"bench-{run_id}-{name}-{service}"} for service in PIPELINE_SERVICES}
    log_dir = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=log_root))
    return BenchStack(
        name=name,
        local=LocalStack(log_dir=log_dir, env=env),
        topics=topics,
        kafka=KafkaSettings(bootstrap_servers=bootstrap, topic_partitions=partitions),
        service_env=service_env,
    )


def start_double(stack: BenchStack, *, processing_seconds: float) -> str:
    """Start the stack's provider double (jobs finish ``processing_seconds`` after submission); its URL."""
    stack.start(
        "provider-double",
        extra_env={
            "PARLEY_DOUBLE_SCHEDULED_SECONDS": "0",
            "PARLEY_DOUBLE_PROCESSING_SECONDS": f"{processing_seconds:g}",
        },
    )
    url = stack.url("provider-double")
    stack.local.env["PARLEY_API_URL"] = url
    return url


def start_pipeline(stack: BenchStack) -> None:
    """job-watcher, insight-fetcher and ingest against the stack's double, without ``PARLEY_WEBHOOK_URL``."""
    for service in PIPELINE_SERVICES:
        stack.start(service)


def start_replicated_pipeline(stack: BenchStack, replicas: int) -> None:
    """``replicas`` of job-watcher, insight-fetcher and ingest (``job-watcher-0`` …), each with its own
    transactional id, against the stack's double."""
    for service in PIPELINE_SERVICES:
        for n in range(replicas):
            instance = f"{stack.local.env['PARLEY_INSTANCE_ID']}-{n}"
            stack.start(f"{service}-{n}", service=service, extra_env={"PARLEY_INSTANCE_ID": instance})


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of a process and all its descendants."""
    root = psutil.Process(pid)
    total = 0
    for process in [root, *root.children(recursive=True)]:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


def tree_cpu_seconds(pid: int, *, children: bool = True) -> float:
    """User + system CPU time used so far by a process and (unless told not to) its descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)] if children else [root]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total
