"""Screenshots of the Experience page for the README: a text meeting and a recorded call, on a desktop and a phone.

Run: ``.venv/bin/python -m parley_devtools.experience_screenshots`` (needs Debian's Chromium, ``/usr/bin/chromium``).
It starts the engine as ``parley run engine`` would (its real workers: Whisper, spaCy and the insight models) on a
free loopback port with a throwaway data directory, submits ``samples/meeting.json`` and ``samples/support-call.ogg``
(with its ``.options.json``) through the Async API, asks the Experience API for a ``verbose-text-summary`` of the
meeting and a ``video-summary`` of the call (which plays the engine's kept copy of the recording, on Symbl's example
colours), and saves ``docs/images/experience-{meeting,call}-{desktop,phone}.png``. For the call, the first action
item is clicked first, so the player and the transcript show where it was said.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import ConsoleMessage, Page, sync_playwright

from parley_cli.main import media_options
from parley_devtools.chromium import CHROMIUM, CHROMIUM_ARGS

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
IMAGES = ROOT / "docs" / "images"
DESKTOP = {"viewport": {"width": 1440, "height": 900}, "device_scale_factor": 1}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}
APP = {"type": "application", "appId": "parley-dev", "appSecret": "parley-dev-secret"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_engine(port: int, data_dir: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "PARLEY_HTTP_HOST": "127.0.0.1",
        "PARLEY_HTTP_PORT": str(port),
        "PARLEY_ENGINE_DATA_DIR": str(data_dir),
        "PARLEY_APP_ID": APP["appId"],
        "PARLEY_APP_SECRET": APP["appSecret"],
        "PARLEY_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "parley_engine"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
    )


def wait_until_up(http: httpx.Client, engine: subprocess.Popen[bytes], seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if engine.poll() is not None:
            raise RuntimeError(f"the engine exited with {engine.returncode}")
        try:
            if http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError("the engine did not start")


def submit(http: httpx.Client) -> dict[str, str]:
    """The two samples as Async API jobs; their conversation ids once both are analysed."""
    meeting = http.post("/v1/process/text", json=json.loads((SAMPLES / "meeting.json").read_text()))
    recording = SAMPLES / "support-call.ogg"
    query = {k: v if isinstance(v, str) else json.dumps(v) for k, v in media_options(recording).items()}
    call = http.post(
        "/v1/process/audio", content=recording.read_bytes(), params=query, headers={"Content-Type": "audio/ogg"}
    )
    accepted = {"meeting": meeting.raise_for_status().json(), "call": call.raise_for_status().json()}
    deadline = time.monotonic() + 900
    for name, job in accepted.items():
        while (status := http.get(f"/v1/job/{job['jobId']}").json()["status"]) not in ("completed", "failed"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the {name} job is still {status}")
            time.sleep(0.5)  # polled like any Async API client
        if status == "failed":
            raise RuntimeError(f"the {name} job failed: {http.get('/v1/job/' + job['jobId']).json()}")
    return {name: job["conversationId"] for name, job in accepted.items()}


def page_url(http: httpx.Client, conversation_id: str, request: dict[str, Any]) -> str:
    response = http.post(f"/v1/conversations/{conversation_id}/experiences", json=request)
    response.raise_for_status()
    url: str = response.json()["url"]
    return url


def show_first_action_item(page: Page) -> None:
    """Clicks the first action item (or question) so the player and transcript move to it, then pauses there."""
    page.wait_for_function("document.getElementById('player').readyState >= 1", timeout=15_000)
    moment = page.locator("#action-items button.moment, #questions button.moment").first
    moment.click()
    page.wait_for_timeout(400)
    page.eval_on_selector("#player", "player => player.pause()")
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.mouse.move(0, 0)
    page.wait_for_timeout(600)  # the smooth scroll settles


def _note_error(errors: list[str], message: ConsoleMessage) -> None:
    if message.type == "error":
        errors.append(message.text)


def screenshots(pages: dict[str, str], out: Path) -> list[Path]:
    saved = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name, url in pages.items():
                for device, options in (("desktop", DESKTOP), ("phone", PHONE)):
                    context = browser.new_context(**options)  # type: ignore[arg-type]
                    page = context.new_page()
                    errors: list[str] = []
                    page.on("console", partial(_note_error, errors))
                    page.goto(url)
                    if name == "call":
                        show_first_action_item(page)
                    path = out / f"experience-{name}-{device}.png"
                    page.screenshot(path=str(path))
                    saved.append(path)
                    context.close()
                    if errors:
                        raise RuntimeError(f"the {name} page logged errors: {errors}")
        finally:
            browser.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", type=Path, default=IMAGES, help="where the PNGs go (default: docs/images)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parley-screenshots-") as work:
        port = free_port()
        engine = start_engine(port, Path(work))
        try:
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120) as http:
                wait_until_up(http, engine)
                token = http.post("/oauth2/token:generate", json=APP).raise_for_status().json()["accessToken"]
                http.headers["Authorization"] = f"Bearer {token}"
                conversations = submit(http)
                pages = {
                    "meeting": page_url(http, conversations["meeting"], {"name": "verbose-text-summary"}),
                    "call": page_url(
                        http,
                        conversations["call"],
                        {
                            "name": "video-summary",
                            "color": {"background": "#0A2136", "topicsFilter": "#FF0000", "insightsFilter": "#FF0000"},
                        },
                    ),
                }
            for path in screenshots(pages, args.out):
                print(f"saved {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
        finally:
            engine.terminate()
            engine.wait(timeout=60)
    return 0


if __name__ == "__main__":
    sys.exit(main())
