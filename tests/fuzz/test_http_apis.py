"""Schemathesis against each HTTP API's own OpenAPI document, in process: no input gets a 5xx.

ingest and job-watcher are their real apps over fake providers, with the Kafka broker replaced in memory
(``TestKafkaBroker``): their own lifespans would connect to Kafka, so a small ASGI shell answers the lifespan
protocol by patching the broker instead. The engine runs its real lifespan (store, workers) over fake speech and
analysis. Every response must be below 500, and every 4xx must be JSON with a non-empty ``message``.
"""

from __future__ import annotations

import contextlib
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from faststream.kafka import KafkaBroker, TestKafkaBroker
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from parley_engine.app import create_app as create_engine
from parley_ingest.app import create_app as create_ingest
from parley_ingest.settings import IngestSettings
from parley_job_watcher.app import create_app as create_job_watcher
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.provider import ProviderClient
from parley_shared.settings import ProviderSettings
from schemathesis import GenerationMode
from schemathesis.python import asgi

from tests.support.engine import FakeAnalyzer, FakeRecognizer, engine_settings
from tests.support.kafka_fakes import RecordingPublisher
from tests.support.provider_fakes import FakeAsyncApi

# /readyz answers 503 when Kafka is unreachable, which is its job (and there is no Kafka here).
NOT_FUZZED = r"^/readyz$"
FUZZ_SETTINGS = settings(
    max_examples=40,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)

Scope = dict[str, Any]


class InMemoryKafkaShell:
    """The service app with its Kafka broker patched in memory for the span of the ASGI lifespan."""

    def __init__(self, app: Any, broker: KafkaBroker) -> None:
        self._app = app
        self._broker = broker

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "lifespan":
            await self._app(scope, receive, send)
            return
        async with contextlib.AsyncExitStack() as stack:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await stack.enter_async_context(TestKafkaBroker(self._broker))
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await stack.aclose()
                    await send({"type": "lifespan.shutdown.complete"})
                    return


def provider_answering_jobs() -> ProviderClient:
    """A provider whose every job is in progress: enough for job-watcher's webhook confirmations."""

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth2/token:generate":
            return httpx.Response(200, json={"accessToken": "fuzz-token", "expiresIn": 3600})
        job_id = request.url.path.rsplit("/", 1)[-1]
        return httpx.Response(200, json={"id": job_id, "status": "in_progress"})

    return ProviderClient(ProviderSettings(url="http://provider.test"), transport=httpx.MockTransport(answer))


def schema_of(app: Any) -> Any:
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    return schema.exclude(path_regex=NOT_FUZZED)


@pytest.fixture(scope="module")
def ingest_schema() -> Iterator[Any]:
    topics_run = uuid.uuid4().hex[:8]
    ingest_settings = IngestSettings(
        kafka_bootstrap_servers="127.0.0.1:9",
        instance_id=f"fuzz-{topics_run}",
        max_upload_bytes=4096,
        webhook_url="http://127.0.0.1:9/webhooks/jobs",
        api_docs=True,  # the schema is what the fuzzer reads
    )
    # Accepted submissions' JobSubmitted events are committed to a recording publisher instead of Kafka.
    app = create_ingest(ingest_settings, provider=FakeAsyncApi(), publisher=RecordingPublisher())
    yield schema_of(InMemoryKafkaShell(app, app.state.broker))
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def job_watcher_schema() -> Iterator[Any]:
    watcher_settings = JobWatcherSettings(
        kafka_bootstrap_servers="127.0.0.1:9", instance_id="fuzz-watcher", api_docs=True
    )
    # Forwarded callbacks are committed to a recording publisher, over a jobs topic of three partitions.
    app = create_job_watcher(
        watcher_settings,
        provider=provider_answering_jobs(),
        publisher=RecordingPublisher(),
        jobs_partitions=lambda: {0, 1, 2},
    )
    yield schema_of(InMemoryKafkaShell(app, app.state.broker))
    asgi.shutdown_lifespans()


@pytest.fixture(scope="module")
def engine_token_headers() -> dict[str, str]:
    return {}


@pytest.fixture(scope="module")
def engine_schema(engine_token_headers: dict[str, str]) -> Iterator[Any]:
    with tempfile.TemporaryDirectory(prefix="parley-fuzz-engine-") as data_dir:
        engine = engine_settings(Path(data_dir), webhook_max_attempts=1, webhook_timeout_seconds=0.5, api_docs=True)
        analyzer, recognizer = FakeAnalyzer(), FakeRecognizer()
        app = create_engine(engine, analyzer_factory=lambda: analyzer, recognizer_factory=lambda: recognizer)
        schema = schema_of(app)  # starts the engine's lifespan
        # schemathesis types ASGI scopes as dict where Starlette has MutableMapping: the same app either way.
        with asgi.get_client(app) as client:  # type: ignore[arg-type]
            token = client.post(
                "/oauth2/token:generate",
                json={"type": "application", "appId": engine.app_id, "appSecret": engine.app_secret.get_secret_value()},
            )
        assert token.status_code == 200, token.text
        engine_token_headers["Authorization"] = f"Bearer {token.json()['accessToken']}"
        yield schema
        asgi.shutdown_lifespans()


def problem_with(case: Any, response: Any) -> str | None:
    """Why ``response`` is not acceptable: a 5xx, or a 4xx that does not say what was wrong in JSON."""
    request = f"{case.method} {case.formatted_path} query={case.query!r} headers={case.headers!r} body={case.body!r}"
    if response.status_code >= 500:
        return f"{response.status_code} for {request}:\n  {response.text[:500]}"
    if 400 <= response.status_code < 500:
        try:
            body = response.json()
        except ValueError:
            return f"{response.status_code} without a JSON body for {request}:\n  {response.text[:300]}"
        if not (isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"]):
            return f"{response.status_code} without a 'message' for {request}:\n  {body!r}"[:800]
    return None


def fuzz(schema: Any, *, headers: dict[str, str] | None = None) -> list[str]:
    """Valid and invalid requests for every operation; the problems found (all of them, not just the first)."""
    problems: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ_SETTINGS
            @given(case=operation.as_strategy(generation_mode=mode))
            def call(case: Any) -> None:
                problem = problem_with(case, case.call(headers=dict(headers or {}), timeout=10))
                if problem is not None:
                    problems.append(problem)

            # An operation without parameters or body has no invalid form.
            with contextlib.suppress(Unsatisfiable):
                call()
    return problems


def report(problems: list[str]) -> str:
    distinct = list(dict.fromkeys(problems))
    return f"{len(problems)} bad responses ({len(distinct)} distinct), e.g.:\n" + "\n".join(distinct[:15])


def test_ingest_answers_every_input_without_a_server_error(ingest_schema: Any) -> None:
    problems = fuzz(ingest_schema)
    assert not problems, report(problems)


def test_job_watcher_answers_every_input_without_a_server_error(job_watcher_schema: Any) -> None:
    problems = fuzz(job_watcher_schema)
    assert not problems, report(problems)


def test_engine_answers_every_input_without_a_server_error(
    engine_schema: Any, engine_token_headers: dict[str, str]
) -> None:
    problems = fuzz(engine_schema, headers=engine_token_headers)
    assert not problems, report(problems)
