"""Settings pieces shared by every service; each service composes its own ``Settings`` from them.

Everything is read by pydantic-settings with the ``PARLEY_`` prefix; nothing else reads the environment.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, SecretStr
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# The engine's documented development credential pair (see the README); a deployment sets its own.
DEVELOPMENT_APP_ID = "parley-dev"
DEVELOPMENT_APP_SECRET = "parley-dev-secret"
DEFAULT_API_URL = "http://127.0.0.1:8700"


def split_commas(value: Any) -> Any:
    """``PARLEY_X=a,b``: a comma-separated list; blanks around and between items are dropped."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


# A settings field type for a list given as ``a,b``. NoDecode keeps pydantic-settings from expecting JSON.
CommaSeparated = Annotated[tuple[str, ...], NoDecode, BeforeValidator(split_commas)]


class TopicNames(BaseModel):
    """The Kafka topics Parley uses (each configurable, e.g. ``PARLEY_TOPICS__INSIGHTS``)."""

    requests: str = Field("parley.requests", description="ProcessRequested commands from upstream systems")
    jobs: str = Field("parley.jobs", description="JobSubmitted events from ingest")
    completions: str = Field("parley.completions", description="JobCompleted / JobFailed from job-watcher")
    insights: str = Field("parley.insights", description="InsightsReady bundles (compacted)")
    live: str = Field("parley.live", description="live streams' messages and insights as they are recognised")
    dead_letters: str = Field("parley.dead-letters", description="records no service could handle")

    @classmethod
    def prefixed(cls, prefix: str) -> TopicNames:
        """A set of its own (``<prefix>.requests`` …), for tests and benchmarks sharing one broker."""
        return cls(
            requests=f"{prefix}.requests",
            jobs=f"{prefix}.jobs",
            completions=f"{prefix}.completions",
            insights=f"{prefix}.insights",
            live=f"{prefix}.live",
            dead_letters=f"{prefix}.dead-letters",
        )

    def as_env(self) -> dict[str, str]:
        """The ``PARLEY_TOPICS__*`` variables that make a service use these names."""
        return {f"PARLEY_TOPICS__{name.upper()}": topic for name, topic in self.model_dump().items()}


class KafkaSettings(BaseModel):
    """How to reach Kafka, including SASL/SSL for managed clusters."""

    bootstrap_servers: str = Field("127.0.0.1:9092", description="comma-separated host:port list")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL protocol)"
    )
    sasl_username: str | None = Field(None, description="SASL user")
    sasl_password: SecretStr | None = Field(None, description="SASL password (never logged)")
    ssl_cafile: str | None = Field(None, description="CA bundle used to verify the brokers")
    ssl_certfile: str | None = Field(None, description="client certificate for mutual TLS")
    ssl_keyfile: str | None = Field(None, description="client key for mutual TLS")
    session_timeout_ms: int = Field(
        6000, ge=6000, description="a consumer that stops heartbeating is replaced after this (broker minimum 6 s)"
    )
    batch_wait_ms: int = Field(
        10, ge=1, le=1000, description="how long a consumer waits for more records; also its idle pause"
    )
    topic_partitions: int = Field(6, ge=1, description="partitions for topics Parley creates")
    topic_replication_factor: int = Field(1, ge=1, description="replication factor for topics Parley creates")


class ProviderSettings(BaseModel):
    """The Symbl-compatible conversation-intelligence API and how hard to lean on it."""

    url: str = Field(DEFAULT_API_URL, description="base URL of the provider (the engine by default)")
    app_id: str = Field(DEVELOPMENT_APP_ID, description="appId for /oauth2/token:generate")
    app_secret: SecretStr = Field(SecretStr(DEVELOPMENT_APP_SECRET), description="appSecret for token generation")
    timeout_seconds: float = Field(30.0, gt=0, description="per-request timeout")
    max_attempts: int = Field(6, ge=1, description="attempts per request for timeouts, 5xx and 429")
    backoff_base_seconds: float = Field(0.2, gt=0, description="first retry delay; doubles per attempt, jittered")
    backoff_max_seconds: float = Field(10.0, gt=0, description="cap on one retry delay")
    max_concurrent_jobs: int = Field(50, ge=1, description="job submissions in flight at once (providers cap jobs)")
    max_connections: int = Field(100, ge=1, description="HTTP connections to the provider")


class ParleySettings(BaseSettings):
    """Base of every service's settings: Kafka, topics and the provider.

    Nested values use ``__``: ``PARLEY_KAFKA__SECURITY_PROTOCOL``. The documented flat names
    (``PARLEY_KAFKA_BOOTSTRAP_SERVERS``, ``PARLEY_API_URL``, ``PARLEY_APP_ID``, ``PARLEY_APP_SECRET``) are
    accepted too, and win over the nested spelling.
    """

    model_config = SettingsConfigDict(env_prefix="PARLEY_", env_nested_delimiter="__", extra="ignore")

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicNames = Field(default_factory=TopicNames)
    provider: ProviderSettings = Field(default_factory=ProviderSettings)

    kafka_bootstrap_servers: str | None = Field(None, description="shorthand for kafka.bootstrap_servers")
    api_url: str | None = Field(None, description="shorthand for provider.url")
    app_id: str | None = Field(None, description="shorthand for provider.app_id")
    app_secret: SecretStr | None = Field(None, description="shorthand for provider.app_secret")
    log_level: str = Field("INFO", description="log level of the service")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto", description="json lines, or aligned text for people; auto picks text when stderr is a terminal"
    )
    shutdown_grace_seconds: float = Field(
        15.0, gt=0, description="on SIGTERM, how long in-flight batches may finish before the service stops"
    )
    consumer_stall_seconds: float = Field(
        120.0, gt=0, description="liveness fails when records wait but none were handled for this long"
    )
    api_docs: bool = Field(False, description="serve /docs, /redoc and /openapi.json (off: they map every route)")
    allow_open_access: bool = Field(
        False,
        description="start on an address beyond loopback without the credentials that guard the service "
        "(API keys, webhook secret); only for a network you trust completely",
    )

    def model_post_init(self, __context: object) -> None:
        if self.kafka_bootstrap_servers:
            self.kafka.bootstrap_servers = self.kafka_bootstrap_servers
        if self.api_url:
            self.provider.url = self.api_url
        if self.app_id:
            self.provider.app_id = self.app_id
        if self.app_secret:
            self.provider.app_secret = self.app_secret
