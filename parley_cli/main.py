"""The ``parley`` command: run services, a local Kafka, submit conversations and follow their insights."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import mimetypes
import os
import secrets
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import httpx
import typer
import websockets
from parley_shared.settings import ParleySettings

from parley_cli.dead_letters import dead_letters_app
from parley_cli.kafka_commands import kafka_app
from parley_cli.watching import TopicFollower, describe_insights

if TYPE_CHECKING:
    # Imported where used: the streaming client loads PyAV, which only the live commands need.
    from parley_cli.streaming import StreamReport

LiveReport = TypeVar("LiveReport", bound="StreamReport")

app = typer.Typer(
    help="Parley: conversation intelligence delivered as Kafka events.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(kafka_app, name="kafka")
app.add_typer(dead_letters_app, name="dead-letters")

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
# job-watcher's webhook in `parley demo`, on its default port.
DEMO_WEBHOOK_URL = "http://127.0.0.1:8702/webhooks/jobs"
AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".flac": "audio/flac",
    ".ogg": "audio/ogg",
    ".m4a": "audio/mp4",
    ".aac": "audio/aac",
    ".opus": "audio/opus",
}
VIDEO_TYPES = {
    ".mp4": "video/mp4",
    ".mov": "video/quicktime",
    ".webm": "video/webm",
    ".mkv": "video/x-matroska",
}


class Service(StrEnum):
    engine = "engine"
    ingest = "ingest"
    job_watcher = "job-watcher"
    insight_fetcher = "insight-fetcher"
    provider_double = "provider-double"


@app.command()
def run(service: Annotated[Service, typer.Argument(help="the service to run in the foreground")]) -> None:
    """Run one service in the foreground (settings from PARLEY_* variables); engine listens on 127.0.0.1:8700."""
    import uvicorn

    if service is Service.engine:
        from parley_engine.__main__ import serve

        serve()
        return
    if service is Service.provider_double:
        from parley_devtools.provider_double.__main__ import main as run_double

        sys.argv = [sys.argv[0]]
        run_double()
        return
    if service is Service.ingest:
        from parley_ingest.app import create_app as create_ingest
        from parley_ingest.settings import IngestSettings

        ingest_settings = IngestSettings()
        asgi, host, port = (
            create_ingest(ingest_settings),
            ingest_settings.http_host,
            ingest_settings.http_port,
        )
    elif service is Service.job_watcher:
        from parley_job_watcher.app import create_app as create_watcher
        from parley_job_watcher.settings import JobWatcherSettings

        watcher_settings = JobWatcherSettings()
        asgi, host, port = (
            create_watcher(watcher_settings),
            watcher_settings.http_host,
            watcher_settings.http_port,
        )
    else:
        from parley_insight_fetcher.app import create_app as create_fetcher
        from parley_insight_fetcher.settings import InsightFetcherSettings

        fetcher_settings = InsightFetcherSettings()
        asgi, host, port = (
            create_fetcher(fetcher_settings),
            fetcher_settings.http_host,
            fetcher_settings.http_port,
        )
    # uvicorn's own grace period must outlast the broker's drain of in-flight batches.
    grace = int(ParleySettings().shutdown_grace_seconds) + 5
    # log_config=None: create_app routed every logger, uvicorn's too, through Parley's structured handler.
    uvicorn.run(
        asgi,
        host=host,
        port=port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=grace,
    )


def _submission_request(path: Path) -> tuple[str, dict[str, str], Any]:
    """The ingest path, headers and body for a file: Symbl text JSON, or audio/video by its type."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            body = json.loads(path.read_text())
        except ValueError as error:
            raise typer.BadParameter(f"{path} is not valid JSON: {error}") from None
        return "/v1/process/text", {}, body
    content_type = AUDIO_TYPES.get(suffix) or VIDEO_TYPES.get(suffix) or mimetypes.guess_type(path.name)[0] or ""
    if content_type.startswith("audio/"):
        kind = "audio"
    elif content_type.startswith("video/"):
        kind = "video"
    else:
        raise typer.BadParameter(f"{path}: expected a .json text conversation or an audio/video file")
    return f"/v1/process/{kind}", {"Content-Type": content_type}, path


def media_options(path: Path) -> dict[str, Any]:
    """Options for an audio/video file from ``<file>.options.json`` beside it (e.g. its ``channelMetadata``)."""
    sidecar = path.with_name(path.name + ".options.json")
    if not sidecar.exists():
        return {}
    try:
        options = json.loads(sidecar.read_text())
    except ValueError as error:
        raise typer.BadParameter(f"{sidecar} is not valid JSON: {error}") from None
    if not isinstance(options, dict):
        raise typer.BadParameter(f"{sidecar} must hold a JSON object of Symbl options")
    return options


async def _submit(ingest_url: str, path: Path, request_id: str) -> dict[str, Any]:
    route, headers, body = _submission_request(path)
    headers["Idempotency-Key"] = request_id
    async with httpx.AsyncClient(base_url=ingest_url, timeout=120) as client:
        if isinstance(body, Path):

            async def chunks() -> AsyncIterator[bytes]:
                with body.open("rb") as media:
                    while chunk := media.read(1 << 16):
                        yield chunk

            headers["Content-Length"] = str(body.stat().st_size)
            # Symbl takes a file's options in the query string, lists and objects JSON-encoded.
            query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in media_options(body).items()}
            response = await client.post(route, content=chunks(), headers=headers, params=query)
        else:
            response = await client.post(route, json=body, headers=headers)
    if response.status_code >= 400:
        try:
            message = response.json().get("message", response.text)
        except ValueError:
            message = response.text
        raise RuntimeError(f"ingest refused {path.name} ({response.status_code}): {message}")
    accepted: dict[str, Any] = response.json()
    return accepted


async def submit_and_wait(
    settings: ParleySettings, ingest_url: str, paths: list[Path], *, wait: bool, wait_seconds: float, as_json: bool
) -> int:
    """Submit each file; with ``wait``, follow completions and insights until every job has an outcome."""
    if not wait:
        for path in paths:
            accepted = await _submit(ingest_url, path, str(uuid.uuid4()))
            typer.echo(
                json.dumps(accepted)
                if as_json
                else f"{path.name}: conversation {accepted['conversationId']}, job {accepted['jobId']}"
            )
        return 0
    topics = settings.topics
    async with TopicFollower(settings.kafka, [topics.completions, topics.insights, topics.dead_letters]) as follower:
        started = time.monotonic()
        waiting: dict[str, str] = {}
        for path in paths:
            accepted = await _submit(ingest_url, path, str(uuid.uuid4()))
            waiting[accepted["jobId"]] = path.name
            typer.echo(
                f"[{time.monotonic() - started:5.1f}s] {path.name}: submitted "
                f"(conversation {accepted['conversationId']}, job {accepted['jobId']})"
            )
        failures = 0

        async def follow() -> None:
            nonlocal failures
            async for _topic, event in follower.events():
                job_id = event.get("jobId")
                if job_id not in waiting:
                    continue
                name, kind = waiting[job_id], event.get("eventType")
                stamp = f"[{time.monotonic() - started:5.1f}s] {name}:"
                if kind == "JobCompleted":
                    typer.echo(f"{stamp} job completed (seen by {event.get('detectedBy')}); fetching insights")
                elif kind == "JobFailed":
                    typer.echo(f"{stamp} job FAILED: {event.get('reason')}")
                    failures += 1
                    del waiting[job_id]
                elif kind == "InsightsReady":
                    typer.echo(f"{stamp} insights ready")
                    typer.echo(json.dumps(event, indent=2) if as_json else describe_insights(event))
                    del waiting[job_id]
                elif kind == "DeadLetter":
                    typer.echo(f"{stamp} dead-lettered by {event.get('service')}: {event.get('reason')}")
                    failures += 1
                    del waiting[job_id]
                if not waiting:
                    return

        try:
            await asyncio.wait_for(follow(), wait_seconds)
        except TimeoutError:
            typer.echo(f"timed out after {wait_seconds:.0f}s waiting for: {', '.join(waiting.values())}", err=True)
            return 2
        return 1 if failures else 0


@app.command()
def submit(
    files: Annotated[list[Path], typer.Argument(exists=True, dir_okay=False, help="Symbl text JSON or audio/video")],
    wait: Annotated[bool, typer.Option(help="follow the job and print its insights when they arrive")] = False,
    ingest_url: Annotated[str, typer.Option(envvar="PARLEY_INGEST_URL")] = "http://127.0.0.1:8701",
    timeout: Annotated[float, typer.Option(help="seconds to wait for insights")] = 300.0,
    as_json: Annotated[bool, typer.Option("--json", help="print raw events")] = False,
) -> None:
    """Submit conversations through the ingest API (text: the body of POST /v1/process/text)."""
    try:
        code = asyncio.run(
            submit_and_wait(ParleySettings(), ingest_url, files, wait=wait, wait_seconds=timeout, as_json=as_json)
        )
    except (RuntimeError, httpx.HTTPError) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    raise typer.Exit(code)


# Options of the live commands (stream, call).
AccessTokenOption = Annotated[
    str | None, typer.Option(envvar="PARLEY_STREAM_TOKEN", help="access token; default: one from the provider")
]
ReportAsJson = Annotated[bool, typer.Option("--json", help="print the final report as JSON")]


def provider_token(settings: ParleySettings) -> str:
    """A token from the configured provider's ``/oauth2/token:generate`` (as Symbl's SDKs get one)."""
    from parley_cli.streaming import access_token

    provider = settings.provider
    return access_token(provider.url, provider.app_id, provider.app_secret.get_secret_value())


def _run_live(token: str | None, client: Callable[[str], Coroutine[Any, Any, LiveReport]]) -> LiveReport:
    """Run a live command's client with ``token`` (the provider's unless given); a network error exits with 1."""
    try:
        return asyncio.run(client(token or provider_token(ParleySettings())))
    except (OSError, httpx.HTTPError, websockets.exceptions.WebSocketException) as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


def _end_live(report: StreamReport, as_json: bool, summary: str, *, ok: bool) -> NoReturn:
    """Print the report (whole, with ``--json``; else ``summary``) and exit 0 if ``ok`` and nothing went wrong."""
    typer.echo(json.dumps(dataclasses.asdict(report)) if as_json else summary)
    raise typer.Exit(0 if ok and not report.errors else 1)


@app.command()
def stream(
    file: Annotated[
        Path | None, typer.Argument(exists=True, dir_okay=False, help="a recording (any format PyAV decodes)")
    ] = None,
    mic: Annotated[bool, typer.Option("--mic", help="stream the microphone instead (ALSA input device)")] = False,
    device: Annotated[str, typer.Option(help="the ALSA input device for --mic")] = "default",
    url: Annotated[
        str, typer.Option(envvar="PARLEY_STREAM_URL", help="WebSocket base of ingest or the engine")
    ] = "ws://127.0.0.1:8701",
    token: AccessTokenOption = None,
    speaker: Annotated[str | None, typer.Option(help="the speaker's name")] = None,
    speed: Annotated[float, typer.Option(min=0.1, help="1 = real time; 2 = twice as fast")] = 1.0,
    as_json: ReportAsJson = False,
) -> None:
    """Stream a recording (or the microphone: --mic, Ctrl-C to stop) to Symbl's Streaming API at real-time pace,
    printing the live transcript and insights."""
    from parley_cli.streaming import stream_file

    if (file is None) == (not mic):
        typer.echo("error: give a recording or --mic (one of them)", err=True)
        raise typer.Exit(2)
    source, device_format = (device, "alsa") if mic else (file, None)
    assert source is not None
    report = _run_live(
        token,
        lambda token: stream_file(
            url, source, token=token, speaker_name=speaker, speed=speed, device_format=device_format
        ),
    )
    _end_live(
        report,
        as_json,
        f"stream closed ({report.close_code}); conversation {report.conversation_id}",
        ok=report.close_code == 1000,
    )


@app.command()
def call(
    target: Annotated[str, typer.Argument(help="a SIP URI (sip:user@host[:port][;transport=tcp]) or a phone number")],
    url: Annotated[
        str, typer.Option(envvar="PARLEY_CALL_URL", help="HTTP base of the engine (or ingest)")
    ] = "http://127.0.0.1:8700",
    token: AccessTokenOption = None,
    name: Annotated[str | None, typer.Option(help="the conversation's name")] = None,
    dtmf: Annotated[
        str | None, typer.Option(help="digits sent once a phone call is answered (',' waits 0.5 s)")
    ] = None,
    as_json: ReportAsJson = False,
) -> None:
    """Have the engine dial into a call (Symbl's Telephony API) and print its live transcript until it ends
    (Ctrl-C hangs up)."""
    from parley_cli.calling import call_and_follow

    report = _run_live(
        token, lambda token: call_and_follow(url, target, token=token, name=name, dtmf=dtmf, show=typer.echo)
    )
    _end_live(report, as_json, f"conversation {report.conversation_id}", ok=bool(report.conversation_id))


@app.command()
def tail(
    from_beginning: Annotated[bool, typer.Option(help="start at the oldest retained event")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print whole events")] = False,
) -> None:
    """Follow the insights topic (committed events only), one conversation per paragraph."""
    settings = ParleySettings()

    async def follow() -> None:
        async with TopicFollower(settings.kafka, [settings.topics.insights], from_beginning=from_beginning) as f:
            async for _, event in f.events():
                typer.echo(json.dumps(event) if as_json else describe_insights(event) + "\n")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(follow())


@app.command()
def demo(
    files: Annotated[
        list[Path] | None, typer.Argument(help="conversations to process (default: bundled samples)")
    ] = None,
    keep_running: Annotated[bool, typer.Option(help="leave the services running afterwards")] = False,
    provider_url: Annotated[
        str | None,
        typer.Option(envvar="PARLEY_API_URL", help="a Symbl-compatible API; default: Parley's engine, started here"),
    ] = None,
    scripted_provider: Annotated[
        bool, typer.Option(help="use the scripted provider double instead of the engine (no real analysis)")
    ] = False,
) -> None:
    """Parley's whole job on local defaults: Kafka, the engine, the three services, samples in, insights out."""
    from parley_cli.local_kafka import LocalKafka, LocalKafkaSettings
    from parley_cli.local_stack import LocalStack

    kafka = LocalKafka(LocalKafkaSettings())
    typer.echo("Starting the local Kafka broker (the first run downloads it from Maven Central)…")
    kafka.start()
    bootstrap = f"127.0.0.1:{kafka.settings.port}"
    log_dir = Path(tempfile.gettempdir()) / "parley-demo-logs"
    env = {"PARLEY_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PARLEY_LOG_LEVEL": "WARNING"}
    if provider_url is None and not scripted_provider:
        # The engine signs its webhooks with this secret and job-watcher verifies them.
        env["PARLEY_WEBHOOK_SECRET"] = secrets.token_hex(16)
    stack = LocalStack(log_dir=log_dir, env=env)
    code = 1
    try:
        if provider_url is None and scripted_provider:
            typer.echo("Starting the scripted provider double…")
            provider_url = stack.start("provider-double", ready_path="/_double/jobs").url
        elif provider_url is None:
            typer.echo("Starting Parley's engine (offline speech-to-text and analysis) on 127.0.0.1:8700…")
            # The engine calls back only public addresses, and the job-watcher it was told to trust.
            provider_url = stack.start(
                "engine",
                ready_path="/healthz",
                timeout=120,
                extra_env={"PARLEY_TRUSTED_WEBHOOK_URLS": DEMO_WEBHOOK_URL},
            ).url
        stack.env["PARLEY_API_URL"] = provider_url
        typer.echo(f"Starting ingest, job-watcher and insight-fetcher (logs in {log_dir})…")
        stack.start("job-watcher")
        stack.start("insight-fetcher")
        stack.start("ingest", extra_env={"PARLEY_WEBHOOK_URL": DEMO_WEBHOOK_URL})
        paths = files or [SAMPLES / "meeting.json", SAMPLES / "support-call.ogg"]
        settings = ParleySettings(kafka_bootstrap_servers=bootstrap)
        code = asyncio.run(
            submit_and_wait(settings, "http://127.0.0.1:8701", paths, wait=True, wait_seconds=300, as_json=False)
        )
        if keep_running:
            typer.echo("Services keep running; press Ctrl-C to stop them.")
            signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        stack.stop_all()
        if not keep_running:
            typer.echo("Stopped the services. The Kafka broker keeps running (`parley kafka stop` stops it).")
    raise typer.Exit(code)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
