"""The real Kafka broker of a test run: started once by tests/conftest.py, on a fixed test port.

``PARLEY_TEST_KAFKA_PORT`` (default 19092; the controller takes the next port) picks the port, and
``PARLEY_TEST_KAFKA_REUSE=1`` reuses a broker already answering there (e.g. one kept running with
``parley kafka start --port 19092`` to save the start-up on every run).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings, broker_answers

DATA_DIR_PREFIX = "parley-test-kafka-"


class BrokerForTestsSettings(BaseSettings):
    """How the test run gets its broker."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_TEST_KAFKA_", extra="ignore")

    port: int = Field(19092, description="client port of the test broker; controller on port + 1")
    reuse: bool = Field(False, description="use a broker already answering on the port instead of failing")


def start_test_broker() -> tuple[LocalKafka, str]:
    """Start a broker with a fresh data dir for this run (or reuse one); return it and its bootstrap."""
    settings = BrokerForTestsSettings()
    bootstrap = f"127.0.0.1:{settings.port}"
    if broker_answers(bootstrap):
        if not settings.reuse:
            raise RuntimeError(
                f"a Kafka broker already answers on {bootstrap}: set PARLEY_TEST_KAFKA_REUSE=1 to use it, "
                "or PARLEY_TEST_KAFKA_PORT to start the test broker on another port"
            )
        # Not launched here, so stop_test_broker leaves it running.
        return LocalKafka(LocalKafkaSettings(port=settings.port)), bootstrap
    data_dir = Path(tempfile.mkdtemp(prefix=DATA_DIR_PREFIX))
    broker = LocalKafka(
        LocalKafkaSettings(
            port=settings.port,
            controller_port=settings.port + 1,
            data_dir=data_dir,
            heap="384m",
        )
    )
    try:
        broker.start(stop_with_parent=True)
    except BaseException:
        shutil.rmtree(data_dir, ignore_errors=True)
        raise
    return broker, broker.bootstrap


def stop_test_broker(broker: LocalKafka) -> None:
    """Stop the broker if this run started it, and delete its temporary data dir."""
    if not broker.launched_here:
        return
    broker.stop()
    if broker.data_dir.name.startswith(DATA_DIR_PREFIX):
        broker.wipe()
