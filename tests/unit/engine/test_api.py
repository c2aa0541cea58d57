"""The engine's auth and Async API over the real app and store, with fake speech and analysis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.support.engine import TEXT_MESSAGES, engine_settings, http_server, running_engine

TOKEN_REJECTED = {"message": "Token validation failed for provided token."}
NOT_FOUND = {"message": "The conversationId is either invalid or does not exist."}


async def test_token_is_reused_while_valid_and_wrong_credentials_get_401(tmp_path: Path) -> None:
    settings = engine_settings(tmp_path, token_ttl_seconds=3600)
    async with running_engine(settings) as engine:
        request = {"type": "application", "appId": "test-app", "appSecret": "test-secret"}
        first = (await engine.client.post("/oauth2/token:generate", json=request)).json()
        second = (await engine.client.post("/oauth2/token:generate", json=request)).json()
        assert second["accessToken"] == first["accessToken"]
        assert 3500 < second["expiresIn"] <= 3600
        assert first["accessToken"].count(".") == 2  # a JWT, as Symbl's are

        wrong = await engine.client.post("/oauth2/token:generate", json={**request, "appSecret": "nope"})
        assert wrong.status_code == 401
        assert "message" in wrong.json()
        missing = await engine.client.post("/oauth2/token:generate", json={"type": "application"})
        assert missing.status_code == 400
        assert "appId" in missing.json()["message"]
    # A token issued before a restart is still accepted after it (the signing key is in the database).
    async with running_engine(settings) as engine:
        again = await engine.client.get(
            "/v1/conversations", headers={"Authorization": f"Bearer {first['accessToken']}"}
        )
        assert again.status_code == 200


async def test_three_ways_to_present_a_token_and_the_401_body(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path, token_grace_seconds=60)) as engine:
        token = engine.headers["Authorization"].removeprefix("Bearer ")
        assert (await engine.client.get("/v1/conversations", headers={"x-api-key": token})).status_code == 200
        assert (await engine.client.get(f"/v1/conversations?access_token={token}")).status_code == 200
        assert (await engine.client.get("/v1/conversations", headers=engine.headers)).status_code == 200

        # A signature character changed well inside it: the last character of base64 carries padding bits, so
        # changing it can leave the decoded signature as it was.
        position = len(token) - 10
        forged = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
        for headers in ({}, {"Authorization": "Bearer nonsense"}, {"x-api-key": forged}):
            response = await engine.client.get("/v1/conversations", headers=headers)
            assert response.status_code == 401
            assert response.json() == TOKEN_REJECTED

        authority = engine.components.token_authority
        within_grace = authority.sign_token("test-app", datetime.now(UTC) - timedelta(seconds=30))
        beyond_grace = authority.sign_token("test-app", datetime.now(UTC) - timedelta(seconds=120))
        other_app = authority.sign_token("other-app", datetime.now(UTC) + timedelta(hours=1))
        assert (await engine.client.get("/v1/conversations", headers={"x-api-key": within_grace})).status_code == 200
        for rejected in (beyond_grace, other_app):
            response = await engine.client.get("/v1/conversations", headers={"x-api-key": rejected})
            assert response.status_code == 401
            assert response.json() == TOKEN_REJECTED
        assert (await engine.client.get("/healthz")).status_code == 200
        assert (await engine.client.get("/readyz")).json()["status"] == "ok"


async def test_all_ten_async_paths_accept_and_complete(tmp_path: Path) -> None:
    async def media(_: web.Request) -> web.Response:
        return web.Response(body=b"downloaded-media", content_type="audio/wav")

    async with (
        http_server({"/media.wav": media, "/video.mp4": media}) as base,
        running_engine(engine_settings(tmp_path)) as engine,
    ):
        client, headers = engine.client, engine.headers
        submitted: list[tuple[str, dict[str, str]]] = []

        async def submit(
            method: str, path: str, extra_headers: dict[str, str] | None = None, **kwargs: Any
        ) -> dict[str, str]:
            response = await client.request(method, path, headers={**headers, **(extra_headers or {})}, **kwargs)
            assert response.status_code == 200, (path, response.text)
            body: dict[str, str] = response.json()
            assert set(body) == {"conversationId", "jobId"}
            submitted.append((path, body))
            return body

        text = await submit("POST", "/v1/process/text", json={"messages": TEXT_MESSAGES, "name": "Review"})
        cid = text["conversationId"]
        assert len(cid) == 16 and cid.isdigit() and cid[0] != "0"
        await submit("PUT", f"/v1/process/text/{cid}", json={"messages": TEXT_MESSAGES[:1]})
        audio = await submit(
            "POST",
            "/v1/process/audio?name=Call&customVocabulary=%5B%22Parley%22%5D&languageCode=en-US",
            content=b"audio-bytes-1",
            extra_headers={"Content-Type": "audio/wav"},
        )
        await submit("PUT", f"/v1/process/audio/{audio['conversationId']}", content=b"audio-bytes-2")
        audio_url = await submit("POST", "/v1/process/audio/url", json={"url": f"{base}/media.wav"})
        await submit("PUT", f"/v1/process/audio/url/{audio_url['conversationId']}", json={"url": f"{base}/media.wav"})
        video = await submit(
            "POST", "/v1/process/video", content=b"video-bytes", extra_headers={"Content-Type": "video/mp4"}
        )
        await submit(
            "PUT",
            f"/v1/process/video/{video['conversationId']}",
            content=b"video-bytes-2",
            extra_headers={"Content-Type": "video/mp4"},
        )
        video_url = await submit("POST", "/v1/process/video/url", json={"url": f"{base}/video.mp4"})
        await submit("PUT", f"/v1/process/video/url/{video_url['conversationId']}", json={"url": f"{base}/video.mp4"})
        assert len({body["jobId"] for _, body in submitted}) == 10
        for _path, body in submitted:
            assert (await engine.wait_for_job(body["jobId"]))["status"] == "completed"

        # PUT appends to the same conversation: text 2 + 1 messages; each media job adds two.
        counts = {}
        for conversation in (cid, audio["conversationId"], audio_url["conversationId"], video["conversationId"]):
            messages = (await client.get(f"/v1/conversations/{conversation}/messages", headers=headers)).json()
            counts[conversation] = len(messages["messages"])
        assert counts == {
            cid: 3,
            audio["conversationId"]: 4,
            audio_url["conversationId"]: 4,
            video["conversationId"]: 4,
        }

        # Options from the query string reached the recognizer; the downloaded bytes are what it read.
        options = engine.recognizer.calls[0][1]
        assert options.custom_vocabulary == ["Parley"]
        conversation = (await client.get(f"/v1/conversations/{audio['conversationId']}", headers=headers)).json()
        assert conversation["name"] == "Call"
        downloaded = await client.get(f"/v1/conversations/{audio_url['conversationId']}/messages", headers=headers)
        assert downloaded.json()["messages"][0]["text"].startswith("Recording downloaded-m")
        # Appended audio continues after what the conversation had.
        appended = (await client.get(f"/v1/conversations/{audio['conversationId']}/messages", headers=headers)).json()
        assert [m["timeOffset"] for m in appended["messages"]] == [0.0, 2.0, 4.0, 6.0]
        # Media files are removed once their job is done.
        assert list((tmp_path / "media").iterdir()) == []


async def test_text_conversation_starts_at_the_first_message(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        body = await engine.submit_text(TEXT_MESSAGES)
        await engine.wait_for_job(body["jobId"])
        conversation = (
            await engine.client.get(f"/v1/conversations/{body['conversationId']}", headers=engine.headers)
        ).json()
        assert conversation["startTime"] == "2020-07-21T16:02:19.010Z"
        assert conversation["endTime"] == "2020-07-21T16:02:25.500Z"
        assert conversation["type"] == "meeting"
        assert conversation["name"] == body["conversationId"]  # Symbl's default name


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({}, "messages"),
        ({"messages": [{"payload": {}}]}, "messages.0.payload.content"),
        ({"messages": [{"from": {"name": "Ann"}}]}, "messages.0.payload"),
        ({"messages": TEXT_MESSAGES, "confidenceThreshold": 0.3}, "confidenceThreshold"),
        ({"messages": TEXT_MESSAGES, "webhookUrl": "ftp://x"}, "webhookUrl"),
        ({"messages": "hello"}, "messages"),
    ],
)
async def test_bad_text_requests_get_400_naming_the_field(tmp_path: Path, body: dict[str, object], named: str) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        response = await engine.client.post("/v1/process/text", json=body, headers=engine.headers)
        assert response.status_code == 400
        assert named in response.json()["message"]


async def test_malformed_and_misdirected_requests_get_json_errors(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        client, headers = engine.client, engine.headers
        malformed = await client.post(
            "/v1/process/text", content=b"{not json", headers={**headers, "Content-Type": "application/json"}
        )
        assert malformed.status_code == 400
        assert malformed.json() == {"message": "the request body is not valid JSON"}
        bad_query = await client.post("/v1/process/audio?confidenceThreshold=2", content=b"x", headers=headers)
        assert bad_query.status_code == 400
        assert "confidenceThreshold" in bad_query.json()["message"]
        no_url = await client.post("/v1/process/audio/url", json={}, headers=headers)
        assert no_url.status_code == 400
        assert "url" in no_url.json()["message"]

        for method, path in [
            ("PUT", "/v1/process/text/1234567890123456"),
            ("PUT", "/v1/process/audio/1234567890123456"),
            ("PUT", "/v1/process/video/url/1234567890123456"),
            ("GET", "/v1/conversations/1234567890123456"),
            ("GET", "/v1/conversations/1234567890123456/messages"),
            ("DELETE", "/v1/conversations/1234567890123456"),
        ]:
            response = await client.request(method, path, json={"messages": TEXT_MESSAGES}, headers=headers)
            assert response.status_code == 404, (method, path)
            assert response.json() == NOT_FOUND
        unknown_job = await client.get("/v1/job/9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", headers=headers)
        assert unknown_job.status_code == 404
        assert "message" in unknown_job.json()
        nowhere = await client.get("/v2/nothing", headers=headers)
        assert nowhere.status_code == 404
        assert "message" in nowhere.json()
        wrong_method = await client.delete("/v1/process/text", headers=headers)
        assert wrong_method.status_code == 405
        assert "message" in wrong_method.json()
        bad_param = await client.get("/v1/conversations?limit=abc", headers=headers)
        assert bad_param.status_code == 400
        assert "limit" in bad_param.json()["message"]

        wrong_type = await client.post(
            "/v1/process/video", content=b"x", headers={**headers, "Content-Type": "text/plain"}
        )
        assert wrong_type.status_code == 415
        untyped_video = await client.post("/v1/process/video", content=b"x", headers=headers)
        assert untyped_video.status_code == 415
        empty = await client.post("/v1/process/audio", content=b"", headers=headers)
        assert empty.status_code == 400


async def test_uploads_over_the_limit_get_413_and_leave_no_file(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path, max_upload_bytes=1024)) as engine:
        declared = await engine.client.post("/v1/process/audio", content=b"a" * 2048, headers=engine.headers)
        assert declared.status_code == 413
        assert "1024" in declared.json()["message"]

        async def chunks() -> object:
            for _ in range(8):
                yield b"b" * 256  # no Content-Length: the limit is noticed while streaming

        streamed = await engine.client.post("/v1/process/audio", content=chunks(), headers=engine.headers)  # type: ignore[arg-type]
        assert streamed.status_code == 413
        assert list((tmp_path / "media").iterdir()) == []
        listing = (await engine.client.get("/v1/conversations", headers=engine.headers)).json()
        assert listing == {"conversations": []}

    async with running_engine(engine_settings(tmp_path, max_text_request_bytes=100)) as engine:
        big = await engine.client.post("/v1/process/text", json={"messages": TEXT_MESSAGES}, headers=engine.headers)
        assert big.status_code == 413


async def test_jobs_beyond_the_concurrency_limit_get_429(tmp_path: Path) -> None:
    from tests.support.engine import FakeAnalyzer, Gate

    gate = Gate()
    analyzer = FakeAnalyzer(gate=gate)
    try:
        async with running_engine(engine_settings(tmp_path, max_concurrent_jobs=2), analyzer=analyzer) as engine:
            first = await engine.submit_text(TEXT_MESSAGES)
            await engine.submit_text(TEXT_MESSAGES)
            refused = await engine.client.post(
                "/v1/process/text", json={"messages": TEXT_MESSAGES}, headers=engine.headers
            )
            assert refused.status_code == 429
            body = refused.json()
            assert body["statusCode"] == 429
            assert body["message"].startswith("This API has a limit of maximum of 2 number of concurrent jobs")
            gate.opened.set()
            await engine.wait_for_job(first["jobId"])
            again = await engine.client.post(
                "/v1/process/text", json={"messages": TEXT_MESSAGES}, headers=engine.headers
            )
            assert again.status_code == 200
    finally:
        gate.opened.set()


async def test_options_reach_analysis_and_query_lists_in_every_spelling(tmp_path: Path) -> None:
    async with running_engine(engine_settings(tmp_path)) as engine:
        body = {
            "messages": TEXT_MESSAGES,
            "confidenceThreshold": 0.7,
            "detectPhrases": True,
            "trackers": [{"name": "Deck", "vocabulary": ["deck"]}],
            "entities": [{"customType": "Product", "text": "deck"}],
        }
        response = await engine.client.post("/v1/process/text", json=body, headers=engine.headers)
        await engine.wait_for_job(response.json()["jobId"])
        options = engine.analyzer.calls[-1][2]
        assert options.confidence_threshold == 0.7
        assert options.detect_phrases is True
        assert options.trackers[0].vocabulary == ["deck"]
        assert options.entities[0].custom_type == "Product"

        # symbl-rest repeats customVocabulary and writes object lists as Python literals.
        entities = str([{"customType": "Product", "text": "deck"}])
        query = {"customVocabulary": ["Parley", "Kafka"], "entities": entities, "enableSpeakerDiarization": "True"}
        uploaded = await engine.client.post(
            "/v1/process/audio",
            params=query,
            content=b"audio",
            headers={**engine.headers, "Content-Type": "audio/mpeg"},
        )
        assert uploaded.status_code == 200, uploaded.text
        await engine.wait_for_job(uploaded.json()["jobId"])
        speech = engine.recognizer.calls[-1][1]
        assert speech.custom_vocabulary == ["Parley", "Kafka"]
        assert speech.enable_speaker_diarization is True
        assert engine.analyzer.calls[-1][2].entities[0].text == "deck"
        assert engine.recognizer.calls[-1][0].suffix == ".mp3"
        json_query = {"channelMetadata": json.dumps([{"channel": 1, "speaker": {"name": "Ann"}}])}
        uploaded = await engine.client.post(
            "/v1/process/audio", params=json_query, content=b"audio", headers=engine.headers
        )
        await engine.wait_for_job(uploaded.json()["jobId"])
        assert engine.recognizer.calls[-1][1].channel_metadata[0].speaker.name == "Ann"
