"""Parley's Kafka SASL (SCRAM) and TLS settings against a real local broker configured for them.

A separate broker (its own ports and temporary data dir) runs SASL_PLAINTEXT and SASL_SSL listeners with
SCRAM-SHA-256/512 users and an SSL listener whose certificate comes from a CA generated at start. Every client here
is built the way the services build theirs: ``KafkaSettings`` → ``aiokafka_options`` / ``make_broker`` /
``ensure_topics`` / ``TransactionalPublisher``, so these prove the settings a user sets, not hand-made options.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaConnectionError
from parley_shared.kafka.connection import aiokafka_options, make_broker
from parley_shared.kafka.publishing import OutgoingRecord, TransactionalPublisher
from parley_shared.kafka.topics import ensure_topics
from parley_shared.settings import KafkaSettings, ParleySettings, TopicNames
from pydantic import SecretStr

from parley_cli.kafka_tls import write_certificate_authority
from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings

pytestmark = pytest.mark.kafka

# Away from the session broker (19092) and a developer's default one (9092).
PLAINTEXT_PORT = 29392
CONTROLLER_PORT = 29393
SASL_PORT = 29394
SSL_PORT = 29395
SASL_SSL_PORT = 29396
ALICE = "alice"
# '=', a space and a quote: the password survives the StorageTool's credential syntax and SCRAM's own escaping.
ALICE_PASSWORD = "correct horse=battery 'staple'"
BOB = "bob"
BOB_PASSWORD = "bob-secret"
TEST_TIMEOUT_SECONDS = 30
# A refused login or certificate must surface as an error promptly, not as a hang.
REFUSAL_SECONDS = 10


@dataclass(frozen=True)
class SecuredKafka:
    broker: LocalKafka
    sasl_bootstrap: str
    ssl_bootstrap: str
    sasl_ssl_bootstrap: str
    ca_file: Path


@pytest.fixture(scope="module")
def secured_kafka() -> Iterator[SecuredKafka]:
    data_dir = Path(tempfile.mkdtemp(prefix="parley-test-kafka-secured-"))
    broker = LocalKafka(
        LocalKafkaSettings(
            port=PLAINTEXT_PORT,
            controller_port=CONTROLLER_PORT,
            sasl_port=SASL_PORT,
            ssl_port=SSL_PORT,
            sasl_ssl_port=SASL_SSL_PORT,
            scram_users={ALICE: SecretStr(ALICE_PASSWORD), BOB: SecretStr(BOB_PASSWORD)},
            data_dir=data_dir,
            heap="384m",
        )
    )
    try:
        broker.start(stop_with_parent=True)
        assert broker.sasl_bootstrap and broker.ssl_bootstrap and broker.sasl_ssl_bootstrap
        yield SecuredKafka(
            broker=broker,
            sasl_bootstrap=broker.sasl_bootstrap,
            ssl_bootstrap=broker.ssl_bootstrap,
            sasl_ssl_bootstrap=broker.sasl_ssl_bootstrap,
            ca_file=broker.ca_file,
        )
    finally:
        broker.stop()
        shutil.rmtree(data_dir, ignore_errors=True)


# (security_protocol, sasl_mechanism, user): every secured listener and both SCRAM mechanisms.
SECURED_CONNECTIONS = [
    pytest.param("SASL_PLAINTEXT", "SCRAM-SHA-256", ALICE, id="sasl-scram-sha-256"),
    pytest.param("SASL_PLAINTEXT", "SCRAM-SHA-512", BOB, id="sasl-scram-sha-512"),
    pytest.param("SSL", None, None, id="ssl"),
    pytest.param("SASL_SSL", "SCRAM-SHA-512", ALICE, id="sasl-ssl-scram-sha-512"),
]
PASSWORDS = {ALICE: ALICE_PASSWORD, BOB: BOB_PASSWORD}


def settings_for(kafka: SecuredKafka, protocol: str, mechanism: str | None, user: str | None) -> KafkaSettings:
    """``KafkaSettings`` as a user would set them (``PARLEY_KAFKA__SECURITY_PROTOCOL`` and friends)."""
    bootstrap = {
        "SASL_PLAINTEXT": kafka.sasl_bootstrap,
        "SSL": kafka.ssl_bootstrap,
        "SASL_SSL": kafka.sasl_ssl_bootstrap,
    }
    fields: dict[str, Any] = {
        "bootstrap_servers": bootstrap[protocol],
        "security_protocol": protocol,
        "topic_partitions": 1,
    }
    if user is not None:
        fields |= {"sasl_mechanism": mechanism, "sasl_username": user, "sasl_password": PASSWORDS[user]}
    if protocol.endswith("SSL"):
        fields["ssl_cafile"] = str(kafka.ca_file)
    return KafkaSettings.model_validate(fields)


def unique_topics() -> TopicNames:
    run = uuid.uuid4().hex[:8]
    return TopicNames.prefixed(f"sec-{run}")


async def read_records(consumer: AIOKafkaConsumer, count: int) -> list[ConsumerRecord[bytes, bytes]]:
    records: list[ConsumerRecord[bytes, bytes]] = []
    async with asyncio.timeout(20):
        while len(records) < count:
            batches = await consumer.getmany(timeout_ms=200, max_records=count - len(records))
            for batch in batches.values():
                records.extend(batch)
    return records


async def connection_refusal(settings: KafkaSettings, caplog: pytest.LogCaptureFixture) -> str:
    """Start a service the way it starts (topics first) and return what aiokafka logged about the refused connection."""
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aiokafka"), pytest.raises(KafkaConnectionError):
        async with asyncio.timeout(REFUSAL_SECONDS):
            await ensure_topics(settings, unique_topics())
    return "\n".join(record.getMessage() for record in caplog.records)


@pytest.mark.parametrize(("protocol", "mechanism", "user"), SECURED_CONNECTIONS)
async def test_aiokafka_clients_round_trip(
    secured_kafka: SecuredKafka, protocol: str, mechanism: str | None, user: str | None
) -> None:
    settings = settings_for(secured_kafka, protocol, mechanism, user)
    topics = unique_topics()

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        await ensure_topics(settings, topics)
        producer = AIOKafkaProducer(**aiokafka_options(settings))
        await producer.start()
        try:
            sent = await producer.send_and_wait(topics.requests, b'{"secured": true}', key=b"conversation-1")
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(
            topics.requests,
            **aiokafka_options(settings),
            group_id=f"sec-{uuid.uuid4().hex[:8]}",
            auto_offset_reset="earliest",
        )
        await consumer.start()
        try:
            [record] = await read_records(consumer, 1)
            # A group commit goes through the group coordinator, another connection the settings must secure.
            await consumer.commit()
            committed = await consumer.committed(TopicPartition(topics.requests, 0))
        finally:
            await consumer.stop()

    assert (record.key, record.value) == (b"conversation-1", b'{"secured": true}')
    assert (record.partition, record.offset) == (sent.partition, sent.offset)
    assert committed == sent.offset + 1


async def test_environment_variables_reach_a_sasl_ssl_listener(
    secured_kafka: SecuredKafka, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exact variables a deployment sets for a managed cluster (SCRAM over TLS with its own CA)."""
    topics = unique_topics()
    environment = {
        "PARLEY_KAFKA_BOOTSTRAP_SERVERS": secured_kafka.sasl_ssl_bootstrap,
        "PARLEY_KAFKA__SECURITY_PROTOCOL": "SASL_SSL",
        "PARLEY_KAFKA__SASL_MECHANISM": "SCRAM-SHA-256",
        "PARLEY_KAFKA__SASL_USERNAME": ALICE,
        "PARLEY_KAFKA__SASL_PASSWORD": ALICE_PASSWORD,
        "PARLEY_KAFKA__SSL_CAFILE": str(secured_kafka.ca_file),
        "PARLEY_KAFKA__TOPIC_PARTITIONS": "1",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = ParleySettings().kafka

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        await ensure_topics(settings, topics)
        admin = AIOKafkaAdminClient(**aiokafka_options(settings))
        await admin.start()
        try:
            existing = set(await admin.list_topics())
        finally:
            await admin.close()

    assert {topics.requests, topics.jobs, topics.completions, topics.insights, topics.dead_letters} <= existing


@pytest.mark.parametrize(("protocol", "mechanism", "user"), SECURED_CONNECTIONS)
async def test_faststream_broker_round_trip(
    secured_kafka: SecuredKafka, protocol: str, mechanism: str | None, user: str | None
) -> None:
    settings = settings_for(secured_kafka, protocol, mechanism, user)
    topics = unique_topics()
    broker = make_broker(settings, client_id="security-test", graceful_timeout=2.0)
    received: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()

    @broker.subscriber(topics.jobs, group_id=f"sec-{uuid.uuid4().hex[:8]}", auto_offset_reset="earliest")
    async def jobs_seen(body: dict[str, Any]) -> None:
        if not received.done():
            received.set_result(body)

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        await ensure_topics(settings, topics)
        await broker.start()
        try:
            await broker.publish({"jobId": "job-1"}, topics.jobs, key=b"conversation-1")
            body = await received
        finally:
            await broker.stop()

    assert body == {"jobId": "job-1"}


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512"])
async def test_a_wrong_password_is_refused(
    secured_kafka: SecuredKafka, mechanism: str, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_for(secured_kafka, "SASL_PLAINTEXT", mechanism, ALICE).model_copy(
        update={"sasl_password": SecretStr(ALICE_PASSWORD + "-not")}
    )

    logged = await connection_refusal(settings, caplog)

    assert "SaslAuthenticationFailed" in logged
    assert mechanism in logged


async def test_an_unknown_user_is_refused(secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture) -> None:
    settings = settings_for(secured_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-256", ALICE).model_copy(
        update={"sasl_username": "mallory"}
    )

    assert "SaslAuthenticationFailed" in await connection_refusal(settings, caplog)


async def test_tls_without_the_ca_file_is_refused(
    secured_kafka: SecuredKafka, caplog: pytest.LogCaptureFixture
) -> None:
    # No PARLEY_KAFKA__SSL_CAFILE: the system's CAs, which never signed the local broker.
    settings = settings_for(secured_kafka, "SSL", None, None).model_copy(update={"ssl_cafile": None})

    assert "CERTIFICATE_VERIFY_FAILED" in await connection_refusal(settings, caplog)


async def test_tls_with_another_ca_is_refused(
    secured_kafka: SecuredKafka, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    keytool = shutil.which("keytool")
    assert keytool is not None, "the broker made its certificates with keytool, so it is here"
    other_ca = write_certificate_authority(tmp_path, keytool=keytool, name="someone-else")
    for protocol, user in (("SSL", None), ("SASL_SSL", BOB)):
        settings = settings_for(secured_kafka, protocol, "SCRAM-SHA-256", user).model_copy(
            update={"ssl_cafile": str(other_ca)}
        )

        assert "CERTIFICATE_VERIFY_FAILED" in await connection_refusal(settings, caplog), protocol


async def test_the_plaintext_protocol_cannot_use_a_secured_listener(secured_kafka: SecuredKafka) -> None:
    """A client left on the default PLAINTEXT protocol fails on a SASL listener instead of silently working."""
    settings = KafkaSettings(bootstrap_servers=secured_kafka.sasl_bootstrap)

    with pytest.raises(KafkaConnectionError):
        async with asyncio.timeout(REFUSAL_SECONDS):
            await ensure_topics(settings, unique_topics())


async def test_transactional_publisher_over_scram(secured_kafka: SecuredKafka) -> None:
    settings = settings_for(secured_kafka, "SASL_PLAINTEXT", "SCRAM-SHA-512", BOB)
    topics = unique_topics()
    group = f"sec-{uuid.uuid4().hex[:8]}"
    source = TopicPartition(topics.completions, 0)
    records = [OutgoingRecord(topics.insights, f'{{"n": {n}}}'.encode(), key=b"conversation-1") for n in range(3)]

    async with asyncio.timeout(TEST_TIMEOUT_SECONDS):
        await ensure_topics(settings, topics)
        publisher = TransactionalPublisher(settings, transactional_id=f"sec-{group}", client_id="security-test")
        await publisher.start()
        try:
            await publisher.publish(records, consumed={source: 42}, group_id=group)
        finally:
            await publisher.stop()

        consumer = AIOKafkaConsumer(
            **aiokafka_options(settings),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
        )
        await consumer.start()
        try:
            consumer.assign([TopicPartition(topics.insights, 0)])
            seen = await read_records(consumer, len(records))
        finally:
            await consumer.stop()
        admin = AIOKafkaAdminClient(**aiokafka_options(settings))
        await admin.start()
        try:
            offsets = await admin.list_consumer_group_offsets(group)
        finally:
            await admin.close()

    assert [record.value for record in seen] == [record.value for record in records]
    assert offsets[source].offset == 42
