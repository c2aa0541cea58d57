"""Small fakes of the engine's two ports (speech recognizer, text analyzer) and a harness that runs the real app.

No tests here: the other ``test_api*`` / ``test_jobs*`` modules import from it.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from fastapi import FastAPI
from parley_engine.app import create_app
from parley_engine.conversation import AnalysisOptions, ConversationInsights, Speaker, Utterance, Word
from parley_engine.dependencies import EngineComponents
from parley_engine.identifiers import message_id
from parley_engine.settings import EngineSettings
from parley_engine.speech.media import MediaError
from parley_engine.speech.options import SpeechOptions
from parley_engine.workers import UtteranceRedactor


@dataclass
class Gate:
    """Holds fakes inside a call until opened (threading, because fakes run on worker threads)."""

    opened: threading.Event = field(default_factory=threading.Event)
    entered: threading.Event = field(default_factory=threading.Event)

    def pass_through(self) -> None:
        self.entered.set()
        if not self.opened.wait(timeout=30):
            raise TimeoutError("gate never opened")


@dataclass
class FakeRecognizer:
    """Two utterances per file; a file starting with ``BAD`` is not media (``MediaError``)."""

    calls: list[tuple[Path, SpeechOptions, int, str]] = field(default_factory=list)
    gate: Gate | None = None

    def transcribe(
        self, path: Path, options: SpeechOptions, *, first_message_index: int, id_prefix: str
    ) -> list[Utterance]:
        self.calls.append((path, options, first_message_index, id_prefix))
        content = path.read_bytes()
        if self.gate is not None:
            self.gate.pass_through()
        if content.startswith(b"BAD"):
            raise MediaError("the file holds no audio this engine can read")
        label = content[:12].decode(errors="replace")
        return [
            Utterance(
                id=message_id(id_prefix, first_message_index + n),
                text=text,
                speaker=Speaker(name="Speaker 1"),
                start_offset=start,
                end_offset=start + 2.0,
                words=[Word(word=w, start_offset=start, end_offset=start + 0.5, score=0.9) for w in text.split()],
            )
            for n, (start, text) in enumerate([(0.0, f"Recording {label} starts."), (2.0, "Can you send the deck?")])
        ]


@dataclass
class FakeAnalyzer:
    """Insights in Symbl's shapes, derived plainly from the utterances so tests can predict them."""

    calls: list[tuple[str, int, AnalysisOptions]] = field(default_factory=list)
    gate: Gate | None = None
    fail_with: Exception | None = None
    concurrent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    max_concurrent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def analyze(
        self,
        utterances: list[Utterance],
        options: AnalysisOptions,
        *,
        conversation_id: str,
        conversation_start: datetime,
    ) -> ConversationInsights:
        with self._lock:
            self.concurrent[conversation_id] += 1
            self.max_concurrent[conversation_id] = max(
                self.max_concurrent[conversation_id], self.concurrent[conversation_id]
            )
        try:
            self.calls.append((conversation_id, len(utterances), options))
            if self.gate is not None:
                self.gate.pass_through()
            time.sleep(0.01)  # give a concurrent job of the same conversation the chance to overlap, if it could
            if self.fail_with is not None:
                raise self.fail_with
            return insights_for(utterances, conversation_id)
        finally:
            with self._lock:
                self.concurrent[conversation_id] -= 1


def insights_for(utterances: list[Utterance], conversation_id: str) -> ConversationInsights:
    names = sorted({u.speaker.name or "Unknown" for u in utterances})
    members = [
        {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{conversation_id}/{name}")), "name": name, "email": None}
        for name in names
    ]
    member_of = {m["name"]: m for m in members}

    def sender(u: Utterance) -> dict[str, Any]:
        member = member_of[u.speaker.name or "Unknown"]
        return {"id": member["id"], "name": member["name"], "userId": u.speaker.user_id}

    messages = [
        {
            "id": u.id,
            "text": u.text,
            "from": sender(u),
            "timeOffset": u.start_offset,
            "duration": None if u.start_offset is None else (u.end_offset or u.start_offset) - u.start_offset,
            "conversationId": conversation_id,
            "phrases": [{"type": "action_phrase", "text": u.text.split()[0]}],
            "sentiment": {"polarity": {"score": 0.0}, "suggested": "neutral"},
            "words": [{"word": w.word, "timeOffset": w.start_offset} for w in (u.words or [])],
        }
        for u in utterances
    ]
    questions = [
        {"id": f"q{u.id}", "text": u.text, "type": "question", "score": 0.9, "messageIds": [u.id], "from": sender(u)}
        for u in utterances
        if u.text.endswith("?")
    ]
    return ConversationInsights(
        messages=messages,
        topics=[
            {
                "id": "1",
                "text": "deck",
                "type": "topic",
                "score": 0.8,
                "messageIds": [m["id"] for m in messages],
                "sentiment": {"polarity": {"score": 0.1}, "suggested": "neutral"},
                "parentRefs": [],
            }
        ],
        questions=questions,
        action_items=[
            {"id": "a1", "text": "send the deck", "type": "action_item", "messageIds": [], "assignee": {"name": "Ann"}}
        ],
        follow_ups=[{"id": "f1", "text": "follow up", "type": "follow_up", "messageIds": []}],
        entities=[{"type": "person", "value": "Ann", "text": "Ann", "messageRefs": []}],
        summary=[{"id": "s1", "text": f"{len(utterances)} messages", "messageRefs": []}],
        analytics={"metrics": [{"type": "total_talk_time", "percent": 100, "seconds": 4}], "members": []},
        trackers=[{"id": "t1", "name": "Deck", "matches": []}],
        members=members,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def engine_settings(data_dir: Path, **overrides: Any) -> EngineSettings:
    values: dict[str, Any] = {
        "engine_data_dir": data_dir,
        "workers": 4,
        "dispatch_poll_seconds": 0.05,
        "webhook_backoff_base_seconds": 0.05,
        "webhook_backoff_max_seconds": 0.2,
        "max_upload_bytes": 4096,
        "max_text_request_bytes": 64 * 1024,
        "app_id": "test-app",
        "app_secret": "test-secret",
        # These tests serve their media from a loopback server.
        "allow_private_media_urls": True,
        **overrides,
    }
    return EngineSettings(**values)


@dataclass
class RunningEngine:
    app: FastAPI
    client: httpx.AsyncClient
    recognizer: FakeRecognizer
    analyzer: FakeAnalyzer
    headers: dict[str, str]

    @property
    def components(self) -> EngineComponents:
        """The parts the app's lifespan started (its store, runner, token authority …)."""
        components: EngineComponents = self.app.state.components
        return components

    async def wait_for_job(self, job_id: str, statuses: tuple[str, ...] = ("completed", "failed")) -> dict[str, Any]:
        deadline = time.monotonic() + 15
        while True:
            response = await self.client.get(f"/v1/job/{job_id}", headers=self.headers)
            assert response.status_code == 200, response.text
            body: dict[str, Any] = response.json()
            if body["status"] in statuses:
                return body
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} stayed {body['status']}")
            await asyncio.sleep(0.02)

    async def submit_text(self, messages: list[dict[str, Any]], conversation_id: str | None = None) -> dict[str, Any]:
        path = "/v1/process/text" + (f"/{conversation_id}" if conversation_id else "")
        method = self.client.put if conversation_id else self.client.post
        response = await method(path, json={"messages": messages}, headers=self.headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@asynccontextmanager
async def running_engine(
    settings: EngineSettings,
    recognizer: FakeRecognizer | None = None,
    analyzer: FakeAnalyzer | None = None,
    redactor: UtteranceRedactor | None = None,
) -> AsyncIterator[RunningEngine]:
    """The real app (lifespan and all) over fakes, reached in process through httpx's ASGI transport.

    ``redactor``: a real one shared between tests (Presidio takes seconds to load); by default one is built on the
    first redacted job.
    """
    recognizer = recognizer or FakeRecognizer()
    analyzer = analyzer or FakeAnalyzer()
    app = create_app(
        settings,
        analyzer_factory=lambda: analyzer,
        recognizer_factory=lambda: recognizer,
        redactor_factory=(lambda: redactor) if redactor is not None else None,
    )
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://engine") as client,
    ):
        token = await client.post(
            "/oauth2/token:generate",
            json={"type": "application", "appId": settings.app_id, "appSecret": settings.app_secret.get_secret_value()},
        )
        assert token.status_code == 200, token.text
        headers = {"Authorization": f"Bearer {token.json()['accessToken']}"}
        yield RunningEngine(app, client, recognizer, analyzer, headers)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@asynccontextmanager
async def http_server(routes: dict[str, Handler]) -> AsyncIterator[str]:
    """A real HTTP server on a free loopback port (media to download, webhook receivers); yields its base URL."""
    app = web.Application()
    for path, handler in routes.items():
        app.router.add_route("*", path, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


TEXT_MESSAGES = [
    {
        "payload": {"content": "Hi Mike, shall we review the deck?", "contentType": "text/plain"},
        "from": {"userId": "natalia@example.com", "name": "Natalia"},
        "duration": {"startTime": "2020-07-21T16:02:19.010Z", "endTime": "2020-07-21T16:02:21.010Z"},
    },
    {
        "payload": {"content": "Sure, I will send it tomorrow."},
        "from": {"userId": "mike@example.com", "name": "Mike"},
        "duration": {"startTime": "2020-07-21T16:02:22.000Z", "endTime": "2020-07-21T16:02:25.500Z"},
    },
]
