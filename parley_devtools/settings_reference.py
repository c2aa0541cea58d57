"""Generate ``docs/settings.md``: every ``PARLEY_*`` variable of every service, from the settings classes.

``python -m parley_devtools.settings_reference [--check]``; the suite fails when the page and the code drift.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def _services() -> list[tuple[str, type[BaseSettings]]]:
    from parley_engine.settings import EngineSettings
    from parley_ingest.settings import IngestSettings
    from parley_insight_fetcher.settings import InsightFetcherSettings
    from parley_job_watcher.settings import JobWatcherSettings
    from parley_shared.tracing import OtelSettings

    return [
        ("ingest", IngestSettings),
        ("job-watcher", JobWatcherSettings),
        ("insight-fetcher", InsightFetcherSettings),
        ("engine", EngineSettings),
        ("tracing (every service and the engine; the standard OpenTelemetry variables)", OtelSettings),
    ]


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        return "(computed)"
    value = field.default
    if value is None:
        return "none"
    if hasattr(value, "get_secret_value"):
        return "(development default)"
    if isinstance(value, BaseModel):
        return "(see below)"
    return f"`{value}`"


def _rows(prefix: str, model: type[BaseModel]) -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows += _rows(f"{prefix}{name.upper()}__", annotation)
            continue
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append((f"`{prefix}{name.upper()}`", description, _default(field)))
    return rows


def render() -> str:
    lines = [
        "# Settings reference",
        "",
        "Generated from the settings classes by `python -m parley_devtools.settings_reference`; do not edit by hand.",
        "Every service reads `PARLEY_*` environment variables (pydantic-settings); nested settings use `__`.",
        "Defaults marked *(computed)* depend on the machine (host name, CPU count, home directory).",
        "",
    ]
    for service, settings_class in _services():
        prefix = str(settings_class.model_config.get("env_prefix", "")).upper()
        lines += [f"## {service}", "", "| variable | meaning | default |", "|---|---|---|"]
        lines += [f"| {name} | {meaning} | {default} |" for name, meaning, default in _rows(prefix, settings_class)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if docs/settings.md differs from the code")
    args = parser.parse_args(argv)
    page = render()
    if args.check:
        if not PAGE.exists() or PAGE.read_text() != page:
            print(f"{PAGE} is out of date: run python -m parley_devtools.settings_reference", file=sys.stderr)
            return 1
        return 0
    PAGE.parent.mkdir(parents=True, exist_ok=True)
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
