"""The committed API documents, generated from the code: AsyncAPI for each service's topics, OpenAPI for each HTTP API.

Run: ``.venv/bin/python -m parley_devtools.api_documents`` writes them to ``docs/api/``; ``--check`` writes nothing
and exits 1 naming the files that no longer match the code (the unit test ``tests/unit/test_api_documents.py`` runs
the same check, so CI fails when code and documents drift).

Each app is built by its own ``create_app`` and never started: no broker, provider, database or model is touched.
Settings are the code's defaults, whatever ``PARLEY_*`` variables the shell has, and every document is written with
sorted keys, so a re-run produces identical bytes.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from fastapi import FastAPI
from faststream.specification import AsyncAPI
from parley_engine.app import create_app as create_engine_app
from parley_engine.faults import FaultSettings
from parley_engine.settings import EngineSettings
from parley_ingest.app import create_app as create_ingest_app
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.app import create_app as create_insight_fetcher_app
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_job_watcher.app import create_app as create_job_watcher_app
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.kafka.hops import Declarations, Feed, HttpInput, Stream, Transform
from pydantic import TypeAdapter
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

REPO_ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS_DIR = REPO_ROOT / "docs" / "api"
# Replaces the host name default, which would otherwise differ from machine to machine (it is not in the documents
# today, but nothing should depend on that staying so).
INSTANCE_ID = "api-documents"

SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def code_defaults(settings_class: type[SettingsT], **values: Any) -> SettingsT:
    """Settings from the code alone: a developer's ``PARLEY_TOPICS__JOBS`` must not leak into a committed document."""

    class CodeDefaults(settings_class):  # type: ignore[valid-type,misc]
        @classmethod
        def settings_customise_sources(
            cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, **_: Any
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            return (init_settings,)

    settings: SettingsT = CodeDefaults(**values)
    return settings


@dataclass(frozen=True)
class Service:
    """One deployable: the stem of its document names and how to build its app without starting it."""

    name: str
    build: Callable[[], FastAPI]
    has_topics: bool = True


SERVICES: tuple[Service, ...] = (
    Service("ingest", lambda: create_ingest_app(code_defaults(IngestSettings, instance_id=INSTANCE_ID))),
    Service("job-watcher", lambda: create_job_watcher_app(code_defaults(JobWatcherSettings, instance_id=INSTANCE_ID))),
    Service(
        "insight-fetcher",
        lambda: create_insight_fetcher_app(code_defaults(InsightFetcherSettings, instance_id=INSTANCE_ID)),
    ),
    # The engine's analyzer and recognizer are built in its lifespan, which never runs here: no model is loaded.
    Service(
        "engine",
        lambda: create_engine_app(code_defaults(EngineSettings), fault_settings=code_defaults(FaultSettings)),
        has_topics=False,
    ),
)


def _json_text(document: Any) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _yaml_text(document: Any) -> str:
    return yaml.safe_dump(document, sort_keys=True, allow_unicode=True, width=120)


def asyncapi_document(app: FastAPI) -> dict[str, Any]:
    """faststream's AsyncAPI 3.0 document of the app's broker: the topics it consumes and the ones it declares."""
    specification = AsyncAPI(app.state.broker, title=app.title, version=app.version).to_specification()
    document: dict[str, Any] = specification.to_jsonable()
    declarations: Declarations = app.state.declarations
    describe_consumed_events(document, {stream.topic: stream.events for stream in declarations.consumed()})
    return document


def describe_consumed_events(document: dict[str, Any], consumed_events: Mapping[str, Any]) -> None:
    """Give each subscriber's message the schema of the events its hop declares it reads.

    Parley's subscribers take raw records so that they can dead-letter unreadable ones, which leaves faststream with
    an empty payload for them; the hop's declaration names the event types instead.
    """
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    receiving = [
        operation["channel"]["$ref"].rsplit("/", 1)[1]
        for operation in document.get("operations", {}).values()
        if operation.get("action") == "receive"
    ]
    for channel in (document["channels"][name] for name in receiving):
        event_type = consumed_events.get(channel.get("address"))
        if event_type is None:
            continue
        schema = TypeAdapter(event_type).json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        if "title" in schema and "properties" in schema:  # a single model: refer to it like faststream does
            schemas[schema["title"]] = schema
            schema = {"$ref": f"#/components/schemas/{schema['title']}"}
        for reference in channel.get("messages", {}).values():
            message = document["components"]["messages"][reference["$ref"].rsplit("/", 1)[1]]
            message["payload"] = schema
    if "#/components/schemas/EmptyPayload" not in json.dumps(document):
        schemas.pop("EmptyPayload", None)  # faststream's placeholder, now that no message refers to it


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _streams(streams: Sequence[Stream[Any]]) -> str:
    return "<br>".join(_cell(f"`{s.topic}` ({s.event_names})") for s in streams) or "—"


def hops_document(declarations: Sequence[Declarations]) -> str:
    """``hops.md``: each service's hops as its composition root declares them, in declaration order."""
    lines = [
        "# Hops: what each pipeline service reads and writes",
        "",
        "Generated from the hop declarations in each service's `app.py` by",
        "`.venv/bin/python -m parley_devtools.api_documents`; do not edit by hand.",
    ]
    for declared in declarations:
        lines += ["", f"## {declared.service}", "", "| hop | kind | reads | writes |", "|---|---|---|---|"]
        for hop in declared.hops:
            if isinstance(hop, Transform):
                kind, reads = "consume → produce, one transaction per batch", _streams([hop.consumes])
            elif isinstance(hop, Feed):
                kind, reads = f"consume; offsets committed {hop.commits}", _streams([hop.consumes])
            elif isinstance(hop, HttpInput):
                kind, reads = "HTTP", _cell(f"`{hop.name}`: {hop.description}")
            else:
                kind, reads = "read at start-up", _streams([hop.consumes])
            name = "HTTP input" if isinstance(hop, HttpInput) else hop.name
            writes = _streams(getattr(hop, "produces", ()))
            lines.append(f"| {name} | {kind} | {reads} | {writes} |")
    return "\n".join(lines) + "\n"


def render_documents() -> dict[str, str]:
    """File name under ``docs/api/`` → its exact text, for every service."""
    documents: dict[str, str] = {}
    declarations: list[Declarations] = []
    for service in SERVICES:
        app = service.build()
        documents[f"openapi-{service.name}.json"] = _json_text(app.openapi())
        if service.has_topics:
            documents[f"asyncapi-{service.name}.yaml"] = _yaml_text(asyncapi_document(app))
            declarations.append(app.state.declarations)
    documents["hops.md"] = hops_document(declarations)
    return documents


def stale_documents(directory: Path = DOCUMENTS_DIR) -> list[str]:
    """Names of the documents in ``directory`` that are missing or differ from what the code generates now."""
    return sorted(
        name
        for name, text in render_documents().items()
        if not (directory / name).is_file() or (directory / name).read_text(encoding="utf-8") != text
    )


def write_documents(directory: Path = DOCUMENTS_DIR) -> list[str]:
    """Write every document; return the names of those whose content changed."""
    directory.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, text in render_documents().items():
        path = directory / name
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            changed.append(name)
    return sorted(changed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a document is out of date")
    parser.add_argument("--dir", type=Path, default=DOCUMENTS_DIR, help="where the documents live (docs/api)")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_documents(args.dir)
        if stale:
            print(f"API documents out of date with the code in {args.dir}: {', '.join(stale)}", file=sys.stderr)
            print("regenerate them with: .venv/bin/python -m parley_devtools.api_documents", file=sys.stderr)
            return 1
        print(f"API documents in {args.dir} match the code")
        return 0
    changed = write_documents(args.dir)
    print(f"wrote {', '.join(changed)}" if changed else f"API documents in {args.dir} already match the code")
    return 0


if __name__ == "__main__":
    sys.exit(main())
