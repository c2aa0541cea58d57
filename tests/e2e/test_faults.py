"""The fault-injection run, small: a misbehaving engine, each service SIGKILLed and restarted, the broker restarted.

It starts a broker of its own (it restarts it), so it does not use the session ``kafka_bootstrap``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from parley_devtools.fault_run import SMALL, FaultRunSize, run_faults

pytestmark = pytest.mark.e2e
# About 3 minutes: start-up, the 70 s window with 9 kills and a broker restart, then settling.
SIZE = FaultRunSize(conversations=60, seconds=SMALL.seconds, kills_per_service=3, settle_seconds=SMALL.settle_seconds)


@pytest.mark.timeout(420)
async def test_every_request_ends_once_and_nothing_is_read_early_despite_faults_and_kills(tmp_path: Path) -> None:
    report = await run_faults(SIZE, tmp_path, seed=20261125)

    assert report.failures() == [], report.render()
    assert len(report.accepted) == SIZE.conversations, report.render()
    assert min(report.kills.values()) >= 3 and report.broker_restarts == 1
    assert sum(report.faults_injected.values()) > 0, "fault mode injected nothing"
    assert report.conversation_reads > 0, "the gate was checked against real Conversation API reads"
    assert report.outcomes["InsightsReady"] > 0
