"""``parley stream``: a recording streamed to Symbl's Streaming API at real-time pace, the live results printed.

It speaks the API as Symbl's SDKs do (``start_request``, 16-bit PCM frames, ``stop_request``), so it works against
the engine and against ingest's relay alike, and shows what a live client sees: interim text while someone speaks,
each finished sentence with its speaker, and insights as they are detected.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import websockets
from websockets.exceptions import ConnectionClosed

SAMPLE_RATE = 16_000
CHUNK_SECONDS = 0.1  # what a microphone client sends: 100 ms, 3,200 bytes at 16 kHz
INSIGHT_TYPES = ("question", "action_item", "follow_up")


class NoInputDevice(OSError):
    """``--mic`` found no input device of that name."""


def pcm_chunks(
    source: Path | str, *, sample_rate: int = SAMPLE_RATE, device_format: str | None = None
) -> Iterator[bytes]:
    """A recording (any format PyAV decodes), or with ``device_format`` an input device (``alsa``: ``default``,
    ``hw:1``…), as 16-bit mono PCM at ``sample_rate`` in 100 ms chunks. Opens the source at once, so a missing
    file or device is an error here rather than at the first chunk."""
    try:
        container = av.open(str(source), format=device_format)
    except OSError as error:
        if device_format is None:
            raise
        raise NoInputDevice(f"no audio input device {source!r} ({device_format}): {error}") from None
    return _decoded_chunks(container, sample_rate)


def _decoded_chunks(container: Any, sample_rate: int) -> Iterator[bytes]:
    resampler = av.AudioResampler(format="s16", layout="mono", rate=sample_rate)
    chunk_bytes = int(sample_rate * CHUNK_SECONDS) * 2
    pending = b""
    with container:
        for frame in container.decode(audio=0):
            for resampled in resampler.resample(frame):
                pending += resampled.to_ndarray().astype(np.int16).tobytes()
                while len(pending) >= chunk_bytes:
                    yield pending[:chunk_bytes]
                    pending = pending[chunk_bytes:]
        for resampled in resampler.resample(None):
            pending += resampled.to_ndarray().astype(np.int16).tobytes()
    if pending:
        yield pending


def access_token(api_url: str, app_id: str, app_secret: str) -> str:
    """A token from the provider's ``POST /oauth2/token:generate``, as Symbl's SDKs get one."""
    response = httpx.post(
        f"{api_url.rstrip('/')}/oauth2/token:generate",
        json={"type": "application", "appId": app_id, "appSecret": app_secret},
        timeout=30,
    )
    response.raise_for_status()
    return str(response.json()["accessToken"])


@dataclass
class StreamReport:
    """What came back: the conversation, its finished sentences and insights, and how the stream closed."""

    conversation_id: str | None = None
    sentences: list[str] = field(default_factory=list)
    insights: list[str] = field(default_factory=list)
    close_code: int | None = None
    errors: list[str] = field(default_factory=list)
    interrupted: bool = False


def describe_frame(frame: dict[str, Any], report: StreamReport) -> str | None:
    """The line to print for a frame (None for frames a person need not see), noting it in ``report``."""
    kind = frame.get("type")
    if kind == "message":
        message = frame.get("message") or {}
        subtype = message.get("type")
        data = message.get("data") or {}
        if subtype == "conversation_created":
            report.conversation_id = str(data.get("conversationId"))
            return f"conversation {report.conversation_id}"
        if subtype == "recognition_result" and not message.get("isFinal"):
            text = (message.get("punctuated") or {}).get("transcript", "")
            return f"  … {text}" if text else None
        if subtype == "error":
            report.errors.append(str(message.get("message") or message))
            return f"error: {message.get('message') or message}"
        return None
    if kind == "message_response":
        lines = []
        for message in frame.get("messages", []):
            speaker = (message.get("from") or {}).get("name") or "Speaker"
            content = (message.get("payload") or {}).get("content", "")
            report.sentences.append(content)
            lines.append(f"{speaker}: {content}")
        return "\n".join(lines) or None
    if kind == "insight_response":
        lines = []
        for insight in frame.get("insights", []):
            content = (insight.get("payload") or {}).get("content") or insight.get("text", "")
            report.insights.append(f"{insight.get('type')}: {content}")
            lines.append(f"  [{insight.get('type')}] {content}")
        return "\n".join(lines) or None
    if kind == "topic_response":
        phrases = [str(t.get("phrases")) for t in frame.get("topics", [])]
        return f"  topics: {', '.join(phrases)}" if phrases else None
    if kind == "error":
        report.errors.append(str(frame.get("message") or frame))
        return f"error: {frame.get('message')}: {frame.get('details', '')}"
    return None


async def stream_file(
    url: str,
    path: Path | str,
    *,
    token: str | None,
    speaker_name: str | None = None,
    speed: float = 1.0,
    device_format: str | None = None,
    connection_id: str | None = None,
    show: Callable[[str], None] = print,
) -> StreamReport:
    """Stream ``path`` (or, with ``device_format``, the input device it names) to ``{url}/v1/streaming/{id}`` and
    show each result as it arrives. A device is live already, so only a recording is paced."""
    report = StreamReport()
    connection_id = connection_id or uuid.uuid4().hex
    headers = {"x-api-key": token} if token else {}
    target = f"{url.rstrip('/')}/v1/streaming/{connection_id}"
    start = {
        "type": "start_request",
        "insightTypes": list(INSIGHT_TYPES),
        "config": {"speechRecognition": {"encoding": "LINEAR16", "sampleRateHertz": SAMPLE_RATE}},
        "speaker": {"userId": connection_id, "name": speaker_name} if speaker_name else None,
    }
    chunks = pcm_chunks(path, device_format=device_format)
    async with websockets.connect(target, additional_headers=headers, compression=None) as connection:

        async def listen() -> None:
            try:
                async for text in connection:
                    frame = json.loads(text) if isinstance(text, str) and text.startswith("{") else None
                    line = describe_frame(frame, report) if frame is not None else None
                    if line is not None:
                        show(line)
            except ConnectionClosed:
                return

        listening = asyncio.create_task(listen())
        await connection.send(json.dumps(start))
        began = time.monotonic()
        try:
            for index, chunk in enumerate(chunks):
                await connection.send(chunk)
                if device_format is None:
                    # Real-time pace (or ``speed`` times it): each chunk leaves when its audio would have been spoken.
                    due = began + (index + 1) * CHUNK_SECONDS / speed
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                else:
                    await asyncio.sleep(0)  # a device read blocks until its audio exists; let the results through
        except asyncio.CancelledError:
            # Ctrl-C (asyncio.run cancels this task): stop the stream properly, so the provider keeps all of it.
            report.interrupted = True
        await connection.send(json.dumps({"type": "stop_request"}))
        await listening
        report.close_code = connection.close_code
    return report
