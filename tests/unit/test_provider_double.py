"""The provider double speaks the Symbl subset the pipeline uses and logs enough to check the gate."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from parley_shared.settings import DEVELOPMENT_APP_ID, DEVELOPMENT_APP_SECRET
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from parley_devtools.provider_double import (
    FIXED_TRANSCRIPT,
    DoubleConfig,
    create_app,
    gate_violations,
    running,
)
from tests.support.servers import serving_asgi

REPOSITORY_ROOT = Path(__file__).resolve().parents[2]
FAST = {"scheduled_seconds": 0.05, "processing_seconds": 0.05}
CREDENTIALS = {"type": "application", "appId": DEVELOPMENT_APP_ID, "appSecret": DEVELOPMENT_APP_SECRET}
MEETING: dict[str, Any] = {
    "name": "Weekly sync",
    "messages": [
        {
            "payload": {"content": "Can you share the roadmap before Friday?", "contentType": "text/plain"},
            "from": {"userId": "natalia@example.com", "name": "Natalia"},
        },
        {
            "payload": {"content": "Yes, I will send it tonight."},
            "from": {"userId": "mike@example.com", "name": "Mike"},
        },
        {"payload": {"content": "Let's follow up on pricing next week."}, "from": {"name": "Natalia"}},
    ],
}


@asynccontextmanager
async def double_client(**settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    """A client of a running double (scheduler started), already holding a token."""
    app = create_app(DoubleConfig(**{**FAST, **settings}))
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://double") as client,
    ):
        token = (await client.post("/oauth2/token:generate", json=CREDENTIALS)).json()["accessToken"]
        client.headers["Authorization"] = f"Bearer {token}"
        yield client


async def wait_for_terminal(client: httpx.AsyncClient, job_id: str, within: float = 5.0) -> list[str]:
    """Poll the Job API until the job ends; return the statuses the job went through, from the double's log.

    (Polling alone can miss a short-lived status on a busy machine; the transition log cannot.)
    """
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = (await client.get(f"/v1/job/{job_id}")).json()["status"]
        if status in ("completed", "failed"):
            transitions = (await client.get("/_double/calls")).json()["transitions"]
            return [t["status"] for t in transitions if t["jobId"] == job_id]
        await asyncio.sleep(0.005)
    raise AssertionError(f"job {job_id} still not finished after {within}s")


async def test_token_is_issued_for_the_development_pair_and_reused_until_it_expires() -> None:
    app = create_app(DoubleConfig())
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://d") as client,
    ):
        first = await client.post("/oauth2/token:generate", json=CREDENTIALS)
        second = await client.post("/oauth2/token:generate", json=CREDENTIALS)
        refused = await client.post("/oauth2/token:generate", json={**CREDENTIALS, "appSecret": "wrong"})

    assert first.status_code == 200
    assert first.json()["expiresIn"] == 86400
    assert second.json()["accessToken"] == first.json()["accessToken"]
    assert refused.status_code == 401
    assert "message" in refused.json()


async def test_provider_endpoints_refuse_requests_without_a_valid_token() -> None:
    async with double_client() as client:
        submitted = (await client.post("/v1/process/text", json=MEETING)).json()
        token = client.headers.pop("Authorization").removeprefix("Bearer ")

        no_token = await client.post("/v1/process/text", json=MEETING)
        wrong_token = await client.get(f"/v1/job/{submitted['jobId']}", headers={"x-api-key": "forged"})
        read = await client.get(f"/v1/conversations/{submitted['conversationId']}/messages")
        api_key = await client.get(f"/v1/job/{submitted['jobId']}", headers={"x-api-key": token})

    assert no_token.status_code == wrong_token.status_code == read.status_code == 401
    assert no_token.json() == {"message": "Token validation failed for provided token."}
    assert api_key.status_code == 200


async def test_an_expired_token_is_refused_and_a_fresh_one_is_issued() -> None:
    async with double_client(token_ttl_seconds=1) as client:
        old_token = client.headers["Authorization"].removeprefix("Bearer ")
        await asyncio.sleep(1.05)
        refused = await client.post("/v1/process/text", json=MEETING)
        renewed = (await client.post("/oauth2/token:generate", json=CREDENTIALS)).json()["accessToken"]

    assert refused.status_code == 401
    assert renewed != old_token


async def test_a_text_job_goes_scheduled_then_in_progress_then_completed() -> None:
    async with double_client() as client:
        response = await client.post("/v1/process/text", json=MEETING)
        body = response.json()
        seen = await wait_for_terminal(client, body["jobId"])
        transitions = (await client.get("/_double/calls")).json()["transitions"]

    assert response.status_code == 200
    assert len(body["conversationId"]) == 16 and body["conversationId"].isdigit()
    assert seen == ["scheduled", "in_progress", "completed"]
    times = {t["status"]: t["t"] for t in transitions if t["jobId"] == body["jobId"]}
    assert list(times) == ["scheduled", "in_progress", "completed"]
    assert times["in_progress"] - times["scheduled"] >= 0.04
    assert times["completed"] - times["in_progress"] >= 0.04


async def test_insights_are_derived_from_the_completed_messages_in_the_documented_shapes() -> None:
    async with double_client() as client:
        submitted = (await client.post("/v1/process/text", json=MEETING)).json()
        conversation = f"/v1/conversations/{submitted['conversationId']}"
        before = (await client.get(f"{conversation}/messages")).json()
        await wait_for_terminal(client, submitted["jobId"])
        aspects = ["messages", "questions", "action-items", "follow-ups", "members", "topics", "entities"]
        bodies = {aspect: (await client.get(f"{conversation}/{aspect}")).json() for aspect in aspects}
        analytics = (await client.get(f"{conversation}/analytics")).json()
        summary = (await client.get(f"{conversation}/summary")).json()
        unknown = await client.get("/v1/conversations/1234567890123456/messages")

    assert before == {"messages": []}, "insights read before completion must be incomplete"
    messages = bodies["messages"]["messages"]
    assert [m["text"] for m in messages] == [m["payload"]["content"] for m in MEETING["messages"]]
    assert all(m["id"].isdigit() and m["conversationId"] == submitted["conversationId"] for m in messages)
    assert messages[0]["from"]["name"] == "Natalia"
    assert [q["text"] for q in bodies["questions"]["questions"]] == ["Can you share the roadmap before Friday?"]
    assert bodies["questions"]["questions"][0]["messageIds"] == [messages[0]["id"]]
    assert [a["text"] for a in bodies["action-items"]["actionItems"]] == [
        "Yes, I will send it tonight.",
        "Let's follow up on pricing next week.",
    ]
    assert bodies["action-items"]["actionItems"][0]["type"] == "action_item"
    assert [f["type"] for f in bodies["follow-ups"]["followUps"]] == ["follow_up"]
    assert [(m["name"], m.get("email")) for m in bodies["members"]["members"]] == [
        ("Natalia", "natalia@example.com"),
        ("Mike", "mike@example.com"),
    ]
    assert all(t["type"] == "topic" and t["messageIds"] for t in bodies["topics"]["topics"])
    assert [e["value"] for e in bodies["entities"]["entities"]] == ["friday"]
    assert {m["type"] for m in analytics["metrics"]} == {"total_silence", "total_talk_time", "total_overlap"}
    assert [m["name"] for m in analytics["members"]] == ["Natalia", "Mike"]
    assert summary["summary"][0]["messageRefs"] == [{"id": messages[0]["id"]}, {"id": messages[1]["id"]}]
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "The conversationId is either invalid or does not exist."}


@pytest.mark.parametrize(
    "request_body",
    [
        {**MEETING, "messages": [*MEETING["messages"], {"payload": {"content": "this one #fail s"}}]},
        {**MEETING, "name": "scripted #fail"},
    ],
    ids=["marker-in-content", "marker-in-name"],
)
async def test_the_fail_marker_makes_the_job_fail_with_a_reason(request_body: dict[str, Any]) -> None:
    async with double_client() as client:
        job_id = (await client.post("/v1/process/text", json=request_body)).json()["jobId"]
        seen = await wait_for_terminal(client, job_id)
        status = (await client.get(f"/v1/job/{job_id}")).json()

    assert seen == ["scheduled", "in_progress", "failed"]
    assert status == {"id": job_id, "status": "failed", "reason": "scripted failure"}


async def test_append_gives_a_new_job_on_the_same_conversation_and_jobs_finish_in_order() -> None:
    async with double_client() as client:
        first = (await client.post("/v1/process/text", json=MEETING)).json()
        appended = await client.put(
            f"/v1/process/text/{first['conversationId']}",
            json={"messages": [{"payload": {"content": "One more thing."}}]},
        )
        second = appended.json()
        await wait_for_terminal(client, second["jobId"])
        jobs = {job["jobId"]: job for job in (await client.get("/_double/jobs")).json()["jobs"]}
        messages = (await client.get(f"/v1/conversations/{first['conversationId']}/messages")).json()["messages"]
        unknown = await client.put("/v1/process/text/1234567890123456", json=MEETING)

    assert appended.status_code == 200
    assert second["conversationId"] == first["conversationId"]
    assert second["jobId"] != first["jobId"]
    assert jobs[first["jobId"]]["status"] == jobs[second["jobId"]]["status"] == "completed"
    assert jobs[first["jobId"]]["completedAt"] < jobs[second["jobId"]]["completedAt"]
    assert [m["text"] for m in messages][-1] == "One more thing."
    assert len(messages) == len(MEETING["messages"]) + 1
    assert unknown.status_code == 404
    assert unknown.json() == {"message": "The conversationId is either invalid or does not exist."}


@pytest.mark.parametrize(
    ("path", "request_body", "mentions"),
    [
        ("/v1/process/text", {"name": "no messages"}, '"messages"'),
        ("/v1/process/text", {"messages": []}, '"messages"'),
        ("/v1/process/text", {"messages": [{"payload": {}}]}, "messages[0].payload.content"),
        ("/v1/process/text", {"messages": [{"from": {"name": "A"}}]}, "messages[0].payload.content"),
        ("/v1/process/audio/url", {"name": "no url"}, '"url"'),
        ("/v1/process/video/url", {"url": ""}, '"url"'),
    ],
)
async def test_malformed_submissions_get_400_with_a_message(
    path: str, request_body: dict[str, Any], mentions: str
) -> None:
    async with double_client() as client:
        response = await client.post(path, json=request_body)
        not_json = await client.post("/v1/process/text", content=b"{not json")

    assert response.status_code == 400
    assert mentions in response.json()["message"]
    assert not_json.status_code == 400
    assert "message" in not_json.json()


async def test_media_uploads_are_counted_and_transcribed_to_the_fixed_message() -> None:
    async with double_client() as client:
        upload = await client.post(
            "/v1/process/audio",
            params={"name": "call"},
            content=b"\0" * 70_000,
            headers={"content-type": "audio/wav"},
        )
        submitted = upload.json()
        await wait_for_terminal(client, submitted["jobId"])
        jobs = (await client.get("/_double/jobs")).json()["jobs"]
        messages = (await client.get(f"/v1/conversations/{submitted['conversationId']}/messages")).json()
        by_url = await client.put(
            f"/v1/process/video/url/{submitted['conversationId']}", json={"url": "https://example.com/a.mp4"}
        )
        empty = await client.post("/v1/process/video", content=b"")

    assert upload.status_code == 200
    assert jobs[0]["bodyBytes"] == 70_000
    assert [m["text"] for m in messages["messages"]] == [FIXED_TRANSCRIPT]
    assert by_url.json()["conversationId"] == submitted["conversationId"]
    assert empty.status_code == 400


async def test_unknown_job_is_404() -> None:
    async with double_client() as client:
        response = await client.get("/v1/job/9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d")

    assert response.status_code == 404
    assert "message" in response.json()


async def test_the_call_log_records_requests_with_their_ids_and_reset_clears_everything() -> None:
    async with double_client() as client:
        submitted = (await client.post("/v1/process/text", json=MEETING)).json()
        await client.get(f"/v1/job/{submitted['jobId']}")
        await client.get(f"/v1/conversations/{submitted['conversationId']}/topics")
        log = (await client.get("/_double/calls")).json()
        await client.post("/_double/reset")
        after_reset = (await client.get("/_double/calls")).json()
        jobs_after_reset = (await client.get("/_double/jobs")).json()["jobs"]
        gone = await client.get(f"/v1/job/{submitted['jobId']}")

    submit, status, read = log["calls"][-3:]
    assert (submit["method"], submit["path"], submit["status"]) == ("POST", "/v1/process/text", 200)
    assert submit["conversationId"] == submitted["conversationId"] and submit["jobId"] == submitted["jobId"]
    assert status["jobId"] == submitted["jobId"] and status["conversationId"] == submitted["conversationId"]
    assert read["conversationId"] == submitted["conversationId"]
    assert log["transitions"][0] == {
        **log["transitions"][0],
        "jobId": submitted["jobId"],
        "status": "scheduled",
    }
    assert after_reset == {"calls": [], "transitions": []}
    assert jobs_after_reset == []
    assert gone.status_code == 404


def _transition(t: float, job_id: str, status: str, conversation_id: str = "C") -> dict[str, Any]:
    return {"t": t, "jobId": job_id, "conversationId": conversation_id, "status": status}


def _read(t: float, conversation_id: str = "C", aspect: str = "messages") -> dict[str, Any]:
    path = f"/v1/conversations/{conversation_id}/{aspect}"
    return {"t": t, "method": "GET", "path": path, "status": 200, "conversationId": conversation_id}


def test_gate_violations_flags_reads_before_the_latest_job_completed() -> None:
    transitions = [
        _transition(1.0, "j1", "scheduled"),
        _transition(2.0, "j1", "in_progress"),
        _transition(3.0, "j1", "completed"),
        _transition(4.0, "j2", "scheduled"),
        _transition(6.0, "j2", "completed"),
        _transition(1.0, "k1", "scheduled", "K"),
        _transition(2.0, "k1", "failed", "K"),
    ]
    early = _read(2.5)
    after_first = _read(3.0)
    during_append = _read(5.0, aspect="topics")
    after_append = _read(6.5)
    before_any_job = _read(0.5)
    failed_conversation = _read(3.0, "K")
    unknown_conversation = _read(3.0, "U")
    job_poll = {"t": 2.5, "method": "GET", "path": "/v1/job/j1", "status": 200, "jobId": "j1"}
    calls = [
        early,
        after_first,
        during_append,
        after_append,
        before_any_job,
        failed_conversation,
        unknown_conversation,
        job_poll,
    ]

    violations = gate_violations(calls, transitions)

    assert violations == [
        {**early, "pendingJobId": "j1"},
        {**during_append, "pendingJobId": "j2"},
        {**before_any_job, "pendingJobId": None},
        {**failed_conversation, "pendingJobId": "k1"},
    ]


def test_gate_violations_is_empty_when_every_read_follows_completion() -> None:
    transitions = [_transition(1.0, "j1", "scheduled"), _transition(2.0, "j1", "completed")]

    assert gate_violations([_read(2.0), _read(9.0, aspect="summary")], transitions) == []


async def test_gate_violations_on_the_doubles_own_log() -> None:
    async with double_client() as client:
        submitted = (await client.post("/v1/process/text", json=MEETING)).json()
        await client.get(f"/v1/conversations/{submitted['conversationId']}/messages")
        await wait_for_terminal(client, submitted["jobId"])
        await client.get(f"/v1/conversations/{submitted['conversationId']}/questions")
        log = (await client.get("/_double/calls")).json()

    violations = gate_violations(log["calls"], log["transitions"])

    assert [v["path"] for v in violations] == [f"/v1/conversations/{submitted['conversationId']}/messages"]
    assert violations[0]["pendingJobId"] == submitted["jobId"]


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[tuple[str, list[dict[str, Any]]]]:
    """A real HTTP server on a free loopback port that records the JSON bodies posted to it."""
    received: list[dict[str, Any]] = []

    async def record(request: Request) -> Response:
        received.append(json.loads(await request.body()))
        return Response(status_code=204)

    async with serving_asgi(Starlette(routes=[Route("/hook", record, methods=["POST"])])) as base:
        yield f"{base}/hook", received


async def wait_until(condition: Callable[[], Awaitable[bool]], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while not await condition():  # noqa: ASYNC110 - polling an HTTP endpoint or a list, no event to wait on
            await asyncio.sleep(0.01)


async def test_webhooks_report_every_status_change_with_four_fields() -> None:
    async with webhook_receiver() as (hook_url, received), double_client() as client:
        text = (await client.post("/v1/process/text", json={**MEETING, "webhookUrl": hook_url})).json()
        audio = (await client.post("/v1/process/audio", params={"webhookUrl": hook_url}, content=b"RIFF")).json()

        async def all_six_arrived() -> bool:
            return len(received) >= 6

        await wait_until(all_six_arrived)
        counters = (await client.get("/_double/jobs")).json()["webhooks"]

    for submitted in (text, audio):
        calls = [body for body in received if body["jobId"] == submitted["jobId"]]
        assert sorted(body["status"] for body in calls) == ["completed", "in_progress", "scheduled"]
        assert all(
            body == {**submitted, "id": submitted["jobId"], "status": body["status"]} and len(body) == 4
            for body in calls
        )
    assert counters == {"delivered": 6, "failed": 0, "dropped": 0}


async def test_dropped_and_undeliverable_webhooks_never_arrive_and_failures_are_counted() -> None:
    async with webhook_receiver() as (hook_url, received):
        async with double_client(drop_webhooks=True) as client:
            job_id = (await client.post("/v1/process/text", json={**MEETING, "webhookUrl": hook_url})).json()["jobId"]
            assert await wait_for_terminal(client, job_id) == ["scheduled", "in_progress", "completed"]
            # Each status change either posts a webhook or counts it as dropped, at the moment it happens.
            dropped = (await client.get("/_double/jobs")).json()["webhooks"]
        assert dropped == {"delivered": 0, "failed": 0, "dropped": 3}
        assert received == []

    async with double_client(webhook_timeout_seconds=1) as client:
        unreachable = hook_url  # the receiver has stopped, so its port refuses connections
        job_id = (await client.post("/v1/process/text", json={**MEETING, "webhookUrl": unreachable})).json()["jobId"]
        await wait_for_terminal(client, job_id)

        async def three_failures_counted() -> bool:
            return (await client.get("/_double/jobs")).json()["webhooks"]["failed"] >= 3

        await wait_until(three_failures_counted)
        counters = (await client.get("/_double/jobs")).json()["webhooks"]
    assert counters == {"delivered": 0, "failed": 3, "dropped": 0}


async def test_runs_as_a_process_and_announces_its_address() -> None:
    process = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "parley_devtools.provider_double",
            "--port",
            "0",
            "--processing-seconds",
            "0",
        ],
        stdout=asyncio.subprocess.PIPE,
        cwd=REPOSITORY_ROOT,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 15)).decode()
        assert line.startswith("provider double listening on http://127.0.0.1:")
        base_url = line.split()[-1]
        async with httpx.AsyncClient(base_url=base_url, timeout=5) as client:
            token = (await client.post("/oauth2/token:generate", json=CREDENTIALS)).json()["accessToken"]
            submitted = await client.post("/v1/process/text", json=MEETING, headers={"x-api-key": token})
        assert submitted.status_code == 200
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), 10)
