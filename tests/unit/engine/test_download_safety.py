"""The engine refuses to download media from its own network unless PARLEY_ALLOW_PRIVATE_MEDIA_URLS allows it.

Only loopback is ever contacted here: private, link-local and DNS-name cases are in tests/unit/test_url_safety.py
with a fake resolver.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from tests.support.engine import engine_settings, http_server, running_engine


async def test_media_urls_on_loopback_fail_the_job_with_the_reason_and_are_not_requested(tmp_path: Path) -> None:
    requested: list[str] = []

    async def media(request: web.Request) -> web.Response:
        requested.append(request.path)
        return web.Response(body=b"RIFF-media", content_type="audio/wav")

    async with (
        http_server({"/a.wav": media, "/hop": media}) as base,
        running_engine(engine_settings(tmp_path, allow_private_media_urls=False)) as engine,
    ):
        port = base.rsplit(":", 1)[1]
        refused = {
            f"{base}/a.wav": "the URL points to a loopback address 127.0.0.1, which this engine does not fetch",
            f"http://2130706433:{port}/a.wav": "the URL points to a loopback address 127.0.0.1, "
            "which this engine does not fetch",
            f"http://[::ffff:127.0.0.1]:{port}/a.wav": "the URL points to a loopback address ::ffff:7f00:1, "
            "which this engine does not fetch",
            f"http://localhost:{port}/a.wav": "the URL names the local host 'localhost', "
            "which this engine does not fetch",
        }
        for url, reason in refused.items():
            submitted = await engine.client.post("/v1/process/audio/url", json={"url": url}, headers=engine.headers)
            assert submitted.status_code == 200, submitted.text
            job_id = submitted.json()["jobId"]
            job = await engine.wait_for_job(job_id)
            assert job == {"id": job_id, "status": "failed", "reason": f"could not download {url}: {reason}"}
        assert requested == []
        assert not (tmp_path / "media").exists() or list((tmp_path / "media").iterdir()) == []


async def test_allow_private_media_urls_downloads_from_loopback(tmp_path: Path) -> None:
    async def media(_: web.Request) -> web.Response:
        return web.Response(body=b"RIFF-media", content_type="audio/wav")

    async def hop(_: web.Request) -> web.Response:
        raise web.HTTPFound("/a.wav")

    async with (
        http_server({"/a.wav": media, "/hop": hop}) as base,
        running_engine(engine_settings(tmp_path, allow_private_media_urls=True)) as engine,
    ):
        port = base.rsplit(":", 1)[1]
        # "localhost" may answer ::1 first; the server listens on 127.0.0.1 only, so the next address is tried.
        for url in (f"{base}/a.wav", f"http://localhost:{port}/hop"):
            submitted = await engine.client.post("/v1/process/audio/url", json={"url": url}, headers=engine.headers)
            job = await engine.wait_for_job(submitted.json()["jobId"])
            assert job["status"] == "completed", (url, job)
        assert engine.recognizer.calls, "the downloaded media reached the recognizer"
