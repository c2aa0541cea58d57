"""One place that turns ``KafkaSettings`` into client options, for faststream and for raw aiokafka clients."""

from __future__ import annotations

import logging
from typing import Any

from aiokafka.helpers import create_ssl_context
from faststream.kafka import KafkaBroker
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512

from parley_shared.metrics import kafka_message_metrics
from parley_shared.settings import KafkaSettings
from parley_shared.tracing import exporting_traces


def _ssl_context(settings: KafkaSettings) -> Any:
    if settings.security_protocol not in ("SSL", "SASL_SSL"):
        return None
    return create_ssl_context(cafile=settings.ssl_cafile, certfile=settings.ssl_certfile, keyfile=settings.ssl_keyfile)


def aiokafka_options(settings: KafkaSettings) -> dict[str, Any]:
    """Keyword arguments for ``AIOKafkaProducer``/``AIOKafkaConsumer``/``AIOKafkaAdminClient``."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    ssl_context = _ssl_context(settings)
    if ssl_context is not None:
        options["ssl_context"] = ssl_context
    if settings.security_protocol.startswith("SASL"):
        if not settings.sasl_mechanism or not settings.sasl_username or settings.sasl_password is None:
            raise ValueError("SASL needs PARLEY_KAFKA__SASL_MECHANISM, _SASL_USERNAME and _SASL_PASSWORD")
        options["sasl_mechanism"] = settings.sasl_mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def broker_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The faststream security object for the same settings (so AsyncAPI documents it too)."""
    ssl_context = _ssl_context(settings)
    use_ssl = ssl_context is not None
    if not settings.security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=ssl_context, use_ssl=use_ssl) if use_ssl else None
    options = aiokafka_options(settings)
    username, password = options["sasl_plain_username"], options["sasl_plain_password"]
    security_class = {"PLAIN": SASLPlaintext, "SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512}[
        options["sasl_mechanism"]
    ]
    return security_class(username=username, password=password, ssl_context=ssl_context, use_ssl=use_ssl)


def make_broker(
    settings: KafkaSettings, *, client_id: str, graceful_timeout: float = 15.0, **kwargs: Any
) -> KafkaBroker:
    """A faststream broker with an idempotent producer (no duplicates from producer retries).

    On stop it waits up to ``graceful_timeout`` for handlers in flight; what they do not finish is never committed
    (outputs and offsets go in one transaction), so it is read again after the restart.
    """
    return KafkaBroker(
        settings.bootstrap_servers,
        graceful_timeout=graceful_timeout,
        security=broker_security(settings),
        client_id=client_id,
        enable_idempotence=True,
        # faststream logs every message it handles at this level; per-message lines belong in DEBUG.
        log_level=logging.DEBUG,
        # Its default logger has a handler of its own; this one goes through Parley's structured handler.
        logger=logging.getLogger("parley.kafka"),
        # faststream's spans of each batch and publish, while spans are exported (they cost about 2 % of a
        # consumer's CPU otherwise). Each consumed record gets a span of its own either way (parley_shared.tracing):
        # a batch's span can only link its records' traces.
        middlewares=[*([KafkaTelemetryMiddleware()] if exporting_traces() else []), kafka_message_metrics()],
        **kwargs,
    )


async def keep_raw_bodies(msg: Any) -> Any:
    """A faststream decoder that leaves record bytes alone.

    The default decoder runs ``json.loads`` on every record of a batch before any handler runs, and a single
    hostile record (20,000 nested brackets, a 5,000-digit number) raised out of it and lost the whole batch.
    Parley's handlers parse each record themselves and dead-letter the ones that do not parse.
    """
    return msg.body


def consumer_tuning(settings: KafkaSettings) -> dict[str, Any]:
    """Subscriber options every service uses.

    faststream's batch subscriber sleeps ``batch_timeout_ms`` after an empty poll (200 ms by default), which
    showed as the p99 of completion→insights latency; a short wait keeps the hop fast at negligible idle cost.
    """
    return {
        "decoder": keep_raw_bodies,
        "batch_timeout_ms": settings.batch_wait_ms,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": max(1000, settings.session_timeout_ms // 3),
    }
