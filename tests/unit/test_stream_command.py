"""``parley stream``: a recording goes out as Symbl's SDKs send it, paced, and what comes back is shown."""

from __future__ import annotations

import json
import wave
from pathlib import Path

import numpy as np

from parley_cli.streaming import CHUNK_SECONDS, SAMPLE_RATE, StreamReport, describe_frame, pcm_chunks, stream_file
from tests.support.scripted_streaming import ScriptedProvider, wrapped
from tests.support.servers import serving_websocket


def write_wav(path: Path, seconds: float, rate: int) -> Path:
    samples = (np.sin(np.arange(int(seconds * rate)) * 2 * np.pi * 220 / rate) * 8000).astype(np.int16)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return path


def test_any_recording_becomes_16_khz_mono_pcm_in_100_ms_chunks(tmp_path: Path) -> None:
    chunks = list(pcm_chunks(write_wav(tmp_path / "call.wav", 1.0, 44_100)))

    assert [len(c) for c in chunks[:-1]] == [int(SAMPLE_RATE * CHUNK_SECONDS) * 2] * (len(chunks) - 1)
    total_seconds = sum(len(c) for c in chunks) / 2 / SAMPLE_RATE
    assert abs(total_seconds - 1.0) < 0.02


async def test_a_recording_is_streamed_and_every_result_shown(tmp_path: Path) -> None:
    provider = ScriptedProvider()
    shown: list[str] = []
    async with serving_websocket(provider) as (url, _):
        report = await stream_file(
            url,
            write_wav(tmp_path / "a.wav", 0.5, 16_000),
            token="t-1",
            speaker_name="Ana",
            speed=50,
            show=shown.append,
        )

    assert (report.conversation_id, report.close_code, report.errors) == ("5815", 1000, [])
    assert report.sentences == [f"sentence {n}" for n in range(1, 6)]
    assert len(report.insights) == 5
    assert shown[0] == "conversation 5815"
    assert "Speaker: sentence 1" in shown and "  [question] " in shown
    start = json.loads(provider.received[0])
    assert start["config"]["speechRecognition"] == {"encoding": "LINEAR16", "sampleRateHertz": 16_000}
    assert start["speaker"]["name"] == "Ana"
    assert [len(frame) for frame in provider.received[1:-1]] == [3_200] * 5
    assert json.loads(provider.received[-1]) == {"type": "stop_request"}
    assert provider.handshakes[0]["x-api-key"] == "t-1"


def test_interim_text_and_errors_are_shown_and_noted() -> None:
    report = StreamReport()
    interim = wrapped("recognition_result", isFinal=False, punctuated={"transcript": "so the"})
    assert describe_frame(json.loads(interim), report) == "  … so the"
    final = wrapped("recognition_result", isFinal=True, punctuated={"transcript": "So the plan."})
    assert describe_frame(json.loads(final), report) is None  # the finished sentence comes as message_response
    error = {"type": "error", "message": "unsupported_encoding", "details": "FLAC is not supported"}
    assert describe_frame(error, report) == "error: unsupported_encoding: FLAC is not supported"
    assert report.errors == ["unsupported_encoding"]


def test_mic_without_an_input_device_is_a_clear_error() -> None:
    from typer.testing import CliRunner

    from parley_cli.main import app

    result = CliRunner().invoke(
        app, ["stream", "--mic", "--device", "parley-no-such-device", "--token", "t", "--url", "ws://127.0.0.1:9"]
    )

    assert result.exit_code == 1
    assert "no audio input device 'parley-no-such-device' (alsa)" in result.output


def test_stream_needs_a_recording_or_the_mic() -> None:
    from typer.testing import CliRunner

    from parley_cli.main import app

    result = CliRunner().invoke(app, ["stream", "--token", "t"])

    assert result.exit_code == 2
    assert "give a recording or --mic" in result.output
