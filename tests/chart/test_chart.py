"""The Helm chart in charts/parley, checked without a cluster.

Helm (the version scripts/install-helm pins, in .tools/bin) lints the chart and renders it with several value sets.
Every rendered manifest is validated against the Kubernetes schemas kubernetes-validate bundles (strict: unknown
fields are errors) and the KEDA resources against KEDA's CRD schemas (tests/chart/schemas). Then the rendered objects
are held against the code: every PARLEY_* variable is a field of the service's settings class and loads there, ports,
probes and commands match the apps and docker/*.Dockerfile, KEDA reads the consumer groups and topics the services
really use, and the pods outlast the services' own shutdown.
"""

from __future__ import annotations

import base64
import copy
import functools
import json
import os
import re
import subprocess
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml
from fastapi import FastAPI
from parley_engine.app import create_app as create_engine
from parley_engine.settings import EngineSettings
from parley_ingest.app import create_app as create_ingest
from parley_ingest.settings import IngestSettings
from parley_insight_fetcher.app import create_app as create_insight_fetcher
from parley_insight_fetcher.settings import InsightFetcherSettings
from parley_job_watcher.app import create_app as create_job_watcher
from parley_job_watcher.settings import JobWatcherSettings
from parley_shared.settings import TopicNames
from parley_shared.tracing import OtelSettings
from pydantic_settings import BaseSettings

from tests.support.deployment import final_stage, only, read_dockerfile, settings_field_exists

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "parley"
HELM = REPO / ".tools" / "bin" / "helm"
VALUE_SETS_DIR = Path(__file__).parent / "values"
SCHEMAS_DIR = Path(__file__).parent / "schemas"
RELEASE = "parley"
NAMESPACE = "parley"
# What `helm template` tells the chart about the cluster, and the schemas every manifest must satisfy: the oldest
# Kubernetes the chart's kubeVersion admits and the newest kubernetes-validate bundles.
KUBE_VERSION = "1.37.0"
VALIDATED_KUBERNETES_VERSIONS = ("1.30", "1.37")

VALUE_SETS = ["defaults", *sorted(path.stem for path in VALUE_SETS_DIR.glob("*.yaml"))]

SETTINGS_BY_SERVICE: dict[str, type[BaseSettings]] = {
    "engine": EngineSettings,
    "ingest": IngestSettings,
    "job-watcher": JobWatcherSettings,
    "insight-fetcher": InsightFetcherSettings,
}
APP_FACTORIES = {
    "engine": lambda: create_engine(EngineSettings()),
    "ingest": lambda: create_ingest(IngestSettings()),
    "job-watcher": lambda: create_job_watcher(JobWatcherSettings()),
    "insight-fetcher": lambda: create_insight_fetcher(InsightFetcherSettings()),
}
PIPELINE_SERVICES = ("ingest", "job-watcher", "insight-fetcher")
# The keys values.yaml documents for secrets.existingSecret.
SECRET_KEYS = {
    "app-secret",
    "webhook-secret",
    "kafka-sasl-password",
    "database-url",
    "ingest-api-keys",
    "job-watcher-api-keys",
}


# --- running Helm ----------------------------------------------------------------------------------------------------


def helm_binary() -> Path:
    if not HELM.is_file():
        pytest.fail(f"{HELM.relative_to(REPO)} is missing: run scripts/install-helm (it builds the pinned Helm)")
    return HELM


def run_helm(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(helm_binary()), *arguments], capture_output=True, text=True, timeout=120, check=False, cwd=REPO
    )


def value_arguments(value_set: str | None, overrides: Mapping[str, Any] | None = None) -> list[str]:
    arguments: list[str] = []
    if value_set not in (None, "defaults"):
        arguments += ["--values", str(VALUE_SETS_DIR / f"{value_set}.yaml")]
    for name, value in (overrides or {}).items():
        if isinstance(value, str):
            arguments += ["--set-string", f"{name}={value}"]
        else:
            arguments += ["--set", f"{name}={json.dumps(value)}"]  # true, 0: YAML scalars as Helm parses them
    return arguments


def template(value_set: str | None, overrides: Mapping[str, Any] | None = None) -> subprocess.CompletedProcess[str]:
    return run_helm(
        "template",
        RELEASE,
        str(CHART),
        "--namespace",
        NAMESPACE,
        "--kube-version",
        KUBE_VERSION,
        *value_arguments(value_set, overrides),
    )


class Manifests:
    """The documents one `helm template` rendered, and lookups the tests share."""

    def __init__(self, documents: list[dict[str, Any]]) -> None:
        self.documents = documents

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [document for document in self.documents if document["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        (found,) = [document for document in self.of_kind(kind) if document["metadata"]["name"] == name]
        return found

    def deployments(self) -> dict[str, dict[str, Any]]:
        """The workload (the engine's Deployment, the pipeline's StatefulSets) by the service it runs."""
        return {
            document["metadata"]["labels"]["app.kubernetes.io/component"]: document
            for document in self.of_kind("Deployment") + self.of_kind("StatefulSet")
        }

    def environment(self, service: str) -> dict[str, str]:
        """What the service's container sees: its ConfigMap (envFrom), then its env entries.

        Secret references are resolved from the rendered Secret, or to ``<secret>/<key>`` when the Secret is the
        user's own; a field reference becomes ``<fieldPath>``.
        """
        container = only_container(self.deployments()[service])
        environment: dict[str, str] = {}
        for source in container.get("envFrom", []):
            environment.update(self.named("ConfigMap", source["configMapRef"]["name"])["data"])
        for entry in container.get("env", []):
            if "value" in entry:
                environment[entry["name"]] = entry["value"]
                continue
            reference = entry["valueFrom"]
            if "fieldRef" in reference:
                environment[entry["name"]] = f"<{reference['fieldRef']['fieldPath']}>"
            else:
                environment[entry["name"]] = self.secret_value(reference["secretKeyRef"])
        return environment

    def secret_value(self, reference: Mapping[str, Any]) -> str:
        secrets = [document for document in self.of_kind("Secret") if document["metadata"]["name"] == reference["name"]]
        if not secrets:
            return f"<{reference['name']}/{reference['key']}>"
        return base64.b64decode(secrets[0]["data"][reference["key"]]).decode()

    def secret_references(self, service: str) -> dict[str, dict[str, Any]]:
        """Variable name -> secretKeyRef of the service's container."""
        return {
            entry["name"]: entry["valueFrom"]["secretKeyRef"]
            for entry in only_container(self.deployments()[service]).get("env", [])
            if "secretKeyRef" in entry.get("valueFrom", {})
        }


def only_container(deployment: Mapping[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def parse(rendered: str) -> list[dict[str, Any]]:
    return [document for document in yaml.safe_load_all(rendered) if document]


@functools.cache
def rendered_value_set(value_set: str) -> Manifests:
    result = template(value_set)
    assert result.returncode == 0, result.stderr
    return Manifests(parse(result.stdout))


def render(value_set: str | None = None, overrides: Mapping[str, Any] | None = None) -> Manifests:
    result = template(value_set, overrides)
    assert result.returncode == 0, result.stderr
    return Manifests(parse(result.stdout))


def render_error(value_set: str | None = None, overrides: Mapping[str, Any] | None = None) -> str:
    result = template(value_set, overrides)
    assert result.returncode != 0, f"rendered although it should not: {overrides}"
    return result.stderr


def values_file() -> dict[str, Any]:
    document = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(document, dict)
    return document


@functools.cache
def app_paths(service: str) -> frozenset[str]:
    """The HTTP paths the service's app serves, documented or not (/metrics is left out of OpenAPI)."""
    app: FastAPI = APP_FACTORIES[service]()
    routes = {path for route in app.routes if isinstance(path := getattr(route, "path", None), str)}
    return frozenset(set(app.openapi()["paths"]) | routes)


def dockerfile_command(service: str) -> list[str]:
    return only(final_stage(read_dockerfile(REPO / "docker" / f"{service}.Dockerfile")), "CMD").exec_form()


def dockerfile_user(service: str) -> int:
    user = only(final_stage(read_dockerfile(REPO / "docker" / f"{service}.Dockerfile")), "USER").arguments
    return int(user.partition(":")[0])


def dockerfile_port(service: str) -> int:
    return int(only(final_stage(read_dockerfile(REPO / "docker" / f"{service}.Dockerfile")), "EXPOSE").arguments)


# --- the tools -------------------------------------------------------------------------------------------------------


def test_helm_is_the_pinned_version() -> None:
    pinned = re.search(r"^HELM_VERSION=(\S+)$", (REPO / "scripts" / "install-helm").read_text(), re.MULTILINE)
    assert pinned is not None
    result = run_helm("version", "--template", "{{.Version}}")
    assert result.stdout.strip() == pinned.group(1)


def test_the_tools_directory_stays_out_of_git() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "--quiet", ".tools/bin/helm"], cwd=REPO, check=False, timeout=30
    ).returncode
    assert ignored == 0


# --- lint and schemas ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_helm_lint_strict_passes(value_set: str) -> None:
    # Lint renders NOTES.txt too, which `helm template` leaves out.
    result = run_helm("lint", "--strict", str(CHART), "--kube-version", KUBE_VERSION, *value_arguments(value_set))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "[WARNING]" not in result.stdout and "[ERROR]" not in result.stdout, result.stdout


def closed(schema: Any) -> Any:
    """A CRD schema with every object that lists its properties closed to others.

    The API server prunes unknown fields from custom resources (kubectl --validate=strict refuses them); in a JSON
    schema they pass unless the object says additionalProperties: false.
    """
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: closed(value) for key, value in schema.items()}
    if "properties" in result and "additionalProperties" not in result:
        result["additionalProperties"] = False
    return result


@functools.cache
def custom_resource_validators() -> dict[tuple[str, str], jsonschema.Draft7Validator]:
    validators = {}
    for kind, file in (
        ("ScaledObject", "keda-scaledobject.json"),
        ("TriggerAuthentication", "keda-triggerauthentication.json"),
    ):
        schema = closed(json.loads((SCHEMAS_DIR / file).read_text()))
        validators[("keda.sh/v1alpha1", kind)] = jsonschema.Draft7Validator(schema)
    return validators


def schema_errors(document: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Why the Kubernetes API (with the KEDA CRDs installed) would refuse the document; empty when it would not."""
    where = f"{document['kind']}/{document['metadata']['name']}"
    validator = custom_resource_validators().get((document["apiVersion"], document["kind"]))
    if validator is not None:
        errors = [f"{where}: {error.json_path}: {error.message}" for error in validator.iter_errors(document)]
        # A custom resource's metadata is an ObjectMeta like any other: check it as a ConfigMap's.
        return errors + schema_errors(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": document["metadata"]}, kubernetes_version
        )
    try:
        kubernetes_validate.validate(document, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        return [f"{where}: {'/'.join(map(str, error.path))}: {error.message}"]
    return []


@pytest.mark.parametrize("kubernetes_version", VALIDATED_KUBERNETES_VERSIONS)
@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_manifest_follows_the_kubernetes_schemas(value_set: str, kubernetes_version: str) -> None:
    manifests = rendered_value_set(value_set)
    assert manifests.deployments()
    errors = [error for document in manifests.documents for error in schema_errors(document, kubernetes_version)]
    assert errors == []


def test_the_schema_checks_refuse_what_the_api_server_would() -> None:
    manifests = rendered_value_set("sasl-tls-existing-secret")
    deployment = copy.deepcopy(manifests.deployments()["ingest"])
    deployment["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    scaled = copy.deepcopy(manifests.of_kind("ScaledObject")[0])
    scaled["spec"]["triggers"][0]["metadata"]["lagThreshold"] = 50  # KEDA wants strings
    misspelt = copy.deepcopy(manifests.of_kind("ScaledObject")[0])
    misspelt["spec"]["minReplicas"] = 1
    authentication = copy.deepcopy(manifests.of_kind("TriggerAuthentication")[0])
    authentication["spec"]["env"][0].pop("parameter")
    bad_metadata = copy.deepcopy(manifests.of_kind("ScaledObject")[0])
    bad_metadata["metadata"]["lables"] = bad_metadata["metadata"].pop("labels")
    for document in (deployment, scaled, misspelt, authentication, bad_metadata):
        assert schema_errors(document, VALIDATED_KUBERNETES_VERSIONS[-1]), document["kind"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"ingest.replicas": "two"}, "replicas"),
        ({"engine.replicas": 0}, "replicas"),
        ({"kafka.securityProtocol": "SASL"}, "securityProtocol"),
        ({"kafka.sasl.mechanism": "GSSAPI"}, "mechanism"),
        ({"kafka.bootstrapServers": "kafka"}, "bootstrapServers"),
        ({"engine.database.type": "mysql"}, "type"),
        ({"logLevel": "verbose"}, "logLevel"),
        ({"ingest.config.KAFKA_TIMEOUT": "1"}, "KAFKA_TIMEOUT"),
        ({"secrets.ingestApiKeys[0]": "two keys"}, "ingestApiKeys"),
        ({"shutdown.graceSeconds": 0}, "graceSeconds"),
        ({"ingest.groupIdd": "x"}, "groupIdd"),
        ({"topics.requests": "bad topic"}, "requests"),
    ],
)
def test_the_values_schema_refuses_bad_values(overrides: dict[str, Any], field: str) -> None:
    error = render_error(overrides=overrides)
    assert "values don't meet the specifications of the schema" in error
    assert field in error


@pytest.mark.parametrize(
    ("value_set", "overrides", "hint"),
    [
        (None, {"keda.enabled": True, "autoscaling.enabled": True}, "keda.enabled and autoscaling.enabled"),
        ("keda", {"autoscaling.enabled": True}, "enable one of them"),
        (None, {"engine.enabled": False}, "provider.url is required"),
        (None, {"engine.enabled": False, "provider.url": "https://api.example.com"}, "secrets.appSecret is required"),
        (None, {"engine.replicas": 2}, "needs engine.database.type postgres"),
        ("postgres-engine", {"engine.persistence.accessModes[0]": "ReadWriteOnce"}, "shared media volume"),
        (None, {"engine.database.type": "postgres"}, "secrets.databaseUrl is required"),
        (None, {"kafka.securityProtocol": "SASL_SSL"}, "kafka.sasl.mechanism is required"),
        (None, {"kafka.sasl.mechanism": "PLAIN", "kafka.sasl.username": "u"}, "needs kafka.securityProtocol"),
        (
            None,
            {"kafka.securityProtocol": "SASL_SSL", "kafka.sasl.mechanism": "PLAIN", "kafka.sasl.username": "u"},
            "secrets.kafkaSaslPassword is required",
        ),
        (None, {"kafka.tls.secretName": "ca"}, "needs kafka.securityProtocol SSL"),
        ("external-provider", {"kafka.tls.certKey": "tls.crt"}, "go together"),
        (None, {"ingest.minReplicas": 4, "ingest.maxReplicas": 2}, "ingest.minReplicas is above"),
    ],
)
def test_contradictory_values_stop_with_a_hint(value_set: str | None, overrides: dict[str, Any], hint: str) -> None:
    assert hint in render_error(value_set, overrides)


# --- settings: every variable is real and loads ----------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_variable_is_a_setting_of_its_service(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    for service in manifests.deployments():
        variables = manifests.environment(service)
        parley = [name for name in variables if name.startswith("PARLEY_")]
        unknown = [name for name in parley if not settings_field_exists(SETTINGS_BY_SERVICE[service], name)]
        others = [name for name in variables if not name.startswith("PARLEY_")]
        assert parley
        assert unknown == [], service
        assert [name for name in others if not settings_field_exists(OtelSettings, name)] == [], service


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_the_rendered_environment_loads_into_each_service(value_set: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The variables parse (types, literals, bounds) and mean what the chart intends."""
    manifests = rendered_value_set(value_set)
    for service, deployment in manifests.deployments().items():
        environment = manifests.environment(service)
        with monkeypatch.context() as patch:
            for name in [name for name in os.environ if name.startswith(("PARLEY_", "OTEL_"))]:
                patch.delenv(name)
            for name, value in environment.items():
                patch.setenv(name, value)
            settings: Any = SETTINGS_BY_SERVICE[service]()
            otel = OtelSettings()
        port = only_container(deployment)["ports"][0]["containerPort"]
        assert (settings.http_host, settings.http_port) == ("0.0.0.0", port)
        if otel.exporter_otlp_endpoint:
            assert otel.service_name == f"parley-{service}"
        if service == "engine":
            assert str(settings.engine_data_dir) == data_mount(deployment)
            continue
        assert settings.instance_id == "<metadata.name>"
        assert settings.provider.url == environment["PARLEY_PROVIDER__URL"]
        assert settings.provider.app_secret.get_secret_value() == environment["PARLEY_PROVIDER__APP_SECRET"]
        assert settings.group_id == environment["PARLEY_GROUP_ID"]


def data_mount(deployment: Mapping[str, Any]) -> str:
    (mount,) = [mount for mount in only_container(deployment)["volumeMounts"] if mount["name"] == "data"]
    return str(mount["mountPath"])


# --- images, commands, ports, probes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_each_container_runs_its_image_as_the_dockerfile_does(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    values = values_file()
    for service, deployment in manifests.deployments().items():
        container = only_container(deployment)
        image = container["image"]
        assert re.fullmatch(rf"([^:]+/)?parley-{service}:[\w.-]+", image), image
        if value_set == "defaults":
            assert image == f"parley-{service}:{yaml.safe_load((CHART / 'Chart.yaml').read_text())['appVersion']}"
        expected = dockerfile_command(service)
        command = container["command"]
        if "--timeout-graceful-shutdown" in expected:
            # The one intended difference: uvicorn's grace follows shutdown.graceSeconds.
            at = expected.index("--timeout-graceful-shutdown") + 1
            assert command[:at] + command[at + 1 :] == expected[:at] + expected[at + 1 :]
        else:
            assert command == expected
        port = dockerfile_port(service)
        assert container["ports"] == [{"name": "http", "containerPort": port, "protocol": "TCP"}]
        assert port == SETTINGS_BY_SERVICE[service].model_fields["http_port"].default
        assert values["podSecurityContext"]["runAsUser"] == dockerfile_user(service)


def test_one_service_can_be_upgraded_ahead_of_the_others() -> None:
    images = {
        service: only_container(deployment)["image"]
        for service, deployment in render("keda", {"insightFetcher.imageTag": "0.2.0"}).deployments().items()
    }
    assert images["insight-fetcher"] == "registry.example.com/parley/parley-insight-fetcher:0.2.0"
    assert images["ingest"] == "registry.example.com/parley/parley-ingest:0.1.0"


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_probes_ask_the_apps_health_endpoints(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    for service, deployment in manifests.deployments().items():
        container = only_container(deployment)
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
            assert container[probe]["httpGet"]["path"] in app_paths(service), (service, probe)
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        if annotations.get("prometheus.io/scrape") == "true":
            assert annotations["prometheus.io/path"] in app_paths(service)
            assert int(annotations["prometheus.io/port"]) == container["ports"][0]["containerPort"]
    engine = manifests.deployments().get("engine")
    if engine is not None:
        startup = only_container(engine)["startupProbe"]
        # At least the start period the image's HEALTHCHECK allows (120 s): a migration may run first.
        assert startup["periodSeconds"] * startup["failureThreshold"] >= 120


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_outlast_the_services_own_shutdown(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    for service in PIPELINE_SERVICES:
        deployment = manifests.deployments()[service]
        drain = float(manifests.environment(service)["PARLEY_SHUTDOWN_GRACE_SECONDS"])
        command = only_container(deployment)["command"]
        http_grace = float(command[command.index("--timeout-graceful-shutdown") + 1])
        grace_period = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        # uvicorn drains HTTP requests first, then the app's shutdown drains the in-flight batches.
        assert http_grace > drain
        assert grace_period > http_grace + drain, service


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_pods_run_unprivileged_on_a_read_only_root(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    for service, deployment in manifests.deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        container = only_container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == dockerfile_user(service)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]]
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


# --- wiring between the objects --------------------------------------------------------------------------------------


def selects(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_services_and_budgets_select_exactly_their_deployments_pods(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    deployments = manifests.deployments()
    pod_labels = {service: d["spec"]["template"]["metadata"]["labels"] for service, d in deployments.items()}
    for service, deployment in deployments.items():
        assert selects(deployment["spec"]["selector"]["matchLabels"], pod_labels[service])
    for kind, selector_of in (
        ("PodDisruptionBudget", lambda document: document["spec"]["selector"]["matchLabels"]),
        ("Service", lambda document: document["spec"]["selector"]),
    ):
        covered = []
        for document in manifests.of_kind(kind):
            matched = [service for service, labels in pod_labels.items() if selects(selector_of(document), labels)]
            assert len(matched) == 1, f"{kind} {document['metadata']['name']} selects {matched}"
            covered += matched
        assert sorted(covered) == sorted(deployments), kind
    for document in manifests.of_kind("Service"):
        (port,) = document["spec"]["ports"]
        component = document["metadata"]["labels"]["app.kubernetes.io/component"]
        assert port["targetPort"] == "http"
        assert port["port"] == only_container(deployments[component])["ports"][0]["containerPort"]


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_every_reference_names_an_object_of_the_release(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    values = yaml.safe_load((VALUE_SETS_DIR / f"{value_set}.yaml").read_text()) if value_set != "defaults" else {}
    existing_secret = values.get("secrets", {}).get("existingSecret")
    external = {existing_secret, values.get("kafka", {}).get("tls", {}).get("secretName")} - {None}
    secrets = {document["metadata"]["name"] for document in manifests.of_kind("Secret")}
    for service, deployment in manifests.deployments().items():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] in {d["metadata"]["name"] for d in manifests.of_kind("ServiceAccount")}
        for reference in manifests.secret_references(service).values():
            assert reference["name"] in secrets | external
            assert reference["key"] in SECRET_KEYS
            if reference["name"] == existing_secret:
                continue
            if not reference.get("optional"):
                assert reference["key"] in manifests.named("Secret", reference["name"])["data"]
        for volume in pod["volumes"]:
            if "persistentVolumeClaim" in volume:
                manifests.named("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"])
            if "secret" in volume:
                assert volume["secret"]["secretName"] in external
    for kind in ("ScaledObject", "HorizontalPodAutoscaler"):
        for document in manifests.of_kind(kind):
            target = document["spec"]["scaleTargetRef"]
            assert (target["apiVersion"], target["kind"]) == ("apps/v1", "StatefulSet")
            manifests.named("StatefulSet", target["name"])


def test_the_values_file_in_the_kubernetes_guide_installs(tmp_path: Path) -> None:
    guide = (REPO / "docs" / "kubernetes.md").read_text()
    example = re.search(r"\(`my-values.yaml`\):\n\n```yaml\n(.*?)```", guide, re.DOTALL)
    assert example is not None, "docs/kubernetes.md lost its example values file"
    values = tmp_path / "my-values.yaml"
    values.write_text(example.group(1))
    result = run_helm("template", RELEASE, str(CHART), "--kube-version", KUBE_VERSION, "--values", str(values))
    assert result.returncode == 0, result.stderr
    manifests = Manifests(parse(result.stdout))
    assert [error for document in manifests.documents for error in schema_errors(document, "1.37")] == []
    assert manifests.environment("ingest")["PARLEY_KAFKA__SECURITY_PROTOCOL"] == "SASL_SSL"


def test_the_documented_secret_keys_are_the_ones_the_chart_reads() -> None:
    documented = set(re.findall(r"^\s*#\s+([a-z-]+)\s{2,}", (CHART / "values.yaml").read_text(), re.MULTILINE))
    assert documented == SECRET_KEYS


def test_ingest_gives_the_provider_job_watchers_webhook_and_everyone_the_engine() -> None:
    manifests = rendered_value_set("defaults")
    webhook = urlsplit(manifests.environment("ingest")["PARLEY_WEBHOOK_URL"])
    watcher = manifests.named("Service", webhook.hostname or "")
    assert watcher["metadata"]["labels"]["app.kubernetes.io/component"] == "job-watcher"
    assert webhook.port == watcher["spec"]["ports"][0]["port"]
    assert webhook.path in app_paths("job-watcher")
    for service in PIPELINE_SERVICES:
        engine = urlsplit(manifests.environment(service)["PARLEY_PROVIDER__URL"])
        assert manifests.named("Service", engine.hostname or "")["spec"]["ports"][0]["port"] == engine.port
    # The engine signs callbacks with the secret job-watcher checks, and accepts the appSecret the pipeline sends.
    watcher_secret = manifests.secret_references("job-watcher")["PARLEY_WEBHOOK_SECRET"]
    engine_references = manifests.secret_references("engine")
    assert engine_references["PARLEY_WEBHOOK_SECRET"] == watcher_secret
    for service in PIPELINE_SERVICES:
        assert (
            manifests.secret_references(service)["PARLEY_PROVIDER__APP_SECRET"]
            == engine_references["PARLEY_APP_SECRET"]
        )
    assert (
        manifests.environment("engine")["PARLEY_APP_ID"] == manifests.environment("ingest")["PARLEY_PROVIDER__APP_ID"]
    )
    generated = manifests.environment("engine")
    assert len(generated["PARLEY_APP_SECRET"]) >= 32 and len(generated["PARLEY_WEBHOOK_SECRET"]) >= 32
    # The engine calls back this release's job-watcher although it is not a public address, and nothing else.
    assert generated["PARLEY_TRUSTED_WEBHOOK_URLS"] == manifests.environment("ingest")["PARLEY_WEBHOOK_URL"]


def test_an_external_provider_replaces_the_engine() -> None:
    manifests = rendered_value_set("external-provider")
    assert "engine" not in manifests.deployments()
    assert not manifests.of_kind("PersistentVolumeClaim")
    for service in PIPELINE_SERVICES:
        environment = manifests.environment(service)
        assert environment["PARLEY_PROVIDER__URL"] == "https://api.symbl.ai"
        assert environment["PARLEY_PROVIDER__APP_SECRET"] == "my-symbl-app-secret"
    # The provider cannot reach a cluster-internal callback URL: job-watcher polls, and refuses callbacks not signed
    # with its (generated) secret.
    assert "PARLEY_WEBHOOK_URL" not in manifests.environment("ingest")
    assert len(manifests.environment("job-watcher")["PARLEY_WEBHOOK_SECRET"]) >= 32


def test_api_keys_reach_ingest_and_job_watcher() -> None:
    manifests = rendered_value_set("hpa")
    assert manifests.environment("ingest")["PARLEY_API_KEYS"] == "ingest-key-one,ingest-key-two"
    assert manifests.environment("job-watcher")["PARLEY_API_KEYS"] == "status-key"
    # Secure by default: without keys of yours, each API gets a generated one, and they differ.
    defaults = rendered_value_set("defaults")
    generated = [defaults.environment(service)["PARLEY_API_KEYS"] for service in ("ingest", "job-watcher")]
    assert all(len(key) >= 32 for key in generated) and generated[0] != generated[1]


def test_an_existing_secret_and_tls_files_are_wired_in() -> None:
    manifests = rendered_value_set("sasl-tls-existing-secret")
    assert not manifests.of_kind("Secret")
    for service in PIPELINE_SERVICES:
        references = manifests.secret_references(service)
        assert {reference["name"] for reference in references.values()} == {"parley-credentials"}
        assert references["PARLEY_KAFKA__SASL_PASSWORD"]["key"] == "kafka-sasl-password"
        container = only_container(manifests.deployments()[service])
        (mount,) = [mount for mount in container["volumeMounts"] if mount["name"] == "kafka-tls"]
        assert mount["readOnly"] is True
        environment = manifests.environment(service)
        assert environment["PARLEY_KAFKA__SSL_CAFILE"] == f"{mount['mountPath']}/ca.crt"
        assert environment["PARLEY_KAFKA__SSL_CERTFILE"] == f"{mount['mountPath']}/tls.crt"
        assert environment["PARLEY_KAFKA__SSL_KEYFILE"] == f"{mount['mountPath']}/tls.key"
    assert set(manifests.secret_references("ingest")) >= {"PARLEY_PROVIDER__APP_SECRET", "PARLEY_API_KEYS"}
    # Required: a Secret without the key keeps ingest from starting open.
    assert "optional" not in manifests.secret_references("ingest")["PARLEY_API_KEYS"]


def test_several_engine_replicas_share_postgres_and_a_media_volume() -> None:
    manifests = rendered_value_set("postgres-engine")
    engine = manifests.deployments()["engine"]
    assert engine["spec"]["replicas"] == 2
    assert engine["spec"]["strategy"]["type"] == "RollingUpdate"
    environment = manifests.environment("engine")
    assert environment["PARLEY_DATABASE_URL"].startswith("postgresql+asyncpg://")
    assert environment["PARLEY_WORKERS"] == "3"
    (claim,) = manifests.of_kind("PersistentVolumeClaim")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    default_engine = rendered_value_set("defaults").deployments()["engine"]
    # One SQLite writer: the old pod stops before the new one starts.
    assert default_engine["spec"]["strategy"]["type"] == "Recreate"
    assert "PARLEY_DATABASE_URL" not in rendered_value_set("defaults").environment("engine")


def test_traces_are_exported_when_an_endpoint_is_set() -> None:
    manifests = rendered_value_set("keda")
    for service in manifests.deployments():
        environment = manifests.environment(service)
        assert environment["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.observability:4318"
        assert environment["OTEL_SERVICE_NAME"] == f"parley-{service}"
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in rendered_value_set("defaults").environment("ingest")


# --- rolling on change -----------------------------------------------------------------------------------------------


def pod_annotations(manifests: Manifests) -> dict[str, dict[str, str]]:
    return {service: d["spec"]["template"]["metadata"]["annotations"] for service, d in manifests.deployments().items()}


def test_pods_roll_when_and_only_when_their_settings_change() -> None:
    base = pod_annotations(render())
    assert base == pod_annotations(render()), "the checksums must not change between identical renders"
    ingest_only = pod_annotations(render(overrides={"ingest.config.PARLEY_MAX_UPLOAD_BYTES": "1000"}))
    assert ingest_only["ingest"]["checksum/config"] != base["ingest"]["checksum/config"]
    for service in ("job-watcher", "insight-fetcher", "engine"):
        assert ingest_only[service] == base[service], service
    shared = pod_annotations(render(overrides={"kafka.bootstrapServers": "broker:9093"}))
    for service in PIPELINE_SERVICES:
        assert shared[service]["checksum/config"] != base[service]["checksum/config"]
    assert shared["engine"] == base["engine"]
    new_secret = pod_annotations(render(overrides={"secrets.appSecret": "rotated"}))
    for service, rolled in new_secret.items():
        assert rolled["checksum/secret"] != base[service]["checksum/secret"]
        assert rolled["checksum/config"] == base[service]["checksum/config"]


# --- scaling ---------------------------------------------------------------------------------------------------------


def consumed_topics() -> dict[str, tuple[str, str]]:
    """(topic, consumer group) each pipeline service's app subscribes to, with its default settings."""
    found = {}
    for service in PIPELINE_SERVICES:
        app = APP_FACTORIES[service]()
        (subscriber,) = app.state.broker.subscribers
        (topic,) = subscriber.topics
        found[service] = (getattr(topic, "name", topic), subscriber.group_id)
    return found


@pytest.mark.parametrize("value_set", ["keda", "sasl-tls-existing-secret"])
def test_keda_scales_each_consumer_on_the_lag_of_its_own_group_and_topic(value_set: str) -> None:
    manifests = rendered_value_set(value_set)
    assert not manifests.of_kind("HorizontalPodAutoscaler")
    scaled = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d for d in manifests.of_kind("ScaledObject")}
    assert sorted(scaled) == sorted(PIPELINE_SERVICES)
    defaults = consumed_topics()
    topic_variable = {topic: name for name, topic in TopicNames().as_env().items()}
    for service, document in scaled.items():
        (trigger,) = document["spec"]["triggers"]
        metadata = trigger["metadata"]
        environment = manifests.environment(service)
        topic, group = defaults[service]
        # The chart's defaults are the code's, and the trigger reads what the service is configured with.
        assert (metadata["topic"], metadata["consumerGroup"]) == (topic, group)
        assert metadata["consumerGroup"] == environment["PARLEY_GROUP_ID"]
        assert metadata["topic"] == environment[topic_variable[topic]]
        assert metadata["bootstrapServers"] == environment["PARLEY_KAFKA__BOOTSTRAP_SERVERS"]
        assert metadata["offsetResetPolicy"] == "earliest"
        assert int(metadata["lagThreshold"]) > 0
        assert "replicas" not in manifests.deployments()[service]["spec"], "KEDA owns the replica count"
        assert document["spec"]["minReplicaCount"] >= 1


def test_keda_logs_in_to_kafka_as_the_services_do() -> None:
    manifests = rendered_value_set("sasl-tls-existing-secret")
    (authentication,) = manifests.of_kind("TriggerAuthentication")
    for document in manifests.of_kind("ScaledObject"):
        (trigger,) = document["spec"]["triggers"]
        assert trigger["authenticationRef"] == {"name": authentication["metadata"]["name"]}
        assert (trigger["metadata"]["sasl"], trigger["metadata"]["tls"]) == ("scram_sha512", "enable")
        # KEDA reads these variables from the scaled Deployment's container.
        environment = manifests.environment(document["metadata"]["labels"]["app.kubernetes.io/component"])
        for entry in authentication["spec"]["env"]:
            assert entry["name"] in environment
    parameters = {entry["parameter"] for entry in authentication["spec"]["env"]}
    parameters |= {entry["parameter"] for entry in authentication["spec"]["secretTargetRef"]}
    assert parameters == {"username", "password", "ca", "cert", "key"}
    assert not rendered_value_set("keda").of_kind("TriggerAuthentication")


def test_the_hpa_scales_the_consumers_on_cpu() -> None:
    manifests = rendered_value_set("hpa")
    assert not manifests.of_kind("ScaledObject")
    autoscalers = manifests.of_kind("HorizontalPodAutoscaler")
    assert sorted(a["metadata"]["labels"]["app.kubernetes.io/component"] for a in autoscalers) == sorted(
        PIPELINE_SERVICES
    )
    for autoscaler in autoscalers:
        assert autoscaler["apiVersion"] == "autoscaling/v2"
        (metric,) = autoscaler["spec"]["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert "replicas" not in manifests.named("StatefulSet", autoscaler["spec"]["scaleTargetRef"]["name"])["spec"]
    assert manifests.named("HorizontalPodAutoscaler", "parley-ingest")["spec"]["minReplicas"] == 2
    assert "replicas" in manifests.deployments()["engine"]["spec"]


def test_defaults_are_the_codes_defaults() -> None:
    values = values_file()
    topics = TopicNames()
    assert values["topics"] == {
        "requests": topics.requests,
        "jobs": topics.jobs,
        "completions": topics.completions,
        "insights": topics.insights,
        "live": topics.live,
        "deadLetters": topics.dead_letters,
    }
    for service, key in (("ingest", "ingest"), ("job-watcher", "jobWatcher"), ("insight-fetcher", "insightFetcher")):
        assert values[key]["groupId"] == SETTINGS_BY_SERVICE[service].model_fields["group_id"].default
    grace = IngestSettings.model_fields["shutdown_grace_seconds"].default
    stall = IngestSettings.model_fields["consumer_stall_seconds"].default
    assert (values["shutdown"]["graceSeconds"], values["consumerStallSeconds"]) == (grace, stall)


def iter_value_keys(values: Mapping[str, Any], prefix: str = "") -> Iterator[str]:
    for key, value in values.items():
        yield f"{prefix}{key}"
        if isinstance(value, dict) and value and key not in ("config", "resources", "annotations"):
            yield from iter_value_keys(value, f"{prefix}{key}.")


def test_every_value_is_described_by_the_schema() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())

    def described(path: str) -> bool:
        node = schema
        for part in path.split("."):
            node = node.get("properties", {}).get(part)
            if node is None:
                return False
            while "$ref" in node:
                node = schema["definitions"][node["$ref"].rpartition("/")[2]]
        return True

    missing = [key for key in iter_value_keys(values_file()) if not described(key)]
    # Free-form Kubernetes objects are checked by the Kubernetes schemas once rendered.
    free_form = ("podSecurityContext.", "securityContext.")
    assert [key for key in missing if not key.startswith(free_form)] == []


@pytest.mark.parametrize("value_set", VALUE_SETS)
def test_a_replacement_pipeline_pod_keeps_its_predecessors_transactional_id(value_set: str) -> None:
    """Each pipeline pod's transactional id is its name, and a StatefulSet gives the pod that replaces it the same
    name: the replacement fences the crashed pod's open transaction at once (tests/broker/test_fencing.py)."""
    manifests = rendered_value_set(value_set)
    for service in PIPELINE_SERVICES:
        workload = manifests.deployments().get(service)
        if workload is None:
            continue
        assert workload["kind"] == "StatefulSet"
        assert workload["spec"]["podManagementPolicy"] == "Parallel"
        assert manifests.named("Service", workload["spec"]["serviceName"])
        assert manifests.environment(service)["PARLEY_INSTANCE_ID"] == "<metadata.name>"
