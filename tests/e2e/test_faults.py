"""The fault-injection run, small: a misbehaving engine, processes SIGKILLed and restarted, the broker restarted.

Once with one process of each service, once with three replicas of each and two engines on PostgreSQL (each
process, engines included, killed once). Each run starts a broker of its own (it restarts it), so neither uses the
session ``kafka_bootstrap``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parley_devtools.fault_run import SMALL, SMALL_REPLICAS, FaultRunReport, FaultRunSize, run_faults
from parley_devtools.postgres_server import PostgresUnavailable

pytestmark = pytest.mark.e2e
# About 3 minutes: start-up, the 70 s window with 9 kills and a broker restart, then settling.
SIZE = FaultRunSize(conversations=60, seconds=SMALL.seconds, kills_per_service=3, settle_seconds=SMALL.settle_seconds)


def assert_every_request_ended_once_under_faults(report: FaultRunReport) -> None:
    assert report.failures() == [], report.render()
    assert len(report.accepted) == report.size.conversations, report.render()
    assert min(report.kills[name] for name in report.size.kill_targets) >= report.size.kills_per_service
    assert report.broker_restarts == 1
    assert sum(report.faults_injected.values()) > 0, "fault mode injected nothing"
    assert report.conversation_reads > 0, "the gate was checked against real Conversation API reads"
    assert report.outcomes["InsightsReady"] > 0


@pytest.mark.timeout(420)
async def test_every_request_ends_once_and_nothing_is_read_early_despite_faults_and_kills(tmp_path: Path) -> None:
    report = await run_faults(SIZE, tmp_path, seed=20261125)

    assert_every_request_ended_once_under_faults(report)
    assert min(report.kills.values()) >= 3


@pytest.mark.timeout(480)
async def test_with_replicas_every_request_ends_once_and_no_engine_job_is_orphaned(tmp_path: Path) -> None:
    try:
        report = await run_faults(SMALL_REPLICAS, tmp_path, seed=20261207)
    except PostgresUnavailable as error:
        pytest.skip(str(error))

    assert_every_request_ended_once_under_faults(report)
    assert {"engine-0", "engine-1", "ingest-2", "job-watcher-2", "insight-fetcher-2"} <= set(report.kills)
    assert report.orphans == [], report.render()
    assert report.jobs_submitted >= len(report.accepted), report.render()
