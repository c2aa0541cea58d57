"""``parley kafka …``: run a real local Kafka 4.x broker for development (no Docker)."""

from __future__ import annotations

from typing import Annotated

import typer

from parley_cli.local_kafka import LocalKafka, LocalKafkaError, LocalKafkaSettings

kafka_app = typer.Typer(
    help=(
        "Run a real single-node Kafka 4.x broker on 127.0.0.1 (KRaft, no Docker). "
        "Needs Java 17+; the jars are fetched from Maven Central once with `mvn`."
    ),
    no_args_is_help=True,
)

PortOption = Annotated[
    int | None,
    typer.Option("--port", "-p", help="client port on 127.0.0.1 (default 9092 or PARLEY_LOCAL_KAFKA_PORT)"),
]


def _broker(port: int | None) -> LocalKafka:
    settings = LocalKafkaSettings() if port is None else LocalKafkaSettings(port=port)
    return LocalKafka(settings)


def _fail(error: LocalKafkaError) -> typer.Exit:
    typer.secho(f"error: {error}", fg=typer.colors.RED, err=True)
    return typer.Exit(code=1)


@kafka_app.command()
def start(port: PortOption = None) -> None:
    """Start the broker in the background (formats storage on first use) and wait until it is ready."""
    broker = _broker(port)
    was_running = broker.status().running
    if not broker.jars_present():
        typer.echo(f"Fetching Kafka {broker.kafka_version} jars into {broker.lib_dir} (once) …")
    try:
        status = broker.start()
    except LocalKafkaError as error:
        raise _fail(error) from error
    state = "was already running" if was_running else "is ready"
    typer.echo(f"Kafka {broker.kafka_version} broker on {broker.bootstrap} (pid {status.pid}) {state}")
    typer.echo(f"  data: {broker.data_dir}")
    typer.echo(f"  log:  {broker.log_file}")
    typer.echo(f"  use:  PARLEY_KAFKA_BOOTSTRAP_SERVERS={broker.bootstrap}")


@kafka_app.command()
def stop(
    port: PortOption = None,
    timeout: Annotated[float, typer.Option(help="seconds of controlled shutdown before SIGKILL")] = 30.0,
) -> None:
    """Stop the broker (SIGTERM, then SIGKILL if it has not exited after --timeout seconds)."""
    broker = _broker(port)
    pid = broker.status().pid
    try:
        stopped = broker.stop(timeout=timeout)
    except LocalKafkaError as error:
        raise _fail(error) from error
    if stopped:
        typer.echo(f"Stopped the Kafka broker on {broker.bootstrap} (pid {pid})")
    else:
        typer.echo(f"No Kafka broker from {broker.data_dir} is running on {broker.bootstrap}")


@kafka_app.command()
def status(port: PortOption = None) -> None:
    """Say whether the broker runs and answers; exits 1 when it does not answer."""
    broker = _broker(port)
    found = broker.status()
    if found.answering:
        typer.echo(f"Kafka {broker.kafka_version} broker on {broker.bootstrap} (pid {found.pid}) is running")
    elif found.running:
        typer.echo(f"Kafka broker pid {found.pid} is running but not answering on {broker.bootstrap} yet")
    else:
        typer.echo(f"No Kafka broker is running on {broker.bootstrap} (data: {broker.data_dir})")
    typer.echo(f"  log: {broker.log_file}")
    if not found.answering:
        raise typer.Exit(code=1)


@kafka_app.command()
def wipe(port: PortOption = None) -> None:
    """Stop the broker if it runs, then delete its data dir (topics, offsets, cluster id, log)."""
    broker = _broker(port)
    try:
        if broker.stop():
            typer.echo(f"Stopped the Kafka broker on {broker.bootstrap}")
        broker.wipe()
    except LocalKafkaError as error:
        raise _fail(error) from error
    typer.echo(f"Deleted {broker.data_dir}")
