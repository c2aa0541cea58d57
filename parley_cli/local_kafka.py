"""A real single-node Apache Kafka 4.x broker on this machine, without Docker.

The broker's jars come from Maven Central once (a throwaway pom and ``mvn dependency:copy-dependencies``)
and are cached under ``home``; each broker keeps its KRaft storage, ``server.properties``, pid file and log
in its own ``data_dir``. The broker runs as a detached ``java … kafka.Kafka`` process in combined
broker+controller mode, listening on loopback only, so it outlives the command that started it.

Optional secured client listeners (off by default) let Parley's SASL and TLS settings be exercised locally:
SASL_PLAINTEXT and SASL_SSL with SCRAM-SHA-256 and SCRAM-SHA-512, and SSL with a certificate from a CA generated
into the data dir (``<data_dir>/tls/ca.pem`` for clients). The PLAINTEXT client, inter-broker and controller
listeners stay as they are.
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import fcntl
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from string import Template
from typing import Any, TypeVar

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from parley_cli.kafka_tls import BrokerTlsMaterial, KeytoolError, ensure_broker_tls

LOOPBACK = "127.0.0.1"
# Versions added beside kafka_2.13 (logging is not among its runtime dependencies).
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies"
RESOURCES = Path(__file__).parent / "kafka"
# Written into lib/ last, so a lib/ holding it is known to be complete.
JARS_COMPLETE_MARKER = ".complete"
LOG_TAIL_LINES = 40
SCRAM_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
# The development SCRAM user created when a SASL listener is on and no users are configured; a deployment sets its own.
DEVELOPMENT_SCRAM_USERNAME = "parley"
DEVELOPMENT_SCRAM_PASSWORD = "parley-dev-secret"
# Characters the StorageTool's `name=…,password=…` syntax cannot carry even inside quotes.
SCRAM_FORBIDDEN_CHARACTERS = frozenset('",[]')

T = TypeVar("T")


class LocalKafkaSettings(BaseSettings):
    """Where and how the local broker runs (``PARLEY_LOCAL_KAFKA_PORT`` and friends)."""

    model_config = SettingsConfigDict(env_prefix="PARLEY_LOCAL_KAFKA_", extra="ignore")

    port: int = Field(9092, ge=1, le=65535, description="client (PLAINTEXT) port on 127.0.0.1")
    controller_port: int | None = Field(
        None, ge=1, le=65535, description="KRaft controller port on 127.0.0.1; default port + 1"
    )
    kafka_version: str = Field("4.1.1", description="org.apache.kafka:kafka_2.13 version (4.x, KRaft)")
    home: Path = Field(Path("~/.cache/parley/kafka"), description="jar cache: <home>/<version>/lib")
    data_dir: Path | None = Field(
        None, description="storage, config, pid and log; default ~/.local/state/parley/kafka-<port>"
    )
    heap: str = Field("512m", description="JVM -Xmx")
    start_timeout_seconds: float = Field(60.0, gt=0, description="how long start() waits for the broker")
    java_home: Path | None = Field(
        None,
        validation_alias=AliasChoices("PARLEY_LOCAL_KAFKA_JAVA_HOME", "JAVA_HOME"),
        description="JDK 17+ to run the broker with; default the `java` on PATH",
    )
    sasl_port: int | None = Field(
        None, ge=1, le=65535, description="SASL_PLAINTEXT (SCRAM-SHA-256/512) port on 127.0.0.1; off by default"
    )
    ssl_port: int | None = Field(
        None, ge=1, le=65535, description="SSL port on 127.0.0.1 (clients trust <data_dir>/tls/ca.pem); off by default"
    )
    sasl_ssl_port: int | None = Field(
        None, ge=1, le=65535, description="SASL_SSL (SCRAM over TLS) port on 127.0.0.1; off by default"
    )
    scram_users: dict[str, SecretStr] = Field(
        default_factory=lambda: {DEVELOPMENT_SCRAM_USERNAME: SecretStr(DEVELOPMENT_SCRAM_PASSWORD)},
        description=(
            "SCRAM users (name → password, JSON in the environment), created for both mechanisms when the "
            "storage is first formatted; changing them needs a wiped data dir"
        ),
    )

    @field_validator("scram_users")
    @classmethod
    def _scram_users_fit_the_storage_tool(cls, users: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, password in users.items():
            if not name or not password.get_secret_value():
                raise ValueError("SCRAM user names and passwords must not be empty")
            if SCRAM_FORBIDDEN_CHARACTERS & set(name + password.get_secret_value()):
                forbidden = "".join(sorted(SCRAM_FORBIDDEN_CHARACTERS))
                raise ValueError(f"SCRAM user names and passwords cannot contain any of {forbidden}")
        return users


@dataclass(frozen=True)
class BrokerStatus:
    """What ``LocalKafka.status()`` found: a live process from this data dir, and whether it serves metadata."""

    running: bool
    pid: int | None
    port: int
    answering: bool


class LocalKafkaError(RuntimeError):
    """The local broker could not be fetched, formatted, started or stopped; the message says why."""


class LocalKafka:
    """One local broker, identified by its data dir (one data dir per port by default)."""

    def __init__(self, settings: LocalKafkaSettings | None = None) -> None:
        self.settings = settings or LocalKafkaSettings()
        self.port = self.settings.port
        self.controller_port = self.settings.controller_port or self.port + 1
        self.kafka_version = self.settings.kafka_version
        self.home = self.settings.home.expanduser()
        self.data_dir = (self.settings.data_dir or Path(f"~/.local/state/parley/kafka-{self.port}")).expanduser()
        self.bootstrap = f"{LOOPBACK}:{self.port}"
        # Listener name → port for the optional secured client listeners (each name is also its protocol).
        self.secured_ports = {
            name: port
            for name, port in (
                ("SASL_PLAINTEXT", self.settings.sasl_port),
                ("SSL", self.settings.ssl_port),
                ("SASL_SSL", self.settings.sasl_ssl_port),
            )
            if port is not None
        }
        ports = [self.port, self.controller_port, *self.secured_ports.values()]
        if len(set(ports)) != len(ports):
            raise LocalKafkaError(f"the broker's ports must differ from each other, got {ports}")
        # The process this object launched, kept so it can be reaped (a dead child is a zombie until waited).
        self._process: subprocess.Popen[bytes] | None = None

    # Paths -----------------------------------------------------------------------------------------

    @property
    def lib_dir(self) -> Path:
        return self.home / self.kafka_version / "lib"

    @property
    def log_file(self) -> Path:
        return self.data_dir / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def properties_file(self) -> Path:
        return self.data_dir / "server.properties"

    @property
    def storage_dir(self) -> Path:
        return self.data_dir / "kraft-logs"

    @property
    def cluster_id_file(self) -> Path:
        return self.data_dir / "cluster.id"

    @property
    def tls_dir(self) -> Path:
        return self.data_dir / "tls"

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM) clients of the SSL and SASL_SSL listeners trust (``PARLEY_KAFKA__SSL_CAFILE``)."""
        return self.tls_dir / "ca.pem"

    @property
    def scram_fingerprint_file(self) -> Path:
        return self.data_dir / "scram-users.sha256"

    @property
    def sasl_bootstrap(self) -> str | None:
        return self._secured_bootstrap("SASL_PLAINTEXT")

    @property
    def ssl_bootstrap(self) -> str | None:
        return self._secured_bootstrap("SSL")

    @property
    def sasl_ssl_bootstrap(self) -> str | None:
        return self._secured_bootstrap("SASL_SSL")

    def _secured_bootstrap(self, listener: str) -> str | None:
        port = self.secured_ports.get(listener)
        return None if port is None else f"{LOOPBACK}:{port}"

    @property
    def uses_sasl(self) -> bool:
        return any(name.startswith("SASL") for name in self.secured_ports)

    @property
    def uses_tls(self) -> bool:
        return any(name.endswith("SSL") for name in self.secured_ports)

    @property
    def launched_here(self) -> bool:
        """Whether this object started the broker process (rather than finding one already running)."""
        return self._process is not None

    # Jars ------------------------------------------------------------------------------------------

    def jars_present(self) -> bool:
        return (self.lib_dir / JARS_COMPLETE_MARKER).exists()

    def ensure_jars(self) -> Path:
        """Fetch kafka_2.13 and its runtime classpath into ``<home>/<version>/lib`` once; return that dir.

        Safe when several processes race: they serialise on a lock file, and the jars are copied into a
        temporary directory that is renamed into place only when complete.
        """
        if self.jars_present():
            return self.lib_dir
        mvn = shutil.which("mvn")
        if mvn is None:
            raise LocalKafkaError(
                "Maven (`mvn`) is needed once to fetch the Kafka jars from Maven Central; "
                "install it (e.g. `apt-get install maven`) and retry"
            )
        self.home.mkdir(parents=True, exist_ok=True)
        with _exclusive_lock(self.home / f"{self.kafka_version}.lock"):
            if self.jars_present():
                return self.lib_dir
            staging = Path(tempfile.mkdtemp(prefix=f".{self.kafka_version}-", dir=self.home))
            try:
                self._copy_dependencies(mvn, staging)
                (staging / "lib" / JARS_COMPLETE_MARKER).write_text(self.kafka_version + "\n")
                self.lib_dir.parent.mkdir(parents=True, exist_ok=True)
                if self.lib_dir.exists():  # left by an interrupted run from before the marker existed
                    shutil.rmtree(self.lib_dir)
                (staging / "lib").rename(self.lib_dir)
            finally:
                shutil.rmtree(staging, ignore_errors=True)
        return self.lib_dir

    def _copy_dependencies(self, mvn: str, staging: Path) -> None:
        pom = Template((RESOURCES / "pom.xml.template").read_text()).substitute(
            kafka_version=self.kafka_version, log4j_version=LOG4J_VERSION, slf4j_version=SLF4J_VERSION
        )
        (staging / "pom.xml").write_text(pom)
        command = [
            mvn,
            "-q",
            "-B",
            "-f",
            str(staging / "pom.xml"),
            DEPENDENCY_PLUGIN,
            "-DincludeScope=runtime",
            f"-DoutputDirectory={staging / 'lib'}",
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=self._child_env(), check=False)
        if result.returncode != 0 or not any((staging / "lib").glob("kafka_2.13-*.jar")):
            output = "\n".join((result.stdout + result.stderr).splitlines()[-LOG_TAIL_LINES:])
            raise LocalKafkaError(
                f"could not fetch Kafka {self.kafka_version} jars with Maven (exit {result.returncode}):\n{output}"
            )

    # Lifecycle -------------------------------------------------------------------------------------

    def status(self) -> BrokerStatus:
        pid = self._live_pid()
        answering = pid is not None and broker_answers(self.bootstrap, timeout_seconds=5.0)
        return BrokerStatus(running=pid is not None, pid=pid, port=self.port, answering=answering)

    def start(self, *, stop_with_parent: bool = False) -> BrokerStatus:
        """Start the broker (formatting its storage the first time) and wait until it serves metadata.

        Returns at once if a broker from this data dir is already running and answering.
        ``stop_with_parent`` asks Linux to SIGTERM the broker when the calling process dies (for tests,
        so a killed test run does not leave a broker behind).
        """
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Two concurrent `start`s on one data dir must not launch two JVMs on the same storage.
        with _exclusive_lock(self.data_dir / "start.lock"):
            pid = self._live_pid()
            if pid is not None:
                self._wait_until_answering(pid)
                return BrokerStatus(running=True, pid=pid, port=self.port, answering=True)
            self.pid_file.unlink(missing_ok=True)
            for port in (self.port, self.controller_port, *self.secured_ports.values()):
                if _port_in_use(port):
                    raise LocalKafkaError(
                        f"{LOOPBACK}:{port} is already in use by another process; "
                        "stop it or choose another port (PARLEY_LOCAL_KAFKA_PORT / --port)"
                    )
            self.ensure_jars()
            tls = self._ensure_tls() if self.uses_tls else None
            self._write_config(tls)
            self._format_storage_once()
            pid = self._launch(stop_with_parent=stop_with_parent)
            self._wait_until_answering(pid)
            return BrokerStatus(running=True, pid=pid, port=self.port, answering=True)

    def stop(self, timeout: float = 30.0) -> bool:
        """SIGTERM the broker, give its controlled shutdown ``timeout`` seconds, then SIGKILL.

        Returns whether a running broker was stopped.
        """
        pid = self._live_pid()
        if pid is None:
            self.pid_file.unlink(missing_ok=True)
            return False
        _signal(pid, signal.SIGTERM)
        if not self._wait_for_exit(pid, timeout):
            _signal(pid, signal.SIGKILL)
            if not self._wait_for_exit(pid, 10.0):
                raise LocalKafkaError(f"broker pid {pid} did not exit after SIGKILL")
        self.pid_file.unlink(missing_ok=True)
        return True

    def wipe(self) -> None:
        """Delete the data dir (topics, offsets, cluster id, log); the broker must be stopped first."""
        if self._live_pid() is not None:
            raise LocalKafkaError(f"the broker on port {self.port} is running; stop it before wiping")
        shutil.rmtree(self.data_dir, ignore_errors=True)

    # Internals -------------------------------------------------------------------------------------

    def _java(self) -> str:
        if self.settings.java_home is not None:
            java = self.settings.java_home.expanduser() / "bin" / "java"
            if not java.exists():
                raise LocalKafkaError(f"no java at {java} (from JAVA_HOME)")
            return str(java)
        found = shutil.which("java")
        if found is None:
            raise LocalKafkaError("Java 17+ is needed to run Kafka 4.x; install a JDK or set JAVA_HOME")
        return found

    def _keytool(self) -> str:
        """The ``keytool`` of the JDK that runs the broker (beside its ``java``), else the one on PATH."""
        beside_java = Path(self._java()).resolve().with_name("keytool")
        if beside_java.exists():
            return str(beside_java)
        found = shutil.which("keytool")
        if found is None:
            raise LocalKafkaError("the SSL listeners need the JDK's `keytool` to make certificates; install a full JDK")
        return found

    def _ensure_tls(self) -> BrokerTlsMaterial:
        try:
            return ensure_broker_tls(self.tls_dir, keytool=self._keytool())
        except KeytoolError as error:
            raise LocalKafkaError(f"could not make TLS certificates in {self.tls_dir}: {error}") from error

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        if self.settings.java_home is not None:
            env["JAVA_HOME"] = str(self.settings.java_home.expanduser())
        return env

    def _jvm_command(self, main_class: str, *args: str) -> list[str]:
        return [
            self._java(),
            f"-Xmx{self.settings.heap}",
            "-Xms32m",
            # A development broker: small and quick to start beats peak throughput, and it shares 2 cores.
            "-XX:+UseSerialGC",
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={RESOURCES / 'log4j2.properties'}",
            "-cp",
            str(self.lib_dir / "*"),
            main_class,
            *args,
        ]

    def _write_config(self, tls: BrokerTlsMaterial | None = None) -> None:
        endpoints = {"PLAINTEXT": self.port, "CONTROLLER": self.controller_port, **self.secured_ports}
        listeners = ",".join(f"{name}://{LOOPBACK}:{port}" for name, port in endpoints.items())
        protocol_map = "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT" + "".join(
            f",{name}:{name}" for name in self.secured_ports
        )
        properties = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{self.controller_port}",
            "listeners": listeners,
            "advertised.listeners": listeners,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": protocol_map,
            "log.dirs": str(self.storage_dir),
            "auto.create.topics.enable": "true",
            "num.partitions": "1",
            # Single node: internal topics with one replica, and one partition each so they load quickly.
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "min.insync.replicas": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Few threads: it runs beside the services on a small machine.
            "num.network.threads": "2",
            "num.io.threads": "2",
            "background.threads": "2",
            "num.recovery.threads.per.data.dir": "1",
            **self._security_properties(tls),
        }
        text = "# Written by parley_cli.local_kafka on every start; edits are overwritten.\n"
        text += "".join(f"{key}={value}\n" for key, value in properties.items())
        self.properties_file.write_text(text)

    def _security_properties(self, tls: BrokerTlsMaterial | None) -> dict[str, str]:
        """SCRAM on the SASL listeners and the keystore for the TLS ones; nothing when they are off."""
        properties: dict[str, str] = {}
        sasl_listeners = [name for name in self.secured_ports if name.startswith("SASL")]
        if sasl_listeners:
            # The credentials live in the KRaft metadata (added at format time); the login module only names the
            # mechanism, so the server JAAS entry carries no user.
            properties["sasl.enabled.mechanisms"] = ",".join(SCRAM_MECHANISMS)
            for listener in sasl_listeners:
                for mechanism in SCRAM_MECHANISMS:
                    properties[f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"] = SCRAM_LOGIN
        if tls is not None:
            properties |= {
                "ssl.keystore.type": "PKCS12",
                "ssl.keystore.location": str(tls.keystore),
                "ssl.keystore.password": tls.keystore_password,
                "ssl.key.password": tls.keystore_password,
                "ssl.client.auth": "none",
            }
        return properties

    def _scram_fingerprint(self, cluster_id: str) -> str:
        """A digest of the SCRAM users a SASL broker should have (salted with the cluster id; no password on disk)."""
        if not self.uses_sasl:
            return ""
        digest = hashlib.sha256(cluster_id.encode())
        for name, password in sorted(self.settings.scram_users.items()):
            digest.update(f"\0{name}\0{password.get_secret_value()}".encode())
        return digest.hexdigest()

    def _format_storage_once(self) -> None:
        if not self.cluster_id_file.exists():
            self.cluster_id_file.write_text(_new_cluster_id() + "\n")
        cluster_id = self.cluster_id_file.read_text().strip()
        fingerprint = self._scram_fingerprint(cluster_id)
        if (self.storage_dir / "meta.properties").exists():
            self._check_scram_users_unchanged(fingerprint)
            return
        scram_options = [
            option
            for mechanism in SCRAM_MECHANISMS
            for name, password in sorted(self.settings.scram_users.items())
            for option in (
                "--add-scram",
                f'{mechanism}=[name="{name}",password="{password.get_secret_value()}"]',
            )
            if self.uses_sasl
        ]
        command = self._jvm_command(
            "kafka.tools.StorageTool",
            "format",
            "--standalone",
            "--ignore-formatted",
            "-t",
            cluster_id,
            "-c",
            str(self.properties_file),
            *scram_options,
        )
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise LocalKafkaError(f"formatting KRaft storage in {self.storage_dir} failed:\n{output}")
        self.scram_fingerprint_file.write_text(fingerprint + "\n")

    def _check_scram_users_unchanged(self, fingerprint: str) -> None:
        """SCRAM users are written into the metadata log only when it is formatted, so a change cannot apply later."""
        if not self.uses_sasl:
            return
        try:
            recorded = self.scram_fingerprint_file.read_text().strip()
        except FileNotFoundError:
            recorded = ""
        if recorded != fingerprint:
            raise LocalKafkaError(
                f"the SCRAM users differ from those created when {self.storage_dir} was formatted (or it was "
                "formatted without SASL); wipe the data dir (`parley kafka wipe`) to create them"
            )

    def _launch(self, *, stop_with_parent: bool) -> int:
        command = self._jvm_command("kafka.Kafka", str(self.properties_file))
        with self.log_file.open("wb") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                start_new_session=True,
                preexec_fn=_die_with_parent if stop_with_parent else None,
            )
        self.pid_file.write_text(f"{self._process.pid}\n")
        return self._process.pid

    def _wait_until_answering(self, pid: int) -> None:
        deadline = time.monotonic() + self.settings.start_timeout_seconds
        while time.monotonic() < deadline:
            if not self._is_alive(pid):
                self.pid_file.unlink(missing_ok=True)
                raise LocalKafkaError(
                    f"the Kafka broker (pid {pid}) exited during startup; last lines of {self.log_file}:\n"
                    + self._log_tail()
                )
            if broker_answers(self.bootstrap, timeout_seconds=3.0):
                return
            time.sleep(0.25)
        tail = self._log_tail()
        if self.launched_here:
            self.stop()
        raise LocalKafkaError(
            f"the Kafka broker (pid {pid}) did not answer on {self.bootstrap} within "
            f"{self.settings.start_timeout_seconds:g}s (see {self.log_file}):\n{tail}"
        )

    def _wait_for_exit(self, pid: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self._is_alive(pid):
                return True
            time.sleep(0.1)
        return not self._is_alive(pid)

    def _live_pid(self) -> int | None:
        """The pid from the pid file if that process is still this data dir's broker."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if self._is_alive(pid) else None

    def _is_alive(self, pid: int) -> bool:
        if self._process is not None and self._process.pid == pid:
            return self._process.poll() is None
        cmdline = Path(f"/proc/{pid}/cmdline")
        if Path("/proc/self").exists():
            # The pid may have been reused by an unrelated process since the broker died.
            try:
                return str(self.properties_file).encode() in cmdline.read_bytes()
            except OSError:
                return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _log_tail(self) -> str:
        try:
            lines = self.log_file.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(lines[-LOG_TAIL_LINES:])


def _new_cluster_id() -> str:
    """A KRaft cluster id as ``kafka-storage random-uuid`` prints it (URL-safe base64 of 16 random bytes)."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):  # Kafka avoids these too: they read as command-line options
            return cluster_id


def broker_answers(bootstrap: str, *, timeout_seconds: float = 5.0) -> bool:
    """Whether a Kafka client can fetch cluster metadata from ``bootstrap`` listing at least one broker."""
    # A plain TCP probe first: aiokafka logs an error for every refused connection, which is noise here.
    addresses = [entry.rsplit(":", 1) for entry in bootstrap.split(",")]
    if not any(_port_in_use(int(port), host.strip()) for host, port in addresses):
        return False
    return _run_blocking(_metadata_lists_a_broker(bootstrap, timeout_seconds=timeout_seconds))


async def _metadata_lists_a_broker(bootstrap: str, *, timeout_seconds: float) -> bool:
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_seconds * 1000))
    try:
        async with asyncio.timeout(timeout_seconds):
            await client.bootstrap()
        return bool(client.cluster.brokers())
    except (KafkaError, OSError, TimeoutError):
        return False
    finally:
        await client.close()


def _run_blocking(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when called inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _port_in_use(port: int, host: str = LOOPBACK) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _signal(pid: int, signum: signal.Signals) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)


def _die_with_parent() -> None:
    """In the child before exec: have Linux send SIGTERM when the parent dies (no-op elsewhere)."""
    try:
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    except OSError:
        pass


@contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
