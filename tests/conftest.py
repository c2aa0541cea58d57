"""Test tiers: unit (no I/O), broker (in memory and real Kafka), e2e (real Kafka, services as processes).

The real broker is started once per run, and only when a collected test needs it (marker ``kafka``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e" in item.keywords:
            item.add_marker(pytest.mark.kafka)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of the real Kafka 4.x broker for this run (started here, stopped at the end)."""
    from tests.support.kafka_broker import start_test_broker, stop_test_broker

    broker, bootstrap = start_test_broker()
    os.environ["PARLEY_KAFKA_BOOTSTRAP_SERVERS"] = bootstrap
    try:
        yield bootstrap
    finally:
        stop_test_broker(broker)
