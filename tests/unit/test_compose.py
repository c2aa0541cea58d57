"""docker-compose.yml and the Dockerfiles, checked without a Docker engine.

No Docker engine runs where the tests run, so a broken image or compose file would only show up on someone's
machine. These tests read the files and hold them against what the code says: the Compose Specification schema,
each service's settings class, its default port, its app factory, its workspace package and that package's locked
dependency set.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.metadata
import importlib.util
import json
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema_rs
import pytest
import yaml
from parley_engine.settings import EngineSettings
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_job_watcher.settings import JobWatcherSettings
from pydantic_settings import BaseSettings

from parley_devtools.api_documents import SERVICES as API_SERVICES
from tests.support.deployment import Instruction, final_stage, only, read_dockerfile, settings_field_exists

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
VENDORED_SCHEMA = REPO / "docker" / "compose-spec.json"
# CI runs from a clone with the project's shared material beside it (../shared).
SHARED_SCHEMA = Path(__file__).resolve().parents[3] / "shared" / "schemas" / "compose-spec.json"

# The compose services built from this repository, and the settings class each one reads.
SETTINGS_BY_SERVICE: dict[str, type[BaseSettings]] = {
    "engine": EngineSettings,
    "ingest": IngestSettings,
    "job-watcher": JobWatcherSettings,
    "insight-fetcher": InsightFetcherSettings,
}
PIPELINE_SERVICES = ("ingest", "job-watcher", "insight-fetcher")


def image_environment(instructions: list[Instruction]) -> dict[str, str]:
    environment: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for word in shlex.split(instruction.arguments):
                name, _, value = word.partition("=")
                environment[name] = value
    return environment


def healthcheck_command(instructions: list[Instruction]) -> list[str]:
    arguments = only(instructions, "HEALTHCHECK").arguments
    _, _, command = arguments.partition("CMD ")
    return json.loads(command)


def uv_sync_packages(instructions: list[Instruction]) -> set[str]:
    packages: set[str] = set()
    for instruction in instructions:
        if instruction.keyword == "RUN" and "uv sync" in instruction.arguments:
            words = shlex.split(instruction.arguments)
            assert "--frozen" in words, "uv sync must install exactly what uv.lock says"
            assert "--no-dev" in words, "development tools do not belong in an image"
            packages.add(words[words.index("--package") + 1])
    return packages


def compose_environment(service: Mapping[str, Any]) -> dict[str, str]:
    """A compose service's environment, whether written as a mapping or as a list of NAME=value."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        return dict(entry.partition("=")[::2] for entry in environment)
    return {name: "" if value is None else str(value) for name, value in environment.items()}


def default_port(settings: type[BaseSettings]) -> int:
    port = settings.model_fields["http_port"].default
    assert isinstance(port, int)
    return port


def published_ports(service: Mapping[str, Any]) -> Iterator[tuple[str, int, int]]:
    """(host address, host port, container port) of each short-syntax ``ports`` entry."""
    for entry in service.get("ports", []):
        parts = str(entry).split(":")
        # Without an address, Docker publishes on every interface of the host.
        assert len(parts) == 3, f"{entry} does not name the address it is published on"
        address, host_port, container_port = parts
        yield address, int(host_port), int(container_port)


def workspace_packages() -> dict[str, Path]:
    """Workspace package name -> member directory, from the root pyproject's ``tool.uv.workspace``."""
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members: dict[str, Path] = {}
    for member in root["tool"]["uv"]["workspace"]["members"]:
        directory = REPO / member
        members[tomllib.loads((directory / "pyproject.toml").read_text())["project"]["name"]] = directory
    return members


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def locked_dependency_set(package: str) -> set[str]:
    """Every distribution ``uv sync --package <package>`` installs, following extras (markers ignored: a superset)."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    entries: dict[str, list[dict[str, Any]]] = {}
    for entry in lock["package"]:
        entries.setdefault(canonical(entry["name"]), []).append(entry)
    # (distribution, extra or None): a distribution's own requirements, or those one of its extras adds.
    visited: set[tuple[str, str | None]] = set()
    pending: list[tuple[str, str | None]] = [(canonical(package), None)]
    while pending:
        key = pending.pop()
        if key in visited:
            continue
        visited.add(key)
        name, extra = key
        for entry in entries.get(name, []):
            if extra is None:
                requirements = entry.get("dependencies", [])
            else:
                requirements = entry.get("optional-dependencies", {}).get(extra, [])
            for requirement in requirements:
                required = canonical(requirement["name"])
                pending.append((required, None))
                pending += [(required, required_extra) for required_extra in requirement.get("extra", [])]
    installed = {name for name, _ in visited}
    return installed


def imported_top_level_modules(directory: Path) -> set[str]:
    modules: set[str] = set()
    for source in directory.rglob("*.py"):
        for node in ast.walk(ast.parse(source.read_text(), filename=str(source))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.partition(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.partition(".")[0])
    return modules


def dockerignore_excludes(relative_path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parent directories decides."""
    parts = relative_path.split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        cleaned = pattern.removeprefix("!").strip("/")
        if any(fnmatch.fnmatchcase(candidate, cleaned) for candidate in candidates):
            excluded = not negated
    return excluded


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(document, dict)
    return document


def dockerfile_of(compose: Mapping[str, Any], service: str) -> Path:
    build = compose["services"][service]["build"]
    return REPO / build["context"] / build["dockerfile"]


# --- the Compose Specification ---------------------------------------------------------------------------------------


def compose_spec_validator(schema_path: Path) -> jsonschema_rs.Draft7Validator:
    return jsonschema_rs.Draft7Validator(json.loads(schema_path.read_text()))


@pytest.mark.parametrize("schema_path", [VENDORED_SCHEMA, SHARED_SCHEMA], ids=["docker/", "../shared/"])
def test_compose_file_follows_the_compose_specification(compose: dict[str, Any], schema_path: Path) -> None:
    if not schema_path.exists():
        pytest.skip(f"{schema_path} is not beside this clone")
    errors = [
        f"{'/'.join(map(str, error.instance_path))}: {error.message}"
        for error in compose_spec_validator(schema_path).iter_errors(compose)
    ]
    assert errors == []


def test_the_schema_check_refuses_what_compose_would_refuse(compose: dict[str, Any]) -> None:
    validator = compose_spec_validator(VENDORED_SCHEMA)
    misspelt = {**compose, "services": {**compose["services"], "ingest": {**compose["services"]["ingest"]}}}
    misspelt["services"]["ingest"]["depends_on_"] = ["kafka"]
    bad_condition = json.loads(json.dumps(compose))
    bad_condition["services"]["ingest"]["depends_on"]["kafka"]["condition"] = "service_ready"
    assert not validator.is_valid(misspelt)
    assert not validator.is_valid(bad_condition)


def test_the_vendored_schema_is_the_shared_one() -> None:
    if not SHARED_SCHEMA.exists():
        pytest.skip(f"{SHARED_SCHEMA} is not beside this clone")
    assert json.loads(VENDORED_SCHEMA.read_text()) == json.loads(SHARED_SCHEMA.read_text())


# --- compose: wiring -------------------------------------------------------------------------------------------------


def test_every_build_points_at_an_existing_dockerfile(compose: dict[str, Any]) -> None:
    built = {name for name, service in compose["services"].items() if "build" in service}
    assert built == set(SETTINGS_BY_SERVICE)
    for name in built:
        assert dockerfile_of(compose, name).is_file(), name


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_every_parley_variable_is_a_setting_of_its_service(compose: dict[str, Any], service: str) -> None:
    variables = [name for name in compose_environment(compose["services"][service]) if name.startswith("PARLEY_")]
    unknown = [name for name in variables if not settings_field_exists(SETTINGS_BY_SERVICE[service], name)]
    assert variables
    assert unknown == []


def test_the_settings_check_tells_fields_from_typos() -> None:
    assert settings_field_exists(IngestSettings, "PARLEY_WEBHOOK_URL")
    assert settings_field_exists(IngestSettings, "PARLEY_KAFKA__SECURITY_PROTOCOL")
    assert not settings_field_exists(IngestSettings, "PARLEY_WEBHOOK_SECRET")
    assert not settings_field_exists(IngestSettings, "PARLEY_KAFKA__NO_SUCH_FIELD")
    assert not settings_field_exists(IngestSettings, "PARLEY_HTTP_PORT__X")
    # The engine has no nested settings: the delimiter means nothing there.
    assert not settings_field_exists(EngineSettings, "PARLEY_KAFKA__SECURITY_PROTOCOL")


def test_ports_are_published_on_loopback_only(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for address, _, _ in published_ports(service):
            assert address == "127.0.0.1", name


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_each_service_listens_where_it_is_published_and_checked(compose: dict[str, Any], service: str) -> None:
    port = default_port(SETTINGS_BY_SERVICE[service])
    instructions = read_dockerfile(dockerfile_of(compose, service))
    environment = compose_environment(compose["services"][service])
    image_env = image_environment(instructions)
    command = only(final_stage(instructions), "CMD").exec_form()

    assert [(host, inside) for _, host, inside in published_ports(compose["services"][service])] == [(port, port)]
    assert only(final_stage(instructions), "EXPOSE").arguments == str(port)
    assert f"http://127.0.0.1:{port}/healthz" in " ".join(healthcheck_command(instructions))
    assert environment.get("PARLEY_HTTP_PORT", str(port)) == image_env["PARLEY_HTTP_PORT"] == str(port)
    # Inside a container, 127.0.0.1 is unreachable from the other containers and from the published port.
    assert environment.get("PARLEY_HTTP_HOST", "0.0.0.0") == image_env["PARLEY_HTTP_HOST"] == "0.0.0.0"
    if "--port" in command:
        assert command[command.index("--port") + 1] == str(port)
        assert command[command.index("--host") + 1] == "0.0.0.0"


def test_depends_on_names_services_that_report_health(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        depends_on = service.get("depends_on", {})
        for target in depends_on:
            assert target in services, f"{name} depends on unknown {target}"
            assert services.get(target, {}).get("profiles") in (None, service.get("profiles")), (
                f"{name} would not start without {target}'s profile"
            )
        if isinstance(depends_on, dict):
            for target, condition in depends_on.items():
                if condition.get("condition") == "service_healthy":
                    has_check = "healthcheck" in services[target] or (
                        "build" in services[target]
                        and any(i.keyword == "HEALTHCHECK" for i in read_dockerfile(dockerfile_of(compose, target)))
                    )
                    assert has_check, f"{name} waits for {target} to be healthy, but {target} has no health check"
    for name in PIPELINE_SERVICES:
        assert services[name]["depends_on"]["kafka"] == {"condition": "service_healthy"}


def test_pipeline_services_reach_kafka_and_the_engine_by_their_compose_names(compose: dict[str, Any]) -> None:
    services = compose["services"]
    kafka = compose_environment(services["kafka"])
    advertised = {listener.partition("://")[2] for listener in kafka["KAFKA_ADVERTISED_LISTENERS"].split(",")}
    engine_url = urlsplit(compose_environment(services["ingest"])["PARLEY_API_URL"])
    for name in PIPELINE_SERVICES:
        environment = compose_environment(services[name])
        for server in environment["PARLEY_KAFKA_BOOTSTRAP_SERVERS"].split(","):
            assert server in advertised, f"{name} bootstraps from {server}, which Kafka does not advertise"
            assert server.partition(":")[0] in services
        assert environment["PARLEY_API_URL"] == engine_url.geturl()
        # Off unless asked: without the observability profile there is no collector to export to.
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "${OTEL_EXPORTER_OTLP_ENDPOINT:-}"
    assert (engine_url.hostname, engine_url.port) == ("engine", default_port(EngineSettings))
    for setting in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert str(kafka[setting]) == "1", setting


def test_webhooks_reach_job_watcher_signed_with_the_secret_it_checks(compose: dict[str, Any]) -> None:
    from parley_job_watcher.app import create_app

    services = compose["services"]
    webhook = urlsplit(compose_environment(services["ingest"])["PARLEY_WEBHOOK_URL"])
    assert (webhook.hostname, webhook.port) == ("job-watcher", default_port(JobWatcherSettings))
    assert webhook.path in create_app(JobWatcherSettings()).openapi()["paths"]
    engine_secret = compose_environment(services["engine"])["PARLEY_WEBHOOK_SECRET"]
    assert engine_secret
    assert compose_environment(services["job-watcher"])["PARLEY_WEBHOOK_SECRET"] == engine_secret


def test_the_engine_keeps_its_data_on_a_volume(compose: dict[str, Any]) -> None:
    engine = compose["services"]["engine"]
    data_dir = compose_environment(engine)["PARLEY_ENGINE_DATA_DIR"]
    volumes = [str(volume).split(":") for volume in engine["volumes"]]
    assert [source for source, target, *_ in volumes if target == data_dir] == ["engine-data"]
    assert "engine-data" in compose["volumes"]
    assert image_environment(read_dockerfile(dockerfile_of(compose, "engine")))["PARLEY_ENGINE_DATA_DIR"] == data_dir


def test_observability_is_an_optional_profile(compose: dict[str, Any]) -> None:
    services = compose["services"]
    profiled = {name for name, service in services.items() if "observability" in service.get("profiles", [])}
    assert profiled == {"otel-collector", "jaeger", "prometheus"}
    for name in ("otel-collector", "prometheus"):
        for mount in services[name]["volumes"]:
            assert (REPO / str(mount).split(":")[0]).is_file()
    # Parley exports OTLP over HTTP, so the collector must take it on 4318, the port the docs tell users to set.
    config = yaml.safe_load((REPO / "docker" / "otel-collector.yaml").read_text())
    assert config["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    assert "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4318" in (REPO / "docker" / "README.md").read_text()


def test_prometheus_scrapes_every_service_where_it_serves(compose: dict[str, Any]) -> None:
    services = compose["services"]
    config = yaml.safe_load((REPO / "docker" / "prometheus.yml").read_text())
    (job,) = config["scrape_configs"]
    assert job["metrics_path"] == "/metrics"
    targets = {target for group in job["static_configs"] for target in group["targets"]}
    expected = set()
    for name in [*PIPELINE_SERVICES, "engine"]:
        port = compose_environment(services[name])["PARLEY_HTTP_PORT"]
        expected.add(f"{name}:{port}")
    assert targets == expected
    # ... and each of them does serve it.
    for service in API_SERVICES:
        assert "/metrics" in {getattr(route, "path", None) for route in service.build().routes}, service.name


# --- the Dockerfiles -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_the_image_command_runs_an_existing_module(compose: dict[str, Any], service: str) -> None:
    command = only(final_stage(read_dockerfile(dockerfile_of(compose, service))), "CMD").exec_form()
    if command[0] == "uvicorn":
        assert "--factory" in command
        module, _, factory = next(word for word in command[1:] if ":" in word).partition(":")
        assert callable(getattr(importlib.import_module(module), factory))
    else:
        assert command[:2] == ["python", "-m"]
        module = command[2]
        assert importlib.util.find_spec(f"{module}.__main__") is not None
    assert importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_the_image_installs_its_own_workspace_package(compose: dict[str, Any], service: str) -> None:
    instructions = read_dockerfile(dockerfile_of(compose, service))
    members = workspace_packages()
    (package,) = uv_sync_packages(instructions)
    assert package == f"parley-{service}"
    assert package in members
    command = " ".join(only(final_stage(instructions), "CMD").exec_form())
    (source_package,) = [path.name for path in members[package].iterdir() if (path / "__init__.py").is_file()]
    assert source_package in command
    copied = {shlex.split(i.arguments)[0] for i in instructions if i.keyword == "COPY" and "--from" not in i.arguments}
    assert str(members[package].relative_to(REPO) / source_package) in copied
    # Every workspace member's pyproject, or uv does not recognise the workspace.
    for directory in members.values():
        assert str(directory.relative_to(REPO) / "pyproject.toml") in copied


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_the_image_is_small_non_root_and_pinned(compose: dict[str, Any], service: str) -> None:
    instructions = read_dockerfile(dockerfile_of(compose, service))
    assert [i.arguments.split()[0] for i in instructions if i.keyword == "FROM"] == ["${PYTHON_IMAGE}"] * 2
    arguments = [i.arguments for i in instructions if i.keyword == "ARG"]
    assert arguments[0] == "PYTHON_IMAGE=python:3.11-slim"
    assert only(final_stage(instructions), "USER").arguments.partition(":")[0] not in ("", "0", "root")
    assert re.search(r'"uv==\$\{UV_VERSION\}"', " ".join(i.arguments for i in instructions if i.keyword == "RUN"))
    bootstrap_uv = re.search(r"UV_VERSION=(\S+)", (REPO / "scripts" / "bootstrap").read_text())
    assert bootstrap_uv is not None
    assert f"UV_VERSION={bootstrap_uv.group(1)}" in arguments
    assert "uv" not in " ".join(i.arguments for i in final_stage(instructions) if i.keyword == "RUN")


@pytest.mark.parametrize("service", list(SETTINGS_BY_SERVICE))
def test_the_build_context_holds_what_the_image_copies(compose: dict[str, Any], service: str) -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    instructions = read_dockerfile(dockerfile_of(compose, service))
    for copy in (i for i in instructions if i.keyword == "COPY" and "--from" not in i.arguments):
        for source in shlex.split(copy.arguments)[:-1]:
            assert (REPO / source).exists(), source
            assert not dockerignore_excludes(source, patterns), f"{source} is left out of the build context"
            for inner in (REPO / source).rglob("*.py") if (REPO / source).is_dir() else ():
                assert not dockerignore_excludes(str(inner.relative_to(REPO)), patterns), inner
    assert dockerignore_excludes(".venv/bin/python", patterns)
    assert dockerignore_excludes("shared/parley_shared/__pycache__/events.cpython-311.pyc", patterns)


@pytest.mark.parametrize(
    "service",
    [
        "engine",
        "ingest",
        "job-watcher",
        "insight-fetcher",
    ],
)
def test_the_locked_dependency_set_covers_what_the_image_imports(compose: dict[str, Any], service: str) -> None:
    """What ``uv sync --package`` installs must hold every distribution the service's code (and its command) needs.

    The dev venv has every package of the workspace, so a missing declaration passes every other test and only
    fails in the image, at start-up.
    """
    instructions = read_dockerfile(dockerfile_of(compose, service))
    (package,) = uv_sync_packages(instructions)
    installed = locked_dependency_set(package)
    members = workspace_packages()
    sources = [members[package]] + [members[name] for name in members if canonical(name) in installed]
    distributions = importlib.metadata.packages_distributions()
    needed: dict[str, str] = {}
    for directory in sources:
        for module in imported_top_level_modules(directory):
            if module in sys.stdlib_module_names or module.startswith("parley_"):
                continue
            providers = distributions.get(module)
            assert providers, f"{module} (imported under {directory.name}) comes from no installed distribution"
            needed[module] = canonical(providers[0])
    executable = only(final_stage(instructions), "CMD").exec_form()[0]
    if executable != "python":
        needed[executable] = canonical(executable)
    missing = {module: distribution for module, distribution in needed.items() if distribution not in installed}
    assert missing == {}, f"{package}'s locked dependencies lack these imports' distributions: {missing}"


COMPOSE_VARIABLE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<word>[^}]*))?\}")


class MissingVariable(Exception):
    """A ``${NAME:?message}`` whose variable is unset or empty: compose refuses to start with ``message``."""


def interpolated(value: str, variables: Mapping[str, str]) -> str:
    """``value`` as compose interpolates it from ``variables`` (``.env`` and the shell): ``${NAME}``,
    ``${NAME:-default}`` and ``${NAME:?error}``."""

    def replace(match: re.Match[str]) -> str:
        name, op, word = match["name"], match["op"], match["word"]
        current = variables.get(name, "")
        if op == ":?" and not current:
            raise MissingVariable(f"{name}: {word}")
        if op == ":-" and not current:
            return word
        return current

    return COMPOSE_VARIABLE.sub(replace, value)


def generated_env_file(tmp_path: Path) -> dict[str, str]:
    """Run scripts/compose-env in a copy of the repository layout and read the ``.env`` it writes."""
    import shutil
    import subprocess

    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "compose-env", tmp_path / "scripts" / "compose-env")
    subprocess.run([str(tmp_path / "scripts" / "compose-env")], check=True, capture_output=True)
    env_file = tmp_path / ".env"
    assert env_file.stat().st_mode & 0o077 == 0, "the secrets file is readable by its owner only"
    lines = [line for line in env_file.read_text().splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_compose_refuses_to_start_without_secrets(compose: dict[str, Any]) -> None:
    for service in ("engine", "ingest", "job-watcher"):
        environment = compose_environment(compose["services"][service])
        with pytest.raises(MissingVariable, match="scripts/compose-env"):
            for value in environment.values():
                interpolated(value, {})


@pytest.mark.parametrize("service", sorted(SETTINGS_BY_SERVICE))
def test_with_generated_secrets_every_service_starts_guarded(
    compose: dict[str, Any], service: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The settings each container reads (its image's environment, then compose's, interpolated from the
    generated .env) pass the service's own check for listening beyond loopback, with nothing left open."""
    variables = generated_env_file(tmp_path)
    assert len(set(variables.values())) == 3, "three distinct secrets"
    image = image_environment(read_dockerfile(dockerfile_of(compose, service)))
    environment = {
        name: interpolated(value, variables)
        for name, value in compose_environment(compose["services"][service]).items()
    }
    for name, value in {**image, **environment}.items():
        if name.startswith("PARLEY_"):
            monkeypatch.setenv(name, value)
    settings: Any = SETTINGS_BY_SERVICE[service]()
    assert settings.http_host == "0.0.0.0"
    assert not settings.allow_open_access and not settings.api_docs
    if service == "ingest":
        assert [key.get_secret_value() for key in settings.api_keys] == [variables["PARLEY_API_KEYS"]]
    if service in ("engine", "job-watcher"):
        assert settings.webhook_secret.get_secret_value() == variables["PARLEY_WEBHOOK_SECRET"]
    if service == "engine":
        assert settings.app_secret.get_secret_value() == variables["PARLEY_APP_SECRET"]
        webhook_url = compose_environment(compose["services"]["ingest"])["PARLEY_WEBHOOK_URL"]
        assert settings.may_call_back(webhook_url) and not settings.may_call_back("http://kafka:19092/")
