"""The committed API documents (docs/api/) match the code: CI fails here when a route, topic or model drifts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from parley_devtools.api_documents import DOCUMENTS_DIR, main, render_documents, stale_documents


def test_the_committed_documents_match_the_code() -> None:
    stale = stale_documents(DOCUMENTS_DIR)

    assert stale == [], (
        f"docs/api is out of date for {stale}: run `.venv/bin/python -m parley_devtools.api_documents` and commit"
    )


def test_every_service_has_its_documents_and_they_parse() -> None:
    documents = render_documents()

    assert set(documents) == {
        "asyncapi-ingest.yaml",
        "asyncapi-job-watcher.yaml",
        "asyncapi-insight-fetcher.yaml",
        "openapi-ingest.json",
        "openapi-job-watcher.json",
        "openapi-insight-fetcher.json",
        "openapi-engine.json",
        "hops.md",
    }
    ingest_topics = yaml.safe_load(documents["asyncapi-ingest.yaml"])
    assert ingest_topics["info"]["title"] == "Parley ingest"
    assert {channel["address"] for channel in ingest_topics["channels"].values()} == {
        "parley.requests",
        "parley.jobs",
        "parley.live",
        "parley.dead-letters",
    }
    watcher_topics = yaml.safe_load(documents["asyncapi-job-watcher.yaml"])
    assert {"JobCompleted", "JobFailed", "JobResolved", "DeadLetter"} <= set(watcher_topics["components"]["schemas"])
    ingest_http = json.loads(documents["openapi-ingest.json"])
    assert "/v1/process/text" in ingest_http["paths"]
    engine_http = json.loads(documents["openapi-engine.json"])
    assert "/v1/job/{jobId}" in engine_http["paths"]


def test_the_environment_does_not_leak_into_the_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    expected = render_documents()
    monkeypatch.setenv("PARLEY_TOPICS__JOBS", "somebody.elses.jobs")
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9093")
    monkeypatch.setenv("PARLEY_ENGINE_FAULTS_ENABLED", "true")

    assert render_documents() == expected


def test_the_check_names_a_changed_and_a_missing_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--dir", str(tmp_path)]) == 0
    assert main(["--check", "--dir", str(tmp_path)]) == 0
    (tmp_path / "openapi-engine.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "asyncapi-ingest.yaml").unlink()
    capsys.readouterr()

    assert main(["--check", "--dir", str(tmp_path)]) == 1
    assert stale_documents(tmp_path) == ["asyncapi-ingest.yaml", "openapi-engine.json"]
    assert "asyncapi-ingest.yaml, openapi-engine.json" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("service", "topic", "events"),
    [
        ("ingest", "parley.requests", {"ProcessRequested"}),
        ("job-watcher", "parley.jobs", {"JobSubmitted", "JobResolved", "JobStatusReported"}),
        ("insight-fetcher", "parley.completions", {"JobCompleted", "JobFailed"}),
    ],
)
def test_each_subscriber_documents_the_events_it_reads(service: str, topic: str, events: set[str]) -> None:
    document = yaml.safe_load(render_documents()[f"asyncapi-{service}.yaml"])
    receiving = [op for op in document["operations"].values() if op["action"] == "receive"]
    assert len(receiving) == 1
    channel = document["channels"][receiving[0]["channel"]["$ref"].rsplit("/", 1)[1]]
    assert channel["address"] == topic
    (reference,) = channel["messages"].values()
    payload = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[1]]["payload"]
    named = [payload] if "$ref" in payload else payload["oneOf"]
    assert {ref["$ref"].rsplit("/", 1)[1] for ref in named} == events
    # Every schema the document refers to is in it.
    text = json.dumps(document)
    for name in {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}:
        assert name in document["components"]["schemas"], name


def test_the_hops_document_shows_every_input_and_output_each_service_declares() -> None:
    hops = render_documents()["hops.md"]

    assert "| rebuild the idempotency ledger | read at start-up | `parley.jobs` (JobSubmitted) | — |" in hops
    assert "| submit commands | consume → produce" in hops
    assert "`POST\\|PUT /v1/process/{text,audio,video}…`" in hops
    # job-watcher writes its JobResolved markers back into its own input topic, beside its outcomes.
    watch = next(line for line in hops.splitlines() if line.startswith("| watch jobs |"))
    assert "`parley.completions` (JobCompleted \\| JobFailed)<br>`parley.jobs` (JobResolved)" in watch
    assert "`POST /webhooks/jobs`" in hops
