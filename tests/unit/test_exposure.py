"""Secure by default: a server reachable beyond loopback refuses to start open, and the API documents are opt-in."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from parley_engine.settings import EngineSettings
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.exposure import listens_beyond_loopback
from pydantic import ValidationError

from tests.support.provider_fakes import FakeAsyncApi, FakeConversationApi


@pytest.mark.parametrize(
    ("host", "beyond"),
    [
        ("127.0.0.1", False),
        ("127.3.4.5", False),
        ("::1", False),
        ("[::1]", False),
        ("localhost", False),
        ("LOCALHOST", False),
        ("0.0.0.0", True),
        ("::", True),
        ("10.0.0.7", True),
        ("parley-ingest", True),
    ],
)
def test_which_bind_addresses_reach_beyond_this_machine(host: str, beyond: bool) -> None:
    assert listens_beyond_loopback(host) is beyond


def test_ingest_on_every_interface_needs_api_keys() -> None:
    with pytest.raises(ValidationError, match="PARLEY_API_KEYS"):
        IngestSettings(http_host="0.0.0.0")
    assert IngestSettings(http_host="0.0.0.0", api_keys="key-1").api_keys
    assert IngestSettings(http_host="0.0.0.0", allow_open_access=True).http_host == "0.0.0.0"
    assert not IngestSettings().api_keys  # on loopback (the default) it may stay open: make demo


def test_job_watcher_on_every_interface_needs_the_webhook_secret() -> None:
    with pytest.raises(ValidationError, match="PARLEY_WEBHOOK_SECRET"):
        JobWatcherSettings(http_host="0.0.0.0")
    assert JobWatcherSettings(http_host="0.0.0.0", webhook_secret="s3cret").webhook_secret is not None


def test_the_engine_on_every_interface_needs_its_own_app_secret_and_a_webhook_secret(tmp_path: Path) -> None:
    with pytest.raises(ValidationError) as refused:
        EngineSettings(http_host="0.0.0.0", engine_data_dir=tmp_path)
    message = str(refused.value)
    assert "PARLEY_APP_SECRET" in message and "PARLEY_WEBHOOK_SECRET" in message
    with pytest.raises(ValidationError, match="PARLEY_APP_SECRET"):
        EngineSettings(http_host="0.0.0.0", engine_data_dir=tmp_path, webhook_secret="w")
    guarded = EngineSettings(http_host="0.0.0.0", engine_data_dir=tmp_path, app_secret="a" * 32, webhook_secret="w")
    assert guarded.http_host == "0.0.0.0"


def test_the_setting_names_in_the_environment_are_the_ones_the_refusal_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PARLEY_HTTP_HOST", "0.0.0.0")
    monkeypatch.setenv("PARLEY_API_KEYS", "key-a, key-b")
    monkeypatch.setenv("PARLEY_WEBHOOK_SECRET", "from-the-environment")
    assert len(IngestSettings().api_keys) == 2
    assert JobWatcherSettings().webhook_secret is not None
    monkeypatch.setenv("PARLEY_ALLOW_OPEN_ACCESS", "true")
    monkeypatch.delenv("PARLEY_API_KEYS")
    assert IngestSettings().allow_open_access


def test_the_engine_calls_back_non_public_urls_only_when_trusted_or_allowed(tmp_path: Path) -> None:
    settings = EngineSettings(engine_data_dir=tmp_path, trusted_webhook_urls="http://job-watcher:8702/webhooks/,")
    assert settings.trusted_webhook_urls == ("http://job-watcher:8702/webhooks/",)
    assert settings.may_call_back("http://job-watcher:8702/webhooks/jobs")
    assert not settings.may_call_back("http://job-watcher:8703/metrics")
    assert EngineSettings(engine_data_dir=tmp_path, allow_private_media_urls=True).may_call_back("http://10.0.0.1/")


async def test_api_documents_are_served_only_when_asked() -> None:
    from parley_ingest.app import create_app as create_ingest
    from parley_insight_fetcher.app import create_app as create_fetcher

    from tests.support.kafka_fakes import RecordingPublisher

    closed = create_ingest(IngestSettings(), provider=FakeAsyncApi(), publisher=RecordingPublisher())
    opened = create_ingest(IngestSettings(api_docs=True), provider=FakeAsyncApi(), publisher=RecordingPublisher())
    fetcher = create_fetcher(InsightFetcherSettings(), provider=FakeConversationApi())
    for app, expected in ((closed, 404), (opened, 200), (fetcher, 404)):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://service.test") as client:
            for path in ("/docs", "/redoc", "/openapi.json"):
                assert (await client.get(path)).status_code == expected, (path, expected)


async def test_the_engine_serves_its_api_documents_only_when_asked(tmp_path: Path) -> None:
    from parley_engine.app import create_app as create_engine

    from tests.support.engine import FakeAnalyzer, FakeRecognizer, engine_settings

    for api_docs, expected in ((False, 404), (True, 200)):
        settings = engine_settings(tmp_path / str(api_docs), api_docs=api_docs)
        app = create_engine(settings, analyzer_factory=FakeAnalyzer, recognizer_factory=FakeRecognizer)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine.test") as client:
            assert (await client.get("/openapi.json")).status_code == expected
            assert (await client.get("/docs")).status_code == expected
