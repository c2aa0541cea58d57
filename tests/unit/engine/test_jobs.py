"""The job runner: lifecycle, per-conversation order, failures as reasons, resumption after a restart."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from parley_engine.conversation import Speaker, Utterance
from parley_engine.jobs import JobRunner, reattributed, text_utterances
from parley_engine.store import NewConversation, NewJob, Store, utc_now
from parley_engine.workers import ThreadWorkers

from tests.support.engine import (
    TEXT_MESSAGES,
    FakeAnalyzer,
    FakeRecognizer,
    Gate,
    engine_settings,
    http_server,
    running_engine,
)


async def test_appends_run_in_submission_order_and_reanalyze_the_whole_conversation(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path, workers=4)) as engine:
        first = await engine.submit_text(TEXT_MESSAGES)
        cid = first["conversationId"]
        appended = []
        for n in range(4):
            message = {"payload": {"content": f"Appended message {n}."}, "from": {"name": "Ann"}}
            appended.append(await engine.submit_text([message], conversation_id=cid))
        assert all(body["conversationId"] == cid for body in appended)
        assert len({body["jobId"] for body in [first, *appended]}) == 5
        for body in [first, *appended]:
            assert (await engine.wait_for_job(body["jobId"]))["status"] == "completed"

        messages = (await engine.client.get(f"/v1/conversations/{cid}/messages", headers=engine.headers)).json()
        texts = [m["text"] for m in messages["messages"]]
        assert texts[2:] == [f"Appended message {n}." for n in range(4)]
        assert len({m["id"] for m in messages["messages"]}) == 6
        # Each job analyzed everything the conversation had so far, one job at a time.
        assert [count for conversation, count, _ in engine.analyzer.calls if conversation == cid] == [2, 3, 4, 5, 6]
        assert engine.analyzer.max_concurrent[cid] == 1
        summary = (await engine.client.get(f"/v1/conversations/{cid}/summary", headers=engine.headers)).json()
        assert summary["summary"][0]["text"] == "6 messages"


async def test_job_status_moves_through_scheduled_in_progress_completed(tmp_path: Path) -> None:
    gate = Gate()
    try:
        async with running_engine(engine_settings(tmp_path), analyzer=FakeAnalyzer(gate=gate)) as engine:
            body = await engine.submit_text(TEXT_MESSAGES)
            assert await asyncio.to_thread(gate.entered.wait, 5)
            during = (await engine.client.get(f"/v1/job/{body['jobId']}", headers=engine.headers)).json()
            assert during == {"id": body["jobId"], "status": "in_progress"}
            # Reading before completion returns what exists (nothing yet), not an error.
            early = await engine.client.get(
                f"/v1/conversations/{body['conversationId']}/messages", headers=engine.headers
            )
            assert early.json() == {"messages": []}
            gate.opened.set()
            done = await engine.wait_for_job(body["jobId"])
            assert done == {"id": body["jobId"], "status": "completed"}
    finally:
        gate.opened.set()


async def test_failed_jobs_carry_the_reason(tmp_path: Path) -> None:
    async def missing(_: web.Request) -> web.Response:
        return web.Response(status=404)

    async def huge(_: web.Request) -> web.Response:
        return web.Response(body=b"x" * 5000)

    async with (
        http_server({"/missing.wav": missing, "/huge.wav": huge}) as base,
        running_engine(engine_settings(tmp_path, max_upload_bytes=4096)) as engine,
    ):
        not_media = await engine.client.post("/v1/process/audio", content=b"BAD bytes", headers=engine.headers)
        failed = await engine.wait_for_job(not_media.json()["jobId"])
        assert failed == {
            "id": not_media.json()["jobId"],
            "status": "failed",
            "reason": "the file holds no audio this engine can read",
        }
        gone = await engine.client.post(
            "/v1/process/audio/url", json={"url": f"{base}/missing.wav"}, headers=engine.headers
        )
        failed = await engine.wait_for_job(gone.json()["jobId"])
        assert failed["status"] == "failed"
        assert "HTTP 404" in failed["reason"]
        too_big = await engine.client.post(
            "/v1/process/video/url", json={"url": f"{base}/huge.wav"}, headers=engine.headers
        )
        failed = await engine.wait_for_job(too_big.json()["jobId"])
        assert "larger than 4096 bytes" in failed["reason"]
        unreachable = await engine.client.post(
            "/v1/process/audio/url", json={"url": "http://127.0.0.1:9/nothing.wav"}, headers=engine.headers
        )
        failed = await engine.wait_for_job(unreachable.json()["jobId"])
        assert failed["reason"].startswith("could not download http://127.0.0.1:9/nothing.wav")
        assert list((tmp_path / "media").iterdir()) == []

        engine.analyzer.fail_with = RuntimeError("spaCy exploded")
        broken = await engine.submit_text(TEXT_MESSAGES)
        failed = await engine.wait_for_job(broken["jobId"])
        assert failed["reason"] == "internal error: RuntimeError: spaCy exploded"
        # The runner survived: the next job still completes.
        engine.analyzer.fail_with = None
        fine = await engine.submit_text(TEXT_MESSAGES)
        assert (await engine.wait_for_job(fine["jobId"]))["status"] == "completed"


async def test_a_stopped_engine_finishes_its_jobs_after_restart(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path)
    gate = Gate()
    try:
        async with running_engine(settings, analyzer=FakeAnalyzer(gate=gate)) as engine:
            body = await engine.submit_text(TEXT_MESSAGES)
            waiting = await engine.submit_text(TEXT_MESSAGES[:1], conversation_id=body["conversationId"])
            assert await asyncio.to_thread(gate.entered.wait, 5)
        async with running_engine(settings) as engine:
            for job in (body, waiting):
                assert (await engine.wait_for_job(job["jobId"]))["status"] == "completed"
            messages = (
                await engine.client.get(f"/v1/conversations/{body['conversationId']}/messages", headers=engine.headers)
            ).json()["messages"]
            assert [m["text"] for m in messages] == [
                TEXT_MESSAGES[0]["payload"]["content"],
                TEXT_MESSAGES[1]["payload"]["content"],
                TEXT_MESSAGES[0]["payload"]["content"],
            ]
    finally:
        gate.opened.set()


async def test_jobs_left_in_progress_by_a_crash_are_resumed(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path)
    store = await Store.open(settings.resolved_database_url)
    job = NewJob(id="00000000-0000-4000-8000-000000000001", kind="text", options={}, input_json=TEXT_MESSAGES)
    conversation = NewConversation(id="1234567890123456", name="crash", source="text", start_time=utc_now())
    await store.jobs.submit_job(job, new_conversation=conversation)
    claimed = await store.jobs.claim_next_job()
    assert claimed is not None and claimed.status == "in_progress"
    await store.close()  # the process "dies" here: nothing resets the job

    store = await Store.open(settings.resolved_database_url)
    runner = JobRunner(store.jobs, store.conversations, ThreadWorkers(FakeRecognizer, FakeAnalyzer), settings)
    await runner.start()
    try:
        deadline = time.monotonic() + 10
        while (row := await store.jobs.job(job.id)) is not None and row.status != "completed":
            assert time.monotonic() < deadline, row.status
            await asyncio.sleep(0.02)
        assert len(await store.conversations.utterances(conversation.id)) == 2
    finally:
        await runner.stop()
        await store.close()


async def test_speaker_events_reattribute_an_audio_conversation(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        audio = await engine.client.post("/v1/process/audio", content=b"audio", headers=engine.headers)
        cid = audio.json()["conversationId"]
        await engine.wait_for_job(audio.json()["jobId"])

        def event(kind: str, name: str, seconds: float) -> dict[str, object]:
            user = {"id": f"{name.lower()}@example.com", "name": name, "email": f"{name.lower()}@example.com"}
            return {"type": kind, "user": user, "offset": {"seconds": int(seconds), "nanos": 0}}

        events = [
            event("started_speaking", "Ann", 0),
            event("stopped_speaking", "Ann", 2),
            event("started_speaking", "Bob", 2),
            event("stopped_speaking", "Bob", 4),
        ]
        response = await engine.client.put(
            f"/v1/conversations/{cid}/speakers", json={"speakerEvents": events}, headers=engine.headers
        )
        assert response.status_code == 200
        assert "message" in response.json()
        deadline = time.monotonic() + 10
        while True:
            messages = (await engine.client.get(f"/v1/conversations/{cid}/messages", headers=engine.headers)).json()
            names = [m["from"]["name"] for m in messages["messages"]]
            if names == ["Ann", "Bob"]:
                break
            assert time.monotonic() < deadline, names
            await asyncio.sleep(0.02)
        members = (await engine.client.get(f"/v1/conversations/{cid}/members", headers=engine.headers)).json()
        assert sorted(m["name"] for m in members["members"]) == ["Ann", "Bob"]

        bad = await engine.client.put(
            f"/v1/conversations/{cid}/speakers", json={"speakerEvents": [{"type": "coughed"}]}, headers=engine.headers
        )
        assert bad.status_code == 400


def test_reattribution_picks_the_speaker_with_most_overlap() -> None:
    utterances = [
        Utterance(id="1", text="a", speaker=Speaker(name="Speaker 1"), start_offset=0.0, end_offset=3.0),
        Utterance(id="2", text="b", speaker=Speaker(name="Speaker 1"), start_offset=3.0, end_offset=5.0),
        Utterance(id="3", text="c", speaker=Speaker(name="Speaker 1"), start_offset=9.0, end_offset=9.5),
        Utterance(id="4", text="d", speaker=Speaker(name="Speaker 1")),
    ]
    events = [
        {"type": "started_speaking", "user": {"id": "a", "name": "Ann"}, "offset": {"seconds": 0, "nanos": 0}},
        {"type": "started_speaking", "user": {"id": "b", "name": "Bob"}, "offset": {"seconds": 2, "nanos": 500000000}},
        {"type": "stopped_speaking", "user": {"id": "a", "name": "Ann"}, "offset": {"seconds": 2, "nanos": 500000000}},
        {"type": "stopped_speaking", "user": {"id": "b", "name": "Bob"}, "offset": {"seconds": 6, "nanos": 0}},
    ]
    names = [u.speaker.name for u in reattributed(utterances, events)]
    # 0-3: Ann 2.5 s vs Bob 0.5 s; 3-5: Bob; 9-9.5: nobody, Bob started last; no timing: unchanged.
    assert names == ["Ann", "Bob", "Bob", "Speaker 1"]


def test_text_messages_become_utterances_timed_from_the_conversation_start() -> None:
    from datetime import datetime

    start = datetime.fromisoformat("2020-07-21T16:02:19.010+00:00")
    stored: list[dict[str, Any]] = [
        {
            "payload": {"content": "Hello"},
            "from": {"userId": "ann@example.com", "name": "Ann"},
            "duration": {"startTime": "2020-07-21T16:02:20.010+00:00", "endTime": "2020-07-21T16:02:21.510+00:00"},
        },
        {"payload": {"content": "Untimed"}, "from": None, "duration": {"startTime": None, "endTime": None}},
    ]
    first, second = text_utterances(stored, start, 5, "1234567890")
    assert first.id == "1234567890000005" and second.id == "1234567890000006"
    assert (first.start_offset, first.end_offset) == (1.0, 2.5)
    assert first.speaker.email == "ann@example.com" and first.speaker.name == "Ann"
    assert second.start_offset is None and second.speaker.name is None
