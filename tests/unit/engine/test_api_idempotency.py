"""The Async API's ``Idempotency-Key`` over the real app and store: a repeat gets the first job and creates none."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from parley_engine.store import JobRow
from sqlalchemy import func, select

from tests.support.engine import TEXT_MESSAGES, RunningEngine, engine_settings, running_engine

TEXT = {"name": "Idempotent", "messages": TEXT_MESSAGES}


async def job_count(engine: RunningEngine) -> int:
    async with engine.components.store.database.read() as session:
        return int(await session.scalar(select(func.count()).select_from(JobRow)) or 0)


async def post(engine: RunningEngine, path: str, key: str | None = None, **kwargs: Any) -> Any:
    headers = {**engine.headers, **({"Idempotency-Key": key} if key is not None else {})}
    return await engine.client.post(path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)


async def test_a_repeated_key_returns_the_first_job_and_creates_no_other(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        first = await post(engine, "/v1/process/text", "request-1", json=TEXT)
        repeat = await post(engine, "/v1/process/text", "request-1", json=TEXT)
        assert (first.status_code, repeat.status_code) == (200, 200)
        assert repeat.json() == first.json()
        assert await job_count(engine) == 1

        # Appends too: the repeat of a PUT is answered with the job it appended, the conversation has two jobs.
        conversation_id = first.json()["conversationId"]
        put_path = f"/v1/process/text/{conversation_id}"
        appended = await engine.client.put(put_path, json=TEXT, headers={**engine.headers, "Idempotency-Key": "a-1"})
        again = await engine.client.put(put_path, json=TEXT, headers={**engine.headers, "Idempotency-Key": "a-1"})
        assert appended.status_code == again.status_code == 200
        assert again.json() == appended.json() == {"conversationId": conversation_id, "jobId": again.json()["jobId"]}
        assert len(await engine.components.store.jobs.conversation_jobs(conversation_id)) == 2

        # Uploads: the repeat is answered before its body is needed, and no second file is kept.
        audio = {"Content-Type": "audio/wav"}
        uploaded = await post(engine, "/v1/process/audio", "upload-1", content=b"RIFF-audio", headers=audio)
        reuploaded = await post(engine, "/v1/process/audio", "upload-1", content=b"RIFF-audio", headers=audio)
        assert uploaded.status_code == reuploaded.status_code == 200
        assert reuploaded.json() == uploaded.json()
        assert await job_count(engine) == 3


async def test_concurrent_requests_with_one_key_create_one_job(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        answers = await asyncio.gather(*(post(engine, "/v1/process/text", "racing", json=TEXT) for _ in range(5)))
        assert {answer.status_code for answer in answers} == {200}
        assert len({answer.json()["jobId"] for answer in answers}) == 1
        assert await job_count(engine) == 1


async def test_a_key_reused_for_another_request_is_a_409_and_a_bad_key_a_400(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        assert (await post(engine, "/v1/process/text", "used-once", json=TEXT)).status_code == 200
        other = await post(engine, "/v1/process/audio/url", "used-once", json={"url": "https://example.com/a.wav"})
        assert other.status_code == 409
        assert "POST /v1/process/text" in other.json()["message"]
        for bad in ("", "k" * 256):
            refused = await post(engine, "/v1/process/text", bad, json=TEXT)
            assert refused.status_code == 400, bad
            assert "Idempotency-Key" in refused.json()["message"]
        assert await job_count(engine) == 1

        # Without a key, every request is a new job, as before.
        plain = [await post(engine, "/v1/process/text", json=TEXT) for _ in range(2)]
        assert plain[0].json()["jobId"] != plain[1].json()["jobId"]
        assert await job_count(engine) == 3


async def test_an_expired_key_is_deleted_and_may_be_used_again(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path, idempotency_key_hours=0.05 / 3600)) as engine:
        first = (await post(engine, "/v1/process/text", "short-lived", json=TEXT)).json()
        await asyncio.sleep(0.1)
        second = await post(engine, "/v1/process/text", "short-lived", json=TEXT)
        assert second.status_code == 200
        assert second.json()["jobId"] != first["jobId"]
        assert await job_count(engine) == 2
